//! The connection pool, the schema's migration state, and how database failures are told
//! apart.

pub mod migrations;
pub mod schema_drift;

use std::{str::FromStr, time::Duration};

use sea_orm::{
    ConnAcquireErr, DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector,
    sqlx::{
        self, ConnectOptions,
        postgres::{PgConnectOptions, PgPoolOptions},
    },
};
use secrecy::ExposeSecret;

use crate::configuration::{DatabaseSettings, DatabaseTarget};

/// Shown as `application_name` in `pg_stat_activity`, so operators can tell our sessions apart.
const APPLICATION_NAME: &str = "stations-api";

/// A failed attempt to open the pool, with the target it was aimed at (never the password).
#[derive(Debug, thiserror::Error)]
#[error("could not connect to PostgreSQL at {host}:{port} as user {user:?} (database {database:?}): {cause}",
    host = target.host, port = target.port, user = target.user, database = target.database)]
pub struct ConnectError {
    pub target: Box<DatabaseTarget>,
    #[source]
    pub cause: sqlx::Error,
}

impl ConnectError {
    /// Whether waiting could help: the server is down, starting up or not resolvable yet (a
    /// container that has not started), as opposed to a wrong password or database name.
    pub fn is_transient(&self) -> bool {
        match &self.cause {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(error) => {
                // 57P03 cannot_connect_now: the server is starting up or shutting down.
                error.code().as_deref() == Some("57P03")
            }
            _ => false,
        }
    }
}

/// The driver's connection options for `settings.url`, with logging of SQL text turned off:
/// statements may quote user input and do not belong in logs.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, ConnectError> {
    let options = PgConnectOptions::from_str(settings.url.expose_secret()).map_err(|_| {
        ConnectError {
            target: Box::new(settings.target()),
            // The driver's parse error may quote the URL, password included; say less.
            cause: sqlx::Error::Configuration("database.url is not a valid PostgreSQL URL".into()),
        }
    })?;
    Ok(options
        .application_name(APPLICATION_NAME)
        .disable_statement_logging())
}

/// Opens the pool with one connection established, so that a wrong URL fails here and not on
/// the first request.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, ConnectError> {
    let options = connect_options(settings)?;
    let error = |cause| ConnectError {
        target: Box::new(settings.target()),
        cause,
    };
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_with(options);
    let pool = tokio::time::timeout(settings.connect_timeout(), pool)
        .await
        .map_err(|_| error(sqlx::Error::PoolTimedOut))?
        .map_err(error)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

/// [`connect`], retried with a growing pause while the failure is one that waiting can cure,
/// up to `database.connect_attempts` attempts, with one log line per failed attempt.
pub async fn connect_with_retry(
    settings: &DatabaseSettings,
) -> Result<DatabaseConnection, ConnectError> {
    const FIRST_PAUSE: Duration = Duration::from_millis(250);
    const LONGEST_PAUSE: Duration = Duration::from_secs(5);

    let attempts = settings.connect_attempts.max(1);
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match connect(settings).await {
            Ok(db) => return Ok(db),
            Err(error) if attempt < attempts && error.is_transient() => {
                tracing::warn!(
                    attempt,
                    attempts,
                    retry_in_ms = pause.as_millis() as u64,
                    "{error}"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether a failed statement failed because the database could not be reached or went away,
/// rather than because of the statement: such requests may succeed if retried shortly.
pub fn is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        // Whatever stopped a new session (refused, unresolvable, authentication, a database
        // that does not accept connections), the client's request was not at fault.
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            match error.as_ref() {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(error) => error.code().is_some_and(|code| {
                    // Class 08: connection exception. 57P01-57P03: administrator or crash
                    // shutdown, or the server is not accepting connections yet.
                    code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The name of the constraint a failed write violated, if it violated one.
pub fn violated_constraint(error: &DbErr) -> Option<&str> {
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            match error.as_ref() {
                sqlx::Error::Database(error) => error.constraint(),
                _ => None,
            }
        }
        _ => None,
    }
}
