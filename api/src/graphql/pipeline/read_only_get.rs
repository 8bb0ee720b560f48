//! A GET carries queries only: URLs are logged, cached, prefetched and replayed by browsers and
//! proxies, so an operation that changes data must come as POST
//! (<https://graphql.github.io/graphql-over-http/draft/#sec-GET>). Refused with
//! `METHOD_NOT_ALLOWED`, which the transport answers 405 with `Allow: POST`.

use std::sync::Arc;

use async_graphql::{
    Request, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
    parser::types::OperationType,
};

use super::{Origin, Policy, Transport};
use crate::error::ApiError;
use crate::graphql::limits::selected_operation;

pub struct ReadOnlyGet;

impl Policy for ReadOnlyGet {
    const HOOKS_EVERY_FIELD: bool = false;
}

impl ExtensionFactory for ReadOnlyGet {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ReadOnlyGet)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ReadOnlyGet {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if Origin::of(&request).is_some_and(|origin| origin.transport == Transport::Get) {
            let operation_name = request.operation_name.clone();
            let document = request.parsed_query()?;
            let kind =
                selected_operation(document, operation_name.as_deref()).map(|(_, kind, _)| kind);
            if matches!(
                kind,
                Some(OperationType::Mutation | OperationType::Subscription)
            ) {
                return Err(ApiError::MethodNotAllowed.into_request_error());
            }
        }
        next.run(ctx, request).await
    }
}
