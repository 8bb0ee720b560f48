//! What an operator looks at, checked against the real thing: Debian's Prometheus scrapes a
//! server reading a standby, with the compose profile's own configuration
//! (`deploy/observability/prometheus.yml`), stores the request histogram's exemplars, and
//! answers every query of the Grafana dashboard (`deploy/observability/grafana/dashboards`).
//! Grafana itself cannot run here; what it would ask, Prometheus answers.

use std::{path::PathBuf, process::Child, time::Duration};

use serde_json::{Value, json};

use crate::helpers::ServerProcess;
use crate::scram_cluster::free_port;
use crate::standbys::{PASSWORD, USER, start_pair};
use crate::traces::Receiver;

fn repository_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// Debian's Prometheus on a free loopback port, storing in a folder of its own; stopped and
/// removed when dropped.
struct Prometheus {
    child: Child,
    address: String,
    folder: PathBuf,
}

impl Prometheus {
    /// Prometheus with `deploy/observability/prometheus.yml`, scraping `target` every second
    /// instead of the compose service's `api:8080` every five.
    async fn scraping(target: &str) -> Self {
        let folder = std::env::temp_dir().join(format!(
            "stations-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&folder).expect("Prometheus's folder");
        let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(repository_file("deploy/observability/prometheus.yml"))
                .expect("deploy/observability/prometheus.yml"),
        )
        .expect("prometheus.yml is YAML");
        config["global"]["scrape_interval"] = "1s".into();
        config["global"]["scrape_timeout"] = "1s".into();
        let targets = &mut config["scrape_configs"][0]["static_configs"][0]["targets"];
        assert_eq!(
            *targets,
            serde_yaml_ng::Value::from(vec!["api:8080"]),
            "the compose file's target"
        );
        *targets = serde_yaml_ng::Value::from(vec![target]);
        let config_file = folder.join("prometheus.yml");
        std::fs::write(&config_file, serde_yaml_ng::to_string(&config).unwrap())
            .expect("write prometheus.yml");

        let port = free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                folder.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus (Debian's package prometheus; .ci/run installs it)");
        let prometheus = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            folder,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/-/ready", prometheus.address))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return prometheus;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}{path}", self.address))
            .query(query)
            .send()
            .await
            .expect("ask Prometheus")
            .json()
            .await
            .expect("Prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{path} {query:?}: {answer}");
        answer["data"].clone()
    }

    /// The answer to `expression` once it holds a series (each scrape may bring one), within
    /// 30 seconds.
    async fn non_empty(&self, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let data = self.get("/api/v1/query", &[("query", expression)]).await;
            if data["result"]
                .as_array()
                .is_some_and(|series| !series.is_empty())
            {
                return data;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no answer to {expression} within 30 s: {data}"
            );
            // Prometheus scrapes every second: ask again after the next scrape.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Every PromQL expression of the dashboard, with its panel's title, as Grafana would send it
/// (its `$__rate_interval` is at least four scrape intervals; here, of one second).
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repository_file(
            "deploy/observability/grafana/dashboards/stations-api.json",
        ))
        .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "{}: the provisioned data source",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            let expression = target["expr"].as_str().expect("a PromQL expression");
            queries.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                expression.replace("$__rate_interval", "10s"),
            ));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_answers_from_a_real_prometheus_and_latency_leads_to_traces() {
    let (primary, standby) = start_pair().await;
    let receiver = Receiver::start().await;
    let primary_url = primary.url(USER, Some(PASSWORD), "stations");
    let standby_url = standby.url(USER, Some(PASSWORD), "stations");
    let (mut server, address) = ServerProcess::start(
        &primary_url,
        &[
            ("APP__DATABASE__READ_URLS", standby_url.as_str()),
            ("APP__DATABASE__MIGRATE_ON_START", "true"),
            ("APP__DATABASE__STANDBY_CHECK_INTERVAL_MS", "50"),
            ("APP__TELEMETRY__OTLP__ENDPOINT", receiver.endpoint.as_str()),
            ("APP__TELEMETRY__OTLP__EXPORT_INTERVAL_MS", "50"),
        ],
    );

    // Traffic of every kind the panels show: answered queries (on the standby), a mutation,
    // and an operation refused with an error code.
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{address}/graphql");
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("POST /graphql")
                .json::<Value>()
                .await
                .expect("a JSON answer")
        }
    };
    let created = post(json!({
        "query": "mutation Add($input: CreateStationInput!) { createStation(input: $input) { id } }",
        "variables": { "input": { "code": "OBS-1", "name": "Observed", "lat": 1.0, "lng": 2.0 } },
    }))
    .await;
    assert!(created.get("errors").is_none(), "{created}");
    let refused = post(json!({ "query": "query Broken { noSuchField }" })).await;
    assert!(refused.get("errors").is_some(), "{refused}");

    let target = address.trim_start_matches("http://");
    let prometheus = Prometheus::scraping(target).await;
    for (panel, expression) in dashboard_queries() {
        // More traffic between scrapes, so that every rate has something to count.
        let listed =
            post(json!({ "query": "query Page { stations(first: 5) { totalCount } }" })).await;
        assert!(listed.get("errors").is_none(), "{listed}");
        let answer = prometheus.non_empty(&expression).await;
        assert!(
            answer["result"]
                .as_array()
                .is_some_and(|series| !series.is_empty()),
            "{panel}: {expression}"
        );
    }

    // The latency histogram's exemplars: the trace ids of requests, which lead to their traces.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let exemplars = prometheus
        .get(
            "/api/v1/query_exemplars",
            &[
                ("query", "stations_graphql_request_duration_seconds_bucket"),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    let trace_ids: Vec<&str> = exemplars
        .as_array()
        .expect("exemplar series")
        .iter()
        .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
        .filter_map(|exemplar| exemplar["labels"]["trace_id"].as_str())
        .collect();
    assert!(!trace_ids.is_empty(), "no exemplars: {exemplars}");
    for trace_id in trace_ids {
        // Waits for the trace to reach the collector: an exemplar names a trace that exists.
        receiver
            .trace(trace_id, |spans| {
                spans.iter().any(|span| span.name == "POST /graphql")
            })
            .await;
    }
    drop(prometheus);
    server.terminate();
}
