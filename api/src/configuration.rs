//! Typed settings, read in layers: `config/default.toml`, then `config/<APP_ENV>.toml`, then
//! environment variables `APP__SECTION__KEY` (e.g. `APP__SERVER__PORT=9000`), and
//! `DATABASE_URL` for `database.url` because every PostgreSQL tool already reads it.
//!
//! Every error names the key and the file or variable that set it, and never prints the
//! database password: a configuration mistake should be fixable from its message alone.

use std::{env, fmt, path::Path, path::PathBuf, str::FromStr, time::Duration};

use config::{Config, ConfigError, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// Prefix of the environment variables that override configuration keys.
const ENV_PREFIX: &str = "APP";
/// Separates the prefix, sections and keys in those variables: `APP__DATABASE__URL`.
const ENV_SEPARATOR: &str = "__";
/// The standbys' URLs, separated by whitespace: a URL may hold commas, the list separator of
/// the other list settings.
const READ_URLS_VARIABLE: &str = "APP__DATABASE__READ_URLS";
/// The least `auth.jwt.jwks_min_refresh_secs`: below it, tokens naming made-up key ids would
/// make the server fetch the identity provider's keys for nearly every request.
const MIN_JWKS_REFRESH_SECS: u64 = 5;
/// A minute's writes at most are read from raw rows rather than the rollup.
const MAX_ROLLUP_REFRESH_INTERVAL_MS: u64 = 60_000;
/// Counted at 55,000 to 75,000 station-hours a second on a 2-core machine: the largest batch
/// takes under 2 s when idle, inside the default statement timeout of 5 s.
const MAX_ROLLUP_REFRESH_BATCH_HOURS: u64 = 100_000;

/// Which `config/<environment>.toml` is layered over `config/default.toml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Environment {
    #[default]
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }

    /// Reads `APP_ENV`; development when it is not set.
    pub fn from_env() -> Result<Self, ConfigurationError> {
        match env::var("APP_ENV") {
            Ok(value) => value.parse().map_err(|message| {
                ConfigurationError(format!("environment variable APP_ENV: {message}"))
            }),
            Err(env::VarError::NotPresent) => Ok(Self::default()),
            Err(env::VarError::NotUnicode(_)) => Err(ConfigurationError(
                "environment variable APP_ENV is not valid UTF-8".to_owned(),
            )),
        }
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            other => Err(format!(
                "unknown environment {other:?}: use development, test or production"
            )),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub graphql: GraphqlSettings,
    pub auth: AuthSettings,
    pub subscriptions: SubscriptionSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    /// The environment whose file was layered in; not itself a key.
    #[serde(skip)]
    pub environment: Environment,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on. `0.0.0.0` only inside a container, where the port mapping decides
    /// who can reach it.
    pub host: String,
    /// 0 picks a free port (tests use it).
    pub port: u16,
    /// After SIGTERM, how long the server keeps serving while `/health/ready` answers 503, so
    /// that load balancers stop sending it requests before it stops accepting them.
    pub shutdown_delay_secs: u64,
    /// How long in-flight requests may run on after SIGTERM before the server stops anyway.
    pub shutdown_timeout_secs: u64,
    /// A request still running after this long is answered with TIMEOUT.
    pub request_timeout_secs: u64,
    /// Larger request bodies are refused before they are read; the same bound applies to
    /// each WebSocket message.
    pub max_body_bytes: usize,
    /// Client connections served at once (HTTP and WebSocket alike); more wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
    /// A client must send a request's whole head (request line and headers) within this
    /// long; an idle keep-alive connection is closed after it too.
    pub header_read_timeout_secs: u64,
    /// A client must send a request's whole body within this long.
    pub body_read_timeout_secs: u64,
    /// `Host` values answered, beyond the names of loopback, when the server listens on a
    /// loopback address (DNS rebinding: a page on any site can otherwise reach a server on
    /// the developer's own machine through a name that resolves to 127.0.0.1).
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`) whose pages may call the API from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// The kernel's send buffer of each client connection. Fixed rather than grown on demand
    /// (to 4 MiB by Linux's default), so that a client that stops reading (a stalled
    /// subscriber) holds at most this much of the server's memory before it is dropped.
    pub socket_send_buffer_bytes: usize,
    /// `/health/ready` names the database's host, port and role and the setting to change
    /// when it cannot be reached (development); otherwise it answers a generic reason and the
    /// details go to the log only.
    pub health_details: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database?sslmode=...`
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    /// Limit on establishing one connection (TCP, TLS and authentication).
    pub connect_timeout_secs: u64,
    /// How many times start-up tries to connect before giving up, with a growing pause between
    /// attempts, so that a server started with its database (docker compose) waits for it.
    pub connect_attempts: u32,
    /// Limit on waiting for a free pooled connection before a request fails.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL cancels a statement that runs longer than this.
    pub statement_timeout_ms: u64,
    /// Apply pending migrations at start-up (development) or refuse to start (production).
    pub migrate_on_start: bool,
    /// Where the listening connection of subscriptions goes, when `url` leads through a pooler
    /// that cannot hold a session's LISTEN (PgBouncer in transaction mode); empty: `url`.
    pub listen_url: SecretString,
    /// PostgreSQL streaming standbys that serve queries (`database::standbys`); empty: every
    /// statement goes to `url`. In the environment, `APP__DATABASE__READ_URLS` holds them
    /// separated by whitespace, which no URL contains (commas may: `options=-c%20a=1,b`).
    pub read_urls: Vec<SecretString>,
    /// Connections each standby's own pool may open.
    pub standby_max_connections: u32,
    /// A standby whose replay is further behind the primary's WAL than this receives no
    /// queries until it catches up.
    pub max_standby_lag_bytes: u64,
    /// How often each standby's health and replay position are checked.
    pub standby_check_interval_ms: u64,
    /// How long a query that carries a read-your-writes token waits for a standby to replay
    /// the write before it reads from the primary instead.
    pub read_your_writes_wait_ms: u64,
    /// How often each replica refreshes the hourly rollup: counts again the hours that writes
    /// noted (`service::rollup`). Until then the series read those hours' raw rows.
    pub rollup_refresh_interval_ms: u64,
    /// About how many station-hours one refresh counts in its transaction (at least one
    /// write's note, however long).
    pub rollup_refresh_batch_hours: u64,
    /// Where `url` came from, in words, for messages about it; not itself a key.
    #[serde(skip)]
    pub url_source: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlSettings {
    /// Serve the GraphiQL IDE at `GET /graphql`.
    pub ide: bool,
    /// Answer introspection queries (the IDE's docs explorer needs them).
    pub introspection: bool,
    /// The most items one page (`first`) may hold.
    pub max_page_size: u32,
    /// The deepest selection nesting an operation may have.
    pub max_depth: usize,
    /// The highest complexity an operation may have: every field costs 1, a list field its
    /// page size times what it selects.
    pub max_complexity: usize,
    /// The most fields one document may select, fragments expanded, over all its operations
    /// (validation walks every one of them, not only the one that runs).
    pub max_fields: usize,
    /// The most fragment definitions one document may hold.
    pub max_fragments: usize,
    /// The most fragment spreads (`...Name`) one document may write.
    pub max_fragment_spreads: usize,
    /// The most operations one batched request (a JSON array) may hold; 0 refuses batches.
    pub max_batch_size: usize,
    /// The most rows one mutation may write (`createStations`, `recordObservations`).
    pub max_rows_per_mutation: usize,
    /// The most points (stations × buckets) one `observationSeries` may return.
    pub max_series_points: usize,
    /// The most stations one `observationSeries` may cover.
    pub max_series_stations: usize,
    /// Parsed documents kept by the hash of their text, which is also the store of automatic
    /// persisted queries: at most this many...
    pub document_store_entries: usize,
    /// ...and at most this many bytes of their text.
    pub document_store_bytes: usize,
    /// Run only the operations of `persisted_manifest` (allowlist mode).
    pub persisted_only: bool,
    /// A persisted-query manifest: Apollo's format, or a JSON object from SHA-256 to document.
    pub persisted_manifest: String,
    /// How long shared caches may keep a successful answer to a GET without `Authorization`
    /// (the client's own cache with one); 0 sends `Cache-Control: no-store`.
    pub get_max_age_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Hex SHA-256 hashes of static bearer tokens, each optionally followed by `:reader`,
    /// `:writer` (the default) or `:admin`.
    pub token_sha256: Vec<String>,
    /// Queries need a token too.
    pub require_for_queries: bool,
    /// Mutations without a token (development only).
    pub allow_unauthenticated_writes: bool,
    /// JWT access tokens from an identity provider.
    pub jwt: JwtSettings,
}

/// JWT access tokens from an identity provider (see `auth::jwt`). Off by default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    pub enabled: bool,
    /// The `iss` the provider puts in its tokens (required when enabled).
    pub issuer: String,
    /// The `aud` the provider puts in tokens for this API (required when enabled).
    pub audience: String,
    /// Where the provider publishes its signing keys (HTTPS; plain HTTP to loopback only).
    pub jwks_url: String,
    /// Or a file holding them, for air-gapped setups.
    pub jwks_file: String,
    /// A token with an unknown key id makes the keys be fetched again, at most this often.
    pub jwks_min_refresh_secs: u64,
    /// The signature algorithms accepted; HMAC ones never are.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Where the roles are in the claims: a dotted path (`realm_access.roles`) or a claim's
    /// whole name.
    pub roles_claim: String,
    /// `provider-role=reader|writer|admin` entries; empty: the claim's `reader`, `writer` and
    /// `admin` are ours as they are.
    pub role_map: Vec<String>,
    /// Whether the key fetch carries the trace's `traceparent` while traces are sent. Off by
    /// default: the provider is usually another party's service, which need not learn our
    /// trace ids; on when it is yours and traced too.
    pub send_trace_context: bool,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: String::new(),
            audience: String::new(),
            jwks_url: String::new(),
            jwks_file: String::new(),
            jwks_min_refresh_secs: 30,
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            leeway_s: 30,
            roles_claim: "roles".into(),
            role_map: Vec::new(),
            send_trace_context: false,
        }
    }
}

/// GraphQL subscriptions over WebSocket at `/graphql`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// Accept WebSocket connections (and listen to PostgreSQL for changes).
    pub enabled: bool,
    /// Open WebSocket connections this replica accepts; more are refused with 503.
    pub max_connections: usize,
    /// Operations one connection may run at once: its subscriptions, and the queries and
    /// mutations it sent that have not been answered yet.
    pub max_per_connection: usize,
    /// The highest complexity a subscription may have. Its selection is resolved again for
    /// every event and every subscriber, so it is held lower than `graphql.max_complexity`.
    pub max_complexity: usize,
    /// Events a subscriber may fall behind before its connection is closed (1008).
    pub buffer_events: usize,
    /// A WebSocket ping this often, so that proxies keep idle connections and dead peers show.
    pub keepalive_secs: u64,
    /// A connection that has not sent `connection_init` after this long is closed (4408).
    pub connection_init_timeout_secs: u64,
    /// A connection with no subscription and no message for this long is closed.
    pub idle_timeout_secs: u64,
    /// A client that takes longer than this to accept one message is dropped.
    pub send_timeout_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Empty: /metrics on the main port; else the address of a listener of its own.
    pub listen: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `stations_api=debug,info`; `RUST_LOG` overrides it.
    pub filter: String,
}

/// OpenTelemetry traces (`api/src/telemetry/traces.rs`). The standard `OTEL_*` variables
/// override these keys, as every OpenTelemetry SDK reads them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Every span's `service.name` (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// The share of traces kept, from 0.0 to 1.0, decided by trace id, so that every replica
    /// keeps or drops the same trace (`OTEL_TRACES_SAMPLER=traceidratio`,
    /// `OTEL_TRACES_SAMPLER_ARG`).
    pub sampling_ratio: f64,
    /// Whether an incoming `traceparent` that says "sampled" (or "not sampled") decides for
    /// its trace (`OTEL_TRACES_SAMPLER=parentbased_*`). Off: anyone on the Internet could make
    /// every request of theirs traced; its trace id is still kept, so the trace joins theirs.
    pub trust_incoming_sampling: bool,
    /// A span for every field resolved, at `debug` level, to find a slow resolver. Off in
    /// production: it multiplies each trace's spans by its fields, and a page's edges are then
    /// resolved field by field rather than in one pass.
    pub field_spans: bool,
    pub otlp: OtlpSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSettings {
    /// The OTLP/HTTP receiver's base URL; traces go to `<endpoint>/v1/traces`
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`). Empty: no traces, and nothing of them runs.
    pub endpoint: String,
    /// The full URL traces go to, when it is not `<endpoint>/v1/traces`
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub traces_endpoint: String,
    /// Sent with every export, such as a vendor's API key; never logged
    /// (`OTEL_EXPORTER_OTLP_HEADERS` adds to them).
    pub headers: std::collections::BTreeMap<String, SecretString>,
    /// Finished spans waiting to be sent; past them spans are dropped and counted
    /// (`stations_trace_spans_dropped_total`) rather than held in memory.
    pub max_queued_spans: usize,
    /// Spans are sent in batches this often, and whenever a batch is full.
    pub export_interval_ms: u64,
    /// One export may take this long; then its spans count as failed.
    pub export_timeout_ms: u64,
}

impl OtlpSettings {
    /// Where spans are sent, or `None` when tracing is off.
    pub fn traces_url(&self) -> Option<String> {
        let full = self.traces_endpoint.trim();
        if !full.is_empty() {
            return Some(full.to_owned());
        }
        let base = self.endpoint.trim().trim_end_matches('/');
        (!base.is_empty()).then(|| format!("{base}/v1/traces"))
    }

    pub fn export_interval(&self) -> Duration {
        Duration::from_millis(self.export_interval_ms)
    }

    pub fn export_timeout(&self) -> Duration {
        Duration::from_millis(self.export_timeout_ms)
    }
}

/// The standard OpenTelemetry variables and the key each one sets.
const OTEL_VARIABLES: [(&str, &str); 3] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp.endpoint"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "telemetry.otlp.traces_endpoint",
    ),
    ("OTEL_SERVICE_NAME", "telemetry.service_name"),
];

/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, as the sampling keys they stand for:
/// `(sampling_ratio, trust_incoming_sampling)`, or `None` when the sampler is not set.
fn standard_sampler(
    sampler: Option<&str>,
    argument: Option<&str>,
) -> Result<Option<(f64, bool)>, ConfigurationError> {
    let Some(sampler) = sampler.map(str::trim).filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    let ratio = || match argument.map(str::trim) {
        None | Some("") => Ok(1.0),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .ok_or_else(|| {
                ConfigurationError(format!(
                    "environment variable OTEL_TRACES_SAMPLER_ARG is {text:?}: a ratio from 0.0 \
                     to 1.0 was expected"
                ))
            }),
    };
    let chosen = match sampler {
        "always_on" => (1.0, false),
        "always_off" => (0.0, false),
        "traceidratio" => (ratio()?, false),
        "parentbased_always_on" => (1.0, true),
        "parentbased_always_off" => (0.0, true),
        "parentbased_traceidratio" => (ratio()?, true),
        other => {
            return Err(ConfigurationError(format!(
                "environment variable OTEL_TRACES_SAMPLER is {other:?}: use always_on, \
                 always_off, traceidratio, parentbased_always_on, parentbased_always_off or \
                 parentbased_traceidratio"
            )));
        }
    };
    Ok(Some(chosen))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A configuration problem, described for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigurationError(String);

impl Settings {
    /// Loads the settings of the environment named by `APP_ENV` from the folder named by
    /// `APP_CONFIG_DIR` (default `./config`).
    ///
    /// Without `APP_ENV` the server runs as development (open writes, the IDE, introspection),
    /// which is safe only where nobody else can reach it: on any `server.host` but a loopback
    /// address, a missing `APP_ENV` is refused.
    pub fn load() -> Result<Self, ConfigurationError> {
        let environment = Environment::from_env()?;
        let directory = env::var_os("APP_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let settings = Self::load_from(&directory, environment)?;
        if env::var_os("APP_ENV").is_none() && !is_loopback_host(&settings.server.host) {
            return Err(ConfigurationError(format!(
                "APP_ENV is not set, so this would run as development (writes without a token, \
                 the IDE, introspection) on server.host = {:?}, which other machines can reach: \
                 set APP_ENV=production (or APP_ENV=development to mean it), or listen on \
                 127.0.0.1",
                settings.server.host
            )));
        }
        Ok(settings)
    }

    /// Loads `default.toml` and `<environment>.toml` from `directory`, then the environment
    /// variable overrides, and validates the result.
    pub fn load_from(
        directory: &Path,
        environment: Environment,
    ) -> Result<Self, ConfigurationError> {
        let default_file = directory.join("default.toml");
        let environment_file = directory.join(format!("{environment}.toml"));
        for file in [&default_file, &environment_file] {
            if !file.is_file() {
                return Err(ConfigurationError(format!(
                    "configuration file {} not found: run from the repository root, or set \
                     APP_CONFIG_DIR to the folder that holds default.toml and {environment}.toml",
                    file.display()
                )));
            }
        }

        let config = Config::builder()
            .add_source(File::from(default_file).format(FileFormat::Toml))
            .add_source(File::from(environment_file).format(FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .try_parsing(true)
                    // Lists come comma-separated: APP__AUTH__TOKEN_SHA256=<hash>,<hash>
                    .list_separator(",")
                    .with_list_parse_key("auth.token_sha256")
                    .with_list_parse_key("auth.jwt.algorithms")
                    .with_list_parse_key("auth.jwt.role_map")
                    .with_list_parse_key("server.cors_allowed_origins")
                    .with_list_parse_key("server.allowed_hosts"),
            )
            .set_override_option("database.url", env::var("DATABASE_URL").ok())
            .and_then(|builder| {
                let read_urls = env::var(READ_URLS_VARIABLE).ok().map(|urls| {
                    urls.split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                });
                builder.set_override_option("database.read_urls", read_urls)
            })
            .and_then(|builder| {
                OTEL_VARIABLES
                    .iter()
                    .try_fold(builder, |builder, (variable, key)| {
                        builder.set_override_option(*key, env::var(variable).ok())
                    })
            })
            .and_then(|builder| builder.build())
            .map_err(|error| describe_config_error(&error, None))?;

        let mut settings: Settings = config
            .clone()
            .try_deserialize()
            .map_err(|error| describe_config_error(&error, Some(&config)))?;
        settings.environment = environment;
        if let Some((ratio, trust)) = standard_sampler(
            env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )? {
            settings.telemetry.sampling_ratio = ratio;
            settings.telemetry.trust_incoming_sampling = trust;
        }
        settings.database.url_source = source_of(&config, "database.url");
        settings.validate(&config)?;
        Ok(settings)
    }

    /// The first of the settings that must be at least 1 to be 0, if any.
    fn first_zero(&self) -> Option<&'static str> {
        let (database, server, subscriptions) = (&self.database, &self.server, &self.subscriptions);
        [
            (
                "database.max_connections",
                u64::from(database.max_connections),
            ),
            (
                "database.connect_attempts",
                u64::from(database.connect_attempts),
            ),
            (
                "database.connect_timeout_secs",
                database.connect_timeout_secs,
            ),
            ("database.acquire_timeout_ms", database.acquire_timeout_ms),
            (
                "database.standby_max_connections",
                u64::from(database.standby_max_connections),
            ),
            (
                "database.standby_check_interval_ms",
                database.standby_check_interval_ms,
            ),
            ("server.max_connections", server.max_connections as u64),
            (
                "graphql.max_series_points",
                self.graphql.max_series_points as u64,
            ),
            (
                "graphql.max_series_stations",
                self.graphql.max_series_stations as u64,
            ),
            (
                "server.header_read_timeout_secs",
                server.header_read_timeout_secs,
            ),
            (
                "server.body_read_timeout_secs",
                server.body_read_timeout_secs,
            ),
            (
                "subscriptions.max_connections",
                subscriptions.max_connections as u64,
            ),
            (
                "subscriptions.max_per_connection",
                subscriptions.max_per_connection as u64,
            ),
            (
                "subscriptions.max_complexity",
                subscriptions.max_complexity as u64,
            ),
            (
                "subscriptions.buffer_events",
                subscriptions.buffer_events as u64,
            ),
            ("subscriptions.keepalive_secs", subscriptions.keepalive_secs),
            (
                "subscriptions.connection_init_timeout_secs",
                subscriptions.connection_init_timeout_secs,
            ),
            (
                "subscriptions.idle_timeout_secs",
                subscriptions.idle_timeout_secs,
            ),
            (
                "subscriptions.send_timeout_secs",
                subscriptions.send_timeout_secs,
            ),
            (
                "database.rollup_refresh_interval_ms",
                self.database.rollup_refresh_interval_ms,
            ),
            (
                "database.rollup_refresh_batch_hours",
                self.database.rollup_refresh_batch_hours,
            ),
            (
                "graphql.document_store_entries",
                self.graphql.document_store_entries as u64,
            ),
            (
                "telemetry.otlp.max_queued_spans",
                self.telemetry.otlp.max_queued_spans as u64,
            ),
            (
                "telemetry.otlp.export_interval_ms",
                self.telemetry.otlp.export_interval_ms,
            ),
            (
                "telemetry.otlp.export_timeout_ms",
                self.telemetry.otlp.export_timeout_ms,
            ),
        ]
        .into_iter()
        .find(|(_, value)| *value == 0)
        .map(|(key, _)| key)
    }

    fn validate(&self, config: &Config) -> Result<(), ConfigurationError> {
        let invalid = |key: &str, problem: String| {
            ConfigurationError(format!(
                "`{key}` (set by {}) {problem}",
                source_of(config, key)
            ))
        };

        if self.server.host.trim().is_empty() {
            return Err(invalid(
                "server.host",
                "is empty: use an address such as 127.0.0.1".into(),
            ));
        }
        if let Err(problem) = self.database.check_url() {
            return Err(invalid("database.url", problem));
        }
        if !self.database.listen_url.expose_secret().trim().is_empty()
            && let Err(problem) = self.database.listening().check_url()
        {
            return Err(invalid("database.listen_url", problem));
        }
        for index in 0..self.database.read_urls.len() {
            if let Err(problem) = self.database.standby(index).check_url() {
                return Err(invalid(&format!("database.read_urls[{index}]"), problem));
            }
        }
        // Each counts or waits for something: 0 would refuse everything, or wait forever.
        if let Some(key) = self.first_zero() {
            return Err(invalid(key, "must be at least 1".into()));
        }
        if self.database.min_connections > self.database.max_connections {
            return Err(invalid(
                "database.min_connections",
                format!(
                    "is {} but must not exceed database.max_connections ({})",
                    self.database.min_connections, self.database.max_connections
                ),
            ));
        }
        // A WebSocket keeps its connection's slot: subscribers alone must not take every one.
        if self.subscriptions.enabled
            && self.subscriptions.max_connections >= self.server.max_connections
        {
            return Err(invalid(
                "server.max_connections",
                format!(
                    "is {} but must exceed subscriptions.max_connections ({}): WebSockets count \
                     against both, and HTTP requests need connections beside them",
                    self.server.max_connections, self.subscriptions.max_connections
                ),
            ));
        }
        if self.database.rollup_refresh_interval_ms > MAX_ROLLUP_REFRESH_INTERVAL_MS {
            return Err(invalid(
                "database.rollup_refresh_interval_ms",
                format!(
                    "is {} but must be at most {MAX_ROLLUP_REFRESH_INTERVAL_MS}: until a refresh, \
                     series read the raw rows of every hour written since the last one",
                    self.database.rollup_refresh_interval_ms
                ),
            ));
        }
        if self.database.rollup_refresh_batch_hours > MAX_ROLLUP_REFRESH_BATCH_HOURS {
            return Err(invalid(
                "database.rollup_refresh_batch_hours",
                format!(
                    "is {} but must be at most {MAX_ROLLUP_REFRESH_BATCH_HOURS}: a refresh that \
                     large outlasts database.statement_timeout_ms and never finishes",
                    self.database.rollup_refresh_batch_hours
                ),
            ));
        }
        for host in &self.server.allowed_hosts {
            if host.is_empty()
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
            {
                return Err(invalid(
                    "server.allowed_hosts",
                    format!(
                        "holds {host:?}, which is not a host name: write names such as \
                         dev.example.test, without scheme or port"
                    ),
                ));
            }
        }
        if self.auth.jwt.jwks_min_refresh_secs < MIN_JWKS_REFRESH_SECS {
            return Err(invalid(
                "auth.jwt.jwks_min_refresh_secs",
                format!(
                    "is {} but must be at least {MIN_JWKS_REFRESH_SECS}: every token with an \
                     unknown key id may fetch the identity provider's keys this often",
                    self.auth.jwt.jwks_min_refresh_secs
                ),
            ));
        }
        if self.server.socket_send_buffer_bytes < 4096 {
            return Err(invalid(
                "server.socket_send_buffer_bytes",
                "must be at least 4096".into(),
            ));
        }
        for origin in &self.server.cors_allowed_origins {
            if let Err(problem) = check_origin(origin) {
                return Err(invalid("server.cors_allowed_origins", problem));
            }
        }
        if self.graphql.persisted_only && self.graphql.persisted_manifest.trim().is_empty() {
            return Err(invalid(
                "graphql.persisted_manifest",
                "is empty while graphql.persisted_only is true: name the manifest file that \
                 your client build generated (the operations it may run)"
                    .into(),
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(invalid(
                "log.filter",
                format!("is not a valid filter: {error}"),
            ));
        }
        self.validate_telemetry(&invalid)
    }

    fn validate_telemetry(
        &self,
        invalid: &impl Fn(&str, String) -> ConfigurationError,
    ) -> Result<(), ConfigurationError> {
        let telemetry = &self.telemetry;
        if !(0.0..=1.0).contains(&telemetry.sampling_ratio) {
            return Err(invalid(
                "telemetry.sampling_ratio",
                format!(
                    "is {} but must be from 0.0 (no trace) to 1.0 (every trace)",
                    telemetry.sampling_ratio
                ),
            ));
        }
        if telemetry.service_name.trim().is_empty() {
            return Err(invalid(
                "telemetry.service_name",
                "is empty: name the service as traces should show it, e.g. stations-api".into(),
            ));
        }
        for key in ["endpoint", "traces_endpoint"] {
            let value = match key {
                "endpoint" => &telemetry.otlp.endpoint,
                _ => &telemetry.otlp.traces_endpoint,
            };
            if value.trim().is_empty() {
                continue;
            }
            let usable = Url::parse(value.trim()).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https") && url.host_str().is_some()
            });
            if !usable {
                return Err(invalid(
                    &format!("telemetry.otlp.{key}"),
                    format!(
                        "is {value:?}, which is not an http:// or https:// URL: write the OTLP \
                         receiver's address, e.g. http://127.0.0.1:4318"
                    ),
                ));
            }
        }
        for name in telemetry.otlp.headers.keys() {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    "telemetry.otlp.headers",
                    format!("holds {name:?}, which is not an HTTP header name"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `host` (an address to listen on) is a loopback address or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An origin as browsers send it in `Origin`: scheme, host and port only.
fn check_origin(origin: &str) -> Result<(), String> {
    let problem = || {
        format!(
            "holds {origin:?}, which is not an origin: write scheme://host[:port] with no \
             path or trailing slash, e.g. https://app.example.com"
        )
    };
    let url = Url::parse(origin).map_err(|_| problem())?;
    let canonical = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || canonical != origin {
        return Err(problem());
    }
    Ok(())
}

/// What is needed to reach PostgreSQL, read from `database.url` once it has been validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub has_password: bool,
}

impl DatabaseSettings {
    /// The URL with its password replaced, safe for logs and messages.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }

    /// Host, port, user and database of the URL.
    pub fn target(&self) -> DatabaseTarget {
        // `check_url` ran at load time, so a parse failure here means the settings were built
        // by hand; an empty target then fails to connect with a clear message.
        let url = Url::parse(self.url.expose_secret()).ok();
        let url = url.as_ref();
        DatabaseTarget {
            host: url.and_then(Url::host_str).unwrap_or_default().to_owned(),
            port: url.and_then(Url::port).unwrap_or(5432),
            user: url
                .map(|url| percent_decode(url.username()))
                .unwrap_or_default(),
            database: url
                .map(|url| percent_decode(url.path().trim_start_matches('/')))
                .unwrap_or_default(),
            has_password: url.and_then(Url::password).is_some_and(|p| !p.is_empty()),
        }
    }

    /// These settings for the standby `read_urls[index]`, with its own pool's budget.
    pub fn standby(&self, index: usize) -> Self {
        let mut settings = self.clone();
        settings.url = self.read_urls[index].clone();
        settings.url_source = format!("database.read_urls[{index}]");
        settings.max_connections = self.standby_max_connections;
        settings.min_connections = self.min_connections.min(self.standby_max_connections);
        settings
    }

    /// These settings with `listen_url` (when set) as the URL: where to LISTEN.
    pub fn listening(&self) -> Self {
        let mut settings = self.clone();
        if !self.listen_url.expose_secret().trim().is_empty() {
            settings.url = self.listen_url.clone();
            settings.url_source = "database.listen_url".to_owned();
        }
        settings
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    fn check_url(&self) -> Result<(), String> {
        if self.url.expose_secret().trim().is_empty() {
            return Err("is empty: set DATABASE_URL to \
                        postgres://user:password@host:5432/database?sslmode=disable"
                .into());
        }
        let url = Url::parse(self.url.expose_secret())
            .map_err(|error| format!("is not a valid URL ({error})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err("must start with postgres:// (postgresql:// works too)".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host: postgres://user:password@HOST:5432/database".into());
        }
        if url.username().is_empty() {
            return Err("has no user: postgres://USER:password@host:5432/database".into());
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err("names no database: postgres://user:password@host:5432/DATABASE".into());
        }
        const SSL_MODES: [&str; 6] = [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ];
        for (name, value) in url.query_pairs() {
            if name == "sslmode" && !SSL_MODES.contains(&value.as_ref()) {
                return Err(format!(
                    "has sslmode={value}; use one of {}",
                    SSL_MODES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// `url` with any password replaced by `********`; unparsable input is hidden entirely.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("********"));
            }
            parsed.to_string()
        }
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// The environment variable that overrides `key`: `server.port` -> `APP__SERVER__PORT`.
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.replace('.', ENV_SEPARATOR).to_ascii_uppercase()
    )
}

/// Where the value of `key` came from, in words: a variable's name or a file's path.
fn source_of(config: &Config, key: &str) -> String {
    if key == "database.url" && env::var_os("DATABASE_URL").is_some() {
        return "environment variable DATABASE_URL".to_owned();
    }
    if let Some((variable, _)) = OTEL_VARIABLES
        .iter()
        .find(|(variable, named)| *named == key && env::var_os(variable).is_some())
    {
        return format!("environment variable {variable}");
    }
    let variable = env_var_for(key);
    if env::var_os(&variable).is_some() {
        return format!("environment variable {variable}");
    }
    // `Config::get` rebuilds values and drops their origin; the section's table keeps it.
    let origin = key.rsplit_once('.').and_then(|(section, name)| {
        let table = config.get_table(section).ok()?;
        table.get(name)?.origin().map(str::to_owned)
    });
    origin.unwrap_or_else(|| "no file or variable".to_owned())
}

fn describe_config_error(error: &ConfigError, config: Option<&Config>) -> ConfigurationError {
    let located = |key: &str, problem: String| match config {
        Some(config) => format!("`{key}` (set by {}) {problem}", source_of(config, key)),
        None => format!("`{key}` {problem}"),
    };
    let message = match error {
        ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => {
            // A type error quotes the value; the URL may hold a password, so it is never quoted.
            if key == "database.url" {
                located(key, format!("must be {expected}"))
            } else {
                located(key, format!("must be {expected}, not {unexpected}"))
            }
        }
        ConfigError::At {
            error,
            key: Some(key),
            ..
        } => match error.as_ref() {
            ConfigError::Message(message) => located(key, message.clone()),
            other => located(key, other.to_string()),
        },
        ConfigError::NotFound(key) => format!(
            "`{key}` is not set: add it to config/default.toml or set {}",
            env_var_for(key)
        ),
        ConfigError::FileParse { uri, cause } => format!(
            "{} is not valid TOML: {cause}",
            uri.as_deref().unwrap_or("a configuration file")
        ),
        ConfigError::Message(message) => message.clone(),
        other => other.to_string(),
    };
    ConfigurationError(format!("invalid configuration: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacting_a_url_hides_the_password_and_keeps_the_rest() {
        let redacted = redact_url("postgres://app:s3cret@db:5432/stations?sslmode=disable");
        assert_eq!(
            redacted,
            "postgres://app:********@db:5432/stations?sslmode=disable"
        );
    }

    #[test]
    fn redacting_an_unparsable_url_hides_all_of_it() {
        assert_eq!(redact_url("not a url :s3cret@"), "(an unparsable URL)");
    }

    #[test]
    fn environment_variable_names_follow_the_key_path() {
        assert_eq!(
            env_var_for("database.max_connections"),
            "APP__DATABASE__MAX_CONNECTIONS"
        );
    }

    #[test]
    fn an_allowed_origin_is_scheme_host_and_port_only() {
        assert!(check_origin("https://app.example.com").is_ok());
        assert!(check_origin("http://localhost:5173").is_ok());
        for wrong in [
            "https://app.example.com/",
            "app.example.com",
            "*",
            "https://app.example.com/path",
            "ftp://example.com",
        ] {
            assert!(check_origin(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn unknown_environment_names_list_the_allowed_ones() {
        let error = "staging".parse::<Environment>().unwrap_err();
        assert!(error.contains("development, test or production"), "{error}");
    }

    #[test]
    fn the_standard_sampler_variables_set_the_ratio_and_whom_to_trust() {
        assert_eq!(standard_sampler(None, Some("0.5")).unwrap(), None);
        assert_eq!(
            standard_sampler(Some("traceidratio"), Some("0.25")).unwrap(),
            Some((0.25, false))
        );
        assert_eq!(
            standard_sampler(Some("parentbased_traceidratio"), None).unwrap(),
            Some((1.0, true))
        );
        assert_eq!(
            standard_sampler(Some("always_off"), None).unwrap(),
            Some((0.0, false))
        );
        let error = standard_sampler(Some("traceidratio"), Some("2")).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_TRACES_SAMPLER_ARG"),
            "{error}"
        );
        let error = standard_sampler(Some("jaeger_remote"), None).unwrap_err();
        assert!(
            error.to_string().contains("parentbased_always_on"),
            "{error}"
        );
    }

    #[test]
    fn traces_go_to_the_endpoints_v1_traces_unless_a_full_url_is_given() {
        let mut otlp = OtlpSettings {
            endpoint: String::new(),
            traces_endpoint: String::new(),
            headers: std::collections::BTreeMap::new(),
            max_queued_spans: 1,
            export_interval_ms: 1,
            export_timeout_ms: 1,
        };
        assert_eq!(otlp.traces_url(), None);
        otlp.endpoint = "http://collector:4318/".to_owned();
        assert_eq!(
            otlp.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        otlp.traces_endpoint = "https://vendor.example/otlp/spans".to_owned();
        assert_eq!(
            otlp.traces_url().as_deref(),
            Some("https://vendor.example/otlp/spans")
        );
    }
}
