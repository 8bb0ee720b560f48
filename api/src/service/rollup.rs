//! The hourly rollup of observations, `observations_hourly`, held against the raw rows: PostgreSQL
//! keeps it in the writing transaction (see the migration that creates it); these check it
//! and fill it again, for `stations-api rollups verify` and `rebuild`.

use sea_orm::{ConnectionTrait, DbErr, TransactionSession, TransactionTrait};

use super::sql::Sql;
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

/// Compares every rollup row with the raw rows it summarises.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn verify(db: &impl ConnectionTrait) -> Result<Verification, DbErr> {
    let compared = format!(
        "SELECT h.station_id IS NULL AS missing, e.station_id IS NULL AS extra,
                (h.station_id IS NOT NULL AND e.station_id IS NOT NULL AND ({})) AS differing,
                coalesce(h.station_id, e.station_id) AS station_id, coalesce(h.hour, e.hour) AS hour
         FROM observations_hourly h
         FULL JOIN observations_hourly_expected e
              ON e.station_id = h.station_id AND e.hour = h.hour",
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
/// wait for it (`SHARE` lock), and readers see the old rollup until it commits. Returns the
/// rows written.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn rebuild(db: &(impl ConnectionTrait + TransactionTrait)) -> Result<u64, DbErr> {
    let transaction = db.begin().await?;
    transaction
        .execute_unprepared("LOCK TABLE observations IN SHARE MODE")
        .await?;
    // DELETE rather than TRUNCATE, whose lock would stop readers of series too.
    transaction
        .execute_unprepared("DELETE FROM observations_hourly")
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
