//! Execution within `server.request_timeout_secs`: past it the operation is abandoned and
//! answered `TIMEOUT` (HTTP 504). Statements it left running are cancelled by PostgreSQL's own
//! `statement_timeout`, which is shorter.

use std::{sync::Arc, time::Duration};

use async_graphql::{
    Response,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute},
};

use super::Policy;
use crate::error::ApiError;

pub struct Deadline {
    limit: Duration,
}

impl Deadline {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl Policy for Deadline {
    const HOOKS_EVERY_FIELD: bool = false;
}

impl ExtensionFactory for Deadline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Deadline { limit: self.limit })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Deadline {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        match tokio::time::timeout(self.limit, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_elapsed) => Response::from_errors(vec![
                ApiError::RequestTimeout(self.limit).into_request_error(),
            ]),
        }
    }
}
