//! The tracing subscriber, set up once per process.

use std::{
    io::Write,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter, prelude::*};

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
                    .with_writer(BatchedStderr(Arc::clone(batch()))),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A subscriber is already installed (a second test in the same process): keep it.
    drop(result);
}

/// Writes the JSON log lines not written yet. `main` calls it before the process exits.
pub fn flush() {
    if let Some(batch) = BATCH.get() {
        batch.flush();
    }
}

/// How long a JSON log line may wait before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Past this many bytes waiting, the thread that logs writes them at once.
const FLUSH_ABOVE_BYTES: usize = 64 * 1024;

static BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

/// The batch of JSON lines every thread appends to; on first use, a thread of its own writes it
/// out every `FLUSH_EVERY`, and a panic writes it before the panic message.
fn batch() -> &'static Arc<Batch> {
    BATCH.get_or_init(|| {
        let batch = Arc::new(Batch::new(write_to_stderr));
        let flusher = Arc::clone(&batch);
        let spawned = thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || {
                loop {
                    thread::sleep(FLUSH_EVERY);
                    flusher.flush();
                }
            });
        if spawned.is_err() {
            batch.write_through.store(true, Ordering::Relaxed);
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
        batch
    })
}

/// Log lines waiting to be written. A request logs one line (the access log); writing each to
/// standard error on its own was a system call per request. Lines stay whole and in order.
struct Batch {
    /// Where the lines go: standard error, or a test's buffer.
    sink: fn(&[u8]),
    pending: Mutex<Vec<u8>>,
    /// Held while writing, so that two batches never interleave or overtake each other.
    output: Mutex<()>,
    /// No writer thread could be started: every line is written at once.
    write_through: AtomicBool,
}

impl Batch {
    fn new(sink: fn(&[u8])) -> Self {
        Self {
            sink,
            pending: Mutex::default(),
            output: Mutex::default(),
            write_through: AtomicBool::new(false),
        }
    }

    fn append(&self, line: &[u8]) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        pending.extend_from_slice(line);
        let full = pending.len() >= FLUSH_ABOVE_BYTES || self.write_through.load(Ordering::Relaxed);
        // `flush` takes `output` before `pending`; waiting for `output` while holding `pending`
        // could deadlock with the writer thread.
        drop(pending);
        if full {
            self.flush();
        }
    }

    /// Locks `output`, then `pending`: always in this order.
    fn flush(&self) {
        let output = self.output.lock();
        let full = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return,
        };
        (self.sink)(&full);
        drop(output);
    }
}

fn write_to_stderr(lines: &[u8]) {
    // Nowhere to report a failure to write the log.
    let _ = std::io::stderr().lock().write_all(lines);
}

/// Standard error, through the batch.
struct BatchedStderr(Arc<Batch>);

struct BatchWriter<'a>(&'a Batch);

impl Write for BatchWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = BatchWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        BatchWriter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    static WRITTEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn collect(lines: &[u8]) {
        WRITTEN.lock().unwrap().extend_from_slice(lines);
    }

    /// Threads logging past the size threshold while another flushes on a timer: every line is
    /// written whole, each thread's in order, and nobody waits forever.
    #[test]
    fn concurrent_lines_and_flushes_neither_interleave_nor_deadlock() {
        const THREADS: usize = 4;
        const LINES: usize = 3_000;
        let batch = Arc::new(Batch::new(collect));
        let (done_tx, done_rx) = mpsc::channel();
        let flusher = Arc::clone(&batch);
        let stop = Arc::new(AtomicBool::new(false));
        let flusher_stop = Arc::clone(&stop);
        let timer = thread::spawn(move || {
            while !flusher_stop.load(Ordering::Relaxed) {
                flusher.flush();
                thread::yield_now();
            }
        });
        for writer in 0..THREADS {
            let batch = Arc::clone(&batch);
            let done_tx = done_tx.clone();
            thread::spawn(move || {
                for line in 0..LINES {
                    let text = format!("{writer} {line:05} {}\n", "x".repeat(80));
                    batch.append(text.as_bytes());
                }
                done_tx.send(()).unwrap();
            });
        }
        for _ in 0..THREADS {
            done_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a logging thread is stuck: the batch's locks deadlocked");
        }
        stop.store(true, Ordering::Relaxed);
        timer.join().unwrap();
        batch.flush();

        let written = String::from_utf8(WRITTEN.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; THREADS];
        for line in written.lines() {
            let mut words = line.split(' ');
            let writer: usize = words.next().unwrap().parse().unwrap();
            let number: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(number, next[writer], "thread {writer}'s lines out of order");
            assert_eq!(words.next().unwrap().len(), 80, "a line was cut");
            next[writer] += 1;
        }
        assert_eq!(next, [LINES; THREADS]);
    }
}
