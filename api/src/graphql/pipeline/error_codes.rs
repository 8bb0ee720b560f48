//! Every error leaves with a stable `extensions.code`. The policies and resolvers give their
//! own (through `ApiError`); what async-graphql raises by itself has none: a document that does
//! not validate against the schema (`GRAPHQL_VALIDATION_FAILED`, a request error without a
//! path) or an argument that does not coerce while a field runs (`BAD_USER_INPUT`, with the
//! field's path).

use async_graphql::Response;

use crate::error::ErrorCode;

/// Gives each error of `response` without a code the one it calls for.
pub fn assign(response: &mut Response) {
    for error in &mut response.errors {
        let uncoded = error
            .extensions
            .as_ref()
            .is_none_or(|extensions| extensions.get("code").is_none());
        if uncoded {
            ErrorCode::for_uncoded(error).mark(error);
        }
    }
}
