//! Creates `observations`: what each station measured, a time series per station.
//!
//! - `(station_id, observed_at)` is unique: a station reports once per instant, so an ingest
//!   sent twice inserts nothing the second time. Its index also serves "this station's
//!   observations in time order", the query that matters most.
//! - `(observed_at, id)` serves the list of every station's observations in time order (and
//!   its keyset pages) without a sort.
//! - The foreign key has no `ON DELETE CASCADE`: deleting a station that has observations is
//!   refused unless the caller asks for both to go, explicitly.
//! - Plausibility checks are named after the column they guard, so that a refusal names the
//!   field. `BETWEEN` also rejects NaN, which PostgreSQL orders above every number.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE observations (
                id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                station_id       integer NOT NULL
                                 CONSTRAINT observations_station_id_fkey REFERENCES stations (id),
                observed_at      timestamptz NOT NULL,
                temperature_c    double precision
                                 CONSTRAINT observations_temperature_c_plausible
                                 CHECK (temperature_c BETWEEN -90 AND 60),
                pressure_hpa     double precision
                                 CONSTRAINT observations_pressure_hpa_plausible
                                 CHECK (pressure_hpa BETWEEN 300 AND 1100),
                humidity_pct     double precision
                                 CONSTRAINT observations_humidity_pct_range
                                 CHECK (humidity_pct BETWEEN 0 AND 100),
                precipitation_mm double precision
                                 CONSTRAINT observations_precipitation_mm_plausible
                                 CHECK (precipitation_mm BETWEEN 0 AND 2000),
                created_at       timestamptz NOT NULL DEFAULT now(),
                CONSTRAINT observations_station_id_observed_at_key UNIQUE (station_id, observed_at)
            )",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX observations_observed_at_id_idx ON observations (observed_at, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE observations")
            .await?;
        Ok(())
    }
}
