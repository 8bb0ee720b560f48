//! Real GraphQL clients against the real server: the GraphQL-over-HTTP conformance audits of
//! the `graphql-http` package, Apollo Client and urql, from the npm registry through
//! `api/tests/clients/package-lock.json` (`npm --prefix api/tests/clients ci`; `.ci/run` does
//! it). Each script exits non-zero with what went wrong; this side owns server and database.

use std::path::{Path, PathBuf};

use crate::helpers::{TestApp, run_node_script, spawn_app, spawn_app_with};

fn script(name: &str) -> PathBuf {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        clients.join("node_modules/graphql-http").is_dir(),
        "run `npm --prefix api/tests/clients ci` first (bash .ci/run does)"
    );
    clients.join(name)
}

/// A server that takes mutations only with a bearer token, and the token.
async fn guarded_app() -> (TestApp, String) {
    let (token, hash) = stations_api::auth::new_token().unwrap();
    let app = spawn_app_with(|settings| {
        settings.auth.allow_unauthenticated_writes = false;
        settings.auth.token_sha256 = vec![hash];
    })
    .await;
    (app, token)
}

#[tokio::test]
async fn every_graphql_over_http_audit_passes() {
    let app = spawn_app().await;
    let printed = run_node_script(
        script("audit.mjs"),
        vec!["--url".into(), format!("{}/graphql", app.address)],
    )
    .await;
    assert!(printed.contains("MUST 13/13"), "{printed}");
}

#[tokio::test]
async fn apollo_client_mutates_queries_persists_over_get_and_pages() {
    let (app, token) = guarded_app().await;
    run_node_script(
        script("apollo.mjs"),
        vec![
            "--url".into(),
            format!("{}/graphql", app.address),
            "--token".into(),
            token,
        ],
    )
    .await;
    assert_eq!(app.station_count().await, 5);
}

#[tokio::test]
async fn urql_mutates_queries_persists_over_get_and_pages() {
    let (app, token) = guarded_app().await;
    run_node_script(
        script("urql.mjs"),
        vec![
            "--url".into(),
            format!("{}/graphql", app.address),
            "--token".into(),
            token,
        ],
    )
    .await;
    assert_eq!(app.station_count().await, 5);
}

#[tokio::test]
async fn the_graphql_ws_client_receives_changes_made_by_another_client() {
    let (app, token) = guarded_app().await;
    run_node_script(
        script("graphql-ws.mjs"),
        vec![
            "--url".into(),
            format!("{}/graphql", app.address),
            "--token".into(),
            token,
        ],
    )
    .await;
}
