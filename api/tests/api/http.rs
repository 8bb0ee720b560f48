//! GraphQL over HTTP: what reaches the schema and what is refused before it.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, error_message, spawn_app, spawn_app_with};

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
async fn malformed_or_empty_json_is_refused_with_400() {
    let app = spawn_app().await;
    for (body, expected) in [
        ("{\"query\": ", "not valid JSON"),
        ("", "the request body is empty"),
        ("{\"query\": 7}", "`query` must be a string"),
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
    let response = app.open_in_browser("/graphql").await;
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
    let response = app.open_in_browser("/graphql").await;
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

/// `POST /graphql` with `body` and an `Accept` header: status, content type and JSON body.
async fn post_accepting(app: &TestApp, accept: Option<&str>, body: &Value) -> (u16, String, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (
        status,
        content_type,
        response.json().await.unwrap_or(Value::Null),
    )
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

#[tokio::test]
async fn the_media_type_follows_accept_and_neither_acceptable_is_406() {
    let app = spawn_app().await;
    let query = json!({ "query": "{ __typename }" });
    for (accept, expected) in [
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (Some("application/json"), "application/json"),
        (Some("*/*"), "application/json"),
        (None, "application/json"),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
        (
            Some("application/graphql-response+json;q=0.5, application/json"),
            "application/json",
        ),
    ] {
        let (status, content_type, body) = post_accepting(&app, accept, &query).await;
        assert_eq!(status, 200, "{accept:?}");
        assert!(
            content_type.starts_with(expected),
            "{accept:?}: {content_type}"
        );
        assert_eq!(body["data"]["__typename"], "Query");
    }
    let (status, _, body) = post_accepting(&app, Some("text/plain"), &query).await;
    assert_eq!(status, 406);
    assert_eq!(error_code(&body), "NOT_ACCEPTABLE");
}

#[tokio::test]
async fn request_errors_have_no_data_and_their_status_depends_on_the_media_type() {
    let app = spawn_app().await;
    for (query, variables, code) in [
        ("{ stations { ", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        (
            "query($first: Int) { stations(first: $first) { totalCount } }",
            json!({ "first": "ten" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ] {
        let body = json!({ "query": query, "variables": variables });
        let (status, _, answer) = post_accepting(&app, Some(GRAPHQL_RESPONSE), &body).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(error_code(&answer), code, "{answer}");
        assert!(answer.get("data").is_none(), "{answer}");
        let (status, _, answer) = post_accepting(&app, Some("application/json"), &body).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(error_code(&answer), code, "{answer}");
    }

    // A field error is not a request error: the data is there, null where the field failed.
    let body = json!({ "query": "{ stations(first: 1000) { totalCount } }" });
    let (status, _, answer) = post_accepting(&app, Some(GRAPHQL_RESPONSE), &body).await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&answer), "BAD_USER_INPUT");
    assert!(answer.get("data").is_some(), "{answer}");
}

/// `GET /graphql?<query string>` with optional headers: status, headers and body text.
async fn get_graphql(
    app: &TestApp,
    query_string: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = app
        .client
        .get(format!("{}/graphql?{query_string}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_query_runs_over_get_and_a_mutation_is_refused_with_405() {
    let app = spawn_app().await;
    let created = app.create_station("GET1", "Got", 1.0, 2.0).await;
    let query = format!(
        "query={}&variables={}&operationName=One",
        encoded("query One($id: ID!) { station(id: $id) { code } } query Other { __typename }"),
        encoded(&json!({ "id": created["id"] }).to_string()),
    );
    let (status, headers, body) = get_graphql(&app, &query, &[]).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"]["station"]["code"], "GET1");
    assert_eq!(headers["vary"], "Accept, Authorization");

    let mutation = format!(
        "query={}",
        encoded(
            r#"mutation { createStation(input: { code: "GET2", name: "No", lat: 0, lng: 0 }) { id } }"#
        )
    );
    for accept in ["application/json", GRAPHQL_RESPONSE] {
        let (status, headers, body) = get_graphql(&app, &mutation, &[("accept", accept)]).await;
        assert_eq!(status, 405, "{body}");
        assert_eq!(headers["allow"], "POST");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
    }
    assert_eq!(app.station_count().await, 1, "the mutation did not run");

    let (status, _, body) = get_graphql(&app, "variables=%7B%7D", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`query` is missing"), "{body}");
}

#[tokio::test]
async fn the_same_url_gives_a_browser_the_ide_and_a_client_json() {
    let app = spawn_app().await;
    let page = app.open_in_browser("/graphql").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.headers()["vary"], "Accept");
    let (status, headers, _) = get_graphql(&app, "query=%7B__typename%7D", &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn get_answers_are_cached_only_as_configured_and_only_publicly_without_authorization() {
    let query = "query=%7B%20stations%20%7B%20totalCount%20%7D%20%7D";
    let app = spawn_app().await;
    let (_, headers, _) = get_graphql(&app, query, &[]).await;
    assert_eq!(
        headers["cache-control"], "no-store",
        "no caching by default"
    );

    let (token, hash) = stations_api::auth::new_token().unwrap();
    let app = spawn_app_with(|settings| {
        settings.graphql.get_max_age_secs = 30;
        settings.auth.token_sha256 = vec![hash];
    })
    .await;
    let (_, headers, _) = get_graphql(&app, query, &[]).await;
    assert_eq!(headers["cache-control"], "public, max-age=30");
    let bearer = format!("Bearer {token}");
    let (status, headers, _) = get_graphql(&app, query, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "private, max-age=30");
    let (_, headers, _) = get_graphql(&app, "query=%7B%20nope%20%7D", &[]).await;
    assert_eq!(
        headers["cache-control"], "no-store",
        "errors are never cached"
    );
}

#[tokio::test]
async fn a_batch_is_answered_in_order_and_each_operation_meets_the_limits() {
    let app = spawn_app_with(|settings| {
        settings.graphql.max_batch_size = 3;
        settings.graphql.max_fields = 5;
    })
    .await;
    let create = |code: &str| {
        json!({
            "query": "mutation($code: String!) { createStation(input: { code: $code, name: \"B\", lat: 0, lng: 0 }) { code } }",
            "variables": { "code": code }
        })
    };
    let batch = json!([
        create("B1"),
        { "query": "{ a: __typename b: __typename c: __typename d: __typename e: __typename f: __typename }" },
        { "query": "{ stations { totalCount } }" },
    ]);
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answers: Value = response.json().await.unwrap();
    assert_eq!(answers[0]["data"]["createStation"]["code"], "B1");
    assert_eq!(error_code(&answers[1]), "TOO_MANY_FIELDS");
    assert!(answers[1].get("data").is_none());
    assert_eq!(
        answers[2]["data"]["stations"]["totalCount"], 1,
        "operations run in order: the count sees the station created first"
    );

    let too_many = json!([create("B2"), create("B3"), create("B4"), create("B5")]);
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BATCH_TOO_LARGE");
    assert!(
        error_message(&body).contains("graphql.max_batch_size"),
        "{body}"
    );
    assert_eq!(
        app.station_count().await,
        1,
        "nothing of a refused batch ran"
    );
}
