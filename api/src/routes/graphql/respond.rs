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

use crate::error::{ApiError, ErrorCode, Refusal, ResponseMedia};

/// The HTTP answer to one operation.
pub fn single(response: async_graphql::Response, media: ResponseMedia) -> Response {
    let request_error = is_request_error(&response);
    let status = match refused_caller(&response) {
        Some(code) => code.status(media),
        None if request_error => response
            .errors
            .first()
            .and_then(ErrorCode::of)
            .unwrap_or(ErrorCode::GraphqlValidationFailed)
            .status(media),
        None => StatusCode::OK,
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
pub fn batch(responses: &[async_graphql::Response], media: ResponseMedia) -> Response {
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

/// When a guard refused the caller and nothing else came of the operation (no data, every
/// error a refusal of who is calling): the code to answer with, `UNAUTHENTICATED` (401) before
/// `FORBIDDEN` (403), as a request error would be.
fn refused_caller(response: &async_graphql::Response) -> Option<ErrorCode> {
    if response.data != async_graphql::Value::Null || response.errors.is_empty() {
        return None;
    }
    let mut answer = ErrorCode::Forbidden;
    for error in &response.errors {
        match ErrorCode::of(error) {
            Some(ErrorCode::Unauthenticated) => answer = ErrorCode::Unauthenticated,
            Some(code) if code.refuses_the_caller() => {}
            _ => return None,
        }
    }
    Some(answer)
}

fn encoded(
    status: StatusCode,
    body: serde_json::Result<Vec<u8>>,
    media: ResponseMedia,
) -> Response {
    match body {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, media.content_type())],
            Body::from(body),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error, "could not encode a GraphQL response");
            Refusal::new(ErrorCode::Internal, ApiError::INTERNAL_MESSAGE)
                .in_media(media)
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

    fn answered(response: async_graphql::Response, media: ResponseMedia) -> (u16, String) {
        let answer = single(response, media);
        let status = answer.status().as_u16();
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            answer.into_body(),
            usize::MAX,
        ))
        .unwrap()
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, body["errors"][0]["extensions"]["code"].to_string())
    }

    #[test]
    fn every_code_is_answered_with_its_status_and_spelling_in_both_media_types() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            for media in [ResponseMedia::GraphqlResponse, ResponseMedia::Json] {
                let refused = async_graphql::Response::from_errors(vec![code.request_error("no")]);
                let (status, spelled) = answered(refused, media);
                assert_eq!(status, code.status(media).as_u16(), "{code} {media:?}");
                assert_eq!(spelled, format!("\"{code}\""));
            }
        }
    }

    #[test]
    fn the_status_follows_the_spec_table_for_each_media_type() {
        use ErrorCode::*;
        use ResponseMedia::{GraphqlResponse, Json};
        let cases = [
            (GraphqlParseFailed, GraphqlResponse, 400),
            (GraphqlParseFailed, Json, 200),
            (GraphqlValidationFailed, GraphqlResponse, 400),
            (GraphqlValidationFailed, Json, 200),
            (Unauthenticated, Json, 401),
            (MethodNotAllowed, GraphqlResponse, 405),
            (ServiceUnavailable, Json, 503),
            (Timeout, GraphqlResponse, 504),
            (PersistedQueryNotFound, GraphqlResponse, 404),
            (PersistedQueryNotFound, Json, 200),
        ];
        for (code, media, expected) in cases {
            assert_eq!(code.status(media).as_u16(), expected, "{code} {media:?}");
        }
        // Whatever executed answers 200, its errors beside its data.
        let mut field_error = BadUserInput.request_error("bad");
        field_error.path = vec![async_graphql::PathSegment::Field("station".to_owned())];
        let executed = async_graphql::Response::from_errors(vec![field_error]);
        assert_eq!(answered(executed, GraphqlResponse).0, 200);
        // A guard's refusal of the caller keeps its status even though the operation ran.
        let mut guarded = Forbidden.request_error("no");
        guarded.path = vec![async_graphql::PathSegment::Field(
            "deleteStation".to_owned(),
        )];
        let mut unauthenticated = Unauthenticated.request_error("no");
        unauthenticated.path = guarded.path.clone();
        let refused = async_graphql::Response::from_errors(vec![guarded, unauthenticated]);
        assert_eq!(answered(refused, Json).0, 401);
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
