//! A WebSocket client that speaks `graphql-transport-ws` (or the legacy `graphql-ws`) well
//! enough to test subscriptions frame by frame: what the server sends, when, and how it closes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        Message, client::IntoClientRequest, http::HeaderValue, protocol::frame::coding::CloseCode,
    },
};

use async_graphql::futures_util::{SinkExt, StreamExt};

use crate::helpers::metric_value;

/// The two sub-protocols the server speaks.
pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

pub struct LiveClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: &'static str,
}

/// How a connection ended: the close code and reason, or `None` when it just dropped.
pub type Closed = Option<(u16, String)>;

impl LiveClient {
    /// Opens a socket to `http_address` (`http://host:port`) without any GraphQL message yet.
    pub async fn open(http_address: &str, protocol: &'static str) -> Self {
        Self::open_with_headers(http_address, protocol, &[]).await
    }

    /// [`LiveClient::open`], with `headers` on the upgrade request.
    pub async fn open_with_headers(
        http_address: &str,
        protocol: &'static str,
        headers: &[(&'static str, &str)],
    ) -> Self {
        let url = format!("{}/graphql", http_address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket upgrade");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Self { socket, protocol }
    }

    /// Opens a socket and completes `connection_init` with `payload`; the close frame when the
    /// server refuses it.
    pub async fn connect(
        http_address: &str,
        protocol: &'static str,
        payload: Value,
    ) -> Result<Self, Closed> {
        let mut client = Self::open(http_address, protocol).await;
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            match client.next_message(Duration::from_secs(5)).await {
                Ok(message) if message["type"] == "connection_ack" => return Ok(client),
                // The legacy protocol keeps the socket alive with "ka" messages.
                Ok(message) if message["type"] == "ka" => {}
                Ok(message) if message["type"] == "connection_error" => {
                    return Err(client.closed(Duration::from_secs(5)).await);
                }
                Ok(message) => panic!("unexpected {message}"),
                Err(closed) => return Err(closed),
            }
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send a WebSocket message");
    }

    /// Starts subscription `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        self.send(json!({
            "id": id,
            "type": kind,
            "payload": { "query": query, "variables": variables }
        }))
        .await;
    }

    /// The next GraphQL message (pings answered, pongs skipped); `Err` with the close frame
    /// when the socket closes first. Panics after `wait` without either.
    pub async fn next_message(&mut self, wait: Duration) -> Result<Value, Closed> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a message from the server in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("a JSON message"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(
                        frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// The payload of the next `next` (or legacy `data`) message of subscription `id`.
    pub async fn next_event(&mut self, id: &str, wait: Duration) -> Value {
        loop {
            let message = self
                .next_message(wait)
                .await
                .unwrap_or_else(|closed| panic!("closed while waiting for an event: {closed:?}"));
            if message["type"] == "ka" {
                continue;
            }
            assert_eq!(message["id"], id, "{message}");
            assert!(
                message["type"] == "next" || message["type"] == "data",
                "{message}"
            );
            return message["payload"].clone();
        }
    }

    /// Whether nothing arrives for `wait` (keep-alives aside).
    pub async fn is_quiet_for(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_elapsed) => return true,
                Ok(Some(Ok(Message::Text(text)))) if text.contains("\"ka\"") => {}
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(_) => return false,
            }
        }
    }

    /// Reads until the server closes the socket; its close frame.
    pub async fn closed(&mut self, wait: Duration) -> Closed {
        loop {
            match self.next_message(wait).await {
                Ok(_) => {}
                Err(closed) => return closed,
            }
        }
    }

    /// Closes the socket from this side.
    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "done".into(),
            }))
            .await;
    }
}

/// A WebSocket upgrade of `GET /graphql` as a plain HTTP request (from a page of `origin`,
/// when given): the server's answer, 101 or its refusal.
pub async fn upgrade_request(http_address: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{http_address}/graphql"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", TRANSPORT_WS);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("send the upgrade request")
}

/// A subscriber that reads nothing after subscribing, with a receive buffer as small as the
/// kernel allows: what the server sends it piles up on the server's side.
pub struct SlowReader {
    _socket: WebSocketStream<TcpStream>,
}

impl SlowReader {
    pub async fn subscribe(http_address: &str, query: &str) -> Self {
        let address = http_address.trim_start_matches("http://");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let stream = socket.connect(address.parse().unwrap()).await.unwrap();
        let mut request = format!("ws://{address}/graphql")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(TRANSPORT_WS),
        );
        let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("the WebSocket upgrade");
        let send = |message: Value| Message::Text(message.to_string().into());
        socket
            .send(send(json!({ "type": "connection_init" })))
            .await
            .unwrap();
        let ack = socket.next().await.unwrap().unwrap();
        assert!(ack.to_string().contains("connection_ack"), "{ack}");
        socket
            .send(send(
                json!({ "id": "slow", "type": "subscribe", "payload": { "query": query } }),
            ))
            .await
            .unwrap();
        Self { _socket: socket }
    }
}

/// Waits until every server in `http_addresses` listens for changes, as its own metrics say.
/// Subscribe only then: a subscription made before a server's first LISTEN is told RESYNC
/// when it comes, ahead of the change a test makes.
pub async fn wait_until_listening(http_addresses: &[&str]) {
    wait_for_live_metrics(http_addresses, 0).await;
}

/// Waits until the servers in `http_addresses` listen and, together, run at least
/// `subscriptions` subscriptions that receive changes: from then on every committed change
/// reaches those subscribers, where a pause would only make it likely.
pub async fn wait_until_subscribed(http_addresses: &[&str], subscriptions: u64) {
    wait_for_live_metrics(http_addresses, subscriptions).await;
}

async fn wait_for_live_metrics(http_addresses: &[&str], subscriptions: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut listening = true;
        let mut running = 0;
        for address in http_addresses {
            let live = live_metrics(address).await;
            listening &= live.listening;
            running += live.subscriptions;
        }
        if listening && running >= subscriptions {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 15 s, listening: {listening}, subscriptions: {running} of {subscriptions}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a server's metrics say of its live updates now.
pub struct LiveMetrics {
    /// Whether its listening connection LISTENs.
    pub listening: bool,
    /// Subscriptions that receive events.
    pub subscriptions: u64,
}

pub async fn live_metrics(http_address: &str) -> LiveMetrics {
    let page = reqwest::get(format!("{http_address}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics page");
    LiveMetrics {
        listening: metric_value(&page, "stations_live_listening") == 1,
        subscriptions: metric_value(&page, "stations_live_subscriptions"),
    }
}
