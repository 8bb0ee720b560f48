//! The `stations-api` binary as users run it: exit codes, standard output, and messages.

use crate::helpers::{TestDatabase, migration_names, run, stations_api};

#[test]
fn the_checked_in_schema_is_the_one_the_binary_prints() {
    let (output, stdout, stderr) = run(&mut stations_api(&["schema"]));
    assert!(output.status.success(), "{stderr}");
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("api/schema.graphql exists");
    assert!(
        checked_in == stdout,
        "api/schema.graphql is out of date: run `cargo run -q -p stations-api -- schema > api/schema.graphql` \
         and review the difference"
    );
}

#[tokio::test]
async fn migrate_applies_lists_and_reverts_migrations() {
    let database = TestDatabase::empty().await;
    let with_database = |args: &[&str]| {
        let mut command = stations_api(args);
        command.env("DATABASE_URL", &database.url);
        command
    };

    let all = migration_names().len();
    let (output, stdout, stderr) = run(&mut with_database(&["migrate", "status"]));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("pending  m"))
            .count(),
        all,
        "{stdout}"
    );

    let (output, stdout, stderr) = run(&mut with_database(&["migrate", "up"]));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("applied  m"))
            .count(),
        all,
        "{stdout}"
    );

    let (output, stdout, stderr) = run(&mut with_database(&["migrate", "down", "--num", "2"]));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("pending  m"))
            .count(),
        2,
        "{stdout}"
    );

    let (output, stdout, stderr) = run(&mut with_database(&["migrate", "fresh"]));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("applied  m"))
            .count(),
        all,
        "{stdout}"
    );
}

#[test]
fn migrate_fresh_is_refused_in_production() {
    let (output, _, stderr) = run(stations_api(&["migrate", "fresh"])
        .env("APP_ENV", "production")
        .env(
            "DATABASE_URL",
            "postgres://u:p@127.0.0.1:1/db?sslmode=disable",
        ));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("refused when APP_ENV=production"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_setting_names_its_key_and_variable() {
    let (output, _, stderr) =
        run(stations_api(&["migrate", "status"]).env("APP__DATABASE__MAX_CONNECTIONS", "lots"));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`database.max_connections`"), "{stderr}");
    assert!(
        stderr.contains("APP__DATABASE__MAX_CONNECTIONS"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_setting_is_refused() {
    let (output, _, stderr) =
        run(stations_api(&["migrate", "status"]).env("APP__DATABASE__MAX_CONNECTION", "4"));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown field `max_connection`"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_environment_lists_the_known_ones() {
    let (output, _, stderr) = run(stations_api(&["migrate", "status"]).env("APP_ENV", "staging"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("use development, test or production"),
        "{stderr}"
    );
}

#[test]
fn production_without_a_database_url_says_which_variable_to_set() {
    let (output, _, stderr) = run(stations_api(&["serve"]).env("APP_ENV", "production"));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("`database.url`"), "{stderr}");
    assert!(stderr.contains("set DATABASE_URL"), "{stderr}");
}

#[test]
fn a_connection_failure_names_the_target_and_never_the_password() {
    let (output, _, stderr) = run(stations_api(&["migrate", "status"])
        .env(
            "DATABASE_URL",
            "postgres://alice:hunter2-secret@127.0.0.1:1/stations?sslmode=disable",
        )
        .env("APP__DATABASE__CONNECT_ATTEMPTS", "1"));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}
