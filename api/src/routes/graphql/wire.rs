//! GraphQL-over-HTTP requests as they arrive
//! (<https://graphql.github.io/graphql-over-http/draft/#sec-Request-Parameters>): a JSON body
//! holding one request or a batch of them, or the parameters of a GET query string. Each
//! parameter is checked for its type, and a refusal names it.
//!
//! The body is split into its parameters without building a JSON tree: each parameter is kept
//! as raw text and deserialized straight into what async-graphql takes.
//!
//! Why not async-graphql's own parsers (`http::parse_query_string`, `http::receive_batch_json`,
//! which async-graphql-axum's extractor calls), checked against async-graphql 7.2:
//! - a GET's `operationName` is lost: its query-string struct names the field
//!   `operation_name`, without the camel-case renaming its JSON `Request` has;
//! - a POST body is read into the untagged enum `BatchRequest`: serde buffers the whole body
//!   as a generic tree before trying each variant, so a batch of any size is parsed in full
//!   before its length can be refused, and any mistake in any parameter of any item comes out
//!   as "data did not match any variant of untagged enum BatchRequest", naming neither;
//! - a missing `query` becomes an empty document, and `access_token` in the URL goes through.
//!
//! Here each refusal names its parameter (`[2].variables`), which the GraphQL-over-HTTP audits
//! and our clients' error messages rely on.

use async_graphql::{Extensions, Variables};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ErrorCode, Refusal as Rejection};

/// What one HTTP request carries.
pub enum Operations {
    Single(Box<async_graphql::Request>),
    /// A JSON array of requests, answered with an array in the same order.
    Batch(Vec<async_graphql::Request>),
}

/// The parameters of one request, each still raw JSON.
#[derive(Deserialize)]
struct RawParameters<'a> {
    #[serde(borrow, default)]
    query: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "operationName")]
    operation_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    variables: Option<&'a RawValue>,
    #[serde(borrow, default)]
    extensions: Option<&'a RawValue>,
}

/// Reads a POST body: one request (`{"query": ...}`) or, up to `max_batch_size`, an array of
/// them.
pub fn from_body(body: &[u8], max_batch_size: usize) -> Result<Operations, Rejection> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    match first {
        None => Err(bad_request(
            None,
            r#"the request body is empty: send {"query": "..."}"#,
        )),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(not_json)?;
            if max_batch_size == 0 {
                return Err(Rejection::new(
                    ErrorCode::BatchNotAllowed,
                    "batched requests (a JSON array) are turned off here \
                     (graphql.max_batch_size = 0): send one operation per request",
                ));
            }
            if items.len() > max_batch_size {
                return Err(Rejection::new(
                    ErrorCode::BatchTooLarge,
                    format!(
                        "the batch holds {} operations; the limit is {max_batch_size} \
                         (graphql.max_batch_size)",
                        items.len()
                    ),
                ));
            }
            if items.is_empty() {
                return Err(bad_request(
                    None,
                    "the batch is empty: send at least one operation",
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let parameters: RawParameters =
                        serde_json::from_str(item.get()).map_err(|_| {
                            bad_request(
                                Some(format!("[{index}]")),
                                format!("batch item {index} must be a JSON object"),
                            )
                        })?;
                    request(parameters, &format!("[{index}]."))
                })
                .collect::<Result<_, _>>()
                .map(Operations::Batch)
        }
        Some(b'{') => {
            let parameters: RawParameters = serde_json::from_slice(body).map_err(not_json)?;
            request(parameters, "").map(|request| Operations::Single(Box::new(request)))
        }
        Some(_) => Err(not_json_object()),
    }
}

/// Refuses a token in the URL of any request (RFC 6750 allows `access_token`, but a URL ends
/// up in logs and caches).
pub fn refuse_token_in_url(query_string: Option<&str>) -> Result<(), Rejection> {
    let names = url::form_urlencoded::parse(query_string.unwrap_or_default().as_bytes());
    if names.into_iter().any(|(name, _)| name == "access_token") {
        return Err(token_in_url());
    }
    Ok(())
}

fn token_in_url() -> Rejection {
    bad_request(
        Some("access_token".to_owned()),
        "a token in the URL is refused (URLs are logged and cached): send it as \
         Authorization: Bearer <token>",
    )
}

/// Reads the parameters of `GET /graphql?query=...&variables=...`; `variables` and
/// `extensions` are JSON text.
pub fn from_query_string(query_string: &str) -> Result<async_graphql::Request, Rejection> {
    let mut query = None;
    let mut operation_name = None;
    let mut variables = None;
    let mut extensions = None;
    for (name, value) in url::form_urlencoded::parse(query_string.as_bytes()) {
        let slot = match name.as_ref() {
            "access_token" => return Err(token_in_url()),
            "query" => &mut query,
            "operationName" => &mut operation_name,
            "variables" => &mut variables,
            "extensions" => &mut extensions,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            let message = format!("`{name}` is given more than once");
            return Err(bad_request(Some(name.into_owned()), message));
        }
    }
    // An empty parameter is an absent one, as HTML forms send them.
    let json = |text: Option<String>, name: &str| -> Result<Option<Box<RawValue>>, Rejection> {
        match text.filter(|text| !text.trim().is_empty()) {
            None => Ok(None),
            Some(text) => RawValue::from_string(text).map(Some).map_err(|_| {
                bad_request(Some(name.to_owned()), format!("`{name}` must be JSON text"))
            }),
        }
    };
    let variables = json(variables, "variables")?;
    let extensions = json(extensions, "extensions")?;
    assemble(
        query,
        operation_name.filter(|name| !name.is_empty()),
        typed(variables.as_deref(), "variables", "a JSON object")?,
        typed(extensions.as_deref(), "extensions", "a JSON object")?,
        "",
    )
}

/// One request from its raw parameters; `prefix` places them in a batch (`[2].`).
fn request(
    parameters: RawParameters<'_>,
    prefix: &str,
) -> Result<async_graphql::Request, Rejection> {
    let field = |name: &str| format!("{prefix}{name}");
    assemble(
        typed(parameters.query, &field("query"), "a string")?,
        typed(
            parameters.operation_name,
            &field("operationName"),
            "a string",
        )?,
        typed(parameters.variables, &field("variables"), "a JSON object")?,
        typed(parameters.extensions, &field("extensions"), "a JSON object")?,
        prefix,
    )
}

fn assemble(
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<Variables>,
    extensions: Option<Extensions>,
    prefix: &str,
) -> Result<async_graphql::Request, Rejection> {
    let extensions = extensions.unwrap_or_default();
    // Only a persisted query may leave the text out: the server may know it by its hash.
    if query.is_none() && !extensions.contains_key("persistedQuery") {
        let field = format!("{prefix}query");
        return Err(bad_request(
            Some(field.clone()),
            format!(
                "`{field}` is missing: send the operation's text as a string, e.g. \
                 {{\"query\": \"{{ stations {{ totalCount }} }}\"}}"
            ),
        ));
    }
    let mut request = async_graphql::Request::new(query.unwrap_or_default())
        .variables(variables.unwrap_or_default());
    request.operation_name = operation_name;
    request.extensions = extensions;
    Ok(request)
}

/// `raw` as a `T`, `None` when absent or null; else a refusal naming `field` and `expected`.
fn typed<T: for<'de> Deserialize<'de>>(
    raw: Option<&RawValue>,
    field: &str,
    expected: &str,
) -> Result<Option<T>, Rejection> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|_| {
            bad_request(
                Some(field.to_owned()),
                format!("`{field}` must be {expected} (or null)"),
            )
        }),
    }
}

fn bad_request(field: Option<String>, message: impl Into<String>) -> Rejection {
    let rejection = Rejection::new(ErrorCode::BadRequest, message);
    match field {
        Some(field) => rejection.with_field(field),
        None => rejection,
    }
}

fn not_json(error: serde_json::Error) -> Rejection {
    if error.is_data() {
        return not_json_object();
    }
    bad_request(
        None,
        format!(
            "the request body is not valid JSON ({error}); send \
             {{\"query\": \"...\", \"variables\": {{...}}, \"operationName\": \"...\"}}"
        ),
    )
}

fn not_json_object() -> Rejection {
    bad_request(
        None,
        "the request body must be a JSON object such as {\"query\": \"...\"} (or an array of them)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(result: Result<Operations, Rejection>) -> (String, Option<String>) {
        match result {
            Ok(_) => panic!("expected a refusal"),
            Err(rejection) => (rejection.message, rejection.field),
        }
    }

    #[test]
    fn a_request_reads_every_parameter_and_null_means_absent() {
        let body = br#"{"query": "query Q($a: Int) { x(a: $a) }", "operationName": "Q",
                        "variables": {"a": 1}, "extensions": null, "other": [1]}"#;
        let Ok(Operations::Single(request)) = from_body(body, 10) else {
            panic!("expected one request")
        };
        assert_eq!(request.query, "query Q($a: Int) { x(a: $a) }");
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(request.variables.len(), 1);
        let Ok(Operations::Single(request)) = from_body(
            br#"{"query": "{ a }", "variables": null, "operationName": null}"#,
            10,
        ) else {
            panic!("expected one request")
        };
        assert!(request.variables.is_empty() && request.operation_name.is_none());
    }

    #[test]
    fn each_malformed_parameter_is_named() {
        for (body, field) in [
            (r#"{"query": 1}"#, "query"),
            (r#"{"query": ["{ a }"]}"#, "query"),
            (
                r#"{"query": "{ a }", "operationName": false}"#,
                "operationName",
            ),
            (r#"{"query": "{ a }", "variables": "{}"}"#, "variables"),
            (r#"{"query": "{ a }", "extensions": 0}"#, "extensions"),
            (r#"{"notquery": "{ a }"}"#, "query"),
            (r#"[{"query": "{ a }"}, {"query": 2}]"#, "[1].query"),
        ] {
            let (message, named) = refusal(from_body(body.as_bytes(), 10));
            assert_eq!(named.as_deref(), Some(field), "{body}: {message}");
            assert!(message.contains(field), "{body}: {message}");
        }
        assert!(
            refusal(from_body(b"{\"query\": ", 10))
                .0
                .contains("not valid JSON")
        );
        assert!(refusal(from_body(b"  ", 10)).0.contains("empty"));
        assert!(
            refusal(from_body(b"\"{ a }\"", 10))
                .0
                .contains("JSON object")
        );
    }

    #[test]
    fn batches_are_bounded_and_can_be_turned_off() {
        let batch = br#"[{"query": "{ a }"}, {"query": "{ b }"}]"#;
        assert!(
            matches!(from_body(batch, 2), Ok(Operations::Batch(requests)) if requests.len() == 2)
        );
        assert!(
            refusal(from_body(batch, 1))
                .0
                .contains("graphql.max_batch_size")
        );
        assert!(refusal(from_body(batch, 0)).0.contains("turned off"));
        assert!(refusal(from_body(b"[]", 2)).0.contains("empty"));
    }

    #[test]
    fn a_query_string_carries_json_variables_and_extensions() {
        let request = from_query_string(
            "query=query%20Q(%24id%3A%20ID!)%20%7B%20station(id%3A%20%24id)%20%7B%20id%20%7D%20%7D\
             &variables=%7B%22id%22%3A%227%22%7D&operationName=Q",
        )
        .ok()
        .unwrap();
        assert_eq!(
            request.query,
            "query Q($id: ID!) { station(id: $id) { id } }"
        );
        assert_eq!(request.variables.len(), 1);
        assert_eq!(request.operation_name.as_deref(), Some("Q"));

        let persisted = from_query_string(
            "extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22ab%22%7D%7D",
        )
        .ok()
        .unwrap();
        assert!(persisted.query.is_empty() && persisted.extensions.contains_key("persistedQuery"));

        for (query_string, field) in [
            ("query=%7B%20a%20%7D&variables=%7Bnot%20json", "variables"),
            ("query=%7B%20a%20%7D&variables=%5B1%5D", "variables"),
            ("query=a&query=b", "query"),
            ("operationName=Q", "query"),
        ] {
            let rejection = from_query_string(query_string).err().unwrap();
            assert_eq!(rejection.field.as_deref(), Some(field), "{query_string}");
        }
    }
}
