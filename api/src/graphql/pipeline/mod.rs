//! The policies every GraphQL operation passes, whatever carried it (GET, POST, a batch, a
//! persisted query, a WebSocket), each in a file of its own, and the one async-graphql
//! extension (<https://docs.rs/async-graphql/7/async_graphql/extensions/index.html>) that runs
//! them, stage by stage, in this order:
//!
//! - the whole operation: [`telemetry`] times it (metrics, and the request span's operation
//!   name), around [`error_codes`], which gives every error a stable `extensions.code`;
//! - before validation: [`documents`] (persisted queries and the parsed-document store,
//!   nesting checked before parsing), [`cost`]'s bound on the whole document (what validation
//!   will walk, and which operation runs), [`operation_transport`] (a GET carries no mutation,
//!   plain HTTP no subscription), then [`authorization`] (who may run this kind of operation);
//! - after validation: [`cost`]'s depth and complexity;
//! - execution: [`database_gate`] (none while the database is known to be down) around
//!   [`deadline`] (within `server.request_timeout_secs`), with each operation's own batch
//!   loaders (`loaders`);
//! - a subscription: [`subscription_limit`], per WebSocket connection.
//!
//! One extension rather than one per policy: async-graphql runs every extension's hooks for
//! every operation and every field, so each extension costs every request a little, whether it
//! hooks a stage or not (measured: bench/run, README's Performance section).
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

use std::{
    any::TypeId,
    sync::{Arc, OnceLock},
    time::Instant,
};

use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest,
        NextRequest, NextSubscribe, NextValidation,
    },
    futures_util::stream::BoxStream,
    parser::types::OperationType,
};
use axum::http::HeaderValue;

use crate::graphql::loaders::{Batches, OperationBatches};
use authorization::Authorization;
use cost::Cost;
use database_gate::DatabaseGate;
use deadline::Deadline;
use documents::Documents;
use subscription_limit::SubscriptionLimit;
use telemetry::{OperationRecord, Telemetry};

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
    /// When an HTTP request must be answered, all its operations included; none over a
    /// WebSocket, where each operation has `server.request_timeout_secs` to itself.
    pub deadline: Option<tokio::time::Instant>,
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

/// Whether the pipeline hooks `Extension::resolve`, which would run on every field; in the
/// schema's data. Fields that are answered in one pass (`types::edges`) never reach such a
/// hook, so they step aside when it does. It does not: set this if a policy ever needs to.
#[derive(Debug, Clone, Copy)]
pub struct FieldHooks(pub bool);

/// Every policy, in the schema's one extension.
pub struct Pipeline {
    pub telemetry: Telemetry,
    pub documents: Documents,
    pub authorization: Authorization,
    pub cost: Cost,
    pub subscription_limit: SubscriptionLimit,
    pub database_gate: DatabaseGate,
    pub deadline: Deadline,
    /// Not a policy: each operation gets batch loaders of its own.
    pub batches: Arc<Batches>,
}

impl Pipeline {
    /// The pipeline as the schema's extension.
    pub fn into_extension(self) -> PipelineExtension {
        PipelineExtension(Arc::new(self))
    }
}

pub struct PipelineExtension(Arc<Pipeline>);

impl ExtensionFactory for PipelineExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation {
            pipeline: Arc::clone(&self.0),
            record: OperationRecord::default(),
            kind: OnceLock::new(),
        })
    }
}

/// One operation passing the pipeline.
struct Operation {
    pipeline: Arc<Pipeline>,
    record: OperationRecord,
    /// Query, mutation or subscription, once the document is known.
    kind: OnceLock<OperationType>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for Operation {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let mut response = next.run(ctx).await;
        error_codes::assign(&mut response);
        self.pipeline
            .telemetry
            .finish(&self.record, &response, started.elapsed());
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.record
            .named_by_client(request.operation_name.as_deref());
        let pipeline = &self.pipeline;
        let mut request = pipeline.documents.prepare(request)?;
        let kind = pipeline.cost.bound_document(&mut request)?;
        let _ = self.kind.set(kind);
        let origin = Origin::of(ctx, &request).cloned();
        operation_transport::check(origin.as_ref(), &mut request)?;
        pipeline
            .authorization
            .admit(origin.as_ref(), &mut request)
            .await?;
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        self.pipeline.cost.check(result, self.kind.get().copied())
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.record.executed_as(operation_name);
        let pipeline = &self.pipeline;
        let mut data = async_graphql::Data::default();
        data.insert(OperationBatches::new(Arc::clone(&pipeline.batches)));
        let execution = next.run_with_data(ctx, operation_name, data);
        pipeline
            .database_gate
            .guard(pipeline.deadline.bound(ctx, execution))
            .await
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        self.pipeline
            .subscription_limit
            .subscribe(ctx, stream, next)
    }
}
