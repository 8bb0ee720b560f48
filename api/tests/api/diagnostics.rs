//! Each setup error of the Flask article, provoked for real and explained: by `doctor`, at
//! start-up and in readiness. Every case checks the key facts of the message, the exit code,
//! and that the password appears nowhere.

use std::time::Duration;

use sea_orm::{
    SqlxPostgresConnector,
    sqlx::postgres::{PgConnectOptions, PgPoolOptions},
};
use secrecy::SecretString;
use serde_json::Value;
use stations_api::database::migrations::{self, MigrationStep};
use stations_api::startup::Application;

use crate::helpers::{
    ServerProcess, TestDatabase, migration_names, run, stations_api, test_settings,
};
use crate::scram_cluster::{ClusterOptions, ScramCluster, free_port};

const PASSWORD: &str = "s3cret-Passw0rd";

/// `stations-api doctor` against `url`: exit code, standard output, standard error.
fn doctor(url: &str) -> (i32, String, String) {
    let (output, stdout, stderr) = run(stations_api(&["doctor"]).env("DATABASE_URL", url));
    for text in [&stdout, &stderr] {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

fn assert_mentions(text: &str, facts: &[&str]) {
    for fact in facts {
        assert!(text.contains(fact), "expected {fact:?} in:\n{text}");
    }
}

#[tokio::test]
async fn doctor_passes_every_check_on_a_migrated_database() {
    let database = TestDatabase::migrated().await;
    let (code, stdout, _) = doctor(&database.url);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout.lines().filter(|line| line.starts_with('✓')).count(),
        11,
        "{stdout}"
    );

    let (output, json, _) =
        run(stations_api(&["doctor", "--json"]).env("DATABASE_URL", &database.url));
    assert!(output.status.success());
    let report: Value = serde_json::from_str(&json).expect("doctor --json prints JSON");
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 11);
}

#[test]
fn a_closed_port_is_explained_with_where_the_address_comes_from() {
    let port = free_port();
    let url = format!("postgres://stations:{PASSWORD}@127.0.0.1:{port}/stations?sslmode=disable");
    let (code, stdout, _) = doctor(&url);
    assert_eq!(code, 3);
    assert_mentions(
        &stdout,
        &[
            "✗ TCP connects",
            &format!("no PostgreSQL server answered at 127.0.0.1:{port}"),
            "docker compose up -d db",
            "database.url is set by environment variable DATABASE_URL",
        ],
    );

    // At start-up: one log line per attempt, then the same explanation.
    let (output, _, stderr) = run(stations_api(&["serve"])
        .env("DATABASE_URL", &url)
        .env("APP__DATABASE__CONNECT_ATTEMPTS", "2")
        .env("APP__LOG__FILTER", "warn"));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.matches("retry_in_ms").count(), 1, "{stderr}");
    assert_mentions(
        &stderr,
        &[
            &format!("127.0.0.1:{port} (connection refused)"),
            "docker compose up -d db",
        ],
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn readiness_explains_a_database_that_stopped_answering() {
    let port = free_port();
    let url = format!("postgres://stations:{PASSWORD}@127.0.0.1:{port}/stations?sslmode=disable");
    let mut settings = test_settings();
    settings.database.url = SecretString::from(url.clone());
    settings.database.url_source = "the test".to_owned();
    // A pool that has not connected yet, as after the database went away.
    let options: PgConnectOptions = url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(options);
    let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    let application = Application::build_with_database(&settings, db, Default::default())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());

    let response = reqwest::get(format!("{address}/health/ready"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert_mentions(
        &body,
        &[
            &format!("127.0.0.1:{port} (connection refused)"),
            "docker compose up -d db",
        ],
    );
    assert!(!body.contains(PASSWORD), "{body}");
    assert_eq!(
        reqwest::get(format!("{address}/health/live"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn an_unresolvable_host_is_explained_with_compose_naming() {
    // A label over 63 characters fails in the resolver itself, without a DNS query.
    let host = format!("{}.invalid", "a".repeat(64));
    let (code, stdout, _) = doctor(&format!(
        "postgres://stations:{PASSWORD}@{host}:5432/stations?sslmode=disable"
    ));
    assert_eq!(code, 3);
    assert_mentions(
        &stdout,
        &[
            "✗ host resolves",
            &format!("{host:?} does not resolve"),
            "`db` is the database's name inside docker compose only",
            "from your machine use localhost",
            "use the database's service name, never localhost",
        ],
    );
}

#[tokio::test]
async fn a_missing_password_and_a_wrong_one_are_told_apart() {
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;

    let (code, stdout, _) = doctor(&cluster.url("stations", None, "stations"));
    assert_eq!(code, 4);
    assert_mentions(
        &stdout,
        &[
            "✗ authenticates",
            "asks user \"stations\" for a password and database.url has none",
            "fe_sendauth: no password supplied",
            "POSTGRES_PASSWORD in .env",
            "An empty password never works",
        ],
    );

    let (code, stdout, _) = doctor(&cluster.url("stations", Some("Wr0ng-guess"), "stations"));
    assert_eq!(code, 4);
    assert_mentions(
        &stdout,
        &[
            "password authentication failed for user \"stations\"",
            "stale-volume trap",
            "docker compose down -v",
            "ALTER ROLE",
        ],
    );
    assert!(!stdout.contains("Wr0ng-guess"), "{stdout}");

    let (code, stdout, _) = doctor(&cluster.url("ghost", Some(PASSWORD), "stations"));
    assert_eq!(code, 4);
    assert_mentions(&stdout, &["for user \"ghost\"", "or no such role"]);
}

#[tokio::test]
async fn a_missing_database_is_explained_and_db_create_makes_it() {
    let database = TestDatabase::reserve();
    let (code, stdout, _) = doctor(&database.url);
    assert_eq!(code, 5);
    assert_mentions(
        &stdout,
        &[
            "✓ authenticates",
            &format!(
                "✗ database exists: the database \"{}\" does not exist",
                database.name
            ),
            "stations-api db create",
            "POSTGRES_DB",
        ],
    );

    let (output, created, stderr) =
        run(stations_api(&["db", "create"]).env("DATABASE_URL", &database.url));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(created, format!("created database {:?}\n", database.name));

    // Next, the article's "Target database is not up to date".
    let (code, stdout, _) = doctor(&database.url);
    assert_eq!(code, 6);
    assert_mentions(
        &stdout,
        &[
            &format!("{} pending migration(s)", migration_names().len()),
            "m20261125_000001_create_stations",
            "stations-api migrate up",
        ],
    );

    let (output, _, _) = run(stations_api(&["db", "create"]).env("DATABASE_URL", &database.url));
    assert!(
        output.status.success(),
        "creating an existing database is not an error"
    );
}

#[tokio::test]
async fn a_pending_migration_is_named_with_the_command_that_applies_it() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    migrations::run(&db, MigrationStep::Down(1)).await.unwrap();
    let (code, stdout, _) = doctor(&database.url);
    assert_eq!(code, 6);
    assert_mentions(
        &stdout,
        &[
            &format!(
                "1 pending migration(s): {}",
                migration_names().last().unwrap()
            ),
            "stations-api migrate up",
        ],
    );
}

#[tokio::test]
async fn a_database_ahead_of_the_binary_is_refused_by_name() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29990101_000001_add_the_future', 0)",
    )
    .await
    .unwrap();
    let (code, stdout, _) = doctor(&database.url);
    assert_eq!(code, 6);
    assert_mentions(
        &stdout,
        &[
            "m29990101_000001_add_the_future",
            "this binary is older than the schema",
        ],
    );

    let (output, _, stderr) = run(stations_api(&["serve"]).env("DATABASE_URL", &database.url));
    assert_eq!(output.status.code(), Some(1));
    assert_mentions(
        &stderr,
        &["m29990101_000001_add_the_future", "older than the schema"],
    );
}

#[tokio::test]
async fn a_column_altered_by_hand_is_named_by_doctor() {
    let database = TestDatabase::migrated().await;
    let db = database.connect().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        "ALTER TABLE stations ALTER COLUMN elevation_m TYPE integer",
    )
    .await
    .unwrap();
    let (code, stdout, _) = doctor(&database.url);
    assert_eq!(code, 7);
    assert_mentions(
        &stdout,
        &[
            "✗ schema matches the entities",
            "stations.elevation_m: the entity declares type double precision, the table has integer",
        ],
    );
}

#[tokio::test]
async fn tls_required_by_the_server_but_disabled_in_the_url_names_the_sslmode_to_set() {
    let cluster = ScramCluster::start_server(
        "stations",
        PASSWORD,
        ClusterOptions {
            tls_only: true,
            port: None,
        },
    );
    let url = format!(
        "postgres://stations:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let (code, stdout, _) = doctor(&url);
    assert_eq!(code, 4);
    assert_mentions(
        &stdout,
        &[
            "accepts only encrypted (TLS) connections",
            "set sslmode=require",
        ],
    );

    // With sslmode=require the same server admits us.
    let (code, stdout, _) = doctor(&cluster.url("stations", Some(PASSWORD), "postgres"));
    assert_eq!(
        code, 6,
        "past authentication, the empty database needs migrations:\n{stdout}"
    );
}

#[tokio::test]
async fn tls_required_by_the_url_but_not_offered_names_the_sslmode_to_set() {
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;
    let url = format!(
        "postgres://stations:{PASSWORD}@127.0.0.1:{}/stations?sslmode=require",
        cluster.port
    );
    let (code, stdout, _) = doctor(&url);
    assert_eq!(code, 4);
    assert_mentions(
        &stdout,
        &[
            "requires TLS and the server",
            "does not offer it",
            "set sslmode=disable",
        ],
    );
}

#[test]
fn start_up_waits_for_a_database_that_starts_late() {
    let port = free_port();
    let url = format!("postgres://late:{PASSWORD}@127.0.0.1:{port}/postgres?sslmode=disable");
    let mut server = ServerProcess::spawn(
        &url,
        &[
            ("APP__DATABASE__CONNECT_ATTEMPTS", "30"),
            ("APP__DATABASE__MIGRATE_ON_START", "true"),
        ],
    );
    server
        .wait_for(|line| line.contains("retry_in_ms"), Duration::from_secs(30))
        .expect("a log line for the failed first attempt");
    let cluster = ScramCluster::start_server(
        "late",
        PASSWORD,
        ClusterOptions {
            tls_only: false,
            port: Some(port),
        },
    );
    let listening = server
        .wait_for(
            |line| line.contains("\"listening\""),
            Duration::from_secs(60),
        )
        .expect("the server starts once the database is up");
    let record: Value = serde_json::from_str(&listening).unwrap();
    let address = record["address"].as_str().unwrap().to_owned();

    let (output, ready, _) = run(&mut stations_api(&[
        "healthcheck",
        "--url",
        &format!("http://{address}/health/ready"),
    ]));
    assert!(output.status.success(), "{ready}");

    assert!(
        server.terminate().success(),
        "SIGTERM stops the server cleanly"
    );
    let log = server.log.join("\n");
    assert!(
        log.contains(&format!("127.0.0.1:{port} (connection refused)")),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "the password leaked into the log");
    drop(cluster);
}
