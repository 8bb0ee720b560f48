//! What each operation was and how it went, for the metrics (`stations_graphql_requests_total`,
//! `stations_graphql_request_duration_seconds`) and the request's log span: its name, its
//! outcome ("ok" or the first error's code) and its duration, refusals included. The log
//! span names it as it ran, else as the client named it, else "anonymous"; the metrics label
//! it by the name it ran under, and every operation refused before it ran as "unvalidated".
//! Names are cut at 64 characters.

use std::{borrow::Cow, sync::Arc, time::Duration};

use async_graphql::Response;

use super::{OperationRecord, Policy};
use crate::error::ErrorCode;
use crate::metrics::Metrics;

pub struct Telemetry {
    metrics: Arc<Metrics>,
}

impl Telemetry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl Policy for Telemetry {
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
        // Only an operation that passed validation earns a label of its own: names of
        // refused documents, chosen freely by anyone, must not fill the label slots. (The
        // metrics cut and clean label values themselves.)
        let label = match ran_as {
            Some(name) => name,
            None if record.ran() => ANONYMOUS,
            None => UNVALIDATED,
        };
        self.metrics.record_request(label, outcome, elapsed);
    }
}

/// Counts a request the transport refused before it became an operation (a body too large,
/// a malformed parameter), beside the operations.
pub fn record_refused_request(metrics: &Metrics, code: ErrorCode, elapsed: Duration) {
    metrics.record_request(REFUSED_BY_TRANSPORT, code.as_str(), elapsed);
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
