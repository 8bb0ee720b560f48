//! The database's part of a trace: for each SQL statement, the wait for a pool connection and
//! the statement itself, as two spans side by side under the span that ran it, named and
//! attributed as OpenTelemetry's database conventions say (`db.system.name`, `db.namespace`,
//! `db.query.text`, `db.operation.name`, `db.collection.name`, `server.address`).
//!
//! Not SeaORM's `tracing-spans` feature: its one span per statement holds the pool's wait and
//! the statement together, under the conventions' older names (`db.system`, `db.statement`),
//! and costs a span per statement even with tracing off. The statement's span is made from
//! what SeaORM's metric callback reports when the statement ends (its text and how long it
//! ran), and the wait's from what sqlx's pool reports when it hands a connection over (how
//! long that took), both timed by the code that did the work. The rows a statement returned
//! (`db.response.returned_rows`) are in neither: sqlx reports them as the statement ends
//! ([`DriverReports`]). Text only: SeaORM sends values as bind parameters, and their values
//! are never read here.

use std::{
    cell::Cell,
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Context, KeyValue,
    trace::{SpanKind, Status, TraceContextExt, Tracer},
};
use prometheus_client::metrics::histogram::Histogram;
use sea_orm::metric::Info;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    Layer,
    filter::{FilterExt, Targets, dynamic_filter_fn},
    layer,
};

use super::traces;
use crate::configuration::DatabaseTarget;

/// Where sqlx reports how long a connection took to acquire.
const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";
/// Where sqlx reports each statement that ended, with the rows it returned.
pub const STATEMENT_TARGET: &str = "sqlx::query";

thread_local! {
    /// The rows returned by the statement that just ended on this thread. sqlx reports them
    /// when the statement's stream ends, and SeaORM's metric callback runs right after, in the
    /// same poll of the same task: nothing else runs on the thread between the two.
    static RETURNED_ROWS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// How long statements waited for a pooled connection, in seconds, in every pool of the process
/// (`stations_db_pool_wait_seconds`), while traces are sent: a pool too small for its load
/// shows here first. (Off, sqlx reports nothing, and nothing listens: `telemetry::init`.)
pub static POOL_WAITS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::new([
        0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
});

/// The attributes every statement of one pool shares.
#[derive(Clone, Debug)]
pub struct StatementSpans {
    shared: Vec<KeyValue>,
}

impl StatementSpans {
    /// Spans for the statements of the database `target`, or `None` while tracing is off.
    pub fn for_database(target: &DatabaseTarget) -> Option<Self> {
        traces::enabled().then(|| Self {
            shared: vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", target.database.clone()),
                KeyValue::new("server.address", target.host.clone()),
                KeyValue::new("server.port", i64::from(target.port)),
            ],
        })
    }

    /// The span of a statement that just ended, as SeaORM's metric callback reports it, under
    /// the current span when that is sampled.
    pub fn record(&self, info: &Info<'_>) {
        // Taken whatever happens next, so that it never outlives its statement.
        let returned_rows = RETURNED_ROWS.take();
        let Some(tracer) = traces::tracer() else {
            return;
        };
        let parent = Context::current();
        if !parent.span().span_context().is_sampled() {
            return;
        }
        let ended = SystemTime::now();
        let sql = info.statement.sql.as_str();
        let summary = QuerySummary::of(sql);
        let mut attributes = self.shared.clone();
        attributes.push(KeyValue::new("db.query.text", sql.to_owned()));
        if let Some(operation) = summary.operation {
            attributes.push(KeyValue::new("db.operation.name", operation));
        }
        if let Some(collection) = &summary.collection {
            attributes.push(KeyValue::new("db.collection.name", collection.clone()));
        }
        match returned_rows {
            Some(rows) if !info.failed => attributes.push(KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(rows).unwrap_or(i64::MAX),
            )),
            _ => {}
        }
        if info.failed {
            attributes.push(KeyValue::new("error.type", "database_error"));
        }
        let mut span = tracer
            .span_builder(summary.span_name())
            .with_kind(SpanKind::Client)
            .with_start_time(ended - info.elapsed)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        if info.failed {
            opentelemetry::trace::Span::set_status(&mut span, Status::error("statement failed"));
        }
        opentelemetry::trace::Span::end_with_timestamp(&mut span, ended);
    }
}

/// A span for the wait that just ended, under the current span when that is sampled.
fn record_wait(waited: Duration) {
    let Some(tracer) = traces::tracer() else {
        return;
    };
    let parent = Context::current();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let ended = SystemTime::now();
    let mut span = tracer
        .span_builder("wait for a database connection")
        .with_kind(SpanKind::Internal)
        .with_start_time(ended - waited)
        .with_attributes([KeyValue::new("db.system.name", "postgresql")])
        .start_with_context(tracer, &parent);
    opentelemetry::trace::Span::end_with_timestamp(&mut span, ended);
}

/// Receives what sqlx reports while traces are sent (`database::pool_options`,
/// `database::connect_options`): how long each acquired connection took to hand over
/// (`acquired_after_secs`), counted in [`POOL_WAITS`] and a span; and the rows each statement
/// returned, for its span.
pub struct DriverReports;

impl DriverReports {
    /// The layer, listening to those two reports only, and to a statement's only while the
    /// span that runs it is sampled: sqlx writes each report's text out before sending it,
    /// which at a ratio of 1 % would be work thrown away 99 times in 100.
    pub fn layer<S>() -> impl Layer<S> + Send + Sync
    where
        S: Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        // At `info`, the level both are sent at: a layer that listens lower would make every
        // `debug` callsite of every crate ask whether it is wanted.
        let reports = Targets::new()
            .with_target(ACQUIRE_TARGET, tracing::Level::INFO)
            .with_target(STATEMENT_TARGET, tracing::Level::INFO);
        // Dynamic, since a plain `filter_fn` is asked once per callsite, outside any span, and
        // its answer kept; with a level, since a filter without one leaves the subscriber none
        // (`And` keeps the lower), and every `trace` callsite of every crate would then ask.
        let statements_when_sampled = dynamic_filter_fn(|metadata, _| {
            metadata.target() != STATEMENT_TARGET
                || Context::map_current(|context| context.span().span_context().is_sampled())
        })
        .with_max_level_hint(tracing::Level::INFO);
        Self.with_filter(reports.and(statements_when_sampled))
    }
}

impl<S: Subscriber> Layer<S> for DriverReports {
    fn on_event(&self, event: &Event<'_>, _ctx: layer::Context<'_, S>) {
        let mut report = Report::default();
        event.record(&mut report);
        if event.metadata().target() == STATEMENT_TARGET {
            RETURNED_ROWS.set(report.rows_returned);
        } else if let Some(seconds) = report
            .acquired_after_secs
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        {
            POOL_WAITS.observe(seconds);
            record_wait(Duration::from_secs_f64(seconds));
        }
    }
}

/// The numbers of one of sqlx's reports; its text (the statement) is not read.
#[derive(Default)]
struct Report {
    acquired_after_secs: Option<f64>,
    rows_returned: Option<u64>,
}

impl Visit for Report {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "acquired_after_secs" {
            self.acquired_after_secs = Some(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows_returned = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// A statement's operation and the table it works on, read from its first words: the span's
/// name, as the conventions want it low in cardinality ("SELECT stations").
#[derive(Debug, PartialEq, Eq)]
struct QuerySummary {
    operation: Option<&'static str>,
    collection: Option<String>,
}

impl QuerySummary {
    fn of(sql: &str) -> Self {
        let mut words = sql.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        let (operation, table_after) = match first.to_ascii_uppercase().as_str() {
            "SELECT" => (Some("SELECT"), Some("FROM")),
            "INSERT" => (Some("INSERT"), Some("INTO")),
            "UPDATE" => (Some("UPDATE"), None),
            "DELETE" => (Some("DELETE"), Some("FROM")),
            "WITH" => (Some("WITH"), None),
            "LISTEN" | "NOTIFY" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SET" => {
                return Self {
                    operation: None,
                    collection: None,
                };
            }
            _ => (None, None),
        };
        let collection = match (operation, table_after) {
            (Some("UPDATE"), _) => words.next().and_then(table_name),
            (_, Some(keyword)) => {
                let mut words = sql.split_ascii_whitespace();
                words
                    .by_ref()
                    .find(|word| word.eq_ignore_ascii_case(keyword))
                    .and_then(|_| words.next())
                    .and_then(table_name)
            }
            _ => None,
        };
        Self {
            operation,
            collection,
        }
    }

    fn span_name(&self) -> String {
        match (self.operation, &self.collection) {
            (Some(operation), Some(collection)) => format!("{operation} {collection}"),
            (Some(operation), None) => operation.to_owned(),
            (None, _) => "postgresql".to_owned(),
        }
    }
}

/// `"public"."stations"` -> `stations`; `None` for what is not a table's name (a subquery,
/// a function such as `unnest($1)`).
fn table_name(word: &str) -> Option<String> {
    let word = word.trim_end_matches([',', ';']);
    let last = word.rsplit('.').next().unwrap_or(word).trim_matches('"');
    let is_name = !last.is_empty() && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then(|| last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sql: &str) -> String {
        QuerySummary::of(sql).span_name()
    }

    #[test]
    fn names_a_statement_by_its_operation_and_table() {
        assert_eq!(
            summary(r#"SELECT "stations"."id" FROM "stations" WHERE "stations"."id" = $1"#),
            "SELECT stations"
        );
        assert_eq!(
            summary(r#"INSERT INTO "public"."observations" ("station_id") VALUES ($1)"#),
            "INSERT observations"
        );
        assert_eq!(
            summary(r#"UPDATE "stations" SET "name" = $1"#),
            "UPDATE stations"
        );
        assert_eq!(
            summary(r#"delete from "stations" where id = $1"#),
            "DELETE stations"
        );
        assert_eq!(summary("SELECT 1"), "SELECT");
        assert_eq!(summary("SELECT count(*) FROM (SELECT 1) AS t"), "SELECT");
        assert_eq!(
            summary("SELECT s.id FROM unnest($1::integer[]) AS s(id)"),
            "SELECT"
        );
        assert_eq!(
            summary("WITH moved AS (UPDATE x SET y = 1) SELECT 1"),
            "WITH"
        );
        assert_eq!(summary("LISTEN stations_changed"), "postgresql");
        assert_eq!(summary(""), "postgresql");
    }
}
