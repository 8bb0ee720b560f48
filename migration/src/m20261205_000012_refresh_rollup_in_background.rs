//! The hourly rollup is brought up to date after the write instead of inside it: a write to
//! `observations` now only notes, per station, the span of hours it touched, and a refresh
//! counts those hours again from the raw rows, a batch at a time.
//!
//! Why: kept inside the writing transaction, the rollup cost a bulk import of hourly readings
//! half its time again (+52 to +57 %): it wrote one rollup row, with its key, per reading. The
//! note is one row per station per statement.
//!
//! Exact all the same, at every instant, on the primary and on its standbys:
//! - each write's note (`observations_hourly_pending`) commits with the write, in the same
//!   transaction, by a statement trigger;
//! - the series leave out the rollup's hours that a visible note covers and count those hours
//!   from the raw rows instead (`service::series` in the API);
//! - `observations_hourly_refresh` takes notes and rewrites their hours in one statement, so
//!   in one snapshot: a note it takes belongs to a write it sees, and the note of a write it
//!   does not see stays for the next refresh. Refreshes run one at a time (an advisory lock,
//!   taken for the transaction): a slower one with an older snapshot never writes over a
//!   newer one.
//!
//! The trigger notes hours rather than counting them, so deletes and updates take the same
//! path as inserts: the synchronous recount they used had two deleting transactions in one
//! hour each write the hour as its own snapshot saw it, the last one winning.
//!
//! Every replica of the API runs the refresh in the background (`database.rollup_refresh_*`
//! settings); `stations-api rollups refresh` runs it to the end by hand, and `verify` and
//! `rebuild` do before they compare or refill.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};

use crate::m20261205_000008_create_observations_hourly::{
    WRITE_TRIGGERS, aggregates, counted_columns, replaced_by_excluded,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A function noting the hours of the rows in `touched_rows` (transition tables): per station,
/// the first and the last UTC hour, and whether rows went (`removed`: a DELETE or an UPDATE),
/// which may leave an hour empty. One span per station is coarse for a write whose readings lie
/// far apart, but it costs one aggregate pass over the statement's rows; the refresh merges
/// spans that overlap.
fn note_function(name: &str, touched_rows: &str, removed: bool) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO observations_hourly_pending (station_id, first_hour, last_hour, removed)
             SELECT t.station_id, date_trunc('hour', min(t.observed_at), 'UTC'),
                    date_trunc('hour', max(t.observed_at), 'UTC'), {removed}
             FROM ({touched_rows}) t
             GROUP BY t.station_id;
             RETURN NULL;
         END $$"
    )
}

/// The refresh: takes the oldest notes, about `budget_hours` station-hours of them (at least one
/// note), and counts their hours again from the raw rows. Returns how many notes it took, or
/// NULL when another session is refreshing and `wait` is false.
///
/// Written for plans that touch only the noted hours, whatever the tables' sizes: the raw rows
/// and the rollup rows of each span are read by their keys (a `LATERAL` subquery, kept apart
/// by `OFFSET 0` so that the planner cannot turn it into a scan of the whole rollup), and the
/// emptied rows are deleted by their addresses. The grouping gets the memory to stay off disk
/// at the largest batch the settings allow.
///
/// Only the refresh and `rollups rebuild` write the rollup, and both hold the advisory lock,
/// so no other writer can insert one of its hours meanwhile; `ON CONFLICT` is there because
/// the hours of a note may already be counted.
fn refresh_function() -> String {
    let counted = counted_columns();
    let replaced = replaced_by_excluded();
    format!(
        "CREATE OR REPLACE FUNCTION observations_hourly_refresh(budget_hours bigint, wait boolean)
         RETURNS bigint LANGUAGE plpgsql SET work_mem = '64MB' AS $$
         DECLARE
             notes_taken bigint;
         BEGIN
             IF wait THEN
                 PERFORM pg_advisory_xact_lock({REFRESH_LOCK});
             ELSIF NOT pg_try_advisory_xact_lock({REFRESH_LOCK}) THEN
                 RETURN NULL;
             END IF;
             -- One statement from here: one snapshot for the notes taken and the rows counted.
             WITH oldest AS (
                 SELECT p.id, sum(extract(epoch FROM p.last_hour - p.first_hour) / 3600 + 1)
                                OVER (ORDER BY p.id) AS through
                 FROM (SELECT * FROM observations_hourly_pending ORDER BY id LIMIT 10000) p
             ), taken AS (
                 DELETE FROM observations_hourly_pending p
                 WHERE p.id IN (SELECT o.id FROM oldest o
                                WHERE o.through <= budget_hours
                                   OR o.id = (SELECT min(id) FROM oldest))
                 RETURNING p.station_id, p.first_hour, p.last_hour, p.removed
             ), spans AS (
                 -- Overlapping notes merged: each hour is counted once.
                 SELECT t.station_id,
                        unnest(range_agg(tstzrange(t.first_hour, t.last_hour + interval '1 hour')))
                            AS span
                 FROM taken t
                 GROUP BY t.station_id
             ), recounted AS (
                 SELECT o.station_id, date_trunc('hour', o.observed_at, 'UTC') AS hour,
                        count(*)::integer AS count, {aggregates}
                 FROM spans s
                 CROSS JOIN LATERAL (
                     SELECT * FROM observations o
                     WHERE o.station_id = s.station_id
                       AND o.observed_at >= lower(s.span) AND o.observed_at < upper(s.span)
                     OFFSET 0) o
                 GROUP BY 1, 2
             ), emptied AS (
                 -- Only rows that went can leave an hour without observations. Asked of the
                 -- raw rows rather than of `recounted`, which is then read once, as it is
                 -- made, and never stored.
                 DELETE FROM observations_hourly
                 WHERE ctid = ANY (ARRAY(
                     SELECT h.ctid
                     FROM (SELECT t.station_id,
                                  unnest(range_agg(tstzrange(
                                      t.first_hour, t.last_hour + interval '1 hour'))) AS span
                           FROM taken t WHERE t.removed
                           GROUP BY t.station_id) s
                     CROSS JOIN LATERAL (
                         SELECT h.ctid, h.station_id, h.hour FROM observations_hourly h
                         WHERE h.station_id = s.station_id
                           AND h.hour >= lower(s.span) AND h.hour < upper(s.span)
                         OFFSET 0) h
                     WHERE NOT EXISTS (
                         SELECT 1 FROM observations o
                         WHERE o.station_id = h.station_id AND o.observed_at >= h.hour
                           AND o.observed_at < h.hour + interval '1 hour')))
             ), written AS (
                 INSERT INTO observations_hourly AS h (station_id, hour, {columns})
                 SELECT * FROM recounted ORDER BY station_id, hour
                 ON CONFLICT (station_id, hour) DO UPDATE SET {replaced}
                 -- An hour that did not change keeps its row: no new version, no WAL.
                 WHERE ({current}) IS DISTINCT FROM ({recounted})
             )
             SELECT count(*) INTO notes_taken FROM taken;
             RETURN notes_taken;
         END $$",
        aggregates = aggregates("o"),
        columns = counted.join(", "),
        current = counted
            .iter()
            .map(|c| format!("h.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        recounted = counted
            .iter()
            .map(|c| format!("excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The advisory lock refreshes and `stations-api rollups rebuild` take, for their transaction.
/// An arbitrary number: advisory locks are the application's own, and nothing else here takes
/// one.
pub const REFRESH_LOCK: i64 = 7_126_001;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The series look notes up by station.
        db.execute_unprepared(
            "CREATE TABLE observations_hourly_pending (
                 id         bigint GENERATED ALWAYS AS IDENTITY
                            CONSTRAINT observations_hourly_pending_pkey PRIMARY KEY,
                 station_id integer NOT NULL,
                 first_hour timestamptz NOT NULL,
                 last_hour  timestamptz NOT NULL,
                 removed    boolean NOT NULL,
                 CONSTRAINT observations_hourly_pending_hours CHECK (first_hour <= last_hour)
             );
             CREATE INDEX observations_hourly_pending_station_id
                 ON observations_hourly_pending (station_id)",
        )
        .await?;
        for statement in [
            "DROP TRIGGER observations_hourly_on_insert ON observations",
            "DROP TRIGGER observations_hourly_on_update ON observations",
            "DROP TRIGGER observations_hourly_on_delete ON observations",
        ] {
            db.execute_unprepared(statement).await?;
        }
        db.execute_unprepared(&note_function(
            "observations_hourly_note_added",
            "SELECT * FROM added",
            false,
        ))
        .await?;
        db.execute_unprepared(&note_function(
            "observations_hourly_note_removed",
            "SELECT * FROM removed",
            true,
        ))
        .await?;
        db.execute_unprepared(&note_function(
            "observations_hourly_note_changed",
            "SELECT * FROM removed UNION ALL SELECT * FROM added",
            true,
        ))
        .await?;
        db.execute_unprepared(&refresh_function()).await?;
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION observations_hourly_pending_empty() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
                 TRUNCATE observations_hourly_pending;
                 RETURN NULL;
             END $$",
        )
        .await?;
        for trigger in [
            "CREATE TRIGGER observations_hourly_note_on_insert AFTER INSERT ON observations
                 REFERENCING NEW TABLE AS added
                 FOR EACH STATEMENT EXECUTE FUNCTION observations_hourly_note_added()",
            "CREATE TRIGGER observations_hourly_note_on_update AFTER UPDATE ON observations
                 REFERENCING OLD TABLE AS removed NEW TABLE AS added
                 FOR EACH STATEMENT EXECUTE FUNCTION observations_hourly_note_changed()",
            "CREATE TRIGGER observations_hourly_note_on_delete AFTER DELETE ON observations
                 REFERENCING OLD TABLE AS removed
                 FOR EACH STATEMENT EXECUTE FUNCTION observations_hourly_note_removed()",
            "CREATE TRIGGER observations_hourly_pending_on_truncate AFTER TRUNCATE ON observations
                 FOR EACH STATEMENT EXECUTE FUNCTION observations_hourly_pending_empty()",
        ] {
            db.execute_unprepared(trigger).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The notes' hours counted first: the synchronous triggers assume an exact rollup.
        db.execute_unprepared(
            "DO $$
             BEGIN
                 WHILE observations_hourly_refresh(1000000, true) > 0 LOOP END LOOP;
             END $$",
        )
        .await?;
        for statement in [
            "DROP TRIGGER observations_hourly_pending_on_truncate ON observations",
            "DROP TRIGGER observations_hourly_note_on_delete ON observations",
            "DROP TRIGGER observations_hourly_note_on_update ON observations",
            "DROP TRIGGER observations_hourly_note_on_insert ON observations",
            "DROP FUNCTION observations_hourly_pending_empty()",
            "DROP FUNCTION observations_hourly_refresh(bigint, boolean)",
            "DROP FUNCTION observations_hourly_note_changed()",
            "DROP FUNCTION observations_hourly_note_removed()",
            "DROP FUNCTION observations_hourly_note_added()",
            "DROP TABLE observations_hourly_pending",
        ] {
            db.execute_unprepared(statement).await?;
        }
        for trigger in WRITE_TRIGGERS {
            db.execute_unprepared(trigger).await?;
        }
        Ok(())
    }
}
