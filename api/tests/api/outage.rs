//! PostgreSQL going away under load, and the server going away gracefully.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sea_orm::sqlx::{self, Connection, PgConnection};
use serde_json::{Value, json};

use crate::helpers::{ServerProcess, TestDatabase, get_status};
use crate::scram_cluster::ScramCluster;

const PASSWORD: &str = "outage-Passw0rd";

/// What a client was told about one createStation.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Created,
    Refused(String),
    /// The connection failed or the body was unreadable.
    Lost,
}

/// Each code sent: what the client was told, how long that took, and when it came.
type Answers = Arc<Mutex<BTreeMap<String, (Answer, Duration, Instant)>>>;

async fn create(client: &reqwest::Client, address: &str, code: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let sent = client
        .post(format!("{address}/graphql"))
        .json(&json!({
            "query": "mutation($input: CreateStationInput!) { createStation(input: $input) { id } }",
            "variables": { "input": { "code": code, "name": format!("Outage {code}"), "lat": 12.5, "lng": -3.25 } }
        }))
        .send()
        .await;
    let answer = match sent {
        Ok(response) => match response.json::<Value>().await {
            Ok(body) if body["data"]["createStation"]["id"].is_string() => Answer::Created,
            Ok(body) => Answer::Refused(
                body["errors"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            ),
            Err(_) => Answer::Lost,
        },
        Err(_) => Answer::Lost,
    };
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_loses_no_acknowledged_write_and_the_server_recovers() {
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;
    let url = cluster.url("stations", Some(PASSWORD), "stations");
    let (mut server, address) = ServerProcess::start(
        &url,
        &[
            ("APP__DATABASE__MIGRATE_ON_START", "true"),
            ("APP__DATABASE__ACQUIRE_TIMEOUT_MS", "1000"),
            ("APP__DATABASE__MAX_CONNECTIONS", "4"),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answers: Answers = Arc::default();
    let started = Instant::now();
    let load_for = Duration::from_secs(9);

    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (client, address, answers) =
                (client.clone(), address.clone(), Arc::clone(&answers));
            tokio::spawn(async move {
                let mut sequence = 0;
                while started.elapsed() < load_for {
                    sequence += 1;
                    let code = format!("W{worker}-{sequence}");
                    let (answer, took) = create(&client, &address, &code).await;
                    answers
                        .lock()
                        .unwrap()
                        .insert(code, (answer, took, Instant::now()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_immediately();
        cluster
    })
    .await
    .unwrap();
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // During the outage: liveness holds, readiness says no, requests fail fast.
    assert_eq!(get_status(&client, &address, "/health/live").await, 200);
    assert_eq!(get_status(&client, &address, "/health/ready").await, 503);
    let (answer, took) = create(&client, &address, "DURING").await;
    assert_eq!(answer, Answer::Refused("SERVICE_UNAVAILABLE".to_owned()));
    assert!(
        took < Duration::from_millis(500),
        "failed in {took:?}, not fast"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    let restarted_at = Instant::now();
    for worker in workers {
        worker.await.unwrap();
    }

    // Answers normally again within a few seconds of the restart: the first write the load
    // got acknowledged after it.
    let recovered = answers
        .lock()
        .unwrap()
        .values()
        .filter(|(answer, _, at)| *answer == Answer::Created && *at > restarted_at)
        .map(|(_, took, at)| at.duration_since(restarted_at).saturating_sub(*took))
        .min()
        .expect("writes succeed after the restart");
    assert!(
        recovered < Duration::from_secs(5),
        "recovered after {recovered:?}"
    );
    assert_eq!(create(&client, &address, "AFTER").await.0, Answer::Created);

    // Every acknowledged write is there, whole; nothing refused is there in part.
    let mut connection = PgConnection::connect(&url).await.unwrap();
    let stored: Vec<(String, String, f64, f64)> =
        sqlx::query_as("SELECT code, name, lat, lng FROM stations")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    let stored: BTreeMap<String, (String, f64, f64)> = stored
        .into_iter()
        .map(|(code, name, lat, lng)| (code, (name, lat, lng)))
        .collect();
    let answers = answers.lock().unwrap();
    let (mut acknowledged, mut failed, mut found) = (0, 0, 0);
    for (code, (answer, _, _)) in answers.iter() {
        let row = stored.get(code);
        if let Some((name, lat, lng)) = row {
            found += 1;
            assert_eq!(
                (name.as_str(), *lat, *lng),
                (format!("Outage {code}").as_str(), 12.5, -3.25),
                "{code} is whole"
            );
        }
        match answer {
            Answer::Created => {
                acknowledged += 1;
                assert!(row.is_some(), "{code} was acknowledged but is missing");
            }
            Answer::Refused(_) | Answer::Lost => failed += 1,
        }
    }
    let during_outage = answers
        .values()
        .filter(|(_, _, at)| *at > stopped_at && *at < restarted_at)
        .count();
    eprintln!(
        "outage under load: sent {}, acknowledged {acknowledged}, failed {failed}, found {found} \
         (answered during the outage: {during_outage}); answering normally {recovered:?} after the restart",
        answers.len()
    );
    assert!(
        acknowledged > 0 && failed > 0,
        "the load ran on both sides of the outage"
    );

    assert!(server.terminate().success());
    let unreachable = server
        .log
        .iter()
        .filter(|line| line.contains("the database is unreachable"))
        .count();
    let back = server
        .log
        .iter()
        .filter(|line| line.contains("the database is reachable again"))
        .count();
    assert_eq!(
        (unreachable, back),
        (1, 1),
        "said once per change:\n{}",
        server.log.join("\n")
    );
    drop(cluster);
}

/// PostgreSQL stopped abruptly while the server is idle: the pool's connection is dead and new
/// ones are refused. The first request must learn that at once, not after the pool has retried
/// for `database.acquire_timeout_ms`; and in production readiness says why to the log only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_after_postgresql_stops_is_told_at_once_that_it_is_unavailable() {
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;
    let url = cluster.url("stations", Some(PASSWORD), "stations");
    let (mut server, address) = ServerProcess::start(
        &url,
        &[
            ("APP__DATABASE__MIGRATE_ON_START", "true"),
            ("APP__DATABASE__ACQUIRE_TIMEOUT_MS", "3000"),
            ("APP__SERVER__HEALTH_DETAILS", "false"),
        ],
    );
    let client = reqwest::Client::new();
    assert_eq!(create(&client, &address, "BEFORE").await.0, Answer::Created);
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_immediately();
        cluster
    })
    .await
    .unwrap();
    // Idle for over a second, the pooled connection is pinged before use: the ping fails, and
    // the server refuses to wait for a new connection.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let started = Instant::now();
    let body: Value = client
        .post(format!("{address}/graphql"))
        .json(&json!({ "query": "{ stations { totalCount } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SERVICE_UNAVAILABLE",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("the database is unavailable"),
        "{body}"
    );
    assert!(took < Duration::from_millis(700), "answered after {took:?}");

    // Readiness: a generic reason for any caller, the details for the operator's log.
    let ready = client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready = ready.text().await.unwrap();
    let port = url::Url::parse(&url).unwrap().port().unwrap().to_string();
    for detail in [port.as_str(), "127.0.0.1", "stations", "database.url"] {
        assert!(!ready.contains(detail), "{detail} in {ready}");
    }
    assert!(ready.contains("the database cannot be reached"), "{ready}");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while create(&client, &address, "AFTER").await.0 != Answer::Created {
        assert!(Instant::now() < deadline, "no recovery after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.terminate().success());
    assert!(
        server
            .log
            .iter()
            .any(|line| line.contains("not ready") && line.contains(&port)),
        "the log has the details:\n{}",
        server.log.join("\n")
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let database = TestDatabase::migrated().await;
    let (mut server, address) = ServerProcess::start(
        &database.url,
        &[("APP__SERVER__SHUTDOWN_TIMEOUT_SECS", "10")],
    );
    // The request in flight waits on a lock the test holds.
    let mut blocker = PgConnection::connect(&database.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE stations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let slow = {
        let address = address.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{address}/graphql"))
                .json(&json!({ "query": "{ stations { totalCount } }" }))
                .send()
                .await
        })
    };
    database.wait_until_a_statement_waits_for_a_lock().await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    server
        .wait_for(
            |line| line.contains("shutting down"),
            Duration::from_secs(5),
        )
        .expect("the server starts shutting down");
    let refused = reqwest::Client::new()
        .get(format!("{address}/health/live"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "new connections are refused while shutting down"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    let response = slow
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["stations"]["totalCount"], 0, "{body}");
    assert!(server.terminate().success(), "the server exits cleanly");
    assert!(server.log.iter().any(|line| line.contains("\"stopped\"")));
}
