//! The one error type at the GraphQL boundary, and what each variant looks like to a client.
//!
//! Every error a resolver returns passes through [`ApiError`]: the crate enables
//! async-graphql's `custom-error-conversion`, so no other error type can reach a response by
//! accident and carry SQL or connection details with it.

use async_graphql::ErrorExtensions;
use sea_orm::DbErr;

use crate::database;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `BAD_USER_INPUT`: an argument is outside what the API accepts. The message names the
    /// field and the allowed values; `extensions.field` holds the field's path.
    #[error("{field} {message}")]
    BadUserInput { field: String, message: String },

    /// `NOT_FOUND`: no station has the id given to an update or a delete.
    #[error("no station has id {id}")]
    NotFound { id: String },

    /// `CONFLICT`: the write would give two stations the same value of a unique field, named
    /// in `extensions.field`.
    #[error("{message}")]
    Conflict { field: String, message: String },

    /// `UNAUTHENTICATED`: the operation needs a valid bearer token. The message does not say
    /// whether it was missing or wrong.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthenticated,

    /// `TIMEOUT`: the database took longer than the statement timeout and was stopped.
    #[error("the database took longer than the server allows and the query was cancelled")]
    Timeout(#[source] DbErr),

    /// `SERVICE_UNAVAILABLE`: the database cannot be reached right now; the same request may
    /// succeed shortly.
    #[error("the database is unavailable right now; retry shortly")]
    ServiceUnavailable(#[source] DbErr),

    /// `SERVICE_UNAVAILABLE` too: every database connection is busy and none became free in
    /// time (`database.acquire_timeout_ms`). The database itself is fine.
    #[error("the server is busy: no database connection became free in time; retry shortly")]
    Busy,

    /// `INTERNAL`: anything else. The client gets this fixed message; the log gets the cause.
    #[error("internal error; the server log has the details")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable `extensions.code` clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Conflict { .. } => "CONFLICT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Timeout(_) => "TIMEOUT",
            Self::ServiceUnavailable(_) | Self::Busy => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::BadUserInput { field, .. } | Self::Conflict { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<DbErr> for ApiError {
    fn from(error: DbErr) -> Self {
        if matches!(
            error,
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)
        ) {
            Self::Busy
        } else if database::is_unavailable(&error) {
            Self::ServiceUnavailable(error)
        } else if database::is_timeout(&error) {
            Self::Timeout(error)
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        // The boundary is the one place every failure passes, so it is where the cause is
        // logged, once, inside the request's span: the chain of causes, without a backtrace.
        // Driver errors carry neither SQL text nor connection strings.
        match &error {
            ApiError::Internal(cause) => {
                tracing::error!(error = causes(cause.as_ref()), "request failed");
            }
            // Said once per outage by the database health watcher, not once per request.
            ApiError::ServiceUnavailable(_) => {}
            ApiError::Busy => tracing::warn!("no database connection became free in time"),
            ApiError::Timeout(cause) => {
                tracing::warn!(error = %cause, "statement cancelled by the statement timeout");
            }
            _ => {}
        }
        let code = error.code();
        let field = error.field().map(str::to_owned);
        async_graphql::Error::new(error.to_string()).extend_with(|_, extensions| {
            extensions.set("code", code);
            if let Some(field) = field {
                extensions.set("field", field);
            }
        })
    }
}

/// `error` and its sources as one line, skipping a source whose text its parent already
/// includes (sea-orm repeats the driver's message).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
