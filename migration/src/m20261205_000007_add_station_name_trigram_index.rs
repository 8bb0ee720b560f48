//! A trigram index on `stations.name`, so that `nameContains` (a case-insensitive substring,
//! `name ILIKE '%…%'`) reads the index instead of every row.
//!
//! - `pg_trgm` ships in PostgreSQL's contrib (part of the server package on Debian and in the
//!   official image) and is a trusted extension: a database owner without superuser rights may
//!   create it.
//! - GIN rather than GiST: GIN answers `ILIKE` with fewer rows to recheck, and its pending list
//!   keeps inserts cheap.
//! - Not built `CONCURRENTLY`: sea-orm-migration runs each step in a transaction, where
//!   PostgreSQL refuses `CREATE INDEX CONCURRENTLY`. The build holds writes to `stations` for
//!   its duration (about a second per 100,000 stations); on a table too large for that, build
//!   it by hand with `CONCURRENTLY` under the same name first, and this step leaves it be.
//! - A term shorter than 3 characters holds no trigram: PostgreSQL then reads `stations` in id
//!   order and stops at the page's end, which is fast for common terms and slow for a rare one.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS stations_name_trgm_idx
                 ON stations USING gin (name gin_trgm_ops)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX stations_name_trgm_idx")
            .await?;
        // The extension goes too, unless something else in the database uses it.
        db.execute_unprepared(
            "DO $$
             BEGIN
                 DROP EXTENSION IF EXISTS pg_trgm;
             EXCEPTION WHEN dependent_objects_still_exist THEN
                 NULL;
             END $$",
        )
        .await?;
        Ok(())
    }
}
