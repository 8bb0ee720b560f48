//! GraphQL over WebSocket at `/graphql`, for subscriptions: the `graphql-transport-ws`
//! sub-protocol of the graphql-ws library
//! (<https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md>), which current clients
//! speak, and the legacy `graphql-ws` of subscriptions-transport-ws. async-graphql speaks both;
//! this module bounds and supervises the connection around it:
//!
//! - at most `subscriptions.max_connections` sockets per replica (more: HTTP 503 before the
//!   upgrade), and `subscriptions.max_per_connection` subscriptions on each (the
//!   `subscription_limit` policy);
//! - the bearer token comes in `connection_init` (`{"authorization": "Bearer <token>"}`, or the
//!   upgrade request's own `Authorization` header); a refused one closes with 4403;
//! - a WebSocket ping every `subscriptions.keepalive_secs`; 4408 when `connection_init` does not
//!   come in time; a connection idle for `subscriptions.idle_timeout_secs` is closed;
//! - a client that does not take a message within `subscriptions.send_timeout_secs`, or whose
//!   subscription falls `subscriptions.buffer_events` behind, is dropped (1008): memory does not
//!   grow for a slow consumer;
//! - on shutdown every socket is closed with 1001 (going away).

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use async_graphql::{
    Data,
    futures_util::{SinkExt, StreamExt, future},
    http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage},
};
use axum::{
    extract::{
        FromRequestParts, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{HeaderValue, header, request::Parts},
    response::{IntoResponse, Response},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::Authenticator;
use crate::configuration::{ServerSettings, SubscriptionSettings};
use crate::connections::ConnectionSlot;
use crate::error::ErrorCode;
use crate::graphql::pipeline::{Origin, Transport, authorization::Authorization};
use crate::live::connection::Connection;
use crate::routes::{refusal, sites};
use crate::state::AppState;

/// graphql-transport-ws: the client is not allowed to connect (its token).
const FORBIDDEN: u16 = 4403;
/// graphql-transport-ws: `connection_init` did not come in time.
const INIT_TIMEOUT: u16 = 4408;
const GOING_AWAY: u16 = 1001;
const PROTOCOL_ERROR: u16 = 1002;
const MESSAGE_TOO_BIG: u16 = 1009;

/// The sockets of this replica: their limit, who may open one, and the signal to close them.
pub struct Sockets {
    settings: SubscriptionSettings,
    slots: Arc<Semaphore>,
    /// Admits each connection by its `connection_init`.
    authorization: Authorization,
    stopping: watch::Receiver<bool>,
    /// `server.max_body_bytes`: the largest message (and frame) a client may send.
    max_message_bytes: usize,
    /// `server.cors_allowed_origins`: pages of other origins that may open a socket.
    allowed_origins: Vec<String>,
}

impl Sockets {
    pub fn new(
        settings: SubscriptionSettings,
        server: &ServerSettings,
        authenticator: Arc<Authenticator>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            authorization: Authorization::new(
                authenticator,
                Duration::from_secs(server.request_timeout_secs),
            ),
            stopping,
            max_message_bytes: server.max_body_bytes,
            allowed_origins: server.cors_allowed_origins.clone(),
        }
    }

    /// Waits, up to `timeout`, until every socket has closed.
    pub async fn closed(&self, timeout: Duration) {
        let everyone = u32::try_from(self.settings.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(timeout, self.slots.acquire_many(everyone)).await;
    }
}

/// Whether `parts` asks to upgrade to a WebSocket.
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
        return refusal(
            ErrorCode::SubscriptionsDisabled,
            "subscriptions are turned off here (subscriptions.enabled = false)",
        );
    }
    if !sites::websocket_origin_allowed(&parts.headers, &sockets.allowed_origins) {
        return refusal(
            ErrorCode::Forbidden,
            "pages of other origins may not open a WebSocket here: list the page's origin in \
             server.cors_allowed_origins",
        );
    }
    let Some(protocol) = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|protocol| WebSocketProtocols::from_str(protocol.trim()).ok())
        })
    else {
        return refusal(
            ErrorCode::BadRequest,
            "name a sub-protocol in Sec-WebSocket-Protocol: graphql-transport-ws (the graphql-ws \
             library) or graphql-ws (subscriptions-transport-ws)",
        );
    };
    let Ok(slot) = Arc::clone(&sockets.slots).try_acquire_owned() else {
        return refusal(
            ErrorCode::ServiceUnavailable,
            &format!(
                "this replica serves {} WebSocket connections already, its limit \
                 (subscriptions.max_connections): retry later, or on another replica",
                sockets.settings.max_connections
            ),
        );
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let header_authorization = parts.headers.get(header::AUTHORIZATION).cloned();
    // The socket keeps its connection's slot of server.max_connections after the upgrade.
    let connection_slot = parts.extensions.get::<ConnectionSlot>().cloned();
    let max_message_bytes = sockets.max_message_bytes;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .on_upgrade(move |socket| async move {
            serve(socket, protocol, state, slot, header_authorization).await;
            drop(connection_slot);
        })
}

/// Runs one connection until either side closes it.
async fn serve(
    socket: WebSocket,
    protocol: WebSocketProtocols,
    state: AppState,
    slot: OwnedSemaphorePermit,
    header_authorization: Option<HeaderValue>,
) {
    let sockets = Arc::clone(&state.sockets);
    let settings = &sockets.settings;
    let metrics = Arc::clone(&state.metrics);
    metrics.record_socket(1);
    let connection = Arc::new(Connection::default());
    let last_heard = Arc::new(Mutex::new(Instant::now()));
    let (mut sink, stream) = socket.split();

    let input = {
        let last_heard = Arc::clone(&last_heard);
        let connection = Arc::clone(&connection);
        let max_message_bytes = sockets.max_message_bytes;
        stream
            .take_while(move |message| {
                if let Err(error) = message {
                    close_for_read_error(&connection, error, max_message_bytes);
                }
                future::ready(message.is_ok())
            })
            .filter_map(move |message| {
                let payload = match message {
                    Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                    Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                    // Pings and pongs are the transport's own: a client's automatic pong is
                    // no sign that anyone is using the socket.
                    _ => None,
                };
                if payload.is_some()
                    && let Ok(mut heard) = last_heard.lock()
                {
                    *heard = Instant::now();
                }
                future::ready(payload)
            })
    };
    let on_init = {
        let connection = Arc::clone(&connection);
        let sockets = Arc::clone(&sockets);
        move |payload: serde_json::Value| async move {
            let authorization = payload_authorization(&payload).or(header_authorization);
            let access = sockets
                .authorization
                .admit_connection(authorization.as_ref())
                .await?;
            // A token that expires ends the connection with it.
            if let Some(expires_at) = access.principal.expires_at {
                let until = expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                let connection = Arc::downgrade(&connection);
                tokio::spawn(async move {
                    tokio::time::sleep(until).await;
                    if let Some(connection) = connection.upgrade() {
                        connection.close(FORBIDDEN, "the token expired", "expired");
                    }
                });
            }
            connection.acknowledge();
            let mut data = Data::default();
            data.insert(Origin {
                transport: Transport::WebSocket,
                authorization,
                deadline: None,
            });
            data.insert(Arc::clone(&connection));
            Ok(data)
        }
    };
    let graphql = async_graphql::http::WebSocket::new(state.schema.clone(), input, protocol)
        .on_connection_init(on_init);

    let send_timeout = Duration::from_secs(settings.send_timeout_secs);
    let idle_timeout = Duration::from_secs(settings.idle_timeout_secs);
    let mut stopping = sockets.stopping.clone();
    let mut pings = tokio::time::interval(Duration::from_secs(settings.keepalive_secs));
    pings.reset();
    let mut idle_check = tokio::time::interval(idle_timeout.min(Duration::from_secs(5)));
    let init_deadline =
        tokio::time::sleep(Duration::from_secs(settings.connection_init_timeout_secs));
    async_graphql::futures_util::pin_mut!(graphql, init_deadline);

    // Forward what async-graphql sends, ping, and close the socket when anything asks to.
    let closing: Option<(u16, String, Option<&'static str>)> = loop {
        let outgoing = tokio::select! {
            message = graphql.next() => match message {
                Some(WsMessage::Text(text)) => Message::Text(text.into()),
                // async-graphql refuses a failed connection_init with 1002; the protocol's
                // code for it is 4403.
                Some(WsMessage::Close(code, reason)) => {
                    let code = if code == 1002 && !connection.is_acknowledged() {
                        FORBIDDEN
                    } else {
                        code
                    };
                    break Some((code, reason, None));
                }
                // The legacy protocol refuses connection_init with a message, then ends.
                None if !connection.is_acknowledged()
                    && protocol == WebSocketProtocols::SubscriptionsTransportWS =>
                {
                    break Some((FORBIDDEN, "unauthorized".to_owned(), None));
                }
                // The client's side ended: for a reason worth a close code (an oversized
                // message), if its reader asked for one.
                None => break connection
                    .close_requested()
                    .map(|closing| (closing.code, closing.reason, Some(closing.label))),
            },
            closing = connection.closing() => {
                break Some((closing.code, closing.reason, Some(closing.label)));
            }
            _ = stopping.wait_for(|stopping| *stopping) => {
                break Some((GOING_AWAY, "server shutting down".to_owned(), Some("shutdown")));
            }
            () = &mut init_deadline, if !connection.is_acknowledged() => {
                break Some((
                    INIT_TIMEOUT,
                    format!(
                        "Connection initialisation timeout: send connection_init within {} s \
                         (subscriptions.connection_init_timeout_secs)",
                        settings.connection_init_timeout_secs
                    ),
                    Some("init_timeout"),
                ));
            }
            _ = pings.tick() => Message::Ping(Vec::new().into()),
            _ = idle_check.tick() => {
                let quiet_for = last_heard
                    .lock()
                    .map(|heard| heard.elapsed())
                    .unwrap_or_default();
                if connection.subscriptions() > 0 || quiet_for < idle_timeout {
                    continue;
                }
                break Some((
                    1000,
                    format!(
                        "idle: no subscription and no message for {} s \
                         (subscriptions.idle_timeout_secs)",
                        settings.idle_timeout_secs
                    ),
                    Some("idle"),
                ));
            }
        };
        match tokio::time::timeout(send_timeout, sink.send(outgoing)).await {
            Ok(Ok(())) => {}
            // The client went away.
            Ok(Err(_)) => break None,
            // The client does not read: nothing more can be sent, a close frame included.
            Err(_elapsed) => {
                metrics.record_socket_dropped("slow");
                break None;
            }
        }
    };
    if let Some((code, reason, label)) = closing {
        if let Some(label) = label {
            metrics.record_socket_dropped(label);
        }
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        };
        let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(Some(frame)))).await;
    }
    metrics.record_socket(-1);
    drop(slot);
}

/// Closes the connection with the code that names why reading from the client failed: 1009
/// for a message or frame over `server.max_body_bytes` (refused before it was parsed), 1002
/// for a breach of the WebSocket protocol. A connection that is simply gone needs no close.
fn close_for_read_error(connection: &Connection, error: &axum::Error, max_message_bytes: usize) {
    use tungstenite::error::{CapacityError, Error};
    let Some(error) =
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<Error>())
    else {
        return;
    };
    match error {
        Error::Capacity(CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders) => {
            connection.close(
                MESSAGE_TOO_BIG,
                format!(
                    "a message is larger than {max_message_bytes} bytes (server.max_body_bytes)"
                ),
                "too_big",
            )
        }
        Error::Protocol(_) | Error::Utf8(_) => {
            connection.close(PROTOCOL_ERROR, "WebSocket protocol error", "protocol_error");
        }
        _ => {}
    }
}

/// The bearer token of a `connection_init` payload: `{"authorization": "Bearer <token>"}`
/// (or `Authorization`, as some clients copy the header's spelling).
fn payload_authorization(payload: &serde_json::Value) -> Option<HeaderValue> {
    ["authorization", "Authorization"]
        .iter()
        .find_map(|key| payload.get(*key)?.as_str())
        .and_then(|value| HeaderValue::from_str(value).ok())
}
