//! What each operation was and how it went, for the metrics (`stations_graphql_requests_total`,
//! `stations_graphql_request_duration_seconds`) and the request's log span: its name, its
//! outcome ("ok" or the first error's code) and its duration, refusals included. The log
//! span names it as it ran, else as the client named it, else "anonymous"; the metrics label
//! it by the name it ran under, and every operation refused before it ran as "unvalidated".
//! Names are cut at 64 characters.

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_graphql::Response;

use crate::error::ErrorCode;
use crate::metrics::Metrics;

pub struct Telemetry {
    metrics: Arc<Metrics>,
}

/// One operation's names, noted as it passes the stages.
#[derive(Default)]
pub struct OperationRecord {
    named_by_client: Mutex<Option<String>>,
    executed_as: Mutex<Option<String>>,
    /// Whether it passed validation and ran (anonymous or not).
    ran: AtomicBool,
}

impl OperationRecord {
    pub fn named_by_client(&self, name: Option<&str>) {
        if let (Some(name), Ok(mut noted)) = (name, self.named_by_client.lock()) {
            *noted = Some(name.to_owned());
        }
    }

    pub fn executed_as(&self, name: Option<&str>) {
        self.ran.store(true, Ordering::Relaxed);
        if let (Some(name), Ok(mut noted)) = (name, self.executed_as.lock()) {
            *noted = Some(name.to_owned());
        }
    }
}

impl Telemetry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }

    /// Records an operation that ended with `response` after `elapsed`.
    pub fn finish(&self, record: &OperationRecord, response: &Response, elapsed: Duration) {
        let outcome = response.errors.first().map_or("ok", ErrorCode::label_of);
        let take = |name: &Mutex<Option<String>>| name.lock().ok().and_then(|mut name| name.take());
        let executed_as = take(&record.executed_as);
        let named_by_client = take(&record.named_by_client);
        let logged = executed_as
            .as_deref()
            .or(named_by_client.as_deref())
            .map_or(Cow::Borrowed("anonymous"), shortened);
        tracing::Span::current().record("operation", &*logged);
        // Only an operation that passed validation earns a label of its own: names of
        // refused documents, chosen freely by anyone, must not fill the label slots. (The
        // metrics cut and clean label values themselves.)
        let label = match executed_as.as_deref() {
            Some(name) => name,
            None if record.ran.load(Ordering::Relaxed) => "anonymous",
            None => UNVALIDATED,
        };
        self.metrics.record_request(label, outcome, elapsed);
    }
}

/// The metric label of operations refused before they ran.
const UNVALIDATED: &str = "unvalidated";
/// Longer operation names are cut in log lines.
const MAX_NAME_CHARS: usize = 64;

fn shortened(name: &str) -> Cow<'_, str> {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}…", &name[..end])),
        None => Cow::Borrowed(name),
    }
}
