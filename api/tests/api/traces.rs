//! OpenTelemetry traces, received as a collector receives them: the server sends OTLP/HTTP
//! protobuf to a receiver in this file, which decodes it with the protocol's own message
//! definitions (`opentelemetry-proto`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
    trace::v1::span::SpanKind,
};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::{ServerProcess, TestDatabase, run, stations_api};
use crate::live::{LiveClient, TRANSPORT_WS, wait_until_listening, wait_until_subscribed};
use crate::scram_cluster::free_port;

/// One span as the receiver got it, ids in hexadecimal.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: i32,
    attributes: HashMap<String, String>,
    service_name: String,
    /// `service.instance.id`: which replica sent it.
    instance: String,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// An OTLP/HTTP receiver on a free loopback port.
pub struct Receiver {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    arrived: Arc<Notify>,
}

#[derive(Clone)]
struct Inbox {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inbox = Inbox {
            spans: Arc::default(),
            arrived: Arc::new(Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let address = listener.local_addr().expect("the receiver's address");
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(inbox.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint: format!("http://{address}"),
            spans: inbox.spans,
            arrived: inbox.arrived,
        }
    }

    /// The spans of `trace_id` once `complete` accepts them, waiting for each export up to
    /// 30 seconds in all.
    pub async fn trace(
        &self,
        trace_id: &str,
        complete: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = self.arrived.notified();
            let spans: Vec<ReceivedSpan> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|span| span.trace_id == trace_id)
                .cloned()
                .collect();
            if complete(&spans) {
                return spans;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("the trace never completed; it holds {spans:#?}");
            }
        }
    }

    pub fn all(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(inbox): State<Inbox>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = |key: &str| {
            resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == key)
                .map(|attribute| text(attribute.value.as_ref()))
                .unwrap_or_default()
        };
        let (service_name, instance) = (resource("service.name"), resource("service.instance.id"));
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|attribute| (attribute.key.clone(), text(attribute.value.as_ref())))
                        .collect(),
                    service_name: service_name.clone(),
                    instance: instance.clone(),
                });
            }
        }
    }
    inbox.spans.lock().unwrap().extend(received);
    inbox.arrived.notify_waiters();
    // An empty ExportTraceServiceResponse: nothing rejected.
    Vec::new()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::DoubleValue(number)) => number.to_string(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A server sending its traces to `receiver` every 50 ms, which accepts [`TOKEN`].
fn traced_server(
    database: &TestDatabase,
    receiver: &Receiver,
    env: &[(&str, &str)],
) -> (ServerProcess, String) {
    let token_hash = sha256_hex(TOKEN);
    let mut all = vec![
        ("APP__TELEMETRY__OTLP__ENDPOINT", receiver.endpoint.as_str()),
        ("APP__TELEMETRY__OTLP__EXPORT_INTERVAL_MS", "50"),
        ("OTEL_SERVICE_NAME", "stations-under-test"),
        ("APP__AUTH__TOKEN_SHA256", token_hash.as_str()),
    ];
    all.extend_from_slice(env);
    ServerProcess::start(&database.url, &all)
}

/// The bearer token every traced request carries: no span may show it.
const TOKEN: &str = "trace-test-token-7f3a9c";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn post_traced(
    address: &str,
    traceparent: &str,
    query: &str,
    variables: Value,
) -> (Value, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .header("traceparent", traceparent)
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (response.json().await.expect("a JSON body"), request_id)
}

pub fn only(spans: &[ReceivedSpan], wanted: impl Fn(&ReceivedSpan) -> bool) -> &ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|span| wanted(span)).collect();
    assert_eq!(found.len(), 1, "expected one such span in {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_query_is_one_trace_from_the_callers_span_down_to_each_statement() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    // Trusted, so that the caller's flag decides: its trace is then the test's to look for.
    let (mut server, address) = traced_server(
        &database,
        &receiver,
        &[("APP__TELEMETRY__TRUST_INCOMING_SAMPLING", "true")],
    );
    let secret_name = "Needle Station 7c1e";
    let (created, _) = post_traced(
        &address,
        "00-11111111111111111111111111111111-2222222222222222-01",
        "mutation AddOne($input: CreateStationInput!) { createStation(input: $input) { id } }",
        json!({ "input": { "code": "NEEDLE-7C1E", "name": secret_name, "lat": 1.5, "lng": 2.5 } }),
    )
    .await;
    assert!(created.get("errors").is_none(), "{created}");
    let id = created["data"]["createStation"]["id"].clone();

    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (body, request_id) = post_traced(
        &address,
        &traceparent,
        "query Near($id: ID!) { station(id: $id) { code latestObservation { observedAt } } }",
        json!({ "id": id }),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");

    let spans = receiver
        .trace(CALLER_TRACE, |spans| {
            spans.iter().any(|span| span.name == "POST /graphql")
                && spans
                    .iter()
                    .any(|span| span.name == "load LatestObservation")
                && spans
                    .iter()
                    .filter(|span| span.kind == SpanKind::Client as i32)
                    .count()
                    >= 2
        })
        .await;
    let server_span = only(&spans, |span| span.name == "POST /graphql");
    assert_eq!(
        server_span.parent_span_id, CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    assert_eq!(server_span.service_name, "stations-under-test");
    assert_eq!(server_span.attribute("http.request.method"), Some("POST"));
    assert_eq!(server_span.attribute("http.route"), Some("/graphql"));
    assert_eq!(
        server_span.attribute("http.response.status_code"),
        Some("200")
    );

    let operation = only(&spans, |span| span.name == "query Near");
    assert_eq!(operation.parent_span_id, server_span.span_id);
    assert_eq!(operation.attribute("graphql.operation.type"), Some("query"));
    assert_eq!(operation.attribute("graphql.operation.name"), Some("Near"));
    assert_eq!(
        operation.attribute("graphql.document.hash").map(str::len),
        Some(64),
        "{operation:#?}"
    );

    let station = only(&spans, |span| span.name == "SELECT stations");
    assert_eq!(station.parent_span_id, operation.span_id);
    assert_eq!(station.kind, SpanKind::Client as i32);
    assert_eq!(station.attribute("db.system.name"), Some("postgresql"));
    assert_eq!(
        station.attribute("db.namespace"),
        Some(database.name.as_str())
    );
    assert_eq!(station.attribute("db.operation.name"), Some("SELECT"));
    assert_eq!(station.attribute("db.collection.name"), Some("stations"));
    let statement = station
        .attribute("db.query.text")
        .expect("the statement's text");
    assert!(
        statement.contains("$1"),
        "placeholders, not values: {statement}"
    );
    assert_eq!(station.attribute("db.response.returned_rows"), Some("1"));

    // The latest observation is read by a batch, whose statement sits under it.
    let batch = only(&spans, |span| span.name == "load LatestObservation");
    assert_eq!(batch.parent_span_id, operation.span_id);
    assert_eq!(batch.attribute("keys"), Some("1"));
    let latest = only(&spans, |span| {
        span.kind == SpanKind::Client as i32 && span.parent_span_id == batch.span_id
    });
    assert!(
        latest
            .attribute("db.query.text")
            .is_some_and(|text| text.contains("observations")),
        "{latest:#?}"
    );
    assert_eq!(
        latest.attribute("db.response.returned_rows"),
        Some("0"),
        "no observation yet"
    );
    // Without telemetry.field_spans, fields have no spans.
    assert!(
        !spans.iter().any(|span| span.name.starts_with("resolve ")),
        "{spans:#?}"
    );

    // Each statement waited for its connection, in a span of its own beside it.
    let waits: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.name == "wait for a database connection")
        .collect();
    assert!(
        waits
            .iter()
            .any(|wait| wait.parent_span_id == operation.span_id)
            && waits
                .iter()
                .any(|wait| wait.parent_span_id == batch.span_id),
        "{spans:#?}"
    );

    // The request's log line carries the trace's ids.
    let request_id = request_id.expect("a request id");
    let line = server
        .wait_for(
            |line| line.contains("request completed") && line.contains(&request_id),
            Duration::from_secs(10),
        )
        .expect("the request's log line");
    let line: Value = serde_json::from_str(&line).expect("a JSON log line");
    let request = &line["spans"][0];
    assert_eq!(request["trace_id"], CALLER_TRACE, "{line}");
    assert_eq!(request["span_id"], server_span.span_id.as_str(), "{line}");

    // The mutation's trace, and everything sent: no token, password or parameter value.
    let mutation = receiver
        .trace("11111111111111111111111111111111", |spans| {
            spans.iter().any(|span| span.name == "INSERT stations")
        })
        .await;
    let insert = only(&mutation, |span| span.name == "INSERT stations");
    assert_eq!(insert.attribute("db.operation.name"), Some("INSERT"));
    assert_eq!(
        insert.attribute("db.response.returned_rows"),
        Some("1"),
        "the row it returned"
    );
    only(&mutation, |span| span.name == "mutation AddOne");
    for span in receiver.all() {
        for (key, value) in &span.attributes {
            for secret in [
                secret_name,
                "NEEDLE-7C1E",
                "not-a-real-token",
                "stations_test:",
            ] {
                assert!(
                    !value.contains(secret),
                    "{key} of {} holds {secret:?}: {value}",
                    span.name
                );
            }
        }
    }
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutations_trace_holds_its_delivery_on_every_replica() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let (mut first, first_address) = traced_server(&database, &receiver, &[]);
    let (mut second, second_address) = traced_server(&database, &receiver, &[]);
    let addresses = [first_address.as_str(), second_address.as_str()];
    wait_until_listening(&addresses).await;
    let mut subscribers = Vec::new();
    for address in addresses {
        let mut client = LiveClient::connect(address, TRANSPORT_WS, json!({}))
            .await
            .expect("connection_init accepted");
        client
            .subscribe(
                "s",
                "subscription { stationChanged { kind id } }",
                json!({}),
            )
            .await;
        subscribers.push(client);
    }
    wait_until_subscribed(&addresses, 2).await;

    let trace = "5ce0e9a56015fec5aadfa328ae398115";
    let (created, _) = post_traced(
        &first_address,
        &format!("00-{trace}-{CALLER_SPAN}-01"),
        "mutation Add($input: CreateStationInput!) { createStation(input: $input) { id } }",
        json!({ "input": { "code": "FANOUT-1", "name": "Fan-out", "lat": 3.0, "lng": 4.0 } }),
    )
    .await;
    assert!(created.get("errors").is_none(), "{created}");
    for subscriber in &mut subscribers {
        let event = subscriber.next_event("s", Duration::from_secs(10)).await;
        assert_eq!(
            event["data"]["stationChanged"]["kind"], "CREATED",
            "{event}"
        );
    }

    let spans = receiver
        .trace(trace, |spans| {
            spans
                .iter()
                .filter(|span| span.name == "deliver stations_changed")
                .count()
                == 2
        })
        .await;
    let mutation = only(&spans, |span| span.name == "mutation Add");
    let deliveries: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.name == "deliver stations_changed")
        .collect();
    for delivery in &deliveries {
        assert_eq!(delivery.parent_span_id, mutation.span_id, "{delivery:#?}");
        assert_eq!(delivery.kind, SpanKind::Consumer as i32);
        assert_eq!(delivery.attribute("stations.live.subscriptions"), Some("1"));
        assert_eq!(
            delivery.attribute("messaging.destination.name"),
            Some("stations_changed")
        );
        let delay: i64 = delivery
            .attribute("stations.live.delay_ms")
            .and_then(|delay| delay.parse().ok())
            .expect("the delay after the write");
        assert!((0..10_000).contains(&delay), "{delay} ms");
        // Its replica read the station back, inside the delivery.
        only(&spans, |span| {
            span.parent_span_id == delivery.span_id && span.name == "SELECT stations"
        });
    }
    assert_ne!(
        deliveries[0].instance, deliveries[1].instance,
        "one delivery per replica"
    );
    assert!(
        spans
            .iter()
            .any(|span| span.name == "INSERT stations" && span.instance == mutation.instance)
    );
    first.terminate();
    second.terminate();
}

#[tokio::test]
async fn a_traced_write_the_database_refuses_is_explained_as_without_tracing() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let (mut server, address) = traced_server(&database, &receiver, &[]);
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let create = "mutation($input: CreateStationInput!) { createStation(input: $input) { id } }";
    let input = json!({ "input": { "code": "TWICE-1", "name": "Twice", "lat": 1.0, "lng": 1.0 } });
    let (first, _) = post_traced(&address, &traceparent, create, input.clone()).await;
    let id = first["data"]["createStation"]["id"].clone();
    assert!(id.is_string(), "{first}");

    // The INSERT fails inside the traced transaction; the lookup that names the code runs after.
    let (again, _) = post_traced(&address, &traceparent, create, input).await;
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "CONFLICT",
        "{again}"
    );
    assert!(
        again["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("\"TWICE-1\"")),
        "{again}"
    );
    let (many, _) = post_traced(
        &address,
        &traceparent,
        "mutation($inputs: [CreateStationInput!]!) { createStations(inputs: $inputs) { id } }",
        json!({ "inputs": [
            { "code": "NEW-2", "name": "New", "lat": 1.0, "lng": 1.0 },
            { "code": "TWICE-1", "name": "Twice", "lat": 1.0, "lng": 1.0 },
        ] }),
    )
    .await;
    assert_eq!(
        many["errors"][0]["extensions"]["field"], "inputs[1].code",
        "{many}"
    );

    let record = "mutation($inputs: [ObservationInput!]!) { recordObservations(inputs: $inputs) { inserted } }";
    let (unknown, _) = post_traced(
        &address,
        &traceparent,
        record,
        json!({ "inputs": [{ "stationId": 999999, "observedAt": "2026-01-01T00:00:00Z", "temperatureC": 1.0 }] }),
    )
    .await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["field"], "inputs[0].stationId",
        "{unknown}"
    );

    // A delete with its observations: a savepoint inside the traced transaction.
    let (recorded, _) = post_traced(
        &address,
        &traceparent,
        record,
        json!({ "inputs": [{ "stationId": id.as_str().unwrap().parse::<i64>().unwrap(),
                              "observedAt": "2026-01-01T00:00:00Z", "temperatureC": 1.0 }] }),
    )
    .await;
    assert_eq!(
        recorded["data"]["recordObservations"]["inserted"], 1,
        "{recorded}"
    );
    let (deleted, _) = post_traced(
        &address,
        &traceparent,
        "mutation($id: ID!) { deleteStation(id: $id, cascade: true) }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(deleted["data"]["deleteStation"], id, "{deleted}");
    let (gone, _) = post_traced(
        &address,
        &traceparent,
        "query($id: ID!) { station(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(gone["data"]["station"], Value::Null, "{gone}");
    // The writes above ran in traced transactions (not on the pool, as without tracing).
    receiver
        .trace(CALLER_TRACE, |spans| {
            spans.iter().any(|span| {
                span.attribute("db.query.text")
                    .is_some_and(|text| text.contains("set_config('stations_api.traceparent'"))
            })
        })
        .await;
    server.terminate();
}

/// Runs `query <name>`, a count of the stations, over `client`'s socket, checks the answer
/// (none yet), and closes the socket: its span ends, and is sent, when it closes.
async fn count_stations_then_close(mut client: LiveClient, name: &str) {
    client
        .subscribe(
            "q",
            &format!("query {name} {{ stations(first: 1) {{ totalCount }} }}"),
            json!({}),
        )
        .await;
    let answer = client.next_event("q", Duration::from_secs(5)).await;
    assert_eq!(answer["data"]["stations"]["totalCount"], 0, "{answer}");
    client.close().await;
}

#[tokio::test]
async fn operations_over_a_websocket_join_the_trace_of_its_upgrade() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let (mut server, address) = traced_server(
        &database,
        &receiver,
        &[("APP__TELEMETRY__TRUST_INCOMING_SAMPLING", "true")],
    );
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let mut client =
        LiveClient::open_with_headers(&address, TRANSPORT_WS, &[("traceparent", &traceparent)])
            .await;
    client
        .send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    let ack = client
        .next_message(Duration::from_secs(5))
        .await
        .expect("an ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    count_stations_then_close(client, "Counted").await;

    let spans = receiver
        .trace(CALLER_TRACE, |spans| {
            spans.iter().any(|span| span.name == "GraphQL WebSocket")
                && spans.iter().any(|span| span.name == "query Counted")
        })
        .await;
    let socket = only(&spans, |span| span.name == "GraphQL WebSocket");
    assert_eq!(socket.parent_span_id, CALLER_SPAN);
    assert_eq!(socket.kind, SpanKind::Server as i32);
    let operation = only(&spans, |span| span.name == "query Counted");
    assert_eq!(operation.parent_span_id, socket.span_id);
    server.terminate();
}

#[tokio::test]
async fn with_field_spans_each_field_is_a_span_under_its_parent_field() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let (mut server, address) = traced_server(
        &database,
        &receiver,
        &[
            ("APP__TELEMETRY__TRUST_INCOMING_SAMPLING", "true"),
            ("APP__TELEMETRY__FIELD_SPANS", "true"),
        ],
    );
    let (created, _) = post_traced(
        &address,
        "00-33333333333333333333333333333333-2222222222222222-00",
        "mutation($inputs: [CreateStationInput!]!) { createStations(inputs: $inputs) { id } }",
        json!({ "inputs": [
            { "code": "FIELD-1", "name": "First", "lat": 1.0, "lng": 1.0 },
            { "code": "FIELD-2", "name": "Second", "lat": 2.0, "lng": 2.0 },
        ] }),
    )
    .await;
    assert!(created.get("errors").is_none(), "{created}");

    // A page's edges, which without field spans are answered in one pass.
    let (page, _) = post_traced(
        &address,
        &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        "query Page { stations(first: 2) { edges { node { code title: name } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        page["data"]["stations"]["edges"],
        json!([
            { "node": { "code": "FIELD-1", "title": "First" } },
            { "node": { "code": "FIELD-2", "title": "Second" } },
        ]),
        "{page}"
    );

    let spans = receiver
        .trace(CALLER_TRACE, |spans| {
            spans.iter().any(|span| span.name == "query Page")
                && spans
                    .iter()
                    .filter(|span| span.name == "resolve Station.name")
                    .count()
                    == 2
        })
        .await;
    let operation = only(&spans, |span| span.name == "query Page");
    let stations = only(&spans, |span| span.name == "resolve Query.stations");
    assert_eq!(stations.parent_span_id, operation.span_id);
    assert_eq!(stations.attribute("graphql.field.name"), Some("stations"));
    assert_eq!(
        stations.attribute("graphql.field.type"),
        Some("StationConnection!")
    );
    let second_name = only(&spans, |span| {
        span.attribute("graphql.field.path") == Some("stations.edges.1.node.title")
    });
    assert_eq!(second_name.name, "resolve Station.name");
    assert_eq!(
        second_name.attribute("graphql.parent.name"),
        Some("Station")
    );
    // Each field's span sits under its parent field's, up to the operation's.
    let mut ancestor = second_name;
    let mut names = Vec::new();
    while ancestor.span_id != operation.span_id {
        names.push(ancestor.name.as_str());
        ancestor = only(&spans, |span| span.span_id == ancestor.parent_span_id);
    }
    assert_eq!(
        names,
        [
            "resolve Station.name",
            "resolve StationEdge.node",
            "resolve StationConnection.edges",
            "resolve Query.stations",
        ]
    );
    server.terminate();
}

#[tokio::test]
async fn a_traceparent_in_connection_init_makes_the_sockets_operations_join_the_callers_trace() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let (mut server, address) = traced_server(
        &database,
        &receiver,
        &[("APP__TELEMETRY__TRUST_INCOMING_SAMPLING", "true")],
    );
    // What a browser's graphql-ws client can send: no header on the upgrade, the trace in the
    // payload.
    let client = LiveClient::connect(
        &address,
        TRANSPORT_WS,
        json!({ "traceparent": format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01") }),
    )
    .await
    .expect("connection_init accepted");
    count_stations_then_close(client, "FromBrowser").await;

    let spans = receiver
        .trace(CALLER_TRACE, |spans| {
            spans.iter().any(|span| span.name == "query FromBrowser")
        })
        .await;
    let operation = only(&spans, |span| span.name == "query FromBrowser");
    assert_eq!(operation.parent_span_id, CALLER_SPAN);
    assert!(
        !spans.iter().any(|span| span.name == "GraphQL WebSocket"),
        "the socket itself stays in a trace of its own: {spans:#?}"
    );
    server.terminate();
}

/// The request's log line, read once the request has been answered: whether it names a trace
/// says whether the request was traced, without waiting for an export that may never come.
async fn traced_by(server: &mut ServerProcess, address: &str, traceparent: &str) -> Value {
    let (body, request_id) = post_traced(
        address,
        traceparent,
        "{ stations(first: 1) { totalCount } }",
        json!({}),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let request_id = request_id.expect("a request id");
    let line = server
        .wait_for(
            |line| line.contains("request completed") && line.contains(&request_id),
            Duration::from_secs(10),
        )
        .expect("the request's log line");
    let line: Value = serde_json::from_str(&line).expect("a JSON log line");
    line["spans"][0]["trace_id"].clone()
}

#[tokio::test]
async fn a_callers_sampled_flag_decides_only_when_trusted() {
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let sampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let unsampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");

    // Nothing is kept (ratio 0), and the caller's "sampled" does not change that.
    let (mut server, address) = traced_server(
        &database,
        &receiver,
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    assert_eq!(
        traced_by(&mut server, &address, &sampled).await,
        Value::Null
    );
    server.terminate();

    // Trusted: the caller's flag decides, either way.
    let (mut server, address) = traced_server(
        &database,
        &receiver,
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    assert_eq!(
        traced_by(&mut server, &address, &sampled).await,
        CALLER_TRACE
    );
    assert_eq!(
        traced_by(&mut server, &address, &unsampled).await,
        Value::Null
    );
    server.terminate();
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_is_counted() {
    let database = TestDatabase::migrated().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (mut server, address) = ServerProcess::start(
        &database.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed.as_str()),
            ("APP__TELEMETRY__OTLP__EXPORT_INTERVAL_MS", "50"),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let body = crate::helpers::post_graphql(
            &client,
            &address,
            &json!({ "query": "{ stations(first: 1) { totalCount } }" }),
        )
        .await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    let warning = server
        .wait_for(
            |line| line.contains("stations_trace_export_failed_spans_total"),
            Duration::from_secs(30),
        )
        .expect("one warning that spans cannot be sent");
    // The reason, without the collector's URL (which may hold credentials of its own).
    assert!(!warning.contains(&closed), "{warning}");
    let metrics = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics");
    assert!(
        crate::helpers::metric_value(&metrics, "stations_trace_export_failed_spans_total") > 0,
        "{metrics}"
    );
    server.terminate();
}

// Multi-threaded: the receiver answers while the test waits for doctor's process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_when_the_trace_collector_cannot_be_reached_and_how_to_fix_it() {
    let database = TestDatabase::migrated().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (output, stdout, _) = run(stations_api(&["doctor"])
        .env("DATABASE_URL", &database.url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &closed));
    assert_eq!(output.status.code(), Some(11), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "✗ trace collector accepts spans: nothing accepts spans at {closed}/v1/traces"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: start the collector, or correct telemetry.otlp.endpoint"),
        "{stdout}"
    );

    let receiver = Receiver::start().await;
    let (output, stdout, _) = run(stations_api(&["doctor"])
        .env("DATABASE_URL", &database.url)
        .env("APP__TELEMETRY__OTLP__ENDPOINT", &receiver.endpoint));
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "✓ trace collector accepts spans: {}/v1/traces accepts OTLP spans",
            receiver.endpoint
        )),
        "{stdout}"
    );
}
