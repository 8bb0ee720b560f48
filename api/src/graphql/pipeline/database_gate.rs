//! No execution while the database is known to be down: the operation is refused at once with
//! `SERVICE_UNAVAILABLE` (HTTP 503) instead of waiting for a connection that cannot come.
//! Operations already waiting are refused as soon as the database is found down, and any that
//! fails for want of the database makes the health watcher check at once (see
//! `database::health`).
//!
//! A pool that has never reached the database, or whose connections all went away, opens a
//! new one when an operation needs it, and sqlx retries a refused connection silently until
//! `database.acquire_timeout_ms`, with no hook to say so. So an operation still running after
//! [`SLOW_START`] while the pool is opening a connection reports trouble too: the watcher's
//! own connection finds out at once whether the database is down, and if it is, the waiting
//! operation is refused then rather than at the acquire timeout.

use std::{sync::Arc, time::Duration};

use async_graphql::Response;
use sea_orm::DatabaseConnection;

use super::{Execution, Policy, PreparedOperation};
use crate::error::{ApiError, ErrorCode};
use crate::health::database::DatabaseHealth;

/// How long an operation runs before a pool that is still connecting counts as trouble.
const SLOW_START: Duration = Duration::from_millis(200);

pub struct DatabaseGate {
    health: Arc<DatabaseHealth>,
    db: DatabaseConnection,
}

impl DatabaseGate {
    pub fn new(health: Arc<DatabaseHealth>, db: DatabaseConnection) -> Self {
        Self { health, db }
    }

    /// Whether the pool is opening a connection for want of an idle one: the moment when a
    /// refused connection would go unnoticed until the acquire timeout. (A pool whose every
    /// connection is busy with slow statements is not connecting: that is load, not trouble.)
    fn pool_is_connecting(&self) -> bool {
        self.pool_may_connect() && self.db.get_postgres_connection_pool().num_idle() == 0
    }

    fn pool_may_connect(&self) -> bool {
        let pool = self.db.get_postgres_connection_pool();
        pool.size() < pool.options().get_max_connections()
    }
}

impl Policy for DatabaseGate {
    /// Runs `execution` unless the database is known to be down, and abandons it if the
    /// database goes down meanwhile.
    async fn around_execute(
        &self,
        _operation: &PreparedOperation,
        execution: impl Execution,
    ) -> Response {
        let refused = || Response::from_errors(vec![ApiError::DatabaseDown.into_request_error()]);
        if self.health.is_down() {
            return refused();
        }
        tokio::pin!(execution);
        // A full pool has connected: only a pool that may still open a connection is watched
        // (which spares the busy path a timer per operation).
        let may_connect = self.pool_may_connect();
        let response = tokio::select! {
            response = &mut execution => response,
            () = self.health.went_down() => return refused(),
            () = tokio::time::sleep(SLOW_START), if may_connect => {
                if self.pool_is_connecting() {
                    self.health.report_trouble();
                }
                tokio::select! {
                    response = execution => response,
                    () = self.health.went_down() => return refused(),
                }
            }
        };
        let database_trouble = response
            .errors
            .iter()
            .any(|error| ErrorCode::of(error).is_some_and(ErrorCode::is_database_trouble));
        if database_trouble {
            self.health.report_trouble();
        }
        response
    }
}
