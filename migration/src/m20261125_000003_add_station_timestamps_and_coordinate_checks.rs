//! Adds `created_at` and `updated_at`, keeps `updated_at` current with a trigger (so every
//! writer, not only this API, maintains it), and makes out-of-range coordinates impossible.
//!
//! `BETWEEN` also rejects NaN: PostgreSQL orders NaN above every other number.

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
            "ALTER TABLE stations
                ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),
                ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
                ADD CONSTRAINT stations_lat_range CHECK (lat BETWEEN -90 AND 90),
                ADD CONSTRAINT stations_lng_range CHECK (lng BETWEEN -180 AND 180)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION stations_touch_updated_at() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    NEW.updated_at := now();
                    RETURN NEW;
                END
                $$",
        )
        .await?;
        // OR REPLACE because `migrate fresh` drops tables, and the trigger with them, but not
        // functions: the function from the previous run is still there.
        db.execute_unprepared(
            "CREATE TRIGGER stations_touch_updated_at
                BEFORE UPDATE ON stations
                FOR EACH ROW EXECUTE FUNCTION stations_touch_updated_at()",
        )
        .await?;
        // Keyset pagination ordered by creation time reads this index in either direction.
        db.execute_unprepared(
            "CREATE INDEX stations_created_at_id_idx ON stations (created_at, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER stations_touch_updated_at ON stations")
            .await?;
        db.execute_unprepared("DROP FUNCTION stations_touch_updated_at()")
            .await?;
        // Dropping the columns drops the index with them.
        db.execute_unprepared(
            "ALTER TABLE stations
                DROP CONSTRAINT stations_lng_range,
                DROP CONSTRAINT stations_lat_range,
                DROP COLUMN updated_at,
                DROP COLUMN created_at",
        )
        .await?;
        Ok(())
    }
}
