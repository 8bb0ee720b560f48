//! Execution within `server.request_timeout_secs`: past it the operation is abandoned and
//! answered `TIMEOUT` (HTTP 504). Statements it left running are cancelled by PostgreSQL's own
//! `statement_timeout`, which is shorter.
//!
//! Over HTTP the limit is the whole request's, not each operation's: the transport notes the
//! instant in the request's [`Origin`] when the request arrives, every operation of a batch
//! runs within what is left of it, and the transport bounds the stages before execution
//! (reading the body, waiting for the identity provider's keys) by the same instant. Over a
//! WebSocket each operation has the limit to itself.

use std::time::Duration;

use async_graphql::Response;
use tokio::time::Instant;

use super::{Execution, Policy, PreparedOperation};
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
    /// `execution`'s response, or `TIMEOUT` when it runs past the limit, or past its
    /// request's deadline when that comes first.
    async fn around_execute(
        &self,
        operation: &PreparedOperation,
        execution: impl Execution,
    ) -> Response {
        let own = Instant::now() + self.limit;
        let deadline = operation
            .origin
            .as_ref()
            .and_then(|origin| origin.deadline)
            .map_or(own, |request| request.min(own));
        match tokio::time::timeout_at(deadline, execution).await {
            Ok(response) => response,
            Err(_elapsed) => Response::from_errors(vec![
                ApiError::RequestTimeout(self.limit).into_request_error(),
            ]),
        }
    }
}
