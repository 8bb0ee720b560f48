//! What each operation was and how it went, for the metrics (`stations_graphql_requests_total`,
//! `stations_graphql_request_duration_seconds`) and the request's log span: its name (the one
//! it runs under, else the one the client gave, else "anonymous"), its outcome ("ok" or the
//! first error's code) and its duration, refusals included.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Request, Response, ServerResult, Value,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest,
    },
};

use super::Policy;
use crate::error::known_code;
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
    const HOOKS_EVERY_FIELD: bool = false;
}

impl ExtensionFactory for Telemetry {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TelemetryExtension {
            metrics: Arc::clone(&self.metrics),
            named_by_client: Mutex::new(None),
            executed_as: Mutex::new(None),
        })
    }
}

/// One operation's record, filled in as it passes the stages.
struct TelemetryExtension {
    metrics: Arc<Metrics>,
    named_by_client: Mutex<Option<String>>,
    executed_as: Mutex<Option<String>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for TelemetryExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let outcome = response.errors.first().map_or("ok", |error| {
            match error.extensions.as_ref().and_then(|e| e.get("code")) {
                Some(Value::String(code)) => known_code(code),
                _ => "other",
            }
        });
        let executed_as = self
            .executed_as
            .lock()
            .ok()
            .and_then(|mut name| name.take());
        let named_by_client = self
            .named_by_client
            .lock()
            .ok()
            .and_then(|mut name| name.take());
        let operation = executed_as
            .or(named_by_client)
            .unwrap_or_else(|| "anonymous".to_owned());
        tracing::Span::current().record("operation", operation.as_str());
        self.metrics
            .record_request(&operation, outcome, started.elapsed());
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut name) = self.named_by_client.lock() {
            name.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let (Some(name), Ok(mut executed_as)) = (operation_name, self.executed_as.lock()) {
            *executed_as = Some(name.to_owned());
        }
        next.run(ctx, operation_name).await
    }
}
