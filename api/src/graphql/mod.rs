//! The GraphQL schema: types, query and mutation fields.

pub mod document_analysis;
pub mod document_store;
pub mod limits;
pub mod loaders;
mod mutation;
pub mod pipeline;
mod query;
mod schema;
pub mod subscription;
pub mod types;

pub use schema::{AppSchema, SchemaParts, build_schema, sdl};
