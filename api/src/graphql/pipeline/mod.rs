//! The policies every GraphQL operation passes, whatever carried it (GET, POST, a batch, a
//! persisted query, a WebSocket). The list that runs is written where the schema is built
//! (`graphql::schema`), top to bottom, each policy in a file of its own:
//!
//! ```text
//! Pipeline::new()
//!     .then(Telemetry)          every operation timed, labelled and traced, refusals included
//!     .then(Documents)          persisted queries, the parsed-document store, the parser
//!     .then(Cost)               what validation will walk; which operation runs; depth, complexity
//!     .then(OperationTransport) a GET carries no mutation, plain HTTP no subscription
//!     .then(Authorization)      who is calling, and may they run this kind of operation
//!     .then(DatabaseGate)       no execution while the database is known to be down
//!     .then(ReadRouting)        a query reads a standby that holds its client's writes
//!     .then(Deadline)           execution within server.request_timeout_secs
//!     .then(Loaders)            each operation's own batch loaders
//!     .then(SubscriptionLimit)  operations at once on one WebSocket
//! ```
//!
//! A policy implements [`Policy`], whose hooks all let the operation through by default, so it
//! overrides only the stages it cares about: [`Policy::prepare`] (before validation, the
//! operation known), [`Policy::validated`] (what validation measured),
//! [`Policy::around_execute`] (the first policy's wraps all the others'),
//! [`Policy::around_resolve`] (each field, only while a policy asks for it),
//! [`Policy::subscribe`] (every operation of a WebSocket, as a stream) and [`Policy::finish`]
//! (the response, every error with its code). The operation a request runs is worked out once
//! ([`PreparedOperation`]) and shared by every hook.
//!
//! The list is one async-graphql extension
//! (<https://docs.rs/async-graphql/7/async_graphql/extensions/index.html>), composed at compile
//! time: async-graphql runs every extension's hooks for every operation and every field, so an
//! extension per policy would cost every request a little for each (measured: bench/run,
//! docs/performance.md).
//!
//! A refusal by any of them is a GraphQL request error (no `data`, no `path`), which the
//! transport answers with the status of its `ErrorCode`.
//!
//! ## Rules that are the transport's
//!
//! Some rules are broken before there is an operation to give the policies, or concern the
//! connection rather than an operation. They stay with the transport, in front:
//!
//! | Rule | Refusal | Where | Why not a policy |
//! | --- | --- | --- | --- |
//! | `Host` names loopback (loopback servers) | 421 `MISDIRECTED_REQUEST` | `connections` | every path, the IDE and health checks included |
//! | body is `application/json`, within `server.max_body_bytes`, in time | 415, 413, 408 | `routes::graphql` | no operation exists before the body is read |
//! | `Accept` allows a GraphQL response | 406 `NOT_ACCEPTABLE` | `routes::graphql` | decides how even a refusal is encoded |
//! | parameters well formed, no `access_token` in the URL | 400 `BAD_REQUEST` | `routes::graphql::wire` | no operation exists before they are read |
//! | batch within `graphql.max_batch_size` | 400 `BATCH_TOO_LARGE`, `BATCH_NOT_ALLOWED` | `routes::graphql::wire` | the transport splits a batch into operations; each policy sees one |
//! | WebSocket: origin, sub-protocol, sockets per replica | 403, 400, 503 before the upgrade | `routes::graphql::websocket` | the connection, not an operation |
//! | WebSocket: message size, `connection_init` in time, idle, slow reader | close 1009, 4408, 1000, 1008 | `live::socket` | the connection, not an operation |
//!
//! A WebSocket's `connection_init` is authenticated by the [`authorization`] policy's own
//! [`Authorization::admit_connection`], called by the transport: the connection, not an
//! operation, is admitted there; each operation over it then passes the whole list.

pub mod authorization;
pub mod cost;
pub mod database_gate;
pub mod deadline;
pub mod documents;
pub mod loaders;
pub mod operation_transport;
pub mod read_routing;
pub mod telemetry;

use std::{
    any::TypeId,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_graphql::{
    Data, QueryPathNode, QueryPathSegment, Request, Response, ServerError, ServerResult,
    ValidationResult, Value,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest,
        NextRequest, NextResolve, NextSubscribe, NextValidation, ResolveInfo,
    },
    futures_util::stream::BoxStream,
    parser::types::OperationType,
};
use axum::http::{HeaderMap, HeaderValue, header};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::ErrorCode;
use crate::graphql::document_analysis::selected_operation;
use crate::graphql::document_store::DocumentHash;
use crate::telemetry::traces;

#[cfg(doc)]
use authorization::Authorization;

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
    /// The `X-Read-Your-Writes` header ([`read_routing`]).
    pub read_your_writes: Option<HeaderValue>,
    /// `X-Read-From: primary`.
    pub read_from_primary: bool,
}

impl Origin {
    /// The origin of an HTTP request with `headers`.
    pub fn of_http(
        transport: Transport,
        headers: &HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self {
            transport,
            authorization: headers.get(header::AUTHORIZATION).cloned(),
            deadline: Some(deadline),
            read_your_writes: headers.get(read_routing::TOKEN_HEADER).cloned(),
            read_from_primary: headers
                .get(read_routing::READ_FROM_HEADER)
                .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"primary")),
        }
    }

    /// The origin the transport attached to `request`, or, over a WebSocket, to its
    /// connection.
    fn of(ctx: &ExtensionContext<'_>, request: &Request) -> Option<Self> {
        request
            .data
            .get(&TypeId::of::<Self>())
            .and_then(|data| data.downcast_ref::<Self>())
            .or_else(|| ctx.data_opt::<Self>())
            .cloned()
    }
}

/// The caller's trace, from a WebSocket's `connection_init` payload (`traceparent`,
/// `tracestate`), in the connection's data: a browser cannot set headers on the upgrade, so
/// its clients send the trace there. Each operation of the connection joins it.
#[derive(Debug, Clone)]
pub struct CallersTrace(pub opentelemetry::Context);

/// Whether the pipeline watches every field ([`Policy::resolves_fields`]); in the schema's
/// data. Fields answered in one pass (`types::station::edges`) never reach the hook, so they
/// step aside while this is set.
#[derive(Debug, Clone, Copy)]
pub struct FieldHooks(pub bool);

/// The field being resolved, as [`Policy::around_resolve`] sees it.
pub struct ResolvingField<'a> {
    /// The type whose field it is (`Station`).
    pub parent_type: &'a str,
    pub name: &'a str,
    /// Its type, qualified (`[Observation!]!`).
    pub return_type: &'a str,
    /// Where it is in the response (`stations.edges.0.node.name`).
    pub path: &'a QueryPathNode<'a>,
    /// Whether it is part of introspection (`__schema`, `__typename`).
    pub is_for_introspection: bool,
    /// Whether this is one item of a list field, which async-graphql resolves again, item by
    /// item, inside the field's own resolution (`stations.edges.1`).
    pub is_list_item: bool,
}

impl<'a> ResolvingField<'a> {
    fn of(info: &ResolveInfo<'a>) -> Self {
        Self {
            parent_type: info.parent_type,
            name: info.name,
            return_type: info.return_type,
            path: info.path_node,
            is_for_introspection: info.is_for_introspection,
            is_list_item: matches!(info.path_node.segment, QueryPathSegment::Index(_)),
        }
    }
}

/// The operation a request runs, worked out once its document is known.
#[derive(Debug, Clone)]
pub struct PreparedOperation {
    /// Its name in the document; `None` for an anonymous operation.
    pub name: Option<String>,
    pub kind: OperationType,
    /// The SHA-256 of the document's text, when the document came through [`documents`].
    pub hash: Option<DocumentHash>,
    /// How the request arrived; `None` when no transport said (a test's own schema call).
    pub origin: Option<Origin>,
}

/// A request on its way through [`Policy::prepare`].
pub struct Preparing {
    pub request: Request,
    pub origin: Option<Origin>,
    /// Set by the policy that finds the document's text.
    pub hash: Option<DocumentHash>,
    operation: Option<PreparedOperation>,
}

impl Preparing {
    /// The operation the request runs, worked out from its document (parsing it when no
    /// policy did yet) the first time a policy asks; or why the document does not say.
    pub fn operation(&mut self) -> ServerResult<&PreparedOperation> {
        let operation = match self.operation.take() {
            Some(operation) => operation,
            None => {
                let operation_name = self.request.operation_name.clone();
                let document = self.request.parsed_query()?;
                let Some((name, kind, _)) = selected_operation(document, operation_name.as_deref())
                else {
                    return Err(cost::unselectable(document, operation_name.as_deref()));
                };
                PreparedOperation {
                    name: name.map(str::to_owned),
                    kind,
                    hash: self.hash,
                    origin: self.origin.clone(),
                }
            }
        };
        Ok(self.operation.insert(operation))
    }
}

/// One operation's passage, as [`Policy::finish`] sees it.
#[derive(Default)]
pub struct OperationRecord {
    /// The `operationName` the client sent, whether or not the document has it.
    named_by_client: OnceLock<String>,
    prepared: OnceLock<PreparedOperation>,
    /// Whether it passed validation and ran.
    ran: AtomicBool,
    /// Its span in the request's trace, while traces are sent.
    span: OnceLock<tracing::Span>,
}

impl OperationRecord {
    pub fn named_by_client(&self) -> Option<&str> {
        self.named_by_client.get().map(String::as_str)
    }

    pub fn prepared(&self) -> Option<&PreparedOperation> {
        self.prepared.get()
    }

    pub fn ran(&self) -> bool {
        self.ran.load(Ordering::Relaxed)
    }

    /// Its span, when traces are sent.
    pub fn span(&self) -> Option<&tracing::Span> {
        self.span.get()
    }
}

/// One rule, or one service, every operation passes. Each hook lets the operation through
/// unchanged unless the policy overrides it.
pub trait Policy: Send + Sync + 'static {
    /// Before validation: may refuse the request, or add to its data. Policies run in the
    /// order of the list.
    fn prepare(&self, request: &mut Preparing) -> impl Future<Output = ServerResult<()>> + Send {
        let _ = request;
        std::future::ready(Ok(()))
    }

    /// After validation: may refuse what it measured (depth, complexity).
    fn validated(
        &self,
        operation: &PreparedOperation,
        result: &ValidationResult,
    ) -> ServerResult<()> {
        let _ = (operation, result);
        Ok(())
    }

    /// What the resolvers of this one operation may take from their context.
    fn execution_data(&self, data: &mut Data) {
        let _ = data;
    }

    /// Around execution: may refuse it, bound it, or watch it. The first policy of the list
    /// wraps all those after it.
    fn around_execute(
        &self,
        operation: &PreparedOperation,
        execution: impl Execution,
    ) -> impl Execution {
        let _ = operation;
        execution
    }

    /// Whether [`Policy::around_resolve`] should run; asked once, when the schema is built.
    /// async-graphql calls the field hook for every field of every operation, and a page's
    /// edges give up their one-pass answer for it ([`FieldHooks`]): no policy should ask
    /// unless it is switched on, and then measured.
    fn resolves_fields(&self) -> bool {
        false
    }

    /// Around one field's resolution, while some policy [`Policy::resolves_fields`]: may watch
    /// it. The first policy's wraps the others'.
    fn around_resolve(
        &self,
        field: &ResolvingField<'_>,
        resolution: impl Resolution,
    ) -> impl Resolution {
        let _ = field;
        resolution
    }

    /// Every operation of a WebSocket runs as a stream, through this hook, before it is
    /// prepared (async-graphql's order); the first policy's wraps the others'.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
    ) -> BoxStream<'s, Response> {
        let _ = ctx;
        stream
    }

    /// After the response is made, every error with its code; in the order of the list.
    fn finish(&self, record: &OperationRecord, response: &Response, elapsed: Duration) {
        let _ = (record, response, elapsed);
    }
}

/// An operation's execution as policies wrap it: a future that ends in its response.
pub trait Execution: Future<Output = Response> + Send {}

impl<F: Future<Output = Response> + Send> Execution for F {}

/// A field's resolution as policies wrap it: a future that ends in its value.
pub trait Resolution: Future<Output = ServerResult<Option<Value>>> + Send {}

impl<F: Future<Output = ServerResult<Option<Value>>> + Send> Resolution for F {}

/// The empty list.
impl Policy for () {}

/// A list and one more policy after it.
pub struct Then<First, Next>(First, Next);

impl<First: Policy, Next: Policy> Policy for Then<First, Next> {
    async fn prepare(&self, request: &mut Preparing) -> ServerResult<()> {
        self.0.prepare(request).await?;
        self.1.prepare(request).await
    }

    fn validated(
        &self,
        operation: &PreparedOperation,
        result: &ValidationResult,
    ) -> ServerResult<()> {
        self.0.validated(operation, result)?;
        self.1.validated(operation, result)
    }

    fn execution_data(&self, data: &mut Data) {
        self.0.execution_data(data);
        self.1.execution_data(data);
    }

    fn around_execute(
        &self,
        operation: &PreparedOperation,
        execution: impl Execution,
    ) -> impl Execution {
        self.0
            .around_execute(operation, self.1.around_execute(operation, execution))
    }

    fn resolves_fields(&self) -> bool {
        self.0.resolves_fields() || self.1.resolves_fields()
    }

    fn around_resolve(
        &self,
        field: &ResolvingField<'_>,
        resolution: impl Resolution,
    ) -> impl Resolution {
        self.0
            .around_resolve(field, self.1.around_resolve(field, resolution))
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
    ) -> BoxStream<'s, Response> {
        self.0.subscribe(ctx, self.1.subscribe(ctx, stream))
    }

    fn finish(&self, record: &OperationRecord, response: &Response, elapsed: Duration) {
        self.0.finish(record, response, elapsed);
        self.1.finish(record, response, elapsed);
    }
}

/// The policies, in the order they run.
pub struct Pipeline<Policies>(Policies);

impl Pipeline<()> {
    pub fn new() -> Self {
        Self(())
    }
}

impl Default for Pipeline<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Policies: Policy> Pipeline<Policies> {
    /// The list with `policy` after the others.
    pub fn then<Next: Policy>(self, policy: Next) -> Pipeline<Then<Policies, Next>> {
        Pipeline(Then(self.0, policy))
    }

    /// Whether some policy watches every field: the schema's [`FieldHooks`].
    pub fn field_hooks(&self) -> FieldHooks {
        FieldHooks(self.0.resolves_fields())
    }

    /// The list as the schema's one extension.
    pub fn into_extension(self) -> PipelineExtension<Policies> {
        PipelineExtension {
            resolves_fields: self.0.resolves_fields(),
            policies: Arc::new(self.0),
        }
    }
}

pub struct PipelineExtension<Policies> {
    policies: Arc<Policies>,
    resolves_fields: bool,
}

impl<Policies: Policy> ExtensionFactory for PipelineExtension<Policies> {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation {
            policies: Arc::clone(&self.policies),
            resolves_fields: self.resolves_fields,
            record: OperationRecord::default(),
        })
    }
}

/// One operation passing the pipeline.
struct Operation<Policies> {
    policies: Arc<Policies>,
    /// Whether [`Policy::around_resolve`] runs.
    resolves_fields: bool,
    record: OperationRecord,
}

#[async_graphql::async_trait::async_trait]
impl<Policies: Policy> Extension for Operation<Policies> {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let mut response = if traces::enabled() {
            // Named once it has run (`telemetry::Telemetry::finish`).
            let span = operation_span();
            let _ = self.record.span.set(span.clone());
            next.run(ctx).instrument(span).await
        } else {
            next.run(ctx).await
        };
        // Every error leaves with a stable code; async-graphql's own errors carry none.
        for error in &mut response.errors {
            if ErrorCode::of(error).is_none() {
                ErrorCode::for_uncoded(error).mark(error);
            }
        }
        self.policies
            .finish(&self.record, &response, started.elapsed());
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(name) = &request.operation_name {
            let _ = self.record.named_by_client.set(name.clone());
        }
        let mut preparing = Preparing {
            origin: Origin::of(ctx, &request),
            request,
            hash: None,
            operation: None,
        };
        self.policies.prepare(&mut preparing).await?;
        // Left to validation to refuse when no policy needed the operation and the document
        // does not say which it is.
        if preparing.operation().is_ok()
            && let Some(operation) = preparing.operation.take()
        {
            // Over a WebSocket no `request` hook runs, nor `finish`: the span is named here.
            if let Some(span) = self.record.span()
                && operation.origin.as_ref().map(|origin| origin.transport)
                    == Some(Transport::WebSocket)
            {
                telemetry::name_span(span, Some(&operation), operation.name.as_deref());
            }
            let _ = self.record.prepared.set(operation);
        }
        next.run(ctx, preparing.request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if let Some(operation) = self.record.prepared() {
            self.policies
                .validated(operation, &result)
                .map_err(|refusal| vec![refusal])?;
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.record.ran.store(true, Ordering::Relaxed);
        let mut data = Data::default();
        self.policies.execution_data(&mut data);
        let execution = next.run_with_data(ctx, operation_name, data);
        match self.record.prepared() {
            Some(operation) => self.policies.around_execute(operation, execution).await,
            // Validation accepted what no policy could place: nothing to wrap it in.
            None => execution.await,
        }
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if !self.resolves_fields {
            return next.run(ctx, info).await;
        }
        let field = ResolvingField::of(&info);
        self.policies
            .around_resolve(&field, next.run(ctx, info))
            .await
    }

    /// Every operation of a WebSocket, as a stream: while traces are sent, in a span of its own
    /// (a child of the socket's, or of the caller's span named in `connection_init`), named
    /// once it is prepared.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let stream = next.run(ctx, self.policies.subscribe(ctx, stream));
        if !traces::enabled() {
            return stream;
        }
        let span = operation_span();
        if let Some(CallersTrace(callers)) = ctx.data_opt::<CallersTrace>() {
            // Before the span is first entered, when it is started under this parent.
            let _ = span.set_parent(callers.clone());
        }
        let _ = self.record.span.set(span.clone());
        Box::pin(InSpan { stream, span })
    }
}

/// An operation's span, named later, when the operation is known.
fn operation_span() -> tracing::Span {
    tracing::info_span!(
        "graphql",
        otel.status_code = Empty,
        graphql.operation.name = Empty,
        graphql.operation.type = Empty,
        graphql.document.hash = Empty,
        error.type = Empty,
    )
}

/// A stream polled inside a span: what `Instrument` does for a future.
struct InSpan<'s> {
    stream: BoxStream<'s, Response>,
    span: tracing::Span,
}

impl async_graphql::futures_util::Stream for InSpan<'_> {
    type Item = Response;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Response>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        this.stream.as_mut().poll_next(cx)
    }
}
