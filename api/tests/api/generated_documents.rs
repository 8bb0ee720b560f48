//! Documents nobody wrote by hand: generated over the real schema's names (and some it does
//! not have), with aliases, arguments, variables, nesting, inline fragments, fragments that
//! spread each other (cycles and bombs included), several operations and any
//! `operationName`. Each is answered or refused within the deadline and never with a 5xx,
//! while the replica keeps answering `/health/live` within a second.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::spawn_app_with;

const FIELDS: &[&str] = &[
    "__typename",
    "stations",
    "station",
    "edges",
    "node",
    "id",
    "code",
    "name",
    "lat",
    "lng",
    "elevationM",
    "totalCount",
    "pageInfo",
    "endCursor",
    "hasNextPage",
    "observations",
    "latestObservation",
    "temperatureC",
    "observedAt",
    "stationChanged",
    "createStation",
    "deleteStation",
];
const ARGUMENTS: &[&str] = &[
    "",
    "(first: 2)",
    "(first: 100)",
    "(first: -1)",
    "(first: $size)",
    "(id: \"1\")",
    "(id: $id)",
    "(after: \"bm90IGEgY3Vyc29y\")",
    "(filter: { nameContains: \"a\" })",
    "(nope: 1)",
    "(first: 1, first: 2)",
];
const FRAGMENTS: usize = 4;

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => "[a-z][a-zA-Z]{0,7}",
    ]
}

fn alias() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        1 => "[a-z]{1,4}".prop_map(|alias| format!("{alias}: ")),
    ]
}

/// One selection: a field (maybe aliased, with arguments), a fragment spread or an inline
/// fragment, nested up to a few levels.
fn selection() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        6 => (alias(), field_name(), proptest::sample::select(ARGUMENTS))
            .prop_map(|(alias, name, arguments)| format!("{alias}{name}{arguments}")),
        2 => (0..FRAGMENTS + 1).prop_map(|index| format!("...F{index}")),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            4 => (
                alias(),
                field_name(),
                proptest::sample::select(ARGUMENTS),
                vec(inner.clone(), 1..6),
            )
                .prop_map(|(alias, name, arguments, items)| {
                    format!("{alias}{name}{arguments} {{ {} }}", items.join(" "))
                }),
            1 => (
                proptest::sample::select(&["Query", "Station", "Nope"][..]),
                vec(inner, 1..4),
            )
                .prop_map(|(on, items)| format!("... on {on} {{ {} }}", items.join(" "))),
        ]
    })
}

/// A station's selection as the schema has it: scalars, aliases, its observations.
fn station_selection() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            4 => (alias(), proptest::sample::select(&["id", "code", "name", "lat", "lng", "elevationM", "__typename"][..]))
                .prop_map(|(alias, field)| format!("{alias}{field}")),
            1 => (1i32..30).prop_map(|first| format!(
                "observations(first: {first}) {{ pageInfo {{ hasNextPage }} edges {{ cursor node {{ observedAt temperatureC }} }} }}"
            )),
            1 => Just("...StationFields".to_owned()),
        ],
        1..6,
    )
    .prop_map(|items| format!("{{ {} }}", items.join(" ")))
}

/// A root selection as the schema has it: pages of stations, one station, `__typename`.
fn valid_selection_set() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            (alias(), -2i32..120, station_selection()).prop_map(|(alias, first, station)| format!(
                "{alias}stations(first: {first}) {{ totalCount pageInfo {{ hasNextPage endCursor }} \
                 edges {{ cursor node {station} }} }}"
            )),
            (alias(), station_selection())
                .prop_map(|(alias, station)| format!("{alias}station(id: \"1\") {station}")),
            Just("__typename".to_owned()),
            Just("...QueryFields".to_owned()),
        ],
        1..4,
    )
    .prop_map(|items| format!("{{ {} }}", items.join(" ")))
}

fn selection_set() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => vec(selection(), 1..6).prop_map(|items| format!("{{ {} }}", items.join(" "))),
        1 => valid_selection_set(),
    ]
}

fn operation() -> impl Strategy<Value = (Option<String>, String)> {
    (
        proptest::option::of("[A-Z][a-z]{0,5}"),
        proptest::sample::select(&["query", "query", "query", "mutation", "subscription"][..]),
        proptest::sample::select(&["", "($size: Int)", "($id: ID!, $size: Int = 3)"][..]),
        selection_set(),
    )
        .prop_map(|(name, kind, variables, selection)| {
            let text = match &name {
                Some(name) => format!("{kind} {name}{variables} {selection}"),
                None if variables.is_empty() && kind == "query" => selection.clone(),
                None => format!("{kind}{variables} {selection}"),
            };
            (name, text)
        })
}

/// A request body: half of them shaped as a client would send (so that validation passes and
/// execution runs), half made to break every rule.
fn request() -> impl Strategy<Value = Value> {
    prop_oneof![schema_shaped_request(), hostile_request()]
}

fn schema_shaped_request() -> impl Strategy<Value = Value> {
    (
        proptest::option::of("[A-Z][a-z]{0,5}"),
        valid_selection_set(),
        proptest::bool::ANY,
    )
        .prop_map(|(name, selection, send_name)| {
            let mut document = match &name {
                Some(name) => vec![format!("query {name} {selection}")],
                None => vec![selection.clone()],
            };
            with_named_fragments(&mut document);
            json!({
                "query": document.join("\n"),
                "operationName": name.filter(|_| send_name),
            })
        })
}

/// The fragments the schema-shaped selections spread, when any does.
fn with_named_fragments(document: &mut Vec<String>) {
    let text = document.join("\n");
    if text.contains("...StationFields") {
        document.push("fragment StationFields on Station { code name lat }".to_owned());
    }
    if text.contains("...QueryFields") {
        document.push(
            "fragment QueryFields on Query { __typename stations(first: 1) { totalCount } }"
                .to_owned(),
        );
    }
}

/// Operations, fragments, variables and an `operationName`, any of them wrong.
fn hostile_request() -> impl Strategy<Value = Value> {
    (
        prop_oneof![3 => vec(operation(), 1..2), 1 => vec(operation(), 2..4)],
        vec(
            (
                proptest::sample::select(&["Query", "Station"][..]),
                selection_set(),
            ),
            0..FRAGMENTS,
        ),
        prop_oneof![
            Just(json!({})),
            Just(json!({ "size": 2, "id": "1" })),
            Just(json!({ "size": "many" })),
        ],
        0usize..4,
        "[A-Za-z]{0,6}",
    )
        .prop_map(|(operations, fragments, variables, pick, made_up)| {
            let mut document: Vec<String> =
                operations.iter().map(|(_, text)| text.clone()).collect();
            for (index, (on, selection)) in fragments.iter().enumerate() {
                document.push(format!("fragment F{index} on {on} {selection}"));
            }
            with_named_fragments(&mut document);
            let named: Vec<&String> = operations
                .iter()
                .filter_map(|(name, _)| name.as_ref())
                .collect();
            let operation_name = match pick {
                0 if operations.len() == 1 => Value::Null,
                1 if made_up.len() == 5 => json!(made_up),
                _ if named.is_empty() => Value::Null,
                _ => json!(named[pick % named.len()]),
            };
            json!({
                "query": document.join("\n"),
                "variables": variables,
                "operationName": operation_name,
            })
        })
}

#[test]
fn generated_documents_are_answered_in_time_and_never_stall_the_replica() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let request_timeout = Duration::from_secs(5);
    let app = runtime.block_on(spawn_app_with(|settings| {
        settings.server.request_timeout_secs = request_timeout.as_secs();
    }));
    // A few stations, so that schema-shaped queries return rows and walk their fields.
    runtime.block_on(async {
        for index in 0..3 {
            app.create_station(
                &format!("GEN{index}"),
                "Generated",
                10.0 + f64::from(index),
                20.0,
            )
            .await;
        }
    });
    let address = app.address.clone();
    let client = reqwest::Client::new();

    // /health/live, every 100 ms for the whole run, must answer within a second.
    let running = Arc::new(AtomicBool::new(true));
    let missed = Arc::new(AtomicUsize::new(0));
    let prober = runtime.spawn({
        let (client, address, running, missed) = (
            client.clone(),
            address.clone(),
            Arc::clone(&running),
            Arc::clone(&missed),
        );
        async move {
            while running.load(Ordering::Relaxed) {
                let live = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get(format!("{address}/health/live")).send(),
                )
                .await;
                if !matches!(live, Ok(Ok(ref response)) if response.status() == 200) {
                    missed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&request(), |body| {
        runtime.block_on(async {
            let started = Instant::now();
            let response = tokio::time::timeout(
                request_timeout + Duration::from_secs(2),
                client
                    .post(format!("{address}/graphql"))
                    .header("accept", "application/graphql-response+json")
                    .json(&body)
                    .send(),
            )
            .await
            .map_err(|_| TestCaseError::fail(format!("no answer in time to {body}")))?
            .map_err(|error| TestCaseError::fail(format!("{error} for {body}")))?;
            let status = response.status();
            let answer: Value = response
                .json()
                .await
                .map_err(|error| TestCaseError::fail(format!("{error} for {body}")))?;
            prop_assert!(
                !status.is_server_error(),
                "{status} after {:?} for {body}: {answer}",
                started.elapsed()
            );
            prop_assert!(
                answer.get("data").is_some() || answer.get("errors").is_some(),
                "{answer}"
            );
            Ok(())
        })
    });
    running.store(false, Ordering::Relaxed);
    runtime.block_on(prober).unwrap();
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert_eq!(
        missed.load(Ordering::Relaxed),
        0,
        "/health/live did not answer within a second"
    );
}
