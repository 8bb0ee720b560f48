//! JWT access tokens from an identity provider (Keycloak, Auth0, Cognito, Entra ID, Google...),
//! verified against the provider's public keys (a JWKS, RFC 7517), with the caller's roles read
//! from a claim.
//!
//! - Only the algorithms of `auth.jwt.algorithms` are accepted, and only asymmetric ones: a
//!   token that says `alg: none` or HS256 is refused whatever its signature (the
//!   algorithm-confusion attack, where a public key is used as an HMAC secret).
//! - `iss` and `aud` must be the configured ones; `exp` is required; `nbf`, `exp` and `iat`
//!   are checked with `auth.jwt.leeway_s` of clock skew.
//! - Keys come from `auth.jwt.jwks_url` (HTTPS, or plain HTTP to a loopback address) or
//!   `auth.jwt.jwks_file`. The URL is fetched at start-up, again before the response's
//!   `Cache-Control: max-age` runs out, and when a token names a key id not seen yet (a key
//!   rotation), but at most once per `auth.jwt.jwks_min_refresh_secs`, so that a flood of
//!   tokens with made-up key ids cannot hammer the provider. Until the keys load, JWTs are
//!   answered `SERVICE_UNAVAILABLE` ("signing keys not loaded yet") and retried with backoff;
//!   static tokens keep working.
//! - While traces are sent, each fetch is a client span (`GET`): in the trace of the request
//!   whose token named an unknown key, or in one of its own. It carries the W3C `traceparent`
//!   to the provider only with `auth.jwt.send_trace_context`: a provider on another site
//!   should not learn our trace ids, and we cannot tell its site from ours.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    jwk::{Jwk, KeyAlgorithm},
};
use serde_json::Value;
use tracing::{Instrument, field::Empty};
use url::Url;

use super::{Principal, Role};
use crate::configuration::JwtSettings;
use crate::telemetry::traces;

/// Used when the provider's response says nothing about caching.
const DEFAULT_KEYS_LIFETIME: Duration = Duration::from_secs(3600);
/// How long one fetch of the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `auth.jwt` cannot be used; the server does not start with it.
#[derive(Debug, thiserror::Error)]
#[error("auth.jwt.{key}: {problem}")]
pub struct JwtSetupError {
    key: &'static str,
    problem: String,
}

fn setup(key: &'static str, problem: impl Into<String>) -> JwtSetupError {
    JwtSetupError {
        key,
        problem: problem.into(),
    }
}

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("signing keys not loaded yet")]
    KeysNotLoaded,
    #[error("algorithm {0} is not among auth.jwt.algorithms")]
    AlgorithmNotAllowed(String),
    #[error("no signing key with id {0:?}")]
    UnknownKey(String),
    #[error("{0}")]
    Rejected(String),
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    Url(Url),
    File(PathBuf),
}

/// Keys by key id (`""` for a key without one), each with the algorithm it declares.
type KeysById = HashMap<String, Vec<(DecodingKey, Option<Algorithm>)>>;

/// The usable keys of the last JWKS.
#[derive(Default)]
struct Keys {
    by_id: KeysById,
    loaded: bool,
}

pub struct JwtVerifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway_s: u64,
    roles_claim: String,
    role_map: Vec<(String, Role)>,
    source: KeySource,
    min_refresh: Duration,
    keys: RwLock<Keys>,
    /// When the JWKS was last fetched; held while fetching, so that fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// When the background refresh should fetch again.
    refresh_at: std::sync::Mutex<Instant>,
    loaded: AtomicBool,
    http: reqwest::Client,
    /// Whether a fetch carries the trace's `traceparent`.
    send_trace_context: bool,
}

impl JwtVerifier {
    /// Checks the settings and, for `jwks_file`, loads the keys at once.
    pub fn new(settings: &JwtSettings) -> Result<Self, JwtSetupError> {
        if settings.issuer.trim().is_empty() {
            return Err(setup(
                "issuer",
                "is required when auth.jwt.enabled is true: the `iss` your provider puts in its tokens",
            ));
        }
        if settings.audience.trim().is_empty() {
            return Err(setup(
                "audience",
                "is required when auth.jwt.enabled is true: the `aud` your provider puts in tokens for this API",
            ));
        }
        let source = match (settings.jwks_url.trim(), settings.jwks_file.trim()) {
            ("", "") => {
                return Err(setup(
                    "jwks_url",
                    "or auth.jwt.jwks_file is required: where the provider's signing keys are",
                ));
            }
            (url, "") => KeySource::Url(check_url(url)?),
            ("", file) => KeySource::File(PathBuf::from(file)),
            _ => {
                return Err(setup(
                    "jwks_file",
                    "and auth.jwt.jwks_url are both set: choose one",
                ));
            }
        };
        let algorithms = settings
            .algorithms
            .iter()
            .map(|name| parse_algorithm(name))
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(setup(
                "algorithms",
                "must name at least one algorithm, e.g. RS256",
            ));
        }
        let role_map = settings
            .role_map
            .iter()
            .map(|entry| {
                let (theirs, ours) = entry.split_once('=').ok_or_else(|| {
                    setup(
                        "role_map",
                        format!("entry {entry:?} must read provider-role=reader|writer|admin"),
                    )
                })?;
                let role = Role::parse(ours.trim()).ok_or_else(|| {
                    setup(
                        "role_map",
                        format!("entry {entry:?} maps to {ours:?}: use reader, writer or admin"),
                    )
                })?;
                Ok((theirs.trim().to_owned(), role))
            })
            .collect::<Result<Vec<_>, JwtSetupError>>()?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(same_origin_redirects())
            .build()
            .map_err(|error| setup("jwks_url", format!("no HTTP client: {error}")))?;
        let verifier = Self {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            algorithms,
            leeway_s: settings.leeway_s,
            roles_claim: settings.roles_claim.clone(),
            role_map,
            source,
            min_refresh: Duration::from_secs(settings.jwks_min_refresh_secs),
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            refresh_at: std::sync::Mutex::new(Instant::now()),
            loaded: AtomicBool::new(false),
            http,
            send_trace_context: settings.send_trace_context,
        };
        if let KeySource::File(path) = &verifier.source {
            let text = std::fs::read_to_string(path).map_err(|error| {
                setup(
                    "jwks_file",
                    format!("{} cannot be read: {error}", path.display()),
                )
            })?;
            let keys = verifier
                .usable_keys(&text)
                .map_err(|problem| setup("jwks_file", format!("{}: {problem}", path.display())))?;
            verifier.install(keys, None);
        }
        Ok(verifier)
    }

    /// Whether the signing keys are loaded.
    pub fn keys_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Fetches the keys once, waiting at most `patience`: at start-up, so that the first
    /// tokens need not wait for the background refresh.
    pub async fn load_now(&self, patience: Duration) {
        if matches!(self.source, KeySource::Url(_)) {
            let _ = tokio::time::timeout(patience, self.fetch(true)).await;
        }
    }

    /// Keeps the keys fresh for the life of the server: retries with backoff until they load,
    /// then fetches again before they expire.
    pub async fn keep_fresh(self: std::sync::Arc<Self>) {
        if !matches!(self.source, KeySource::Url(_)) {
            return;
        }
        let mut pause = Duration::from_millis(500);
        loop {
            if !self.keys_loaded() {
                if self.fetch(true).await.is_err() {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                continue;
            }
            pause = Duration::from_millis(500);
            let due = self
                .refresh_at
                .lock()
                .map(|at| *at)
                .unwrap_or_else(|_| Instant::now() + DEFAULT_KEYS_LIFETIME);
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            // A failed refresh keeps the keys it had; the next try comes after the pause.
            if self.fetch(true).await.is_err()
                && let Ok(mut at) = self.refresh_at.lock()
            {
                *at = Instant::now() + self.min_refresh.max(Duration::from_secs(5));
            }
        }
    }

    /// Verifies `token` and returns who it names, in which role.
    pub async fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let header = decode_header(token)
            .map_err(|error| JwtError::Rejected(format!("malformed header: {error}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(JwtError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        if !self.keys_loaded() {
            return Err(JwtError::KeysNotLoaded);
        }
        let kid = header.kid.clone().unwrap_or_default();
        if !self.knows(&kid) {
            // Perhaps the provider rotated its keys: look again, unless it was just done.
            let _ = self.fetch(false).await;
        }
        let candidates = self
            .keys
            .read()
            .ok()
            .and_then(|keys| keys.by_id.get(&kid).cloned())
            .ok_or_else(|| JwtError::UnknownKey(kid.clone()))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last_error = JwtError::UnknownKey(kid);
        for (key, algorithm) in candidates {
            if algorithm.is_some_and(|algorithm| algorithm != header.alg) {
                continue;
            }
            match decode::<Value>(token, &key, &validation) {
                Ok(data) => {
                    // jsonwebtoken leaves `iat` alone; a token issued in the future is from a
                    // provider whose clock is wrong, or forged.
                    if data.claims["iat"]
                        .as_u64()
                        .is_some_and(|issued| issued > now_seconds() + self.leeway_s)
                    {
                        return Err(JwtError::Rejected("issued in the future (iat)".to_owned()));
                    }
                    return Ok(self.principal(&data.claims));
                }
                Err(error) => last_error = JwtError::Rejected(error.to_string()),
            }
        }
        Err(last_error)
    }

    fn knows(&self, kid: &str) -> bool {
        self.keys
            .read()
            .map(|keys| keys.by_id.contains_key(kid))
            .unwrap_or(false)
    }

    /// The principal a verified token's claims describe.
    fn principal(&self, claims: &Value) -> Principal {
        let names: Vec<String> = match claim_at(claims, &self.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let role = names
            .iter()
            .filter_map(|name| {
                if self.role_map.is_empty() {
                    Role::parse(name)
                } else {
                    self.role_map
                        .iter()
                        .find(|(theirs, _)| theirs == name)
                        .map(|(_, ours)| *ours)
                }
            })
            .max();
        Principal {
            subject: claims["sub"].as_str().map(str::to_owned),
            role,
            authenticated: true,
            // When the token stops being accepted, clock skew included.
            expires_at: claims["exp"].as_u64().map(|seconds| {
                UNIX_EPOCH + Duration::from_secs(seconds.saturating_add(self.leeway_s))
            }),
        }
    }

    /// Fetches the JWKS from the URL and installs its usable keys. Unless `forced`, does nothing
    /// when the last fetch was less than `jwks_min_refresh_secs` ago.
    async fn fetch(&self, forced: bool) -> Result<(), String> {
        let KeySource::Url(url) = &self.source else {
            return Ok(());
        };
        let mut last_fetch = self.last_fetch.lock().await;
        if !forced && last_fetch.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Ok(());
        }
        *last_fetch = Some(Instant::now());
        let span = fetch_span(url);
        let outcome = async {
            let mut request = self.http.get(url.clone());
            if self.send_trace_context {
                request = request.headers(traces::context_headers(&span));
            }
            let response = request.send().await.map_err(|error| {
                span.record("error.type", "_OTHER");
                format!("cannot fetch {url}: {error}")
            })?;
            span.record("http.response.status_code", response.status().as_u16());
            if !response.status().is_success() {
                span.record("error.type", response.status().as_str());
                return Err(format!("{url} answered {}", response.status()));
            }
            let lifetime = max_age(response.headers());
            let text = read_capped(response, MAX_JWKS_BYTES)
                .await
                .map_err(|problem| format!("cannot read {url}: {problem}"))?;
            let keys = self.usable_keys(&text)?;
            Ok((keys, lifetime))
        }
        .instrument(span.clone())
        .await;
        if outcome.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        match outcome {
            Ok((keys, lifetime)) => {
                let count = keys.values().map(Vec::len).sum::<usize>();
                let first = !self.keys_loaded();
                self.install(keys, lifetime);
                if first {
                    tracing::info!(keys = count, "signing keys of the identity provider loaded");
                }
                Ok(())
            }
            Err(problem) => {
                tracing::warn!("cannot load the identity provider's signing keys: {problem}");
                Err(problem)
            }
        }
    }

    fn install(&self, keys: KeysById, lifetime: Option<Duration>) {
        if let Ok(mut installed) = self.keys.write() {
            installed.by_id = keys;
            installed.loaded = true;
        }
        let lifetime = lifetime
            .unwrap_or(DEFAULT_KEYS_LIFETIME)
            .max(self.min_refresh);
        if let Ok(mut at) = self.refresh_at.lock() {
            // Before they expire: at nine tenths of their lifetime.
            *at = Instant::now() + lifetime.mul_f64(0.9);
        }
        self.loaded.store(true, Ordering::Release);
    }

    /// The keys of a JWKS document that the allowed algorithms can use; an error when none.
    fn usable_keys(&self, text: &str) -> Result<KeysById, String> {
        let document: Value =
            serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
        let entries = document["keys"]
            .as_array()
            .ok_or("not a JWKS: no `keys` array")?;
        let mut keys = KeysById::new();
        for entry in entries {
            // One unusable key (another algorithm, an encryption key) is no reason to refuse
            // the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|usage| *usage != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let algorithm = jwk.common.key_algorithm.and_then(algorithm_of);
            if algorithm.is_some_and(|algorithm| !self.algorithms.contains(&algorithm)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if !self
                .algorithms
                .iter()
                .any(|allowed| allowed.family() == key.family())
            {
                continue;
            }
            keys.entry(jwk.common.key_id.clone().unwrap_or_default())
                .or_default()
                .push((key, algorithm));
        }
        if keys.is_empty() {
            return Err(format!(
                "no key usable with auth.jwt.algorithms ({})",
                self.algorithms
                    .iter()
                    .map(|algorithm| format!("{algorithm:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(keys)
    }

    /// What `doctor` reports: whether the keys load, and how many are usable.
    pub async fn check(&self) -> Result<usize, String> {
        match &self.source {
            KeySource::Url(_) => self.fetch(true).await?,
            KeySource::File(_) => {}
        }
        Ok(self
            .keys
            .read()
            .map(|keys| keys.by_id.values().map(Vec::len).sum())
            .unwrap_or(0))
    }
}

/// The JWKS URL, if it is HTTPS, or plain HTTP to a loopback address (a test, a sidecar).
fn check_url(text: &str) -> Result<Url, JwtSetupError> {
    let url =
        Url::parse(text).map_err(|error| setup("jwks_url", format!("is not a URL: {error}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(setup(
            "jwks_url",
            format!(
                "{text} must be https:// (plain http only to a loopback address): keys fetched in the clear could be swapped"
            ),
        )),
    }
}

fn parse_algorithm(name: &str) -> Result<Algorithm, JwtSetupError> {
    match name.trim() {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        hmac if hmac.starts_with("HS") => Err(setup(
            "algorithms",
            format!(
                "{hmac} is an HMAC algorithm: tokens from an identity provider are verified with its public keys, and HMAC with a public key is the algorithm-confusion attack"
            ),
        )),
        other => Err(setup(
            "algorithms",
            format!(
                "{other:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
            ),
        )),
    }
}

/// The algorithm a JWK declares, if it is one this verifier knows.
fn algorithm_of(declared: KeyAlgorithm) -> Option<Algorithm> {
    parse_algorithm(&format!("{declared:?}")).ok()
}

/// The claim at a dotted path (`realm_access.roles`); a claim whose own name contains dots (a
/// namespaced URL such as `https://example.com/roles`) is found by its whole name first.
fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, segment| value.get(segment))
}

/// `Cache-Control: max-age`, when the response gives one.
/// A key set is a few kilobytes; a provider's answer larger than this is not one, and is not
/// read into memory.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A fetch's span while traces are sent, named and attributed as OpenTelemetry's HTTP client
/// conventions say; the URL without its user, password or query, which may hold secrets.
fn fetch_span(url: &Url) -> tracing::Span {
    if !traces::enabled() {
        return tracing::Span::none();
    }
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    tracing::info_span!(
        "GET",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "GET",
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().unwrap_or_default(),
        url.full = shown.as_str(),
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Redirects are followed only within the key set's own origin (scheme, host and port), at
/// most 3: a redirect must not send the fetch to another site or from https down to http.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(reqwest::Url::origin);
        if attempt.previous().len() > 3 {
            attempt.error("more than 3 redirects")
        } else if first.as_ref() != Some(&attempt.url().origin()) {
            attempt.error("a redirect to another origin")
        } else {
            attempt.follow()
        }
    })
}

/// The body of `response` as text, or an error once it passes `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<String, String> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(format!("the answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_owned())
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::CACHE_CONTROL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|directive| directive.trim().strip_prefix("max-age="))
        .and_then(|seconds| seconds.trim().parse().ok())
        .map(Duration::from_secs)
}

/// Seconds since the epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_are_found_by_dotted_path_or_by_a_namespaced_name() {
        let claims = json!({
            "realm_access": { "roles": ["writer"] },
            "https://example.com/roles": ["admin"],
            "scope": "reader other"
        });
        assert_eq!(
            claim_at(&claims, "realm_access.roles"),
            Some(&json!(["writer"]))
        );
        assert_eq!(
            claim_at(&claims, "https://example.com/roles"),
            Some(&json!(["admin"]))
        );
        assert_eq!(claim_at(&claims, "scope"), Some(&json!("reader other")));
        assert_eq!(claim_at(&claims, "realm_access.nothing"), None);
    }

    #[test]
    fn hmac_and_unknown_algorithms_and_plain_http_elsewhere_are_refused_at_start() {
        assert!(
            parse_algorithm("HS256")
                .unwrap_err()
                .to_string()
                .contains("algorithm-confusion")
        );
        assert!(parse_algorithm("none").is_err());
        assert_eq!(parse_algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
        assert!(check_url("http://idp.example.com/jwks").is_err());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("https://idp.example.com/jwks").is_ok());
    }
}
