//! Several replicas, as production runs them: `stations-api serve` processes on one database,
//! behind a real nginx (Debian's package, started by the test on loopback ports) that
//! upgrades WebSockets; a change written through one replica reaches subscribers of the
//! others. And PostgreSQL restarting under the subscribers, or not up yet when they subscribe.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::helpers::{ServerProcess, TestDatabase, post_graphql};
use crate::live::{
    LiveClient, TRANSPORT_WS, live_metrics, wait_until_listening, wait_until_subscribed,
};
use crate::scram_cluster::{ScramCluster, free_port};

const SECOND: Duration = Duration::from_secs(1);
const SUBSCRIPTION: &str = "subscription { stationChanged { kind station { code } } }";
const CREATE: &str = "mutation($code: String!) { createStation(input: { code: $code, name: \"Replicated\", lat: 1, lng: 2 }) { id } }";

/// nginx in front of the replicas with compose's proxy settings
/// (`config/nginx/graphql-proxy.conf`): one port that balances over all of them, and one per
/// replica to reach a given one.
struct Nginx {
    child: Child,
    directory: PathBuf,
    balanced: u16,
    direct: Vec<u16>,
}

impl Nginx {
    /// nginx on free ports. A port found free can be taken by another test before nginx binds
    /// it; nginx then exits, and is started again on other ports.
    fn start(replicas: &[u16]) -> Self {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| std::path::Path::new(path).is_file())
            .expect("install Debian's nginx package (bash .ci/run does)");
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(nginx, replicas) {
                Ok(started) => return started,
                Err(log) if attempts < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("nginx did not start: {log}"),
            }
        }
    }

    /// Started and listening on every port, or what nginx logged when it exited.
    fn try_start(nginx: &str, replicas: &[u16]) -> Result<Self, String> {
        let directory = std::env::temp_dir().join(format!(
            "stations-nginx-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let balanced = free_port();
        let direct: Vec<u16> = replicas.iter().map(|_| free_port()).collect();
        let upstream = |name: &str, ports: &[u16]| {
            let servers: String = ports
                .iter()
                .map(|port| format!("server 127.0.0.1:{port} max_fails=1 fail_timeout=2s; "))
                .collect();
            format!("upstream {name} {{ {servers} }}\n")
        };
        // The proxy settings compose's nginx uses, from the repository.
        let proxy = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/nginx/graphql-proxy.conf")
            .canonicalize()
            .expect("config/nginx/graphql-proxy.conf");
        let server = |port: u16, upstream: &str| {
            format!(
                "server {{ listen 127.0.0.1:{port};
                    location / {{ proxy_pass http://{upstream}; include {}; }} }}\n",
                proxy.display()
            )
        };
        let mut http = upstream("api", replicas) + &server(balanced, "api");
        for (index, (replica, port)) in replicas.iter().zip(&direct).enumerate() {
            http += &upstream(&format!("replica{index}"), &[*replica]);
            http += &server(*port, &format!("replica{index}"));
        }
        let temp = directory.display();
        // As root, nginx's workers would run as `nobody`, who cannot use this folder.
        let user = if is_root() { "user root;\n" } else { "" };
        let config = format!(
            "{user}worker_processes 1;
            daemon off;
            pid {temp}/nginx.pid;
            error_log {temp}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {temp}/body;
                proxy_temp_path {temp}/proxy;
                fastcgi_temp_path {temp}/fastcgi;
                uwsgi_temp_path {temp}/uwsgi;
                scgi_temp_path {temp}/scgi;
                map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
                {http}
            }}"
        );
        let config_path = directory.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(nginx)
            .arg("-e")
            .arg(directory.join("error.log"))
            .arg("-p")
            .arg(&directory)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Self {
            child,
            directory,
            balanced,
            direct,
        };
        let log = |nginx: &Self| {
            std::fs::read_to_string(nginx.directory.join("error.log")).unwrap_or_default()
        };
        // nginx writes its pid file once every listening socket is bound; a port that accepts
        // before that may belong to another test's server.
        let deadline = Instant::now() + SECOND * 10;
        loop {
            if !matches!(nginx.child.try_wait(), Ok(None)) {
                return Err(log(&nginx));
            }
            let listening = nginx.directory.join("nginx.pid").is_file()
                && std::iter::once(&nginx.balanced)
                    .chain(&nginx.direct)
                    .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
            if listening {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!("not listening after 10 s: {}", log(&nginx)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn address(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A subscriber to `stationChanged` as subscription "s"; it receives changes once
/// [`wait_until_subscribed`] says its replica runs it.
async fn subscribe(address: &str) -> LiveClient {
    let mut client = LiveClient::connect(address, TRANSPORT_WS, json!({}))
        .await
        .expect("connection_init accepted");
    client.subscribe("s", SUBSCRIPTION, json!({})).await;
    client
}

/// The next event of subscription "s" is a RESYNC: re-read, changes may have been missed.
async fn expect_resync(subscriber: &mut LiveClient) {
    let event = subscriber.next_event("s", SECOND * 15).await;
    assert_eq!(
        event["data"]["stationChanged"],
        json!({ "kind": "RESYNC", "station": null })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_reaches_subscribers_of_another_through_nginx() {
    let database = TestDatabase::migrated().await;
    let (_a, a) = ServerProcess::start(&database.url, &[]);
    let (_b, b) = ServerProcess::start(&database.url, &[]);
    let port = |address: &str| address.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let nginx = Nginx::start(&[port(&a), port(&b)]);
    let client = reqwest::Client::new();

    // A subscriber on replica B, a mutation through replica A: both through nginx.
    wait_until_listening(&[&a, &b]).await;
    let mut on_b = subscribe(&Nginx::address(nginx.direct[1])).await;
    wait_until_subscribed(&[&a, &b], 1).await;
    let sent = Instant::now();
    let body = post_graphql(
        &client,
        &Nginx::address(nginx.direct[0]),
        &json!({ "query": CREATE, "variables": { "code": "ACROSS" } }),
    )
    .await;
    assert!(body["data"]["createStation"]["id"].is_string(), "{body}");
    let event = on_b.next_event("s", SECOND).await;
    assert_eq!(event["data"]["stationChanged"]["station"]["code"], "ACROSS");
    eprintln!(
        "replica A to a subscriber of replica B through nginx: {:?}",
        sent.elapsed()
    );

    // Through the balanced port, subscribers land on both replicas; every one hears a change.
    let mut balanced = Vec::new();
    for _ in 0..4 {
        balanced.push(subscribe(&Nginx::address(nginx.balanced)).await);
    }
    wait_until_subscribed(&[&a, &b], 5).await;
    post_graphql(
        &client,
        &Nginx::address(nginx.balanced),
        &json!({ "query": CREATE, "variables": { "code": "EVERYONE" } }),
    )
    .await;
    for subscriber in balanced.iter_mut().chain([&mut on_b]) {
        let event = subscriber.next_event("s", SECOND).await;
        assert_eq!(
            event["data"]["stationChanged"]["station"]["code"],
            "EVERYONE"
        );
    }
    for replica in [&a, &b] {
        let metrics = client
            .get(format!("{replica}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sockets = crate::helpers::metric_value(&metrics, "stations_live_sockets");
        assert!(
            sockets >= 2,
            "round robin spread the sockets: {replica} has {sockets}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarting_under_subscribers_sends_resync_then_events_flow_again() {
    const PASSWORD: &str = "live-Passw0rd";
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;
    let url = cluster.url("stations", Some(PASSWORD), "stations");
    let (mut server, address) =
        ServerProcess::start(&url, &[("APP__DATABASE__MIGRATE_ON_START", "true")]);
    // Listening before PostgreSQL goes away: the RESYNC below is the reconnect's.
    wait_until_listening(&[&address]).await;
    let mut subscriber = subscribe(&address).await;
    wait_until_subscribed(&[&address], 1).await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_immediately();
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    // Changes may have been missed: the subscriber is told so.
    expect_resync(&mut subscriber).await;

    // Without reconnecting, the same subscription hears the next change. While PostgreSQL
    // finishes starting, the listener may have to reconnect again (another RESYNC, after a
    // pause): a write made meanwhile can go unheard, so after a RESYNC the test writes again.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + SECOND * 30;
    let mut writes = 0;
    'heard: loop {
        writes += 1;
        let code = format!("AFTER{writes}");
        loop {
            let body = post_graphql(
                &client,
                &address,
                &json!({ "query": CREATE, "variables": { "code": code } }),
            )
            .await;
            if body["data"]["createStation"]["id"].is_string() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no write succeeded after the restart: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let event = subscriber.next_event("s", SECOND * 15).await;
        let change = &event["data"]["stationChanged"];
        if change["station"]["code"] == code.as_str() {
            break 'heard;
        }
        assert_eq!(change["kind"], "RESYNC", "{event}");
        assert!(
            Instant::now() < deadline,
            "still only RESYNC after {writes} writes"
        );
    }
    let metrics = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reconnects =
        crate::helpers::metric_value(&metrics, "stations_live_listener_reconnects_total");
    assert!(reconnects >= 1, "{metrics}");
    assert!(server.terminate().success());
    assert!(
        server
            .log
            .iter()
            .any(|line| line.contains("listening for live changes again")),
        "{}",
        server.log.join("\n")
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_before_the_replica_listens_is_told_to_resync_when_it_does() {
    const PASSWORD: &str = "early-Passw0rd";
    let database = TestDatabase::migrated().await;
    // The replica serves from `database` but listens on a PostgreSQL that is down at first.
    let cluster = ScramCluster::start("stations", PASSWORD, "stations").await;
    let listen_url = cluster.url("stations", Some(PASSWORD), "stations");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_immediately();
        cluster
    })
    .await
    .unwrap();
    let (_server, address) = ServerProcess::start(
        &database.url,
        &[("APP__DATABASE__LISTEN_URL", listen_url.as_str())],
    );
    let mut subscriber = subscribe(&address).await;
    let deadline = Instant::now() + SECOND * 15;
    loop {
        let live = live_metrics(&address).await;
        assert!(!live.listening, "PostgreSQL is down: nothing to listen to");
        if live.subscriptions == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the subscription never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    // Changes made before the replica listened may have been missed.
    expect_resync(&mut subscriber).await;
    wait_until_listening(&[&address]).await;
    drop(cluster);
}

/// A rolling restart behind nginx, as Kubernetes or compose performs one: each replica in turn
/// gets SIGTERM, drains (`server.shutdown_delay_secs`: still serving, `/health/ready` 503),
/// stops accepting, finishes what it holds and exits, then starts again on its port. nginx does
/// not probe readiness: its `proxy_next_upstream` sends what a stopped replica refuses to the
/// other. Not one query of a steady stream fails. (A POST whose connection still sat in a
/// stopping replica's accept queue is reset, and nginx does not send a POST again: a balancer
/// that probes readiness stops sending before that, which is what the drain is for.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_fails_no_request() {
    let database = TestDatabase::migrated().await;
    let ports = [free_port(), free_port()];
    let environment = |port: u16| {
        [
            ("APP__SERVER__PORT", port.to_string()),
            ("APP__SERVER__SHUTDOWN_DELAY_SECS", "1".to_owned()),
        ]
    };
    let start = |port: u16| {
        let environment = environment(port);
        let environment: Vec<(&str, &str)> = environment
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        ServerProcess::start(&database.url, &environment)
    };
    let mut replicas = [start(ports[0]), start(ports[1])];
    let nginx = Nginx::start(&ports);
    let balanced = Nginx::address(nginx.balanced);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let done = std::sync::Arc::clone(&done);
        async move {
            let client = reqwest::Client::new();
            let (mut sent, mut failed) = (0, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                // Queries as GET, which nginx may send again to the other replica when a
                // connection is reset after the request went out (a POST it may not).
                match client
                    .get(format!("{balanced}/graphql"))
                    .query(&[("query", "{ stations(first: 5) { totalCount } }")])
                    .header("accept", "application/graphql-response+json")
                    .send()
                    .await
                {
                    Ok(answer) if answer.status() == 200 => {
                        let answer: serde_json::Value = answer.json().await.unwrap_or_default();
                        if answer.get("errors").is_some() || answer["data"].is_null() {
                            failed.push(answer.to_string());
                        }
                    }
                    Ok(answer) => failed.push(format!("HTTP {}", answer.status())),
                    Err(error) => failed.push(error.to_string()),
                }
            }
            (sent, failed)
        }
    });

    let client = reqwest::Client::new();
    for index in 0..2 {
        // As an orchestrator waits for a new replica to be ready before it stops the next one;
        // nginx, which only learns passively, takes a replica that failed back after
        // `fail_timeout` (2 s here).
        tokio::time::sleep(SECOND * 3).await;
        let (server, address) = &mut replicas[index];
        server.send_terminate();
        // Draining, once the signal is handled: it still answers, but says it is not ready.
        let deadline = Instant::now() + SECOND / 2;
        loop {
            let ready = client
                .get(format!("{address}/health/ready"))
                .send()
                .await
                .expect("the draining replica still answers");
            if ready.status() == 503 {
                break;
            }
            assert!(Instant::now() < deadline, "still ready 0.5 s after SIGTERM");
            tokio::time::sleep(SECOND / 50).await;
        }
        let status = tokio::task::block_in_place(|| server.wait());
        assert!(status.success(), "the replica exits cleanly: {status}");
        replicas[index] = start(ports[index]);
    }
    tokio::time::sleep(SECOND).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.await.expect("the load ran");
    assert!(sent > 100, "only {sent} requests were sent");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
}
