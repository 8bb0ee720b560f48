//! What every HTTP handler can reach.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use axum::http::StatusCode;
use serde_json::Value;

use sea_orm::DatabaseConnection;

use crate::auth::Authenticator;
use crate::configuration::DatabaseSettings;
use crate::database::standbys::Standbys;
use crate::graphql::AppSchema;
use crate::graphql::limits::Limits;
use crate::health::database::DatabaseHealth;
use crate::live::socket::Sockets;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    /// The schema with every policy of the request pipeline (`graphql::pipeline`).
    pub schema: AppSchema,
    pub db: DatabaseConnection,
    /// For explaining an unreachable database in readiness answers.
    pub database_settings: Arc<DatabaseSettings>,
    /// Whether `/health/ready` may tell callers the database's host, port and role, and which
    /// setting to change (`server.health_details`); the log has them either way.
    pub health_details: bool,
    pub ide_enabled: bool,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub health: Arc<DatabaseHealth>,
    /// The WebSocket connections of subscriptions.
    pub sockets: Arc<Sockets>,
    /// Static tokens and the identity provider's keys, for readiness.
    pub authenticator: Arc<Authenticator>,
    /// The standbys queries may read from, for readiness.
    pub standbys: Arc<Standbys>,
    /// Set when SIGTERM starts the drain (`server.shutdown_delay_secs`): readiness answers 503.
    pub draining: Arc<AtomicBool>,
    /// The last readiness answer (`health::endpoints`), when it was made, and what it said;
    /// reused for a second.
    pub readiness: Arc<tokio::sync::Mutex<Option<(Instant, StatusCode, Value)>>>,
}
