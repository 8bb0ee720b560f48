//! Which operations each transport carries.
//!
//! - A GET carries queries only: URLs are logged, cached, prefetched and replayed by browsers
//!   and proxies, so an operation that changes data must come as POST
//!   (<https://graphql.github.io/graphql-over-http/draft/#sec-GET>). Refused with
//!   `METHOD_NOT_ALLOWED`, which the transport answers 405 with `Allow: POST`.
//! - A subscription needs a WebSocket: over plain HTTP it is a `BAD_REQUEST` that says so.

use std::sync::Arc;

use async_graphql::{
    Request, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
    parser::types::OperationType,
};

use super::{Origin, Policy, Transport};
use crate::error::ApiError;
use crate::graphql::limits::selected_operation;

pub struct OperationTransport;

impl Policy for OperationTransport {
    const HOOKS_EVERY_FIELD: bool = false;
}

impl ExtensionFactory for OperationTransport {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationTransport)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for OperationTransport {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let transport = Origin::of(ctx, &request).map(|origin| origin.transport);
        if matches!(transport, Some(Transport::Get | Transport::Post)) {
            let operation_name = request.operation_name.clone();
            let document = request.parsed_query()?;
            let kind =
                selected_operation(document, operation_name.as_deref()).map(|(_, kind, _)| kind);
            match (transport, kind) {
                (_, Some(OperationType::Subscription)) => {
                    return Err(ApiError::BadRequest {
                        field: "query".to_owned(),
                        message: "is a subscription: subscriptions are served over a WebSocket \
                                  at /graphql (sub-protocol graphql-transport-ws)"
                            .to_owned(),
                    }
                    .into_request_error());
                }
                (Some(Transport::Get), Some(OperationType::Mutation)) => {
                    return Err(ApiError::MethodNotAllowed.into_request_error());
                }
                _ => {}
            }
        }
        next.run(ctx, request).await
    }
}
