//! OpenTelemetry traces, when `telemetry.otlp.endpoint` is set: `tracing`'s spans become
//! OpenTelemetry spans (tracing-opentelemetry), and [`export`](super::export) sends them over
//! OTLP/HTTP.
//!
//! One trace per request: the HTTP server span (`startup::router`), the GraphQL operation
//! (`graphql::pipeline`), each DataLoader batch (`graphql::loaders`), and under them the wait
//! for a pool connection and each SQL statement ([`super::sql`]), the identity provider's key
//! fetch when a token needs one (`auth::jwt`), and with `telemetry.field_spans` each field
//! (`graphql::pipeline::telemetry`). Log lines carry the trace's id while it is sampled.
//!
//! Off, none of this runs: no layer is installed and [`enabled`] keeps the request path from
//! looking for a `traceparent` header.

use std::{collections::HashMap, hash::BuildHasher, sync::OnceLock};

use axum::http::HeaderMap;
use opentelemetry::{
    Context, KeyValue,
    propagation::TextMapPropagator,
    trace::{
        Link, SpanContext, SpanKind, TraceContextExt, TraceId, TraceState, TracerProvider as _,
    },
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample},
};
use secrecy::ExposeSecret;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    Layer,
    filter::{FilterExt, Targets, filter_fn},
    registry::LookupSpan,
};

use super::export::{Exporting, ReqwestClient};
use crate::configuration::TelemetrySettings;

/// The target of the fields' spans (`telemetry.field_spans`), at `debug`.
pub const FIELD_SPANS: &str = "stations_api::graphql::field";

static TRACER: OnceLock<SdkTracer> = OnceLock::new();
static EXPORTING: OnceLock<Exporting> = OnceLock::new();

/// Whether spans are being sent: the request path asks before it looks for a `traceparent`.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The tracer of spans made outside `tracing` (the SQL statements'), while tracing is on.
pub(super) fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// The layer that turns this crate's spans (at `info` and above: debug spans stay out of
/// production traces; the fields' too, unless `telemetry.field_spans`) into OpenTelemetry
/// spans, with the exporter behind it; `None` when tracing is off, and why when it cannot start.
pub(super) fn layer<S>(
    settings: &TelemetrySettings,
) -> Result<Option<impl Layer<S> + Send + Sync>, String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let Some(url) = settings.otlp.traces_url() else {
        return Ok(None);
    };
    // Every command runs on the runtime; a caller outside it gets no traces, not a panic. A
    // second call (a test server in the same process) keeps the first pipeline.
    if tokio::runtime::Handle::try_current().is_err() || TRACER.get().is_some() {
        return Ok(None);
    }
    let client = reqwest::Client::builder()
        .timeout(settings.otlp.export_timeout())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| format!("no HTTP client for the exporter: {error}"))?;
    let headers: HashMap<String, String> = settings
        .otlp
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose_secret().to_owned()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ReqwestClient(client))
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_headers(headers)
        .with_timeout(settings.otlp.export_timeout())
        .build()
        // Its error may quote the endpoint, and a URL may hold credentials: say less.
        .map_err(|_| "the OTLP exporter refused telemetry.otlp's endpoint or headers".to_owned())?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            // Which replica: one trace can cross several (a change's deliveries).
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        ])
        .build();
    let (processor, exporting) = Exporting::start(
        exporter,
        &resource,
        settings.otlp.max_queued_spans,
        settings.otlp.export_interval(),
        settings.otlp.export_timeout(),
    );
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampling::new(
            settings.sampling_ratio,
            settings.trust_incoming_sampling,
        ))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("stations-api");
    if TRACER.set(tracer.clone()).is_err() || EXPORTING.set(exporting).is_err() {
        return Ok(None);
    }
    let level = if settings.field_spans {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let mut ours = Targets::new().with_target(env!("CARGO_CRATE_NAME"), tracing::Level::INFO);
    if settings.field_spans {
        ours = ours.with_target(FIELD_SPANS, level);
    }
    // The level hint matters: without one the subscriber has none (`And` keeps the lower), and
    // every `debug` and `trace` callsite of every crate (SeaORM's span around each statement)
    // would be asked whether it is wanted.
    let spans_only = ours.and(filter_fn(|metadata| metadata.is_span()).with_max_level_hint(level));
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // What a span is, not how the process ran it: no source location, thread, target
            // module, or busy and idle times.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(spans_only),
    ))
}

/// Sends the spans still queued, within two seconds.
pub(super) async fn shutdown() {
    if let Some(exporting) = EXPORTING.get() {
        exporting.stop(std::time::Duration::from_secs(2)).await;
    }
}

/// The caller's trace, from W3C Trace Context headers (`traceparent`, `tracestate`); an
/// empty context when there is none or it is malformed.
pub fn incoming_context(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The current span as a W3C `traceparent`, when it is sampled: what a write hands PostgreSQL
/// for its notifications (`database::writes`).
pub fn current_traceparent() -> Option<String> {
    let context = Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_sampled().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// `span`'s context as W3C Trace Context headers (`traceparent`, and `tracestate` when there
/// is one), for a request this server sends; none when the span is not sampled.
pub fn context_headers(span: &tracing::Span) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let context = span.context();
    if context.span().span_context().is_sampled() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    }
    headers
}

/// The writer's span from a notification's `traceparent`, as the parent of its delivery. It is
/// one of ours (the API put it there, through a trigger), so the delivery follows its sampling
/// on every replica, as a span under one of ours does; a caller's `traceparent` never gets
/// here.
pub fn writers_context(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let extracted = TraceContextPropagator::new().extract(&carrier);
    let remote = extracted.span().span_context().clone();
    remote.is_valid().then(|| {
        Context::new().with_remote_span_context(SpanContext::new(
            remote.trace_id(),
            remote.span_id(),
            remote.trace_flags(),
            false,
            TraceState::default(),
        ))
    })
}

/// The trace id and span id of `context`'s span, as log lines show them, when it is sampled.
pub fn sampled_ids(context: &Context) -> Option<(String, String)> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_sampled().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// Which traces are kept.
///
/// A span under one of ours follows it. A trace that starts here is kept at
/// `telemetry.sampling_ratio`. A caller's `traceparent` decides for its trace only when
/// `telemetry.trust_incoming_sampling` is on; otherwise its trace goes through the ratio like
/// ours, decided by a keyed hash of its id: a plain ratio on the trace id (the SDK's
/// `TraceIdRatioBased`) would let a caller who chooses its ids pass every time.
#[derive(Clone, Debug)]
pub struct Sampling {
    ratio: f64,
    trust_incoming: bool,
    key: std::hash::RandomState,
}

impl Sampling {
    pub fn new(ratio: f64, trust_incoming: bool) -> Self {
        Self {
            ratio,
            trust_incoming,
            key: std::hash::RandomState::new(),
        }
    }

    fn keeps(&self, trace_id: TraceId) -> bool {
        if self.ratio >= 1.0 {
            return true;
        }
        // The hash's top 53 bits, as a fraction of 1.
        let draw = (self.key.hash_one(trace_id.to_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
        draw < self.ratio
    }
}

impl ShouldSample for Sampling {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|context| context.span().span_context().clone())
            .filter(|parent| parent.is_valid());
        let keep = match &parent {
            Some(parent) if !parent.is_remote() || self.trust_incoming => parent.is_sampled(),
            _ => self.keeps(trace_id),
        };
        SamplingResult {
            decision: if keep {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: parent
                .map(|parent| parent.trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    use super::*;

    fn remote(sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            flags,
            true,
            TraceState::default(),
        ))
    }

    fn decide(sampling: &Sampling, parent: Option<&Context>, trace_id: TraceId) -> bool {
        let result =
            sampling.should_sample(parent, trace_id, "request", &SpanKind::Server, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn an_untrusted_caller_cannot_force_sampling_with_its_flag_or_its_ids() {
        let sampling = Sampling::new(0.01, false);
        // Ids a plain trace-id ratio keeps every time: the low bits all zero.
        let kept = (1..=2_000u128)
            .filter(|high| decide(&sampling, Some(&remote(true)), TraceId::from(high << 64)))
            .count();
        assert!(
            kept < 100,
            "{kept} of 2000 chosen ids kept at a ratio of 1 %"
        );
    }

    #[test]
    fn a_trusted_caller_decides_for_its_trace() {
        let sampling = Sampling::new(0.0, true);
        assert!(decide(&sampling, Some(&remote(true)), TraceId::from(7)));
        let sampling = Sampling::new(1.0, true);
        assert!(!decide(&sampling, Some(&remote(false)), TraceId::from(7)));
    }

    #[test]
    fn the_ratio_keeps_about_its_share_of_new_traces() {
        let sampling = Sampling::new(0.25, false);
        let kept = (1..=4_000u128)
            .filter(|id| {
                decide(
                    &sampling,
                    None,
                    TraceId::from(id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                )
            })
            .count();
        assert!((800..1_200).contains(&kept), "{kept} of 4000 kept at 25 %");
        assert!(!decide(&Sampling::new(0.0, false), None, TraceId::from(1)));
        assert!(decide(&Sampling::new(1.0, false), None, TraceId::from(1)));
    }

    #[test]
    fn a_notifications_traceparent_is_one_of_ours_and_its_flag_decides() {
        let sampling = Sampling::new(0.0, false);
        let context =
            writers_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = context.span();
        assert!(!span.span_context().is_remote());
        assert_eq!(
            span.span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(decide(
            &sampling,
            Some(&context),
            span.span_context().trace_id()
        ));
        assert!(writers_context("00-not-a-trace").is_none());
    }

    #[test]
    fn a_span_under_one_of_ours_follows_it() {
        let sampling = Sampling::new(0.0, false);
        let local = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ));
        assert!(decide(&sampling, Some(&local), TraceId::from(7)));
    }
}
