//! The schema: query and mutation roots merged from one object per entity.

use async_graphql::{EmptySubscription, MergedObject, Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;

use super::limits::Limits;
use super::mutation::station::StationMutation;
use super::query::station::StationQuery;
use crate::configuration::GraphqlSettings;

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(StationQuery);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(StationMutation);

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
}

/// The schema served over HTTP, built once at start-up; resolvers reach the database through
/// its data, so a missing handle is a start-up error rather than a request-time one.
pub fn build_schema(
    db: DatabaseConnection,
    settings: &GraphqlSettings,
    limits: Limits,
) -> AppSchema {
    let mut builder = builder()
        .data(db)
        .data(limits)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if !settings.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in GraphQL SDL, as checked in at `api/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
