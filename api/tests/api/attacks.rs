//! What a hostile client tries, one test per attack, on the real server over real sockets:
//! each must be refused or cut off within a bounded time, with the replica answering
//! `/health/live` throughout.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::helpers::{
    ServerProcess, TestApp, TestDatabase, error_code, error_field, error_message, get_status,
    post_graphql, run, spawn_app, spawn_app_with, stations_api,
};
use crate::live::{LiveClient, TRANSPORT_WS, upgrade_request};
use crate::scram_cluster::ScramCluster;

/// `query A { __typename } query B { ...F20 }` where each fragment spreads the one before it
/// four times: 4^20 fields if validation expanded them, which it does for every operation.
fn fragment_bomb(levels: usize) -> String {
    let mut document = format!("query A {{ __typename }} query B {{ ...F{levels} }}\n");
    document.push_str("fragment F0 on Query { __typename }\n");
    for level in 1..=levels {
        let previous = level - 1;
        document.push_str(&format!(
            "fragment F{level} on Query {{ ...F{previous} ...F{previous} ...F{previous} ...F{previous} }}\n"
        ));
    }
    document
}

/// POSTs `body`; status and JSON answer, failing the test when no answer comes in `within`.
async fn post_within(app: &TestApp, body: &Value, within: Duration) -> (u16, Value) {
    let response = tokio::time::timeout(
        within,
        app.client
            .post(format!("{}/graphql", app.address))
            .header("accept", "application/graphql-response+json")
            .json(body)
            .send(),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer within {within:?}"))
    .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn assert_live(app: &TestApp) {
    let live = tokio::time::timeout(Duration::from_secs(1), app.get("/health/live"))
        .await
        .expect("/health/live answers within a second");
    assert_eq!(live.status(), 200);
}

// Two workers: were validation to expand the bomb, one would spin in it and the other still
// time the answer out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_bomb_beside_the_operation_that_runs_is_refused_before_validation() {
    let app = spawn_app().await;
    let bomb = fragment_bomb(20);
    assert!(bomb.len() < 2_000, "{} bytes", bomb.len());

    let (status, body) = post_within(
        &app,
        &json!({ "query": bomb, "operationName": "A" }),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "TOO_MANY_FIELDS");
    assert!(
        error_message(&body).contains("graphql.max_fields"),
        "{body}"
    );
    assert_live(&app).await;

    // The same document without naming an operation: refused for that, before validation too.
    let (status, body) = post_within(
        &app,
        &json!({ "query": fragment_bomb(3) }),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "BAD_REQUEST");
    assert_eq!(error_field(&body), "operationName");
    assert!(error_message(&body).contains("A, B"), "{body}");

    // Or naming one the document does not hold.
    let (_, body) = post_within(
        &app,
        &json!({ "query": fragment_bomb(3), "operationName": "C" }),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(error_field(&body), "operationName");
}

#[tokio::test]
async fn too_many_fragments_or_spreads_are_refused_naming_the_limit() {
    let app = spawn_app_with(|settings| {
        settings.graphql.max_fragments = 5;
        settings.graphql.max_fragment_spreads = 8;
    })
    .await;
    let mut many_fragments = String::from("{ ...F0 }\n");
    for index in 0..6 {
        let next = if index < 5 {
            format!("...F{}", index + 1)
        } else {
            String::new()
        };
        many_fragments.push_str(&format!(
            "fragment F{index} on Query {{ __typename {next} }}\n"
        ));
    }
    let (status, body) = post_within(
        &app,
        &json!({ "query": many_fragments }),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(
        error_message(&body).contains("graphql.max_fragments"),
        "{body}"
    );

    let many_spreads = format!(
        "{{ {} }} fragment F on Query {{ __typename }}",
        "...F ".repeat(9)
    );
    let (_, body) = post_within(
        &app,
        &json!({ "query": many_spreads }),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(
        error_message(&body).contains("graphql.max_fragment_spreads"),
        "{body}"
    );
}

#[tokio::test]
async fn a_websocket_message_over_the_body_limit_closes_the_socket_with_1009() {
    let app = spawn_app_with(|settings| settings.server.max_body_bytes = 4096).await;
    let mut client = LiveClient::open(&app.address, TRANSPORT_WS).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "pad": "x".repeat(8192) } }))
        .await;
    let closed = client.closed(Duration::from_secs(5)).await;
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("server.max_body_bytes"), "{reason}");
    assert_live(&app).await;
}

#[tokio::test]
async fn a_websocket_from_a_page_of_another_origin_is_refused_with_403() {
    let app = spawn_app().await;
    let foreign = upgrade_request(&app.address, Some("http://attacker.example")).await;
    assert_eq!(foreign.status(), 403);
    let body: Value = foreign.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("server.cors_allowed_origins"),
        "{body}"
    );
    let own_origin = app.address.clone();
    assert_eq!(
        upgrade_request(&app.address, Some(&own_origin))
            .await
            .status(),
        101
    );
    assert_eq!(upgrade_request(&app.address, None).await.status(), 101);
}

#[tokio::test]
async fn a_listed_origin_may_open_a_websocket() {
    let app = spawn_app_with(|settings| {
        settings.server.cors_allowed_origins = vec!["https://app.example.com".to_owned()];
    })
    .await;
    let status = upgrade_request(&app.address, Some("https://app.example.com"))
        .await
        .status();
    assert_eq!(status, 101);
}

/// Sends `head` on a fresh connection and returns the status line of the answer.
async fn status_line(app: &TestApp, head: &str) -> String {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !answer.windows(2).any(|pair| pair == b"\r\n") {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => answer.extend_from_slice(&chunk[..read]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_dns_rebinding_host_is_refused_on_http_and_websocket() {
    let app = spawn_app_with(|settings| {
        settings.server.allowed_hosts = vec!["dev.example.test".to_owned()];
    })
    .await;
    let rebound = status_line(
        &app,
        "GET /health/live HTTP/1.1\r\nHost: attacker.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    let upgrade = status_line(
        &app,
        "GET /graphql HTTP/1.1\r\nHost: attacker.example:8080\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
    )
    .await;
    assert!(upgrade.starts_with("HTTP/1.1 421"), "{upgrade}");
    for host in [
        "localhost:8080",
        "127.0.0.1",
        "[::1]:8080",
        "dev.example.test:8080",
    ] {
        let answer = status_line(
            &app,
            &format!("GET /health/live HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_cut_off_and_cannot_take_every_slot() {
    let app = spawn_app_with(|settings| {
        settings.server.header_read_timeout_secs = 1;
        settings.server.max_connections = 8;
        settings.subscriptions.max_connections = 4;
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // Every slot taken by a client that sends half a request head and then nothing.
    let mut loris = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        loris.push(stream);
    }
    let started = Instant::now();
    // An honest client gets in once the server has cut them off.
    let live = tokio::time::timeout(Duration::from_secs(5), app.get("/health/live"))
        .await
        .expect("an answer once the slow clients are cut off");
    assert_eq!(live.status(), 200);
    for mut stream in loris {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(5).saturating_sub(started.elapsed()),
            stream.read_to_end(&mut rest),
        )
        .await;
        assert!(read.is_ok(), "a slow client's connection is still open");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|settings| settings.server.header_read_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the idle connection stayed open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408() {
    let app = spawn_app_with(|settings| settings.server.body_read_timeout_secs = 1).await;
    let answer = status_line(
        &app,
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{\"query\":",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_live(&app).await;
}

#[tokio::test]
async fn a_websocket_whose_client_only_answers_pings_is_closed_as_idle() {
    let app = spawn_app_with(|settings| {
        settings.subscriptions.keepalive_secs = 1;
        settings.subscriptions.idle_timeout_secs = 2;
    })
    .await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_ack");
    // Reading answers the server's pings with pongs, and sends nothing else.
    let (code, reason) = client
        .closed(Duration::from_secs(10))
        .await
        .expect("a close frame");
    assert_eq!(code, 1000, "{reason}");
    assert!(reason.contains("idle"), "{reason}");
}

#[tokio::test]
async fn a_batch_shares_one_deadline() {
    let app = spawn_app_with(|settings| {
        settings.server.request_timeout_secs = 1;
        settings.database.statement_timeout_ms = 10_000;
    })
    .await;
    let (_blocker, transaction) = app.lock_stations().await;
    let batch: Vec<Value> = (0..4)
        .map(|_| json!({ "query": "{ stations { totalCount } }" }))
        .collect();
    let started = Instant::now();
    let (status, body) = post_within(&app, &json!(batch), Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_millis(2_500),
        "four operations of one request took {took:?}: one deadline covers them all"
    );
    for answer in body.as_array().unwrap() {
        assert_eq!(error_code(answer), "TIMEOUT", "{answer}");
    }
    transaction.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_query_after_postgresql_vanished_is_answered_at_once() {
    const PASSWORD: &str = "vanish-Passw0rd";
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;
    let url = cluster.url("stations", Some(PASSWORD), "stations");
    let (mut server, address) = ServerProcess::start(
        &url,
        &[
            ("APP__DATABASE__MIGRATE_ON_START", "true"),
            ("APP__DATABASE__ACQUIRE_TIMEOUT_MS", "3000"),
        ],
    );
    // Gone before the server ran a single query: the pool has never handed out a connection.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_immediately();
        cluster
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let body = post_graphql(
        &client,
        &address,
        &json!({ "query": "{ stations { totalCount } }" }),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE", "{body}");
    assert!(
        took < Duration::from_millis(1_500),
        "answered after {took:?}, as if waiting out database.acquire_timeout_ms (3 s)"
    );
    assert!(server.terminate().success());
    drop(cluster);
}

#[tokio::test]
async fn queries_sent_over_a_websocket_count_against_its_in_flight_limit() {
    let app = spawn_app_with(|settings| {
        settings.subscriptions.max_per_connection = 2;
        settings.database.statement_timeout_ms = 10_000;
    })
    .await;
    let (_blocker, transaction) = app.lock_stations().await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_ack");
    for id in ["1", "2", "3"] {
        client
            .subscribe(id, "{ stations { totalCount } }", json!({}))
            .await;
    }
    // The first two wait on the lock; the third is one operation too many for the socket.
    let refused = client.next_event("3", Duration::from_secs(5)).await;
    assert_eq!(error_code(&refused), "TOO_MANY_SUBSCRIPTIONS", "{refused}");
    assert!(
        error_message(&refused).contains("subscriptions.max_per_connection"),
        "{refused}"
    );
    transaction.rollback().await.unwrap();
}

#[tokio::test]
async fn a_subscription_that_loads_pages_for_every_event_is_refused_by_its_own_limit() {
    let app = spawn_app().await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_ack");
    client
        .subscribe(
            "1",
            "subscription { stationChanged { kind station { code \
             observations(first: 50) { edges { node { observedAt } } } } } }",
            json!({}),
        )
        .await;
    let refused = client.next_event("1", Duration::from_secs(5)).await;
    assert_eq!(error_code(&refused), "QUERY_TOO_COMPLEX", "{refused}");
    assert!(
        error_message(&refused).contains("subscriptions.max_complexity"),
        "{refused}"
    );
    // The same selection is fine as a query, within graphql.max_complexity.
    let body = app
        .graphql(
            "{ stations(first: 1) { edges { node { code \
             observations(first: 50) { edges { node { observedAt } } } } } } }",
            json!({}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

// Failing closed in production.

#[tokio::test]
async fn without_introspection_validation_errors_suggest_no_field_names() {
    let app = spawn_app_with(|settings| settings.graphql.introspection = false).await;
    let body = post_graphql(
        &app.client,
        &app.address,
        &json!({ "query": "{ statons { totalCount } }" }),
    )
    .await;
    let message = error_message(&body);
    assert!(message.contains("statons"), "{body}");
    assert!(!message.contains("Did you mean"), "{body}");
}

#[tokio::test]
async fn production_serves_metrics_on_its_own_listener_not_on_the_public_port() {
    let database = TestDatabase::migrated().await;
    let (_, hash) = stations_api::auth::new_token().unwrap();
    let (mut server, address) = ServerProcess::start(
        &database.url,
        &[
            ("APP_ENV", "production"),
            ("APP__AUTH__TOKEN_SHA256", &hash),
        ],
    );
    let client = reqwest::Client::new();
    assert_eq!(get_status(&client, &address, "/metrics").await, 404);
    // (The tests give it port 0, as they run servers side by side; the file names its own.)
    let production: toml::Table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/production.toml"),
    )
    .unwrap()
    .parse()
    .unwrap();
    let listen = production["metrics"]["listen"].as_str().unwrap_or_default();
    assert!(
        listen.starts_with("127.0.0.1:"),
        "metrics.listen = {listen:?}"
    );
    assert_eq!(get_status(&client, &address, "/health/live").await, 200);
    assert!(server.terminate().success());
}

#[tokio::test]
async fn names_of_refused_operations_earn_no_metric_label() {
    let app = spawn_app().await;
    for index in 0..5 {
        let _ = post_graphql(
            &app.client,
            &app.address,
            &json!({ "query": format!("query Junk{index} {{ nope }}"), "operationName": format!("Junk{index}") }),
        )
        .await;
    }
    app.graphql("query Counted { stations { totalCount } }", json!({}))
        .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("Junk"), "{metrics}");
    assert!(
        metrics.contains(
            "stations_graphql_requests_total{operation=\"unvalidated\",outcome=\"GRAPHQL_VALIDATION_FAILED\"} 5"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("operation=\"Counted\""), "{metrics}");
}

#[test]
fn without_app_env_the_server_refuses_a_host_other_machines_can_reach() {
    let (output, _, stderr) = run(stations_api(&["serve"])
        .env_remove("APP_ENV")
        .env("APP__SERVER__HOST", "0.0.0.0")
        .env(
            "DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none?sslmode=disable",
        )
        .env("APP__DATABASE__CONNECT_ATTEMPTS", "1"));
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("APP_ENV is not set"), "{stderr}");
    assert!(stderr.contains("APP_ENV=production"), "{stderr}");
}

#[tokio::test]
async fn a_long_operation_name_is_cut_in_the_log() {
    let database = TestDatabase::migrated().await;
    let (mut server, address) = ServerProcess::start(&database.url, &[]);
    let name = "A".repeat(5_000);
    let body = post_graphql(
        &reqwest::Client::new(),
        &address,
        &json!({ "query": format!("query {name} {{ __typename }}"), "operationName": name }),
    )
    .await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    let completed = server
        .wait_for(
            |line| line.contains("request completed"),
            Duration::from_secs(10),
        )
        .expect("the access log line");
    let record: Value = serde_json::from_str(&completed).unwrap();
    let logged = record["spans"][0]["operation"]
        .as_str()
        .unwrap_or_else(|| panic!("{completed}"));
    assert!(logged.chars().count() <= 65, "{} characters", logged.len());
    assert!(logged.starts_with("AAAA"), "{logged}");
    assert!(server.terminate().success());
}

#[tokio::test]
async fn readiness_probes_within_a_second_share_one_check() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    app.database.make_unreachable().await;
    // The answer of a moment ago serves this probe: no new connection to a sick database.
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.get("/health/ready").await.status() != 503 {
        assert!(Instant::now() < deadline, "readiness never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
