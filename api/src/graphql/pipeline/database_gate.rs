//! No execution while the database is known to be down: the operation is refused at once with
//! `SERVICE_UNAVAILABLE` (HTTP 503) instead of waiting for a connection that cannot come.
//! Operations already waiting are refused as soon as the database is found down, and any that
//! fails for want of the database makes the health watcher check at once (see
//! `database::health`).

use std::sync::Arc;

use async_graphql::{
    Response,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute},
};

use super::Policy;
use crate::database::health::DatabaseHealth;
use crate::error::ApiError;

pub struct DatabaseGate {
    health: Arc<DatabaseHealth>,
}

impl DatabaseGate {
    pub fn new(health: Arc<DatabaseHealth>) -> Self {
        Self { health }
    }
}

impl Policy for DatabaseGate {
    const HOOKS_EVERY_FIELD: bool = false;
}

impl ExtensionFactory for DatabaseGate {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DatabaseGate {
            health: Arc::clone(&self.health),
        })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for DatabaseGate {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let refused = || Response::from_errors(vec![ApiError::DatabaseDown.into_request_error()]);
        if self.health.is_down() {
            return refused();
        }
        let response = tokio::select! {
            response = next.run(ctx, operation_name) => response,
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
