//! Query fields, one module per entity, merged into the root in `schema.rs`.

pub mod observation;
pub mod station;
