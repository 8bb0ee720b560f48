//! No execution while the database is known to be down: the operation is refused at once with
//! `SERVICE_UNAVAILABLE` (HTTP 503) instead of waiting for a connection that cannot come.
//! Operations already waiting are refused as soon as the database is found down, and any that
//! fails for want of the database makes the health watcher check at once (see
//! `database::health`).

use std::sync::Arc;

use async_graphql::Response;

use crate::database::health::DatabaseHealth;
use crate::error::ApiError;

pub struct DatabaseGate {
    health: Arc<DatabaseHealth>,
}

impl DatabaseGate {
    pub fn new(health: Arc<DatabaseHealth>) -> Self {
        Self { health }
    }

    /// Runs `execution` unless the database is known to be down, and abandons it if the
    /// database goes down meanwhile.
    pub async fn guard(&self, execution: impl Future<Output = Response>) -> Response {
        let refused = || Response::from_errors(vec![ApiError::DatabaseDown.into_request_error()]);
        if self.health.is_down() {
            return refused();
        }
        let response = tokio::select! {
            response = execution => response,
            () = self.health.went_down() => return refused(),
        };
        let database_trouble = response.errors.iter().any(|error| {
            error
                .extensions
                .as_ref()
                .and_then(|extensions| extensions.get("code"))
                .is_some_and(|code| *code == async_graphql::Value::from("SERVICE_UNAVAILABLE"))
        });
        if database_trouble {
            self.health.report_trouble();
        }
        response
    }
}
