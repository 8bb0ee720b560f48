//! GraphQL responses as HTTP answers, with the status codes of the GraphQL-over-HTTP spec
//! (<https://graphql.github.io/graphql-over-http/draft/#sec-Response>) for the media type the
//! client accepts.
//!
//! A *request error* is one raised before execution (a document that does not parse or
//! validate, a policy's refusal): the response then has no `data` entry, and every error lacks
//! a `path`. With `application/graphql-response+json` it is answered 4xx (or 5xx), by its code;
//! with `application/json`, 200, except for refusals that are not about GraphQL at all (who
//! may ask, the HTTP method, an unavailable server), which keep their status under both.
//! Anything that executed answers 200: its errors are field errors, next to its data.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::accept::MediaType;

/// The HTTP answer to one operation.
pub fn single(response: async_graphql::Response, media: MediaType) -> Response {
    let request_error = is_request_error(&response);
    let status = if is_refusal(&response) {
        refusal_status(&response)
    } else {
        status(first_code(&response), request_error, media)
    };
    let body = if request_error {
        serde_json::to_vec(&RequestErrors::of(&response))
    } else {
        serde_json::to_vec(&response)
    };
    let mut answer = encoded(status, body, media);
    let headers = answer.headers_mut();
    match status {
        // RFC 6750; the same for a missing token as for a wrong one.
        StatusCode::UNAUTHORIZED => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        _ => {}
    }
    for (name, value) in &response.http_headers {
        headers.append(name, value.clone());
    }
    answer
}

/// The HTTP answer to a batch: an array of responses in the order of the requests, 200 as a
/// whole; each element carries its own errors and codes.
pub fn batch(responses: &[async_graphql::Response], media: MediaType) -> Response {
    let elements: Vec<BatchElement> = responses
        .iter()
        .map(|response| {
            if is_request_error(response) {
                BatchElement::RequestErrors(RequestErrors::of(response))
            } else {
                BatchElement::Executed(response)
            }
        })
        .collect();
    encoded(StatusCode::OK, serde_json::to_vec(&elements), media)
}

/// Whether `response` is a request error: nothing executed, so there is no data and no error
/// is about a field.
pub fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// Whether the operation ran but a guard refused it, with nothing else to show: no data, and
/// every error a refusal of who is calling. Answered 401 or 403, as a request error would be.
fn is_refusal(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|error| matches!(code_of(error), Some("UNAUTHENTICATED" | "FORBIDDEN")))
}

fn refusal_status(response: &async_graphql::Response) -> StatusCode {
    if response
        .errors
        .iter()
        .any(|error| code_of(error) == Some("UNAUTHENTICATED"))
    {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    }
}

fn code_of(error: &async_graphql::ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code),
        _ => None,
    }
}

/// The first error's `extensions.code`.
pub fn first_code(response: &async_graphql::Response) -> Option<&str> {
    code_of(response.errors.first()?)
}

fn status(code: Option<&str>, request_error: bool, media: MediaType) -> StatusCode {
    if !request_error {
        return StatusCode::OK;
    }
    match code {
        Some("UNAUTHENTICATED") => StatusCode::UNAUTHORIZED,
        Some("FORBIDDEN" | "OPERATION_NOT_ALLOWLISTED") => StatusCode::FORBIDDEN,
        Some("METHOD_NOT_ALLOWED") => StatusCode::METHOD_NOT_ALLOWED,
        Some("SERVICE_UNAVAILABLE") => StatusCode::SERVICE_UNAVAILABLE,
        Some("TIMEOUT") => StatusCode::GATEWAY_TIMEOUT,
        Some("BAD_REQUEST") => StatusCode::BAD_REQUEST,
        // As Apollo's router answers it: the document asked for is not here.
        Some("PERSISTED_QUERY_NOT_FOUND") if media == MediaType::GraphqlResponse => {
            StatusCode::NOT_FOUND
        }
        _ if media == MediaType::GraphqlResponse => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

fn encoded(status: StatusCode, body: serde_json::Result<Vec<u8>>, media: MediaType) -> Response {
    match body {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, media.content_type())],
            Body::from(body),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error, "could not encode a GraphQL response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, media.content_type())],
                r#"{"errors":[{"message":"internal error; the server log has the details","extensions":{"code":"INTERNAL"}}]}"#,
            )
                .into_response()
        }
    }
}

/// A request error's body: `errors` (and `extensions`), without `data`.
#[derive(Serialize)]
struct RequestErrors<'a> {
    errors: &'a [async_graphql::ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

impl<'a> RequestErrors<'a> {
    fn of(response: &'a async_graphql::Response) -> Self {
        Self {
            errors: &response.errors,
            extensions: &response.extensions,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum BatchElement<'a> {
    Executed(&'a async_graphql::Response),
    RequestErrors(RequestErrors<'a>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_spec_table_for_each_media_type() {
        use MediaType::{GraphqlResponse, Json};
        let cases = [
            (Some("GRAPHQL_PARSE_FAILED"), true, GraphqlResponse, 400),
            (Some("GRAPHQL_PARSE_FAILED"), true, Json, 200),
            (
                Some("GRAPHQL_VALIDATION_FAILED"),
                true,
                GraphqlResponse,
                400,
            ),
            (Some("GRAPHQL_VALIDATION_FAILED"), true, Json, 200),
            (Some("UNAUTHENTICATED"), true, Json, 401),
            (Some("METHOD_NOT_ALLOWED"), true, GraphqlResponse, 405),
            (Some("SERVICE_UNAVAILABLE"), true, Json, 503),
            (Some("TIMEOUT"), true, GraphqlResponse, 504),
            (
                Some("PERSISTED_QUERY_NOT_FOUND"),
                true,
                GraphqlResponse,
                404,
            ),
            (Some("PERSISTED_QUERY_NOT_FOUND"), true, Json, 200),
            (Some("BAD_USER_INPUT"), false, GraphqlResponse, 200),
            (Some("SERVICE_UNAVAILABLE"), false, Json, 200),
            (None, false, Json, 200),
        ];
        for (code, request_error, media, expected) in cases {
            assert_eq!(
                status(code, request_error, media).as_u16(),
                expected,
                "{code:?} {request_error} {media:?}"
            );
        }
    }

    #[test]
    fn a_request_error_has_no_data_entry_and_a_field_error_keeps_it() {
        let refusal =
            async_graphql::Response::from_errors(vec![async_graphql::ServerError::new("no", None)]);
        assert!(is_request_error(&refusal));
        let body = serde_json::to_value(RequestErrors::of(&refusal)).unwrap();
        assert!(body.get("data").is_none() && body["errors"][0]["message"] == "no");

        let mut field_error = async_graphql::ServerError::new("bad", None);
        field_error.path = vec![async_graphql::PathSegment::Field("stations".to_owned())];
        let executed = async_graphql::Response::from_errors(vec![field_error]);
        assert!(!is_request_error(&executed));
    }
}
