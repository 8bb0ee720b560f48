//! SeaORM entities: one module per table, matching the schema after the last migration in
//! the `migration` crate. Entities only: queries live in the API's service layer.
//!
//! A test in the API crate compares these declarations with a freshly migrated database, so
//! an entity and the migrations that shape its table cannot drift apart.

pub mod observation;
pub mod station;
