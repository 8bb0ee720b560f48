//! The tracing subscriber, set up once per process.

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
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A subscriber is already installed (a second test in the same process): keep it.
    drop(result);
}
