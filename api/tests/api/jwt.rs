//! Sign-in at an identity provider: JWTs signed with keys the test generates (`openssl
//! genpkey`), verified by the server against a JWKS that a small HTTP server of the test's own
//! publishes on loopback, as Keycloak or Auth0 would.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use stations_api::{
    auth::jwt::now_seconds,
    configuration::{JwtSettings, Settings},
};

use crate::helpers::{
    ServerProcess, TestApp, TestDatabase, assert_no_errors, error_code, error_field, error_message,
    run, spawn_app_with, stations_api,
};
use crate::live::{LiveClient, TRANSPORT_WS};
use crate::traces::{ReceivedSpan, Receiver, only};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const ISSUER: &str = "https://sso.example.test/realms/stations";
const AUDIENCE: &str = "stations-api";
const JWKS_PATH: &str = "/realms/stations/protocol/openid-connect/certs";
const CREATE: &str =
    "mutation($input: CreateStationInput!) { createStation(input: $input) { id code } }";
const COUNT: &str = "{ stations { totalCount } }";

/// A signing key pair of the provider's: the private half signs tokens, the public half is
/// published in the JWKS under `kid`.
struct SigningKey {
    kid: &'static str,
    algorithm: Algorithm,
    private: EncodingKey,
    jwk: Value,
    public_pem: Vec<u8>,
}

impl SigningKey {
    fn generate(kid: &'static str, algorithm: Algorithm) -> Self {
        let options: &[&str] = match algorithm {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["-algorithm", "ED25519"],
            other => panic!("no key generation for {other:?}"),
        };
        let private_pem = openssl(&[&["genpkey"], options].concat(), None);
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem));
        let private = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private_pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&private_pem),
            _ => EncodingKey::from_ed_pem(&private_pem),
        }
        .expect("a private key openssl made");
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&private, algorithm).expect("the public half as a JWK"),
        )
        .unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self {
            kid,
            algorithm,
            private,
            jwk,
            public_pem,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.private).expect("a signed token")
    }
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl, to generate keys");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The provider's keys, generated once for all the tests of this file.
struct Keys {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    /// The key the provider rotates to.
    next: SigningKey,
    /// Someone else's key, published nowhere, claiming to be `rsa`.
    impostor: SigningKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    rsa: SigningKey::generate("rsa-1", Algorithm::RS256),
    ec: SigningKey::generate("ec-1", Algorithm::ES256),
    ed: SigningKey::generate("ed-1", Algorithm::EdDSA),
    next: SigningKey::generate("rsa-2", Algorithm::RS256),
    impostor: SigningKey::generate("rsa-1", Algorithm::RS256),
});

/// What the identity provider publishes, and how often it was asked.
#[derive(Default)]
struct Published {
    keys: Vec<Value>,
    max_age_secs: Option<u64>,
    fetches: usize,
    /// The `traceparent` each fetch carried, in order.
    traceparents: Vec<Option<String>>,
}

/// The identity provider's JWKS endpoint on a loopback port of its own.
struct IdentityProvider {
    port: u16,
    published: Arc<Mutex<Published>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl IdentityProvider {
    /// A provider whose port is chosen but which does not answer yet: connections are refused
    /// until [`IdentityProvider::start`].
    fn down(keys: &[&SigningKey]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let provider = Self {
            port,
            published: Arc::default(),
            server: None,
        };
        provider.publish(keys);
        provider
    }

    async fn up(keys: &[&SigningKey]) -> Self {
        let mut provider = Self::down(keys);
        provider.start().await;
        provider
    }

    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the provider's port");
        let router = Router::new()
            .route(JWKS_PATH, get(jwks))
            .with_state(Arc::clone(&self.published));
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }));
    }

    fn jwks_url(&self) -> String {
        format!("http://127.0.0.1:{}{JWKS_PATH}", self.port)
    }

    fn publish(&self, keys: &[&SigningKey]) {
        self.published.lock().unwrap().keys = keys.iter().map(|key| key.jwk.clone()).collect();
    }

    fn fetches(&self) -> usize {
        self.published.lock().unwrap().fetches
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

async fn jwks(
    State(published): State<Arc<Mutex<Published>>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let mut published = published.lock().unwrap();
    published.fetches += 1;
    published.traceparents.push(
        headers
            .get("traceparent")
            .map(|value| value.to_str().unwrap().to_owned()),
    );
    let cache_control = published.max_age_secs.map_or_else(
        || "no-cache".to_owned(),
        |seconds| format!("public, max-age={seconds}"),
    );
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, cache_control)],
        axum::Json(json!({ "keys": published.keys })),
    )
}

/// The settings of a server that trusts `provider` and has no static token.
fn trusting(provider: &IdentityProvider, settings: &mut Settings) {
    settings.auth.allow_unauthenticated_writes = false;
    settings.auth.jwt = JwtSettings {
        enabled: true,
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        jwks_url: provider.jwks_url(),
        ..JwtSettings::default()
    };
}

/// The claims of a token for this API naming `roles`, valid for five minutes.
fn claims(roles: &[&str]) -> Value {
    let now = now_seconds();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "7d3a1c2e-alice",
        "iat": now,
        "exp": now + 300,
        "roles": roles,
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn base64url(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// One GraphQL request with an optional Authorization header: status, WWW-Authenticate and
/// body.
async fn send(
    app: &TestApp,
    query: &str,
    variables: Value,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, challenge, response.json().await.expect("JSON"))
}

async fn create(
    app: &TestApp,
    code: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let input = json!({ "input": { "code": code, "name": "Signed in", "lat": 46.9, "lng": 7.4 } });
    send(app, CREATE, input, authorization).await
}

#[tokio::test]
async fn a_reader_may_query_but_not_mutate_and_writers_and_admins_may_both() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa, &keys.ec, &keys.ed]).await;
    let app = spawn_app_with(|settings| trusting(&provider, settings)).await;

    let reader = bearer(&keys.rsa.sign(&claims(&["reader"])));
    let (status, _, body) = send(&app, COUNT, json!({}), Some(&reader)).await;
    assert_eq!(status, 200);
    assert_no_errors(&body);
    let (status, challenge, body) = create(&app, "READ", Some(&reader)).await;
    assert_eq!((status, error_code(&body)), (403, "FORBIDDEN"), "{body}");
    assert_eq!(
        error_message(&body),
        "this needs the writer role; the token grants reader"
    );
    assert_eq!(
        challenge, None,
        "403 is not a challenge to authenticate again"
    );

    // A role the API does not know grants nothing beyond what anyone may do.
    let stranger = bearer(&keys.rsa.sign(&claims(&["offline_access"])));
    let (status, _, body) = create(&app, "NONE", Some(&stranger)).await;
    assert_eq!((status, error_code(&body)), (403, "FORBIDDEN"), "{body}");

    // Each algorithm of the default allowlist, each with a role that may write.
    let writer = bearer(&keys.ec.sign(&claims(&["offline_access", "writer"])));
    let (status, _, body) = create(&app, "WRITE", Some(&writer)).await;
    assert_eq!(status, 200);
    assert_no_errors(&body);
    let admin = bearer(&keys.ed.sign(&claims(&["admin"])));
    let (status, _, body) = create(&app, "ADMIN", Some(&admin)).await;
    assert_eq!(status, 200);
    assert_no_errors(&body);

    assert_eq!(
        app.station_count().await,
        2,
        "only the writer and the admin wrote"
    );
}

#[tokio::test]
async fn roles_are_read_where_the_provider_puts_them_and_mapped_to_ours() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    // Keycloak: realm roles under realm_access.roles, named as the realm's admins chose.
    let keycloak = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.roles_claim = "realm_access.roles".to_owned();
        settings.auth.jwt.role_map = vec!["stations-editor=writer".to_owned()];
    })
    .await;
    let editor = with(
        claims(&[]),
        json!({ "realm_access": { "roles": ["stations-editor"] } }),
    );
    let (status, _, body) = create(&keycloak, "KC", Some(&bearer(&keys.rsa.sign(&editor)))).await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
    // With a mapping, only mapped names count, even ours, and only in the configured claim.
    let unmapped = with(
        claims(&["writer"]),
        json!({ "realm_access": { "roles": ["writer"] } }),
    );
    let (status, _, body) =
        create(&keycloak, "KC2", Some(&bearer(&keys.rsa.sign(&unmapped)))).await;
    assert_eq!((status, error_code(&body)), (403, "FORBIDDEN"), "{body}");

    // Auth0: a namespaced claim whose name holds dots.
    let auth0 = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.roles_claim = "https://stations.example.test/roles".to_owned();
    })
    .await;
    let namespaced = with(
        claims(&[]),
        json!({ "https://stations.example.test/roles": ["admin"] }),
    );
    let (status, _, body) = create(&auth0, "A0", Some(&bearer(&keys.rsa.sign(&namespaced)))).await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_alike_and_writes_nothing() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa, &keys.ec]).await;
    let app = spawn_app_with(|settings| trusting(&provider, settings)).await;
    let writer = claims(&["writer"]);
    let now = now_seconds();

    let unsigned = format!(
        "{}.{}.",
        base64url(&json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" })),
        base64url(&writer)
    );
    // The algorithm-confusion attack: the RSA public key, which anyone may read, used as an
    // HMAC secret.
    let mut hmac = Header::new(Algorithm::HS256);
    hmac.kid = Some("rsa-1".to_owned());
    let confused = jsonwebtoken::encode(
        &hmac,
        &writer,
        &EncodingKey::from_secret(&keys.rsa.public_pem).unwrap(),
    )
    .unwrap();
    let reader_token = keys.rsa.sign(&claims(&["reader"]));
    let mut parts: Vec<&str> = reader_token.split('.').collect();
    let promoted = base64url(&writer);
    parts[1] = &promoted;
    let tampered = parts.join(".");
    let huge = keys.rsa.sign(&with(
        writer.clone(),
        json!({ "padding": "x".repeat(100_000) }),
    ));
    assert!(huge.len() > 100_000);

    let cases = [
        (
            "expired",
            keys.rsa
                .sign(&with(writer.clone(), json!({ "exp": now - 120 }))),
        ),
        (
            "not yet valid",
            keys.rsa
                .sign(&with(writer.clone(), json!({ "nbf": now + 300 }))),
        ),
        (
            "issued in the future",
            keys.rsa
                .sign(&with(writer.clone(), json!({ "iat": now + 300 }))),
        ),
        (
            "without exp",
            keys.rsa.sign(&with(writer.clone(), json!({ "exp": null }))),
        ),
        (
            "wrong issuer",
            keys.rsa.sign(&with(
                writer.clone(),
                json!({ "iss": "https://sso.example.test/realms/other" }),
            )),
        ),
        (
            "wrong audience",
            keys.rsa
                .sign(&with(writer.clone(), json!({ "aud": "another-api" }))),
        ),
        ("alg none", unsigned),
        ("HS256 keyed with the public key", confused),
        ("tampered payload", tampered),
        (
            "signed by another key under a known kid",
            keys.impostor.sign(&writer),
        ),
        ("100 KB", huge),
        (
            "not a JWT",
            "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln".to_owned(),
        ),
    ];
    let (status, _, anonymous) = create(&app, "ANON", None).await;
    assert_eq!((status, error_code(&anonymous)), (401, "UNAUTHENTICATED"));
    for (case, token) in cases {
        let (status, challenge, body) = create(&app, "BAD", Some(&bearer(&token))).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{case}");
        assert_eq!(
            body, anonymous,
            "{case}: the answer says nothing about what was wrong"
        );
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\""),
            "{case}"
        );
        // A bad token is refused for queries as well, not treated as no token.
        let (status, _, body) = send(&app, COUNT, json!({}), Some(&bearer(&token))).await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "UNAUTHENTICATED"),
            "{case}"
        );
    }
    assert_eq!(app.station_count().await, 0, "nothing was written");

    // Clocks disagree a little: within auth.jwt.leeway_s (30 s) a token still counts.
    let skewed = with(writer, json!({ "exp": now - 10, "nbf": now + 10 }));
    let (status, _, body) = create(&app, "SKEW", Some(&bearer(&keys.rsa.sign(&skewed)))).await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
}

#[tokio::test]
async fn a_token_in_the_url_is_refused_even_when_valid() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    let app = spawn_app_with(|settings| trusting(&provider, settings)).await;
    let token = keys.rsa.sign(&claims(&["writer"]));

    let response = app
        .client
        .get(format!(
            "{}/graphql?query=%7B%20stations%20%7B%20totalCount%20%7D%20%7D&access_token={token}",
            app.address
        ))
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_REQUEST");
    assert_eq!(error_field(&body), "access_token");
    assert!(
        error_message(&body).contains("Authorization: Bearer"),
        "{body}"
    );

    let response = app
        .client
        .post(format!("{}/graphql?access_token={token}", app.address))
        .json(&json!({
            "query": CREATE,
            "variables": { "input": { "code": "URL", "name": "In the URL", "lat": 1.0, "lng": 1.0 } }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(app.station_count().await, 0);
}

/// Sends `token` until it is accepted, at most for `patience`; how many tries it took.
async fn until_accepted(app: &TestApp, token: &str, patience: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + patience;
    let mut tries = 0;
    loop {
        tries += 1;
        let (status, _, body) = send(app, COUNT, json!({}), Some(&bearer(token))).await;
        if status == 200 {
            assert_no_errors(&body);
            return tries;
        }
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token was still refused after {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_with_one_fetch_and_no_restart() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    let app = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.jwks_min_refresh_secs = 1;
    })
    .await;
    assert_eq!(
        provider.fetches(),
        1,
        "the keys are fetched once at start-up"
    );

    // The provider rotates: tokens signed with the new key arrive before the server has seen
    // it.
    provider.publish(&[&keys.rsa, &keys.next]);
    let rotated = keys.next.sign(&claims(&["writer"]));
    let tries = until_accepted(&app, &rotated, Duration::from_secs(10)).await;
    assert_eq!(
        provider.fetches(),
        2,
        "{tries} tokens with the new key id made one fetch, not one each"
    );
    let (status, _, body) = create(&app, "ROT", Some(&bearer(&rotated))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(provider.fetches(), 2);
}

#[tokio::test]
async fn a_flood_of_made_up_key_ids_does_not_hammer_the_provider() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    // The default auth.jwt.jwks_min_refresh_secs: 30.
    let app = spawn_app_with(|settings| trusting(&provider, settings)).await;
    let attempts = (0..200).map(|n| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("made-up-{n}"));
        let token = jsonwebtoken::encode(&header, &claims(&["writer"]), &keys.rsa.private).unwrap();
        let app = &app;
        async move { create(app, &format!("F{n}"), Some(&bearer(&token))).await }
    });
    for (status, _, body) in async_graphql::futures_util::future::join_all(attempts).await {
        assert_eq!((status, error_code(&body)), (401, "UNAUTHENTICATED"));
    }
    assert_eq!(
        provider.fetches(),
        1,
        "no fetch beyond the start-up one within 30 s"
    );
    assert_eq!(app.station_count().await, 0);
}

#[tokio::test]
async fn keys_are_fetched_again_in_the_background_as_the_cache_headers_say() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    provider.published.lock().unwrap().max_age_secs = Some(2);
    let app = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.jwks_min_refresh_secs = 1;
    })
    .await;
    let old = bearer(&keys.rsa.sign(&claims(&["writer"])));
    let (status, _, _) = send(&app, COUNT, json!({}), Some(&old)).await;
    assert_eq!(status, 200);

    // The provider withdraws a key; nobody presents an unknown key id, so only the background
    // refresh can notice.
    provider.publish(&[&keys.next]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while provider.fetches() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh before max-age ran out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, body) = send(&app, COUNT, json!({}), Some(&old)).await;
    assert_eq!((status, error_code(&body)), (401, "UNAUTHENTICATED"));
}

#[tokio::test]
async fn while_the_provider_is_down_static_tokens_work_and_jwts_wait_for_its_keys() {
    let keys = &*KEYS;
    let mut provider = IdentityProvider::down(&[&keys.rsa]);
    let (static_token, hash) = stations_api::auth::new_token().unwrap();
    let app = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.token_sha256 = vec![hash];
    })
    .await;

    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready.to_string().contains("signing keys not loaded yet"),
        "{ready}"
    );
    let jwt = bearer(&keys.rsa.sign(&claims(&["writer"])));
    let (status, _, body) = create(&app, "JWT1", Some(&jwt)).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "SERVICE_UNAVAILABLE"),
        "{body}"
    );
    assert!(
        error_message(&body).starts_with("signing keys not loaded yet"),
        "{body}"
    );
    assert_eq!(app.station_count().await, 0);
    let (status, _, body) = create(&app, "STATIC", Some(&bearer(&static_token))).await;
    assert_eq!(
        status, 200,
        "static tokens do not depend on the provider: {body}"
    );
    assert_no_errors(&body);

    provider.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while app.get("/health/ready").await.status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the keys never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, body) = create(&app, "JWT2", Some(&jwt)).await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
    assert_eq!(app.station_count().await, 2);
}

#[tokio::test]
async fn a_subscription_ends_when_its_token_expires() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.ed]).await;
    let app = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.leeway_s = 0;
    })
    .await;
    let payload = |token: String| json!({ "authorization": bearer(&token) });

    let expired = keys.ed.sign(&with(
        claims(&["reader"]),
        json!({ "exp": now_seconds() - 5 }),
    ));
    let refused = LiveClient::connect(&app.address, TRANSPORT_WS, payload(expired)).await;
    assert_eq!(refused.err().flatten().map(|(code, _)| code), Some(4403));

    let short_lived = keys.ed.sign(&with(
        claims(&["reader"]),
        json!({ "exp": now_seconds() + 3 }),
    ));
    let mut client = LiveClient::connect(&app.address, TRANSPORT_WS, payload(short_lived))
        .await
        .expect("a reader may subscribe");
    client
        .subscribe(
            "s",
            "subscription { stationChanged { kind id } }",
            json!({}),
        )
        .await;
    let closed = client.closed(Duration::from_secs(10)).await;
    assert_eq!(closed, Some((4403, "the token expired".to_owned())));
}

/// The server as operators run it, configured through the environment: the subject of each
/// request is in its access-log line; no token, nor any claim but the roles and the subject,
/// is in any line, even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_is_logged_and_the_token_never_is() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    let database = TestDatabase::migrated().await;
    let jwks_url = provider.jwks_url();
    let (mut server, address) = ServerProcess::start(
        &database.url,
        &[
            (
                "APP__LOG__FILTER",
                "debug,sqlx=warn,hyper=info,hyper_util=info,reqwest=info,h2=info",
            ),
            ("APP__AUTH__ALLOW_UNAUTHENTICATED_WRITES", "false"),
            ("APP__AUTH__JWT__ENABLED", "true"),
            ("APP__AUTH__JWT__ISSUER", ISSUER),
            ("APP__AUTH__JWT__AUDIENCE", AUDIENCE),
            ("APP__AUTH__JWT__JWKS_URL", &jwks_url),
            ("APP__AUTH__JWT__ALGORITHMS", "RS256,EdDSA"),
            ("APP__AUTH__JWT__ROLES_CLAIM", "realm_access.roles"),
            (
                "APP__AUTH__JWT__ROLE_MAP",
                "stations-editor=writer,stations-viewer=reader",
            ),
        ],
    );
    let token_of = |sub: &str, role: &str| {
        keys.rsa.sign(&with(
            claims(&[]),
            json!({
                "sub": sub,
                "email": "alice@example.test",
                "realm_access": { "roles": [role] },
            }),
        ))
    };
    let editor = token_of("subject-alice", "stations-editor");
    let viewer = token_of("subject-bob", "stations-viewer");
    let expired = keys.rsa.sign(&with(
        claims(&["writer"]),
        json!({ "exp": now_seconds() - 600 }),
    ));
    let client = reqwest::Client::new();
    for (token, code) in [(&editor, "LOG1"), (&viewer, "LOG2"), (&expired, "LOG3")] {
        client
            .post(format!("{address}/graphql"))
            .header("authorization", bearer(token))
            .json(&json!({
                "query": CREATE,
                "variables": { "input": { "code": code, "name": "Logged", "lat": 1.0, "lng": 1.0 } }
            }))
            .send()
            .await
            .unwrap();
    }
    server.terminate();

    let completed = |subject: &str| {
        server.log.iter().find_map(|line| {
            let record: Value = serde_json::from_str(line).ok()?;
            (record["message"] == "request completed" && record["spans"][0]["subject"] == subject)
                .then_some(record)
        })
    };
    let alice = completed("subject-alice").unwrap_or_else(|| panic!("{}", server.log.join("\n")));
    assert_eq!(alice["spans"][0]["status"], 200);
    let bob = completed("subject-bob").expect("the reader's request, logged");
    assert_eq!(bob["spans"][0]["status"], 403);
    let log = server.log.join("\n");
    for token in [&editor, &viewer, &expired] {
        for part in token.split('.') {
            assert!(!log.contains(part), "a part of a token is in the log");
        }
    }
    assert!(
        !log.contains("alice@example.test"),
        "a claim other than sub is in the log"
    );
}

/// `stations-api doctor` with `auth.jwt` pointing at `provider`: exit code and standard output.
async fn doctor(
    database: &TestDatabase,
    provider: &IdentityProvider,
    algorithms: &str,
) -> (i32, String) {
    let mut command = stations_api(&["doctor"]);
    command
        .env("DATABASE_URL", &database.url)
        .env("APP__AUTH__JWT__ENABLED", "true")
        .env("APP__AUTH__JWT__ISSUER", ISSUER)
        .env("APP__AUTH__JWT__AUDIENCE", AUDIENCE)
        .env("APP__AUTH__JWT__JWKS_URL", provider.jwks_url())
        .env("APP__AUTH__JWT__ALGORITHMS", algorithms);
    // The provider answers on this runtime: wait for the command off it.
    let (output, stdout, _) = tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap();
    (output.status.code().unwrap_or(-1), stdout)
}

#[tokio::test]
async fn doctor_checks_that_the_provider_publishes_keys_the_allowlist_accepts() {
    let keys = &*KEYS;
    let database = TestDatabase::migrated().await;
    let mut provider = IdentityProvider::down(&[&keys.rsa, &keys.ec]);

    let (code, stdout) = doctor(&database, &provider, "RS256,ES256").await;
    assert_eq!(code, 9, "{stdout}");
    assert!(
        stdout.contains(&format!("cannot fetch {}", provider.jwks_url())),
        "{stdout}"
    );
    assert!(stdout.contains("check auth.jwt.jwks_url"), "{stdout}");

    provider.start().await;
    let (code, stdout) = doctor(&database, &provider, "RS256,ES256").await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("2 signing key(s) usable with auth.jwt.algorithms"),
        "{stdout}"
    );

    provider.publish(&[&keys.ec]);
    let (code, stdout) = doctor(&database, &provider, "RS256").await;
    assert_eq!(code, 9, "{stdout}");
    assert!(
        stdout.contains("no key usable with auth.jwt.algorithms (RS256)"),
        "{stdout}"
    );
}

/// Serves `router` on a loopback port of its own; the port.
async fn serve_elsewhere(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

#[tokio::test]
async fn the_key_set_is_not_fetched_through_a_redirect_to_another_origin_nor_read_past_a_cap() {
    let keys = &*KEYS;
    let provider = IdentityProvider::up(&[&keys.rsa]).await;
    // Another origin (another port) that sends the fetch on to the provider.
    let target = provider.jwks_url();
    let redirecting = serve_elsewhere(Router::new().route(
        JWKS_PATH,
        get(move || async move { axum::response::Redirect::temporary(&target) }),
    ))
    .await;
    let app = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.jwks_url = format!("http://127.0.0.1:{redirecting}{JWKS_PATH}");
    })
    .await;
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert!(
        ready.to_string().contains("signing keys not loaded yet"),
        "{ready}"
    );
    assert_eq!(provider.fetches(), 0, "the redirect was followed");

    // A key set padded past any real one's size is not read into memory.
    let padded = json!({ "keys": [keys.rsa.jwk.clone()], "padding": "x".repeat(1 << 20) });
    let oversized = serve_elsewhere(Router::new().route(
        JWKS_PATH,
        get(move || {
            let padded = padded.clone();
            async move { axum::Json(padded) }
        }),
    ))
    .await;
    let app = spawn_app_with(|settings| {
        trusting(&provider, settings);
        settings.auth.jwt.jwks_url = format!("http://127.0.0.1:{oversized}{JWKS_PATH}");
    })
    .await;
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert!(
        ready.to_string().contains("signing keys not loaded yet"),
        "{ready}"
    );
}

/// A traced server trusting `provider`, its key refresh as frequent as settings allow.
fn traced_server_trusting(
    database: &TestDatabase,
    receiver: &Receiver,
    provider: &IdentityProvider,
    send_trace_context: bool,
) -> (ServerProcess, String) {
    let jwks_url = provider.jwks_url();
    ServerProcess::start(
        &database.url,
        &[
            ("APP__TELEMETRY__OTLP__ENDPOINT", receiver.endpoint.as_str()),
            ("APP__TELEMETRY__OTLP__EXPORT_INTERVAL_MS", "50"),
            ("APP__TELEMETRY__TRUST_INCOMING_SAMPLING", "true"),
            ("APP__AUTH__JWT__ENABLED", "true"),
            ("APP__AUTH__JWT__ISSUER", ISSUER),
            ("APP__AUTH__JWT__AUDIENCE", AUDIENCE),
            ("APP__AUTH__JWT__JWKS_URL", jwks_url.as_str()),
            ("APP__AUTH__JWT__JWKS_MIN_REFRESH_SECS", "5"),
            (
                "APP__AUTH__JWT__SEND_TRACE_CONTEXT",
                if send_trace_context { "true" } else { "false" },
            ),
        ],
    )
}

/// The fetch span `traceparent` names (`00-<trace>-<span>-<flags>`), once received.
async fn fetch_span_of(receiver: &Receiver, traceparent: &str) -> ReceivedSpan {
    let fields: Vec<&str> = traceparent.split('-').collect();
    let (trace_id, span_id) = (fields[1], fields[2]);
    let spans = receiver
        .trace(trace_id, |spans| {
            spans.iter().any(|span| span.span_id == span_id)
        })
        .await;
    only(&spans, |span| span.span_id == span_id).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_fetch_is_traced_and_carries_the_trace_only_to_a_provider_of_our_own() {
    let keys = &*KEYS;
    let database = TestDatabase::migrated().await;
    let receiver = Receiver::start().await;
    let ours = IdentityProvider::up(&[&keys.rsa]).await;
    let theirs = IdentityProvider::up(&[&keys.rsa]).await;
    let (mut own_server, own_address) = traced_server_trusting(&database, &receiver, &ours, true);
    let (mut their_server, _) = traced_server_trusting(&database, &receiver, &theirs, false);

    // The start-up fetch, in a trace of its own: sent to our provider only.
    let sent = ours.published.lock().unwrap().traceparents[0]
        .clone()
        .expect("our provider sees the fetch's traceparent");
    let fetch = fetch_span_of(&receiver, &sent).await;
    assert_eq!(fetch.name, "GET");
    assert_eq!(fetch.kind, SpanKind::Client as i32);
    assert_eq!(fetch.attribute("url.full"), Some(ours.jwks_url().as_str()));
    assert_eq!(fetch.attribute("http.response.status_code"), Some("200"));
    assert_eq!(theirs.published.lock().unwrap().traceparents, [None]);
    let their_url = theirs.jwks_url();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !receiver
        .all()
        .iter()
        .any(|span| span.attribute("url.full") == Some(their_url.as_str()))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other provider's fetch is traced too, on our side only"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A token with a new key id fetches again, inside its request's trace, once the last fetch
    // is auth.jwt.jwks_min_refresh_secs (5 s) old.
    ours.publish(&[&keys.rsa, &keys.next]);
    let token = bearer(&keys.next.sign(&claims(&["reader"])));
    let caller_trace = "7a0d5b3c9e1f2a4b6c8d0e2f4a6b8c0d";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::Client::new()
            .post(format!("{own_address}/graphql"))
            .header("authorization", &token)
            .header(
                "traceparent",
                format!("00-{caller_trace}-00f067aa0ba902b7-01"),
            )
            .json(&json!({ "query": COUNT }))
            .send()
            .await
            .expect("an answer");
        if response.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sent = ours.published.lock().unwrap().traceparents[1]
        .clone()
        .expect("the second fetch's traceparent");
    assert!(sent.starts_with(&format!("00-{caller_trace}-")), "{sent}");
    let fetch = fetch_span_of(&receiver, &sent).await;
    let request = receiver
        .trace(caller_trace, |spans| {
            spans
                .iter()
                .any(|span| span.span_id == fetch.parent_span_id)
        })
        .await;
    let parent = only(&request, |span| span.span_id == fetch.parent_span_id);
    assert!(
        parent.name == "POST /graphql" || parent.name.starts_with("query"),
        "the fetch sits in the request that needed it: {parent:#?}"
    );
    own_server.terminate();
    their_server.terminate();
}

#[test]
fn a_key_refresh_interval_under_five_seconds_is_refused() {
    let (output, _, stderr) =
        run(stations_api(&["migrate", "status"]).env("APP__AUTH__JWT__JWKS_MIN_REFRESH_SECS", "0"));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`auth.jwt.jwks_min_refresh_secs`") && stderr.contains("at least 5"),
        "{stderr}"
    );
}
