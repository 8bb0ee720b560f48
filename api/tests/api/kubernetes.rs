//! The Kubernetes manifests of deploy/kubernetes, as `render` writes them for each overlay,
//! held to what the server does (CI also validates every object against Kubernetes' schemas,
//! offline, with kubernetes-validate): probes on its health routes, ports and settings that
//! load, a grace period longer than the drain, the image's unprivileged user.

use std::{collections::BTreeMap, path::Path, process::Command};

use serde::Deserialize;
use serde_json::Value;

use crate::helpers::{run, stations_api};

/// Every object `render environment` writes, by kind.
fn rendered(environment: &str) -> BTreeMap<String, Value> {
    let output = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/render"))
        .arg(environment)
        .output()
        .expect("run deploy/kubernetes/render");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            let object = Value::deserialize(document).expect("a YAML object");
            (object["kind"].as_str().expect("a kind").to_owned(), object)
        })
        .collect()
}

fn number(text: &Value) -> u64 {
    text.as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {text}"))
}

#[test]
fn the_deployment_probes_drains_and_runs_as_the_image_does() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile"))
            .expect("the Dockerfile");
    for environment in ["development", "production"] {
        let objects = rendered(environment);
        let settings = &objects["ConfigMap"]["data"];
        let pod = &objects["Deployment"]["spec"]["template"]["spec"];
        let api = &pod["containers"][0];
        assert_eq!(api["readinessProbe"]["httpGet"]["path"], "/health/ready");
        assert_eq!(api["startupProbe"]["httpGet"]["path"], "/health/ready");
        assert_eq!(api["livenessProbe"]["httpGet"]["path"], "/health/live");
        let port = |name: &str| {
            api["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|port| port["name"] == name)
                .map(|port| port["containerPort"].as_u64().unwrap())
                .unwrap_or_else(|| panic!("no {name} port"))
        };
        assert_eq!(port("http"), number(&settings["APP__SERVER__PORT"]));
        let metrics_port = settings["APP__METRICS__LISTEN"]
            .as_str()
            .and_then(|listen| listen.rsplit(':').next())
            .and_then(|port| port.parse::<u64>().ok());
        assert_eq!(Some(port("metrics")), metrics_port);

        // SIGTERM: the drain, then the requests in flight, inside the grace period.
        let drain = number(&settings["APP__SERVER__SHUTDOWN_DELAY_SECS"]);
        let finish = number(&settings["APP__SERVER__SHUTDOWN_TIMEOUT_SECS"]);
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > drain + finish,
            "{grace} s of grace for {drain} + {finish} s"
        );
        let readiness_period = api["readinessProbe"]["periodSeconds"].as_u64().unwrap();
        assert!(
            drain > readiness_period,
            "the drain outlasts a readiness period"
        );

        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let user = pod["securityContext"]["runAsUser"].as_u64().unwrap();
        assert!(
            dockerfile.contains(&format!("USER {user}:{user}")),
            "the image's user is {user}"
        );
        assert_eq!(api["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            objects["Job"]["spec"]["template"]["spec"]["containers"][0]["args"],
            serde_json::json!(["migrate", "up"])
        );
        assert_eq!(
            objects.contains_key("Secret"),
            environment == "development",
            "production's Secret comes from the secret store, never from the repository"
        );

        // The settings load: `doctor` passes its first check and stops at the (absent) database.
        let mut doctor = stations_api(&["doctor"]);
        for (name, value) in settings.as_object().unwrap() {
            doctor.env(name, value.as_str().unwrap());
        }
        doctor.env(
            "DATABASE_URL",
            "postgres://stations:secret@127.0.0.1:1/stations?sslmode=disable",
        );
        let (_, stdout, _) = run(&mut doctor);
        assert!(
            stdout.contains("✓ configuration loads"),
            "{environment}: {stdout}"
        );
    }
}
