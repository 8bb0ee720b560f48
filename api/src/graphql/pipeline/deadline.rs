//! Execution within `server.request_timeout_secs`: past it the operation is abandoned and
//! answered `TIMEOUT` (HTTP 504). Statements it left running are cancelled by PostgreSQL's own
//! `statement_timeout`, which is shorter.
//!
//! Over HTTP the limit is the whole request's, not each operation's: the transport sets a
//! [`RequestDeadline`] when the request arrives, every operation of a batch runs within what
//! is left of it, and the transport bounds the stages before execution (waiting for the
//! identity provider's keys) by the same instant. Over a WebSocket each operation has the
//! limit to itself.

use std::time::Duration;

use async_graphql::{Response, extensions::ExtensionContext};
use tokio::time::Instant;

use crate::error::ApiError;

/// When the HTTP request that carries an operation must be answered; in the request's data.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

impl RequestDeadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self(Instant::now() + limit)
    }

    /// The answer for an operation the deadline cut off.
    pub fn passed(limit: Duration) -> Response {
        Response::from_errors(vec![ApiError::RequestTimeout(limit).into_request_error()])
    }
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
            .data_opt::<RequestDeadline>()
            .map_or(own, |request| request.0.min(own));
        match tokio::time::timeout_at(deadline, execution).await {
            Ok(response) => response,
            Err(_elapsed) => RequestDeadline::passed(self.limit),
        }
    }
}
