//! Database operations, one module per entity. Functions take any connection or transaction
//! and return the driver's errors, or a write error that names what the client did wrong.

pub mod observation;
pub mod page;
pub mod rollup;
pub mod series;
mod sql;
pub mod station;
