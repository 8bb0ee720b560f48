//! Turns a failed connection into one message that names the real cause, the setting involved
//! and the command that fixes it: the answers the Flask article's readers had to search for.
//!
//! Nothing here ever includes the password: messages are built from the host, port, user and
//! database of the URL, and from the server's error code rather than its full text.

use std::{fmt, path::Path};

use sea_orm::sqlx;

use crate::configuration::{DatabaseSettings, DatabaseTarget};

/// What went wrong, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The host name does not resolve.
    Unresolvable,
    /// Nothing listens at host:port.
    Refused,
    /// No answer in time: a dropped packet, a wrong host, a firewall.
    TimedOut,
    /// The server asks for a password and the URL has none.
    NoPassword,
    /// Wrong password, or no such role (PostgreSQL does not say which).
    BadCredentials,
    /// The role does not exist (said plainly when the server does not ask for a password).
    UnknownRole,
    /// The database does not exist.
    NoSuchDatabase,
    /// The server accepts only TLS from here and the URL has `sslmode=disable`.
    TlsRequired,
    /// The URL requires TLS and the server does not offer it.
    TlsUnsupported,
    /// `pg_hba.conf` has no rule for this client.
    HostNotAllowed,
    /// The server is starting up or shutting down.
    Starting,
    /// The server has no free connection slot.
    TooManyConnections,
    Other,
}

impl FailureKind {
    /// Whether waiting can cure it: the database may be on its way up.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Refused | Self::TimedOut | Self::Starting | Self::TooManyConnections
        )
    }
}

/// A connection failure explained: the problem in one sentence and the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub kind: FailureKind,
    pub problem: String,
    pub remedy: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  fix: {}", self.problem, self.remedy)
    }
}

/// Explains `error`, which connecting with `settings` produced.
pub async fn diagnose(error: &sqlx::Error, settings: &DatabaseSettings) -> Diagnosis {
    let kind = classify(error, &settings.target()).await;
    explain(kind, settings, Some(error))
}

/// The message for a failure of `kind` with `settings`; `error` adds the driver's words to
/// failures this module has no better explanation for.
pub fn explain(
    kind: FailureKind,
    settings: &DatabaseSettings,
    error: Option<&sqlx::Error>,
) -> Diagnosis {
    let target = settings.target();
    let DatabaseTarget {
        host,
        port,
        user,
        database,
        ..
    } = &target;
    let source = &settings.url_source;
    let url_is_set_by = format!("database.url is set by {source}");
    let (problem, remedy) = match kind {
        FailureKind::Unresolvable => (
            format!("the database host name {host:?} does not resolve"),
            format!(
                "`db` is the database's name inside docker compose only: from your machine use \
                 localhost (as .env and config/development.toml do); inside a container use the \
                 database's service name, never localhost, which is the container itself \
                 ({url_is_set_by})"
            ),
        ),
        FailureKind::Refused => (
            format!("no PostgreSQL server answered at {host}:{port} (connection refused)"),
            format!(
                "start one with `docker compose up -d db` from the repository root, or point \
                 database.url at a running server ({url_is_set_by}){}",
                if inside_container() && is_loopback(host) {
                    "; inside a container localhost is the container itself: use the \
                     database's service name, such as db"
                } else {
                    ""
                }
            ),
        ),
        FailureKind::TimedOut => (
            format!(
                "no answer from {host}:{port} within {} s",
                settings.connect_timeout_secs
            ),
            format!(
                "check the host and port ({url_is_set_by}) and that no firewall drops the \
                 connection; on a slow network raise database.connect_timeout_secs"
            ),
        ),
        FailureKind::NoPassword => (
            format!(
                "the server at {host}:{port} asks user {user:?} for a password and database.url \
                 has none (libpq says: fe_sendauth: no password supplied)"
            ),
            format!(
                "put the password in the URL, postgres://{user}:PASSWORD@{host}:{port}/{database} \
                 ({url_is_set_by}; with docker compose it is POSTGRES_PASSWORD in .env). An empty \
                 password never works"
            ),
        ),
        FailureKind::BadCredentials => (
            format!(
                "password authentication failed for user {user:?} at {host}:{port}: a wrong \
                 password, or no such role"
            ),
            format!(
                "check the user and password in database.url ({url_is_set_by}). With docker \
                 compose, a password changed in .env after the first `docker compose up` is not \
                 applied to the existing volume (the stale-volume trap): run `docker compose down \
                 -v` (this deletes the data) or `ALTER ROLE \"{user}\" PASSWORD '...'` in the \
                 database"
            ),
        ),
        FailureKind::UnknownRole => (
            format!("the role {user:?} does not exist on {host}:{port}"),
            format!(
                "create it (`CREATE ROLE \"{user}\" LOGIN PASSWORD '...'`) or fix the user in \
                 database.url ({url_is_set_by}). With docker compose, a POSTGRES_USER changed in \
                 .env after the first start is not applied to the existing volume: `docker \
                 compose down -v` (this deletes the data)"
            ),
        ),
        FailureKind::NoSuchDatabase => (
            format!("the database {database:?} does not exist on {host}:{port}"),
            format!(
                "create it with `stations-api db create` (as a user allowed to create databases), \
                 or with docker compose set POSTGRES_DB in .env and recreate the volume (`docker \
                 compose down -v`); or fix the database name in database.url ({url_is_set_by})"
            ),
        ),
        FailureKind::TlsRequired => (
            format!(
                "the server at {host}:{port} accepts only encrypted (TLS) connections from here, \
                 and database.url asks for none"
            ),
            format!(
                "set sslmode=require (or sslmode=verify-full with the server's CA certificate) in \
                 database.url ({url_is_set_by})"
            ),
        ),
        FailureKind::TlsUnsupported => (
            format!("database.url requires TLS and the server at {host}:{port} does not offer it"),
            format!(
                "set sslmode=disable in database.url when the network is trusted (loopback, \
                 docker compose's network), or enable ssl on the server ({url_is_set_by})"
            ),
        ),
        FailureKind::HostNotAllowed => (
            format!(
                "the server at {host}:{port} has no pg_hba.conf rule admitting user {user:?} to \
                 database {database:?} from this address"
            ),
            "add a `host <database> <user> <client address>/32 scram-sha-256` line to the \
             server's pg_hba.conf and reload it"
                .to_owned(),
        ),
        FailureKind::Starting => (
            format!("the server at {host}:{port} is starting up or shutting down"),
            format!(
                "wait: start-up retries up to database.connect_attempts times ({url_is_set_by})"
            ),
        ),
        FailureKind::TooManyConnections => (
            format!("the server at {host}:{port} has no free connection slot"),
            "lower database.max_connections (it applies per replica) or raise max_connections \
             on the server"
                .to_owned(),
        ),
        FailureKind::Other => (
            format!(
                "could not connect to PostgreSQL at {host}:{port} as user {user:?} (database \
                 {database:?}): {}",
                error.map_or_else(|| "unknown error".to_owned(), describe)
            ),
            format!("check database.url ({url_is_set_by})"),
        ),
    };
    Diagnosis {
        kind,
        problem,
        remedy,
    }
}

async fn classify(error: &sqlx::Error, target: &DatabaseTarget) -> FailureKind {
    match error {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => FailureKind::Refused,
            std::io::ErrorKind::TimedOut => FailureKind::TimedOut,
            _ if !resolves(&target.host, target.port).await => FailureKind::Unresolvable,
            _ => FailureKind::Other,
        },
        sqlx::Error::PoolTimedOut => FailureKind::TimedOut,
        sqlx::Error::Tls(tls) if tls.to_string().contains("does not support TLS") => {
            FailureKind::TlsUnsupported
        }
        sqlx::Error::Database(database) => {
            let message = database.message();
            match database.code().as_deref() {
                Some("28P01") if !target.has_password => FailureKind::NoPassword,
                Some("28P01") => FailureKind::BadCredentials,
                Some("28000") if message.contains("no pg_hba.conf entry") => {
                    if message.contains("no encryption") || message.contains("SSL off") {
                        FailureKind::TlsRequired
                    } else {
                        FailureKind::HostNotAllowed
                    }
                }
                Some("28000") if message.contains("does not exist") => FailureKind::UnknownRole,
                Some("3D000") => FailureKind::NoSuchDatabase,
                Some("57P03") => FailureKind::Starting,
                Some("53300") => FailureKind::TooManyConnections,
                _ => FailureKind::Other,
            }
        }
        _ => FailureKind::Other,
    }
}

/// The driver's error without the parts that could quote configuration.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Configuration(_) => "the URL is not valid".to_owned(),
        sqlx::Error::Database(database) => format!(
            "{} (SQLSTATE {})",
            database.message(),
            database.code().unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

async fn resolves(host: &str, port: u16) -> bool {
    tokio::net::lookup_host((host, port))
        .await
        .is_ok_and(|mut addresses| addresses.next().is_some())
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
}

fn inside_container() -> bool {
    Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists()
}
