//! The one error type at the GraphQL boundary, and what each variant looks like to a client.
//!
//! Every error a resolver returns passes through [`ApiError`]: the crate enables
//! async-graphql's `custom-error-conversion`, so no other error type can reach a response by
//! accident and carry SQL or connection details with it. Each variant names its
//! [`ErrorCode`].

mod code;
mod refusal;

pub use code::{ErrorCode, ResponseMedia};
pub use refusal::Refusal;

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
    /// whether it was missing or wrong. HTTP 401.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthenticated,

    /// `FORBIDDEN`: the token is valid but its role does not allow this. HTTP 403.
    #[error("this needs the {needed} role; the token grants {granted}")]
    Forbidden {
        needed: &'static str,
        granted: &'static str,
    },

    /// `SERVICE_UNAVAILABLE` too: a JWT arrived before the identity provider's signing keys
    /// could be loaded. HTTP 503.
    #[error(
        "signing keys not loaded yet: the identity provider's JWKS could not be fetched; retry shortly"
    )]
    KeysNotLoaded,

    /// `TIMEOUT`: the database took longer than the statement timeout and was stopped.
    #[error("the database took longer than the server allows and the query was cancelled")]
    Timeout(#[source] DbErr),

    /// `TIMEOUT` too: the whole operation ran longer than `server.request_timeout_secs` and
    /// was abandoned. HTTP 504.
    #[error(
        "the request took longer than {} s (server.request_timeout_secs)",
        .0.as_secs()
    )]
    RequestTimeout(std::time::Duration),

    /// `SERVICE_UNAVAILABLE`: the database cannot be reached right now; the same request may
    /// succeed shortly.
    #[error("the database is unavailable right now; retry shortly")]
    ServiceUnavailable(#[source] DbErr),

    /// `SERVICE_UNAVAILABLE` too, before execution: the database is known to be down, so the
    /// operation does not wait for it. HTTP 503.
    #[error("the database is unavailable right now; retry shortly")]
    DatabaseDown,

    /// `SERVICE_UNAVAILABLE` too: every database connection is busy and none became free in
    /// time (`database.acquire_timeout_ms`). The database itself is fine.
    #[error("the server is busy: no database connection became free in time; retry shortly")]
    Busy,

    /// `GRAPHQL_PARSE_FAILED`: the document is not GraphQL; the message is the parser's.
    #[error("{0}")]
    ParseFailed(String),

    /// `QUERY_TOO_DEEP`: the document nests deeper than allowed; the message names the limit.
    #[error("{0}")]
    QueryTooDeep(String),

    /// `QUERY_TOO_COMPLEX`: the operation would cost more than `graphql.max_complexity`.
    #[error("{0}")]
    QueryTooComplex(String),

    /// `TOO_MANY_FIELDS`: the operation selects more than `graphql.max_fields` fields.
    #[error("{0}")]
    TooManyFields(String),

    /// `PERSISTED_QUERY_NOT_FOUND`: the request carries only a hash this server does not know;
    /// the client sends the text next. The message is the one clients look for.
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,

    /// `PERSISTED_QUERY_HASH_MISMATCH`: `extensions.persistedQuery.sha256Hash` is not the
    /// SHA-256 of the query text sent with it. HTTP 400.
    #[error(
        "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query text sent with it"
    )]
    PersistedQueryMismatch,

    /// `OPERATION_NOT_ALLOWLISTED`: in allowlist mode (`graphql.persisted_only`) only the
    /// operations of the persisted-query manifest run. HTTP 403.
    #[error(
        "this server runs only the operations of its persisted-query manifest \
         (graphql.persisted_only), and this is not one of them"
    )]
    NotAllowlisted,

    /// `METHOD_NOT_ALLOWED`: a mutation or subscription sent with GET. HTTP 405.
    #[error("a GET may only carry a query: send mutations with POST")]
    MethodNotAllowed,

    /// `BAD_REQUEST`: a request parameter other than the document is malformed; named in
    /// `extensions.field`. HTTP 400.
    #[error("{field} {message}")]
    BadRequest { field: String, message: String },

    /// `INTERNAL`: anything else. The client gets this fixed message; the log gets the cause.
    #[error("{}", ApiError::INTERNAL_MESSAGE)]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// All a client learns of an internal error.
    pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable `extensions.code` clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadUserInput { .. } => ErrorCode::BadUserInput,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::Forbidden { .. } => ErrorCode::Forbidden,
            Self::Timeout(_) | Self::RequestTimeout(_) => ErrorCode::Timeout,
            Self::ServiceUnavailable(_) | Self::DatabaseDown | Self::Busy | Self::KeysNotLoaded => {
                ErrorCode::ServiceUnavailable
            }
            Self::ParseFailed(_) => ErrorCode::GraphqlParseFailed,
            Self::QueryTooDeep(_) => ErrorCode::QueryTooDeep,
            Self::QueryTooComplex(_) => ErrorCode::QueryTooComplex,
            Self::TooManyFields(_) => ErrorCode::TooManyFields,
            Self::PersistedQueryNotFound => ErrorCode::PersistedQueryNotFound,
            Self::PersistedQueryMismatch => ErrorCode::PersistedQueryHashMismatch,
            Self::NotAllowlisted => ErrorCode::OperationNotAllowlisted,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::BadRequest { .. } => ErrorCode::BadRequest,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// This error as a GraphQL *request error*: raised before execution, so it has no path and
    /// the response no data.
    pub fn into_request_error(self) -> async_graphql::ServerError {
        let error = async_graphql::Error::from(self);
        let mut server_error = async_graphql::ServerError::new(error.message, None);
        server_error.source = error.source;
        server_error.extensions = error.extensions;
        server_error
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::BadUserInput { field, .. }
            | Self::Conflict { field, .. }
            | Self::BadRequest { field, .. } => Some(field),
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
            ApiError::RequestTimeout(limit) => {
                tracing::warn!(
                    limit_secs = limit.as_secs(),
                    "request abandoned after the request timeout"
                );
            }
            _ => {}
        }
        let code = error.code();
        let field = error.field().map(str::to_owned);
        async_graphql::Error::new(error.to_string()).extend_with(|_, extensions| {
            extensions.set("code", code.as_str());
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
