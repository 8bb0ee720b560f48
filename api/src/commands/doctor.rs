//! `stations-api doctor`: every step between "the configuration loads" and "the schema is the
//! one this binary expects", checked in order, stopping at the first failure with its fix.
//! Each step needs the ones before it, so a failure skips the rest.

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use sea_orm::{ConnectionTrait, Statement};
use serde::Serialize;
use tokio::net::TcpStream;

use std::process::ExitCode;

use super::Failure;
use crate::configuration::Settings;
use crate::database::{
    self,
    diagnosis::{FailureKind, explain},
    migrations, schema_drift,
    standbys::replay_status,
    wal_position::WalPosition,
};

/// The oldest PostgreSQL this service supports: 13 made `cube` and `earthdistance` trusted
/// extensions and added `DROP DATABASE ... WITH (FORCE)`.
const MINIMUM_SERVER_VERSION: i32 = 130_000;

/// The checks, in order, with the exit code a failure of each gives.
const CHECKS: [(&str, u8); 11] = [
    ("configuration loads", 2),
    ("host resolves", 3),
    ("TCP connects", 3),
    ("authenticates", 4),
    ("database exists", 5),
    ("migrations match this binary", 6),
    ("schema matches the entities", 7),
    ("server version is supported", 8),
    ("identity provider's keys load", 9),
    ("standbys replay the primary", 10),
    ("trace collector accepts spans", 11),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check's result, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub exit_code: u8,
    pub checks: Vec<CheckResult>,
}

impl Report {
    fn pass(&mut self, detail: String) {
        let check = CHECKS[self.checks.len()].0;
        self.checks.push(CheckResult {
            check,
            status: Status::Passed,
            detail,
            fix: None,
        });
    }

    /// Records the failure of the next check and skips the rest.
    fn fail(mut self, detail: String, fix: String) -> Self {
        let (check, exit_code) = CHECKS[self.checks.len()];
        self.checks.push(CheckResult {
            check,
            status: Status::Failed,
            detail,
            fix: Some(fix),
        });
        for (check, _) in &CHECKS[self.checks.len()..] {
            self.checks.push(CheckResult {
                check,
                status: Status::Skipped,
                detail: String::new(),
                fix: None,
            });
        }
        self.exit_code = exit_code;
        self
    }

    fn done(mut self) -> Self {
        self.ok = true;
        self
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for result in &self.checks {
            let mark = match result.status {
                Status::Passed => "✓",
                Status::Failed => "✗",
                Status::Skipped => "-",
            };
            let _ = match result.status {
                Status::Skipped => writeln!(text, "{mark} {}: skipped", result.check),
                _ => writeln!(text, "{mark} {}: {}", result.check, result.detail),
            };
            if let Some(fix) = &result.fix {
                let _ = writeln!(text, "    fix: {fix}");
            }
        }
        text
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Runs every check against the configuration of this environment.
pub async fn run() -> Report {
    let mut report = Report::default();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            return report.fail(
                error.to_string(),
                "correct the key named above in that file or variable".to_owned(),
            );
        }
    };
    let database = &settings.database;
    report.pass(format!(
        "APP_ENV={}; database.url {} is set by {}",
        settings.environment,
        database.redacted_url(),
        database.url_source
    ));

    let target = database.target();
    let addresses: Vec<SocketAddr> =
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(addresses) => addresses.collect(),
            Err(_) => Vec::new(),
        };
    if addresses.is_empty() {
        let diagnosis = explain(FailureKind::Unresolvable, database, None);
        return report.fail(diagnosis.problem, diagnosis.remedy);
    }
    report.pass(format!(
        "{} resolves to {}",
        target.host,
        addresses
            .iter()
            .map(|address| address.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    match connect_tcp(&addresses, database.connect_timeout()).await {
        Ok(address) => report.pass(format!("{address} accepts TCP connections")),
        Err(kind) => {
            let diagnosis = explain(kind, database, None);
            return report.fail(diagnosis.problem, diagnosis.remedy);
        }
    }

    match database::probe(database).await {
        Ok(connection) => {
            let _ = sea_orm::sqlx::Connection::close(connection).await;
            report.pass(format!("as user {:?}", target.user));
            report.pass(format!("{:?}", target.database));
        }
        Err(error) if error.diagnosis.kind == FailureKind::NoSuchDatabase => {
            report.pass(format!("as user {:?}", target.user));
            return report.fail(error.diagnosis.problem, error.diagnosis.remedy);
        }
        Err(error) => return report.fail(error.diagnosis.problem, error.diagnosis.remedy),
    }

    let db = match database::connect(database).await {
        Ok(db) => db,
        Err(error) => return report.fail(error.diagnosis.problem, error.diagnosis.remedy),
    };
    match migrations::state(&db).await {
        Ok(state) if !state.unknown.is_empty() => {
            return report.fail(
                format!(
                    "the database has {} migration(s) this binary does not know: {}; this \
                     binary is older than the schema",
                    state.unknown.len(),
                    state.unknown.join(", ")
                ),
                "deploy the release that added them, and do not start this one against this \
                 database"
                    .to_owned(),
            );
        }
        Ok(state) if !state.pending.is_empty() => {
            return report.fail(
                format!(
                    "{} pending migration(s): {}",
                    state.pending.len(),
                    state.pending.join(", ")
                ),
                "apply them with `stations-api migrate up` (or `sea-orm-cli migrate up` from \
                 the repository root)"
                    .to_owned(),
            );
        }
        Ok(state) => report.pass(format!("all {} applied", state.applied.len())),
        Err(error) => {
            return report.fail(
                format!("could not read the migration table: {error}"),
                "check that the user may read seaql_migrations".to_owned(),
            );
        }
    }

    match schema_drift::differences(&db).await {
        Ok(differences) if differences.is_empty() => {
            report.pass("every column as the entities declare it".to_owned());
        }
        Ok(differences) => {
            let list = differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return report.fail(
                format!("{} difference(s): {list}", differences.len()),
                "someone changed the table by hand: undo that change, or write a migration for \
                 it and update the entity"
                    .to_owned(),
            );
        }
        Err(error) => {
            return report.fail(
                format!("could not read the table definitions: {error}"),
                "check that the user may read the catalog".to_owned(),
            );
        }
    }

    let version = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_setting('server_version_num')::int AS number, \
             current_setting('server_version') AS name",
        ))
        .await;
    let version = version.ok().flatten().and_then(|row| {
        Some((
            row.try_get::<i32>("", "number").ok()?,
            row.try_get::<String>("", "name").ok()?,
        ))
    });
    let _ = db.close().await;
    match version {
        Some((number, name)) if number >= MINIMUM_SERVER_VERSION => {
            report.pass(format!("PostgreSQL {name}"));
        }
        Some((_, name)) => {
            return report.fail(
                format!("PostgreSQL {name} is older than 13"),
                "upgrade the server to PostgreSQL 13 or newer".to_owned(),
            );
        }
        None => {
            return report.fail(
                "could not read the server version".to_owned(),
                "check the server log".to_owned(),
            );
        }
    }

    report = match check_identity_provider(&settings, report).await {
        Ok(report) => report,
        Err(report) => return report,
    };
    match check_standbys(&settings).await {
        Ok(detail) => report.pass(detail),
        Err((problem, fix)) => return report.fail(problem, fix),
    }
    match check_trace_collector(&settings).await {
        Ok(detail) => report.pass(detail),
        Err((problem, fix)) => return report.fail(problem, fix),
    }
    report.done()
}

/// The identity provider's keys, when JWT sign-in is on.
async fn check_identity_provider(
    settings: &Settings,
    mut report: Report,
) -> Result<Report, Report> {
    if !settings.auth.jwt.enabled {
        report.pass("auth.jwt is off".to_owned());
        return Ok(report);
    }
    let verifier = match crate::auth::jwt::JwtVerifier::new(&settings.auth.jwt) {
        Ok(verifier) => verifier,
        Err(error) => {
            return Err(report.fail(
                error.to_string(),
                "correct that setting of auth.jwt".to_owned(),
            ));
        }
    };
    match verifier.check().await {
        Ok(keys) => report.pass(format!(
            "{keys} signing key(s) usable with auth.jwt.algorithms"
        )),
        Err(problem) => {
            return Err(report.fail(
                problem,
                "check auth.jwt.jwks_url (or jwks_file) and auth.jwt.algorithms against what \
                 the identity provider publishes"
                    .to_owned(),
            ));
        }
    }
    Ok(report)
}

/// The OTLP receiver of `telemetry.otlp.endpoint`, sent an empty batch of spans as the
/// exporter would send one (OTLP/HTTP, protobuf, with the configured headers).
async fn check_trace_collector(settings: &Settings) -> Result<String, (String, String)> {
    let otlp = &settings.telemetry.otlp;
    let Some(url) = otlp.traces_url() else {
        return Ok("telemetry.otlp.endpoint is empty: no traces are sent".to_owned());
    };
    let shown = without_credentials(&url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| {
            (
                "no HTTP client could be built".to_owned(),
                "check the machine's TLS roots".to_owned(),
            )
        })?;
    let mut request = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        // An ExportTraceServiceRequest with no spans encodes as no bytes at all.
        .body(Vec::new());
    for (name, value) in &otlp.headers {
        request = request.header(name, secrecy::ExposeSecret::expose_secret(value));
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(format!("{shown} accepts OTLP spans")),
        Ok(response) => Err((
            format!("{shown} answered {}", response.status()),
            "point telemetry.otlp.endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) at the collector's \
             OTLP/HTTP port (4318, not gRPC's 4317), with the headers it expects in \
             OTEL_EXPORTER_OTLP_HEADERS"
                .to_owned(),
        )),
        Err(error) => Err((
            format!(
                "nothing accepts spans at {shown}: {}",
                if error.is_timeout() {
                    "no answer within 3 s".to_owned()
                } else {
                    error.without_url().to_string()
                }
            ),
            "start the collector, or correct telemetry.otlp.endpoint \
             (OTEL_EXPORTER_OTLP_ENDPOINT); empty turns traces off"
                .to_owned(),
        )),
    }
}

/// `url` without a user name or password, to be shown.
fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "telemetry.otlp.endpoint".to_owned(),
    }
}

/// Each of `database.read_urls` accepts a connection, is a standby, and belongs to the
/// primary's cluster; or the problem with the first that does not, and its fix.
async fn check_standbys(settings: &Settings) -> Result<String, (String, String)> {
    let database = &settings.database;
    if database.read_urls.is_empty() {
        return Ok("database.read_urls is empty: every query reads the primary".to_owned());
    }
    let primary = database::connect(database)
        .await
        .map_err(|error| (error.diagnosis.problem, error.diagnosis.remedy))?;
    let position = WalPosition::of_primary(&primary).await;
    let _ = primary.close().await;
    let primary = position.map_err(|_| {
        (
            "could not read the primary's WAL position".to_owned(),
            "check the server log".to_owned(),
        )
    })?;
    let mut lags = Vec::new();
    for index in 0..database.read_urls.len() {
        let standby = database.standby(index);
        // Tries one connection first, so that a failure comes with its explanation.
        let pool = database::connect(&standby)
            .await
            .map_err(|error| (error.diagnosis.problem, error.diagnosis.remedy))?;
        let status = replay_status(&pool).await;
        let _ = pool.close().await;
        let name = &standby.url_source;
        match status {
            Ok(status) if !status.in_recovery => {
                return Err((
                    format!(
                        "{name} ({}) is not a standby: it is in no recovery (promoted, or the primary itself)",
                        standby.redacted_url()
                    ),
                    format!("point {name} at a streaming standby of database.url, or remove it"),
                ));
            }
            Ok(status) if status.system_identifier != primary.cluster.system_identifier => {
                return Err((
                    format!(
                        "{name} ({}) replays another cluster than database.url",
                        standby.redacted_url()
                    ),
                    format!("point {name} at a standby made from database.url (pg_basebackup -R)"),
                ));
            }
            Ok(status) => lags.push(primary.lsn.saturating_sub(status.replayed)),
            Err(_) => {
                return Err((
                    format!("{name} did not answer the replay status query"),
                    "check the standby's server log".to_owned(),
                ));
            }
        }
    }
    Ok(format!(
        "{} standby(s), {} bytes of WAL behind at most",
        lags.len(),
        lags.iter().max().copied().unwrap_or_default()
    ))
}

/// The first address that accepts a TCP connection, or why none did.
async fn connect_tcp(
    addresses: &[SocketAddr],
    timeout: Duration,
) -> Result<SocketAddr, FailureKind> {
    let mut failure = FailureKind::Refused;
    for address in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(_stream)) => return Ok(*address),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Err(_)) | Err(_) => failure = FailureKind::TimedOut,
        }
    }
    Err(failure)
}

/// `stations-api doctor [--json]`: the report, and a failure naming the first failed check.
pub async fn command(json: bool) -> Result<String, Failure> {
    let report = run().await;
    let output = if json {
        report.to_json()
    } else {
        report.to_text()
    };
    if report.ok {
        return Ok(output);
    }
    let failed = report
        .checks
        .iter()
        .find(|check| check.status == Status::Failed)
        .map_or("a check", |check| check.check);
    Err(Failure {
        stdout: output,
        message: format!("doctor: \"{failed}\" failed"),
        exit_code: ExitCode::from(report.exit_code),
    })
}
