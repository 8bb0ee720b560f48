//! Announces every committed change of `stations` and `observations` on PostgreSQL's
//! LISTEN/NOTIFY channels `stations_changed` and `observations_recorded`, which every replica of
//! the API listens on to serve GraphQL subscriptions.
//!
//! The triggers run per statement, in the writing transaction: a notification is delivered
//! only when that transaction commits, so a rolled-back write announces nothing. Payloads stay
//! far below PostgreSQL's 8000-byte limit: rows travel in chunks, and only what a subscriber
//! filters on (ids, and a station's code and position, before and after) is sent; subscribers
//! read the rows back by id. A transaction that sets `stations_api.bulk_write = on` (the
//! importers do) sends one summary instead of every row: subscribers are told to re-read.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};

/// The stations' trigger function as this step creates it (`m20261205_000011` restores it on
/// its way down).
pub(crate) const STATIONS_NOTIFY_CHANGE: &str = r#"CREATE OR REPLACE FUNCTION stations_notify_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            chunk jsonb;
        BEGIN
            IF current_setting('stations_api.bulk_write', true) = 'on' THEN
                PERFORM pg_notify('stations_changed', '{"kind":"RESYNC"}');
                RETURN NULL;
            END IF;
            IF TG_OP = 'INSERT' THEN
                FOR chunk IN
                    SELECT jsonb_agg(jsonb_build_array(id, code, lat, lng))
                    FROM (SELECT *, (row_number() OVER () - 1) / 40 AS part FROM new_rows) r
                    GROUP BY part
                LOOP
                    PERFORM pg_notify('stations_changed',
                        jsonb_build_object('kind', 'CREATED', 'rows', chunk)::text);
                END LOOP;
            ELSIF TG_OP = 'UPDATE' THEN
                FOR chunk IN
                    SELECT jsonb_agg(jsonb_build_array(n.id, n.code, n.lat, n.lng,
                                                       o.code, o.lat, o.lng))
                    FROM (SELECT *, (row_number() OVER () - 1) / 40 AS part FROM new_rows) n
                    JOIN old_rows o ON o.id = n.id
                    GROUP BY n.part
                LOOP
                    PERFORM pg_notify('stations_changed',
                        jsonb_build_object('kind', 'UPDATED', 'rows', chunk)::text);
                END LOOP;
            ELSE
                FOR chunk IN
                    SELECT jsonb_agg(jsonb_build_array(id, code, lat, lng))
                    FROM (SELECT *, (row_number() OVER () - 1) / 40 AS part FROM old_rows) r
                    GROUP BY part
                LOOP
                    PERFORM pg_notify('stations_changed',
                        jsonb_build_object('kind', 'DELETED', 'rows', chunk)::text);
                END LOOP;
            END IF;
            RETURN NULL;
        END
        $$"#;

/// The observations' trigger function as this step creates it.
pub(crate) const OBSERVATIONS_NOTIFY_RECORDED: &str = r#"CREATE OR REPLACE FUNCTION observations_notify_recorded() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            chunk jsonb;
        BEGIN
            IF current_setting('stations_api.bulk_write', true) = 'on' THEN
                FOR chunk IN
                    SELECT jsonb_agg(station_id)
                    FROM (SELECT station_id, (row_number() OVER () - 1) / 500 AS part
                          FROM (SELECT DISTINCT station_id FROM new_rows) d) r
                    GROUP BY part
                LOOP
                    PERFORM pg_notify('observations_recorded',
                        jsonb_build_object('resync', chunk)::text);
                END LOOP;
                RETURN NULL;
            END IF;
            FOR chunk IN
                SELECT jsonb_agg(jsonb_build_array(id, station_id))
                FROM (SELECT id, station_id, (row_number() OVER () - 1) / 250 AS part
                      FROM new_rows) r
                GROUP BY part
            LOOP
                PERFORM pg_notify('observations_recorded',
                    jsonb_build_object('rows', chunk)::text);
            END LOOP;
            RETURN NULL;
        END
        $$"#;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Rows as [id, code, lat, lng] (created, deleted) or [id, code, lat, lng, old code,
        // old lat, old lng] (updated): 40 of them stay under 8000 bytes with 32-character codes.
        db.execute_unprepared(STATIONS_NOTIFY_CHANGE).await?;
        for (operation, referencing) in [
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ] {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER stations_notify_{} AFTER {operation} ON stations
                    REFERENCING {referencing}
                    FOR EACH STATEMENT EXECUTE FUNCTION stations_notify_change()",
                operation.to_lowercase()
            ))
            .await?;
        }
        // Rows as [id, station_id]: 250 of them stay under 8000 bytes.
        db.execute_unprepared(OBSERVATIONS_NOTIFY_RECORDED).await?;
        db.execute_unprepared(
            "CREATE TRIGGER observations_notify_recorded AFTER INSERT ON observations
                REFERENCING NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION observations_notify_recorded()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER observations_notify_recorded ON observations")
            .await?;
        db.execute_unprepared("DROP FUNCTION observations_notify_recorded()")
            .await?;
        for operation in ["insert", "update", "delete"] {
            db.execute_unprepared(&format!(
                "DROP TRIGGER stations_notify_{operation} ON stations"
            ))
            .await?;
        }
        db.execute_unprepared("DROP FUNCTION stations_notify_change()")
            .await?;
        Ok(())
    }
}
