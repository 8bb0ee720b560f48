//! The tracing subscriber, set up once per process: log lines, and OpenTelemetry traces when
//! they are configured ([`traces`]).

pub mod export;
pub mod sql;
pub mod traces;

use std::{
    io::BufWriter,
    sync::{Mutex, PoisonError},
};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::configuration::{LogFormat, LogSettings, TelemetrySettings};

/// Installs the global subscriber: log lines filtered by `RUST_LOG` when set, else
/// `log.filter`, as JSON lines or human-readable lines as `log.format` says; and, when
/// `telemetry.otlp.endpoint` is set, traces, whose spans the log filter does not thin out.
/// Logs go to standard error, so that commands whose output is data (`stations-api schema`)
/// can be redirected to a file. Later calls are ignored, so tests may call it once per test.
pub fn init(log: &LogSettings, telemetry: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (traces, unavailable) = match traces::layer(telemetry) {
        Ok(traces) => (traces, None),
        Err(reason) => (None, Some(reason)),
    };
    let result = match traces {
        // Off, the subscriber is what it was before traces existed: one filter for everything.
        // A filter per layer, or a layer listening at another level, costs every request (the
        // registry keeps per-layer state for each span, and every `debug` and `trace` callsite
        // of every crate would be asked): measured with callgrind, 18 % more instructions
        // per `station(id)`.
        None => match log.format {
            LogFormat::Json => tracing_subscriber::registry()
                .with(filter)
                .with(json_lines())
                .try_init(),
            LogFormat::Pretty => tracing_subscriber::registry()
                .with(filter)
                .with(fmt::layer().with_writer(std::io::stderr))
                .try_init(),
        },
        // On, each layer has its filter: spans go to the collector whatever the log level, and
        // sqlx's reports (each acquired connection's wait, each statement's rows, at `info`)
        // to theirs, while log lines keep only the slow acquisitions sqlx reports at `warn`
        // and, as with traces off, no statement.
        Some(traces) => {
            let filter = ["sqlx::pool::acquire=warn", "sqlx::query=off"]
                .into_iter()
                .filter_map(|directive| directive.parse().ok())
                .fold(filter, EnvFilter::add_directive);
            let registry = tracing_subscriber::registry()
                .with(traces)
                .with(sql::DriverReports::layer());
            match log.format {
                LogFormat::Json => registry.with(json_lines().with_filter(filter)).try_init(),
                LogFormat::Pretty => registry
                    .with(
                        fmt::layer()
                            .with_writer(std::io::stderr)
                            .with_filter(filter),
                    )
                    .try_init(),
            }
        }
    };
    // A subscriber is already installed (a second test in the same process): keep it.
    drop(result);
    if let Some(reason) = unavailable {
        tracing::warn!("traces are not sent: {reason}");
    }
}

/// One JSON object per log line, written by a thread of its own.
fn json_lines<S>() -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        // Each line carries its spans, outermost (the request's) first, once: the current
        // span again beside them was a third of each access-log line.
        .with_current_span(false)
        .with_span_list(true)
        .with_writer(background_stderr())
}

/// Sends the spans not sent yet, writes the JSON log lines not written yet, and stops the
/// thread that writes them. `main` calls it before the process exits.
pub async fn shutdown() {
    traces::shutdown().await;
    flush_logs();
}

fn flush_logs() {
    let guard = WRITER.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(guard);
}

/// Lines that may wait for the writer thread; past them, new lines are dropped rather than
/// hold up requests (a stalled standard error must not stall the server).
const QUEUED_LINES: usize = 128_000;
/// The writer thread writes in blocks of this size, and whatever it has when no line waits.
const WRITE_BYTES: usize = 64 * 1024;

/// Keeps the writer thread; dropping it writes what is queued.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Standard error, written by a thread of its own in blocks: a request logs one line (the
/// access log), and a `write(2)` per line was a system call per request. tracing-appender's
/// non-blocking writer, around a buffered standard error. (It replaced a batch of our own,
/// flushed every 50 ms: in bench/run, alternating, the two served the same requests per
/// second within the noise, so the well-kept crate stays.)
fn background_stderr() -> NonBlocking {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::with_capacity(WRITE_BYTES, std::io::stderr()));
    *WRITER.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard);
    writer
}
