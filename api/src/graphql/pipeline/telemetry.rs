//! What each operation was and how it went, for the metrics (`stations_graphql_requests_total`,
//! `stations_graphql_request_duration_seconds`) and the request's log span: its name, its
//! outcome ("ok" or the first error's code) and its duration, refusals included. The log
//! span names it as it ran, else as the client named it, else "anonymous"; the metrics label
//! it by the name it ran under, and every operation refused before it ran as "unvalidated".
//! Names are cut at 64 characters. While traces are sent, it also names the operation's span
//! ("query Stations") and marks it failed with the first error's code; and with
//! `telemetry.field_spans`, gives every field a span of its own, at `debug`.

use std::{borrow::Cow, sync::Arc, time::Duration};

use async_graphql::{Response, parser::types::OperationType};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{OperationRecord, Policy, PreparedOperation, Resolution, ResolvingField};
use crate::error::ErrorCode;
use crate::metrics::Metrics;
use crate::telemetry::traces;

pub struct Telemetry {
    metrics: Arc<Metrics>,
    /// Whether each field has a span: `telemetry.field_spans`, while traces are sent.
    field_spans: bool,
}

impl Telemetry {
    pub fn new(metrics: Arc<Metrics>, field_spans: bool) -> Self {
        Self {
            metrics,
            field_spans: field_spans && traces::enabled(),
        }
    }
}

impl Policy for Telemetry {
    fn resolves_fields(&self) -> bool {
        self.field_spans
    }

    /// The field's span, under its parent field's (or the operation's); none for the items of
    /// a list, whose fields sit directly under the list field's.
    fn around_resolve(
        &self,
        field: &ResolvingField<'_>,
        resolution: impl Resolution,
    ) -> impl Resolution {
        let span = if self.field_spans && !field.is_for_introspection && !field.is_list_item {
            field_span(field)
        } else {
            tracing::Span::none()
        };
        resolution.instrument(span)
    }

    /// Records an operation that ended with `response` after `elapsed`.
    fn finish(&self, record: &OperationRecord, response: &Response, elapsed: Duration) {
        let outcome = response.errors.first().map_or("ok", ErrorCode::label_of);
        let ran_as = record
            .prepared()
            .filter(|_| record.ran())
            .and_then(|operation| operation.name.as_deref());
        let logged = ran_as
            .or(record.named_by_client())
            .map_or(Cow::Borrowed(ANONYMOUS), shortened);
        tracing::Span::current().record("operation", &*logged);
        let trace_id = record.span().and_then(|span| {
            name_span(span, record.prepared(), ran_as);
            mark_failure(span, response);
            traces::sampled_ids(&span.context()).map(|(trace_id, _)| trace_id)
        });
        // Only an operation that passed validation earns a label of its own: names of
        // refused documents, chosen freely by anyone, must not fill the label slots. (The
        // metrics cut and clean label values themselves.)
        let label = match ran_as {
            Some(name) => name,
            None if record.ran() => ANONYMOUS,
            None => UNVALIDATED,
        };
        self.metrics
            .record_request(label, outcome, elapsed, trace_id);
    }
}

/// A field's span, named by its type and field ("resolve Station.name") so that the names stay
/// few, with its place in the response beside; at `debug`, which only
/// `telemetry.field_spans` lets through to the collector (`telemetry::traces::layer`).
fn field_span(field: &ResolvingField<'_>) -> tracing::Span {
    tracing::debug_span!(
        target: traces::FIELD_SPANS,
        "resolve",
        otel.name = format!("resolve {}.{}", field.parent_type, field.name),
        graphql.field.name = field.name,
        graphql.field.path = %field.path,
        graphql.field.type = field.return_type,
        graphql.parent.name = field.parent_type,
    )
}

/// Names the operation's span as OpenTelemetry's GraphQL conventions say ("query Stations",
/// or the type alone for an operation without a name, or "GraphQL operation" for one refused
/// before it was known), with its document's hash.
pub fn name_span(span: &tracing::Span, operation: Option<&PreparedOperation>, name: Option<&str>) {
    let kind = operation.map(|operation| match operation.kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    });
    let span_name = match (kind, name) {
        (Some(kind), Some(name)) => {
            span.record("graphql.operation.name", &*shortened(name));
            format!("{kind} {}", shortened(name))
        }
        (Some(kind), None) => kind.to_owned(),
        (None, _) => "GraphQL operation".to_owned(),
    };
    // The span has started by now, and tracing-opentelemetry renames (`otel.name`) only a
    // span that has not.
    span.context().span().update_name(span_name);
    if let Some(kind) = kind {
        span.record("graphql.operation.type", kind);
    }
    if let Some(hash) = operation.and_then(|operation| operation.hash) {
        span.record("graphql.document.hash", tracing::field::debug(hash));
    }
}

/// Marks the span failed with its first error's code.
fn mark_failure(span: &tracing::Span, response: &Response) {
    if let Some(error) = response.errors.first() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", ErrorCode::label_of(error));
    }
}

/// Counts a request the transport refused before it became an operation (a body too large,
/// a malformed parameter), beside the operations.
pub fn record_refused_request(metrics: &Metrics, code: ErrorCode, elapsed: Duration) {
    metrics.record_request(REFUSED_BY_TRANSPORT, code.as_str(), elapsed, None);
}

const ANONYMOUS: &str = "anonymous";
/// The metric label of operations refused before they ran.
const UNVALIDATED: &str = "unvalidated";
/// The metric label of requests refused before they held an operation.
const REFUSED_BY_TRANSPORT: &str = "invalid_request";
/// Longer operation names are cut in log lines.
const MAX_NAME_CHARS: usize = 64;

fn shortened(name: &str) -> Cow<'_, str> {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}…", &name[..end])),
        None => Cow::Borrowed(name),
    }
}
