//! GraphQL over HTTP: `POST /graphql` with a JSON body executes one operation.
//!
//! Before anything runs, in this order: the body must be JSON of a bounded size; the query must
//! not nest too deep to parse safely; it must parse; the caller must be allowed the operation;
//! it must not select too many fields; and the database must not be known to be down. Then it
//! runs under the request timeout. Every refusal carries a stable `extensions.code`.

use std::time::Instant;

use async_graphql::parser::types::OperationType;
use async_graphql_axum::GraphQLResponse;
use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::graphql::limits::{self, MAX_NESTING};
use crate::startup::AppState;

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<GraphqlJson, RequestRejection>,
) -> Response {
    let started = Instant::now();
    let (operation, outcome, response) = match request {
        Ok(GraphqlJson(request)) => run(&state, &headers, request).await,
        Err(rejection) => (
            "invalid_request".to_owned(),
            rejection.code,
            rejection.into_response(),
        ),
    };
    tracing::Span::current().record("operation", operation.as_str());
    state
        .metrics
        .record_request(&operation, outcome, started.elapsed());
    response
}

/// Runs `request` and returns its operation's name (for logs and metrics), its outcome (`ok`
/// or the first error's code) and the response.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
) -> (String, &'static str, Response) {
    let limits = state.limits;
    let named = request.operation_name.clone();
    let refuse = |code: &'static str, status: StatusCode, message: String| {
        let name = named.clone().unwrap_or_else(|| "anonymous".to_owned());
        (name, code, refusal(status, code, message))
    };

    let document = match state.documents.get(&request.query) {
        Some(document) => document,
        None => {
            // Nesting first: the parser is recursive, and deep enough input would exhaust its
            // stack. A kept document passed this check when it was first parsed.
            if limits::nesting_depth(&request.query) > MAX_NESTING {
                return refuse(
                    "QUERY_TOO_DEEP",
                    StatusCode::OK,
                    format!("the query nests brackets deeper than {MAX_NESTING} levels"),
                );
            }
            match async_graphql::parser::parse_query(&request.query) {
                Ok(document) => {
                    state.documents.insert(&request.query, &document);
                    document
                }
                Err(error) => {
                    let error = async_graphql::ServerError::from(error);
                    return refuse("GRAPHQL_PARSE_FAILED", StatusCode::OK, error.message);
                }
            }
        }
    };
    let writes = limits::has_mutation(&document);
    let (operation_name, kind, fields) =
        match limits::selected_operation(&document, named.as_deref()) {
            Some((name, kind, selection)) => (
                name.map(str::to_owned),
                Some(kind),
                limits::field_count(&document, selection),
            ),
            // Let validation explain which operation is missing.
            None => (named.clone(), None, 0),
        };
    request.set_parsed_query(document);
    let operation = operation_name.unwrap_or_else(|| "anonymous".to_owned());

    let write = kind.map_or(writes, |kind| kind == OperationType::Mutation);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    if !state.authenticator.permits(authorization, write) {
        let mut response = refusal(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            format!(
                "a valid bearer token is required for {} (Authorization: Bearer <token>)",
                if write { "mutations" } else { "queries" }
            ),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return (operation, "UNAUTHENTICATED", response);
    }
    if fields > limits.max_fields {
        return (
            operation,
            "TOO_MANY_FIELDS",
            refusal(
                StatusCode::OK,
                "TOO_MANY_FIELDS",
                format!(
                    "the operation selects {fields} fields (fragments expanded); the limit is {} \
                     (graphql.max_fields)",
                    limits.max_fields
                ),
            ),
        );
    }
    if state.health.is_down() {
        return (
            operation,
            "SERVICE_UNAVAILABLE",
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "the database is unavailable right now; retry shortly".to_owned(),
            ),
        );
    }

    let Ok(response) =
        tokio::time::timeout(limits.request_timeout, state.schema.execute(request)).await
    else {
        return (
            operation,
            "TIMEOUT",
            refusal(
                StatusCode::GATEWAY_TIMEOUT,
                "TIMEOUT",
                format!(
                    "the request took longer than {} s (server.request_timeout_secs)",
                    limits.request_timeout.as_secs()
                ),
            ),
        );
    };
    let response = with_error_codes(response, state);
    let outcome = response
        .errors
        .first()
        .and_then(|error| error.extensions.as_ref()?.get("code").cloned())
        .and_then(|code| match code {
            async_graphql::Value::String(code) => Some(known_code(&code)),
            _ => None,
        })
        .unwrap_or("ok");
    if outcome == "SERVICE_UNAVAILABLE" {
        state.health.report_trouble();
    }
    (
        operation,
        outcome,
        GraphQLResponse::from(response).into_response(),
    )
}

/// Gives every error a stable `extensions.code`. Errors from resolvers carry one already;
/// those async-graphql raises while validating a document (unknown field, wrong argument type,
/// a limit) do not.
fn with_error_codes(
    mut response: async_graphql::Response,
    state: &AppState,
) -> async_graphql::Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_some() {
            continue;
        }
        let code = if error.message == "Query is nested too deep." {
            error.message = format!(
                "the query nests selections deeper than {} levels (graphql.max_depth)",
                state.limits.max_depth
            );
            "QUERY_TOO_DEEP"
        } else if error.message == "Query is too complex." {
            error.message = format!(
                "the query is too costly: each field costs 1 and a list field its page size times \
                 what it selects; the limit is {} (graphql.max_complexity)",
                state.limits.max_complexity
            );
            "QUERY_TOO_COMPLEX"
        } else if error.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "BAD_USER_INPUT"
        };
        extensions.set("code", code);
    }
    response
}

/// The `'static` spelling of a code, for metric labels; unknown codes count as "other".
fn known_code(code: &str) -> &'static str {
    const CODES: [&str; 14] = [
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "CONFLICT",
        "UNAUTHENTICATED",
        "TIMEOUT",
        "SERVICE_UNAVAILABLE",
        "INTERNAL",
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
        "QUERY_TOO_DEEP",
        "QUERY_TOO_COMPLEX",
        "TOO_MANY_FIELDS",
        "BAD_REQUEST",
        "PAYLOAD_TOO_LARGE",
    ];
    CODES
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or("other")
}

/// A GraphQL-shaped error answer, for refusals made before or instead of execution.
fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
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
        refusal(self.status, self.code, self.message)
    }
}

impl FromRequest<AppState> for GraphqlJson {
    type Rejection = RequestRejection;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let too_large = || RequestRejection {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "PAYLOAD_TOO_LARGE",
            message: format!(
                "the request body is larger than {} bytes (server.max_body_bytes)",
                state.limits.max_body_bytes
            ),
        };
        // A declared length over the limit is refused before a byte of the body is read.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > state.limits.max_body_bytes) {
            return Err(too_large());
        }
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
        // Bounded by the router's DefaultBodyLimit (server.max_body_bytes).
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    RequestRejection {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        code: "PAYLOAD_TOO_LARGE",
                        message: "the request body is larger than server.max_body_bytes".to_owned(),
                    }
                } else {
                    RequestRejection {
                        status: rejection.status(),
                        code: "BAD_REQUEST",
                        message: rejection.body_text(),
                    }
                }
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
