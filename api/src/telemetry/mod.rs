//! The tracing subscriber, set up once per process.

use std::{
    io::BufWriter,
    sync::{Mutex, PoisonError},
};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::configuration::{LogFormat, LogSettings};

/// Installs the global subscriber: `RUST_LOG` when set, else `log.filter`; JSON lines or
/// human-readable lines as `log.format` says. Logs go to standard error, so that commands whose
/// output is data (`stations-api schema`) can be redirected to a file. Later calls are ignored,
/// so tests may call it once per test.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    // Each line carries its spans, outermost (the request's) first, once: the
                    // current span again beside them was a third of each access-log line.
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_writer(background_stderr()),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A subscriber is already installed (a second test in the same process): keep it.
    drop(result);
}

/// Writes the JSON log lines not written yet, and stops the thread that writes them. `main`
/// calls it before the process exits.
pub fn flush() {
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
