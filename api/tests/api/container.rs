//! The container setup, proven without a Docker engine: docker-compose.yml, .env and config/
//! agree; the Dockerfile has the shape the README promises; compose watch and the Dev Container
//! are wired to its dev and toolbox stages; the PostgreSQL configuration compose hands to the
//! server accepts the compose credentials and nothing less; and the Dev Container's database
//! step leaves the test suite's role ready.

use std::{collections::BTreeMap, path::Path, process::Command};

use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use serde_json::Value;
use stations_api::{database, startup::Application};
use url::Url;

use crate::helpers::{config_dir, test_settings};
use crate::scram_cluster::ScramCluster;

fn repository_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `.env` as compose reads it: `KEY=value` lines, comments and blank lines ignored.
fn dot_env() -> BTreeMap<String, String> {
    repository_file(".env")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!(".env: `{line}` is not KEY=value"));
            let value = value.trim().trim_matches('"').trim_matches('\'');
            (key.trim().to_owned(), value.to_owned())
        })
        .collect()
}

/// Compose's variable substitution: `${VAR}`, `${VAR:?message}`, `${VAR:-default}`, `$$`.
fn substitute(text: &str, variables: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text}"))?;
            let expression = &body[..end];
            let (name, rule) = match expression.find(':') {
                Some(colon) => (&expression[..colon], Some(&expression[colon + 1..])),
                None => (expression, None),
            };
            let value = variables.get(name).filter(|value| !value.is_empty());
            match (value, rule) {
                (Some(value), _) => out.push_str(value),
                (None, Some(message)) if message.starts_with('?') => {
                    return Err(format!("{name}: {}", &message[1..]));
                }
                (None, Some(default)) if default.starts_with('-') => out.push_str(&default[1..]),
                (None, _) => return Err(format!("{name} is not set in .env")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// docker-compose.yml with every variable substituted from .env.
fn compose() -> Value {
    let variables = dot_env();
    let raw: Value =
        serde_yaml_ng::from_str(&repository_file("docker-compose.yml")).expect("valid YAML");
    fn resolve(value: Value, variables: &BTreeMap<String, String>) -> Value {
        match value {
            Value::String(text) => Value::String(
                substitute(&text, variables).unwrap_or_else(|error| panic!("compose: {error}")),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| resolve(v, variables)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, resolve(value, variables)))
                    .collect(),
            ),
            other => other,
        }
    }
    resolve(raw, &variables)
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is missing or not text: {value}"))
}

/// The published `host:port:container_port` of a service's only port mapping.
fn published_port(service: &Value) -> (String, String, String) {
    let mapping = text(&service["ports"][0], "ports[0]");
    let parts: Vec<&str> = mapping.split(':').collect();
    assert_eq!(
        parts.len(),
        3,
        "publish as ADDRESS:HOST_PORT:CONTAINER_PORT: {mapping}"
    );
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    )
}

#[test]
fn compose_dot_env_and_config_agree_on_credentials_hosts_and_ports() {
    let env = dot_env();
    let compose = compose();
    let services = &compose["services"];
    let db = &services["db"];

    for key in ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"] {
        assert!(!env[key].is_empty(), ".env: {key} is empty");
        assert_eq!(db["environment"][key], env[key], "db.environment.{key}");
    }
    let (address, host_port, container_port) = published_port(db);
    assert_eq!(
        address, "127.0.0.1",
        "the database is published on loopback only"
    );
    assert_eq!(host_port, env["POSTGRES_PORT"]);

    // Inside compose, the API and the migrations reach the database by its service name.
    for name in ["migrate", "api"] {
        let url = Url::parse(text(&services[name]["environment"]["DATABASE_URL"], name))
            .expect("a valid DATABASE_URL");
        assert_eq!(
            url.host_str(),
            Some("db"),
            "{name} must reach the database as `db`"
        );
        assert_eq!(
            url.port().unwrap_or(5432).to_string(),
            container_port,
            "{name}: port"
        );
        assert_eq!(url.username(), env["POSTGRES_USER"], "{name}: user");
        assert_eq!(
            url.password(),
            Some(env["POSTGRES_PASSWORD"].as_str()),
            "{name}: password"
        );
        assert_eq!(
            url.path(),
            format!("/{}", env["POSTGRES_DB"]),
            "{name}: database"
        );
    }

    // From the host, sea-orm-cli and `cargo run` use .env's DATABASE_URL, which
    // config/development.toml repeats.
    let host_url = Url::parse(&env["DATABASE_URL"]).expect(".env: DATABASE_URL is a URL");
    assert_eq!(
        host_url.host_str(),
        Some("localhost"),
        ".env: DATABASE_URL is for the host"
    );
    assert_eq!(
        host_url.port().unwrap_or(5432).to_string(),
        env["POSTGRES_PORT"]
    );
    assert_eq!(host_url.username(), env["POSTGRES_USER"]);
    assert_eq!(host_url.password(), Some(env["POSTGRES_PASSWORD"].as_str()));
    assert_eq!(host_url.path(), format!("/{}", env["POSTGRES_DB"]));
    let development: toml::Table =
        toml::from_str(&std::fs::read_to_string(config_dir().join("development.toml")).unwrap())
            .expect("config/development.toml is TOML");
    assert_eq!(
        development["database"]["url"].as_str(),
        Some(env["DATABASE_URL"].as_str()),
        "config/development.toml database.url must equal .env DATABASE_URL"
    );

    let api = &services["api"];
    let (address, host_port, container_port) = published_port(api);
    assert_eq!(
        address, "127.0.0.1",
        "the API is published on loopback only"
    );
    assert_eq!(host_port, env["API_PORT"]);
    assert_eq!(
        api["environment"]["APP__SERVER__PORT"].to_string(),
        container_port
    );
}

#[test]
fn compose_starts_the_database_then_the_migrations_then_the_api() {
    let compose = compose();
    let services = &compose["services"];
    let db = &services["db"];

    let image = text(&db["image"], "db.image");
    let major: u32 = image
        .strip_prefix("postgres:")
        .and_then(|tag| tag.split(['-', '.']).next())
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("db.image must pin a PostgreSQL major: {image}"));
    let data_path = if major >= 18 {
        "/var/lib/postgresql"
    } else {
        "/var/lib/postgresql/data"
    };
    let volume = text(&db["volumes"][0], "db.volumes[0]");
    assert!(
        volume.ends_with(&format!(":{data_path}")),
        "postgres:{major} keeps data in {data_path}: {volume}"
    );

    assert!(
        text(&db["environment"]["POSTGRES_INITDB_ARGS"], "initdb args")
            .contains("--auth-host=scram-sha-256")
    );
    assert_eq!(
        db["environment"]["POSTGRES_HOST_AUTH_METHOD"],
        "scram-sha-256"
    );
    let probe = text(&db["healthcheck"]["test"][1], "db healthcheck");
    for part in [
        "pg_isready",
        "-h 127.0.0.1",
        // `$$` in the file: compose leaves the variables to the container's shell.
        "-U \"${POSTGRES_USER}\"",
        "-d \"${POSTGRES_DB}\"",
    ] {
        assert!(probe.contains(part), "db healthcheck lacks {part}: {probe}");
    }

    assert_eq!(
        services["migrate"]["depends_on"]["db"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["migrate", "up"])
    );
    let api = &services["api"];
    assert_eq!(api["depends_on"]["db"]["condition"], "service_healthy");
    assert_eq!(
        api["depends_on"]["migrate"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(
        api["healthcheck"]["test"],
        serde_json::json!(["CMD", "stations-api", "healthcheck"])
    );
    assert_eq!(
        api["image"], services["migrate"]["image"],
        "one image for both"
    );
}

#[test]
fn compose_refuses_to_start_without_a_variable_from_dot_env() {
    let mut env = dot_env();
    env.remove("POSTGRES_PASSWORD");
    let error =
        substitute("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}", &env).unwrap_err();
    assert!(error.contains("set POSTGRES_PASSWORD in .env"), "{error}");
    assert!(
        repository_file("docker-compose.yml").contains("${POSTGRES_PASSWORD:?"),
        "docker-compose.yml must stop with a message when POSTGRES_PASSWORD is missing"
    );
}

#[test]
fn the_dockerfile_builds_on_the_runtimes_debian_release_and_runs_unprivileged() {
    let dockerfile = repository_file("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    let builder = froms
        .iter()
        .find(|l| l.contains("rust:"))
        .expect("a rust builder stage");
    let runtime = froms.last().expect("a runtime stage");
    assert!(
        builder.contains("${DEBIAN_RELEASE}") && runtime.contains("${DEBIAN_RELEASE}"),
        "builder and runtime must name the same Debian release: {builder} / {runtime}"
    );
    assert!(
        runtime.contains("-slim") || runtime.contains("distroless"),
        "slim runtime: {runtime}"
    );

    let runtime_stage: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|line| line != runtime)
        .collect();
    let copies: Vec<&str> = runtime_stage
        .iter()
        .copied()
        .filter(|l| l.starts_with("COPY "))
        .collect();
    assert_eq!(
        copies,
        [
            "COPY --from=builder /app/target/release/stations-api /usr/local/bin/stations-api",
            "COPY config ./config",
        ],
        "the runtime image holds the binary and config/ only"
    );
    let user = runtime_stage
        .iter()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(
        user[5..]
            .split(':')
            .all(|id| id.parse::<u32>().is_ok_and(|id| id != 0)),
        "USER must be numeric and not root: {user}"
    );
    assert!(dockerfile.contains("APP_ENV=production"));
    assert!(dockerfile.contains("RUN cargo build --release --locked"));

    let ignored = repository_file(".dockerignore");
    for entry in ["target/", ".git/"] {
        assert!(
            ignored.lines().any(|line| line.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[tokio::test]
async fn the_compose_credentials_connect_and_migrate_on_a_scram_cluster_and_nothing_less_does() {
    let env = dot_env();
    let (user, password, name) = (
        &env["POSTGRES_USER"],
        &env["POSTGRES_PASSWORD"],
        &env["POSTGRES_DB"],
    );
    let cluster = ScramCluster::start(user, password, name).await;

    // The API, configured as compose configures it, connects, migrates and is ready.
    let mut settings = test_settings();
    settings.database.url = SecretString::from(cluster.url(user, Some(password), name));
    settings.database.migrate_on_start = true;
    let application = Application::build(&settings)
        .await
        .expect("the API starts on the scram cluster");
    let port = application.port();
    tokio::spawn(application.run_until_stopped());
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // Without the password: the article's "fe_sendauth: no password supplied".
    settings.database.url = SecretString::from(cluster.url(user, None, name));
    let error = database::connect(&settings.database)
        .await
        .expect_err("no password, no session");
    assert!(error.to_string().contains("password"), "{error}");

    // With a wrong one.
    settings.database.url = SecretString::from(cluster.url(user, Some("not-the-password"), name));
    let error = database::connect(&settings.database)
        .await
        .expect_err("wrong password, no session");
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
    assert!(!error.to_string().contains("not-the-password"), "{error}");

    assert!(
        cluster
            .server_log()
            .contains("password authentication failed")
    );
}

#[tokio::test]
async fn the_healthcheck_command_exits_0_when_ready_and_1_otherwise() {
    let app = crate::helpers::spawn_app().await;
    let binary = env!("CARGO_BIN_EXE_stations-api");
    let url = format!("{}/health/ready", app.address);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(["healthcheck", "--url", &url])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ready"));

    let output = Command::new(binary)
        .args(["healthcheck", "--url", "http://127.0.0.1:1/health/ready"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn the_replicas_profile_runs_the_api_image_through_pgbouncer_and_listens_past_it() {
    let env = dot_env();
    let compose = compose();
    let services = &compose["services"];
    let replica = &services["api-replica"];
    assert_eq!(replica["image"], services["api"]["image"], "the same image");
    assert_eq!(replica["deploy"]["replicas"], 3);
    for name in ["api-replica", "pgbouncer", "nginx"] {
        assert_eq!(
            services[name]["profiles"],
            serde_json::json!(["replicas"]),
            "{name} runs only with --profile replicas"
        );
    }

    let pooled = Url::parse(text(&replica["environment"]["DATABASE_URL"], "api-replica")).unwrap();
    assert_eq!(pooled.host_str(), Some("pgbouncer"));
    let listening = Url::parse(text(
        &replica["environment"]["APP__DATABASE__LISTEN_URL"],
        "api-replica",
    ))
    .unwrap();
    assert_eq!(
        listening.host_str(),
        Some("db"),
        "LISTEN goes past the pooler"
    );
    for url in [&pooled, &listening] {
        assert_eq!(url.username(), env["POSTGRES_USER"]);
        assert_eq!(url.password(), Some(env["POSTGRES_PASSWORD"].as_str()));
        assert_eq!(url.path(), format!("/{}", env["POSTGRES_DB"]));
    }

    let ini = repository_file("config/pgbouncer/pgbouncer.ini");
    assert!(
        ini.contains("pool_mode = session"),
        "the mode the tests run"
    );
    assert!(ini.contains(&format!("listen_port = {}", pooled.port().unwrap())));
    assert_eq!(services["pgbouncer"]["build"]["target"], "pgbouncer");

    let (address, host_port, container_port) = published_port(&services["nginx"]);
    assert_eq!(address, "127.0.0.1", "nginx is published on loopback only");
    assert_eq!(host_port, env["REPLICAS_PORT"]);
    let nginx = repository_file("config/nginx/replicas.conf");
    assert!(nginx.contains(&format!("listen {container_port};")));
    assert!(nginx.contains(&format!(
        "server api-replica:{}",
        replica["environment"]["APP__SERVER__PORT"].as_u64().unwrap()
    )));
}

/// The lines of the Dockerfile stage `name`, from its FROM to the next.
fn dockerfile_stage(name: &str) -> Vec<String> {
    let dockerfile = repository_file("Dockerfile");
    let mut lines = dockerfile.lines().map(str::trim);
    let heading = format!(" AS {name}");
    lines
        .by_ref()
        .find(|line| line.starts_with("FROM ") && line.ends_with(&heading))
        .unwrap_or_else(|| panic!("the Dockerfile has no stage {name}"));
    lines
        .take_while(|line| !line.starts_with("FROM "))
        .map(str::to_owned)
        .collect()
}

/// A Dockerfile's logical lines: continuations (`\` at the end) joined.
fn joined(stage: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in stage {
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// The value of `ARG name=value` before the first stage.
fn dockerfile_arg(name: &str) -> String {
    repository_file("Dockerfile")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("ARG {name}=")))
        .unwrap_or_else(|| panic!("the Dockerfile has no ARG {name}=..."))
        .trim()
        .to_owned()
}

#[test]
fn compose_watch_rebuilds_the_dev_image_on_every_input_of_the_build_and_syncs_config() {
    let compose = compose();
    let api_dev = &compose["services"]["api-dev"];
    assert_eq!(
        api_dev["profiles"],
        serde_json::json!(["dev"]),
        "not part of `docker compose up`"
    );
    assert_eq!(api_dev["build"]["target"], "dev");
    assert_eq!(
        published_port(api_dev),
        published_port(&compose["services"]["api"]),
        "where the README says the IDE is"
    );

    let rules = api_dev["develop"]["watch"]
        .as_array()
        .expect("develop.watch rules");
    let rule_for = |path: &str| {
        rules
            .iter()
            .find(|rule| rule["path"] == path)
            .unwrap_or_else(|| panic!("no watch rule for {path}"))
    };
    // Everything the binary is built from: each workspace member, the manifests, the lockfile.
    let manifest: toml::Table = repository_file("Cargo.toml").parse().unwrap();
    let members = manifest["workspace"]["members"].as_array().unwrap();
    let mut inputs = vec!["./Cargo.toml".to_owned(), "./Cargo.lock".to_owned()];
    for member in members {
        let member = member.as_str().unwrap();
        if member == "api" {
            // Not api/tests: a test changes no binary.
            inputs.extend(
                [
                    "./api/src",
                    "./api/build.rs",
                    "./api/Cargo.toml",
                    "./api/ide/dist",
                ]
                .map(String::from),
            );
        } else {
            inputs.push(format!("./{member}"));
        }
    }
    let ignored = repository_file(".dockerignore");
    for input in &inputs {
        assert_eq!(rule_for(input)["action"], "rebuild", "{input}");
        let relative = input.trim_start_matches("./");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(relative)
                .exists(),
            "{input} does not exist"
        );
        let left_out = ignored
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .any(|line| relative.starts_with(line.trim_end_matches('/')));
        assert!(
            !left_out,
            "{input} is left out of the build context by .dockerignore: a change would rebuild nothing"
        );
    }
    // config/ is read at start, not compiled: synced where the dev image reads it, then a
    // restart.
    let config = rule_for("./config");
    assert_eq!(config["action"], "sync+restart");
    let dev = joined(&dockerfile_stage("dev"));
    assert!(
        dev.iter().any(|line| line.contains(&format!(
            "APP_CONFIG_DIR={}",
            text(&config["target"], "target")
        ))),
        "the sync target is the dev image's APP_CONFIG_DIR"
    );
    assert!(dev.iter().any(|line| line.contains("APP_ENV=development")));
    // Development settings apply pending migrations at start: the rebuild that ships a
    // migration applies it.
    let development: toml::Table = repository_file("config/development.toml").parse().unwrap();
    assert_eq!(
        development["database"]["migrate_on_start"].as_bool(),
        Some(true)
    );

    // A debug build whose dependencies are cooked once, and kept between rebuilds.
    let builder = joined(&dockerfile_stage("dev-builder"));
    let cook = builder
        .iter()
        .find(|line| line.contains("cargo chef cook"))
        .expect("a cook step");
    let build = builder
        .iter()
        .find(|line| line.contains("cargo build"))
        .expect("a build step");
    for step in [cook, build] {
        assert!(!step.contains("--release"), "a debug build: {step}");
        assert!(
            step.contains("--mount=type=cache,id=stations-api-dev-target,target=/app/target"),
            "{step}"
        );
    }
}

#[test]
fn the_dev_container_is_the_dev_service_on_the_databases_network_with_every_tool() {
    let devcontainer: Value =
        serde_json::from_str(&repository_file(".devcontainer/devcontainer.json")).expect("JSON");
    assert_eq!(
        devcontainer["dockerComposeFile"],
        serde_json::json!(["../docker-compose.yml"])
    );
    let compose = compose();
    let services = &compose["services"];
    let service_name = text(&devcontainer["service"], "service");
    let dev = &services[service_name];
    assert_eq!(dev["profiles"], serde_json::json!(["dev"]));
    for name in devcontainer["runServices"].as_array().unwrap() {
        assert!(
            services.get(text(name, "runServices")).is_some(),
            "{name} is not a service"
        );
    }
    assert_eq!(dev["build"]["target"], "toolbox");

    // On the db service's network, the database is at 127.0.0.1:5432 as on a laptop: the
    // URLs of .env, config/development.toml and config/test.toml hold inside as they are.
    assert_eq!(dev["network_mode"], "service:db");
    let (_, _, database_port) = published_port(&services["db"]);
    let test: toml::Table = repository_file("config/test.toml").parse().unwrap();
    let development: toml::Table = repository_file("config/development.toml").parse().unwrap();
    for url in [
        test["database"]["url"].as_str().unwrap().to_owned(),
        development["database"]["url"].as_str().unwrap().to_owned(),
        dot_env()["DATABASE_URL"].clone(),
    ] {
        let url = Url::parse(&url).unwrap();
        assert!(
            matches!(url.host_str(), Some("127.0.0.1" | "localhost")),
            "{url}"
        );
        assert_eq!(
            url.port().unwrap_or(5432).to_string(),
            database_port,
            "{url}"
        );
    }
    for port in [8080, database_port.parse().unwrap()] {
        assert!(
            devcontainer["forwardPorts"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(port)),
            "port {port} is forwarded"
        );
    }

    // The repository at the workspace folder; each cache volume on a folder the image gives to
    // the remote user, so that a new volume belongs to them.
    let workspace = text(&devcontainer["workspaceFolder"], "workspaceFolder");
    let volumes: Vec<&str> = dev["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|volume| text(volume, "volume"))
        .collect();
    assert!(
        volumes.contains(&format!(".:{workspace}").as_str()),
        "{volumes:?}"
    );
    let toolbox = joined(&dockerfile_stage("toolbox"));
    let user = text(&devcontainer["remoteUser"], "remoteUser");
    let setup = toolbox
        .iter()
        .find(|line| line.contains("useradd") && line.contains(&format!(" {user} ")))
        .unwrap_or_else(|| panic!("the toolbox creates the user {user}"));
    for volume in volumes.iter().filter(|volume| !volume.starts_with('.')) {
        let (name, target) = volume.split_once(':').unwrap();
        assert!(
            compose["volumes"].get(name).is_some(),
            "volume {name} is declared"
        );
        assert!(
            setup.contains(target),
            "the toolbox creates {target} for {user}"
        );
    }
    let post_create = text(&devcontainer["postCreateCommand"], "postCreateCommand");
    let script = post_create.strip_prefix("bash ").expect("bash <script>");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(script)
            .is_file()
    );

    // The tools: sea-orm-cli of sea-orm's version, Node.js the IDE and the clients accept, and
    // what the tests start.
    let lock = repository_file("Cargo.lock");
    let sea_orm = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"sea-orm\"\n"))
        .and_then(|package| {
            package
                .lines()
                .find_map(|line| line.strip_prefix("version = "))
        })
        .map(|version| version.trim_matches('"').to_owned())
        .expect("sea-orm in Cargo.lock");
    assert_eq!(dockerfile_arg("SEA_ORM_CLI_VERSION"), sea_orm);
    assert!(toolbox.iter().any(|line| {
        line.contains("cargo install sea-orm-cli --locked --version \"${SEA_ORM_CLI_VERSION}\"")
    }));
    let node_major: u32 = dockerfile_arg("NODE_MAJOR").parse().unwrap();
    for package in ["api/ide/package.json", "api/tests/clients/package.json"] {
        let manifest: Value = serde_json::from_str(&repository_file(package)).unwrap();
        if let Some(range) = manifest["engines"]["node"].as_str() {
            let wanted: u32 = range
                .trim_start_matches(">=")
                .split('.')
                .next()
                .and_then(|major| major.parse().ok())
                .unwrap_or_else(|| panic!("{package}: engines.node {range}"));
            assert!(node_major >= wanted, "{package} needs Node.js {range}");
        }
    }
    let installed = toolbox
        .iter()
        .find(|line| line.contains("apt-get install"))
        .unwrap();
    for package in [
        "postgresql",
        "postgresql-client",
        "nginx",
        "pgbouncer",
        "chromium",
        "openssl",
    ] {
        assert!(
            installed.split_whitespace().any(|word| word == package),
            "the toolbox lacks {package}"
        );
    }
    assert!(
        toolbox
            .iter()
            .any(|line| line.contains("rustup component add rustfmt clippy rust-analyzer"))
    );
}

/// The Dev Container's database step, against a cluster set up as the compose db service is
/// (its superuser and password from .env): afterwards the test suite's role connects, may
/// create databases, and migrates one as an ordinary owner. Twice, as a rebuilt container
/// runs it again.
#[tokio::test]
async fn the_dev_container_provisions_the_test_role_in_the_compose_database() {
    let env = dot_env();
    let (superuser, password, name) = (
        &env["POSTGRES_USER"],
        &env["POSTGRES_PASSWORD"],
        &env["POSTGRES_DB"],
    );
    let cluster = ScramCluster::start(superuser, password, name).await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.devcontainer/provision-database.sh");
    for _ in 0..2 {
        let output = Command::new("bash")
            .arg(&script)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", cluster.port.to_string())
            .env("POSTGRES_USER", superuser)
            .env("POSTGRES_PASSWORD", password)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let test: toml::Table = repository_file("config/test.toml").parse().unwrap();
    let test_url = Url::parse(test["database"]["url"].as_str().unwrap()).unwrap();
    let role = test_url.username();
    let test_password = test_url.password().unwrap();
    let database_name = test_url.path().trim_start_matches('/');
    let mut settings = test_settings();
    settings.database.url =
        SecretString::from(cluster.url(role, Some(test_password), database_name));
    settings.database.migrate_on_start = true;
    let application = Application::build(&settings)
        .await
        .expect("the test role connects and migrates its database");
    let port = application.port();
    tokio::spawn(application.run_until_stopped());
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let connection = database::connect(&settings.database).await.unwrap();
    let row = connection
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.try_get::<bool>("", "rolcreatedb").unwrap(),
        "tests create databases"
    );
    assert!(
        !row.try_get::<bool>("", "rolsuper").unwrap(),
        "as an ordinary role"
    );
}

#[test]
fn the_replicas_profile_reads_a_streaming_standby_made_from_db() {
    let env = dot_env();
    let compose = compose();
    let services = &compose["services"];
    let standby = &services["db-standby"];
    assert_eq!(standby["image"], services["db"]["image"], "the same server");
    assert_eq!(standby["profiles"], serde_json::json!(["replicas"]));
    assert_eq!(
        standby["entrypoint"],
        serde_json::json!(["/usr/local/bin/standby-init.sh"])
    );
    assert_eq!(
        standby["command"],
        serde_json::json!(["docker-entrypoint.sh", "postgres"]),
        "after the copy, the image's own entrypoint starts the server"
    );
    assert!(
        standby["volumes"]
            .to_string()
            .contains("./config/postgres/standby-init.sh:/usr/local/bin/standby-init.sh:ro")
    );
    assert!(
        services["db"]["volumes"]
            .to_string()
            .contains("./config/postgres/initdb-replication.sh:/docker-entrypoint-initdb.d/"),
        "the primary creates the replication role when its volume is initialised"
    );
    for service in ["db", "db-standby"] {
        let environment = &services[service]["environment"];
        assert_eq!(
            environment["REPLICATION_USER"],
            env["REPLICATION_USER"].as_str()
        );
        assert_eq!(
            environment["REPLICATION_PASSWORD"],
            env["REPLICATION_PASSWORD"].as_str()
        );
    }
    let replica = &services["api-replica"];
    let reads = Url::parse(text(
        &replica["environment"]["APP__DATABASE__READ_URLS"],
        "api-replica",
    ))
    .unwrap();
    assert_eq!(reads.host_str(), Some("db-standby"));
    assert_eq!(reads.username(), env["POSTGRES_USER"]);
    assert_eq!(reads.password(), Some(env["POSTGRES_PASSWORD"].as_str()));
    assert_eq!(reads.path(), format!("/{}", env["POSTGRES_DB"]));
    assert_eq!(
        replica["depends_on"]["db-standby"]["condition"],
        "service_healthy"
    );
}

/// The two scripts compose gives PostgreSQL, run as the image runs them, against a cluster set
/// up as the image sets one up (`ScramCluster`): the primary's init script admits the
/// replication role, and the standby's makes a copy that starts as a streaming standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_scripts_make_a_streaming_standby_of_the_compose_database() {
    use crate::scram_cluster::{as_cluster_owner, check, owned_directory, run};
    use sea_orm::sqlx::{self, Connection, PgConnection};

    let env = dot_env();
    let (user, password, name) = (
        env["POSTGRES_USER"].clone(),
        env["POSTGRES_PASSWORD"].clone(),
        env["POSTGRES_DB"].clone(),
    );
    let primary = ScramCluster::start(&user, &password, &name).await;
    let script = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/postgres")
            .join(name)
    };
    let (primary, standby_directory) = tokio::task::spawn_blocking({
        let env = env.clone();
        move || {
            // The standby connects from another container, which initdb's loopback replication
            // rules do not admit: without them, only the script's rule can.
            let hba = primary.directory().join("data/pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
            let rules: String = rules
                .lines()
                .filter(|line| line.split_whitespace().nth(1) != Some("replication"))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(&hba, rules).expect("write pg_hba.conf");
            // As the image runs its init scripts: over the socket, as the superuser.
            check(run(as_cluster_owner(Path::new("/bin/sh"))
                .arg(script("initdb-replication.sh"))
                .env("POSTGRES_USER", &user)
                .env("POSTGRES_DB", &name)
                .env("REPLICATION_USER", &env["REPLICATION_USER"])
                .env("REPLICATION_PASSWORD", &env["REPLICATION_PASSWORD"])
                .env("PGDATA", primary.directory().join("data"))
                .env("PGHOST", primary.directory())
                .env("PGPORT", primary.port.to_string())));
            primary.reload();
            let standby_directory = owned_directory("stations-compose-standby");
            check(run(as_cluster_owner(Path::new("/bin/sh"))
                .arg(script("standby-init.sh"))
                .arg("true")
                .env("REPLICATION_USER", &env["REPLICATION_USER"])
                .env("REPLICATION_PASSWORD", &env["REPLICATION_PASSWORD"])
                .env("PRIMARY_HOST", "127.0.0.1")
                .env("PRIMARY_PORT", primary.port.to_string())
                .env("PGDATA", standby_directory.join("data"))));
            (primary, standby_directory)
        }
    })
    .await
    .expect("the scripts ran");
    let standby =
        tokio::task::spawn_blocking(move || ScramCluster::start_in(standby_directory, false))
            .await
            .expect("the standby starts");

    let (user, password, name) = (
        &env["POSTGRES_USER"],
        &env["POSTGRES_PASSWORD"],
        &env["POSTGRES_DB"],
    );
    let mut writer = PgConnection::connect(&primary.url(user, Some(password), name))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE replicated (n int); INSERT INTO replicated VALUES (42)")
        .execute(&mut writer)
        .await
        .unwrap();
    let mut reader = PgConnection::connect(&standby.url(user, Some(password), name))
        .await
        .expect("the standby admits the compose credentials");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert!(in_recovery, "a standby, not a second primary");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found: Option<i32> = sqlx::query_scalar("SELECT n FROM replicated")
            .fetch_optional(&mut reader)
            .await
            .ok()
            .flatten();
        if found == Some(42) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write did not reach the standby within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
