//! The GraphQL schema: types, query and mutation fields.

pub mod document_cache;
pub mod limits;
mod mutation;
mod query;
mod schema;
pub mod types;

pub use schema::{AppSchema, build_schema, sdl};
