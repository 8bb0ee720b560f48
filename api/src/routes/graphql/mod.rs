//! GraphQL over HTTP at `/graphql` (<https://graphql.github.io/graphql-over-http/draft/>), the
//! transport only: it decodes the request (a JSON body, or the query string of a GET), hands
//! each operation to the schema, whose policies decide everything else
//! (`graphql::pipeline`), and encodes the answer in the media type the client accepts, with
//! the status the spec gives it. A browser asking for HTML gets the IDE instead.

mod accept;
mod respond;
pub mod websocket;
mod wire;

use std::time::Instant;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};

use crate::error::{ErrorCode, Refusal as Rejection};
use crate::graphql::pipeline::{Origin, Transport, telemetry::record_refused_request};
use crate::routes::ide;
use crate::state::AppState;
use accept::Accept;
use wire::Operations;

/// `POST /graphql`: one operation, or a batch of them, as JSON.
pub async fn post(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    answer_post(&state, request)
        .await
        .unwrap_or_else(|refusal| refuse(&state, started, refusal))
}

async fn answer_post(state: &AppState, request: Request) -> Result<Response, Rejection> {
    let deadline = tokio::time::Instant::now() + state.limits.request_timeout;
    wire::refuse_token_in_url(request.uri().query())?;
    let media = Accept::from_headers(request.headers()).graphql()?;
    let origin = Origin::of_http(Transport::Post, request.headers(), deadline);
    let operations = read_body(state, request, deadline)
        .await
        .and_then(|body| wire::from_body(&body, state.limits.max_batch_size))
        .map_err(|rejection| rejection.in_media(media))?;
    Ok(match operations {
        Operations::Single(request) => {
            respond::single(state.schema.execute(request.data(origin)).await, media)
        }
        Operations::Batch(requests) => {
            // In order, one at a time: a batch's mutations apply in the order they were sent,
            // all within the one deadline.
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(state.schema.execute(request.data(origin.clone())).await);
            }
            respond::batch(&responses, media)
        }
    })
}

/// `GET /graphql`: a query in the URL (`?query=...&variables=...`), a WebSocket for
/// subscriptions, or, for a browser, the IDE.
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    if websocket::is_upgrade(&parts) {
        return websocket::upgrade(state, parts).await;
    }
    let started = Instant::now();
    answer_get(&state, &parts)
        .await
        .unwrap_or_else(|refusal| refuse(&state, started, refusal))
}

async fn answer_get(state: &AppState, parts: &Parts) -> Result<Response, Rejection> {
    let accept = Accept::from_headers(&parts.headers);
    if accept.prefers_html() {
        let mut page = ide::page(state);
        page.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        return Ok(page);
    }
    let media = accept.graphql()?;
    let request = wire::from_query_string(parts.uri.query().unwrap_or_default())
        .map_err(|rejection| rejection.in_media(media))?;
    let deadline = tokio::time::Instant::now() + state.limits.request_timeout;
    let origin = Origin::of_http(Transport::Get, &parts.headers, deadline);
    let cache_control = cache_control(state, origin.authorization.is_some());
    let response = state.schema.execute(request.data(origin)).await;
    let cacheable = response.errors.is_empty();
    let mut answer = respond::single(response, media);
    let headers = answer.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        match (cacheable, cache_control) {
            (true, Some(value)) => value,
            _ => HeaderValue::from_static("no-store"),
        },
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Authorization"),
    );
    Ok(answer)
}

/// How long caches may keep a successful GET answer (`graphql.get_max_age_secs`): shared
/// caches only when no `Authorization` was sent, the client's own otherwise. `None`: not at all.
fn cache_control(state: &AppState, authorized: bool) -> Option<HeaderValue> {
    let max_age = state.limits.get_max_age_secs;
    if max_age == 0 {
        return None;
    }
    let scope = if authorized { "private" } else { "public" };
    HeaderValue::from_str(&format!("{scope}, max-age={max_age}")).ok()
}

/// The body of a JSON POST, within `server.body_read_timeout_secs` from now and the request's
/// deadline, whichever comes first: a whole-body bound, which a body dripping in a byte at a
/// time cannot stretch (tower-http's `RequestBodyTimeoutLayer` restarts its timer at every
/// chunk, and cost every request two timers and a boxed body in the benchmark).
async fn read_body(
    state: &AppState,
    request: Request,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Rejection> {
    let max_body_bytes = state.limits.max_body_bytes;
    let too_large = || {
        Rejection::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request body is larger than {max_body_bytes} bytes (server.max_body_bytes)"
            ),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max_body_bytes) {
        return Err(too_large());
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Rejection::new(
            ErrorCode::UnsupportedMediaType,
            "send the operation as JSON with Content-Type: application/json",
        ));
    }
    let (within, setting) = if state.limits.body_read_timeout <= state.limits.request_timeout {
        (
            state.limits.body_read_timeout,
            "server.body_read_timeout_secs",
        )
    } else {
        (state.limits.request_timeout, "server.request_timeout_secs")
    };
    let read_by = deadline.min(tokio::time::Instant::now() + within);
    // Bounded by the router's DefaultBodyLimit (server.max_body_bytes).
    let read = tokio::time::timeout_at(read_by, Bytes::from_request(request, state)).await;
    let Ok(read) = read else {
        return Err(Rejection::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s ({setting})",
                within.as_secs()
            ),
        ));
    };
    read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Rejection::new(ErrorCode::BadRequest, rejection.body_text())
        }
    })
}

/// Answers a request refused before it reached the schema, and counts it.
fn refuse(state: &AppState, started: Instant, rejection: Rejection) -> Response {
    record_refused_request(&state.metrics, rejection.code, started.elapsed());
    rejection.into_response()
}
