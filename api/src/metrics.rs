//! Prometheus metrics at `/metrics`, kept with the `prometheus-client` crate: in the
//! OpenMetrics text format when the scraper asks for it (Prometheus does), which carries the
//! request histogram's exemplars (the trace id of a request in each bucket, while traces are
//! sent), else in Prometheus' own text format, which has no place for them.
//!
//! Kept per application in a registry of its own rather than a process-wide one: every test
//! server has its own figures, and a test can count the statements one request causes.

use std::{
    collections::HashSet,
    sync::{
        RwLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text, text},
    metrics::{
        counter::{ConstCounter, Counter},
        exemplar::HistogramWithExemplars,
        family::Family,
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};
use sea_orm::DatabaseConnection;

use crate::telemetry::{export, sql};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Operation names a client chooses become label values; past this many distinct ones, the
/// rest count as "other", so that no client can grow the metrics without bound.
const MAX_OPERATION_NAMES: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

/// An exemplar's label: the trace of one request in a bucket.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabel {
    trace_id: String,
}

/// The text formats `/metrics` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus' text format, version 0.0.4: what any scraper reads.
    Prometheus,
    /// OpenMetrics 1.0, with exemplars: for a scraper that lists it in `Accept`.
    OpenMetrics,
}

impl Exposition {
    /// OpenMetrics when `accept` lists it with a weight above zero, else Prometheus' format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_open_metrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parameters = range.split(';').map(str::trim);
                let media_type = parameters.next().unwrap_or_default();
                media_type.eq_ignore_ascii_case("application/openmetrics-text")
                    && !parameters.any(|parameter| {
                        parameter
                            .strip_prefix("q=")
                            .and_then(|weight| weight.parse::<f32>().ok())
                            .is_some_and(|weight| weight <= 0.0)
                    })
            })
        });
        if wants_open_metrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OperationLabel, HistogramWithExemplars<TraceLabel>>,
    operation_names: RwLock<HashSet<String>>,
    statements: Counter,
    statement_errors: Counter,
    statement_duration: Histogram,
    pool_connections: Gauge<i64, AtomicI64>,
    pool_idle: Gauge<i64, AtomicI64>,
    database_unavailable: Gauge<i64, AtomicI64>,
    live_sockets: Gauge<i64, AtomicI64>,
    live_subscriptions: Gauge<i64, AtomicI64>,
    live_events: Counter,
    live_dropped: Family<DropLabel, Counter>,
    live_listener_reconnects: Counter,
    live_listening: Gauge<i64, AtomicI64>,
    reads: Family<TargetLabel, Counter>,
    read_fallbacks: Family<ReasonLabel, Counter>,
    standby_lag: Family<StandbyLabel, Gauge<i64, AtomicI64>>,
    standby_usable: Family<StandbyLabel, Gauge<i64, AtomicI64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StandbyLabel {
    standby: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = registered(
            &mut registry,
            "stations_graphql_requests",
            "GraphQL requests by operation name and outcome",
            Family::<RequestLabels, Counter>::default(),
        );
        let request_duration = registered(
            &mut registry,
            "stations_graphql_request_duration_seconds",
            "Time to answer a GraphQL request",
            Family::<OperationLabel, HistogramWithExemplars<TraceLabel>>::new_with_constructor(
                latency_histogram_with_exemplars as fn() -> _,
            ),
        );
        let statements = registered(
            &mut registry,
            "stations_db_statements",
            "SQL statements sent",
            Counter::default(),
        );
        let statement_errors = registered(
            &mut registry,
            "stations_db_statement_errors",
            "SQL statements that failed",
            Counter::default(),
        );
        let statement_duration = registered(
            &mut registry,
            "stations_db_statement_duration_seconds",
            "Time from sending a statement to its result",
            latency_histogram(),
        );
        let pool_connections = registered(
            &mut registry,
            "stations_db_pool_connections",
            "Connections open in the pool",
            Gauge::default(),
        );
        let pool_idle = registered(
            &mut registry,
            "stations_db_pool_idle",
            "Open connections waiting for work",
            Gauge::default(),
        );
        let database_unavailable = registered(
            &mut registry,
            "stations_db_unavailable",
            "1 while the database cannot be reached",
            Gauge::default(),
        );
        let live_sockets = registered(
            &mut registry,
            "stations_live_sockets",
            "Open WebSocket connections for subscriptions",
            Gauge::default(),
        );
        let live_subscriptions = registered(
            &mut registry,
            "stations_live_subscriptions",
            "GraphQL subscriptions receiving live events",
            Gauge::default(),
        );
        let live_events = registered(
            &mut registry,
            "stations_live_events_delivered",
            "Subscription events sent to clients",
            Counter::default(),
        );
        let live_dropped = registered(
            &mut registry,
            "stations_live_subscribers_dropped",
            "WebSocket connections the server closed, by reason",
            Family::<DropLabel, Counter>::default(),
        );
        let live_listener_reconnects = registered(
            &mut registry,
            "stations_live_listener_reconnects",
            "Times the listening connection to PostgreSQL was lost and made again",
            Counter::default(),
        );
        let live_listening = registered(
            &mut registry,
            "stations_live_listening",
            "1 while the listening connection LISTENs: only then do committed changes reach subscribers",
            Gauge::default(),
        );
        let reads = registered(
            &mut registry,
            "stations_db_reads",
            "Query operations by where they read: a standby (host:port/database) or the primary",
            Family::default(),
        );
        let read_fallbacks = registered(
            &mut registry,
            "stations_db_read_fallbacks",
            "Query operations (or statements, standby_failed) that read from the primary although \
             standbys are configured, by reason",
            Family::default(),
        );
        let standby_lag = registered(
            &mut registry,
            "stations_db_standby_lag_bytes",
            "Bytes of WAL a standby has yet to replay, as last checked",
            Family::default(),
        );
        let standby_usable = registered(
            &mut registry,
            "stations_db_standby_usable",
            "1 while a standby serves queries",
            Family::default(),
        );
        registry.register_collector(Box::new(ProcessWide));
        Self {
            registry,
            operation_names: RwLock::default(),
            reads,
            read_fallbacks,
            standby_lag,
            standby_usable,
            requests,
            request_duration,
            statements,
            statement_errors,
            statement_duration,
            pool_connections,
            pool_idle,
            database_unavailable,
            live_sockets,
            live_subscriptions,
            live_events,
            live_dropped,
            live_listener_reconnects,
            live_listening,
        }
    }
}

/// The trace exporter's counts (`telemetry::export`) and the pools' waits (`telemetry::sql`),
/// which belong to the process, not to one application's registry: read when `/metrics` is
/// scraped.
#[derive(Debug)]
struct ProcessWide;

impl Collector for ProcessWide {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = [
            (
                "stations_trace_spans_exported",
                "Spans the trace collector accepted",
                &export::SPANS_EXPORTED,
            ),
            (
                "stations_trace_spans_dropped",
                "Spans dropped because telemetry.otlp.max_queued_spans were waiting",
                &export::SPANS_DROPPED,
            ),
            (
                "stations_trace_export_failed_spans",
                "Spans lost because the trace collector refused them or did not answer",
                &export::SPANS_FAILED,
            ),
        ];
        for (name, help, count) in counts {
            let counter = ConstCounter::new(count.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let waits = &*sql::POOL_WAITS;
        let metric = encoder.encode_descriptor(
            "stations_db_pool_wait_seconds",
            "Time a statement waited for a pooled database connection",
            None,
            waits.metric_type(),
        )?;
        waits.encode(metric)
    }
}

/// Registers `metric` under `name`, and gives it back to be kept: the registry encodes a clone
/// that shares its value.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn latency_histogram_with_exemplars() -> HistogramWithExemplars<TraceLabel> {
    HistogramWithExemplars::new(BUCKETS.into_iter())
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Metrics {
    /// One GraphQL request: its operation name (as it ran or as the client gave it, or
    /// "anonymous"), its outcome ("ok" or the first error's code), how long it took, and its
    /// trace when it was sampled (the exemplar of its bucket).
    pub fn record_request(
        &self,
        operation: &str,
        outcome: &'static str,
        elapsed: Duration,
        trace_id: Option<String>,
    ) {
        let operation = self.operation_label(operation);
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.clone(),
                outcome,
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabel { operation })
            .observe(
                elapsed.as_secs_f64(),
                trace_id.map(|trace_id| TraceLabel { trace_id }),
                None,
            );
    }

    /// One SQL statement, as SeaORM reports it.
    pub fn record_statement(&self, elapsed: Duration, failed: bool) {
        self.statements.inc();
        if failed {
            self.statement_errors.inc();
        }
        self.statement_duration.observe(elapsed.as_secs_f64());
    }

    /// A WebSocket connection opened (`1`) or closed (`-1`).
    pub fn record_socket(&self, change: i64) {
        self.live_sockets.inc_by(change);
    }

    /// A subscription started (`1`) or ended (`-1`).
    pub fn record_subscription(&self, change: i64) {
        self.live_subscriptions.inc_by(change);
    }

    pub fn record_event_delivered(&self) {
        self.live_events.inc();
    }

    /// The server closed a WebSocket connection: `slow` (the client fell behind), `expired`
    /// (its token), `idle`, `shutdown`.
    pub fn record_socket_dropped(&self, reason: &'static str) {
        self.live_dropped.get_or_create(&DropLabel { reason }).inc();
    }

    pub fn record_listener_reconnect(&self) {
        self.live_listener_reconnects.inc();
    }

    /// The listening connection started (`true`) or stopped (`false`) listening.
    pub fn record_listening(&self, listening: bool) {
        self.live_listening.set(i64::from(listening));
    }

    /// The counter of query operations that read from `target` (a standby's name, or
    /// "primary"), to keep: a handle that shares its value, so that counting a read takes no
    /// label lookup.
    pub fn reads_of(&self, target: &str) -> Counter {
        self.reads
            .get_or_create(&TargetLabel {
                target: target.to_owned(),
            })
            .clone()
    }

    pub fn record_read_fallback(&self, reason: &'static str) {
        self.read_fallbacks
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// What a check found of `standby`; its lag when it could be measured.
    pub fn record_standby(&self, standby: &str, usable: bool, lag_bytes: Option<u64>) {
        let label = StandbyLabel {
            standby: standby.to_owned(),
        };
        self.standby_usable
            .get_or_create(&label)
            .set(i64::from(usable));
        if let Some(lag_bytes) = lag_bytes {
            self.standby_lag
                .get_or_create(&label)
                .set(i64::try_from(lag_bytes).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition format, with the pool's figures read now.
    pub fn render(
        &self,
        db: &DatabaseConnection,
        database_unavailable: bool,
        exposition: Exposition,
    ) -> String {
        let pool = db.get_postgres_connection_pool();
        self.pool_connections.set(i64::from(pool.size()));
        self.pool_idle
            .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        self.database_unavailable
            .set(i64::from(database_unavailable));
        let mut text = String::new();
        let encoded = match exposition {
            Exposition::Prometheus => prometheus_text::encode(&mut text, &self.registry),
            Exposition::OpenMetrics => text::encode(&mut text, &self.registry),
        };
        if let Err(error) = encoded {
            tracing::error!(error = %error, "could not encode the metrics");
        }
        text
    }

    /// `operation` as a label value: letters, digits and underscores, at most 64; "other" once
    /// `MAX_OPERATION_NAMES` distinct names have been seen.
    fn operation_label(&self, operation: &str) -> String {
        let cleaned: String = operation
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        let label = if cleaned.is_empty() {
            "anonymous".to_owned()
        } else {
            cleaned
        };
        let known = self
            .operation_names
            .read()
            .map(|names| names.contains(&label))
            .unwrap_or(false);
        if known {
            return label;
        }
        match self.operation_names.write() {
            Ok(mut names) if names.len() < MAX_OPERATION_NAMES => {
                names.insert(label.clone());
                label
            }
            Ok(names) if names.contains(&label) => label,
            _ => "other".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded_and_cleaned() {
        let metrics = Metrics::default();
        assert_eq!(metrics.operation_label("Stations-Page!"), "StationsPage");
        assert_eq!(metrics.operation_label("---"), "anonymous");
        for index in 0..MAX_OPERATION_NAMES * 2 {
            metrics.operation_label(&format!("op{index}"));
        }
        assert_eq!(metrics.operation_label("brand_new"), "other");
        assert_eq!(metrics.operation_label("StationsPage"), "StationsPage");
    }

    #[test]
    fn open_metrics_is_written_to_a_scraper_that_asks_for_it() {
        // What Prometheus 2.42 sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,\
                          application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Exposition::negotiate(Some(prometheus)),
            Exposition::OpenMetrics
        );
        assert_eq!(Exposition::negotiate(None), Exposition::Prometheus);
        assert_eq!(Exposition::negotiate(Some("*/*")), Exposition::Prometheus);
        assert_eq!(
            Exposition::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Exposition::Prometheus
        );
    }

    #[test]
    fn a_traced_request_is_the_exemplar_of_its_bucket_in_open_metrics_only() {
        let metrics = Metrics::default();
        metrics.record_request(
            "Stations",
            "ok",
            Duration::from_millis(3),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        );
        let mut open_metrics = String::new();
        text::encode(&mut open_metrics, &metrics.registry).unwrap();
        assert!(
            open_metrics.lines().any(|line| line.starts_with(
                "stations_graphql_request_duration_seconds_bucket{le=\"0.005\",operation=\"Stations\"} 1 \
                 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.003"
            )),
            "{open_metrics}"
        );
        let mut prometheus = String::new();
        prometheus_text::encode(&mut prometheus, &metrics.registry).unwrap();
        assert!(!prometheus.contains("trace_id"), "{prometheus}");
    }
}
