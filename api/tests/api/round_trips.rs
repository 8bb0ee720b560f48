//! How many SQL statements each GraphQL operation sends, counted by the server's own
//! `stations_db_statements_total`. A regression guard for speed that times nothing: an N+1,
//! a count nobody asked for, or an extra round trip per resolver changes these numbers.

use serde_json::json;

use crate::helpers::{TestApp, assert_no_errors, metric_value, spawn_app};

async fn statements_sent(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    metric_value(&text, "stations_db_statements_total")
}

/// How many statements the server sent to PostgreSQL while answering `query`.
async fn statements_for(app: &TestApp, query: &str) -> u64 {
    let before = statements_sent(app).await;
    let body = app.graphql(query, json!({})).await;
    assert_no_errors(&body);
    statements_sent(app).await - before
}

#[tokio::test]
async fn each_operation_costs_the_statements_it_needs_and_no_more() {
    let app = spawn_app().await;
    for index in 0..30 {
        app.create_station(
            &format!("RT{index:02}"),
            &format!("Station {index}"),
            46.0,
            7.0,
        )
        .await;
    }
    let id = app
        .graphql(
            "{ stations(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await["data"]["stations"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let cases = [
        (
            "a station by id",
            format!("{{ station(id: \"{id}\") {{ id code name lat lng elevationM createdAt }} }}"),
            1,
        ),
        (
            "a page without totalCount",
            "{ stations(first: 20) { edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }"
                .to_owned(),
            1,
        ),
        (
            "a page with totalCount",
            "{ stations(first: 20) { totalCount edges { node { id } } } }".to_owned(),
            2,
        ),
        (
            "a filtered page",
            "{ stations(first: 50, filter: { nameContains: \"station 1\" }) { edges { node { id } } } }"
                .to_owned(),
            1,
        ),
        (
            "stations near a point",
            "{ stationsNear(lat: 46.1, lng: 7.1, first: 10) { distanceKm station { id name } } }"
                .to_owned(),
            1,
        ),
        (
            "creating a station",
            "mutation { createStation(input: { code: \"RTNEW\", name: \"New\", lat: 1, lng: 2 }) { id createdAt } }"
                .to_owned(),
            1,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, query, expected) in cases {
        let sent = statements_for(&app, &query).await;
        if sent != expected {
            wrong.push(format!("{what}: {sent} statements, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The same page twice, deep in the list by cursor: keyset paging costs one statement at
    // any depth, like the first page.
    let deep_cursor = app
        .graphql(
            "{ stations(first: 25) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await["data"]["stations"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let deep = format!(
        "{{ stations(first: 5, after: \"{deep_cursor}\") {{ edges {{ node {{ id }} }} pageInfo {{ hasNextPage }} }} }}"
    );
    assert_eq!(statements_for(&app, &deep).await, 1, "a deep page");
}

/// Related rows cost one statement per level of the query, whatever the number of rows: the
/// batch loaders turn fifty `latestObservation` fields into one statement, not fifty.
#[tokio::test]
async fn related_rows_cost_one_statement_per_level_whatever_the_page_size() {
    let app = spawn_app().await;
    let mut inputs = Vec::new();
    for index in 0..60 {
        let station = app
            .create_station(&format!("NP{index:02}"), "Batched", 46.0, 7.0)
            .await;
        for hour in 0..4 {
            inputs.push(json!({
                "stationId": station["id"],
                "observedAt": format!("2026-05-01T{hour:02}:00:00Z"),
                "temperatureC": hour as f64,
            }));
        }
    }
    let body = app
        .graphql(
            "mutation($inputs: [ObservationInput!]!) { recordObservations(inputs: $inputs) { inserted } }",
            json!({ "inputs": inputs }),
        )
        .await;
    assert_no_errors(&body);

    for first in [5, 50] {
        let query = format!(
            "{{ stations(first: {first}) {{ edges {{ node {{ code
                latestObservation {{ observedAt temperatureC }}
                observations(first: 3) {{ edges {{ node {{ observedAt }} }} pageInfo {{ hasNextPage }} }}
            }} }} }} }}"
        );
        assert_eq!(
            statements_for(&app, &query).await,
            3,
            "a page of {first} stations with their latest observation and three more"
        );
    }
    assert_eq!(
        statements_for(
            &app,
            "{ observations(first: 100) { edges { node { temperatureC station { code name } } } } }"
        )
        .await,
        2,
        "a page of 100 observations with their stations"
    );
    assert_eq!(
        statements_for(
            &app,
            "{ stations(first: 50) { edges { node { observationSummary { count temperatureC { avg } } } } } }"
        )
        .await,
        2,
        "a page of 50 stations with a summary each"
    );
}
