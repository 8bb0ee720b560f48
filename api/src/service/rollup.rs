//! The hourly rollup of observations, `observations_hourly`, held against the raw rows.
//!
//! A write to `observations` notes the hours it touched (`observations_hourly_pending`), in its
//! own transaction; a refresh counts noted hours again from the raw rows, and the series read
//! raw rows for the hours still noted, so the answers are exact before and after (the
//! migrations `m20261205_000008` and `m20261205_000012` say how). Here: the refresh, run by
//! every replica in the background ([`RefreshJob`]) and to the end by `stations-api rollups
//! refresh`, and the check and refill of `verify` and `rebuild`.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionSession, TransactionTrait};

use super::sql::Sql;
use crate::configuration::DatabaseSettings;
use crate::domain::Measure;

/// How the rollup compares with the raw rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Hours of the raw rows (station and UTC hour).
    pub hours: i64,
    /// Hours with observations that the rollup lacks.
    pub missing: i64,
    /// Rollup rows of hours without observations.
    pub extra: i64,
    /// Hours whose counts, extremes or sums differ (sums beyond rounding).
    pub differing: i64,
    /// Some of the hours that are wrong, as `station <id> at <hour>`.
    pub examples: Vec<String>,
}

impl Verification {
    pub fn is_exact(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.differing == 0
    }
}

/// What differs between a rollup row `h` and the same hour computed from raw rows `e`: counts
/// and extremes exactly, sums within what adding in another order can change.
fn differs() -> String {
    let measures = Measure::ALL
        .map(|measure| {
            let m = measure.column();
            format!(
                "h.{m}_count <> e.{m}_count OR h.{m}_min IS DISTINCT FROM e.{m}_min \
                 OR h.{m}_max IS DISTINCT FROM e.{m}_max \
                 OR abs(h.{m}_sum - e.{m}_sum) > 1e-9 * greatest(1, abs(e.{m}_sum))"
            )
        })
        .join(" OR ");
    format!("h.count <> e.count OR {measures}")
}

/// One refresh: the oldest notes, about `budget_hours` station-hours of them (at least one
/// note), counted again in one transaction. Returns how many notes it took, or None when
/// another session is refreshing and `wait` is false.
pub async fn refresh(
    db: &impl ConnectionTrait,
    budget_hours: i64,
    wait: bool,
) -> Result<Option<i64>, DbErr> {
    let mut sql = Sql::new("");
    sql.push("SELECT observations_hourly_refresh(?", budget_hours)
        .push(", ?) AS taken", wait);
    let row = db
        .query_one_raw(sql.build())
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the refresh's answer".into()))?;
    row.try_get("", "taken")
}

/// Refreshes until no note is left, waiting for any refresh under way; returns the notes
/// taken. Writes that go on meanwhile note more: this ends once it has caught up with them.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn drain(db: &impl ConnectionTrait, budget_hours: i64) -> Result<i64, DbErr> {
    let mut taken = 0;
    while let Some(notes) = refresh(db, budget_hours, true).await?
        && notes > 0
    {
        taken += notes;
    }
    Ok(taken)
}

/// Every replica's refresh: each `interval`, refreshes until no note is left. Replicas take
/// turns (the refresh's advisory lock); one that finds another refreshing waits for its next
/// round. A failed refresh changes nothing (one statement) and is tried again next round.
pub struct RefreshJob {
    db: DatabaseConnection,
    interval: Duration,
    budget_hours: i64,
}

impl RefreshJob {
    pub fn new(db: DatabaseConnection, settings: &DatabaseSettings) -> Self {
        Self {
            db,
            interval: Duration::from_millis(settings.rollup_refresh_interval_ms),
            budget_hours: settings.rollup_refresh_batch_hours as i64,
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            loop {
                match refresh(&self.db, self.budget_hours, false).await {
                    Ok(Some(taken)) if taken > 0 => {
                        tracing::debug!(notes = taken, "refreshed the hourly rollup");
                    }
                    // Nothing noted, or another replica is at it.
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(
                            error = %error,
                            "refreshing the hourly rollup failed; trying again next round"
                        );
                        break;
                    }
                }
            }
        }
    }
}

/// Compares every rollup row with the raw rows it summarises, leaving out the hours still
/// noted (the series read those from the raw rows): `drain` first to compare them all.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn verify(db: &impl ConnectionTrait) -> Result<Verification, DbErr> {
    let compared = format!(
        "SELECT h.station_id IS NULL AS missing, e.station_id IS NULL AS extra,
                (h.station_id IS NOT NULL AND e.station_id IS NOT NULL AND ({})) AS differing,
                coalesce(h.station_id, e.station_id) AS station_id, coalesce(h.hour, e.hour) AS hour
         FROM observations_hourly h
         FULL JOIN observations_hourly_expected e
              ON e.station_id = h.station_id AND e.hour = h.hour
         WHERE NOT EXISTS (
             SELECT 1 FROM observations_hourly_pending p
             WHERE p.station_id = coalesce(h.station_id, e.station_id)
               AND coalesce(h.hour, e.hour) BETWEEN p.first_hour AND p.last_hour)",
        differs()
    );
    let summary = db
        .query_one_raw(
            Sql::new(&format!(
                "SELECT count(*) FILTER (WHERE NOT extra) AS hours,
                        count(*) FILTER (WHERE missing) AS missing,
                        count(*) FILTER (WHERE extra) AS extra,
                        count(*) FILTER (WHERE differing) AS differing
                 FROM ({compared}) c"
            ))
            .build(),
        )
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the rollup's comparison".into()))?;
    let examples = db
        .query_all_raw(
            Sql::new(&format!(
                "SELECT format('station %s at %s', station_id,
                               to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00Z'))
                        AS example
                 FROM ({compared}) c WHERE missing OR extra OR differing
                 ORDER BY station_id, hour LIMIT 5"
            ))
            .build(),
        )
        .await?
        .iter()
        .map(|row| row.try_get("", "example"))
        .collect::<Result<_, _>>()?;
    Ok(Verification {
        hours: summary.try_get("", "hours")?,
        missing: summary.try_get("", "missing")?,
        extra: summary.try_get("", "extra")?,
        differing: summary.try_get("", "differing")?,
        examples,
    })
}

/// Fills the rollup again from the raw rows, in one transaction: writes to `observations`
/// and refreshes wait for it (`SHARE` lock, the refresh's lock), and readers see the old
/// rollup until it commits. Every note is then answered. Returns the rows written.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn rebuild(db: &(impl ConnectionTrait + TransactionTrait)) -> Result<u64, DbErr> {
    let transaction = db.begin().await?;
    transaction
        .execute_unprepared("LOCK TABLE observations IN SHARE MODE")
        .await?;
    transaction
        .execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({})",
            migration::ROLLUP_REFRESH_LOCK
        ))
        .await?;
    // DELETE rather than TRUNCATE, whose lock would stop readers of series too.
    transaction
        .execute_unprepared("DELETE FROM observations_hourly")
        .await?;
    transaction
        .execute_unprepared("DELETE FROM observations_hourly_pending")
        .await?;
    let written = transaction
        .execute_unprepared(
            "INSERT INTO observations_hourly SELECT * FROM observations_hourly_expected",
        )
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(written)
}
