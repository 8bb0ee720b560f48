//! Which operations each transport carries.
//!
//! - A GET carries queries only: URLs are logged, cached, prefetched and replayed by browsers
//!   and proxies, so an operation that changes data must come as POST
//!   (<https://graphql.github.io/graphql-over-http/draft/#sec-GET>). Refused with
//!   `METHOD_NOT_ALLOWED`, which the transport answers 405 with `Allow: POST`.
//! - A subscription needs a WebSocket: over plain HTTP it is a `BAD_REQUEST` that says so.

use async_graphql::{ServerResult, parser::types::OperationType};

use super::{Policy, Preparing, Transport};
use crate::error::ApiError;

pub struct OperationTransport;

impl Policy for OperationTransport {
    /// Refuses an operation its transport does not carry.
    async fn prepare(&self, preparing: &mut Preparing) -> ServerResult<()> {
        let operation = preparing.operation()?;
        let transport = operation.origin.as_ref().map(|origin| origin.transport);
        match (transport, operation.kind) {
            (Some(Transport::Get | Transport::Post), OperationType::Subscription) => {
                Err(ApiError::BadRequest {
                    field: "query".to_owned(),
                    message: "is a subscription: subscriptions are served over a WebSocket at \
                              /graphql (sub-protocol graphql-transport-ws)"
                        .to_owned(),
                }
                .into_request_error())
            }
            (Some(Transport::Get), OperationType::Mutation) => {
                Err(ApiError::MethodNotAllowed.into_request_error())
            }
            _ => Ok(()),
        }
    }
}
