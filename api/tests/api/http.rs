//! GraphQL over HTTP: what reaches the schema and what is refused before it.

use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "text/plain")
        .body("{ stations { totalCount } }")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn malformed_empty_or_batched_json_is_refused_with_400() {
    let app = spawn_app().await;
    for (body, expected) in [
        ("{\"query\": ", "not a GraphQL request in JSON"),
        ("", "the request body is empty"),
        ("[{\"query\": \"{ __typename }\"}]", "batched requests"),
    ] {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(error_code(&json), "BAD_REQUEST");
        assert!(
            json["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{json}"
        );
    }
}

#[tokio::test]
async fn a_syntax_error_is_graphql_parse_failed() {
    let app = spawn_app().await;
    let body = app.graphql("{ stations { ", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_PARSE_FAILED");
}

#[tokio::test]
async fn an_unknown_field_is_graphql_validation_failed() {
    let app = spawn_app().await;
    let body = app.graphql("{ stations { nope } }", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn a_variable_of_the_wrong_type_is_refused_with_a_code() {
    let app = spawn_app().await;
    let body = app
        .graphql(
            "query($first: Int) { stations(first: $first) { totalCount } }",
            json!({ "first": "ten" }),
        )
        .await;
    assert!(
        body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn the_ide_page_allows_only_its_own_origin_and_its_assets_are_cached_for_good() {
    let app = spawn_app().await;
    let response = app.get("/graphql").await;
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let page = response.text().await.unwrap();

    // Every script and stylesheet the page names is served by this server, with a hashed name.
    let assets: Vec<&str> = page
        .split('"')
        .filter(|part| part.starts_with("/graphql/assets/"))
        .collect();
    assert!(assets.iter().any(|asset| asset.ends_with(".js")), "{page}");
    assert!(assets.iter().any(|asset| asset.ends_with(".css")), "{page}");
    for asset in assets {
        let response = app.get(asset).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    assert_eq!(
        app.get("/graphql/assets/nothing-here.js").await.status(),
        404
    );
    assert!(
        !page.contains("cdn") && !page.contains("https://"),
        "{page}"
    );
}

#[tokio::test]
async fn the_ide_is_a_short_404_when_disabled() {
    let app = spawn_app_with(|settings| settings.graphql.ide = false).await;
    let response = app.get("/graphql").await;
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("graphql.ide = false")
    );
}

#[tokio::test]
async fn introspection_follows_configuration() {
    let app = spawn_app_with(|settings| settings.graphql.introspection = false).await;
    let body = app
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert!(
        body.get("errors").is_some() || body["data"]["__schema"].is_null(),
        "{body}"
    );

    let app = spawn_app().await;
    let body = app
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}
