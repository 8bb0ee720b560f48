//! Plain HTTP handlers: GraphQL over HTTP, the IDE and health checks.

pub mod graphql;
pub mod ide;
pub mod metrics;
pub mod sites;

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

use crate::error::{ErrorCode, ResponseMedia};

/// A request refused before any handler's own logic: the status of its code, and a
/// GraphQL-shaped body that says why, so that clients read it like any other error.
pub fn refusal(code: ErrorCode, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code.as_str() } }]
    });
    (
        code.status(ResponseMedia::Json),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
