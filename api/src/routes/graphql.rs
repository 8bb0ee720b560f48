//! GraphQL over HTTP: `POST /graphql` with a JSON body executes one operation.

use async_graphql_axum::GraphQLResponse;
use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request, State, rejection::BytesRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::startup::AppState;

pub async fn execute(
    State(state): State<AppState>,
    GraphqlJson(mut request): GraphqlJson,
) -> Response {
    // Parsing first separates a syntax error, which gets its own code, from everything that
    // can go wrong later; the parsed document is kept in the request for execution.
    if let Err(error) = request.parsed_query() {
        let mut error = error;
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "GRAPHQL_PARSE_FAILED");
        return GraphQLResponse::from(async_graphql::Response::from_errors(vec![error]))
            .into_response();
    }
    let response = state.schema.execute(request).await;
    GraphQLResponse::from(with_error_codes(response)).into_response()
}

/// Gives every error a stable `extensions.code`. Errors from resolvers carry one already;
/// those async-graphql raises while validating a document against the schema (unknown field,
/// wrong argument type) do not.
fn with_error_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            let code = if error.path.is_empty() {
                "GRAPHQL_VALIDATION_FAILED"
            } else {
                "BAD_USER_INPUT"
            };
            extensions.set("code", code);
        }
    }
    response
}

/// A GraphQL request read from a JSON body, with a precise refusal for anything else.
pub struct GraphqlJson(pub async_graphql::Request);

/// Why a request was not even parsed as GraphQL; answered with a 4xx status and a
/// GraphQL-shaped error body so that clients can read it the same way.
#[derive(Debug)]
pub struct RequestRejection {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for RequestRejection {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{ "message": self.message, "extensions": { "code": self.code } }]
        });
        (self.status, Json(body)).into_response()
    }
}

impl<S: Send + Sync> FromRequest<S> for GraphqlJson {
    type Rejection = RequestRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(RequestRejection {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "UNSUPPORTED_MEDIA_TYPE",
                message: "send the operation as JSON with Content-Type: application/json"
                    .to_owned(),
            });
        }
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_) => RequestRejection {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        code: "PAYLOAD_TOO_LARGE",
                        message: "the request body is larger than this server accepts".to_owned(),
                    },
                    other => RequestRejection {
                        status: other.status(),
                        code: "BAD_REQUEST",
                        message: other.body_text(),
                    },
                })?;
        let bad_request = |message: String| RequestRejection {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(bad_request(
                r#"the request body is empty: send {"query": "..."}"#.to_owned(),
            ));
        }
        if body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
            return Err(bad_request(
                "batched requests (a JSON array) are not accepted: send one operation per request"
                    .to_owned(),
            ));
        }
        serde_json::from_slice(&body)
            .map(GraphqlJson)
            .map_err(|error| {
                bad_request(format!(
                    "the request body is not a GraphQL request in JSON ({error}); send \
                     {{\"query\": \"...\", \"variables\": {{...}}, \"operationName\": \"...\"}}"
                ))
            })
    }
}
