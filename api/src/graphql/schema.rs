//! The schema: query and mutation roots merged from one object per entity, the batch loaders
//! of related rows, and the policies every operation passes, in order.

use std::sync::Arc;

use async_graphql::{EmptySubscription, MergedObject, Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;

use super::document_store::DocumentStore;
use super::limits::Limits;
use super::loaders::{Batches, PerOperationBatches};
use super::mutation::observation::ObservationMutation;
use super::mutation::station::StationMutation;
use super::pipeline::{
    Policies, authorization::Authorization, cost::Cost, database_gate::DatabaseGate,
    deadline::Deadline, documents::Documents, error_codes::ErrorCodes, read_only_get::ReadOnlyGet,
    telemetry::Telemetry,
};
use super::query::observation::ObservationQuery;
use super::query::station::StationQuery;
use crate::auth::Authenticator;
use crate::database::health::DatabaseHealth;
use crate::metrics::Metrics;

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(StationQuery, ObservationQuery);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(StationMutation, ObservationMutation);

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
}

/// What the schema's resolvers and policies work with.
pub struct SchemaParts {
    pub db: DatabaseConnection,
    pub limits: Limits,
    pub introspection: bool,
    pub documents: Arc<DocumentStore>,
    pub authenticator: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<DatabaseHealth>,
}

/// The schema served over HTTP, built once at start-up. Resolvers reach the database through
/// its data, so a missing handle is a start-up error rather than a request-time one.
pub fn build_schema(parts: SchemaParts) -> AppSchema {
    let limits = parts.limits;
    let batches = Arc::new(Batches::new(parts.db.clone()));
    let mut builder = Policies::new(builder())
        .then(Telemetry::new(parts.metrics))
        .then(ErrorCodes)
        .then(Documents::new(parts.documents))
        .then(ReadOnlyGet)
        .then(Authorization::new(parts.authenticator))
        .then(Cost::new(limits))
        .then(DatabaseGate::new(parts.health))
        .then(Deadline::new(limits.request_timeout))
        .into_builder()
        // Not a policy: every operation's own batch loaders, in its execution data.
        .extension(PerOperationBatches::new(Arc::clone(&batches)))
        .data(batches)
        .data(parts.db)
        .data(limits);
    if !parts.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in GraphQL SDL, as checked in at `api/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
