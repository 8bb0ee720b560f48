//! Adds what a station needs to be found by people and by other systems: a `name`, a short
//! unique `code` and an optional `elevation_m`.
//!
//! Rows that exist already get a deterministic name and code derived from their id
//! (`Station 7`, `S7`), so the NOT NULL and UNIQUE constraints can be added in the same step.

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
                ADD COLUMN code        varchar(32),
                ADD COLUMN name        text,
                ADD COLUMN elevation_m double precision",
        )
        .await?;
        db.execute_unprepared("UPDATE stations SET code = 'S' || id, name = 'Station ' || id")
            .await?;
        db.execute_unprepared(
            "ALTER TABLE stations
                ALTER COLUMN code SET NOT NULL,
                ALTER COLUMN name SET NOT NULL,
                ADD CONSTRAINT stations_code_key UNIQUE (code),
                ADD CONSTRAINT stations_code_not_blank CHECK (btrim(code) <> ''),
                ADD CONSTRAINT stations_name_not_blank CHECK (btrim(name) <> '')",
        )
        .await?;
        // Keyset pagination ordered by name reads this index in either direction.
        db.execute_unprepared("CREATE INDEX stations_name_id_idx ON stations (name, id)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the columns drops their constraints and the index with them.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE stations
                    DROP COLUMN elevation_m,
                    DROP COLUMN name,
                    DROP COLUMN code",
            )
            .await?;
        Ok(())
    }
}
