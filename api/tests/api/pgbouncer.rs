//! The API through PgBouncer (Debian's package, started by the test on a loopback port) in
//! session mode, the mode `docker compose --profile replicas` configures: queries, writes and
//! the statement timeout go through it, while the listening connection of subscriptions goes
//! straight to PostgreSQL (`database.listen_url`).
//!
//! Transaction mode is not tested because it does not work with this API on PgBouncer before
//! 1.21 (Debian 12 ships 1.18): sqlx prepares named statements, which a pooler that hands each
//! transaction to any server connection cannot keep ("prepared statement \"sqlx_s_1\" already
//! exists" at the first migration).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sea_orm::sqlx::{self, Connection, PgConnection};
use serde_json::json;
use url::Url;

use crate::helpers::{ServerProcess, TestDatabase, post_graphql};
use crate::live::{LiveClient, TRANSPORT_WS};
use crate::scram_cluster::free_port;

struct PgBouncer {
    child: Child,
    directory: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// PgBouncer in session mode in front of the database of `database_url`.
    fn start(database_url: &str) -> Self {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|path| std::path::Path::new(path).is_file())
            .expect("install Debian's pgbouncer package (bash .ci/run does)");
        let url = Url::parse(database_url).unwrap();
        let directory = std::env::temp_dir().join(format!(
            "stations-pgbouncer-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let port = free_port();
        let database = url.path().trim_start_matches('/');
        std::fs::write(
            directory.join("userlist.txt"),
            format!("\"{}\" \"{}\"\n", url.username(), url.password().unwrap()),
        )
        .unwrap();
        std::fs::write(
            directory.join("pgbouncer.ini"),
            format!(
                "[databases]
{database} = host={} port={} dbname={database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {dir}/userlist.txt
pool_mode = session
default_pool_size = 8
ignore_startup_parameters = extra_float_digits
logfile = {dir}/pgbouncer.log
",
                url.host_str().unwrap(),
                url.port().unwrap_or(5432),
                dir = directory.display()
            ),
        )
        .unwrap();
        let mut command = Command::new(binary);
        // PgBouncer will not run as root: as root, it takes another user's identity.
        if is_root() {
            command.args(["-u", "nobody"]);
            let _ = Command::new("chmod")
                .arg("-R")
                .arg("a+rwX")
                .arg(&directory)
                .status();
        }
        let child = command
            .arg(directory.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            directory,
            port,
        }
    }

    /// `database_url` through this PgBouncer.
    fn url(&self, database_url: &str) -> String {
        let mut url = Url::parse(database_url).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

impl Drop for PgBouncer {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_through_pgbouncer_in_session_mode_and_listens_around_it() {
    let database = TestDatabase::migrated().await;
    let bouncer = PgBouncer::start(&database.url);
    let (_server, address) = ServerProcess::start(
        &bouncer.url(&database.url),
        &[
            ("APP__DATABASE__LISTEN_URL", database.url.as_str()),
            ("APP__DATABASE__STATEMENT_TIMEOUT_MS", "700"),
        ],
    );
    let client = reqwest::Client::new();
    crate::live::wait_until_listening(&[&address]).await;
    let mut subscriber = LiveClient::connect(&address, TRANSPORT_WS, json!({}))
        .await
        .unwrap();
    subscriber
        .subscribe(
            "s",
            "subscription { stationChanged { kind station { code } } }",
            json!({}),
        )
        .await;
    crate::live::wait_until_subscribed(&[&address], 1).await;

    for index in 0..20 {
        let body = post_graphql(
            &client,
            &address,
            &json!({ "query": format!("mutation {{ createStation(input: {{ code: \"PGB{index}\", name: \"Pooled\", lat: 1, lng: 2 }}) {{ id }} }}") }),
        )
        .await;
        assert!(body["data"]["createStation"]["id"].is_string(), "{body}");
    }
    let body = post_graphql(
        &client,
        &address,
        &json!({ "query": "{ stations(first: 50) { totalCount } }" }),
    )
    .await;
    assert_eq!(body["data"]["stations"]["totalCount"], 20);
    let event = subscriber.next_event("s", Duration::from_secs(2)).await;
    assert_eq!(event["data"]["stationChanged"]["station"]["code"], "PGB0");

    // The statement timeout is set on each session, through the pooler.
    let mut blocker = PgConnection::connect(&database.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE stations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let started = Instant::now();
    let body = post_graphql(
        &client,
        &address,
        &json!({ "query": "{ stations { totalCount } }" }),
    )
    .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
}
