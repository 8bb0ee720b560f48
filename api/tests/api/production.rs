//! What production needs: tokens for writes, limits on what a request may cost, CORS, metrics
//! and request ids.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    ServerProcess, TestApp, TestDatabase, assert_no_errors, error_code, error_message, run,
    spawn_app, spawn_app_with, stations_api,
};

const CREATE: &str =
    "mutation($input: CreateStationInput!) { createStation(input: $input) { id } }";

fn station(code: &str) -> Value {
    json!({ "input": { "code": code, "name": "Guarded", "lat": 1.0, "lng": 2.0 } })
}

/// Sends `query` with an optional Authorization header; returns status and JSON body.
async fn post(
    app: &TestApp,
    query: &str,
    variables: Value,
    authorization: Option<&str>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn token_pair() -> (String, String) {
    stations_api::auth::new_token().unwrap()
}

#[tokio::test]
async fn mutations_need_a_configured_bearer_token_and_a_refusal_says_nothing_more() {
    let (token, hash) = token_pair();
    let app = spawn_app_with(|settings| {
        settings.auth.allow_unauthenticated_writes = false;
        settings.auth.token_sha256 = vec![hash];
    })
    .await;

    let (status, missing) = post(&app, CREATE, station("A"), None).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&missing), "UNAUTHENTICATED");
    let (status, wrong) = post(
        &app,
        CREATE,
        station("A"),
        Some(&format!("Bearer {token}0")),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        wrong, missing,
        "a wrong token is refused exactly like a missing one"
    );
    let (_, not_bearer) = post(&app, CREATE, station("A"), Some(&token)).await;
    assert_eq!(not_bearer, missing);
    assert_eq!(app.station_count().await, 0);

    let (status, body) = post(&app, CREATE, station("A"), Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200);
    assert_no_errors(&body);

    // Queries stay public unless configured otherwise.
    let (status, body) = post(&app, "{ stations { totalCount } }", json!({}), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["stations"]["totalCount"], 1);
}

#[tokio::test]
async fn queries_can_require_a_token_too() {
    let (token, hash) = token_pair();
    let app = spawn_app_with(|settings| {
        settings.auth.allow_unauthenticated_writes = false;
        settings.auth.require_for_queries = true;
        settings.auth.token_sha256 = vec![hash];
    })
    .await;
    let (status, body) = post(&app, "{ stations { totalCount } }", json!({}), None).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let (status, _) = post(
        &app,
        "{ stations { totalCount } }",
        json!({}),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn production_refuses_to_start_without_a_token_and_development_warns() {
    let database = TestDatabase::migrated().await;
    let (output, _, stderr) = run(stations_api(&["serve"])
        .env("APP_ENV", "production")
        .env("DATABASE_URL", &database.url)
        .env("APP__SERVER__PORT", "0"));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stations-api token new"), "{stderr}");

    let (_, hash) = token_pair();
    let (mut server, _) = ServerProcess::start(
        &database.url,
        &[
            ("APP_ENV", "production"),
            ("APP__AUTH__TOKEN_SHA256", &hash),
        ],
    );
    assert!(!server.log.join("\n").contains("MUTATIONS NEED NO TOKEN"));
    assert!(server.terminate().success());

    let (mut server, _) = ServerProcess::start(&database.url, &[("APP_ENV", "development")]);
    assert!(
        server.log.join("\n").contains("MUTATIONS NEED NO TOKEN"),
        "{}",
        server.log.join("\n")
    );
    server.terminate();
}

#[test]
fn a_new_token_prints_the_hash_to_configure() {
    let (output, stdout, _) = run(&mut stations_api(&["token", "new"]));
    assert!(output.status.success());
    let token = stdout
        .lines()
        .find_map(|line| line.strip_prefix("token:  "))
        .unwrap();
    let hash = stdout
        .lines()
        .find_map(|line| line.strip_prefix("sha256: "))
        .unwrap();
    assert_eq!(token.len(), 64);
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected);
    assert!(stdout.contains(&format!("APP__AUTH__TOKEN_SHA256={hash}")));
}

#[tokio::test]
async fn each_limit_refuses_with_its_own_code_naming_the_setting() {
    let app = spawn_app_with(|settings| {
        settings.graphql.max_depth = 3;
        settings.graphql.max_page_size = 5;
    })
    .await;

    let body = app
        .graphql("{ stations { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "QUERY_TOO_DEEP");
    assert!(
        error_message(&body).contains("the limit is 3 (graphql.max_depth)"),
        "{body}"
    );

    let body = app
        .graphql("{ stations(first: 6) { totalCount } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(error_message(&body).contains("between 0 and 5"), "{body}");

    let app = spawn_app().await;
    let page = "stations(first: 100) { edges { node { id code name lat lng } } }";
    let body = app
        .graphql(&format!("{{ a: {page} b: {page} c: {page} }}"), json!({}))
        .await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(
        error_message(&body).contains("the limit is 2000 (graphql.max_complexity)"),
        "{body}"
    );

    let aliases: String = (0..1000).map(|i| format!("a{i}: __typename ")).collect();
    let body = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(error_code(&body), "TOO_MANY_FIELDS");
    assert!(
        error_message(&body).contains("the limit is 500 (graphql.max_fields)"),
        "{body}"
    );

    // Fragments that spread each other twice over: a billion fields if expanded.
    let mut bomb = String::from("query { ...F30 }\nfragment F0 on Query { __typename }\n");
    for level in 1..=30 {
        bomb.push_str(&format!(
            "fragment F{level} on Query {{ ...F{} ...F{} }}\n",
            level - 1,
            level - 1
        ));
    }
    let body = app.graphql(&bomb, json!({})).await;
    assert_eq!(error_code(&body), "TOO_MANY_FIELDS");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(|settings| settings.server.max_body_bytes = 2_000).await;
    let padding = " ".repeat(3_000);
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(format!("{{\"query\": \"{{ __typename }}{padding}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn a_slow_statement_is_cancelled_and_a_full_pool_fails_fast() {
    let app = spawn_app_with(|settings| {
        settings.database.statement_timeout_ms = 700;
        settings.database.max_connections = 1;
        settings.database.acquire_timeout_ms = 300;
    })
    .await;
    app.create_station("LOCK", "Locked", 0.0, 0.0).await;
    // The test holds a lock the server's reads must wait for.
    let (_blocker, transaction) = app.lock_stations().await;

    let slow = {
        let (client, address) = (app.client.clone(), app.address.clone());
        tokio::spawn(async move {
            client
                .post(format!("{address}/graphql"))
                .json(&json!({ "query": "{ stations { totalCount } }" }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    app.database.wait_until_a_statement_waits_for_a_lock().await;
    // The only connection is taken by the waiting request.
    let busy = app
        .graphql("{ station(id: \"1\") { id } }", json!({}))
        .await;
    assert_eq!(error_code(&busy), "SERVICE_UNAVAILABLE");
    assert!(error_message(&busy).contains("busy"), "{busy}");

    let slow = slow.await.unwrap();
    assert_eq!(error_code(&slow), "TIMEOUT");
    assert!(
        !slow.to_string().contains("statement timeout"),
        "no database wording: {slow}"
    );
    transaction.rollback().await.unwrap();

    // A busy pool is not a database outage: the next request is served.
    let body = app.graphql("{ stations { totalCount } }", json!({})).await;
    assert_no_errors(&body);
}

#[tokio::test]
async fn a_request_over_the_request_timeout_gets_504() {
    let app = spawn_app_with(|settings| {
        settings.server.request_timeout_secs = 1;
        settings.database.statement_timeout_ms = 5_000;
    })
    .await;
    let (_blocker, transaction) = app.lock_stations().await;
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": "{ stations { totalCount } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "TIMEOUT");
    assert!(error_message(&body).contains("server.request_timeout_secs"));
    transaction.rollback().await.unwrap();
}

#[tokio::test]
async fn cors_admits_only_the_configured_origins() {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let app = spawn_app_with(|settings| {
        settings.server.cors_allowed_origins = vec!["https://stations.example".to_owned()];
    })
    .await;
    let allowed = preflight(&app, "https://stations.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://stations.example"
    );
    let other = preflight(&app, "https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let closed = spawn_app().await;
    let response = preflight(&closed, "https://stations.example")
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn metrics_count_requests_by_operation_and_outcome_and_report_the_pool() {
    let app = spawn_app().await;
    app.graphql("query ListStations { stations { totalCount } }", json!({}))
        .await;
    app.graphql("query ListStations { stations { totalCount } }", json!({}))
        .await;
    app.graphql("{ station(id: \"x\") { id } }", json!({}))
        .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "stations_graphql_requests_total{operation=\"ListStations\",outcome=\"ok\"} 2",
        "stations_graphql_requests_total{operation=\"anonymous\",outcome=\"BAD_USER_INPUT\"} 1",
        "stations_graphql_request_duration_seconds_count{operation=\"ListStations\"} 2",
        "# TYPE stations_db_pool_connections gauge",
        "stations_db_unavailable 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let statements = crate::helpers::metric_value(&text, "stations_db_statements_total");
    assert!(statements >= 2, "{text}");

    let separate =
        spawn_app_with(|settings| settings.metrics.listen = "127.0.0.1:0".to_owned()).await;
    assert_eq!(
        separate.get("/metrics").await.status(),
        404,
        "not on the public port"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_clients_own_is_kept_when_sane() {
    let app = spawn_app().await;
    let generated = app.get("/health/live").await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let kept = app
        .client
        .get(format!("{}/health/live", app.address))
        .header("x-request-id", "client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "client-42");
    let replaced = app
        .client
        .get(format!("{}/health/live", app.address))
        .header("x-request-id", "has space\"")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "has space\"");
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_request_id_and_operation() {
    let database = TestDatabase::migrated().await;
    let (mut server, address) = ServerProcess::start(&database.url, &[]);
    let db = database.connect().await;
    sea_orm::ConnectionTrait::execute_unprepared(&db, "ALTER TABLE stations RENAME TO moved")
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .header("x-request-id", "trace-me-7")
        .json(&json!({ "query": "query Broken { stations { totalCount } }" }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "INTERNAL");
    server.wait_for(
        |line| line.contains("request completed"),
        Duration::from_secs(5),
    );
    server.terminate();
    let lines: Vec<&String> = server
        .log
        .iter()
        .filter(|line| line.contains("trace-me-7"))
        .collect();
    assert!(
        lines.iter().any(|line| line.contains("request failed")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("request completed")
                && line.contains("\"operation\":\"Broken\"")),
        "{lines:?}"
    );
    for line in &server.log {
        assert!(
            !line.contains("stations_test:stations_test"),
            "a password in the log: {line}"
        );
    }
}
