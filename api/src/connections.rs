//! Accepting client connections and speaking HTTP/1.1 on them, with the bounds `axum::serve`
//! does not set: it runs hyper without a timer, so a client that never finishes its headers,
//! or keeps an idle connection open, holds a socket (a file descriptor) for ever, and nothing
//! caps how many sockets are open. Here, as in `axum::serve` otherwise:
//!
//! - at most `server.max_connections` sockets at once: each holds a [`ConnectionSlot`] from
//!   accept until it closes, a WebSocket included (its handler keeps the slot after the
//!   upgrade), and the next one is accepted only when a slot is free (the kernel's accept queue
//!   holds the rest);
//! - hyper's timer is set, so a request's head must arrive within
//!   `server.header_read_timeout_secs`, which also closes idle keep-alive connections (the
//!   body's bound is where it is read: `routes::graphql`);
//! - upgrades (WebSockets) are served;
//! - on the stop signal no connection is accepted any more, and every open one finishes the
//!   request it is serving and then closes.

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::{Router, extract::Request, http::header};
use futures_util::future::{self, Either};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::routes::sites::HostAllowlist;

/// How connections are bounded.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// The kernel's send buffer per connection (`server.socket_send_buffer_bytes`).
    pub send_buffer_bytes: usize,
    /// The `Host` names a server on loopback answers (`routes::sites`); `None` elsewhere.
    pub hosts: Option<Arc<HostAllowlist>>,
}

/// One of the `server.max_connections` slots, held by a socket until it closes; in each
/// request's extensions, so that a WebSocket keeps its connection's slot after the upgrade.
#[derive(Clone)]
pub struct ConnectionSlot {
    /// Returned to the semaphore when the last clone is dropped.
    _permit: Arc<OwnedSemaphorePermit>,
}

/// Serves `router` on the connections `listener` accepts, until `stop` completes and every
/// connection has finished the request it was serving.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stopping = CancellationToken::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => ConnectionSlot { _permit: Arc::new(slot) },
                Err(_closed) => break,
            },
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        tune(&stream, limits.send_buffer_bytes);
        let service = service(router.clone(), slot.clone(), limits.hosts.clone());
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_connection_end(result),
                () = stopping.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    log_connection_end(connection.await);
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    stopping.cancel();
    // Every slot back: every connection has closed (WebSockets are closed by their own
    // shutdown, with 1001).
    let everyone = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(everyone).await;
    Ok(())
}

/// The router as hyper's service for one connection: a request whose `Host` this server does
/// not answer is refused before routing (421), and an upgrade request carries the
/// connection's slot for the socket to keep. (Here rather than as middleware: a layer of
/// axum's `from_fn` boxes every request's future, which the benchmark showed.)
fn service(
    router: Router,
    slot: ConnectionSlot,
    hosts: Option<Arc<HostAllowlist>>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        if let Some(refusal) = hosts
            .as_ref()
            .and_then(|hosts| hosts.refusal(request.headers()))
        {
            return Either::Left(future::ready(Ok(refusal)));
        }
        if request.headers().contains_key(header::UPGRADE) {
            request.extensions_mut().insert(slot.clone());
        }
        // A Router is always ready: `call` needs no `poll_ready` first.
        Either::Right(
            router
                .clone()
                .call(request.map(axum::body::Body::new) as Request),
        )
    })
}

fn tune(stream: &TcpStream, send_buffer_bytes: usize) {
    if let Err(error) = socket2::SockRef::from(stream).set_send_buffer_size(send_buffer_bytes) {
        tracing::warn!(error = %error, "cannot size a connection's send buffer");
    }
}

/// What `axum::serve` does too: errors about one connection (reset before it was accepted)
/// are passed over; others (out of file descriptors) pause accepting for a second, rather
/// than spinning.
async fn pause_after_accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        if error.is_timeout() {
            tracing::debug!("closed a connection whose request head did not arrive in time");
        } else {
            tracing::debug!(error = %error, "a connection ended with an error");
        }
    }
}
