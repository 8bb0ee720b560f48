//! The hourly rollup loses its foreign key to `stations`: checking it cost a bulk import more
//! than anything else the rollup does.
//!
//! - Every rollup row is written by the triggers on `observations`, from rows whose own foreign
//!   key has just been checked; the rollup's key checked the same station again, once per hour
//!   written. On an import of 1,000,000 hourly readings (one rollup row each) that was 4.8 s of
//!   the rollup's 12 s, measured by inserting the trigger's rows into copies of the table with
//!   and without it.
//! - Its `ON DELETE CASCADE` is not needed either: a station can only be deleted once its
//!   observations are (their key has no cascade), and deleting them recounts their hours,
//!   which removes the emptied ones from the rollup.
//! - `stations-api rollups verify` still finds any rollup row that no observation explains,
//!   for a station that exists or not.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE observations_hourly DROP CONSTRAINT observations_hourly_station_id_fkey",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE observations_hourly ADD CONSTRAINT observations_hourly_station_id_fkey
                     FOREIGN KEY (station_id) REFERENCES stations (id) ON DELETE CASCADE",
            )
            .await?;
        Ok(())
    }
}
