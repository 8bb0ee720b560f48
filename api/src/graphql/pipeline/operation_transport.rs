//! Which operations each transport carries.
//!
//! - A GET carries queries only: URLs are logged, cached, prefetched and replayed by browsers
//!   and proxies, so an operation that changes data must come as POST
//!   (<https://graphql.github.io/graphql-over-http/draft/#sec-GET>). Refused with
//!   `METHOD_NOT_ALLOWED`, which the transport answers 405 with `Allow: POST`.
//! - A subscription needs a WebSocket: over plain HTTP it is a `BAD_REQUEST` that says so.

use async_graphql::{Request, ServerResult, parser::types::OperationType};

use super::{Origin, Transport};
use crate::error::ApiError;
use crate::graphql::limits::selected_operation;

/// Refuses an operation its transport does not carry.
pub fn check(origin: Option<&Origin>, request: &mut Request) -> ServerResult<()> {
    let transport = origin.map(|origin| origin.transport);
    if !matches!(transport, Some(Transport::Get | Transport::Post)) {
        return Ok(());
    }
    let operation_name = request.operation_name.clone();
    let document = request.parsed_query()?;
    let kind = selected_operation(document, operation_name.as_deref()).map(|(_, kind, _)| kind);
    match (transport, kind) {
        (_, Some(OperationType::Subscription)) => Err(ApiError::BadRequest {
            field: "query".to_owned(),
            message: "is a subscription: subscriptions are served over a WebSocket at /graphql \
                      (sub-protocol graphql-transport-ws)"
                .to_owned(),
        }
        .into_request_error()),
        (Some(Transport::Get), Some(OperationType::Mutation)) => {
            Err(ApiError::MethodNotAllowed.into_request_error())
        }
        _ => Ok(()),
    }
}
