//! How far an import is: a progress bar on a terminal (rows, rows/s, ETA), or a log line every
//! few seconds when standard error goes to a file or a pipe.

use std::{
    io::IsTerminal,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Without a terminal, one line this often.
const LOG_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    bar: Option<ProgressBar>,
    rows: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
    /// Whether the bar counts bytes of a file (true) or rows of a known total (false).
    by_bytes: bool,
}

impl Progress {
    /// Progress through a file of `total_bytes`, or through `total_rows` generated rows.
    pub fn new(total_bytes: Option<u64>, total_rows: Option<u64>, show: bool) -> Self {
        let by_bytes = total_bytes.is_some();
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                total_bytes.or(total_rows),
                ProgressDrawTarget::stderr(),
            );
            let unit = if by_bytes {
                "{bytes}/{total_bytes}"
            } else {
                "{pos}/{len}"
            };
            let template = format!(
                "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {unit} {{msg}} ETA {{eta}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            rows: AtomicU64::new(0),
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
            by_bytes,
        }
    }

    /// A silent one, for tests and library use.
    pub fn hidden() -> Self {
        Self::new(None, None, false)
    }

    pub fn add_rows(&self, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let per_second = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        match &self.bar {
            Some(bar) => {
                if !self.by_bytes {
                    bar.set_position(total);
                }
                bar.set_message(format!("{total} rows, {per_second:.0} rows/s"));
            }
            None => {
                let Ok(mut last) = self.last_log.lock() else {
                    return;
                };
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    tracing::info!(rows = total, rows_per_second = per_second as u64, "reading");
                }
            }
        }
    }

    pub fn set_bytes(&self, bytes: u64) {
        if let (Some(bar), true) = (&self.bar, self.by_bytes) {
            bar.set_position(bytes);
        }
    }

    /// A step after reading, which has no measurable progress of its own.
    pub fn phase(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => tracing::info!(rows = self.rows.load(Ordering::Relaxed), "{message}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
