//! Test harness: a real PostgreSQL database per test, cloned from a migrated template, and the
//! real HTTP server on an ephemeral port.
//!
//! The server under test is the one `stations-api serve` runs, built by `Application::build`
//! from `config/test.toml`; only the database name and the port differ.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    str::FromStr,
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, Statement,
    sqlx::{self, AssertSqlSafe, Connection, PgConnection, postgres::PgConnectOptions},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use stations_api::configuration::{Environment, Settings};
use stations_api::startup::Application;
use url::Url;

/// The `Accept` header Chromium and Firefox send when they open a page.
pub const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// Serializes building the template across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x7465_7374_5f74_706c;

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// `config/test.toml`, with environment overrides, as the server would load it.
pub fn test_settings() -> Settings {
    match Settings::load_from(&config_dir(), Environment::Test) {
        Ok(settings) => settings,
        Err(error) => stop_the_run(&format!("the test configuration does not load: {error}")),
    }
}

/// Ends the whole test run with one message: without a database, no test can say anything.
fn stop_the_run(message: &str) -> ! {
    let text = format!(
        "\n\nThe API tests need PostgreSQL and could not use it:\n  {message}\n\n\
         The tests connect with database.url from config/test.toml (DATABASE_URL or \
         APP__DATABASE__URL override it).\n\
         `bash .ci/run` installs, starts and provisions PostgreSQL. By hand, as a superuser:\n  \
         psql -c \"CREATE ROLE stations_test LOGIN CREATEDB PASSWORD 'stations_test'\" \
         -c \"CREATE DATABASE stations_test OWNER stations_test\"\n\n"
    );
    // Straight to the process's standard error: the test harness captures `eprintln!`, and
    // would drop the message when the process exits.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    std::process::exit(1)
}

/// A database that exists for one test and is dropped when the test ends, pass or fail.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    maintenance: PgConnectOptions,
}

impl TestDatabase {
    /// A new, empty database: nothing migrated.
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    /// A new database holding every migration, cloned from the template.
    pub async fn migrated() -> Self {
        let template = ensure_template().await;
        Self::create(Some(&template)).await
    }

    /// A name no database has yet, with its URL; whatever the test creates under that name is
    /// dropped at the end.
    pub fn reserve() -> Self {
        let name = unique_name("stations_test_db");
        Self {
            url: database_url(&name),
            name,
            maintenance: maintenance_options(),
        }
    }

    async fn create(template: Option<&str>) -> Self {
        let maintenance = maintenance_options();
        let name = unique_name("stations_test_db");
        let mut connection = connect_or_stop(&maintenance).await;
        let statement = match template {
            Some(template) => format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#),
            None => format!(r#"CREATE DATABASE "{name}""#),
        };
        run_ddl(&mut connection, statement.clone())
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
        let _ = connection.close().await;
        Self {
            url: database_url(&name),
            name,
            maintenance,
        }
    }

    /// Ends every session on this database and refuses new ones, as a stopped server would.
    pub async fn make_unreachable(&self) {
        let mut connection = connect_or_stop(&self.maintenance).await;
        let name = &self.name;
        run_ddl(
            &mut connection,
            format!(
                r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false;
                   SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"#
            ),
        )
        .await
        .expect("make the database unreachable");
        let _ = connection.close().await;
    }

    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str())
            .await
            .expect("connect to the test database")
    }

    /// Waits until a session on this database waits for a lock, as `pg_stat_activity` shows:
    /// the server's statement has reached PostgreSQL and is blocked by a lock the test holds,
    /// where a pause would only make that likely.
    pub async fn wait_until_a_statement_waits_for_a_lock(&self) {
        let mut connection = PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut connection)
            .await
            .expect("read pg_stat_activity");
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no statement waits for a lock after 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = connection.close().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: use a thread with a
        // runtime of its own. FORCE ends the server's pooled sessions.
        let name = self.name.clone();
        let options = self.maintenance.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime to drop the test database");
            runtime.block_on(async move {
                let mut connection = PgConnection::connect_with(&options).await?;
                run_ddl(
                    &mut connection,
                    format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#),
                )
                .await?;
                connection.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Runs DDL built from names this harness generated itself, never from input.
async fn run_ddl(connection: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(connection)
        .await
        .map(drop)
}

fn maintenance_options() -> PgConnectOptions {
    let settings = test_settings();
    PgConnectOptions::from_str(settings.database.url.expose_secret())
        .unwrap_or_else(|_| stop_the_run("database.url in config/test.toml is not a valid URL"))
}

async fn connect_or_stop(options: &PgConnectOptions) -> PgConnection {
    match PgConnection::connect_with(options).await {
        Ok(connection) => connection,
        Err(error) => {
            let settings = test_settings();
            stop_the_run(&format!("{} ({error})", settings.database.redacted_url()))
        }
    }
}

/// The test database URL with `database` as its database.
fn database_url(database: &str) -> String {
    let settings = test_settings();
    let mut url = Url::parse(settings.database.url.expose_secret()).expect("valid test URL");
    url.set_path(database);
    url.to_string()
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fingerprint of the migration sources: a changed migration gets a new template.
fn migrations_fingerprint() -> String {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migration/src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .expect("read migration/src")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        std::fs::read(&file)
            .expect("read a migration")
            .hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// The name of a database holding every migration, built once per migration fingerprint and
/// shared by every test process, under an advisory lock so that only one of them builds it.
async fn ensure_template() -> String {
    let template = format!("stations_test_tpl_{}", migrations_fingerprint());
    let building = format!("{template}_building");
    let maintenance = maintenance_options();
    let mut connection = connect_or_stop(&maintenance).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut connection)
        .await
        .expect("take the template lock");

    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut connection)
            .await
            .expect("look for the template");
    if !exists {
        for statement in [
            format!(r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#),
            format!(r#"CREATE DATABASE "{building}""#),
        ] {
            run_ddl(&mut connection, statement.clone())
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
        let db = Database::connect(database_url(&building))
            .await
            .expect("connect to the template being built");
        Migrator::up(&db, None).await.expect("migrate the template");
        db.close().await.expect("close the template connection");
        run_ddl(
            &mut connection,
            format!(r#"ALTER DATABASE "{building}" RENAME TO "{template}""#),
        )
        .await
        .expect("publish the template");

        // Templates of older migration sources are no use any more.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'stations\\_test\\_tpl\\_%' \
             AND datname <> $1",
        )
        .bind(&template)
        .fetch_all(&mut connection)
        .await
        .unwrap_or_default();
        for name in stale {
            let _ = run_ddl(
                &mut connection,
                format!(r#"DROP DATABASE IF EXISTS "{name}""#),
            )
            .await;
        }
    }
    let _ = connection.close().await;
    template
}

/// The running server and its database.
pub struct TestApp {
    pub address: String,
    /// A connection of the test's own to the server's database, to arrange and inspect rows.
    pub db: DatabaseConnection,
    pub client: reqwest::Client,
    pub database: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server on a fresh migrated database after `customize` adjusts its settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::migrated().await;
    let mut settings = test_settings();
    settings.database.url = SecretString::from(database.url.clone());
    customize(&mut settings);
    stations_api::telemetry::init(&settings.log, &settings.telemetry);

    let application = Application::build(&settings)
        .await
        .expect("the application builds");
    let port = application.port();
    tokio::spawn(application.run_until_stopped());

    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db: database.connect().await,
        client: reqwest::Client::new(),
        database,
    }
}

impl TestApp {
    /// Sends one GraphQL operation and returns the JSON response, which must come with 200.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send the GraphQL request");
        assert_eq!(response.status(), 200, "GraphQL responses come with 200");
        response.json().await.expect("a JSON response")
    }

    /// Creates a station through the API and returns it as `createStation` answered.
    pub async fn create_station(&self, code: &str, name: &str, lat: f64, lng: f64) -> Value {
        let body = self
            .graphql(
                "mutation($input: CreateStationInput!) {
                    createStation(input: $input) {
                        id code name lat lng elevationM createdAt updatedAt
                    }
                }",
                json!({ "input": { "code": code, "name": name, "lat": lat, "lng": lng } }),
            )
            .await;
        assert_no_errors(&body);
        body["data"]["createStation"].clone()
    }

    /// Holds an exclusive lock on `stations` from a connection of the test's own until the
    /// transaction ends, so that the server's statements on the table wait.
    pub async fn lock_stations(&self) -> (DatabaseConnection, sea_orm::DatabaseTransaction) {
        use sea_orm::TransactionTrait;
        let blocker = self.database.connect().await;
        let transaction = blocker
            .begin()
            .await
            .expect("begin the blocking transaction");
        transaction
            .execute_unprepared("LOCK TABLE stations IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock the stations table");
        (blocker, transaction)
    }

    pub async fn station_count(&self) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT count(*) AS count FROM stations",
            ))
            .await
            .expect("count stations")
            .expect("a row");
        row.try_get("", "count").expect("a count")
    }

    pub async fn execute_sql(&self, sql: &str) {
        self.db
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("send the request")
    }

    /// `GET path` as a browser asks for a page: HTML first.
    pub async fn open_in_browser(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .header("accept", BROWSER_ACCEPT)
            .send()
            .await
            .expect("send the request")
    }
}

/// The status of `GET {address}{path}` (for servers a test runs as a process of its own).
pub async fn get_status(client: &reqwest::Client, address: &str, path: &str) -> u16 {
    client
        .get(format!("{address}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `POST {address}/graphql` with `body` as JSON; the answer's JSON.
pub async fn post_graphql(client: &reqwest::Client, address: &str, body: &Value) -> Value {
    client
        .post(format!("{address}/graphql"))
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn assert_no_errors(body: &Value) {
    assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
}

/// The `extensions.code` of the first error, which must exist.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {body:#}"))
}

pub fn error_message(body: &Value) -> &str {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error message: {body:#}"))
}

pub fn error_field(body: &Value) -> &str {
    body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error naming a field: {body:#}"))
}

/// The `stations-api` binary with a clean configuration environment: `config/` from the
/// repository, APP_ENV test, and none of the caller's overrides.
pub fn stations_api(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stations-api"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("APP__") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .env("APP_ENV", "test")
        .env("APP_CONFIG_DIR", config_dir());
    command
}

/// Runs `command` to completion: its status, standard output and standard error.
pub fn run(command: &mut std::process::Command) -> (std::process::Output, String, String) {
    let output = command.output().expect("run stations-api");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// The names of every migration this binary carries, oldest first.
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect()
}

/// `stations-api serve` as a process of its own, logging JSON lines to a pipe the test reads.
pub struct ServerProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

impl ServerProcess {
    /// Starts the server on a free port against `database_url`, with `env` on top of the test
    /// configuration; does not wait for it.
    pub fn spawn(database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut command = stations_api(&["serve"]);
        command
            .env("DATABASE_URL", database_url)
            .env("APP__SERVER__PORT", "0")
            .env("APP__LOG__FORMAT", "json")
            .env("APP__LOG__FILTER", "info,sqlx=warn");
        // Production serves /metrics on a fixed loopback port; tests run servers side by side.
        if env.contains(&("APP_ENV", "production")) {
            command.env("APP__METRICS__LISTEN", "127.0.0.1:0");
        }
        command
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("start stations-api serve");
        let stderr = child.stderr.take().expect("piped standard error");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Starts the server and waits until it listens; returns it with its base URL.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> (Self, String) {
        let mut server = Self::spawn(database_url, env);
        let listening = server
            .wait_for(
                |line| line.contains("\"listening\""),
                std::time::Duration::from_secs(60),
            )
            .unwrap_or_else(|| panic!("the server did not start:\n{}", server.log.join("\n")));
        let record: Value = serde_json::from_str(&listening).expect("a JSON log line");
        let address = record["address"].as_str().expect("an address").to_owned();
        (server, format!("http://{address}"))
    }

    /// The first log line from now on that `wanted` accepts, if one comes within `timeout`.
    pub fn wait_for(
        &mut self,
        wanted: impl Fn(&str) -> bool,
        timeout: std::time::Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            self.log.push(line.clone());
            if wanted(&line) {
                return Some(line);
            }
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, without waiting for the process to exit.
    pub fn send_terminate(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status and reads the rest
    /// of its log.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_terminate();
        self.wait()
    }

    /// Waits for the process to exit; returns its status and reads the rest of its log.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().expect("wait for the server");
        while let Ok(line) = self
            .lines
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            self.log.push(line);
        }
        status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `node script args...` off the test's runtime (the script talks to this runtime's
/// server) and fails the test with everything it printed unless it succeeds.
pub async fn run_node_script(script: PathBuf, args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .args(&args)
            .output()
    })
    .await
    .expect("the node script's thread")
    .expect("run node (install Node.js 20.19 or newer)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    printed
}

/// The value of an unlabelled metric in a `/metrics` page; panics, showing the page, without it.
pub fn metric_value(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
}
