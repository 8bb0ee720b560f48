use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_no_errors, error_code, error_field, error_message, spawn_app,
};

const CREATE: &str = "mutation($input: CreateStationInput!) {
    createStation(input: $input) { id code name lat lng elevationM createdAt updatedAt }
}";
const CREATE_MANY: &str = "mutation($inputs: [CreateStationInput!]!) {
    createStations(inputs: $inputs) { id code }
}";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateStationInput!) {
    updateStation(id: $id, input: $input) { id code name lat lng elevationM createdAt updatedAt }
}";
const DELETE: &str = "mutation($id: ID!) { deleteStation(id: $id) }";

fn station_input(code: &str) -> Value {
    json!({ "code": code, "name": format!("Station {code}"), "lat": 46.2, "lng": 6.1 })
}

async fn create(app: &TestApp, input: Value) -> Value {
    app.graphql(CREATE, json!({ "input": input })).await
}

#[tokio::test]
async fn creating_a_station_returns_it_with_its_timestamps() {
    let app = spawn_app().await;
    let mut input = station_input("GVA");
    input["elevationM"] = json!(375.5);
    let body = create(&app, input).await;
    assert_no_errors(&body);
    let station = &body["data"]["createStation"];
    assert_eq!(station["code"], "GVA");
    assert_eq!(station["elevationM"], 375.5);
    assert_eq!(station["createdAt"], station["updatedAt"]);
    assert_eq!(app.station_count().await, 1);
}

#[tokio::test]
async fn creating_a_station_with_latitude_91_is_rejected_and_writes_nothing() {
    let app = spawn_app().await;
    let mut input = station_input("X");
    input["lat"] = json!(91);
    let body = create(&app, input).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(error_field(&body), "input.lat");
    assert_eq!(
        error_message(&body),
        "input.lat must be between -90 and 90 degrees (got 91)"
    );
    assert_eq!(body["data"], Value::Null);
    assert_eq!(app.station_count().await, 0);
}

#[tokio::test]
async fn every_invalid_field_is_named_with_what_is_allowed() {
    let app = spawn_app().await;
    let cases = [
        ("lng", json!(-180.5), "between -180 and 180"),
        ("name", json!(""), "must not be empty"),
        ("name", json!("   "), "must not be empty"),
        ("name", json!("line\nbreak"), "control characters"),
        ("name", json!("x".repeat(201)), "at most 200 characters"),
        ("code", json!("has space"), "A-Z, a-z, 0-9"),
        ("code", json!(""), "1 to 32 characters"),
        ("elevationM", json!(10_000), "between -11000 and 9000"),
    ];
    for (field, value, allowed) in cases {
        let mut input = station_input("OK");
        input[field] = value.clone();
        let body = create(&app, input).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{field} = {value}");
        assert_eq!(error_field(&body), format!("input.{field}"));
        assert!(
            error_message(&body).contains(allowed),
            "{}",
            error_message(&body)
        );
    }
    assert_eq!(app.station_count().await, 0);
}

#[tokio::test]
async fn a_duplicate_code_is_a_conflict() {
    let app = spawn_app().await;
    assert_no_errors(&create(&app, station_input("DUP")).await);
    let body = create(&app, station_input("DUP")).await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert_eq!(error_field(&body), "input.code");
    assert_eq!(
        error_message(&body),
        "a station with code \"DUP\" already exists"
    );
    assert_eq!(app.station_count().await, 1);
}

#[tokio::test]
async fn an_update_changes_only_the_fields_given() {
    let app = spawn_app().await;
    let mut input = station_input("UPD");
    input["elevationM"] = json!(12.5);
    let created = create(&app, input).await["data"]["createStation"].clone();

    let body = app
        .graphql(
            UPDATE,
            json!({ "id": created["id"], "input": { "name": "Renamed" } }),
        )
        .await;
    assert_no_errors(&body);
    let updated = &body["data"]["updateStation"];
    assert_eq!(updated["name"], "Renamed");
    for unchanged in ["id", "code", "lat", "lng", "elevationM", "createdAt"] {
        assert_eq!(updated[unchanged], created[unchanged], "{unchanged}");
    }
    let before = chrono::DateTime::parse_from_rfc3339(created["updatedAt"].as_str().unwrap());
    let after = chrono::DateTime::parse_from_rfc3339(updated["updatedAt"].as_str().unwrap());
    assert!(
        after.unwrap() > before.unwrap(),
        "updatedAt moves forward on every update"
    );
}

#[tokio::test]
async fn elevation_is_cleared_with_null_but_other_fields_cannot_be() {
    let app = spawn_app().await;
    let mut input = station_input("ELV");
    input["elevationM"] = json!(100);
    let created = create(&app, input).await["data"]["createStation"].clone();

    let body = app
        .graphql(
            UPDATE,
            json!({ "id": created["id"], "input": { "elevationM": null } }),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["updateStation"]["elevationM"], Value::Null);

    let body = app
        .graphql(
            UPDATE,
            json!({ "id": created["id"], "input": { "name": null } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(error_field(&body), "input.name");

    let body = app
        .graphql(UPDATE, json!({ "id": created["id"], "input": {} }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(error_field(&body), "input");
}

#[tokio::test]
async fn updating_or_deleting_a_missing_station_is_not_found() {
    let app = spawn_app().await;
    let body = app
        .graphql(UPDATE, json!({ "id": "987654", "input": { "name": "x" } }))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    assert_eq!(error_message(&body), "no station has id 987654");

    let body = app.graphql(DELETE, json!({ "id": "987654" })).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
}

#[tokio::test]
async fn updating_to_a_taken_code_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    create(&app, station_input("ONE")).await;
    let two = create(&app, station_input("TWO")).await["data"]["createStation"].clone();
    let body = app
        .graphql(
            UPDATE,
            json!({ "id": two["id"], "input": { "code": "ONE", "name": "Changed" } }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert_eq!(error_field(&body), "input.code");

    let body = app
        .graphql(
            "query($id: ID!) { station(id: $id) { code name } }",
            json!({ "id": two["id"] }),
        )
        .await;
    assert_eq!(
        body["data"]["station"],
        json!({ "code": "TWO", "name": "Station TWO" })
    );
}

#[tokio::test]
async fn deleting_a_station_returns_its_id_and_removes_it() {
    let app = spawn_app().await;
    let created = create(&app, station_input("DEL")).await["data"]["createStation"].clone();
    let body = app.graphql(DELETE, json!({ "id": created["id"] })).await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["deleteStation"], created["id"]);

    let body = app
        .graphql(
            "query($id: ID!) { station(id: $id) { id } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(body["data"]["station"], Value::Null);
}

#[tokio::test]
async fn creating_stations_in_bulk_returns_them_in_the_order_given() {
    let app = spawn_app().await;
    let inputs: Vec<Value> = ["Z9", "A1", "M5"]
        .iter()
        .map(|code| station_input(code))
        .collect();
    let body = app.graphql(CREATE_MANY, json!({ "inputs": inputs })).await;
    assert_no_errors(&body);
    let codes: Vec<&str> = body["data"]["createStations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|station| station["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["Z9", "A1", "M5"]);
    assert_eq!(app.station_count().await, 3);
}

#[tokio::test]
async fn a_bulk_create_with_one_invalid_station_creates_none() {
    let app = spawn_app().await;
    let mut inputs: Vec<Value> = ["A", "B", "C"]
        .iter()
        .map(|code| station_input(code))
        .collect();
    inputs[1]["lat"] = json!(-95);
    let body = app.graphql(CREATE_MANY, json!({ "inputs": inputs })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(error_field(&body), "inputs[1].lat");
    assert_eq!(app.station_count().await, 0);
}

#[tokio::test]
async fn a_bulk_create_with_a_taken_code_creates_none_and_names_it() {
    let app = spawn_app().await;
    create(&app, station_input("TAKEN")).await;
    let inputs: Vec<Value> = ["NEW1", "NEW2", "TAKEN"]
        .iter()
        .map(|code| station_input(code))
        .collect();
    let body = app.graphql(CREATE_MANY, json!({ "inputs": inputs })).await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert_eq!(error_field(&body), "inputs[2].code");
    assert_eq!(app.station_count().await, 1);
}

#[tokio::test]
async fn a_bulk_create_repeating_a_code_creates_none() {
    let app = spawn_app().await;
    let inputs: Vec<Value> = ["A", "B", "A"]
        .iter()
        .map(|code| station_input(code))
        .collect();
    let body = app.graphql(CREATE_MANY, json!({ "inputs": inputs })).await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert_eq!(error_field(&body), "inputs[2].code");
    assert!(error_message(&body).contains("repeats inputs[0].code"));
    assert_eq!(app.station_count().await, 0);
}

#[tokio::test]
async fn a_bulk_create_over_the_batch_limit_is_refused() {
    let app = spawn_app().await;
    let inputs: Vec<Value> = (0..1001).map(|i| station_input(&format!("S{i}"))).collect();
    let body = app.graphql(CREATE_MANY, json!({ "inputs": inputs })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(error_field(&body), "inputs");
    assert_eq!(app.station_count().await, 0);
}

#[tokio::test]
async fn unicode_names_round_trip_byte_for_byte() {
    let app = spawn_app().await;
    let name = "Zürich 🚉 محطة ק e\u{301} 東京";
    let created = app.create_station("UNI", name, 0.0, 0.0).await;
    assert_eq!(created["name"], name);
}

#[tokio::test]
async fn a_database_failure_is_internal_and_reveals_no_sql() {
    let app = spawn_app().await;
    app.execute_sql("ALTER TABLE stations RENAME TO stations_moved")
        .await;
    let body = app.graphql("{ stations { totalCount } }", json!({})).await;
    assert_eq!(error_code(&body), "INTERNAL");
    let text = body.to_string();
    for secret in [
        "stations_moved",
        "relation",
        "SELECT",
        "postgres",
        "stations_test",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}
