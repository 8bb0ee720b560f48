use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_no_errors, error_code, error_field, error_message, spawn_app,
};

const PAGE: &str = "query($first: Int, $after: String, $orderBy: StationOrder) {
    stations(first: $first, after: $after, orderBy: $orderBy) {
        edges { cursor node { id code name createdAt } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
}";

async fn page(app: &TestApp, first: i64, after: Option<&str>, order_by: &Value) -> Value {
    let body = app
        .graphql(
            PAGE,
            json!({ "first": first, "after": after, "orderBy": order_by }),
        )
        .await;
    assert_no_errors(&body);
    body["data"]["stations"].clone()
}

fn nodes(page: &Value) -> Vec<Value> {
    page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn ids(nodes: &[Value]) -> Vec<i64> {
    nodes
        .iter()
        .map(|node| {
            node["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("numeric id")
        })
        .collect()
}

/// Follows `endCursor` until the last page and returns every node in the order served.
async fn walk(app: &TestApp, order_by: &Value, page_size: i64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let current = page(app, page_size, after.as_deref(), order_by).await;
        let served = nodes(&current);
        assert!(served.len() as i64 <= page_size);
        assert_eq!(current["pageInfo"]["hasPreviousPage"], after.is_some());
        all.extend(served);
        if current["pageInfo"]["hasNextPage"] == false {
            return all;
        }
        after = Some(
            current["pageInfo"]["endCursor"]
                .as_str()
                .expect("endCursor")
                .to_owned(),
        );
    }
}

/// Names and codes chosen to sort the same in every collation, with ties on names and on
/// creation times (a batch shares its transaction's timestamp).
async fn seed(app: &TestApp) {
    for (code, name) in [("C07", "delta"), ("C03", "alpha"), ("C11", "delta")] {
        app.create_station(code, name, 1.0, 2.0).await;
    }
    let batch: Vec<Value> = [
        ("C05", "bravo"),
        ("C01", "echo"),
        ("C09", "alpha"),
        ("C02", "charlie"),
    ]
    .iter()
    .map(|(code, name)| json!({ "code": code, "name": name, "lat": 0, "lng": 0 }))
    .collect();
    let body = app
        .graphql(
            "mutation($inputs: [CreateStationInput!]!) { createStations(inputs: $inputs) { id } }",
            json!({ "inputs": batch }),
        )
        .await;
    assert_no_errors(&body);
    app.create_station("C04", "bravo", 3.0, 4.0).await;
}

#[tokio::test]
async fn every_ordering_serves_each_station_exactly_once_in_order() {
    let app = spawn_app().await;
    seed(&app).await;
    let everything = walk(&app, &json!({ "field": "ID", "direction": "ASC" }), 100).await;
    assert_eq!(everything.len(), 8);

    for field in ["ID", "NAME", "CODE", "CREATED_AT"] {
        for direction in ["ASC", "DESC"] {
            let order_by = json!({ "field": field, "direction": direction });
            let key = |node: &Value| -> (String, i64) {
                let id: i64 = node["id"].as_str().unwrap().parse().unwrap();
                let key = match field {
                    "ID" => String::new(),
                    "NAME" => node["name"].as_str().unwrap().to_owned(),
                    "CODE" => node["code"].as_str().unwrap().to_owned(),
                    _ => {
                        let at = node["createdAt"].as_str().unwrap();
                        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
                        format!("{:020}", at.timestamp_micros())
                    }
                };
                (key, id)
            };
            let mut expected = everything.clone();
            expected.sort_by_key(key);
            if direction == "DESC" {
                expected.reverse();
            }
            for page_size in [1, 3, 8] {
                let served = walk(&app, &order_by, page_size).await;
                assert_eq!(
                    ids(&served),
                    ids(&expected),
                    "{order_by} in pages of {page_size}"
                );
            }
        }
    }
}

#[tokio::test]
async fn exactly_one_page_has_no_next_page() {
    let app = spawn_app().await;
    for code in ["A", "B", "C"] {
        app.create_station(code, code, 0.0, 0.0).await;
    }
    let first = page(&app, 3, None, &Value::Null).await;
    assert_eq!(nodes(&first).len(), 3);
    assert_eq!(first["pageInfo"]["hasNextPage"], false);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(
        first["pageInfo"]["startCursor"],
        first["edges"][0]["cursor"]
    );
    assert_eq!(first["pageInfo"]["endCursor"], first["edges"][2]["cursor"]);
}

#[tokio::test]
async fn the_cursor_after_the_last_station_gives_an_empty_last_page() {
    let app = spawn_app().await;
    for code in ["A", "B"] {
        app.create_station(code, code, 0.0, 0.0).await;
    }
    let first = page(&app, 2, None, &Value::Null).await;
    let end = first["pageInfo"]["endCursor"].as_str().unwrap();
    let beyond = page(&app, 2, Some(end), &Value::Null).await;
    assert_eq!(nodes(&beyond), Vec::<Value>::new());
    assert_eq!(beyond["pageInfo"]["hasNextPage"], false);
    assert_eq!(beyond["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(beyond["pageInfo"]["endCursor"], Value::Null);
}

#[tokio::test]
async fn stations_inserted_between_pages_are_neither_skipped_nor_repeated() {
    let app = spawn_app().await;
    for (code, name) in [
        ("B1", "bravo"),
        ("D1", "delta"),
        ("F1", "foxtrot"),
        ("H1", "hotel"),
    ] {
        app.create_station(code, name, 0.0, 0.0).await;
    }
    let by_name = json!({ "field": "NAME" });
    let first = page(&app, 2, None, &by_name).await;
    assert_eq!(
        nodes(&first)
            .iter()
            .map(|n| n["name"].clone())
            .collect::<Vec<_>>(),
        ["bravo", "delta"]
    );

    // One station sorts before the cursor, one after it.
    app.create_station("A1", "alpha", 0.0, 0.0).await;
    app.create_station("E1", "echo", 0.0, 0.0).await;

    let end = first["pageInfo"]["endCursor"].as_str().unwrap();
    let rest = page(&app, 10, Some(end), &by_name).await;
    let names: Vec<Value> = nodes(&rest).iter().map(|n| n["name"].clone()).collect();
    assert_eq!(names, ["echo", "foxtrot", "hotel"]);
}

#[tokio::test]
async fn a_deleted_cursor_station_does_not_break_the_next_page() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for code in ["A", "B", "C", "D"] {
        created.push(app.create_station(code, code, 0.0, 0.0).await);
    }
    let first = page(&app, 2, None, &Value::Null).await;
    let end = first["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let body = app
        .graphql(
            "mutation($id: ID!) { deleteStation(id: $id) }",
            json!({ "id": created[1]["id"] }),
        )
        .await;
    assert_no_errors(&body);
    let rest = page(&app, 10, Some(&end), &Value::Null).await;
    assert_eq!(
        nodes(&rest)
            .iter()
            .map(|n| n["code"].clone())
            .collect::<Vec<_>>(),
        ["C", "D"]
    );
    assert_eq!(rest["pageInfo"]["hasPreviousPage"], true);
}

#[tokio::test]
async fn a_malformed_cursor_is_bad_user_input_naming_after() {
    let app = spawn_app().await;
    for cursor in ["garbage", "djF8SUR8QVNDfHh8", "%%%"] {
        let body = app
            .graphql(PAGE, json!({ "first": 5, "after": cursor }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{cursor}");
        assert_eq!(error_field(&body), "after");
        assert!(error_message(&body).contains("not a cursor returned by this API"));
    }
}

#[tokio::test]
async fn a_cursor_used_with_another_order_is_refused() {
    let app = spawn_app().await;
    app.create_station("A", "alpha", 0.0, 0.0).await;
    app.create_station("B", "bravo", 0.0, 0.0).await;
    let by_name = page(&app, 1, None, &json!({ "field": "NAME" })).await;
    let cursor = by_name["pageInfo"]["endCursor"].as_str().unwrap();
    let body = app
        .graphql(
            PAGE,
            json!({ "first": 1, "after": cursor, "orderBy": { "field": "NAME", "direction": "DESC" } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(
        error_message(&body).contains("ordered by NAME ASC, not by NAME DESC"),
        "{body}"
    );
}

#[tokio::test]
async fn total_count_covers_all_pages() {
    let app = spawn_app().await;
    for code in ["A", "B", "C", "D", "E"] {
        app.create_station(code, code, 0.0, 0.0).await;
    }
    let body = app
        .graphql(
            "{ stations(first: 2) { totalCount edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["stations"]["totalCount"], 5);
    assert_eq!(
        body["data"]["stations"]["edges"].as_array().unwrap().len(),
        2
    );
}

/// `edges` is answered in one pass when its selection is plain, and by async-graphql's own
/// resolvers otherwise: both must give the same answer, byte for byte (key order included).
#[tokio::test]
async fn a_plain_edge_selection_and_one_through_fragments_answer_the_same() {
    let app = spawn_app().await;
    app.create_station("SAME1", "Zürich HB", 47.3779, 8.5403)
        .await;
    app.create_station("SAME2", "Ålesund", -62.4722, -6.1549)
        .await;
    app.execute_sql("UPDATE stations SET elevation_m = 408.5 WHERE code = 'SAME1'")
        .await;
    let answer = |query: &'static str| {
        let request = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": query }));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };

    let plain = answer(
        "{ stations(first: 10) { edges { __typename c: cursor cursor node {
            __typename id key: code code name lat lng elevationM createdAt updatedAt } } } }",
    )
    .await;
    let through_fragments = answer(
        "{ stations(first: 10) { edges { ...Edge } } }
        fragment Edge on StationEdge { __typename c: cursor cursor node { ...Station } }
        fragment Station on Station {
            __typename id key: code code name lat lng elevationM createdAt updatedAt }",
    )
    .await;
    let with_directives = answer(
        "{ stations(first: 10) { edges { __typename c: cursor cursor @include(if: true) node {
            __typename id key: code code name lat lng elevationM createdAt
            updatedAt @skip(if: false) } } } }",
    )
    .await;
    assert_no_errors(&serde_json::from_str(&plain).unwrap());
    assert_eq!(plain, through_fragments, "fragments");
    assert_eq!(plain, with_directives, "directives");
    assert!(
        plain.contains(r#""node":{"__typename":"Station","id":"#),
        "{plain}"
    );
    assert!(plain.contains(r#""key":"SAME1","code":"SAME1","name":"Zürich HB","lat":47.3779,"lng":8.5403,"elevationM":408.5,"createdAt":"#), "{plain}");
    assert!(plain.contains(r#""elevationM":null"#), "{plain}");

    // A key selected twice merges its selections.
    let merged = app
        .graphql(
            "{ stations(first: 1) { edges { node { code } node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        merged["data"]["stations"]["edges"][0]["node"],
        json!({ "code": "SAME1", "name": "Zürich HB" })
    );
}
