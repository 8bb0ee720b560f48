//! Indexes for geographic queries.
//!
//! - `stations_sphere_idx`: a GiST index on `sphere_point(lat, lng)`, the station's position
//!   as a 3-D point on the unit sphere (a `cube` from PostgreSQL's contrib extension). It
//!   answers "nearest first" (`<->`, k-nearest-neighbour search) and "within a radius"
//!   (containment in an enlarged cube). Straight-line distance between unit vectors orders
//!   points exactly as great-circle distance does, and converts to it with `2 asin(d / 2)`.
//! - `stations_point_idx`: a GiST index on `point(lng, lat)`, for bounding boxes.
//!
//! `cube` is a trusted extension (PostgreSQL 13+), so a database owner without superuser
//! rights can create it. Its companion `earthdistance` is not trusted, which is why the one
//! function needed from it is defined here instead. `sphere_point` names `cube` with its
//! schema, so that the index stays valid under any `search_path` (autovacuum, pg_restore).
//!
//! `down()` drops the extension only if `up()` created it (recorded in the index's comment),
//! so the schema is left exactly as it was found.

use sea_orm_migration::prelude::{
    ConnectionTrait, DbErr, DeriveMigrationName, MigrationTrait, SchemaManager, async_trait,
};
use sea_orm_migration::sea_orm::Statement;

const CREATED_CUBE: &str = "created extension cube";

/// The schema holding the `cube` extension, quoted for SQL, if it is installed.
async fn cube_schema(db: &impl ConnectionTrait) -> Result<Option<String>, DbErr> {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT quote_ident(n.nspname) AS schema FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'cube'",
    ))
    .await?
    .map(|row| row.try_get::<String>("", "schema"))
    .transpose()
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let (schema, created) = match cube_schema(db).await? {
            Some(schema) => (schema, false),
            None => {
                db.execute_unprepared("CREATE EXTENSION cube").await?;
                let schema = cube_schema(db).await?.ok_or_else(|| {
                    DbErr::Migration("CREATE EXTENSION cube left no extension".to_owned())
                })?;
                (schema, true)
            }
        };
        // OR REPLACE because `migrate fresh` drops tables but not functions.
        db.execute_unprepared(&format!(
            "CREATE OR REPLACE FUNCTION sphere_point(lat double precision, lng double precision)
                RETURNS {schema}.cube
                LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
                AS $$ SELECT {schema}.cube(ARRAY[
                    cos(radians(lat)) * cos(radians(lng)),
                    cos(radians(lat)) * sin(radians(lng)),
                    sin(radians(lat))]) $$"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE INDEX stations_sphere_idx ON stations USING gist (sphere_point(lat, lng))",
        )
        .await?;
        if created {
            db.execute_unprepared(&format!(
                "COMMENT ON INDEX stations_sphere_idx IS '{CREATED_CUBE}'"
            ))
            .await?;
        }
        db.execute_unprepared(
            "CREATE INDEX stations_point_idx ON stations USING gist (point(lng, lat))",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let comment: Option<String> = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT obj_description('stations_sphere_idx'::regclass, 'pg_class') AS comment",
            ))
            .await?
            .and_then(|row| row.try_get("", "comment").ok());
        db.execute_unprepared("DROP INDEX stations_point_idx")
            .await?;
        db.execute_unprepared("DROP INDEX stations_sphere_idx")
            .await?;
        db.execute_unprepared("DROP FUNCTION sphere_point(double precision, double precision)")
            .await?;
        if comment.as_deref() == Some(CREATED_CUBE) {
            db.execute_unprepared("DROP EXTENSION cube").await?;
        }
        Ok(())
    }
}
