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

use async_graphql::{Response, extensions::ExtensionContext};
use tokio::time::Instant;

use super::Origin;
use crate::error::ApiError;

/// The answer for an operation the deadline cut off.
fn passed(limit: Duration) -> Response {
    Response::from_errors(vec![ApiError::RequestTimeout(limit).into_request_error()])
}

pub struct Deadline {
    limit: Duration,
}

impl Deadline {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }

    /// `execution`'s response, or `TIMEOUT` when it runs past the limit, or past its
    /// request's deadline when that comes first.
    pub async fn bound(
        &self,
        ctx: &ExtensionContext<'_>,
        execution: impl Future<Output = Response>,
    ) -> Response {
        let own = Instant::now() + self.limit;
        let deadline = ctx
            .data_opt::<Origin>()
            .and_then(|origin| origin.deadline)
            .map_or(own, |request| request.min(own));
        match tokio::time::timeout_at(deadline, execution).await {
            Ok(response) => response,
            Err(_elapsed) => passed(self.limit),
        }
    }
}
