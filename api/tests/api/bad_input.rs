//! A corpus of hostile and broken requests against the real binary: each gets a 4xx answer or
//! a GraphQL error with a code, the server stays up with bounded memory, and the table changes
//! only where a request was a valid write.

use serde_json::{Value, json};

use crate::helpers::{ServerProcess, TestDatabase, get_status, post_graphql};

fn resident_megabytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kilobytes| kilobytes / 1024.0)
}

/// What the server must answer: an HTTP status, and for a GraphQL error its code.
struct Expect {
    status: u16,
    code: Option<&'static str>,
}

const fn http(status: u16, code: &'static str) -> Expect {
    Expect {
        status,
        code: Some(code),
    }
}

const fn graphql(code: &'static str) -> Expect {
    Expect {
        status: 200,
        code: Some(code),
    }
}

const ACCEPTED: Expect = Expect {
    status: 200,
    code: None,
};

fn query(text: &str, variables: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "query": text, "variables": variables })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_broken_requests_get_coded_refusals_and_the_server_stays_up() {
    let database = TestDatabase::migrated().await;
    let (mut server, address) = ServerProcess::start(&database.url, &[]);
    let client = reqwest::Client::new();
    let create =
        "mutation($input: CreateStationInput!) { createStation(input: $input) { id name } }";
    let resident_before = resident_megabytes(server.pid());

    let deep = format!("{}{}", "{".repeat(10_000), "}".repeat(10_000));
    let aliases: String = (0..10_000).map(|i| format!("a{i}: __typename ")).collect();
    let sql = "Robert'); DROP TABLE stations;--";
    let cases: Vec<(&str, &str, Vec<u8>, Expect)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"query\": ".to_vec(),
            http(400, "BAD_REQUEST"),
        ),
        (
            "not JSON",
            "text/plain",
            b"{ stations { totalCount } }".to_vec(),
            http(415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
        (
            "empty body",
            "application/json",
            Vec::new(),
            http(400, "BAD_REQUEST"),
        ),
        (
            "invalid UTF-8",
            "application/json",
            b"{\"query\": \"{ __typename \xff }\"}".to_vec(),
            http(400, "BAD_REQUEST"),
        ),
        (
            "10,000 levels deep",
            "application/json",
            query(&deep, json!({})),
            graphql("QUERY_TOO_DEEP"),
        ),
        (
            "10,000 aliases",
            "application/json",
            query(&format!("{{ {aliases} }}"), json!({})),
            graphql("TOO_MANY_FIELDS"),
        ),
        (
            "unknown field",
            "application/json",
            query("{ stations { nothing } }", json!({})),
            graphql("GRAPHQL_VALIDATION_FAILED"),
        ),
        (
            "wrong variable type",
            "application/json",
            query(
                "query($first: Int) { stations(first: $first) { totalCount } }",
                json!({ "first": "ten" }),
            ),
            graphql("GRAPHQL_VALIDATION_FAILED"),
        ),
        (
            "NaN in JSON",
            "application/json",
            b"{\"query\": \"{ __typename }\", \"variables\": {\"lat\": NaN}}".to_vec(),
            http(400, "BAD_REQUEST"),
        ),
        (
            "Infinity in JSON",
            "application/json",
            b"{\"query\": \"{ __typename }\", \"variables\": {\"lat\": Infinity}}".to_vec(),
            http(400, "BAD_REQUEST"),
        ),
        (
            "1e400 in JSON",
            "application/json",
            b"{\"query\": \"{ __typename }\", \"variables\": {\"lat\": 1e400}}".to_vec(),
            http(400, "BAD_REQUEST"),
        ),
        (
            "1e400 as a literal",
            "application/json",
            query(
                "mutation { createStation(input: { code: \"BIG\", name: \"x\", lat: 1e400, lng: 0 }) { id } }",
                json!({}),
            ),
            graphql("GRAPHQL_PARSE_FAILED"),
        ),
        (
            "huge id",
            "application/json",
            query(
                "{ station(id: \"123456789012345678901234567890\") { id } }",
                json!({}),
            ),
            graphql("BAD_USER_INPUT"),
        ),
        (
            "huge first",
            "application/json",
            query("{ stations(first: 99999999999) { totalCount } }", json!({})),
            graphql("GRAPHQL_VALIDATION_FAILED"),
        ),
        (
            "SQL in an id",
            "application/json",
            query(
                "{ station(id: \"1; DROP TABLE stations\") { id } }",
                json!({}),
            ),
            graphql("BAD_USER_INPUT"),
        ),
        (
            "SQL in a code",
            "application/json",
            query(
                create,
                json!({ "input": { "code": "x'; DROP TABLE stations; --", "name": "x", "lat": 0, "lng": 0 } }),
            ),
            graphql("BAD_USER_INPUT"),
        ),
        (
            "SQL in a cursor",
            "application/json",
            query(
                "{ stations(after: \"' OR 1=1 --\") { totalCount } }",
                json!({}),
            ),
            graphql("BAD_USER_INPUT"),
        ),
        (
            "SQL in a filter",
            "application/json",
            query(
                "{ stations(filter: { nameContains: \"' OR '1'='1\", code: \"' OR ''='\" }) { totalCount } }",
                json!({}),
            ),
            ACCEPTED,
        ),
        (
            "SQL in a name",
            "application/json",
            query(
                create,
                json!({ "input": { "code": "SQL1", "name": sql, "lat": 0, "lng": 0 } }),
            ),
            ACCEPTED,
        ),
    ];

    for (name, content_type, body, expect) in cases {
        let response = client
            .post(format!("{address}/graphql"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{name}: no answer: {error}"));
        assert_eq!(response.status().as_u16(), expect.status, "{name}");
        let answer: Value = response
            .json()
            .await
            .unwrap_or_else(|error| panic!("{name}: not JSON: {error}"));
        match expect.code {
            Some(code) => assert_eq!(
                answer["errors"][0]["extensions"]["code"], code,
                "{name}: {answer}"
            ),
            None => assert!(answer.get("errors").is_none(), "{name}: {answer}"),
        }
        let live = client.get(format!("{address}/health/live")).send().await;
        assert!(
            live.is_ok_and(|live| live.status() == 200),
            "the server is down after {name}"
        );
    }

    // A 10 MB body: refused from its declared length, before the server reads it. (A client
    // that keeps sending after the answer may see the connection close, so this one speaks
    // HTTP by hand and sends only the start of the body.)
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let head = format!(
            "POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{{\"query\": \"",
            10 << 20
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
        assert_eq!(get_status(&client, &address, "/health/live").await, 200);
    }

    // Unicode names come back byte for byte: emoji with joiners, right-to-left, combining marks.
    let names = [
        "👩🏽‍🚒 🚉",
        "محطة القطار المركزية",
        "תחנה מרכזית",
        "e\u{301}e\u{302}\u{323}",
        "\u{feff}BOM first",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    ];
    for (index, name) in names.iter().enumerate() {
        let response = post_graphql(
            &client,
            &address,
            &json!({ "query": create, "variables": { "input": { "code": format!("U{index}"), "name": name, "lat": 0, "lng": 0 } } }),
        )
        .await;
        assert_eq!(response["data"]["createStation"]["name"], *name);
    }

    // Only the valid writes are in the table, the hostile name stored as text.
    let body = post_graphql(
        &client,
        &address,
        &json!({ "query": "{ stations(first: 100) { totalCount edges { node { code name } } } }" }),
    )
    .await;
    assert_eq!(body["data"]["stations"]["totalCount"], 1 + names.len());
    assert_eq!(body["data"]["stations"]["edges"][0]["node"]["name"], sql);

    let growth = resident_megabytes(server.pid()) - resident_before;
    assert!(growth < 64.0, "memory grew by {growth:.0} MB");
    assert!(server.terminate().success());
}
