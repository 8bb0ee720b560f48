//! GraphQL subscriptions on one server: what reaches subscribers, when, and the limits around
//! them. Several replicas, nginx and PostgreSQL restarts are in `replicas.rs`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_no_errors, spawn_app, spawn_app_with};
use crate::live::{
    LEGACY_WS, LiveClient, TRANSPORT_WS, upgrade_request, wait_until_listening,
    wait_until_subscribed,
};

const SECOND: Duration = Duration::from_secs(1);
const STATION_CHANGED: &str = "subscription($filter: StationChangeFilter) {
    stationChanged(filter: $filter) { kind id station { code lat lng } } }";

/// The app's first subscriber, to `stationChanged` as subscription "s", once it receives changes.
async fn subscriber(app: &TestApp, filter: Value) -> LiveClient {
    wait_until_listening(&[&app.address]).await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_init accepted");
    client
        .subscribe("s", STATION_CHANGED, json!({ "filter": filter }))
        .await;
    wait_until_subscribed(&[&app.address], 1).await;
    client
}

#[tokio::test]
async fn a_committed_change_reaches_a_subscriber_and_a_rolled_back_one_never_does() {
    let app = spawn_app().await;
    let mut client = subscriber(&app, Value::Null).await;

    app.execute_sql(
        "BEGIN; INSERT INTO stations (code, name, lat, lng) VALUES ('GONE', 'Rolled back', 1, 1); ROLLBACK;",
    )
    .await;
    let created = app.create_station("LIVE1", "Live", 47.0, 8.0).await;
    let event = client.next_event("s", SECOND).await;
    assert_eq!(
        event["data"]["stationChanged"],
        json!({ "kind": "CREATED", "id": created["id"], "station": { "code": "LIVE1", "lat": 47.0, "lng": 8.0 } }),
        "the rolled-back insert announced nothing"
    );

    let body = app
        .graphql(
            "mutation($id: ID!) { updateStation(id: $id, input: { lat: 46.5 }) { id } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_no_errors(&body);
    let event = client.next_event("s", SECOND).await;
    assert_eq!(event["data"]["stationChanged"]["kind"], "UPDATED");
    assert_eq!(event["data"]["stationChanged"]["station"]["lat"], 46.5);

    let body = app
        .graphql(
            "mutation($id: ID!) { deleteStation(id: $id) }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_no_errors(&body);
    let event = client.next_event("s", SECOND).await;
    assert_eq!(
        event["data"]["stationChanged"],
        json!({ "kind": "DELETED", "id": created["id"], "station": null })
    );
    client.close().await;
}

#[tokio::test]
async fn a_station_deleted_before_it_could_be_read_back_is_announced_as_deleted_only() {
    let app = spawn_app().await;
    let mut client = subscriber(&app, Value::Null).await;
    // Both notifications arrive after the commit, when the row is gone already.
    app.execute_sql(
        "BEGIN; INSERT INTO stations (code, name, lat, lng) VALUES ('BRIEF', 'Brief', 1, 1); \
         DELETE FROM stations WHERE code = 'BRIEF'; COMMIT;",
    )
    .await;
    let event = client.next_event("s", SECOND).await;
    assert_eq!(
        event["data"]["stationChanged"]["kind"], "DELETED",
        "{event}"
    );
    assert_eq!(event["data"]["stationChanged"]["station"], Value::Null);
    assert!(client.is_quiet_for(SECOND / 2).await);
}

#[tokio::test]
async fn a_filter_delivers_its_stations_only_including_one_that_moves_out_of_the_box() {
    let app = spawn_app().await;
    let mut client = subscriber(
        &app,
        json!({ "bbox": { "minLat": 45, "maxLat": 48, "minLng": 5, "maxLng": 11 } }),
    )
    .await;
    app.create_station("FAR", "Far away", -33.9, 151.2).await;
    let near = app.create_station("NEAR", "Near", 47.0, 8.0).await;
    let event = client.next_event("s", SECOND).await;
    assert_eq!(event["data"]["stationChanged"]["station"]["code"], "NEAR");

    // Moving out of the box is a change this subscriber must hear about.
    let body = app
        .graphql(
            "mutation($id: ID!) { updateStation(id: $id, input: { lat: 10 }) { id } }",
            json!({ "id": near["id"] }),
        )
        .await;
    assert_no_errors(&body);
    let event = client.next_event("s", SECOND).await;
    assert_eq!(event["data"]["stationChanged"]["kind"], "UPDATED");
    assert_eq!(event["data"]["stationChanged"]["station"]["lat"], 10.0);

    // Now outside, further moves outside are not.
    app.graphql(
        "mutation($id: ID!) { updateStation(id: $id, input: { lat: 11 }) { id } }",
        json!({ "id": near["id"] }),
    )
    .await;
    assert!(client.is_quiet_for(SECOND / 2).await);
}

#[tokio::test]
async fn recorded_observations_reach_subscribers_of_their_station() {
    let app = spawn_app().await;
    let watched = app.create_station("OBSW", "Watched", 47.0, 8.0).await;
    let other = app.create_station("OBSO", "Other", 47.0, 8.0).await;
    wait_until_listening(&[&app.address]).await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .unwrap();
    client
        .subscribe(
            "o",
            "subscription($ids: [ID!]) { observationRecorded(stationIds: $ids) {
                kind observation { temperatureC station { code } } } }",
            json!({ "ids": [watched["id"]] }),
        )
        .await;
    wait_until_subscribed(&[&app.address], 1).await;
    let body = app
        .graphql(
            "mutation($inputs: [ObservationInput!]!) { recordObservations(inputs: $inputs) { inserted } }",
            json!({ "inputs": [
                { "stationId": other["id"], "observedAt": "2026-06-01T00:00:00Z", "temperatureC": 1.0 },
                { "stationId": watched["id"], "observedAt": "2026-06-01T00:00:00Z", "temperatureC": 2.0 },
            ] }),
        )
        .await;
    assert_no_errors(&body);
    let event = client.next_event("o", SECOND).await;
    assert_eq!(
        event["data"]["observationRecorded"],
        json!({ "kind": "RECORDED", "observation": { "temperatureC": 2.0, "station": { "code": "OBSW" } } })
    );
    assert!(
        client.is_quiet_for(SECOND / 2).await,
        "the other station's is not delivered"
    );
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_delivers_too() {
    let app = spawn_app().await;
    wait_until_listening(&[&app.address]).await;
    let mut client = LiveClient::connect(&app.address, LEGACY_WS, json!({}))
        .await
        .unwrap();
    client
        .subscribe("1", STATION_CHANGED, json!({ "filter": null }))
        .await;
    wait_until_subscribed(&[&app.address], 1).await;
    app.create_station("OLD", "Legacy", 1.0, 1.0).await;
    let event = client.next_event("1", SECOND).await;
    assert_eq!(event["data"]["stationChanged"]["station"]["code"], "OLD");
}

#[tokio::test]
async fn connection_init_carries_the_token_and_a_refusal_closes_with_4403() {
    let (token, hash) = stations_api::auth::new_token().unwrap();
    let app = spawn_app_with(|settings| {
        settings.auth.allow_unauthenticated_writes = false;
        settings.auth.require_for_queries = true;
        settings.auth.token_sha256 = vec![hash];
    })
    .await;
    for payload in [json!({}), json!({ "authorization": "Bearer wrong" })] {
        let refused = LiveClient::connect(&app.address, TRANSPORT_WS, payload.clone()).await;
        let Err(Some((code, reason))) = refused else {
            panic!("{payload} was not refused with a close frame");
        };
        assert_eq!(code, 4403, "{payload}");
        assert!(reason.contains("bearer token"), "{reason}");
    }
    let legacy = LiveClient::connect(&app.address, LEGACY_WS, json!({})).await;
    assert!(legacy.is_err(), "the legacy protocol refuses it too");
    let accepted = LiveClient::connect(
        &app.address,
        TRANSPORT_WS,
        json!({ "authorization": format!("Bearer {token}") }),
    )
    .await;
    assert!(accepted.is_ok());
}

#[tokio::test]
async fn limits_on_subscriptions_and_sockets_name_their_settings() {
    let app = spawn_app_with(|settings| {
        settings.subscriptions.max_per_connection = 2;
        settings.subscriptions.max_connections = 2;
        settings.subscriptions.connection_init_timeout_secs = 1;
    })
    .await;
    wait_until_listening(&[&app.address]).await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .unwrap();
    for id in ["1", "2", "3"] {
        client.subscribe(id, STATION_CHANGED, json!({})).await;
    }
    let refused = client.next_event("3", SECOND * 2).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("subscriptions.max_per_connection"),
        "{refused}"
    );

    // A second socket that never sends connection_init is closed with 4408.
    let mut silent = LiveClient::open(&app.address, TRANSPORT_WS).await;
    // A third socket is one too many.
    let response = upgrade_request(&app.address, None).await;
    assert_eq!(response.status(), 503);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("subscriptions.max_connections")
    );
    let closed = silent.closed(SECOND * 3).await;
    assert_eq!(closed.map(|(code, _)| code), Some(4408));
}

#[tokio::test]
async fn subscriptions_are_not_served_over_plain_http() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": "subscription { stationChanged { kind } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("WebSocket"),
        "{body}"
    );
}

#[tokio::test]
async fn a_thousand_subscribers_on_one_replica_all_receive_a_change() {
    let app = spawn_app().await;
    wait_until_listening(&[&app.address]).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
            .await
            .unwrap();
        for id in 0..100 {
            client
                .subscribe(&id.to_string(), STATION_CHANGED, json!({}))
                .await;
        }
        clients.push(client);
    }
    // Every subscription receives changes before the change.
    wait_until_subscribed(&[&app.address], 1000).await;
    let metrics = || {
        let app = &app;
        async move { app.get("/metrics").await.text().await.unwrap() }
    };
    app.create_station("MANY", "Watched by many", 1.0, 1.0)
        .await;
    let mut received = 0;
    for client in &mut clients {
        let mut ids: Vec<String> = Vec::new();
        for _ in 0..100 {
            let message = client.next_message(SECOND * 5).await.unwrap();
            assert_eq!(
                message["payload"]["data"]["stationChanged"]["station"]["code"],
                "MANY"
            );
            ids.push(message["id"].as_str().unwrap().to_owned());
            received += 1;
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100);
    }
    assert_eq!(received, 1000);
    let text = metrics().await;
    assert!(text.contains("stations_live_sockets 10"), "{text}");
    assert!(
        text.contains("stations_live_events_delivered_total 1000"),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_while_the_others_keep_receiving() {
    let app = spawn_app_with(|settings| {
        settings.subscriptions.buffer_events = 8;
        settings.subscriptions.send_timeout_secs = 1;
        settings.server.socket_send_buffer_bytes = 8192;
    })
    .await;
    let mut fast = subscriber(&app, Value::Null).await;
    let slow = crate::live::SlowReader::subscribe(
        &app.address,
        "subscription { stationChanged { kind id station { id code name lat lng createdAt updatedAt } } }",
    )
    .await;

    // Many changes, each announced on its own: the slow reader falls behind.
    let mut codes = Vec::new();
    let padding = "x".repeat(180);
    for batch in 0..20 {
        let inputs: Vec<Value> = (0..40)
            .map(|n| {
                let code = format!("B{batch:02}N{n:02}");
                json!({ "code": code, "name": format!("{code} {padding}"), "lat": 1.0, "lng": 1.0 })
            })
            .collect();
        codes.extend(
            inputs
                .iter()
                .map(|input| input["code"].as_str().unwrap().to_owned()),
        );
        let body = app
            .graphql(
                "mutation($inputs: [CreateStationInput!]!) { createStations(inputs: $inputs) { id } }",
                json!({ "inputs": inputs }),
            )
            .await;
        assert_no_errors(&body);
        for _ in 0..40 {
            let event = fast.next_event("s", SECOND * 5).await;
            assert_eq!(event["data"]["stationChanged"]["kind"], "CREATED");
        }
    }
    let deadline = tokio::time::Instant::now() + SECOND * 10;
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        if text.contains("stations_live_subscribers_dropped_total{reason=\"slow\"} 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dropped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(slow);
    // The fast subscriber still receives.
    app.create_station("AFTER", "After", 1.0, 1.0).await;
    let event = fast.next_event("s", SECOND * 5).await;
    assert_eq!(event["data"]["stationChanged"]["station"]["code"], "AFTER");
}

#[tokio::test]
async fn stopping_the_server_closes_every_socket_with_1001() {
    let database = crate::helpers::TestDatabase::migrated().await;
    let mut settings = crate::helpers::test_settings();
    settings.database.url = secrecy::SecretString::from(database.url.clone());
    let application = stations_api::startup::Application::build(&settings)
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async move {
        let _ = stopped.await;
    }));
    let mut client = LiveClient::connect(&address, TRANSPORT_WS, json!({}))
        .await
        .unwrap();
    client.subscribe("s", STATION_CHANGED, json!({})).await;
    wait_until_subscribed(&[&address], 1).await;

    stop.send(()).unwrap();
    let closed = client.closed(SECOND * 5).await;
    assert_eq!(
        closed,
        Some((1001, "server shutting down".to_owned())),
        "going away"
    );
    tokio::time::timeout(SECOND * 5, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_bulk_import_is_announced_as_one_resync_not_row_by_row() {
    let app = spawn_app().await;
    app.create_station("BULK", "Imported into", 1.0, 1.0).await;
    wait_until_listening(&[&app.address]).await;
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .unwrap();
    client
        .subscribe(
            "o",
            "subscription { observationRecorded { kind observation { temperatureC } } }",
            json!({}),
        )
        .await;
    wait_until_subscribed(&[&app.address], 1).await;
    let (output, _, stderr) = crate::helpers::run(
        crate::helpers::stations_api(&[
            "import",
            "observations",
            "--demo",
            "--stations",
            "1",
            "--days",
            "60",
        ])
        .env("DATABASE_URL", &app.database.url),
    );
    assert!(output.status.success(), "{stderr}");
    let event = client.next_event("o", SECOND * 5).await;
    assert_eq!(
        event["data"]["observationRecorded"],
        json!({ "kind": "RESYNC", "observation": null })
    );
    assert!(client.is_quiet_for(SECOND / 2).await, "one event, not 1441");
}

/// A graphql-transport-ws client of `app` whose subscription "1" receives changes; its query.
async fn subscribed_as_1(app: &TestApp) -> (LiveClient, &'static str) {
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_init accepted");
    let query = "subscription { stationChanged { station { code } } }";
    client.subscribe("1", query, json!({})).await;
    wait_until_subscribed(&[&app.address], 1).await;
    (client, query)
}

#[tokio::test]
async fn a_subscribe_with_the_id_of_a_running_subscription_closes_with_4409() {
    let app = spawn_app().await;
    let (mut client, query) = subscribed_as_1(&app).await;
    // graphql-transport-ws: "Subscriber for <id> already exists", where async-graphql alone
    // would silently replace the running one.
    client.subscribe("1", query, json!({})).await;
    let Some((code, reason)) = client.closed(SECOND).await else {
        panic!("the socket was dropped without a close frame");
    };
    assert_eq!(code, 4409, "{reason}");
    assert_eq!(reason, "Subscriber for 1 already exists");
}

#[tokio::test]
async fn an_id_the_client_completed_may_be_taken_again_at_once() {
    let app = spawn_app().await;
    let (mut client, query) = subscribed_as_1(&app).await;
    // Completed and taken again before the protocol echoes the completion: the echo, which
    // comes after the new subscription started, must not free its id.
    client.send(json!({ "id": "1", "type": "complete" })).await;
    client.subscribe("1", query, json!({})).await;
    // Events the first subscription had on its way (a RESYNC as the listener settles) may
    // come before the echo.
    let echo = loop {
        let message = client
            .next_message(SECOND)
            .await
            .expect("the completion's echo");
        if message["type"] != "next" {
            break message;
        }
    };
    assert_eq!(echo, json!({ "type": "complete", "id": "1" }));
    wait_until_subscribed(&[&app.address], 1).await;
    app.create_station("R1", "taken again", 0.0, 0.0).await;
    let event = client.next_event("1", SECOND).await;
    assert_eq!(event["data"]["stationChanged"]["station"]["code"], "R1");
    client.subscribe("1", query, json!({})).await;
    let Some((code, reason)) = client.closed(SECOND).await else {
        panic!("the socket was dropped without a close frame");
    };
    assert_eq!(code, 4409, "{reason}");
}
