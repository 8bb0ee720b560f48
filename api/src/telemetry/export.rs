//! Finished spans on their way to the collector: a bounded queue, and a task of the server's
//! runtime that sends them in batches over OTLP/HTTP with the reqwest client the service
//! already has.
//!
//! Not the SDK's `BatchSpanProcessor`: it exports from a thread of its own through a
//! `block_on`, where reqwest (a Tokio client) cannot run, and it counts the spans it drops
//! without telling anyone but its own log at shutdown. Here a full queue drops the span at
//! once (a collector that is down must never hold up a request, nor grow the server's memory),
//! and `/metrics` counts what was dropped, sent and lost.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

/// Spans sent in one request at most (the SDK's default batch).
const MAX_BATCH: usize = 512;

/// Spans dropped because the queue was full (`stations_trace_spans_dropped_total`).
pub static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Spans the collector accepted (`stations_trace_spans_exported_total`).
pub static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);
/// Spans lost because their export failed or timed out (`stations_trace_export_failed_spans_total`).
pub static SPANS_FAILED: AtomicU64 = AtomicU64::new(0);

/// The tracer provider's one processor: a finished span goes into the queue, or is dropped.
#[derive(Debug)]
pub struct QueueProcessor {
    queue: mpsc::Sender<SpanData>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.queue.try_send(span).is_err() {
            SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    // The queue is drained by `Exporting::stop`, which `telemetry::shutdown` awaits: this
    // processor cannot wait for a task of the runtime it may be called from.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The task that sends the queue's spans.
pub struct Exporting {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Exporting {
    /// The processor to give the tracer provider, and the task, started on the current
    /// runtime, that exports what it queues every `interval` (or whenever a batch is full).
    pub fn start<E: SpanExporter + 'static>(
        mut exporter: E,
        resource: &Resource,
        capacity: usize,
        interval: Duration,
        timeout: Duration,
    ) -> (QueueProcessor, Self) {
        exporter.set_resource(resource);
        let (queue, spans) = mpsc::channel(capacity);
        let stop = CancellationToken::new();
        let task = tokio::spawn(export_loop(
            exporter,
            spans,
            stop.clone(),
            interval,
            timeout,
        ));
        (
            QueueProcessor { queue },
            Self {
                stop,
                task: Mutex::new(Some(task)),
            },
        )
    }

    /// Sends what is queued, within `within`, and ends the task.
    pub async fn stop(&self, within: Duration) {
        self.stop.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(within, task).await;
        }
    }
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    stop: CancellationToken,
    interval: Duration,
    timeout: Duration,
) {
    let mut failing = false;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut send_at = Instant::now() + interval;
    loop {
        let room = MAX_BATCH - batch.len();
        let stopping = tokio::select! {
            biased;
            () = stop.cancelled() => true,
            received = spans.recv_many(&mut batch, room) => received == 0,
            () = tokio::time::sleep_until(send_at) => false,
        };
        if stopping {
            while batch.len() < MAX_BATCH
                && let Ok(span) = spans.try_recv()
            {
                batch.push(span);
            }
        }
        if stopping || batch.len() >= MAX_BATCH || Instant::now() >= send_at {
            if !batch.is_empty() {
                export(&exporter, std::mem::take(&mut batch), timeout, &mut failing).await;
                batch.reserve(MAX_BATCH);
            }
            send_at = Instant::now() + interval;
        }
        if stopping {
            break;
        }
    }
}

/// Sends one batch; a failure is logged when the collector starts failing, not per batch.
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: Vec<SpanData>,
    timeout: Duration,
    failing: &mut bool,
) {
    let count = batch.len() as u64;
    let outcome = match tokio::time::timeout(timeout, exporter.export(batch)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    };
    match outcome {
        Ok(()) => {
            SPANS_EXPORTED.fetch_add(count, Ordering::Relaxed);
            if std::mem::replace(failing, false) {
                tracing::info!("the trace collector accepts spans again");
            }
        }
        Err(reason) => {
            SPANS_FAILED.fetch_add(count, Ordering::Relaxed);
            if !std::mem::replace(failing, true) {
                tracing::warn!(
                    reason = %reason,
                    "spans could not be sent to telemetry.otlp.endpoint; they are counted in \
                     stations_trace_export_failed_spans_total until it answers"
                );
            }
        }
    }
}

/// The OTLP exporter's HTTP client: the service's reqwest (rustls), on its runtime.
#[derive(Debug, Clone)]
pub struct ReqwestClient(pub reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            // The URL may hold credentials of a collector's own; the reason is enough.
            .map_err(reqwest::Error::without_url)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(reqwest::Error::without_url)?;
        let mut answer = Response::builder().status(status).body(body)?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}
