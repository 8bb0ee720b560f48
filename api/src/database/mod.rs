//! The connection pool, the schema's migration state, and how database failures are told
//! apart.

pub mod diagnosis;
pub mod migrations;
pub mod schema_drift;
pub mod standbys;
pub mod wal_position;
pub mod writes;

use std::{str::FromStr, sync::Arc, time::Duration};

use sea_orm::{
    ConnAcquireErr, DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector,
    sqlx::{
        self, ConnectOptions, Connection, PgConnection,
        postgres::{PgConnectOptions, PgPoolOptions},
    },
};
use secrecy::ExposeSecret;

use crate::configuration::DatabaseSettings;
use diagnosis::{Diagnosis, diagnose};

/// Shown as `application_name` in `pg_stat_activity`, so operators can tell our sessions apart.
const APPLICATION_NAME: &str = "stations-api";

/// A failed attempt to connect, explained; never mentions the password.
#[derive(Debug, thiserror::Error)]
#[error("{diagnosis}")]
pub struct ConnectError {
    pub diagnosis: Diagnosis,
    #[source]
    pub cause: sqlx::Error,
}

impl ConnectError {
    /// Whether waiting could help: the server is down or starting up, as opposed to a wrong
    /// password or database name.
    pub fn is_transient(&self) -> bool {
        self.diagnosis.kind.is_transient()
    }

    async fn new(cause: sqlx::Error, settings: &DatabaseSettings) -> Self {
        Self {
            diagnosis: diagnose(&cause, settings).await,
            cause,
        }
    }
}

/// The driver's connection options for `settings.url`, with logging of SQL text turned off:
/// statements may quote user input and do not belong in logs.
pub async fn connect_options(
    settings: &DatabaseSettings,
) -> Result<PgConnectOptions, ConnectError> {
    match PgConnectOptions::from_str(settings.url.expose_secret()) {
        Ok(options) => {
            let options = options
                .application_name(APPLICATION_NAME)
                .disable_statement_logging();
            // While traces are sent, sqlx reports each statement as it ends, for the rows it
            // returned (telemetry::sql); log lines still show none. Off, it reports nothing.
            Ok(if crate::telemetry::traces::enabled() {
                options
                    .log_statements(tracing::log::LevelFilter::Info)
                    .log_slow_statements(tracing::log::LevelFilter::Info, Duration::MAX)
            } else {
                options
            })
        }
        // The driver's parse error may quote the URL, password included; say less.
        Err(_) => Err(ConnectError::new(
            sqlx::Error::Configuration("database.url is not a valid PostgreSQL URL".into()),
            settings,
        )
        .await),
    }
}

/// Opens one connection outside any pool: its error is the server's own answer, where a pool
/// would retry a refused connection until its timeout and report only that it timed out.
pub async fn probe(settings: &DatabaseSettings) -> Result<PgConnection, ConnectError> {
    let options = connect_options(settings).await?;
    let attempt = tokio::time::timeout(
        settings.connect_timeout(),
        PgConnection::connect_with(&options),
    )
    .await;
    match attempt {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(cause)) => Err(ConnectError::new(cause, settings).await),
        Err(_elapsed) => Err(ConnectError::new(sqlx::Error::PoolTimedOut, settings).await),
    }
}

/// Checks that the database accepts a connection, then opens the pool, so that a wrong URL
/// fails here, explained, and not on the first request. For commands: no statement timeout,
/// since migrations and imports may run long.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, ConnectError> {
    let options = connect_options(settings).await?;
    open_pool(settings, options, pool_options(settings)).await
}

/// [`connect`] for serving requests. PostgreSQL cancels any statement that runs longer than
/// `database.statement_timeout_ms`, so that a slow query is stopped in the database and not
/// only abandoned by the client.
///
/// A connection is not pinged each time it leaves the pool, which would cost every request a
/// round trip: only one that sat idle for a while is. When that ping fails, `health` hears of
/// it at once (`failed_ping`: the health watcher, `health::database`), so that requests do not wait out the pool's timeout while it retries a server
/// that refuses connections; a dead connection that was not pinged fails its statement at
/// once, which the request pipeline reports the same way.
pub async fn connect_for_requests(
    settings: &DatabaseSettings,
    failed_ping: impl Fn() + Send + Sync + 'static,
) -> Result<DatabaseConnection, ConnectError> {
    let options = connect_options(settings).await?;
    open_pool(
        settings,
        options,
        request_pool_options(settings, failed_ping),
    )
    .await
}

/// A standby's pool, set up as [`connect_for_requests`] sets up the primary's but opened
/// without trying it first: a standby that is down at start-up is no reason not to start
/// (the standby check finds out, and queries read from the primary meanwhile).
pub async fn connect_standby(
    settings: &DatabaseSettings,
) -> Result<DatabaseConnection, ConnectError> {
    let options = connect_options(settings).await?;
    let pool = request_pool_options(settings, || {}).connect_lazy_with(options);
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

fn request_pool_options(
    settings: &DatabaseSettings,
    failed_ping: impl Fn() + Send + Sync + 'static,
) -> PgPoolOptions {
    /// Connections idle for less than this are used without a ping.
    const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

    let failed_ping = Arc::new(failed_ping);
    // Set on each new session rather than passed as a startup option: poolers such as
    // PgBouncer refuse startup options, while a session's SET passes through them.
    // JIT off: requests' statements run for milliseconds, and compiling one takes 20 ms or
    // more. PostgreSQL compiles whatever it estimates costly, which the series statement is
    // on paper (it cannot know that the rollup's notes are usually none) and not in fact.
    let set_timeout = format!(
        "SET statement_timeout = {}; SET jit = off",
        settings.statement_timeout().as_millis()
    );
    pool_options(settings)
        .after_connect(move |connection, _metadata| {
            let set_timeout = set_timeout.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(set_timeout))
                    .execute(connection)
                    .await
                    .map(drop)
            })
        })
        .test_before_acquire(false)
        .before_acquire(move |connection, metadata| {
            let failed_ping = Arc::clone(&failed_ping);
            Box::pin(async move {
                if metadata.idle_for < PING_WHEN_IDLE_FOR {
                    return Ok(true);
                }
                let pinged = connection.ping().await;
                if pinged.is_err() {
                    failed_ping();
                }
                pinged.map(|()| true)
            })
        })
}

fn pool_options(settings: &DatabaseSettings) -> PgPoolOptions {
    let options = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout());
    // While traces are sent, the pool reports how long each connection took to hand over:
    // the wait's span and the pool-wait metric (telemetry::sql). Off, it reports nothing.
    if crate::telemetry::traces::enabled() {
        options.acquire_time_level(tracing::log::LevelFilter::Info)
    } else {
        options
    }
}

async fn open_pool(
    settings: &DatabaseSettings,
    options: PgConnectOptions,
    pool: PgPoolOptions,
) -> Result<DatabaseConnection, ConnectError> {
    let probe = probe(settings).await?;
    let _ = probe.close().await;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(
        pool.connect_lazy_with(options),
    ))
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
                    "{}",
                    error.diagnosis.problem
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

/// Whether a statement was cancelled for running longer than the statement timeout.
pub fn is_timeout(error: &DbErr) -> bool {
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            // 57014 query_canceled: what statement_timeout raises.
            matches!(error.as_ref(), sqlx::Error::Database(error) if error.code().as_deref() == Some("57014"))
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

/// What `stations-api db create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExisted,
}

/// Creates the database named in `settings.url`, owned by the URL's user, connecting to the
/// server's `postgres` maintenance database to do it.
pub async fn create_database(settings: &DatabaseSettings) -> Result<Created, String> {
    let target = settings.target();
    let mut maintenance = settings.clone();
    maintenance.url = secrecy::SecretString::from(
        url_with_database(settings, "postgres").ok_or("database.url is not a valid URL")?,
    );
    let mut connection = probe(&maintenance)
        .await
        .map_err(|error| error.to_string())?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&target.database)
            .fetch_one(&mut connection)
            .await
            .map_err(|error| format!("could not list databases: {error}"))?;
    if exists {
        let _ = connection.close().await;
        return Ok(Created::AlreadyExisted);
    }
    let quoted = format!("\"{}\"", target.database.replace('"', "\"\""));
    let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    match created {
        Ok(_) => Ok(Created::Created),
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42501") => {
            Err(format!(
                "user {:?} may not create databases: as a superuser run `CREATE DATABASE {quoted} \
                 OWNER \"{}\"`, or `ALTER ROLE \"{}\" CREATEDB`",
                target.user, target.user, target.user
            ))
        }
        Err(error) => Err(format!("CREATE DATABASE {quoted} failed: {error}")),
    }
}

/// `settings.url` pointing at another database of the same server.
fn url_with_database(settings: &DatabaseSettings, database: &str) -> Option<String> {
    let mut url = url::Url::parse(settings.url.expose_secret()).ok()?;
    url.set_path(database);
    Some(url.to_string())
}
