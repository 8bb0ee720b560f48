//! The schema: query and mutation roots merged from one object per entity, the batch loaders
//! of related rows, and the pipeline of policies every operation passes.

use std::sync::Arc;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};

use super::document_store::DocumentStore;
use super::limits::Limits;
use super::mutation::observation::ObservationMutation;
use super::mutation::station::StationMutation;
use super::pipeline::{
    Pipeline, authorization::Authorization, cost::Cost, database_gate::DatabaseGate,
    deadline::Deadline, documents::Documents, loaders::Loaders,
    operation_transport::OperationTransport, read_routing::ReadRouting, telemetry::Telemetry,
};
use super::query::observation::ObservationQuery;
use super::query::station::StationQuery;
use super::subscription::{observation::ObservationSubscription, station::StationSubscription};
use crate::auth::Authenticator;
use crate::configuration::Settings;
use crate::database::standbys::{ReadConnection, Standbys};
use crate::health::database::DatabaseHealth;
use crate::live::{LiveHub, subscription_limit::SubscriptionLimit};
use crate::metrics::Metrics;

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(StationQuery, ObservationQuery);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(StationMutation, ObservationMutation);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(StationSubscription, ObservationSubscription);

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
}

/// What the schema's resolvers and policies share with the rest of the server, beside its
/// settings.
pub struct SchemaParts {
    pub documents: DocumentStore,
    pub authenticator: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    /// The database's health, whose outage the database gate answers at once.
    pub health: Arc<DatabaseHealth>,
    pub live: Arc<LiveHub>,
    /// The primary, and the standbys queries may read instead.
    pub standbys: Arc<Standbys>,
}

/// The schema served over HTTP, built once at start-up. Resolvers reach the database through
/// its data, so a missing handle is a start-up error rather than a request-time one.
pub fn build_schema(settings: &Settings, parts: SchemaParts) -> AppSchema {
    let primary = parts.standbys.primary().clone();
    let limits = Limits::new(&settings.graphql, &settings.server);
    let subscriptions = &settings.subscriptions;
    // Every operation passes these, in this order (`graphql::pipeline`).
    let pipeline = Pipeline::new()
        .then(Telemetry::new(
            Arc::clone(&parts.metrics),
            settings.telemetry.field_spans,
        ))
        .then(Documents::new(Arc::new(parts.documents)))
        .then(Cost::new(&settings.graphql, subscriptions.max_complexity))
        .then(OperationTransport)
        .then(Authorization::new(
            Arc::clone(&parts.authenticator),
            limits.request_timeout,
        ))
        .then(DatabaseGate::new(parts.health, primary.clone()))
        .then(ReadRouting::new(Arc::clone(&parts.standbys)))
        .then(Deadline::new(limits.request_timeout))
        .then(Loaders)
        .then(SubscriptionLimit::new(subscriptions.max_per_connection));
    let mut builder = builder()
        .data(pipeline.field_hooks())
        .extension(pipeline.into_extension())
        // Where resolvers read unless the operation was routed elsewhere: the primary.
        .data(ReadConnection::primary(primary.clone()))
        .data(parts.metrics)
        .data(parts.live)
        .data(primary)
        .data(limits);
    if !settings.graphql.introspection {
        // "Did you mean …?" in validation errors would name the schema's fields anyway.
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The schema in GraphQL SDL, as checked in at `api/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
