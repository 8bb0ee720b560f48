//! Live-change notifications carry the writer's trace: a transaction that sets
//! `stations_api.traceparent` (the API does, for a mutation whose trace it keeps) has its W3C
//! `traceparent` and the time of the write in every payload its triggers send, so that each
//! replica's delivery of the change joins the mutation's trace, with how long after the write
//! it came. A transaction that sets nothing sends what it sent before.
//!
//! The two fields add at most 90 bytes to a payload; the largest (40 updated stations with
//! 32-character codes) stays under 7,700 of PostgreSQL's 8,000.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};

use crate::m20261201_000006_notify_live_changes::{
    OBSERVATIONS_NOTIFY_RECORDED, STATIONS_NOTIFY_CHANGE,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(TRACE_FIELDS).await?;
        db.execute_unprepared(
            r#"CREATE OR REPLACE FUNCTION stations_notify_change() RETURNS trigger
                LANGUAGE plpgsql AS $$
                DECLARE
                    chunk jsonb;
                    trace jsonb := stations_api_trace_fields();
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
                                (jsonb_build_object('kind', 'CREATED', 'rows', chunk) || trace)::text);
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
                                (jsonb_build_object('kind', 'UPDATED', 'rows', chunk) || trace)::text);
                        END LOOP;
                    ELSE
                        FOR chunk IN
                            SELECT jsonb_agg(jsonb_build_array(id, code, lat, lng))
                            FROM (SELECT *, (row_number() OVER () - 1) / 40 AS part FROM old_rows) r
                            GROUP BY part
                        LOOP
                            PERFORM pg_notify('stations_changed',
                                (jsonb_build_object('kind', 'DELETED', 'rows', chunk) || trace)::text);
                        END LOOP;
                    END IF;
                    RETURN NULL;
                END
                $$"#,
        )
        .await?;
        db.execute_unprepared(
            r#"CREATE OR REPLACE FUNCTION observations_notify_recorded() RETURNS trigger
                LANGUAGE plpgsql AS $$
                DECLARE
                    chunk jsonb;
                    trace jsonb := stations_api_trace_fields();
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
                            (jsonb_build_object('rows', chunk) || trace)::text);
                    END LOOP;
                    RETURN NULL;
                END
                $$"#,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(STATIONS_NOTIFY_CHANGE).await?;
        db.execute_unprepared(OBSERVATIONS_NOTIFY_RECORDED).await?;
        db.execute_unprepared("DROP FUNCTION stations_api_trace_fields()")
            .await?;
        Ok(())
    }
}

/// `{"traceparent": ..., "written_at_ms": ...}` when the transaction set
/// `stations_api.traceparent` to a well-formed W3C traceparent, else `{}`. Anything else in
/// the setting is ignored: it is copied into what every replica reads.
const TRACE_FIELDS: &str = r#"CREATE OR REPLACE FUNCTION stations_api_trace_fields() RETURNS jsonb
    LANGUAGE sql AS $$
        SELECT CASE
            WHEN current_setting('stations_api.traceparent', true)
                 ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
            THEN jsonb_build_object(
                'traceparent', current_setting('stations_api.traceparent', true),
                'written_at_ms', floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
            ELSE '{}'::jsonb
        END
    $$"#;
