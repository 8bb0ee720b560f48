//! One subscriber's WebSocket, from the upgrade until it closes: the `graphql-transport-ws`
//! sub-protocol of the graphql-ws library
//! (<https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md>), which current clients
//! speak, and the legacy `graphql-ws` of subscriptions-transport-ws. async-graphql speaks both;
//! this module bounds and supervises the connection around it:
//!
//! - at most `subscriptions.max_connections` sockets per replica (more: HTTP 503 before the
//!   upgrade, `routes::graphql::websocket`), and `subscriptions.max_per_connection`
//!   subscriptions on each ([`super::subscription_limit`]);
//! - the bearer token comes in `connection_init` (`{"authorization": "Bearer <token>"}`, or the
//!   upgrade request's own `Authorization` header), admitted by the authorization policy; a
//!   refused one closes with 4403; while traces are sent, a `traceparent` beside it makes the
//!   connection's operations part of the caller's trace (browsers cannot set upgrade headers);
//! - a WebSocket ping every `subscriptions.keepalive_secs`; 4408 when `connection_init` does not
//!   come in time; a connection idle for `subscriptions.idle_timeout_secs` is closed;
//! - a message or frame over `server.max_body_bytes` closes with 1009 before it is parsed;
//! - a client that does not take a message within `subscriptions.send_timeout_secs`, or whose
//!   subscription falls `subscriptions.buffer_events` behind, is dropped (1008): memory does not
//!   grow for a slow consumer;
//! - on shutdown every socket is closed with 1001 (going away).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use async_graphql::{
    Data,
    futures_util::{SinkExt, StreamExt, future, stream::SplitStream},
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::ws::{CloseFrame, Message, WebSocket},
    http::{HeaderMap, HeaderValue},
};
use opentelemetry::trace::TraceContextExt;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, PollSender};

use super::connection::{Closing, Connection};
use crate::auth::Authenticator;
use crate::configuration::{ServerSettings, SubscriptionSettings};
use crate::graphql::AppSchema;
use crate::graphql::pipeline::{CallersTrace, Origin, Transport, authorization::Authorization};
use crate::metrics::Metrics;
use crate::telemetry::traces;

/// graphql-transport-ws: the client is not allowed to connect (its token).
const FORBIDDEN: u16 = 4403;
/// graphql-transport-ws: `connection_init` did not come in time.
const INIT_TIMEOUT: u16 = 4408;
const GOING_AWAY: u16 = 1001;
const PROTOCOL_ERROR: u16 = 1002;
/// graphql-transport-ws: a `subscribe` with the id of a subscription still running.
const SUBSCRIBER_EXISTS: u16 = 4409;
const MESSAGE_TOO_BIG: u16 = 1009;

/// The sockets of this replica: their limit, who may open one, and the signal to close them.
pub struct Sockets {
    pub settings: SubscriptionSettings,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Admits each connection by its `connection_init`.
    authorization: Authorization,
    stopping: CancellationToken,
    /// `server.max_body_bytes`: the largest message (and frame) a client may send.
    pub max_message_bytes: usize,
    /// `server.cors_allowed_origins`: pages of other origins that may open a socket.
    pub allowed_origins: Vec<String>,
}

impl Sockets {
    pub fn new(
        settings: SubscriptionSettings,
        server: &ServerSettings,
        authenticator: Arc<Authenticator>,
        metrics: Arc<Metrics>,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            metrics,
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

    /// A slot for one more socket, if the replica has one free.
    pub fn try_open(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// Waits, up to `timeout`, until every socket has closed.
    pub async fn closed(&self, timeout: Duration) {
        let everyone = u32::try_from(self.settings.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(timeout, self.slots.acquire_many(everyone)).await;
    }
}

/// Runs one connection until either side closes it.
///
/// async-graphql-axum's [`GraphQLWebSocket`] speaks the protocol; it is given our own pair of
/// ends around the socket, because what it does with the socket alone cannot bound a
/// connection: its `keepalive_timeout` closes a quiet client without ever pinging it, it sends
/// without a timeout (a client that stops reading would hold its memory), it closes a refused
/// `connection_init` with 1002 where the protocol asks for 4403, and it silently replaces a
/// subscription whose id is still running, where the protocol asks for 4409. So what the
/// client sends passes [`incoming`] on its way in (sizes, activity, duplicate ids), and what
/// the protocol sends goes through a channel to the one writer below, which also pings, closes
/// and gives up on a client that does not read.
pub async fn serve(
    sockets: Arc<Sockets>,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    legacy: bool,
    schema: AppSchema,
    slot: OwnedSemaphorePermit,
    header_authorization: Option<HeaderValue>,
) {
    let settings = &sockets.settings;
    let metrics = Arc::clone(&sockets.metrics);
    metrics.record_socket(1);
    let connection = Arc::new(Connection::default());
    let last_heard = Arc::new(Mutex::new(Instant::now()));
    let running = Arc::new(Mutex::new(RunningIds::default()));
    let (mut socket_sink, socket_stream) = socket.split();
    let (outgoing, mut to_send) = mpsc::channel::<Message>(1);

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
                // Each operation may carry a token in its own `extensions`.
                read_your_writes: None,
                read_from_primary: false,
            });
            data.insert(Arc::clone(&connection));
            if let Some(callers) = payload_trace(&payload) {
                data.insert(CallersTrace(callers));
            }
            Ok(data)
        }
    };
    let graphql = GraphQLWebSocket::new_with_pair(
        PollSender::new(outgoing),
        incoming(
            socket_stream,
            Incoming {
                connection: Arc::clone(&connection),
                last_heard: Arc::clone(&last_heard),
                running: (!legacy).then(|| Arc::clone(&running)),
                max_message_bytes: sockets.max_message_bytes,
            },
        ),
        schema,
        protocol,
    )
    .on_connection_init(on_init)
    .serve();

    let send_timeout = Duration::from_secs(settings.send_timeout_secs);
    let idle_timeout = Duration::from_secs(settings.idle_timeout_secs);
    let mut pings = tokio::time::interval(Duration::from_secs(settings.keepalive_secs));
    pings.reset();
    let mut idle_check = tokio::time::interval(idle_timeout.min(Duration::from_secs(5)));
    let init_deadline =
        tokio::time::sleep(Duration::from_secs(settings.connection_init_timeout_secs));
    tokio::pin!(init_deadline);

    // The one writer: what the protocol sends, pings, and the close when anything asks for one.
    let write = async {
        let closing: Option<Closing> = loop {
            let message = tokio::select! {
                message = to_send.recv() => match message {
                    Some(Message::Close(frame)) => {
                        let (code, reason) = frame
                            .map(|frame| (frame.code, frame.reason.to_string()))
                            .unwrap_or((1000, String::new()));
                        // A refused connection_init: the protocol's code for it is 4403.
                        let code = if code == PROTOCOL_ERROR && !connection.is_acknowledged() {
                            FORBIDDEN
                        } else {
                            code
                        };
                        break Some(Closing::new(code, reason, None));
                    }
                    Some(Message::Text(text)) => {
                        forget_completed(&running, &text);
                        Message::Text(text)
                    }
                    Some(message) => message,
                    // The legacy protocol refuses connection_init with a message, then ends.
                    None if legacy && !connection.is_acknowledged() => {
                        break Some(Closing::new(FORBIDDEN, "unauthorized", None));
                    }
                    // The client's side ended: for a reason worth a close code (an oversized
                    // message, a duplicate id), if its reader asked for one.
                    None => break connection.close_requested(),
                },
                closing = connection.closing() => break Some(closing),
                () = sockets.stopping.cancelled() => {
                    break Some(Closing::new(GOING_AWAY, "server shutting down", Some("shutdown")));
                }
                () = &mut init_deadline, if !connection.is_acknowledged() => {
                    break Some(Closing::new(
                        INIT_TIMEOUT,
                        format!(
                            "Connection initialisation timeout: send connection_init within {} \
                             s (subscriptions.connection_init_timeout_secs)",
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
                    break Some(Closing::new(
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
            match tokio::time::timeout(send_timeout, socket_sink.send(message)).await {
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
        // The protocol's side stops with the connection: its input ends, and it can send no more.
        connection.close(GOING_AWAY, "closed", "closed");
        drop(to_send);
        if let Some(closing) = closing {
            if let Some(label) = closing.label {
                metrics.record_socket_dropped(label);
            }
            let frame = CloseFrame {
                code: closing.code,
                reason: closing.reason.chars().take(120).collect::<String>().into(),
            };
            let close = socket_sink.send(Message::Close(Some(frame)));
            let _ = tokio::time::timeout(send_timeout, close).await;
        }
    };
    tokio::join!(graphql, write);
    metrics.record_socket(-1);
    drop(slot);
}

/// What [`incoming`] watches on the client's messages.
struct Incoming {
    connection: Arc<Connection>,
    last_heard: Arc<Mutex<Instant>>,
    /// The ids of the subscriptions running (graphql-transport-ws only: the legacy protocol
    /// says nothing of duplicates).
    running: Option<Arc<Mutex<RunningIds>>>,
    max_message_bytes: usize,
}

/// The client's messages on their way to the protocol: a read error closes with the code that
/// names it, a message other than the transport's own pings counts as activity, a second
/// `subscribe` with an id still running closes with 4409, and the stream ends when the
/// connection is to close.
fn incoming(
    stream: SplitStream<WebSocket>,
    watch: Incoming,
) -> impl futures_util::Stream<Item = Result<Message, axum::Error>> + Send {
    let closed = {
        let connection = Arc::clone(&watch.connection);
        async move {
            connection.closing().await;
        }
    };
    stream.take_until(closed).take_while(move |message| {
        let keep = match message {
            Err(error) => {
                close_for_read_error(&watch.connection, error, watch.max_message_bytes);
                false
            }
            // Pings and pongs are the transport's own: a client's automatic pong is no
            // sign that anyone is using the socket.
            Ok(Message::Ping(_) | Message::Pong(_)) => true,
            Ok(message) => {
                if let Ok(mut heard) = watch.last_heard.lock() {
                    *heard = Instant::now();
                }
                match (&watch.running, message) {
                    (Some(running), Message::Text(text)) => {
                        admit_subscription(&watch.connection, running, text)
                    }
                    _ => true,
                }
            }
        };
        future::ready(keep)
    })
}

/// The `type` and `id` of a graphql-transport-ws message.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    id: Option<&'a str>,
}

/// The ids of a connection's running subscriptions.
#[derive(Default)]
struct RunningIds {
    running: HashSet<String>,
    /// Ids the client completed, whose completion the protocol has yet to echo: that echo must
    /// not end a new subscription that took the id meanwhile.
    echo_pending: HashSet<String>,
}

/// Whether a client's message may go on: not a `subscribe` whose id still runs (the protocol
/// closes the connection with 4409 then). Notes the ids that start and stop.
fn admit_subscription(connection: &Connection, ids: &Mutex<RunningIds>, text: &str) -> bool {
    let Ok(Envelope { kind, id: Some(id) }) = serde_json::from_str::<Envelope>(text) else {
        return true;
    };
    let Ok(mut ids) = ids.lock() else {
        return true;
    };
    match kind {
        "subscribe" if !ids.running.insert(id.to_owned()) => {
            connection.close(
                SUBSCRIBER_EXISTS,
                format!("Subscriber for {id} already exists"),
                "duplicate_id",
            );
            false
        }
        "complete" => {
            if ids.running.remove(id) {
                ids.echo_pending.insert(id.to_owned());
            }
            true
        }
        _ => true,
    }
}

/// Forgets the id of a subscription the server completed, which the client may use again.
fn forget_completed(ids: &Mutex<RunningIds>, text: &str) {
    // The protocol's messages begin with their type: only a completion is parsed.
    if !text.starts_with(r#"{"type":"complete""#) {
        return;
    }
    if let (Ok(Envelope { id: Some(id), .. }), Ok(mut ids)) =
        (serde_json::from_str::<Envelope>(text), ids.lock())
        && !ids.echo_pending.remove(id)
    {
        ids.running.remove(id);
    }
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

/// The caller's trace named in a `connection_init` payload (`{"traceparent": "00-…",
/// "tracestate": "…"}`, W3C Trace Context's headers as keys), while traces are sent.
fn payload_trace(payload: &serde_json::Value) -> Option<opentelemetry::Context> {
    if !traces::enabled() {
        return None;
    }
    let mut headers = HeaderMap::new();
    for key in ["traceparent", "tracestate"] {
        if let Some(value) = payload
            .get(key)
            .and_then(serde_json::Value::as_str)
            .and_then(|value| HeaderValue::from_str(value).ok())
        {
            headers.insert(key, value);
        }
    }
    let context = traces::incoming_context(&headers);
    context
        .span()
        .span_context()
        .is_valid()
        .then_some(context.clone())
}

/// The bearer token of a `connection_init` payload: `{"authorization": "Bearer <token>"}`
/// (or `Authorization`, as some clients copy the header's spelling).
fn payload_authorization(payload: &serde_json::Value) -> Option<HeaderValue> {
    ["authorization", "Authorization"]
        .iter()
        .find_map(|key| payload.get(*key)?.as_str())
        .and_then(|value| HeaderValue::from_str(value).ok())
}
