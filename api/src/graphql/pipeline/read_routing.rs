//! Where an operation reads (`database::standbys`): a query on a standby that holds what its
//! client wrote, everything else on the primary; and the read-your-writes token every
//! mutation answers with, when standbys are configured.
//!
//! The token comes back in the request's `extensions.readYourWrites` (what Apollo Client's
//! and urql's links can set on every operation) or in an `X-Read-Your-Writes` header;
//! `X-Read-From: primary` asks for the primary outright. A mutation's answer carries the
//! token in `extensions.readYourWrites` and, over HTTP, in the `X-Read-Your-Writes` header.

use std::sync::Arc;

use async_graphql::{Response, ServerResult, Value, parser::types::OperationType};
use axum::http::{HeaderName, HeaderValue};

use super::{Execution, Policy, PreparedOperation, Preparing};
use crate::database::standbys::{Standbys, describe};
use crate::database::wal_position::WalPosition;
use crate::error::ApiError;

/// The header and the `extensions` entry that carry a read-your-writes token.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-read-your-writes");
pub const TOKEN_EXTENSION: &str = "readYourWrites";
/// `X-Read-From: primary`: this query must read the primary.
pub const READ_FROM_HEADER: HeaderName = HeaderName::from_static("x-read-from");

pub struct ReadRouting {
    standbys: Arc<Standbys>,
}

impl ReadRouting {
    pub fn new(standbys: Arc<Standbys>) -> Self {
        Self { standbys }
    }
}

impl Policy for ReadRouting {
    /// A query reads from a standby that has replayed its token (waiting for one a while), or
    /// from the primary; the choice is its [`ReadConnection`](crate::database::standbys::ReadConnection)
    /// in the request's data. Other operations keep the schema's, the primary.
    async fn prepare(&self, preparing: &mut Preparing) -> ServerResult<()> {
        if !self.standbys.any() || preparing.operation()?.kind != OperationType::Query {
            return Ok(());
        }
        let origin = preparing.origin.as_ref();
        let primary_asked = origin.is_some_and(|origin| origin.read_from_primary);
        // The request's own extension first, then the header; null is no token.
        let token = match preparing.request.extensions.get(TOKEN_EXTENSION) {
            Some(Value::String(token)) => Some((token.as_str(), "extensions.readYourWrites")),
            Some(Value::Null) | None => origin
                .and_then(|origin| origin.read_your_writes.as_ref())
                .map(|header| (header.to_str().unwrap_or_default(), "X-Read-Your-Writes")),
            Some(_) => Some(("", "extensions.readYourWrites")),
        };
        let token = token
            .map(|(token, field)| parse(token, field))
            .transpose()?;
        let reads = self.standbys.for_query(token, primary_asked).await;
        preparing.request.data.insert(reads);
        Ok(())
    }

    /// After a mutation, where the primary's log stands: at or past every commit it made.
    async fn around_execute(
        &self,
        operation: &PreparedOperation,
        execution: impl Execution,
    ) -> Response {
        let mut response = execution.await;
        if operation.kind != OperationType::Mutation || !self.standbys.any() {
            return response;
        }
        match WalPosition::of_primary(self.standbys.primary()).await {
            Ok(position) => {
                let token = position.to_string();
                if let Ok(header) = HeaderValue::from_str(&token) {
                    response.http_headers.insert(TOKEN_HEADER, header);
                }
                response
                    .extensions
                    .insert(TOKEN_EXTENSION.to_owned(), Value::String(token));
            }
            // The write stands; only the token is missing, and a client without one reads
            // from any standby, as before it wrote.
            Err(error) => tracing::warn!(
                reason = %describe(&error),
                "could not read the primary's WAL position for a read-your-writes token"
            ),
        }
        response
    }
}

fn parse(token: &str, field: &str) -> ServerResult<WalPosition> {
    WalPosition::parse(token)
        .map_err(|error| ApiError::bad_input(field, error.to_string()).into_request_error())
}
