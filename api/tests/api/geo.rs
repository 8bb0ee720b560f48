//! Geographic queries compared with a brute-force haversine over the same stations: a few
//! thousand spread over the globe, crowded at the poles and along the antimeridian, with
//! stations sharing a position so that ties show.

use std::collections::BTreeSet;

use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
use serde_json::{Value, json};
use stations_api::domain::{Latitude, Longitude, RadiusKm};
use stations_api::service::station::nearest_statement;

use crate::helpers::{TestApp, assert_no_errors, error_code, error_field, spawn_app};

/// The sphere the API documents: the mean Earth radius.
const EARTH_RADIUS_KM: f64 = 6371.0088;
/// Distances from the API and from this test's haversine agree to well within this.
const TOLERANCE_KM: f64 = 1e-6;

#[derive(Debug, Clone, Copy)]
struct Place {
    id: i64,
    lat: f64,
    lng: f64,
}

fn haversine_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lng2 - lng1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// splitmix64: a small deterministic generator, so every run tests the same stations.
struct Random(u64);

impl Random {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next()
    }
}

fn positions() -> Vec<(f64, f64)> {
    let mut random = Random(20261125);
    let mut positions = Vec::new();
    // Uniform over the sphere.
    for _ in 0..2500 {
        let lat = (2.0 * random.next() - 1.0).asin().to_degrees();
        positions.push((lat, random.between(-180.0, 180.0)));
    }
    // Crowds near both poles and on both sides of the antimeridian.
    for _ in 0..200 {
        positions.push((random.between(88.0, 90.0), random.between(-180.0, 180.0)));
        positions.push((random.between(-90.0, -88.0), random.between(-180.0, 180.0)));
        positions.push((random.between(-30.0, 30.0), random.between(179.0, 180.0)));
        positions.push((random.between(-30.0, 30.0), random.between(-180.0, -179.0)));
    }
    // Ties: several stations at one position, and the antimeridian written both ways.
    for _ in 0..4 {
        positions.push((45.0, 7.0));
    }
    positions.push((0.0, 180.0));
    positions.push((0.0, -180.0));
    positions.push((90.0, 0.0));
    positions
}

/// Inserts the positions with plain SQL (the API's own writes are tested elsewhere) and returns
/// them with their ids.
async fn seed(app: &TestApp) -> Vec<Place> {
    let positions = positions();
    for (chunk_index, chunk) in positions.chunks(1000).enumerate() {
        let values: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, (lat, lng))| {
                let n = chunk_index * 1000 + i;
                format!("('G{n}', 'Station {n}', {lat:?}, {lng:?})")
            })
            .collect();
        app.execute_sql(&format!(
            "INSERT INTO stations (code, name, lat, lng) VALUES {}",
            values.join(", ")
        ))
        .await;
    }
    app.execute_sql("ANALYZE stations").await;
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            "SELECT id::bigint AS id, lat, lng FROM stations ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| Place {
            id: row.try_get("", "id").unwrap(),
            lat: row.try_get("", "lat").unwrap(),
            lng: row.try_get("", "lng").unwrap(),
        })
        .collect()
}

/// Brute force: every station with its distance, nearest first, ties by id.
fn by_distance(places: &[Place], lat: f64, lng: f64) -> Vec<(i64, f64)> {
    let mut all: Vec<(i64, f64)> = places
        .iter()
        .map(|place| (place.id, haversine_km(lat, lng, place.lat, place.lng)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all
}

const NEAR: &str = "query($lat: Float!, $lng: Float!, $radiusKm: Float, $first: Int) {
    stationsNear(lat: $lat, lng: $lng, radiusKm: $radiusKm, first: $first) {
        distanceKm station { id lat lng }
    }
}";

async fn near(
    app: &TestApp,
    lat: f64,
    lng: f64,
    radius: Option<f64>,
    first: i64,
) -> Vec<(i64, f64)> {
    let body = app
        .graphql(
            NEAR,
            json!({ "lat": lat, "lng": lng, "radiusKm": radius, "first": first }),
        )
        .await;
    assert_no_errors(&body);
    body["data"]["stationsNear"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| {
            let id = result["station"]["id"].as_str().unwrap().parse().unwrap();
            (id, result["distanceKm"].as_f64().unwrap())
        })
        .collect()
}

/// The API's answer must be brute force's answer: the same distances in the same order, and
/// the same stations, except that stations at equal distances (to within rounding) may trade
/// places only where brute force could not tell them apart.
fn assert_same_nearest(served: &[(i64, f64)], expected: &[(i64, f64)], context: &str) {
    assert_eq!(served.len(), expected.len(), "{context}: how many");
    for (index, ((id, distance), (expected_id, expected_distance))) in
        served.iter().zip(expected).enumerate()
    {
        assert!(
            (distance - expected_distance).abs() <= TOLERANCE_KM,
            "{context}: result {index} is {distance} km away, brute force says {expected_distance}"
        );
        if id != expected_id {
            let tied = expected
                .iter()
                .any(|(other, d)| other == id && (d - expected_distance).abs() <= TOLERANCE_KM);
            assert!(
                tied,
                "{context}: result {index} is station {id}, brute force says {expected_id}"
            );
        }
    }
}

fn query_points() -> Vec<(f64, f64)> {
    let mut random = Random(7);
    let mut points = vec![
        (0.0, 179.9),
        (0.0, -179.95),
        (-10.0, 180.0),
        (12.0, -180.0),
        (89.99, 0.0),
        (89.9, 179.0),
        (-89.95, 45.0),
        (-90.0, 0.0),
        (90.0, 123.0),
        (45.0, 7.0),
        (0.0, 0.0),
    ];
    for _ in 0..15 {
        points.push((
            (2.0 * random.next() - 1.0).asin().to_degrees(),
            random.between(-180.0, 180.0),
        ));
    }
    points
}

#[tokio::test]
async fn the_nearest_stations_match_a_brute_force_haversine_everywhere() {
    let app = spawn_app().await;
    let places = seed(&app).await;
    for (lat, lng) in query_points() {
        let expected = by_distance(&places, lat, lng);
        let served = near(&app, lat, lng, None, 10).await;
        assert_same_nearest(&served, &expected[..10], &format!("near ({lat}, {lng})"));

        for radius in [0.0, 1.0, 150.0, 2500.0] {
            let within: Vec<(i64, f64)> = expected
                .iter()
                .copied()
                .filter(|(_, distance)| *distance <= radius + TOLERANCE_KM)
                .take(25)
                .collect();
            let served = near(&app, lat, lng, Some(radius), 25).await;
            // A station a hair beyond the radius may count as inside or outside.
            let strict: Vec<(i64, f64)> = within
                .iter()
                .copied()
                .filter(|(_, d)| *d <= radius - TOLERANCE_KM)
                .collect();
            assert!(
                served.len() >= strict.len() && served.len() <= within.len(),
                "({lat}, {lng}) within {radius} km: {} served, brute force {}..{}",
                served.len(),
                strict.len(),
                within.len()
            );
            assert_same_nearest(
                &served,
                &within[..served.len()],
                &format!("({lat}, {lng}) within {radius} km"),
            );
        }
    }
}

#[tokio::test]
async fn near_the_antimeridian_the_other_side_comes_first() {
    let app = spawn_app().await;
    app.create_station("EAST", "East of the antimeridian", 0.0, -179.9)
        .await;
    app.create_station("WEST", "Far west", 0.0, 170.0).await;
    let served = near(&app, 0.0, 179.9, None, 2).await;
    let first = app
        .graphql(NEAR, json!({ "lat": 0.0, "lng": 179.9, "first": 1 }))
        .await;
    assert_eq!(first["data"]["stationsNear"][0]["station"]["lng"], -179.9);
    assert!((served[0].1 - haversine_km(0.0, 179.9, 0.0, -179.9)).abs() < TOLERANCE_KM);
    assert!(
        served[0].1 < 25.0,
        "0.2 degrees at the equator: {}",
        served[0].1
    );
}

#[tokio::test]
async fn radius_zero_finds_only_the_exact_position_and_a_huge_radius_finds_everything() {
    let app = spawn_app().await;
    let places = seed(&app).await;
    let served = near(&app, 45.0, 7.0, Some(0.0), 100).await;
    assert_eq!(served.len(), 4, "the four stations at (45, 7)");
    let ids: Vec<i64> = served.iter().map(|(id, _)| *id).collect();
    assert!(ids.is_sorted(), "ties by id: {ids:?}");
    assert!(served.iter().all(|(_, distance)| *distance == 0.0));

    // More than half the circumference: the whole Earth.
    let body = app
        .graphql(
            "{ stations(first: 1, filter: { within: { lat: 10, lng: 20, radiusKm: 25000 } }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["stations"]["totalCount"], places.len());
    let farthest = near(&app, 10.0, 20.0, Some(25_000.0), 100).await;
    assert_eq!(farthest.len(), 100);
}

/// Follows every page of `stations(filter)` and returns the ids served.
async fn all_pages(app: &TestApp, filter: Value) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let body = app
            .graphql(
                "query($filter: StationFilter, $after: String) {
                    stations(first: 100, after: $after, filter: $filter) {
                        edges { node { id } } pageInfo { hasNextPage endCursor }
                    }
                }",
                json!({ "filter": filter, "after": after }),
            )
            .await;
        assert_no_errors(&body);
        let page = &body["data"]["stations"];
        for edge in page["edges"].as_array().unwrap() {
            assert!(
                ids.insert(edge["node"]["id"].as_str().unwrap().parse().unwrap()),
                "served twice"
            );
        }
        if page["pageInfo"]["hasNextPage"] == false {
            return ids;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

#[tokio::test]
async fn within_and_bbox_filters_match_brute_force_and_compose_with_pagination() {
    let app = spawn_app().await;
    let places = seed(&app).await;

    for (lat, lng, radius) in [
        (0.0, 180.0, 800.0),
        (89.5, -30.0, 300.0),
        (-45.0, 60.0, 3000.0),
        (30.0, -100.0, 0.5),
    ] {
        let served = all_pages(
            &app,
            json!({ "within": { "lat": lat, "lng": lng, "radiusKm": radius } }),
        )
        .await;
        for place in &places {
            let distance = haversine_km(lat, lng, place.lat, place.lng);
            if (distance - radius).abs() > TOLERANCE_KM {
                assert_eq!(
                    served.contains(&place.id),
                    distance < radius,
                    "station {} at {distance} km from ({lat}, {lng}), radius {radius}",
                    place.id
                );
            }
        }
    }

    for (south, north, west, east) in [
        (-10.0, 10.0, 170.0, -170.0),
        (85.0, 90.0, -180.0, 180.0),
        (-5.0, 40.0, -20.0, 60.0),
    ] {
        let served = all_pages(
            &app,
            json!({ "bbox": { "minLat": south, "maxLat": north, "minLng": west, "maxLng": east } }),
        )
        .await;
        let expected: BTreeSet<i64> = places
            .iter()
            .filter(|p| p.lat >= south && p.lat <= north)
            .filter(|p| {
                if west <= east {
                    p.lng >= west && p.lng <= east
                } else {
                    p.lng >= west || p.lng <= east
                }
            })
            .map(|p| p.id)
            .collect();
        assert_eq!(served, expected, "bbox {south}..{north}, {west}..{east}");
    }

    // within composes with the other filters: G3300 is one of the four stations at (45, 7).
    let served = all_pages(
        &app,
        json!({ "within": { "lat": 45.0, "lng": 7.0, "radiusKm": 1.0 }, "code": "G3300" }),
    )
    .await;
    assert_eq!(served.len(), 1);
}

#[tokio::test]
async fn out_of_range_geo_arguments_are_bad_user_input_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({ "lat": 91, "lng": 0 }), "lat"),
        (json!({ "lat": 0, "lng": -180.5 }), "lng"),
        (json!({ "lat": 0, "lng": 0, "radiusKm": -1 }), "radiusKm"),
        (json!({ "lat": 0, "lng": 0, "first": 101 }), "first"),
    ];
    for (variables, field) in cases {
        let body = app.graphql(NEAR, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}");
        assert_eq!(error_field(&body), field);
    }
    let body = app
        .graphql(
            "{ stations(filter: { within: { lat: 0, lng: 0, radiusKm: -5 } }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(error_field(&body), "filter.within.radiusKm");
}

#[tokio::test]
async fn the_nearest_query_can_be_answered_by_the_point_index() {
    let app = spawn_app().await;
    seed(&app).await;
    let statement = nearest_statement(
        DbBackend::Postgres,
        Latitude::parse(46.2).unwrap(),
        Longitude::parse(6.1).unwrap(),
        Some(RadiusKm::parse(50.0).unwrap()),
        10,
    );
    // A few thousand rows fit in a page or two, where scanning beats any index; forbid the
    // scan to see that the query's shape lets the index answer it. The benchmark shows the
    // planner choosing the index by itself on a million stations.
    let transaction = app.db.begin().await.unwrap();
    transaction
        .execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let explain = sea_orm::Statement {
        sql: format!("EXPLAIN {}", statement.sql),
        ..statement
    };
    let plan: Vec<String> = transaction
        .query_all_raw(explain)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("stations_point_idx"), "{plan}");
}
