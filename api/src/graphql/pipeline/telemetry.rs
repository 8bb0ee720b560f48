//! What each operation was and how it went, for the metrics (`stations_graphql_requests_total`,
//! `stations_graphql_request_duration_seconds`) and the request's log span: its name (the one
//! it runs under, else the one the client gave, else "anonymous"), its outcome ("ok" or the
//! first error's code) and its duration, refusals included.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{Response, Value};

use crate::error::known_code;
use crate::metrics::Metrics;

pub struct Telemetry {
    metrics: Arc<Metrics>,
}

/// One operation's names, noted as it passes the stages.
#[derive(Default)]
pub struct OperationRecord {
    named_by_client: Mutex<Option<String>>,
    executed_as: Mutex<Option<String>>,
}

impl OperationRecord {
    pub fn named_by_client(&self, name: Option<&str>) {
        if let (Some(name), Ok(mut noted)) = (name, self.named_by_client.lock()) {
            *noted = Some(name.to_owned());
        }
    }

    pub fn executed_as(&self, name: Option<&str>) {
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
        let outcome = response.errors.first().map_or("ok", |error| {
            match error.extensions.as_ref().and_then(|e| e.get("code")) {
                Some(Value::String(code)) => known_code(code),
                _ => "other",
            }
        });
        let take = |name: &Mutex<Option<String>>| name.lock().ok().and_then(|mut name| name.take());
        let operation = take(&record.executed_as)
            .or_else(|| take(&record.named_by_client))
            .unwrap_or_else(|| "anonymous".to_owned());
        tracing::Span::current().record("operation", operation.as_str());
        self.metrics.record_request(&operation, outcome, elapsed);
    }
}
