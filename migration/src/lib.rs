//! The stations schema and its evolution: stations, then what they observe.
//!
//! Every step is written as plain PostgreSQL DDL rather than through the schema builder: the
//! builder's defaults change between releases (sea-query 1.0 turned auto-increment keys into
//! identity columns, for instance), and a reviewer should see exactly what each step does to
//! the database. Each `down()` undoes its `up()` exactly; tests in the API crate migrate up,
//! all the way down and up again with rows present.
//!
//! Steps never run as a side effect of anything else: `sea-orm-cli migrate up`,
//! `cargo run -p migration -- up`, `stations-api migrate up` and the API's
//! `database.migrate_on_start` setting all call this [`Migrator`].

pub use m20261205_000012_refresh_rollup_in_background::REFRESH_LOCK as ROLLUP_REFRESH_LOCK;
pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::{MigrationTrait, async_trait};

mod m20261125_000001_create_stations;
mod m20261125_000002_add_station_name_code_elevation;
mod m20261125_000003_add_station_timestamps_and_coordinate_checks;
mod m20261125_000004_add_station_geo_indexes;
mod m20261201_000005_create_observations;
mod m20261201_000006_notify_live_changes;
mod m20261205_000007_add_station_name_trigram_index;
mod m20261205_000008_create_observations_hourly;
mod m20261205_000009_add_station_name_lower;
mod m20261205_000010_drop_rollup_station_foreign_key;
mod m20261205_000011_notify_trace_context;
mod m20261205_000012_refresh_rollup_in_background;

/// Every migration of the stations schema, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_stations::Migration),
            Box::new(m20261125_000002_add_station_name_code_elevation::Migration),
            Box::new(m20261125_000003_add_station_timestamps_and_coordinate_checks::Migration),
            Box::new(m20261125_000004_add_station_geo_indexes::Migration),
            Box::new(m20261201_000005_create_observations::Migration),
            Box::new(m20261201_000006_notify_live_changes::Migration),
            Box::new(m20261205_000007_add_station_name_trigram_index::Migration),
            Box::new(m20261205_000008_create_observations_hourly::Migration),
            Box::new(m20261205_000009_add_station_name_lower::Migration),
            Box::new(m20261205_000010_drop_rollup_station_foreign_key::Migration),
            Box::new(m20261205_000011_notify_trace_context::Migration),
            Box::new(m20261205_000012_refresh_rollup_in_background::Migration),
        ]
    }
}
