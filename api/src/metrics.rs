//! Prometheus metrics at `/metrics`, in the text exposition format.
//!
//! Kept per application rather than in a process-wide registry: every test server has its own
//! figures, and a test can count the statements one request causes.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Operation names a client chooses become label values; past this many distinct ones, the
/// rest count as "other", so that no client can grow the metrics without bound.
const MAX_OPERATION_NAMES: usize = 200;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<HashMap<String, OperationFigures>>,
    statements: AtomicU64,
    statement_errors: AtomicU64,
    statement_latency: AtomicHistogram,
}

#[derive(Default)]
struct OperationFigures {
    outcomes: HashMap<&'static str, u64>,
    latency: Histogram,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Metrics {
    /// One GraphQL request: its operation name (as the client gave it, or "anonymous"), its
    /// outcome ("ok" or the first error's code) and how long it took.
    pub fn record_request(&self, operation: &str, outcome: &'static str, elapsed: Duration) {
        let Ok(mut requests) = self.requests.lock() else {
            return;
        };
        let name = if requests.contains_key(operation) || requests.len() < MAX_OPERATION_NAMES {
            label_safe(operation)
        } else {
            "other".to_owned()
        };
        let figures = requests.entry(name).or_default();
        *figures.outcomes.entry(outcome).or_default() += 1;
        figures.latency.observe(elapsed.as_secs_f64());
    }

    /// One SQL statement, as SeaORM reports it.
    pub fn record_statement(&self, elapsed: Duration, failed: bool) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.statement_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.statement_latency.observe(elapsed);
    }

    /// The text exposition format, with the pool's figures read now.
    pub fn render(&self, db: &DatabaseConnection, database_unavailable: bool) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP stations_graphql_requests_total GraphQL requests by operation name and outcome.\n\
             # TYPE stations_graphql_requests_total counter"
        );
        if let Ok(requests) = self.requests.lock() {
            let mut operations: Vec<_> = requests.iter().collect();
            operations.sort_by(|a, b| a.0.cmp(b.0));
            for (operation, figures) in &operations {
                let mut outcomes: Vec<_> = figures.outcomes.iter().collect();
                outcomes.sort();
                for (outcome, count) in outcomes {
                    let _ = writeln!(
                        text,
                        "stations_graphql_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} {count}"
                    );
                }
            }
            let _ = writeln!(
                text,
                "# HELP stations_graphql_request_duration_seconds Time to answer a GraphQL request.\n\
                 # TYPE stations_graphql_request_duration_seconds histogram"
            );
            for (operation, figures) in &operations {
                let label = format!("operation=\"{operation}\",");
                figures.latency.render(
                    &mut text,
                    "stations_graphql_request_duration_seconds",
                    &label,
                );
            }
        }

        let pool = db.get_postgres_connection_pool();
        let _ = writeln!(
            text,
            "# HELP stations_db_pool_connections Connections open in the pool.\n\
             # TYPE stations_db_pool_connections gauge\n\
             stations_db_pool_connections {}\n\
             # HELP stations_db_pool_idle Open connections waiting for work.\n\
             # TYPE stations_db_pool_idle gauge\n\
             stations_db_pool_idle {}\n\
             # HELP stations_db_unavailable 1 while the database cannot be reached.\n\
             # TYPE stations_db_unavailable gauge\n\
             stations_db_unavailable {}\n\
             # HELP stations_db_statements_total SQL statements sent.\n\
             # TYPE stations_db_statements_total counter\n\
             stations_db_statements_total {}\n\
             # HELP stations_db_statement_errors_total SQL statements that failed.\n\
             # TYPE stations_db_statement_errors_total counter\n\
             stations_db_statement_errors_total {}\n\
             # HELP stations_db_statement_duration_seconds Time from sending a statement to its result.\n\
             # TYPE stations_db_statement_duration_seconds histogram",
            pool.size(),
            pool.num_idle(),
            u8::from(database_unavailable),
            self.statements.load(Ordering::Relaxed),
            self.statement_errors.load(Ordering::Relaxed),
        );
        self.statement_latency.snapshot().render(
            &mut text,
            "stations_db_statement_duration_seconds",
            "",
        );
        text
    }
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Cumulative buckets, as Prometheus expects.
    fn render(&self, text: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(self.buckets) {
            cumulative += count;
            let _ = writeln!(text, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(text, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let bare = labels.trim_end_matches(',');
        let _ = writeln!(text, "{name}_sum{{{bare}}} {}", self.sum);
        let _ = writeln!(text, "{name}_count{{{bare}}} {}", self.count);
    }
}

impl AtomicHistogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            elapsed.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    fn snapshot(&self) -> Histogram {
        let mut histogram = Histogram {
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ..Histogram::default()
        };
        for (into, from) in histogram.buckets.iter_mut().zip(&self.buckets) {
            *into = from.load(Ordering::Relaxed);
        }
        histogram
    }
}

/// A label value made of letters, digits and underscores, at most 64 of them.
fn label_safe(operation: &str) -> String {
    let cleaned: String = operation
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "anonymous".to_owned()
    } else {
        cleaned
    }
}
