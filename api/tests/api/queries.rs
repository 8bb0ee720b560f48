use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{assert_no_errors, error_code, error_field, error_message, spawn_app};

const STATIONS_MATCHING: &str = "query($filter: StationFilter) {
    stations(first: 100, filter: $filter) { totalCount edges { node { code } } }
}";

fn codes(body: &Value) -> Vec<String> {
    assert_no_errors(body);
    let mut codes: Vec<String> = body["data"]["stations"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["code"].as_str().expect("code").to_owned())
        .collect();
    codes.sort();
    codes
}

#[tokio::test]
async fn a_station_is_found_by_its_id_with_every_field() {
    let app = spawn_app().await;
    let created = app.create_station("ZRH", "Zürich HB", 47.378, 8.54).await;

    let body = app
        .graphql(
            "query($id: ID!) { station(id: $id) {
                id code name lat lng elevationM createdAt updatedAt } }",
            json!({ "id": created["id"] }),
        )
        .await;

    assert_no_errors(&body);
    assert_eq!(body["data"]["station"], created);
    assert_eq!(body["data"]["station"]["name"], "Zürich HB");
    assert_eq!(body["data"]["station"]["elevationM"], Value::Null);
}

#[tokio::test]
async fn an_unknown_station_id_gives_null() {
    let app = spawn_app().await;
    let body = app
        .graphql("{ station(id: \"424242\") { id } }", json!({}))
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["station"], Value::Null);
}

#[tokio::test]
async fn a_station_id_that_is_not_a_number_is_bad_user_input() {
    let app = spawn_app().await;
    for id in ["abc", "99999999999999999999", "1.5", ""] {
        let body = app
            .graphql(
                "query($id: ID!) { station(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{id}");
        assert_eq!(error_field(&body), "id");
    }
}

#[tokio::test]
async fn an_empty_table_gives_an_empty_page() {
    let app = spawn_app().await;
    let body = app
        .graphql(
            "{ stations { totalCount edges { cursor }
                pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["stations"],
        json!({
            "totalCount": 0,
            "edges": [],
            "pageInfo": {
                "hasNextPage": false, "hasPreviousPage": false,
                "startCursor": null, "endCursor": null
            }
        })
    );
}

#[tokio::test]
async fn name_contains_ignores_case_and_matches_wildcards_literally() {
    let app = spawn_app().await;
    app.create_station("A", "Gare du Nord", 48.88, 2.355).await;
    app.create_station("B", "NORDHAUSEN", 51.5, 10.79).await;
    app.create_station("C", "Sud 100% station", 43.3, 5.38)
        .await;
    app.create_station("D", "Sud 1000 station", 43.3, 5.39)
        .await;

    let nord = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "nameContains": "nord" } }),
        )
        .await;
    assert_eq!(codes(&nord), ["A", "B"]);

    let percent = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "nameContains": "100%" } }),
        )
        .await;
    assert_eq!(codes(&percent), ["C"]);

    let underscore = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "nameContains": "Sud_1" } }),
        )
        .await;
    assert_eq!(codes(&underscore), Vec::<String>::new());
}

#[tokio::test]
async fn name_contains_folds_case_beyond_ascii_and_follows_a_rename() {
    let app = spawn_app().await;
    let station = app.create_station("E", "ÉCOLE Zürich", 47.4, 8.5).await;
    app.create_station("F", "Ecole Nord", 47.5, 8.6).await;
    let search = |term: &'static str| {
        let app = &app;
        async move {
            codes(
                &app.graphql(
                    STATIONS_MATCHING,
                    json!({ "filter": { "nameContains": term } }),
                )
                .await,
            )
        }
    };
    assert_eq!(search("école zü").await, ["E"]);
    assert_eq!(search("ZÜRICH").await, ["E"]);
    assert_eq!(search("ecole").await, ["F"]);

    // The folded name is PostgreSQL's to keep: a rename is searchable at once.
    let renamed = app
        .graphql(
            "mutation($id: ID!) { updateStation(id: $id, input: { name: \"Ωmega Bahnhof\" }) { id } }",
            json!({ "id": station["id"] }),
        )
        .await;
    assert_no_errors(&renamed);
    assert_eq!(search("ωMEGA").await, ["E"]);
    assert_eq!(search("école").await, Vec::<String>::new());
}

#[tokio::test]
async fn name_contains_reads_the_trigram_index_and_matches_what_a_scan_matches() {
    let app = spawn_app().await;
    // Enough stations, with long names, that reading them all costs more than the index (at
    // 20,000 PostgreSQL still prefers to read them all).
    app.execute_sql(
        "INSERT INTO stations (code, name, lat, lng)
         SELECT 'T' || g, (ARRAY['Lisbon', 'Tokyo', 'Nairobi', 'Quito'])[g % 4 + 1] || ' '
                || md5(g::text) || ' ' || g % 1000, 0, 0
         FROM generate_series(1, 100000) g;
         ANALYZE stations",
    )
    .await;
    let plan: Vec<String> = app
        .db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            // The condition as the API writes it.
            "EXPLAIN SELECT id FROM stations WHERE name_lower LIKE lower($1) ORDER BY id LIMIT 51",
            ["%c4ca42%".into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    assert!(
        plan.iter()
            .any(|line| line.contains("stations_name_lower_trgm_idx")),
        "{plan:#?}"
    );

    // The same stations as a substring search over every name, for terms with trigrams, and
    // for terms too short to have any (PostgreSQL then reads the table).
    for term in ["c4ca42", "KYO 1", "a8", "q", "Lisbon 0"] {
        let expected: i64 = app
            .db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) FROM stations WHERE strpos(lower(name), lower($1)) > 0",
                [term.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        let body = app
            .graphql(
                STATIONS_MATCHING,
                json!({ "filter": { "nameContains": term } }),
            )
            .await;
        assert_no_errors(&body);
        assert_eq!(
            body["data"]["stations"]["totalCount"],
            json!(expected),
            "{term}"
        );
    }
}

#[tokio::test]
async fn the_code_filter_matches_exactly() {
    let app = spawn_app().await;
    app.create_station("KJFK", "New York JFK", 40.64, -73.78)
        .await;
    app.create_station("KJFK2", "Elsewhere", 40.0, -73.0).await;
    let body = app
        .graphql(STATIONS_MATCHING, json!({ "filter": { "code": "KJFK" } }))
        .await;
    assert_eq!(codes(&body), ["KJFK"]);
    assert_eq!(body["data"]["stations"]["totalCount"], 1);
}

#[tokio::test]
async fn a_bounding_box_includes_its_edges() {
    let app = spawn_app().await;
    app.create_station("IN", "inside", 10.0, 10.0).await;
    app.create_station("EDGE", "on the edge", 20.0, 20.0).await;
    app.create_station("OUT", "outside", 20.5, 10.0).await;
    let body = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "bbox": { "minLat": 0, "maxLat": 20, "minLng": 0, "maxLng": 20 } } }),
        )
        .await;
    assert_eq!(codes(&body), ["EDGE", "IN"]);
}

#[tokio::test]
async fn a_bounding_box_can_cross_the_antimeridian() {
    let app = spawn_app().await;
    app.create_station("FIJI", "Suva", -18.14, 178.44).await;
    app.create_station("SAMOA", "Apia", -13.83, -171.76).await;
    app.create_station("SYD", "Sydney", -33.87, 151.21).await;
    app.create_station("LIMA", "Lima", -12.05, -77.04).await;
    let body = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "bbox": { "minLat": -40, "maxLat": 0, "minLng": 170, "maxLng": -170 } } }),
        )
        .await;
    assert_eq!(codes(&body), ["FIJI", "SAMOA"]);
}

#[tokio::test]
async fn elevation_bounds_are_inclusive_and_skip_unknown_elevations() {
    let app = spawn_app().await;
    for (code, elevation) in [
        ("LOW", json!(-5.0)),
        ("MID", json!(100.0)),
        ("HIGH", json!(2000.0)),
        ("NONE", Value::Null),
    ] {
        let body = app
            .graphql(
                "mutation($input: CreateStationInput!) { createStation(input: $input) { id } }",
                json!({ "input": { "code": code, "name": code, "lat": 0, "lng": 0, "elevationM": elevation } }),
            )
            .await;
        assert_no_errors(&body);
    }
    let body = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "elevationM": { "gte": -5, "lte": 100 } } }),
        )
        .await;
    assert_eq!(codes(&body), ["LOW", "MID"]);
    let body = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": { "elevationM": { "gte": 50 } } }),
        )
        .await;
    assert_eq!(codes(&body), ["HIGH", "MID"]);
}

#[tokio::test]
async fn filters_combine_and_total_count_follows_the_filter() {
    let app = spawn_app().await;
    app.create_station("N1", "North One", 60.0, 10.0).await;
    app.create_station("N2", "North Two", 10.0, 10.0).await;
    app.create_station("S1", "South One", 60.0, 10.0).await;
    let body = app
        .graphql(
            STATIONS_MATCHING,
            json!({ "filter": {
                "nameContains": "north",
                "bbox": { "minLat": 50, "maxLat": 70, "minLng": 0, "maxLng": 20 }
            } }),
        )
        .await;
    assert_eq!(codes(&body), ["N1"]);
    assert_eq!(body["data"]["stations"]["totalCount"], 1);
}

#[tokio::test]
async fn invalid_filters_name_the_field_and_the_allowed_values() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "bbox": { "minLat": 30, "maxLat": 10, "minLng": 0, "maxLng": 1 } }),
            "filter.bbox.minLat",
            "must not exceed maxLat",
        ),
        (
            json!({ "bbox": { "minLat": -91, "maxLat": 10, "minLng": 0, "maxLng": 1 } }),
            "filter.bbox.minLat",
            "between -90 and 90",
        ),
        (
            json!({ "bbox": { "minLat": 0, "maxLat": 10, "minLng": 0, "maxLng": 181 } }),
            "filter.bbox.maxLng",
            "between -180 and 180",
        ),
        (
            json!({ "elevationM": { "gte": 10, "lte": 5 } }),
            "filter.elevationM.gte",
            "must not exceed lte",
        ),
    ];
    for (filter, field, allowed) in cases {
        let body = app
            .graphql(STATIONS_MATCHING, json!({ "filter": filter }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{filter}");
        assert_eq!(error_field(&body), field);
        assert!(
            error_message(&body).contains(allowed),
            "{}",
            error_message(&body)
        );
    }
}

#[tokio::test]
async fn first_must_be_between_0_and_100() {
    let app = spawn_app().await;
    for first in [101, -1] {
        let body = app
            .graphql(
                "query($first: Int) { stations(first: $first) { totalCount } }",
                json!({ "first": first }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT");
        assert_eq!(error_field(&body), "first");
        assert!(error_message(&body).contains("between 0 and 100"), "{body}");
    }
    let body = app
        .graphql(
            "{ stations(first: 0) { edges { cursor } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
}
