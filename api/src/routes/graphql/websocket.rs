//! The WebSocket upgrade of `GET /graphql`, refused here before the upgrade when
//! subscriptions are off, the page's origin is foreign, no known sub-protocol is offered or
//! the replica serves all the sockets it may; the socket's life is `live::socket`'s.

use std::{str::FromStr, sync::Arc};

use async_graphql::http::WebSocketProtocols;
use async_graphql_axum::GraphQLProtocol;
use axum::{
    extract::{FromRequestParts, WebSocketUpgrade},
    http::{header, request::Parts},
    response::{IntoResponse, Response},
};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::connections::ConnectionSlot;
use crate::error::{ErrorCode, Refusal};
use crate::live::socket;
use crate::routes::sites;
use crate::state::AppState;
use crate::telemetry::traces;

/// Whether `parts` asks to upgrade to a WebSocket.
/// While traces are sent, the socket's span, under the caller's trace when the upgrade
/// request's `traceparent` names one: the operations sent over the socket are its children.
/// It lasts as long as the connection, and whether it is kept decides for all of them.
fn connection_span(parts: &Parts) -> Span {
    if !traces::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "websocket",
        otel.name = "GraphQL WebSocket",
        otel.kind = "server",
        url.path = parts.uri.path(),
    );
    let _ = span.set_parent(traces::incoming_context(&parts.headers));
    span
}

pub fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Answers a WebSocket upgrade of `GET /graphql`.
pub async fn upgrade(state: AppState, mut parts: Parts) -> Response {
    let sockets = Arc::clone(&state.sockets);
    if !sockets.settings.enabled {
        return Refusal::new(
            ErrorCode::SubscriptionsDisabled,
            "subscriptions are turned off here (subscriptions.enabled = false)",
        )
        .into_response();
    }
    if !sites::websocket_origin_allowed(&parts.headers, &sockets.allowed_origins) {
        return Refusal::new(
            ErrorCode::Forbidden,
            "pages of other origins may not open a WebSocket here: list the page's origin in \
             server.cors_allowed_origins",
        )
        .into_response();
    }
    // The first sub-protocol the client offers that async-graphql speaks, as
    // async-graphql-axum's extractor picks it; its own refusal is a bare 400.
    let Ok(protocol) = GraphQLProtocol::from_request_parts(&mut parts, &state).await else {
        return Refusal::new(
            ErrorCode::BadRequest,
            "name a sub-protocol in Sec-WebSocket-Protocol: graphql-transport-ws (the graphql-ws \
             library) or graphql-ws (subscriptions-transport-ws)",
        )
        .into_response();
    };
    let offered = offered_protocol(&parts);
    let Some(slot) = sockets.try_open() else {
        return Refusal::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "this replica serves {} WebSocket connections already, its limit \
                 (subscriptions.max_connections): retry later, or on another replica",
                sockets.settings.max_connections
            ),
        )
        .into_response();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let header_authorization = parts.headers.get(header::AUTHORIZATION).cloned();
    // The socket keeps its connection's slot of server.max_connections after the upgrade.
    let connection_slot = parts.extensions.get::<ConnectionSlot>().cloned();
    let max_message_bytes = sockets.max_message_bytes;
    let connection_span = connection_span(&parts);
    upgrade
        .protocols(offered.map(|protocol| protocol.sec_websocket_protocol()))
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .on_upgrade(move |socket| async move {
            socket::serve(
                sockets,
                socket,
                protocol,
                offered == Some(WebSocketProtocols::SubscriptionsTransportWS),
                state.schema,
                slot,
                header_authorization,
            )
            .instrument(connection_span)
            .await;
            drop(connection_slot);
        })
}

/// The sub-protocol `parts` settles on, read as [`GraphQLProtocol`] reads it (which keeps it to
/// itself): the answer names it, and the legacy one is told apart.
fn offered_protocol(parts: &Parts) -> Option<WebSocketProtocols> {
    parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|protocol| WebSocketProtocols::from_str(protocol.trim()).ok())
}
