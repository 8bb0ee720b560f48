//! Who may run an operation: the bearer token of the request (`Authorization` header, or the
//! `connection_init` payload of a WebSocket) against `auth.*`. Checked once the operation is
//! known and before it costs anything; refused with `UNAUTHENTICATED`, which the transport
//! answers 401 with `WWW-Authenticate: Bearer`.

use std::sync::Arc;

use async_graphql::{
    Request, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
    parser::types::OperationType,
};

use super::{Origin, Policy};
use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::graphql::limits::{has_mutation, selected_operation};

pub struct Authorization {
    authenticator: Arc<Authenticator>,
}

impl Authorization {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl Policy for Authorization {
    const HOOKS_EVERY_FIELD: bool = false;
}

impl ExtensionFactory for Authorization {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuthorizationExtension {
            authenticator: Arc::clone(&self.authenticator),
        })
    }
}

struct AuthorizationExtension {
    authenticator: Arc<Authenticator>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AuthorizationExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let authorization =
            Origin::of(ctx, &request).and_then(|origin| origin.authorization.clone());
        let operation_name = request.operation_name.clone();
        let document = request.parsed_query()?;
        // When the document does not say which operation runs, validation refuses it later;
        // until then it counts as a write if any of its operations is one.
        let write = selected_operation(document, operation_name.as_deref()).map_or_else(
            || has_mutation(document),
            |(_, kind, _)| kind == OperationType::Mutation,
        );
        let authorization = authorization.as_ref().map(|value| value.as_bytes());
        if !self.authenticator.permits(authorization, write) {
            return Err(ApiError::Unauthenticated.into_request_error());
        }
        next.run(ctx, request).await
    }
}
