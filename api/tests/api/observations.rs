//! Observations: recording them (idempotent, all or nothing), reading them per station and
//! across stations, their summary, and what they change about deleting a station.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, ModelTrait};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_no_errors, error_code, error_field, error_message, spawn_app,
};

const RECORD: &str = "mutation($inputs: [ObservationInput!]!) {
    recordObservations(inputs: $inputs) { inserted duplicates } }";

/// 2026-06-01T00:00:00Z plus `hours`.
fn hour(hours: i64) -> String {
    (Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + Duration::hours(hours))
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn reading(station: &Value, at: &str, temperature: f64) -> Value {
    json!({ "stationId": station["id"], "observedAt": at, "temperatureC": temperature })
}

async fn record(app: &TestApp, inputs: Value) -> Value {
    app.graphql(RECORD, json!({ "inputs": inputs })).await
}

async fn observation_count(app: &TestApp) -> i64 {
    let rows = app.db.query_one_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT count(*) AS count FROM observations",
    ));
    rows.await.unwrap().unwrap().try_get("", "count").unwrap()
}

#[tokio::test]
async fn recording_is_idempotent_and_the_payload_counts_what_was_new() {
    let app = spawn_app().await;
    let station = app.create_station("OBS1", "Observer", 47.0, 8.0).await;
    let inputs = json!([
        reading(&station, &hour(0), 12.5),
        reading(&station, &hour(1), 13.0),
        // The same station and instant twice in one call: stored once.
        reading(&station, &hour(1), 13.5),
    ]);
    let body = record(&app, inputs.clone()).await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["recordObservations"],
        json!({ "inserted": 2, "duplicates": 1 })
    );
    let again = record(&app, inputs).await;
    assert_eq!(
        again["data"]["recordObservations"],
        json!({ "inserted": 0, "duplicates": 3 })
    );
    assert_eq!(observation_count(&app).await, 2);
}

#[tokio::test]
async fn one_bad_observation_refuses_the_call_naming_its_index_and_field() {
    let app = spawn_app().await;
    let station = app.create_station("OBS2", "Strict", 47.0, 8.0).await;
    let good = reading(&station, &hour(0), 10.0);
    let future = (Utc::now() + Duration::hours(3)).to_rfc3339();
    let cases = [
        (
            json!({ "stationId": station["id"], "observedAt": hour(1), "temperatureC": 75.0 }),
            "inputs[1].temperatureC",
            "between -90 and 60",
        ),
        (
            json!({ "stationId": station["id"], "observedAt": hour(1), "pressureHpa": 12 }),
            "inputs[1].pressureHpa",
            "between 300 and 1100",
        ),
        (
            json!({ "stationId": station["id"], "observedAt": hour(1), "humidityPct": 101 }),
            "inputs[1].humidityPct",
            "between 0 and 100",
        ),
        (
            json!({ "stationId": station["id"], "observedAt": future, "temperatureC": 1 }),
            "inputs[1].observedAt",
            "must not be in the future",
        ),
        (
            json!({ "stationId": station["id"], "observedAt": hour(1) }),
            "inputs[1]",
            "at least one of",
        ),
        (
            json!({ "stationId": "999999", "observedAt": hour(1), "temperatureC": 1 }),
            "inputs[1].stationId",
            "no station has id 999999",
        ),
        (
            json!({ "stationId": "x", "observedAt": hour(1), "temperatureC": 1 }),
            "inputs[1].stationId",
            "must be a station id",
        ),
    ];
    for (bad, field, message) in cases {
        let body = record(&app, json!([good, bad])).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(error_field(&body), field, "{body}");
        assert!(error_message(&body).contains(message), "{body}");
    }
    assert_eq!(observation_count(&app).await, 0, "nothing was stored");

    let too_many: Vec<Value> = (0..1001)
        .map(|n| reading(&station, &hour(n), 1.0))
        .collect();
    let body = record(&app, json!(too_many)).await;
    assert_eq!(error_field(&body), "inputs");
    assert!(error_message(&body).contains("at most 1000"), "{body}");
}

/// `count` hourly readings for `station` from hour 0 on, temperature = hour.
async fn hourly(app: &TestApp, station: &Value, count: i64) {
    let inputs: Vec<Value> = (0..count)
        .map(|n| reading(station, &hour(n), n as f64 % 50.0))
        .collect();
    for chunk in inputs.chunks(1000) {
        assert_no_errors(&record(app, json!(chunk)).await);
    }
}

const PAGE: &str = "query($id: ID!, $first: Int, $after: String, $order: ObservationOrder,
                           $since: DateTime, $until: DateTime) {
    station(id: $id) {
        observations(first: $first, after: $after, order: $order, since: $since, until: $until) {
            edges { cursor node { id observedAt temperatureC } }
            pageInfo { hasNextPage hasPreviousPage endCursor }
        }
    }
}";

async fn page(app: &TestApp, variables: Value) -> Value {
    let body = app.graphql(PAGE, variables).await;
    assert_no_errors(&body);
    body["data"]["station"]["observations"].clone()
}

fn times(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["observedAt"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_station_pages_through_its_observations_newest_first_or_oldest_first() {
    let app = spawn_app().await;
    let station = app.create_station("OBS3", "Pager", 47.0, 8.0).await;
    hourly(&app, &station, 10).await;
    let id = &station["id"];

    let first = page(&app, json!({ "id": id, "first": 4 })).await;
    let first_times = times(&first);
    let expected: Vec<String> = (6..10).rev().map(hour).collect();
    assert_eq!(
        first_times
            .iter()
            .map(|at| DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|at| DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc))
            .collect::<Vec<_>>()
    );
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);

    let mut seen = first_times;
    let mut after = first["pageInfo"]["endCursor"].clone();
    loop {
        let next = page(&app, json!({ "id": id, "first": 4, "after": after })).await;
        assert_eq!(next["pageInfo"]["hasPreviousPage"], true);
        seen.extend(times(&next));
        if next["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = next["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");

    let oldest = page(
        &app,
        json!({ "id": id, "first": 3, "order": "OLDEST_FIRST", "since": hour(2), "until": hour(5) }),
    )
    .await;
    assert_eq!(
        oldest["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"]["temperatureC"].as_f64().unwrap())
            .collect::<Vec<_>>(),
        [2.0, 3.0, 4.0],
        "since inclusive, until exclusive"
    );
    assert_eq!(oldest["pageInfo"]["hasNextPage"], false);

    // A cursor belongs to its order, and the range must make sense.
    let body = app
        .graphql(
            PAGE,
            json!({ "id": id, "after": after, "order": "OLDEST_FIRST" }),
        )
        .await;
    assert_eq!(error_field(&body), "after");
    let body = app
        .graphql(
            PAGE,
            json!({ "id": id, "since": hour(5), "until": hour(5) }),
        )
        .await;
    assert_eq!(error_field(&body), "since");
    let body = app.graphql(PAGE, json!({ "id": id, "first": 101 })).await;
    assert_eq!(error_field(&body), "first");
}

#[tokio::test]
async fn keyset_pages_neither_skip_nor_repeat_while_observations_arrive() {
    let app = spawn_app().await;
    let station = app.create_station("OBS4", "Busy", 47.0, 8.0).await;
    hourly(&app, &station, 30).await;
    let id = station["id"].clone();

    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut arriving = 1000;
    loop {
        let next = page(&app, json!({ "id": id, "first": 7, "after": after })).await;
        seen.extend(times(&next));
        // Newer readings arrive between pages, and a late one for an instant already passed.
        arriving += 1;
        assert_no_errors(
            &record(
                &app,
                json!([
                    reading(&station, &hour(arriving), 1.0),
                    reading(&station, &hour(-arriving), 1.0)
                ]),
            )
            .await,
        );
        if next["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = next["pageInfo"]["endCursor"].clone();
    }
    let original: Vec<String> = seen
        .iter()
        .filter(|at| {
            let at = DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc);
            at >= Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
                && at < Utc.with_ymd_and_hms(2026, 6, 2, 6, 0, 0).unwrap()
        })
        .cloned()
        .collect();
    assert_eq!(
        original.len(),
        30,
        "every reading present at the start, once"
    );
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "nothing repeated");
}

#[tokio::test]
async fn latest_observation_and_summary_come_from_the_database() {
    let app = spawn_app().await;
    let station = app.create_station("OBS5", "Summed", 47.0, 8.0).await;
    let quiet = app.create_station("OBS6", "Quiet", 46.0, 7.0).await;
    assert_no_errors(
        &record(
            &app,
            json!([
                { "stationId": station["id"], "observedAt": hour(0), "temperatureC": 10.0, "precipitationMm": 1.5 },
                { "stationId": station["id"], "observedAt": hour(1), "temperatureC": 14.0, "pressureHpa": 1010.0 },
                { "stationId": station["id"], "observedAt": hour(2), "temperatureC": 12.0, "precipitationMm": 0.5 },
            ]),
        )
        .await,
    );
    let body = app
        .graphql(
            "query($since: DateTime) { stations(first: 10) { edges { node { code
                latestObservation { observedAt temperatureC station { code } }
                all: observationSummary { count temperatureC { count min max avg }
                     pressureHpa { count min } precipitationMm { count max } precipitationTotalMm }
                later: observationSummary(since: $since) { count temperatureC { avg } }
            } } } }",
            json!({ "since": hour(1) }),
        )
        .await;
    assert_no_errors(&body);
    let nodes = &body["data"]["stations"]["edges"];
    let summed = &nodes[0]["node"];
    assert_eq!(summed["latestObservation"]["temperatureC"], 12.0);
    assert_eq!(summed["latestObservation"]["station"]["code"], "OBS5");
    assert_eq!(
        summed["all"],
        json!({
            "count": 3,
            "temperatureC": { "count": 3, "min": 10.0, "max": 14.0, "avg": 12.0 },
            "pressureHpa": { "count": 1, "min": 1010.0 },
            "precipitationMm": { "count": 2, "max": 1.5 },
            "precipitationTotalMm": 2.0
        })
    );
    assert_eq!(
        summed["later"],
        json!({ "count": 2, "temperatureC": { "avg": 13.0 } })
    );
    let quiet_node = &nodes[1]["node"];
    assert_eq!(quiet_node["code"], quiet["code"]);
    assert_eq!(quiet_node["latestObservation"], Value::Null);
    assert_eq!(quiet_node["all"]["count"], 0);
    assert_eq!(quiet_node["all"]["temperatureC"]["min"], Value::Null);
}

#[tokio::test]
async fn the_root_list_filters_by_station_time_and_box() {
    let app = spawn_app().await;
    let zurich = app.create_station("ZRH", "Zürich", 47.37, 8.54).await;
    let sydney = app.create_station("SYD", "Sydney", -33.87, 151.21).await;
    let suva = app.create_station("SUV", "Suva", -18.14, 178.44).await;
    for (station, temperature) in [(&zurich, 11.0), (&sydney, 22.0), (&suva, 27.0)] {
        assert_no_errors(
            &record(
                &app,
                json!([
                    reading(station, &hour(0), temperature),
                    reading(station, &hour(5), temperature + 1.0)
                ]),
            )
            .await,
        );
    }
    let list = |filter: Value| {
        let app = &app;
        async move {
            let body = app
                .graphql(
                    "query($filter: ObservationFilter) {
                        observations(filter: $filter, first: 50) {
                            edges { node { temperatureC station { code } } } } }",
                    json!({ "filter": filter }),
                )
                .await;
            assert_no_errors(&body);
            body["data"]["observations"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|edge| {
                    format!(
                        "{}:{}",
                        edge["node"]["station"]["code"].as_str().unwrap(),
                        edge["node"]["temperatureC"]
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(json!(null)).await.len(), 6);
    assert_eq!(
        list(json!({ "stationIds": [sydney["id"]] })).await,
        ["SYD:23.0", "SYD:22.0"]
    );
    assert_eq!(
        list(json!({ "since": hour(1) })).await.len(),
        3,
        "the three later readings"
    );
    // Across the antimeridian: Suva only.
    assert_eq!(
        list(json!({ "bbox": { "minLat": -40, "maxLat": 0, "minLng": 170, "maxLng": -170 }, "until": hour(1) }))
            .await,
        ["SUV:27.0"]
    );
    let body = app
        .graphql(
            "{ observations(filter: { stationIds: [\"1\", \"no\"] }) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_field(&body), "filter.stationIds[1]");
}

#[tokio::test]
async fn a_station_with_observations_is_deleted_only_with_cascade() {
    let app = spawn_app().await;
    let station = app.create_station("OBS7", "Doomed", 47.0, 8.0).await;
    let keeper = app.create_station("OBS8", "Kept", 47.0, 8.0).await;
    hourly(&app, &station, 3).await;
    hourly(&app, &keeper, 2).await;
    let delete =
        "mutation($id: ID!, $cascade: Boolean!) { deleteStation(id: $id, cascade: $cascade) }";

    let body = app
        .graphql(delete, json!({ "id": station["id"], "cascade": false }))
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert!(
        error_message(&body).contains("has 3 observation(s)"),
        "{body}"
    );
    assert!(error_message(&body).contains("cascade: true"), "{body}");
    assert_eq!(app.station_count().await, 2);
    assert_eq!(observation_count(&app).await, 5);

    let body = app
        .graphql(delete, json!({ "id": station["id"], "cascade": true }))
        .await;
    assert_no_errors(&body);
    assert_eq!(app.station_count().await, 1);
    assert_eq!(
        observation_count(&app).await,
        2,
        "the other station's remain"
    );

    // Without observations, no cascade is needed.
    let empty = app.create_station("OBS9", "Empty", 1.0, 1.0).await;
    let body = app
        .graphql(delete, json!({ "id": empty["id"], "cascade": false }))
        .await;
    assert_no_errors(&body);
}

#[tokio::test]
async fn the_entities_relate_both_ways() {
    let app = spawn_app().await;
    let station = app.create_station("REL1", "Related", 47.0, 8.0).await;
    hourly(&app, &station, 2).await;
    let id: i32 = station["id"].as_str().unwrap().parse().unwrap();
    let row = entity::station::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let observations = row
        .find_related(entity::observation::Entity)
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(observations.len(), 2);
    let back = observations[0]
        .find_related(entity::station::Entity)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.code, "REL1");
}
