//! Automatic persisted queries, as Apollo Client, urql and Relay send them, and allowlist mode
//! with a manifest.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, TestDatabase, error_code, spawn_app, spawn_app_with, test_settings};

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// `POST /graphql` with `body`, accepting the GraphQL response type: status and JSON.
async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(app: &TestApp, hash: &str) -> (u16, Value) {
    let extensions: String =
        url::form_urlencoded::byte_serialize(persisted(hash).to_string().as_bytes()).collect();
    let response = app.get(&format!("/graphql?extensions={extensions}")).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_hash_is_unknown_until_its_text_comes_with_it_then_it_suffices_over_post_and_get() {
    let app = spawn_app().await;
    app.create_station("APQ1", "Persisted", 1.0, 1.0).await;
    let query = "query Count { stations { totalCount } }";
    let hash = sha256(query);

    let (status, body) = post(&app, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(
        body["errors"][0]["message"], "PersistedQueryNotFound",
        "the message clients look for"
    );
    assert!(body.get("data").is_none());
    let (status, _) = get(&app, &hash).await;
    assert_eq!(
        status, 200,
        "application/json: a well-formed request answers 200"
    );

    let (status, body) = post(
        &app,
        json!({ "query": query, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["stations"]["totalCount"], 1);

    let (status, body) = post(&app, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(
        (status, &body["data"]["stations"]["totalCount"]),
        (200, &json!(1))
    );
    let (status, body) = get(&app, &hash).await;
    assert_eq!(
        (status, &body["data"]["stations"]["totalCount"]),
        (200, &json!(1))
    );

    // A text that was merely sent is known by its hash too: one store for both.
    let other = "{ stations { edges { node { code } } } }";
    post(&app, json!({ "query": other })).await;
    let (_, body) = get(&app, &sha256(other)).await;
    assert_eq!(body["data"]["stations"]["edges"][0]["node"]["code"], "APQ1");
}

#[tokio::test]
async fn a_hash_that_is_not_its_texts_or_is_malformed_is_refused() {
    let app = spawn_app().await;
    let (status, body) = post(
        &app,
        json!({ "query": "{ __typename }", "extensions": persisted(&sha256("{ other }")) }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "PERSISTED_QUERY_HASH_MISMATCH");

    for (extensions, field) in [
        (
            json!({ "persistedQuery": { "version": 2, "sha256Hash": sha256("{ a }") } }),
            "extensions.persistedQuery.version",
        ),
        (
            json!({ "persistedQuery": { "version": 1, "sha256Hash": "abc" } }),
            "extensions.persistedQuery.sha256Hash",
        ),
        (
            json!({ "persistedQuery": "yes" }),
            "extensions.persistedQuery",
        ),
    ] {
        let (status, body) = post(&app, json!({ "extensions": extensions })).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "BAD_REQUEST");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
}

#[tokio::test]
async fn in_allowlist_mode_only_the_manifests_operations_run_by_hash_or_by_text() {
    let allowed = "query Allowed { stations { totalCount } }";
    let manifest = std::env::temp_dir().join(format!("manifest-{}.json", std::process::id()));
    std::fs::write(
        &manifest,
        json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": sha256(allowed), "name": "Allowed", "type": "query", "body": allowed }]
        })
        .to_string(),
    )
    .unwrap();
    let app = spawn_app_with(|settings| {
        settings.graphql.persisted_only = true;
        settings.graphql.persisted_manifest = manifest.display().to_string();
    })
    .await;

    let (status, body) = post(&app, json!({ "extensions": persisted(&sha256(allowed)) })).await;
    assert_eq!(
        (status, &body["data"]["stations"]["totalCount"]),
        (200, &json!(0))
    );
    let (status, body) = post(&app, json!({ "query": allowed })).await;
    assert_eq!(
        (status, &body["data"]["stations"]["totalCount"]),
        (200, &json!(0))
    );

    let other = "{ stations { totalCount } }";
    for request in [
        json!({ "query": other }),
        json!({ "query": other, "extensions": persisted(&sha256(other)) }),
        json!({ "extensions": persisted(&sha256(other)) }),
        json!({ "query": "mutation { deleteStation(id: \"1\") }" }),
    ] {
        let (status, body) = post(&app, request).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(error_code(&body), "OPERATION_NOT_ALLOWLISTED");
    }
    std::fs::remove_file(manifest).unwrap();
}

#[tokio::test]
async fn a_server_in_allowlist_mode_needs_a_manifest_that_checks_out() {
    let database = TestDatabase::migrated().await;
    let settings = {
        let mut settings = test_settings();
        settings.database.url = secrecy::SecretString::from(database.url.clone());
        settings.graphql.persisted_only = true;
        settings.graphql.persisted_manifest = "/nonexistent/manifest.json".to_owned();
        settings
    };
    let error = match stations_api::startup::Application::build(&settings).await {
        Ok(_) => panic!("started without its manifest"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("graphql.persisted_manifest (/nonexistent/manifest.json): cannot be read"),
        "{error}"
    );
}
