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

use async_graphql::{ServerResult, parser::types::OperationType};
use axum::http::HeaderValue;

use super::{Policy, Preparing};
use crate::auth::{Access, AuthError, Authenticator, Role};
use crate::error::ApiError;

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

    /// Admits a WebSocket connection whose `connection_init` (or upgrade request) carries
    /// `authorization`: the rules of queries apply (a token when `auth.require_for_queries`),
    /// and a wrong token is refused whatever they say, so that its client knows at once rather
    /// than at its first subscription. The message of a refusal is the one to close with.
    pub async fn admit_connection(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Access, async_graphql::Error> {
        let refused = || {
            async_graphql::Error::new(
                "a valid bearer token is required: send {\"authorization\": \"Bearer \
                 <token>\"} in connection_init",
            )
        };
        let principal = match self
            .authenticator
            .authenticate(authorization.map(HeaderValue::as_bytes))
            .await
        {
            Ok(principal) => principal,
            Err(AuthError::KeysNotLoaded) => {
                return Err(async_graphql::Error::new(
                    "signing keys not loaded yet: retry shortly",
                ));
            }
            Err(AuthError::Invalid(_)) => return Err(refused()),
        };
        let access = Access {
            open_role: self.authenticator.open_role(),
            principal,
        };
        if access.role() < Some(Role::Reader) {
            return Err(refused());
        }
        Ok(access)
    }
}

impl Policy for Authorization {
    /// Authenticates the caller and puts their `Access` into the request's data, or refuses.
    async fn prepare(&self, preparing: &mut Preparing) -> ServerResult<()> {
        let origin = preparing.origin.as_ref();
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
            let needed = match preparing.operation()?.kind {
                OperationType::Mutation => Role::Writer,
                OperationType::Query | OperationType::Subscription => Role::Reader,
            };
            if access.role() < Some(needed) {
                return Err(ApiError::Unauthenticated.into_request_error());
            }
        }
        preparing.request.data.insert(access);
        Ok(())
    }
}
