//! Every `extensions.code` a client can meet, in one enum: its spelling, the HTTP status it
//! is answered with, whether it refuses the whole request, and its metric label. Policies,
//! resolvers, transport refusals and subscription refusals all name their error by an
//! [`ErrorCode`]; nothing else spells or compares a code.

use async_graphql::{ServerError, Value};
use axum::http::StatusCode;

/// The two media types a GraphQL-over-HTTP response may be sent as
/// (<https://graphql.github.io/graphql-over-http/draft/#sec-Response>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    /// `application/graphql-response+json`: status codes tell request errors (4xx) from
    /// results (2xx), and the body is known to be a GraphQL response even from a proxy's error.
    GraphqlResponse,
    /// `application/json`: every well-formed request answers 200, errors in the body.
    Json,
}

impl ResponseMedia {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

macro_rules! error_codes {
    ($($variant:ident => $spelling:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, for tests and documentation.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The spelling clients match on in `extensions.code`; also the metric label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $spelling,)*
                }
            }

            /// The code spelled `text`, if it is one of ours.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($spelling => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    // Raised while a field runs: field errors, next to the data.
    BadUserInput => "BAD_USER_INPUT",
    NotFound => "NOT_FOUND",
    Conflict => "CONFLICT",
    // Who is calling.
    Unauthenticated => "UNAUTHENTICATED",
    Forbidden => "FORBIDDEN",
    // The server or the database cannot answer now.
    Timeout => "TIMEOUT",
    ServiceUnavailable => "SERVICE_UNAVAILABLE",
    Internal => "INTERNAL",
    // The document.
    GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
    GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
    QueryTooDeep => "QUERY_TOO_DEEP",
    QueryTooComplex => "QUERY_TOO_COMPLEX",
    TooManyFields => "TOO_MANY_FIELDS",
    PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
    PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
    OperationNotAllowlisted => "OPERATION_NOT_ALLOWLISTED",
    // The HTTP request around it.
    MethodNotAllowed => "METHOD_NOT_ALLOWED",
    BadRequest => "BAD_REQUEST",
    PayloadTooLarge => "PAYLOAD_TOO_LARGE",
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
    NotAcceptable => "NOT_ACCEPTABLE",
    RequestTimeout => "REQUEST_TIMEOUT",
    MisdirectedRequest => "MISDIRECTED_REQUEST",
    BatchTooLarge => "BATCH_TOO_LARGE",
    BatchNotAllowed => "BATCH_NOT_ALLOWED",
    // A WebSocket's.
    SubscriptionsDisabled => "SUBSCRIPTIONS_DISABLED",
    TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
}

impl ErrorCode {
    /// The code of `error`, if it carries one of ours.
    pub fn of(error: &ServerError) -> Option<Self> {
        match error.extensions.as_ref()?.get("code")? {
            Value::String(code) => Self::parse(code),
            _ => None,
        }
    }

    /// The status of a response refused with this code before anything executed. Under
    /// `application/json` a refusal of the document itself is still 200, as the spec asks;
    /// refusals that are not about GraphQL (who may ask, the HTTP request, an unavailable
    /// server) keep their status under both media types.
    pub fn status(self, media: ResponseMedia) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::OperationNotAllowlisted => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadRequest | Self::BatchTooLarge | Self::BatchNotAllowed => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::SubscriptionsDisabled => StatusCode::NOT_FOUND,
            Self::BadUserInput
            | Self::NotFound
            | Self::Conflict
            | Self::GraphqlParseFailed
            | Self::GraphqlValidationFailed
            | Self::QueryTooDeep
            | Self::QueryTooComplex
            | Self::TooManyFields
            | Self::PersistedQueryNotFound
            | Self::PersistedQueryHashMismatch
            | Self::TooManySubscriptions => match (self, media) {
                (_, ResponseMedia::Json) => StatusCode::OK,
                // As Apollo's router answers it: the document asked for is not here.
                (Self::PersistedQueryNotFound, _) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }

    /// Whether this code refuses the caller rather than the request: answered 401 or 403
    /// even when a guard raised it while the operation ran, if nothing else came of it.
    pub fn refuses_the_caller(self) -> bool {
        matches!(self, Self::Unauthenticated | Self::Forbidden)
    }

    /// Whether an error with this code says the database could not serve it.
    pub fn is_database_trouble(self) -> bool {
        self == Self::ServiceUnavailable
    }

    /// The `extensions.code` async-graphql's own errors get, which carry none: a request error
    /// (no path) is a document that did not validate; a field error, an argument that did not
    /// coerce.
    pub fn for_uncoded(error: &ServerError) -> Self {
        if error.path.is_empty() {
            Self::GraphqlValidationFailed
        } else {
            Self::BadUserInput
        }
    }

    /// A request error (no path, so no data) with this code.
    pub fn request_error(self, message: impl Into<String>) -> ServerError {
        let mut error = ServerError::new(message, None);
        self.mark(&mut error);
        error
    }

    /// Gives `error` this code.
    pub fn mark(self, error: &mut ServerError) {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", self.as_str());
    }

    /// The metric label of an error's code; "other" for codes not ours, so that no client
    /// can grow the metrics.
    pub fn label_of(error: &ServerError) -> &'static str {
        Self::of(error).map_or("other", Self::as_str)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}
