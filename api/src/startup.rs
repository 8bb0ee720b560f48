//! Building the application from settings, and running it until a signal stops it.

use std::{future::Future, io, path::Path, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderName, HeaderValue, Method, Response, header},
    middleware,
    routing::get,
};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::auth::{AuthSetupError, Authenticator};
use crate::configuration::{DatabaseTarget, Settings};
use crate::connections::{self, ConnectionLimits};
use crate::database::standbys::Standbys;
use crate::database::{self, ConnectError, migrations};
use crate::graphql::document_store::{DocumentStore, Manifest, ManifestError, StoreBounds};
use crate::graphql::limits::Limits;
use crate::graphql::pipeline::read_routing;
use crate::graphql::{SchemaParts, build_schema};
use crate::health::database::DatabaseHealth;
use crate::live::socket::Sockets;
use crate::live::{LiveHub, listener::Listener};
use crate::metrics::Metrics;
use crate::routes;
use crate::routes::sites::HostAllowlist;
use crate::service::rollup::RefreshJob;
use crate::state::AppState;
use crate::telemetry::{sql::StatementSpans, traces};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Schema(#[from] migrations::SchemaNotCurrent),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("could not listen on {address}: {source}")]
    Bind { address: String, source: io::Error },
}

/// A server bound to its port(s), not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `/metrics` on a listener of its own, when `metrics.listen` names one.
    metrics: Option<(TcpListener, Router)>,
    port: u16,
    state: AppState,
    shutdown_timeout: Duration,
    /// `server.shutdown_delay_secs`: how long to drain before the listener closes.
    shutdown_delay: Duration,
    /// The hub the listener feeds, when subscriptions are on.
    live: Option<Arc<LiveHub>>,
    /// Tells WebSocket connections (and the metrics listener) that the server is stopping.
    stopping: CancellationToken,
    connection_limits: ConnectionLimits,
}

impl Application {
    /// Connects to the database (waiting for it as configured), brings the schema up to date
    /// or refuses to start, and binds the listening socket.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        // Migrations run without the statement timeout that requests get.
        let maintenance = database::connect_with_retry(&settings.database).await?;
        migrations::prepare_schema(&maintenance, settings.database.migrate_on_start).await?;
        let _ = maintenance.close().await;
        let health = Arc::new(DatabaseHealth::default());
        let db = database::connect_for_requests(&settings.database, {
            let health = Arc::clone(&health);
            move || health.report_trouble()
        })
        .await?;
        Self::build_with_database(settings, db, health).await
    }

    /// Binds the listening socket for a database that is already connected and current;
    /// `health` is the record its pool reports trouble to.
    pub async fn build_with_database(
        settings: &Settings,
        mut db: DatabaseConnection,
        health: Arc<DatabaseHealth>,
    ) -> Result<Self, StartupError> {
        let authenticator = Authenticator::new(&settings.auth)?;
        if authenticator.writes_are_open() {
            tracing::warn!(
                "MUTATIONS NEED NO TOKEN: auth.allow_unauthenticated_writes is on, so anyone who \
                 can reach this server can change stations. Never in production."
            );
        }
        let metrics = Arc::new(Metrics::default());
        observe_statements(&mut db, &metrics, &settings.database.target());
        let limits = Limits::new(&settings.graphql, &settings.server);
        let documents = if settings.graphql.persisted_only {
            let manifest = Manifest::load(Path::new(&settings.graphql.persisted_manifest))?;
            tracing::info!(
                operations = manifest.len(),
                "allowlist mode: only the operations of the persisted-query manifest run"
            );
            DocumentStore::allowlist(manifest)
        } else {
            DocumentStore::new(StoreBounds {
                documents: settings.graphql.document_store_entries,
                text_bytes: settings.graphql.document_store_bytes,
            })
        };
        let authenticator = Arc::new(authenticator);
        if let Some(jwt) = authenticator.jwt() {
            // One quick try, so that the first tokens need not wait; the server starts anyway,
            // and keeps trying in the background.
            jwt.load_now(Duration::from_secs(3)).await;
        }
        let mut standby_pools = Vec::with_capacity(settings.database.read_urls.len());
        for index in 0..settings.database.read_urls.len() {
            let standby = settings.database.standby(index);
            let mut pool = database::connect_standby(&standby).await?;
            observe_statements(&mut pool, &metrics, &standby.target());
            standby_pools.push(pool);
        }
        let standbys = Arc::new(Standbys::new(
            &settings.database,
            db.clone(),
            standby_pools,
            Arc::clone(&metrics),
        ));
        let live = Arc::new(LiveHub::new(settings.subscriptions.buffer_events));
        let stopping = CancellationToken::new();
        let schema = build_schema(
            settings,
            SchemaParts {
                documents,
                authenticator: Arc::clone(&authenticator),
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
                live: Arc::clone(&live),
                standbys: Arc::clone(&standbys),
            },
        );
        let state = AppState {
            schema,
            db,
            database_settings: Arc::new(settings.database.clone()),
            health_details: settings.server.health_details,
            ide_enabled: settings.graphql.ide,
            limits,
            metrics: Arc::clone(&metrics),
            health,
            sockets: Arc::new(Sockets::new(
                settings.subscriptions.clone(),
                &settings.server,
                Arc::clone(&authenticator),
                Arc::clone(&metrics),
                stopping.clone(),
            )),
            authenticator,
            standbys,
            draining: Arc::default(),
            readiness: Arc::default(),
        };

        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = bind(&address).await?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        let separate_metrics = settings.metrics.enabled && !settings.metrics.listen.is_empty();
        let metrics = if separate_metrics {
            let metrics_router = Router::new()
                .route("/metrics", get(routes::metrics::render))
                .with_state(state.clone());
            Some((bind(&settings.metrics.listen).await?, metrics_router))
        } else {
            None
        };
        let metrics_on_main_port = settings.metrics.enabled && !separate_metrics;
        Ok(Self {
            router: router(state.clone(), settings, metrics_on_main_port),
            listener,
            metrics,
            port,
            state,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            shutdown_delay: Duration::from_secs(settings.server.shutdown_delay_secs),
            live: settings.subscriptions.enabled.then_some(live),
            stopping,
            connection_limits: ConnectionLimits {
                max_connections: settings.server.max_connections,
                header_read_timeout: Duration::from_secs(settings.server.header_read_timeout_secs),
                send_buffer_bytes: settings.server.socket_send_buffer_bytes,
                hosts: HostAllowlist::for_server(&settings.server),
            },
        })
    }

    /// The port the server listens on; useful when `server.port` was 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then stops accepting connections, lets in-flight
    /// requests finish for up to `server.shutdown_timeout_secs`, and closes the pool.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        // The replica's background work, stopped together once the server has stopped.
        let background = TaskTracker::new();
        let stop_background = CancellationToken::new();
        let spawn = |task: Pin<Box<dyn Future<Output = ()> + Send>>| {
            background.spawn(stop_background.clone().run_until_cancelled_owned(task));
        };
        spawn(Box::pin(
            Arc::clone(&self.state.health).watch((*self.state.database_settings).clone()),
        ));
        if let Some(hub) = self.live {
            let listener = Listener {
                settings: self.state.database_settings.listening(),
                db: self.state.db.clone(),
                hub,
                metrics: Arc::clone(&self.state.metrics),
            };
            spawn(Box::pin(listener.run()));
        }
        if let Some(jwt) = self.state.authenticator.jwt() {
            spawn(Box::pin(Arc::clone(jwt).keep_fresh()));
        }
        if self.state.standbys.any() {
            spawn(Box::pin(Arc::clone(&self.state.standbys).watch()));
        }
        spawn(Box::pin(
            RefreshJob::new(self.state.db.clone(), &self.state.database_settings).run(),
        ));
        let stopping = self.stopping;
        if let Some((listener, router)) = self.metrics {
            let stopped = stopping.clone().cancelled_owned();
            spawn(Box::pin(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await;
                if let Err(error) = served {
                    tracing::warn!(error = %error, "the metrics listener stopped");
                }
            }));
        }
        let draining = Arc::clone(&self.state.draining);
        let shutdown_delay = self.shutdown_delay;
        let server = connections::serve(self.listener, self.router, self.connection_limits, {
            let stopping = stopping.clone();
            async move {
                stop.await;
                if !shutdown_delay.is_zero() {
                    // Still serving, but no longer ready: load balancers that probe readiness
                    // stop sending requests here before the listener closes.
                    draining.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        delay_secs = shutdown_delay.as_secs(),
                        "draining: /health/ready answers 503; serving on until the delay ends"
                    );
                    tokio::time::sleep(shutdown_delay).await;
                }
                tracing::info!("shutting down: no new connections, finishing requests in flight");
                stopping.cancel();
            }
        });
        let shutdown_timeout = self.shutdown_timeout;
        let deadline = async move {
            stopping.cancelled().await;
            tokio::time::sleep(shutdown_timeout).await;
        };
        let result = tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!(
                    timeout_secs = shutdown_timeout.as_secs(),
                    "requests still in flight after the shutdown timeout; stopping anyway"
                );
                Ok(())
            }
        };
        // WebSocket connections were told to close (1001) when stopping began.
        self.state.sockets.closed(Duration::from_secs(2)).await;
        stop_background.cancel();
        background.close();
        background.wait().await;
        if let Err(error) = self.state.db.close_by_ref().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
        for standby in self.state.standbys.standbys() {
            standby.close().await;
        }
        tracing::info!("stopped");
        result
    }
}

/// Every statement of `pool` counted in the metrics and, while traces are sent, a span.
fn observe_statements(
    pool: &mut DatabaseConnection,
    metrics: &Arc<Metrics>,
    target: &DatabaseTarget,
) {
    let metrics = Arc::clone(metrics);
    let spans = StatementSpans::for_database(target);
    pool.set_metric_callback(move |info| {
        metrics.record_statement(info.elapsed, info.failed);
        if let Some(spans) = &spans {
            spans.record(info);
        }
    });
}

async fn bind(address: &str) -> Result<TcpListener, StartupError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartupError::Bind {
            address: address.to_owned(),
            source,
        })
}

/// The HTTP routes, with a request id and one tracing span per request.
pub fn router(state: AppState, settings: &Settings, metrics_on_main_port: bool) -> Router {
    let mut router = Router::new()
        .route(
            "/graphql",
            get(routes::graphql::get)
                .post(routes::graphql::post)
                .layer(DefaultBodyLimit::max(settings.server.max_body_bytes)),
        )
        .route("/graphql/assets/{name}", get(routes::ide::asset))
        .route("/health/live", get(crate::health::endpoints::live))
        .route("/health/ready", get(crate::health::endpoints::ready));
    if metrics_on_main_port {
        router = router.route("/metrics", get(routes::metrics::render));
    }
    // The IDE is served from this origin and needs no CORS; other pages need their origin
    // listed (validated when the settings load).
    if !settings.server.cors_allowed_origins.is_empty() {
        let origins: Vec<HeaderValue> = settings
            .server
            .cors_allowed_origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    REQUEST_ID.clone(),
                    read_routing::TOKEN_HEADER,
                    read_routing::READ_FROM_HEADER,
                ])
                .expose_headers([REQUEST_ID.clone(), read_routing::TOKEN_HEADER])
                .max_age(Duration::from_secs(600)),
        );
    }
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default();
                    let span = tracing::info_span!(
                        "request",
                        request_id,
                        method = %request.method(),
                        path = %request.uri().path(),
                        operation = Empty,
                        subject = Empty,
                        status = Empty,
                        latency_ms = Empty,
                        trace_id = Empty,
                        span_id = Empty,
                        otel.name = Empty,
                        otel.kind = Empty,
                        otel.status_code = Empty,
                    );
                    if traces::enabled() {
                        join_callers_trace(&span, request);
                    }
                    span
                })
                .on_request(())
                .on_response(|response: &Response<_>, latency: Duration, span: &Span| {
                    span.record("status", response.status().as_u16());
                    if traces::enabled() {
                        let status = response.status();
                        span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
                        if status.is_server_error() {
                            span.record("otel.status_code", "ERROR");
                            span.set_attribute("error.type", status.as_str().to_owned());
                        }
                    }
                    let latency_ms = latency.as_secs_f64() * 1000.0;
                    span.record(
                        "latency_ms",
                        tracing::field::display(format_args!("{latency_ms:.3}")),
                    );
                    tracing::info!("request completed");
                })
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
        .with_state(state)
}

/// Makes the request's span an OpenTelemetry server span, under the caller's trace when its
/// `traceparent` names one, and puts the trace's ids on the request's log lines.
fn join_callers_trace(span: &Span, request: &Request) {
    /// Routes a span may be named after; any other path (chosen by the client) is not.
    const ROUTES: [&str; 4] = ["/graphql", "/health/live", "/health/ready", "/metrics"];

    let _ = span.set_parent(traces::incoming_context(request.headers()));
    let method = request.method().as_str();
    let path = request.uri().path();
    span.record("otel.kind", "server");
    match ROUTES.iter().find(|route| **route == path) {
        Some(route) => {
            span.record("otel.name", format!("{method} {route}"));
            span.set_attribute("http.route", *route);
        }
        None => {
            span.record("otel.name", method);
        }
    }
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("url.path", path.to_owned());
    span.set_attribute("url.scheme", "http");
    span.set_attribute(
        "network.protocol.version",
        protocol_version(request.version()),
    );
    if let Some((trace_id, span_id)) = traces::sampled_ids(&span.context()) {
        span.record("trace_id", trace_id);
        span.record("span_id", span_id);
    }
}

fn protocol_version(version: axum::http::Version) -> &'static str {
    match version {
        axum::http::Version::HTTP_10 => "1.0",
        axum::http::Version::HTTP_2 => "2",
        _ => "1.1",
    }
}

/// A client's own `x-request-id` is kept when it is a short token; anything else (long, or
/// with spaces or quotes that would garble log lines) is replaced by a generated one.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = request.headers().get(&REQUEST_ID).is_none_or(|value| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 64
            && bytes
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
    });
    if !usable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives right after the server says it listens
/// must stop it gracefully, not kill it with the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| {
            let handler = signal(kind).map_err(|error| {
                tracing::error!(error = %error, "cannot listen for {name}");
            });
            async move {
                match handler {
                    Ok(mut handler) => {
                        handler.recv().await;
                    }
                    Err(()) => std::future::pending::<()>().await,
                }
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                () = interrupt => tracing::info!("received SIGINT"),
                () = terminate => tracing::info!("received SIGTERM"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("received Ctrl-C");
    }
}
