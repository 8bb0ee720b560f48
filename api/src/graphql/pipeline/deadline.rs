//! Execution within `server.request_timeout_secs`: past it the operation is abandoned and
//! answered `TIMEOUT` (HTTP 504). Statements it left running are cancelled by PostgreSQL's own
//! `statement_timeout`, which is shorter.

use std::time::Duration;

use async_graphql::Response;

use crate::error::ApiError;

pub struct Deadline {
    limit: Duration,
}

impl Deadline {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }

    /// `execution`'s response, or `TIMEOUT` when it runs past the limit.
    pub async fn bound(&self, execution: impl Future<Output = Response>) -> Response {
        match tokio::time::timeout(self.limit, execution).await {
            Ok(response) => response,
            Err(_elapsed) => Response::from_errors(vec![
                ApiError::RequestTimeout(self.limit).into_request_error(),
            ]),
        }
    }
}
