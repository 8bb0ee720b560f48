//! Queries on a real streaming standby (`database.read_urls`), made from a throwaway primary of
//! the test's own with `pg_basebackup -R` (the suite's role may not replicate), and
//! read-your-writes tokens against it.

use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::sqlx::{self, Connection, PgConnection};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, error_field, run, spawn_app_with, stations_api};
use crate::scram_cluster::ScramCluster;

pub const USER: &str = "stations";
pub const PASSWORD: &str = "standby-Passw0rd";
const CREATE: &str =
    "mutation($input: CreateStationInput!) { createStation(input: $input) { id code } }";
const CODES: &str = "{ stations(first: 100) { edges { node { code } } } }";

/// A primary, its standby, and a server that reads from the standby.
struct Replicated {
    app: TestApp,
    primary: ScramCluster,
    standby: ScramCluster,
}

impl Replicated {
    async fn start(customize: impl FnOnce(&mut stations_api::configuration::Settings)) -> Self {
        let (primary, standby) = start_pair().await;
        let primary_url = primary.url(USER, Some(PASSWORD), "stations");
        let standby_url = standby.url(USER, Some(PASSWORD), "stations");
        let app = spawn_app_with(|settings| {
            settings.database.url = SecretString::from(primary_url);
            settings.database.read_urls = vec![SecretString::from(standby_url)];
            settings.database.migrate_on_start = true;
            settings.database.standby_check_interval_ms = 50;
            customize(settings);
        })
        .await;
        let replicated = Self {
            app,
            primary,
            standby,
        };
        replicated.wait_for_standby_state("streaming").await;
        replicated
    }

    /// Waits until `/health/ready` reports the standby in `state` (it stays 200 whatever the
    /// standby's state).
    async fn wait_for_standby_state(&self, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let response = self
                .app
                .client
                .get(format!("{}/health/ready", self.app.address))
                .send()
                .await
                .expect("GET /health/ready");
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.expect("a JSON answer");
            if body["standbys"][0]["state"] == state {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the standby is not {state} after 15 s: {body}"
            );
            // Readiness answers are reused for a second.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends one operation with `extensions`; the answer's headers and body.
    async fn post(
        &self,
        query: &str,
        variables: Value,
        extensions: Value,
    ) -> (reqwest::header::HeaderMap, Value) {
        let response = self
            .app
            .client
            .post(format!("{}/graphql", self.app.address))
            .json(&json!({ "query": query, "variables": variables, "extensions": extensions }))
            .send()
            .await
            .expect("send the GraphQL request");
        let headers = response.headers().clone();
        (headers, response.json().await.expect("a JSON answer"))
    }

    /// Creates a station; the read-your-writes token its answer carries.
    async fn create(&self, code: &str) -> String {
        let input = json!({ "input": { "code": code, "name": code, "lat": 1.0, "lng": 2.0 } });
        let (headers, body) = self.post(CREATE, input, json!({})).await;
        assert_eq!(body["data"]["createStation"]["code"], code, "{body}");
        let token = body["extensions"]["readYourWrites"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {body}"))
            .to_owned();
        assert_eq!(headers["x-read-your-writes"], token.as_str());
        token
    }

    async fn codes(&self, extensions: Value) -> Vec<String> {
        let (_, body) = self.post(CODES, json!({}), extensions).await;
        body["data"]["stations"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("no stations in {body}"))
            .iter()
            .map(|edge| edge["node"]["code"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn metrics(&self) -> String {
        self.app
            .client
            .get(format!("{}/metrics", self.app.address))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics page")
    }

    /// A superuser's session on the standby, its replay paused until it resumes it.
    async fn pause_replay(&self) -> PgConnection {
        let mut session = self.standby_session().await;
        set_replay(&mut session, true).await;
        session
    }

    /// A superuser's connection to the standby, to pause and resume its replay.
    async fn standby_session(&self) -> PgConnection {
        PgConnection::connect(&self.standby.url(USER, Some(PASSWORD), "stations"))
            .await
            .expect("connect to the standby")
    }

    /// Query operations that read the standby so far.
    async fn standby_reads(&self) -> u64 {
        let series = format!(
            "stations_db_reads_total{{target=\"127.0.0.1:{}/stations\"}}",
            self.standby.port
        );
        counted(&self.metrics().await, &series)
    }

    /// Reads that went to the primary for `reason` so far.
    async fn fallbacks(&self, reason: &str) -> u64 {
        let series = format!("stations_db_read_fallbacks_total{{reason=\"{reason}\"}}");
        counted(&self.metrics().await, &series)
    }
}

/// A primary with the stations database, and its standby; `pg_basebackup` blocks, so it runs
/// off the runtime's threads.
pub async fn start_pair() -> (ScramCluster, ScramCluster) {
    let primary = ScramCluster::start(USER, PASSWORD, "stations").await;
    tokio::task::spawn_blocking(move || {
        let standby = primary.start_standby(USER, PASSWORD);
        (primary, standby)
    })
    .await
    .expect("the standby starts")
}

/// The value of the metric line that starts with `series` (name and labels), 0 when absent.
fn counted(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

async fn set_replay(session: &mut PgConnection, paused: bool) {
    let call = if paused {
        "SELECT pg_wal_replay_pause()"
    } else {
        "SELECT pg_wal_replay_resume()"
    };
    sqlx::query(call)
        .execute(session)
        .await
        .expect("pause or resume replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_the_standby_and_a_token_reads_the_write_it_names() {
    let replicated = Replicated::start(|_| {}).await;
    let before = replicated.standby_reads().await;
    let token = replicated.create("RYW1").await;
    let codes = replicated.codes(json!({ "readYourWrites": token })).await;
    assert_eq!(codes, ["RYW1"]);
    assert!(
        replicated.standby_reads().await > before,
        "the query did not read the standby"
    );
    drop(replicated.primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_yet_replayed_waits_for_the_standby_then_reads_the_primary() {
    let replicated = Replicated::start(|settings| {
        settings.database.read_your_writes_wait_ms = 1_000;
    })
    .await;
    let mut session = replicated.pause_replay().await;
    let token = replicated.create("LATE").await;
    // Replay stays paused: after the wait, the primary answers, with the write.
    let codes = replicated.codes(json!({ "readYourWrites": token })).await;
    assert_eq!(codes, ["LATE"]);
    assert!(replicated.fallbacks("not_replayed").await >= 1);

    // Resumed while the query waits: the standby answers it, with the write.
    let token = replicated.create("SOON").await;
    let before = replicated.standby_reads().await;
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        set_replay(&mut session, false).await;
        session
    });
    let codes = replicated.codes(json!({ "readYourWrites": token })).await;
    assert_eq!(codes, ["LATE", "SOON"]);
    assert_eq!(replicated.standby_reads().await, before + 1);
    resume.await.expect("replay resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_standby_serves_no_queries_until_it_catches_up() {
    let replicated = Replicated::start(|settings| {
        settings.database.max_standby_lag_bytes = 4096;
    })
    .await;
    let mut session = replicated.pause_replay().await;
    for index in 0..50 {
        replicated.create(&format!("LAG{index}")).await;
    }
    let body = replicated.wait_for_standby_state("lagging").await;
    assert_eq!(body["status"], "degraded", "{body}");
    // Without a token, a query reads the primary, which has every row.
    assert_eq!(replicated.codes(json!({})).await.len(), 50);
    assert!(replicated.fallbacks("no_usable_standby").await >= 1);
    set_replay(&mut session, false).await;
    let body = replicated.wait_for_standby_state("streaming").await;
    assert_eq!(body["status"], "ready", "{body}");
}

const RECORD: &str = "mutation($inputs: [ObservationInput!]!) {
    recordObservations(inputs: $inputs) { inserted } }";
const SERIES: &str = "{ observationSeries(stations: { codes: [\"KEEP\"] },
    since: \"2026-05-01T00:00:00Z\", until: \"2026-05-01T03:00:00Z\", bucket: HOUR) {
    series { count temperatureC { avg } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_stopped_under_load_loses_no_query() {
    let replicated = Replicated::start(|_| {}).await;
    replicated.create("KEEP").await;
    let (_, page) = replicated
        .post(
            "{ stations(first: 1) { edges { node { id } } } }",
            json!({}),
            json!({}),
        )
        .await;
    let id = &page["data"]["stations"]["edges"][0]["node"]["id"];
    // A reading in each of three hours, which series read from the rollup.
    let readings: Vec<Value> = (0..3)
        .map(|hour| {
            json!({ "stationId": id,
                    "observedAt": format!("2026-05-01T0{hour}:30:00Z"), "temperatureC": 2.5 })
        })
        .collect();
    let (_, recorded) = replicated
        .post(RECORD, json!({ "inputs": readings }), json!({}))
        .await;
    assert_eq!(
        recorded["data"]["recordObservations"]["inserted"], 3,
        "{recorded}"
    );
    // Replayed, so that the standby's answers hold the row too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Pages, and series, whose rows are read as they stream in: a failed standby makes the
    // series start over on the primary.
    let queries = {
        let address = replicated.app.address.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for index in 0..200 {
                let query = if index % 2 == 0 { CODES } else { SERIES };
                let body: Value = client
                    .post(format!("{address}/graphql"))
                    .json(&json!({ "query": query }))
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("a JSON answer");
                answers.push(body);
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let standby = tokio::task::spawn_blocking(move || {
        replicated.standby.stop_immediately();
        replicated.standby
    })
    .await
    .expect("the standby stops");
    for (index, body) in queries.await.expect("the queries ran").iter().enumerate() {
        if index % 2 == 0 {
            assert_eq!(
                body["data"]["stations"]["edges"][0]["node"]["code"], "KEEP",
                "{body}"
            );
        } else {
            let series = &body["data"]["observationSeries"]["series"][0];
            assert_eq!(series["count"], json!([1, 1, 1]), "{body}");
            assert_eq!(
                series["temperatureC"]["avg"],
                json!([2.5, 2.5, 2.5]),
                "{body}"
            );
        }
    }
    drop(standby);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_token_is_bad_user_input() {
    let replicated = Replicated::start(|_| {}).await;
    for token in [json!("0/5E396628"), json!(42), json!("zz")] {
        let (_, body) = replicated
            .post(CODES, json!({}), json!({ "readYourWrites": token }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(error_field(&body), "extensions.readYourWrites", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_explains_a_standby_it_cannot_sign_in_to() {
    let (primary, standby) = start_pair().await;
    let (output, _, migrate_errors) = run(stations_api(&["migrate", "up"]).env(
        "DATABASE_URL",
        primary.url(USER, Some(PASSWORD), "stations"),
    ));
    assert!(output.status.success(), "{migrate_errors}");
    let (output, stdout, stderr_again) = run(stations_api(&["doctor"])
        .env(
            "DATABASE_URL",
            primary.url(USER, Some(PASSWORD), "stations"),
        )
        .env(
            "APP__DATABASE__READ_URLS",
            standby.url(USER, Some("Wr0ng-guess"), "stations"),
        ));
    assert_eq!(output.status.code(), Some(10), "{stdout}{stderr_again}");
    for fact in [
        "✗ standbys replay the primary",
        "password authentication failed for user \"stations\"",
        "database.read_urls[0]",
    ] {
        assert!(stdout.contains(fact), "expected {fact:?} in:\n{stdout}");
    }
    for text in [&stdout, &stderr_again] {
        assert!(
            !text.contains("Wr0ng-guess") && !text.contains(PASSWORD),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_changes_as_without_standbys() {
    use crate::live::{LiveClient, TRANSPORT_WS, wait_until_subscribed};

    let replicated = Replicated::start(|_| {}).await;
    let mut client = LiveClient::connect(&replicated.app.address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_init accepted");
    client
        .subscribe(
            "1",
            "subscription { stationChanged { kind station { code } } }",
            json!({}),
        )
        .await;
    wait_until_subscribed(&[&replicated.app.address], 1).await;
    replicated.create("HEARD").await;
    let event = client.next_event("1", Duration::from_secs(5)).await;
    assert_eq!(
        event["data"]["stationChanged"]["station"]["code"], "HEARD",
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apollo_client_and_urql_read_their_own_writes_with_the_documented_link_and_exchange() {
    let replicated = Replicated::start(|settings| {
        settings.database.read_your_writes_wait_ms = 100;
    })
    .await;
    let mut session = replicated.pause_replay().await;
    let clients = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    crate::helpers::run_node_script(
        clients.join("read-your-writes.mjs"),
        vec![
            "--url".into(),
            format!("{}/graphql", replicated.app.address),
        ],
    )
    .await;
    assert_eq!(
        replicated.fallbacks("not_replayed").await,
        2,
        "each client's read of its write waited, then read the primary"
    );
    set_replay(&mut session, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_read_from_primary_reads_the_primary_without_a_token() {
    let replicated = Replicated::start(|_| {}).await;
    let mut session = replicated.pause_replay().await;
    replicated.create("FRESH").await;
    // Without a token, the standby answers, without the write.
    assert!(replicated.codes(json!({})).await.is_empty());
    let response = replicated
        .app
        .client
        .post(format!("{}/graphql", replicated.app.address))
        .header("X-Read-From", "primary")
        .json(&json!({ "query": CODES }))
        .send()
        .await
        .expect("send the GraphQL request");
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(
        body["data"]["stations"]["edges"][0]["node"]["code"], "FRESH",
        "{body}"
    );
    assert_eq!(replicated.fallbacks("asked").await, 1);
    set_replay(&mut session, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_serves_no_queries() {
    let replicated = Replicated::start(|_| {}).await;
    let mut session = replicated.standby_session().await;
    sqlx::query("SELECT pg_promote()")
        .execute(&mut session)
        .await
        .expect("promote the standby");
    let body = replicated.wait_for_standby_state("promoted").await;
    assert_eq!(body["status"], "degraded", "{body}");
    // Written on the old primary only: a query that read the promoted copy would miss it.
    replicated.create("AFTER").await;
    assert_eq!(replicated.codes(json!({})).await, ["AFTER"]);
    assert!(replicated.fallbacks("no_usable_standby").await >= 1);
}
