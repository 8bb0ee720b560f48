//! Building the application from settings, and running it until a signal stops it.

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::Response,
    routing::{get, post},
};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use tracing::{Span, field::Empty};

use crate::configuration::{DatabaseSettings, Settings};
use crate::database::{self, ConnectError, migrations};
use crate::graphql::{AppSchema, build_schema};
use crate::routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub db: DatabaseConnection,
    /// For explaining an unreachable database in readiness answers.
    pub database_settings: Arc<DatabaseSettings>,
    pub ide_enabled: bool,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Schema(#[from] migrations::SchemaNotCurrent),
    #[error("could not listen on {address}: {source}")]
    Bind { address: String, source: io::Error },
}

/// A server bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    db: DatabaseConnection,
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects to the database (waiting for it as configured), brings the schema up to date
    /// or refuses to start, and binds the listening socket.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let db = database::connect_with_retry(&settings.database).await?;
        migrations::prepare_schema(&db, settings.database.migrate_on_start).await?;
        Self::build_with_database(settings, db).await
    }

    /// Binds the listening socket for a database that is already connected and current.
    pub async fn build_with_database(
        settings: &Settings,
        db: DatabaseConnection,
    ) -> Result<Self, StartupError> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let bind_error = |source| StartupError::Bind {
            address: address.clone(),
            source,
        };
        let listener = TcpListener::bind(&address).await.map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = AppState {
            schema: build_schema(db.clone(), &settings.graphql),
            db: db.clone(),
            database_settings: Arc::new(settings.database.clone()),
            ide_enabled: settings.graphql.ide,
        };
        Ok(Self {
            listener,
            router: router(state),
            port,
            db,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
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
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = stopping_tx.send(());
        });
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(self.shutdown_timeout).await;
            } else {
                // The server ended without a shutdown signal; nothing to time.
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = server => result,
            () = deadline => {
                tracing::warn!(
                    timeout_secs = self.shutdown_timeout.as_secs(),
                    "requests still in flight after the shutdown timeout; stopping anyway"
                );
                Ok(())
            }
        };
        if let Err(error) = self.db.close_by_ref().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
        tracing::info!("stopped");
        result
    }
}

/// The HTTP routes, with one tracing span per request.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/graphql",
            post(routes::graphql::execute).get(routes::ide::page),
        )
        .route("/graphql/assets/{name}", get(routes::ide::asset))
        .route("/health/live", get(routes::health::live))
        .route("/health/ready", get(routes::health::ready))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        status = Empty,
                        latency_ms = Empty,
                    )
                })
                .on_request(())
                .on_response(|response: &Response<_>, latency: Duration, span: &Span| {
                    span.record("status", response.status().as_u16());
                    let latency_ms = latency.as_secs_f64() * 1000.0;
                    span.record(
                        "latency_ms",
                        tracing::field::display(format_args!("{latency_ms:.3}")),
                    );
                    tracing::info!("request completed");
                })
                .on_failure(()),
        )
        .with_state(state)
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
