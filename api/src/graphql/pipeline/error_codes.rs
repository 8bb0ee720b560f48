//! Every error leaves with a stable `extensions.code`. The policies and resolvers give their
//! own (through `ApiError`); what async-graphql raises by itself has none: a document that does
//! not validate against the schema (`GRAPHQL_VALIDATION_FAILED`, a request error without a
//! path) or an argument that does not coerce while a field runs (`BAD_USER_INPUT`, with the
//! field's path).

use async_graphql::Response;

/// Gives each error of `response` without a code the one it calls for.
pub fn assign(response: &mut Response) {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            let code = if error.path.is_empty() {
                "GRAPHQL_VALIDATION_FAILED"
            } else {
                "BAD_USER_INPUT"
            };
            extensions.set("code", code);
        }
    }
}
