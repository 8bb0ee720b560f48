//! Who is calling: the bearer token of the request (`Authorization` header, or the
//! `connection_init` payload of a WebSocket), a static token or an identity provider's JWT,
//! authenticated once the operation is known and before it costs anything. The caller's
//! `Access` goes into the operation's data for the role guards (`auth::guard`), and the token's
//! subject into the request's log span (never the token, nor any other claim).
//!
//! Refused here, before execution: a token that is not valid, and a caller without a token
//! where the settings open nothing to anonymous callers (`UNAUTHENTICATED`, HTTP 401); a JWT
//! while the provider's keys are not loaded yet (`SERVICE_UNAVAILABLE`).

use std::{sync::Arc, time::Duration};

use async_graphql::{Request, ServerResult, parser::types::OperationType};

use super::Origin;
use crate::auth::{Access, AuthError, Authenticator, Role};
use crate::error::ApiError;
use crate::graphql::limits::{has_mutation, selected_operation};

pub struct Authorization {
    authenticator: Arc<Authenticator>,
    /// `server.request_timeout_secs`, to name in a refusal.
    request_timeout: Duration,
}

impl Authorization {
    pub fn new(authenticator: Arc<Authenticator>, request_timeout: Duration) -> Self {
        Self {
            authenticator,
            request_timeout,
        }
    }

    /// Authenticates the caller of `request` and puts their `Access` into its data, or refuses.
    pub async fn admit(&self, origin: Option<&Origin>, request: &mut Request) -> ServerResult<()> {
        let authorization = origin.and_then(|origin| origin.authorization.as_ref());
        let authenticated = self
            .authenticator
            .authenticate(authorization.map(|value| value.as_bytes()));
        // Only a credential can wait (for the identity provider's keys); an HTTP request's
        // deadline bounds that wait too.
        let deadline = origin.and_then(|origin| origin.deadline);
        let principal = match deadline.filter(|_| authorization.is_some()) {
            Some(deadline) => tokio::time::timeout_at(deadline, authenticated)
                .await
                .map_err(|_elapsed| {
                    ApiError::RequestTimeout(self.request_timeout).into_request_error()
                })?,
            None => authenticated.await,
        }
        .map_err(|error| match error {
            AuthError::KeysNotLoaded => ApiError::KeysNotLoaded.into_request_error(),
            AuthError::Invalid(reason) => {
                tracing::debug!("refused a bearer token: {reason}");
                ApiError::Unauthenticated.into_request_error()
            }
        })?;
        if let Some(subject) = &principal.subject {
            tracing::Span::current().record("subject", subject.as_str());
        }
        let access = Access {
            principal,
            open_role: self.authenticator.open_role(),
        };
        if !access.principal.authenticated {
            // When the document does not say which operation runs, validation refuses it
            // later; until then it counts as a write if any of its operations is one.
            let operation_name = request.operation_name.clone();
            let document = request.parsed_query()?;
            let write = selected_operation(document, operation_name.as_deref()).map_or_else(
                || has_mutation(document),
                |(_, kind, _)| kind == OperationType::Mutation,
            );
            let needed = if write { Role::Writer } else { Role::Reader };
            if access.role() < Some(needed) {
                return Err(ApiError::Unauthenticated.into_request_error());
            }
        }
        request.data.insert(access);
        Ok(())
    }
}
