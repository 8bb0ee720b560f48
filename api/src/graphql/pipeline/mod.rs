//! The policies every GraphQL operation passes, whatever carried it (GET, POST, a batch, a
//! persisted query, a WebSocket): each one an async-graphql extension
//! (<https://docs.rs/async-graphql/7/async_graphql/extensions/index.html>) in a file of its own,
//! hooking the stage it needs. `schema::build_schema` lists them in order, outermost first:
//!
//! 1. [`telemetry`]: times the operation; metrics and the request span get its name and outcome.
//! 2. [`error_codes`]: every error leaves with a stable `extensions.code`.
//! 3. [`documents`]: persisted queries and the parsed-document store; nesting checked before
//!    parsing.
//! 4. [`operation_transport`]: a GET carries no mutation, plain HTTP no subscription.
//! 5. [`authorization`]: who may run this kind of operation.
//! 6. [`cost`]: fields, depth and complexity within the configured limits.
//! 7. [`subscription_limit`]: subscriptions per WebSocket connection.
//! 8. [`database_gate`]: no execution while the database is known to be down.
//! 9. [`deadline`]: execution within `server.request_timeout_secs`.
//!
//! A refusal by any of them is a GraphQL request error (no `data`, no `path`), which the
//! transport answers with the status its code calls for.

pub mod authorization;
pub mod cost;
pub mod database_gate;
pub mod deadline;
pub mod documents;
pub mod error_codes;
pub mod operation_transport;
pub mod subscription_limit;
pub mod telemetry;

use std::any::TypeId;

use async_graphql::{
    ObjectType, SchemaBuilder, SubscriptionType,
    extensions::{ExtensionContext, ExtensionFactory},
};
use axum::http::HeaderValue;

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Get,
    Post,
    WebSocket,
}

/// What the transport tells the policies about a request, in its data.
#[derive(Debug, Clone)]
pub struct Origin {
    pub transport: Transport,
    /// The `Authorization` header (or, over a WebSocket, its equivalent in `connection_init`).
    pub authorization: Option<HeaderValue>,
}

impl Origin {
    /// The origin the transport attached to `request`, or, over a WebSocket, to its
    /// connection.
    pub fn of<'a>(
        ctx: &ExtensionContext<'a>,
        request: &'a async_graphql::Request,
    ) -> Option<&'a Self> {
        request
            .data
            .get(&TypeId::of::<Self>())
            .and_then(|data| data.downcast_ref())
            .or_else(|| ctx.data_opt::<Self>())
    }
}

/// A policy of the pipeline.
pub trait Policy: ExtensionFactory {
    /// Whether the policy hooks `Extension::resolve`, which runs on every field. Fields that
    /// are answered in one pass (`types::edges`) never reach such a hook, so they step aside
    /// when any policy declares one.
    const HOOKS_EVERY_FIELD: bool;
}

/// Whether any policy hooks every field; in the schema's data.
#[derive(Debug, Clone, Copy)]
pub struct FieldHooks(pub bool);

/// The schema builder as policies are added to it, in order.
pub struct Policies<Q, M, S> {
    builder: SchemaBuilder<Q, M, S>,
    hooks_every_field: bool,
}

impl<Q, M, S> Policies<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    pub fn new(builder: SchemaBuilder<Q, M, S>) -> Self {
        Self {
            builder,
            hooks_every_field: false,
        }
    }

    /// Adds `policy` inside the ones added before it.
    pub fn then<P: Policy>(mut self, policy: P) -> Self {
        self.hooks_every_field |= P::HOOKS_EVERY_FIELD;
        self.builder = self.builder.extension(policy);
        self
    }

    pub fn into_builder(self) -> SchemaBuilder<Q, M, S> {
        self.builder.data(FieldHooks(self.hooks_every_field))
    }
}
