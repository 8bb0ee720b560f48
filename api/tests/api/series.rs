//! `observationSeries` and the hourly rollup behind it: calendar edge cases (daylight-saving
//! days, ISO weeks, months, partial buckets), empty buckets, late, duplicate and deleted data,
//! the limits, `stations-api rollups`, and generated series compared bucket by bucket with
//! PostgreSQL's own `GROUP BY date_trunc(unit, observed_at, zone)` over the raw rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use stations_api::service::rollup;

use crate::helpers::{
    TestApp, assert_no_errors, error_code, error_field, error_message, run, spawn_app,
    spawn_app_with, stations_api,
};

const RECORD: &str = "mutation($inputs: [ObservationInput!]!) {
    recordObservations(inputs: $inputs) { inserted duplicates } }";

const SERIES: &str = "query($stations: StationSelection!, $since: DateTime!, $until: DateTime!,
                            $bucket: SeriesBucket!, $zone: String, $empty: EmptyBuckets,
                            $combine: Boolean) {
    observationSeries(stations: $stations, since: $since, until: $until, bucket: $bucket,
                      timeZone: $zone, emptyBuckets: $empty, combine: $combine) {
        bucket timeZone bucketStarts
        series {
            station { code }
            bucketStarts count
            temperatureC { count min max avg }
            pressureHpa { count min max avg }
            humidityPct { count min max avg }
            precipitationMm { count min max avg }
            precipitationTotalMm
        }
    }
}";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .with_timezone(&Utc)
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn record(app: &TestApp, inputs: &[Value]) {
    for chunk in inputs.chunks(1000) {
        let body = app.graphql(RECORD, json!({ "inputs": chunk })).await;
        assert_no_errors(&body);
    }
}

/// A reading of `station` every hour from `from` (inclusive) to `to` (exclusive), with the
/// temperature 1 and 1 mm of rain each.
fn hourly(station: &Value, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Value> {
    let mut readings = Vec::new();
    let mut at = from;
    while at < to {
        readings.push(json!({
            "stationId": station["id"], "observedAt": text(at),
            "temperatureC": 1.0, "precipitationMm": 1.0,
        }));
        at += Duration::hours(1);
    }
    readings
}

async fn series(app: &TestApp, variables: Value) -> Value {
    let body = app.graphql(SERIES, variables).await;
    assert_no_errors(&body);
    body["data"]["observationSeries"].clone()
}

fn starts(list: &Value) -> Vec<DateTime<Utc>> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|at| utc(at.as_str().unwrap()))
        .collect()
}

fn counts(series: &Value) -> Vec<i64> {
    series["count"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn days_follow_the_zone_through_daylight_saving_changes() {
    let app = spawn_app().await;
    let station = app.create_station("SER1", "Paris", 48.85, 2.35).await;
    // Europe/Paris: clocks go forward on 2026-03-29 and back on 2026-10-25.
    record(
        &app,
        &hourly(
            &station,
            utc("2026-03-27T23:00:00Z"),
            utc("2026-03-31T22:00:00Z"),
        ),
    )
    .await;
    record(
        &app,
        &hourly(
            &station,
            utc("2026-10-23T22:00:00Z"),
            utc("2026-10-27T23:00:00Z"),
        ),
    )
    .await;
    for (since, until, expected_starts, expected_counts) in [
        (
            "2026-03-27T23:00:00Z",
            "2026-03-31T22:00:00Z",
            vec![
                "2026-03-27T23:00:00Z",
                "2026-03-28T23:00:00Z",
                "2026-03-29T22:00:00Z",
                "2026-03-30T22:00:00Z",
            ],
            vec![24, 23, 24, 24],
        ),
        (
            "2026-10-23T22:00:00Z",
            "2026-10-27T23:00:00Z",
            vec![
                "2026-10-23T22:00:00Z",
                "2026-10-24T22:00:00Z",
                "2026-10-25T23:00:00Z",
                "2026-10-26T23:00:00Z",
            ],
            vec![24, 25, 24, 24],
        ),
    ] {
        let answer = series(
            &app,
            json!({ "stations": { "ids": [station["id"]] }, "since": since, "until": until,
                    "bucket": "DAY", "zone": "Europe/Paris" }),
        )
        .await;
        let expected_starts: Vec<DateTime<Utc>> = expected_starts.into_iter().map(utc).collect();
        assert_eq!(starts(&answer["bucketStarts"]), expected_starts);
        let only = &answer["series"][0];
        assert_eq!(only["station"]["code"], "SER1");
        assert_eq!(counts(only), expected_counts);
        assert_eq!(
            only["precipitationTotalMm"],
            json!(
                expected_counts
                    .iter()
                    .map(|&n| n as f64)
                    .collect::<Vec<_>>()
            )
        );
    }
}

#[tokio::test]
async fn weeks_start_on_monday_months_have_their_lengths_and_ends_are_partial() {
    let app = spawn_app().await;
    let station = app.create_station("SER2", "Calendar", 0.0, 0.0).await;
    record(
        &app,
        &hourly(
            &station,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-04-01T00:00:00Z"),
        ),
    )
    .await;
    let id = &station["id"];

    let months = series(
        &app,
        json!({ "stations": { "ids": [id] }, "since": "2026-01-01T00:00:00Z",
                "until": "2026-04-01T00:00:00Z", "bucket": "MONTH" }),
    )
    .await;
    assert_eq!(
        counts(&months["series"][0]),
        vec![31 * 24, 28 * 24, 31 * 24]
    );

    // 2026-01-01 is a Thursday: its week began on Monday 2025-12-29.
    let weeks = series(
        &app,
        json!({ "stations": { "ids": [id] }, "since": "2026-01-01T00:00:00Z",
                "until": "2026-01-19T00:00:00Z", "bucket": "WEEK" }),
    )
    .await;
    assert_eq!(
        starts(&weeks["bucketStarts"]),
        vec![
            utc("2025-12-29T00:00:00Z"),
            utc("2026-01-05T00:00:00Z"),
            utc("2026-01-12T00:00:00Z")
        ]
    );
    assert_eq!(counts(&weeks["series"][0]), vec![4 * 24, 7 * 24, 7 * 24]);

    // A range that starts and ends inside hours: the partial hours come from the raw rows,
    // the first and last days count only what is inside the range.
    let partial = series(
        &app,
        json!({ "stations": { "ids": [id] }, "since": "2026-02-10T10:30:00Z",
                "until": "2026-02-12T05:15:00Z", "bucket": "DAY" }),
    )
    .await;
    assert_eq!(
        starts(&partial["series"][0]["bucketStarts"]),
        vec![
            utc("2026-02-10T00:00:00Z"),
            utc("2026-02-11T00:00:00Z"),
            utc("2026-02-12T00:00:00Z")
        ]
    );
    // 11:00 to 23:00, every hour of the 11th, 00:00 to 05:00.
    assert_eq!(counts(&partial["series"][0]), vec![13, 24, 6]);
}

#[tokio::test]
async fn empty_buckets_are_left_out_or_listed_as_nulls_and_stations_can_be_combined() {
    let app = spawn_app().await;
    let first = app.create_station("SER3", "Busy", 1.0, 1.0).await;
    let second = app.create_station("SER4", "Quiet", 2.0, 2.0).await;
    record(
        &app,
        &hourly(
            &first,
            utc("2026-05-01T00:00:00Z"),
            utc("2026-05-01T03:00:00Z"),
        ),
    )
    .await;
    record(
        &app,
        &hourly(
            &second,
            utc("2026-05-01T02:00:00Z"),
            utc("2026-05-01T04:00:00Z"),
        ),
    )
    .await;
    let range = json!({ "stations": { "codes": ["SER4", "SER3"] },
                        "since": "2026-05-01T00:00:00Z", "until": "2026-05-01T05:00:00Z",
                        "bucket": "HOUR" });

    let omitted = series(&app, range.clone()).await;
    assert_eq!(starts(&omitted["bucketStarts"]).len(), 5);
    let quiet = &omitted["series"][0];
    assert_eq!(quiet["station"]["code"], "SER4", "in the order asked");
    assert_eq!(
        starts(&quiet["bucketStarts"]),
        vec![utc("2026-05-01T02:00:00Z"), utc("2026-05-01T03:00:00Z")]
    );

    let mut with_nulls = range.clone();
    with_nulls["empty"] = json!("NULLS");
    let listed = series(&app, with_nulls).await;
    let quiet = &listed["series"][0];
    assert_eq!(counts(quiet), vec![0, 0, 1, 1, 0]);
    assert_eq!(
        quiet["temperatureC"]["avg"],
        json!([null, null, 1.0, 1.0, null])
    );
    assert_eq!(
        quiet["precipitationTotalMm"],
        json!([null, null, 1.0, 1.0, null])
    );
    assert_eq!(quiet["pressureHpa"]["count"], json!([0, 0, 0, 0, 0]));

    // Asking for fewer measures (they alone are aggregated) changes none of their values;
    // through a fragment too.
    let fewer = app
        .graphql(
            "query($stations: StationSelection!) {
                observationSeries(stations: $stations, since: \"2026-05-01T00:00:00Z\",
                                  until: \"2026-05-01T05:00:00Z\", bucket: HOUR,
                                  emptyBuckets: NULLS) {
                    series { ...Rain temperatureC { avg } }
                }
            }
            fragment Rain on StationSeries { precipitationTotalMm }",
            json!({ "stations": { "codes": ["SER4", "SER3"] } }),
        )
        .await;
    assert_no_errors(&fewer);
    // No measure at all: counts only.
    let counts_only = app
        .graphql(
            "query($stations: StationSelection!) {
                observationSeries(stations: $stations, since: \"2026-05-01T00:00:00Z\",
                                  until: \"2026-05-01T05:00:00Z\", bucket: DAY) {
                    series { bucketStarts count }
                }
            }",
            json!({ "stations": { "codes": ["SER4", "SER3"] } }),
        )
        .await;
    assert_no_errors(&counts_only);
    assert_eq!(
        counts(&counts_only["data"]["observationSeries"]["series"][1]),
        vec![3]
    );
    for index in 0..2 {
        let few = &fewer["data"]["observationSeries"]["series"][index];
        let all = &listed["series"][index];
        assert_eq!(few["precipitationTotalMm"], all["precipitationTotalMm"]);
        assert_eq!(few["temperatureC"]["avg"], all["temperatureC"]["avg"]);
    }

    let mut combined = range;
    combined["combine"] = json!(true);
    let together = series(&app, combined).await;
    assert_eq!(together["series"].as_array().unwrap().len(), 1);
    assert_eq!(together["series"][0]["station"], Value::Null);
    assert_eq!(counts(&together["series"][0]), vec![1, 1, 2, 1]);
}

/// Counts every noted hour into the rollup now, as the servers' refresh does in the
/// background.
async fn refresh_rollup(app: &TestApp) {
    rollup::drain(&app.db, 50_000)
        .await
        .expect("refresh the rollup");
}

/// The rollup rows of `station` as (hour, count), once refreshed.
async fn rollup_rows(app: &TestApp, station: &Value) -> Vec<(DateTime<Utc>, i32)> {
    refresh_rollup(app).await;
    let id: i32 = station["id"].as_str().unwrap().parse().unwrap();
    app.db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT hour, count FROM observations_hourly WHERE station_id = $1 ORDER BY hour",
            [id.into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get("", "hour").unwrap(),
                row.try_get("", "count").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn duplicates_count_once_late_data_updates_its_bucket_and_deletes_take_theirs_along() {
    let app = spawn_app().await;
    let station = app.create_station("SER5", "Late", 3.0, 3.0).await;
    let readings = hourly(
        &station,
        utc("2026-07-01T00:00:00Z"),
        utc("2026-07-01T06:00:00Z"),
    );
    record(&app, &readings).await;
    record(&app, &readings).await;
    let day = json!({ "stations": { "ids": [station["id"]] }, "since": "2026-07-01T00:00:00Z",
                      "until": "2026-07-02T00:00:00Z", "bucket": "DAY" });
    let answer = series(&app, day.clone()).await;
    assert_eq!(
        counts(&answer["series"][0]),
        vec![6],
        "recorded twice, counted once"
    );

    // A reading that arrives late, inside an hour already counted: a new minimum.
    record(
        &app,
        &[
            json!({ "stationId": station["id"], "observedAt": "2026-07-01T02:30:00Z",
                  "temperatureC": -20.0 }),
        ],
    )
    .await;
    let answer = series(&app, day.clone()).await;
    assert_eq!(counts(&answer["series"][0]), vec![7]);
    assert_eq!(answer["series"][0]["temperatureC"]["min"], json!([-20.0]));
    assert_eq!(rollup_rows(&app, &station).await[2].1, 2);

    // Deleting raw rows by hand counts their hours again: the minimum goes with its row.
    app.execute_sql("DELETE FROM observations WHERE temperature_c = -20")
        .await;
    let answer = series(&app, day.clone()).await;
    assert_eq!(answer["series"][0]["temperatureC"]["min"], json!([1.0]));
    app.execute_sql(
        "UPDATE observations SET observed_at = observed_at + interval '1 day'
         WHERE observed_at = '2026-07-01T05:00:00Z'",
    )
    .await;
    assert_eq!(
        counts(&series(&app, day.clone()).await["series"][0]),
        vec![5]
    );

    let deleted = app
        .graphql(
            "mutation($id: ID!) { deleteStation(id: $id, cascade: true) }",
            json!({ "id": station["id"] }),
        )
        .await;
    assert_no_errors(&deleted);
    assert!(rollup_rows(&app, &station).await.is_empty());
}

#[tokio::test]
async fn the_rollup_answers_whole_hours_and_the_rollups_command_finds_and_mends_a_difference() {
    let app = spawn_app().await;
    let station = app.create_station("SER6", "Audited", 4.0, 4.0).await;
    record(
        &app,
        &hourly(
            &station,
            utc("2026-08-01T00:00:00Z"),
            utc("2026-08-03T00:00:00Z"),
        ),
    )
    .await;
    let day = json!({ "stations": { "ids": [station["id"]] }, "since": "2026-08-01T00:00:00Z",
                      "until": "2026-08-03T00:00:00Z", "bucket": "DAY" });
    let (_, stdout, _) =
        run(stations_api(&["rollups", "verify"]).env("APP__DATABASE__URL", &app.database.url));
    assert!(stdout.contains("48 station-hours checked"), "{stdout}");
    assert!(
        stdout.contains("0 missing, 0 extra, 0 differing"),
        "{stdout}"
    );

    // Spoil one hour of the rollup behind PostgreSQL's back: the day series shows it, so the
    // rollup is what answers it.
    app.execute_sql(
        "UPDATE observations_hourly SET count = 100 WHERE hour = '2026-08-01T05:00:00Z'",
    )
    .await;
    assert_eq!(
        counts(&series(&app, day.clone()).await["series"][0]),
        vec![123, 24]
    );
    // 15-minute buckets read the raw rows.
    let quarters = series(
        &app,
        json!({ "stations": { "ids": [station["id"]] }, "since": "2026-08-01T05:00:00Z",
                "until": "2026-08-01T06:00:00Z", "bucket": "FIFTEEN_MINUTES" }),
    )
    .await;
    assert_eq!(counts(&quarters["series"][0]), vec![1]);

    let (output, stdout, stderr) =
        run(stations_api(&["rollups", "verify"]).env("APP__DATABASE__URL", &app.database.url));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("1 differing"), "{stdout}");
    assert!(
        stderr.contains("station") && stderr.contains("2026-08-01T05:00Z"),
        "{stderr}"
    );
    assert!(stderr.contains("stations-api rollups rebuild"), "{stderr}");

    let (output, stdout, stderr) =
        run(stations_api(&["rollups", "rebuild"]).env("APP__DATABASE__URL", &app.database.url));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("rebuilt observations_hourly: 48 station-hours"),
        "{stdout}"
    );
    assert!(stdout.contains("0 differing"), "{stdout}");
    assert_eq!(counts(&series(&app, day).await["series"][0]), vec![24, 24]);
}

/// How many writes' notes are waiting for the rollup's refresh.
async fn noted_writes(app: &TestApp) -> i64 {
    app.db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS noted FROM observations_hourly_pending",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "noted")
        .unwrap()
}

#[tokio::test]
async fn the_server_counts_noted_hours_into_the_rollup_in_the_background() {
    let app = spawn_app_with(|settings| {
        settings.database.rollup_refresh_interval_ms = 50;
    })
    .await;
    let station = app.create_station("SER8", "Refreshed", 6.0, 6.0).await;
    record(
        &app,
        &hourly(
            &station,
            utc("2026-09-01T00:00:00Z"),
            utc("2026-09-02T00:00:00Z"),
        ),
    )
    .await;
    // Waits on the condition, at most 10 s: the refresh runs every 50 ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while noted_writes(&app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server has not refreshed the rollup after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let verification = rollup::verify(&app.db).await.unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    assert_eq!(verification.hours, 24);
}

/// Writers and deleters in the same hours, with refreshes running beside them (the server's
/// own every 5 ms, and two more by hand, a note at a time): once refreshed, the rollup is
/// exact.
#[tokio::test]
async fn refreshes_racing_writes_and_deletes_leave_the_rollup_exact() {
    let app = spawn_app_with(|settings| {
        settings.database.rollup_refresh_interval_ms = 5;
    })
    .await;
    let station = app.create_station("SER9", "Contended", 7.0, 7.0).await;
    let id: i32 = station["id"].as_str().unwrap().parse().unwrap();
    let writers = (0..4).map(|writer| {
        let db = app.db.clone();
        tokio::spawn(async move {
            for round in 0..40 {
                // Readings in the same six hours from every writer, each at its own minutes.
                let minute = writer * 10 + round % 10;
                db.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO observations (station_id, observed_at, temperature_c)
                     SELECT $1, timestamptz '2026-10-01T00:00:00Z'
                                + make_interval(hours => h, mins => $2), $3
                     FROM generate_series(0, 5) h
                     ON CONFLICT DO NOTHING",
                    [id.into(), minute.into(), f64::from(round).into()],
                ))
                .await
                .unwrap();
                if round % 3 == 2 {
                    db.execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "DELETE FROM observations
                         WHERE station_id = $1 AND extract(minute FROM observed_at) = $2",
                        [id.into(), minute.into()],
                    ))
                    .await
                    .unwrap();
                }
            }
        })
    });
    let writers: Vec<_> = writers.collect();
    let refreshers: Vec<_> = (0..2)
        .map(|_| {
            let db = app.db.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    rollup::refresh(&db, 3, false).await.unwrap();
                }
            })
        })
        .collect();
    for task in writers.into_iter().chain(refreshers) {
        task.await.unwrap();
    }
    refresh_rollup(&app).await;
    let verification = rollup::verify(&app.db).await.unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    assert_eq!(verification.hours, 6);
}

#[test]
fn a_rollup_refresh_interval_outside_its_bounds_is_refused() {
    for (value, expected) in [("0", "at least 1"), ("60001", "at most 60000")] {
        let (output, _, stderr) = run(stations_api(&["migrate", "status"])
            .env("APP__DATABASE__ROLLUP_REFRESH_INTERVAL_MS", value));
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("`database.rollup_refresh_interval_ms`") && stderr.contains(expected),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn each_refusal_names_the_argument_and_the_limit() {
    let app = spawn_app_with(|settings| {
        settings.graphql.max_series_points = 1000;
        settings.graphql.max_series_stations = 2;
    })
    .await;
    let station = app.create_station("SER7", "Limits", 5.0, 5.0).await;
    let id = station["id"].clone();
    let base = json!({ "stations": { "ids": [id] }, "since": "2026-01-01T00:00:00Z",
                       "until": "2026-01-02T00:00:00Z", "bucket": "DAY" });
    let with = |changes: Value| {
        let mut variables = base.clone();
        for (key, value) in changes.as_object().unwrap() {
            variables[key] = value.clone();
        }
        variables
    };
    let cases = [
        (
            with(json!({ "zone": "PST" })),
            "timeZone",
            "IANA time zone database",
        ),
        (
            with(json!({ "zone": "UTC+3" })),
            "timeZone",
            "IANA time zone database",
        ),
        (
            with(json!({ "zone": "Europe/Paris", "bucket": "HOUR" })),
            "timeZone",
            "must be UTC (or left out) for HOUR buckets",
        ),
        (
            with(json!({ "until": "2025-12-31T00:00:00Z" })),
            "since",
            "must be before until",
        ),
        (
            with(json!({ "stations": { "ids": [id, "999999"] } })),
            "stations.ids[1]",
            "no station has id 999999",
        ),
        (
            with(json!({ "stations": { "codes": ["NOPE"] } })),
            "stations.codes[0]",
            "no station has code \"NOPE\"",
        ),
        (
            with(json!({ "stations": { "ids": ["1", "2", "3"] } })),
            "stations.ids",
            "at most 2 stations (got 3; graphql.max_series_stations)",
        ),
        (
            with(json!({ "stations": { "filter": { "bbox":
                { "minLat": 90, "maxLat": -90, "minLng": 0, "maxLng": 1 } } } })),
            "stations.filter.bbox.minLat",
            "must not exceed maxLat",
        ),
        (
            with(json!({ "bucket": "HOUR", "until": "2026-03-01T00:00:00Z" })),
            "until",
            "1416 points (1 stations × 1416 buckets), more than 1000 (graphql.max_series_points)",
        ),
    ];
    for (variables, field, message) in cases {
        let body = app.graphql(SERIES, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}: {body}");
        assert_eq!(error_field(&body), field, "{body}");
        assert!(error_message(&body).contains(message), "{body}");
    }
    for code in ["SER7A", "SER7B", "SER7C"] {
        app.create_station(code, "More", 5.0, 5.0).await;
    }
    let body = app
        .graphql(
            SERIES,
            with(json!({ "stations": { "filter": { "nameContains": "o" } } })),
        )
        .await;
    assert_eq!(error_field(&body), "stations.filter", "{body}");
    assert!(error_message(&body).contains("more than 2"), "{body}");

    // Two ways of selecting at once is refused by the schema (a oneOf input).
    let body = app
        .graphql(
            SERIES,
            with(json!({ "stations": { "ids": [id], "codes": ["SER7"] } })),
        )
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one"),
        "{body}"
    );
}

#[tokio::test]
async fn a_series_too_costly_for_the_operation_budget_is_refused_before_it_runs() {
    let app = spawn_app().await;
    let ids: Vec<String> = (1..=200).map(|n| n.to_string()).collect();
    let body = app
        .graphql(
            SERIES,
            json!({ "stations": { "ids": ids }, "since": "2026-01-01T00:00:00Z",
                    "until": "2026-02-01T00:00:00Z", "bucket": "HOUR" }),
        )
        .await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
}

// Generated data and series, each bucket compared with PostgreSQL's own grouping of the raw
// rows.

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
];

#[derive(Debug, Clone)]
struct Reading {
    station: usize,
    minutes: i64,
    temperature: Option<f64>,
    precipitation: Option<f64>,
}

#[derive(Debug, Clone)]
struct Case {
    readings: Vec<Reading>,
    /// Readings recorded a second time, after the rest.
    repeated: usize,
    /// Station 0's readings before this many minutes after `origin` are deleted, after the
    /// repeats.
    deleted_before_minutes: i64,
    /// When the rollup is refreshed (bits): 1 after the first recording, 2 at the end. The
    /// series must be exact whatever is still noted and not yet counted.
    refreshes: u8,
    bucket: &'static str,
    zone: &'static str,
    since_minutes: i64,
    length_minutes: i64,
    combine: bool,
    /// Which of `AGGREGATE_FIELDS` a second, narrower query selects (one bit each).
    narrower: u16,
}

/// The aggregate fields of a series, each of which the server computes only when selected.
const AGGREGATE_FIELDS: [(&str, &str); 9] = [
    ("temperatureC", "count"),
    ("temperatureC", "min"),
    ("temperatureC", "max"),
    ("temperatureC", "avg"),
    ("precipitationMm", "count"),
    ("precipitationMm", "min"),
    ("precipitationMm", "max"),
    ("precipitationMm", "avg"),
    ("precipitationTotalMm", ""),
];

/// The origin of generated readings: a few days before Europe's spring change of clocks.
fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 20, 0, 0, 0).unwrap()
}

fn case() -> impl Strategy<Value = Case> {
    let reading = (
        0usize..3,
        0i64..(40 * 24 * 60),
        proptest::option::of(-30.0f64..40.0),
        proptest::option::weighted(0.3, 0.0f64..20.0),
    )
        .prop_map(|(station, minutes, temperature, precipitation)| Reading {
            station,
            minutes,
            // At least one measure per reading.
            temperature: temperature.or(Some(0.5)),
            precipitation,
        });
    (
        proptest::collection::vec(reading, 1..200),
        0usize..20,
        prop_oneof![Just(0i64), 0i64..(40 * 24 * 60)],
        0u8..4,
        prop_oneof![
            Just("FIFTEEN_MINUTES"),
            Just("HOUR"),
            Just("DAY"),
            Just("WEEK"),
            Just("MONTH")
        ],
        proptest::sample::select(ZONES),
        0i64..(20 * 24 * 60),
        1i64..(30 * 24 * 60),
        any::<bool>(),
        0u16..(1 << AGGREGATE_FIELDS.len()),
    )
        .prop_map(
            |(
                readings,
                repeated,
                deleted_before_minutes,
                refreshes,
                bucket,
                zone,
                since_minutes,
                length_minutes,
                combine,
                narrower,
            )| {
                let zone = if matches!(bucket, "FIFTEEN_MINUTES" | "HOUR") {
                    "UTC"
                } else {
                    zone
                };
                // Short ranges for short buckets, within graphql.max_series_points.
                let length_minutes = if bucket == "FIFTEEN_MINUTES" {
                    length_minutes % (3 * 24 * 60) + 1
                } else {
                    length_minutes
                };
                Case {
                    readings,
                    repeated,
                    deleted_before_minutes,
                    refreshes,
                    bucket,
                    zone,
                    since_minutes,
                    length_minutes,
                    combine,
                    narrower,
                }
            },
        )
}

/// A series query that selects only the aggregate fields of `AGGREGATE_FIELDS` whose bit is
/// set in `narrower` (with the buckets and counts that place them).
fn narrower_query(narrower: u16) -> String {
    let mut selected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (bit, (field, aggregate)) in AGGREGATE_FIELDS.iter().enumerate() {
        if narrower & (1 << bit) != 0 {
            selected.entry(field).or_default().push(aggregate);
        }
    }
    let fields: String = selected
        .into_iter()
        .map(|(field, aggregates)| format!("{field} {{ {} }} ", aggregates.join(" ")))
        .collect::<String>()
        .replace("precipitationTotalMm {  }", "precipitationTotalMm");
    format!(
        "query($stations: StationSelection!, $since: DateTime!, $until: DateTime!,
               $bucket: SeriesBucket!, $zone: String, $combine: Boolean) {{
            observationSeries(stations: $stations, since: $since, until: $until, bucket: $bucket,
                              timeZone: $zone, combine: $combine) {{
                series {{ bucketStarts count {fields}}}
            }}
        }}"
    )
}

/// Where the narrower answer differs from the full one in a field it selects.
fn narrower_differs(narrower: u16, narrow: &Value, full: &Value) -> Option<String> {
    let (narrow, full) = (&narrow["series"], &full["series"]);
    if narrow.as_array().map(Vec::len) != full.as_array().map(Vec::len) {
        return Some(format!("{narrow} against {full}"));
    }
    for (index, full_series) in full.as_array().unwrap().iter().enumerate() {
        let narrow_series = &narrow[index];
        for key in ["bucketStarts", "count"] {
            if narrow_series[key] != full_series[key] {
                return Some(format!("series {index} {key}"));
            }
        }
        for (bit, (field, aggregate)) in AGGREGATE_FIELDS.iter().enumerate() {
            if narrower & (1 << bit) == 0 {
                continue;
            }
            let pick = |series: &Value| {
                let value = &series[field];
                if aggregate.is_empty() {
                    value.clone()
                } else {
                    value[aggregate].clone()
                }
            };
            let (got, expected) = (pick(narrow_series), pick(full_series));
            let (got, expected) = (got.as_array().unwrap(), expected.as_array().unwrap());
            if got.len() != expected.len()
                || got
                    .iter()
                    .zip(expected)
                    .any(|(a, b)| !close(a.as_f64(), b.as_f64()))
            {
                return Some(format!(
                    "series {index} {field} {aggregate}: {got:?} against {expected:?}"
                ));
            }
        }
    }
    None
}

/// One bucket as compared: count, then per measure (temperature, precipitation) count, min,
/// max, avg, and the precipitation total.
type Bucket = (
    i64,
    [(i64, Option<f64>, Option<f64>, Option<f64>); 2],
    Option<f64>,
);

/// PostgreSQL's own answer: the raw rows grouped by `date_trunc(unit, observed_at, zone)`.
async fn brute_force(
    app: &TestApp,
    ids: &[i32],
    case: &Case,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> BTreeMap<(Option<i32>, DateTime<Utc>), Bucket> {
    let start = match case.bucket {
        "FIFTEEN_MINUTES" => {
            "date_bin('15 minutes', observed_at, timestamptz '2000-01-01 00:00:00+00')".to_owned()
        }
        bucket => format!(
            "date_trunc('{}', observed_at, '{}')",
            bucket.to_lowercase(),
            case.zone
        ),
    };
    let station = if case.combine {
        "NULL::integer"
    } else {
        "station_id"
    };
    let sql = format!(
        "SELECT {station} AS station, {start} AS start, count(*) AS count,
                count(temperature_c) AS t_count, min(temperature_c) AS t_min,
                max(temperature_c) AS t_max, avg(temperature_c) AS t_avg,
                count(precipitation_mm) AS p_count, min(precipitation_mm) AS p_min,
                max(precipitation_mm) AS p_max, avg(precipitation_mm) AS p_avg,
                sum(precipitation_mm) AS p_sum
         FROM observations
         WHERE station_id = ANY($1) AND observed_at >= $2 AND observed_at < $3
         GROUP BY 1, 2"
    );
    let rows = app
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [ids.to_vec().into(), since.into(), until.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let get = |name: &str| row.try_get::<Option<f64>>("", name).unwrap();
            let count = |name: &str| row.try_get::<i64>("", name).unwrap();
            (
                (
                    row.try_get("", "station").unwrap(),
                    row.try_get("", "start").unwrap(),
                ),
                (
                    count("count"),
                    [
                        (count("t_count"), get("t_min"), get("t_max"), get("t_avg")),
                        (count("p_count"), get("p_min"), get("p_max"), get("p_avg")),
                    ],
                    get("p_sum"),
                ),
            )
        })
        .collect()
}

/// The API's answer in the same shape.
fn answered(answer: &Value, ids: &[i32]) -> BTreeMap<(Option<i32>, DateTime<Utc>), Bucket> {
    let mut buckets = BTreeMap::new();
    for (index, series) in answer["series"].as_array().unwrap().iter().enumerate() {
        let station = if series["station"].is_null() {
            None
        } else {
            Some(ids[index])
        };
        let number = |value: &Value| value.as_f64();
        let measure = |name: &str, i: usize| {
            let m = &series[name];
            (
                m["count"][i].as_i64().unwrap(),
                number(&m["min"][i]),
                number(&m["max"][i]),
                number(&m["avg"][i]),
            )
        };
        for (i, start) in starts(&series["bucketStarts"]).into_iter().enumerate() {
            buckets.insert(
                (station, start),
                (
                    series["count"][i].as_i64().unwrap(),
                    [measure("temperatureC", i), measure("precipitationMm", i)],
                    number(&series["precipitationTotalMm"][i]),
                ),
            );
        }
    }
    buckets
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

fn same(a: &Bucket, b: &Bucket) -> bool {
    a.0 == b.0
        && close(a.2, b.2)
        && a.1
            .iter()
            .zip(&b.1)
            .all(|(x, y)| x.0 == y.0 && close(x.1, y.1) && close(x.2, y.2) && close(x.3, y.3))
}

/// Generated readings, deletions, ranges and buckets, with the rollup refreshed or not in
/// between: every bucket matches PostgreSQL's own grouping of the raw rows, and a query selecting only some of the aggregates (then all the server
/// computes) gets the same values for them.
#[test]
fn every_bucket_of_generated_series_matches_group_by_date_trunc_over_the_raw_rows() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The test refreshes the rollup itself, at chosen moments; the server's refresh would
    // pick its own.
    let app = runtime.block_on(spawn_app_with(|settings| {
        settings.database.rollup_refresh_interval_ms = 60_000;
    }));
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let outcome = runner.run(&case(), |case| {
        let number = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(async {
            // Stations of this case's own.
            let mut stations = Vec::new();
            for index in 0..3 {
                let code = format!("GEN{number}-{index}");
                stations.push(app.create_station(&code, "Generated", 0.0, 0.0).await);
            }
            let ids: Vec<i32> = stations
                .iter()
                .map(|s| s["id"].as_str().unwrap().parse().unwrap())
                .collect();
            let inputs: Vec<Value> = case
                .readings
                .iter()
                .map(|reading| {
                    json!({
                        "stationId": stations[reading.station]["id"],
                        "observedAt": text(origin() + Duration::minutes(reading.minutes)),
                        "temperatureC": reading.temperature,
                        "precipitationMm": reading.precipitation,
                    })
                })
                .collect();
            record(&app, &inputs).await;
            if case.refreshes & 1 != 0 {
                refresh_rollup(&app).await;
            }
            let repeated: Vec<Value> = inputs.iter().take(case.repeated).cloned().collect();
            record(&app, &repeated).await;
            app.db
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "DELETE FROM observations WHERE station_id = $1 AND observed_at < $2",
                    [
                        ids[0].into(),
                        (origin() + Duration::minutes(case.deleted_before_minutes)).into(),
                    ],
                ))
                .await
                .unwrap();
            if case.refreshes & 2 != 0 {
                refresh_rollup(&app).await;
            }

            let since = origin() + Duration::minutes(case.since_minutes);
            let until = since + Duration::minutes(case.length_minutes);
            let body = app
                .graphql(
                    SERIES,
                    json!({ "stations": { "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>() },
                            "since": text(since), "until": text(until), "bucket": case.bucket,
                            "zone": case.zone, "combine": case.combine }),
                )
                .await;
            if body.get("errors").is_some() {
                return Err(TestCaseError::fail(format!("{body}")));
            }
            let answer = &body["data"]["observationSeries"];
            // Selecting fewer aggregates computes only those, with the same values.
            let narrow = app
                .graphql(
                    &narrower_query(case.narrower),
                    json!({ "stations": { "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>() },
                            "since": text(since), "until": text(until), "bucket": case.bucket,
                            "zone": case.zone, "combine": case.combine }),
                )
                .await;
            if narrow.get("errors").is_some() {
                return Err(TestCaseError::fail(format!("{narrow}")));
            }
            if let Some(difference) =
                narrower_differs(case.narrower, &narrow["data"]["observationSeries"], answer)
            {
                return Err(TestCaseError::fail(format!(
                    "selecting {:#b} of the aggregates: {difference}",
                    case.narrower
                )));
            }
            let expected = brute_force(&app, &ids, &case, since, until).await;
            let got = answered(answer, &ids);
            if got.len() != expected.len() {
                return Err(TestCaseError::fail(format!(
                    "{} buckets, PostgreSQL groups {}: {:?} against {:?}",
                    got.len(),
                    expected.len(),
                    got.keys().collect::<Vec<_>>(),
                    expected.keys().collect::<Vec<_>>()
                )));
            }
            for (key, bucket) in &expected {
                match got.get(key) {
                    Some(answered) if same(answered, bucket) => {}
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "bucket {key:?}: answered {other:?}, PostgreSQL {bucket:?}"
                        )));
                    }
                }
            }
            Ok(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
