//! Which document a request runs, parsed: from its text, or from the store by the hash of an
//! automatic persisted query
//! (<https://github.com/apollographql/apollo-link-persisted-queries#protocol>).
//!
//! - Text alone: its SHA-256 finds it in the store when it was seen before, which skips the
//!   parser; otherwise it is parsed (after a nesting check: the parser is recursive) and kept.
//! - `extensions.persistedQuery` with a hash alone: the stored document, or
//!   `PERSISTED_QUERY_NOT_FOUND`, after which clients send the text with the hash.
//! - Hash and text: the hash must be the text's SHA-256; the text is then kept under it.
//! - In allowlist mode (`graphql.persisted_only`) only the manifest's documents run, by hash or
//!   by text; anything else is `OPERATION_NOT_ALLOWLISTED`.

use std::sync::Arc;

use async_graphql::{Request, ServerResult, Value, parser::parse_query};

use super::{Policy, Preparing};
use crate::error::ApiError;
use crate::graphql::document_analysis::{MAX_NESTING, nesting_depth};
use crate::graphql::document_store::{DocumentHash, DocumentStore};

pub struct Documents {
    store: Arc<DocumentStore>,
}

impl Documents {
    pub fn new(store: Arc<DocumentStore>) -> Self {
        Self { store }
    }

    /// Parses `request`'s document (or takes it from the store); its hash, or why it has no
    /// document.
    fn document(&self, request: &mut Request) -> ServerResult<DocumentHash> {
        let persisted = persisted_hash(request).map_err(ApiError::into_request_error)?;
        let hash = match persisted {
            Some(hash) if request.query.is_empty() => {
                let stored = self.store.get(&hash).ok_or_else(|| {
                    if self.store.is_allowlist() {
                        ApiError::NotAllowlisted.into_request_error()
                    } else {
                        ApiError::PersistedQueryNotFound.into_request_error()
                    }
                })?;
                request.query.clone_from(&stored.text);
                request.set_parsed_query(stored.document.clone());
                return Ok(hash);
            }
            Some(hash) => {
                if DocumentHash::of(&request.query) != hash {
                    return Err(ApiError::PersistedQueryMismatch.into_request_error());
                }
                hash
            }
            None => DocumentHash::of(&request.query),
        };
        match self.store.get(&hash) {
            Some(stored) => request.set_parsed_query(stored.document.clone()),
            None if self.store.is_allowlist() => {
                return Err(ApiError::NotAllowlisted.into_request_error());
            }
            None => {
                let document = parse(&request.query)?;
                self.store.insert(hash, &request.query, &document);
                request.set_parsed_query(document);
            }
        }
        Ok(hash)
    }
}

impl Policy for Documents {
    async fn prepare(&self, preparing: &mut Preparing) -> ServerResult<()> {
        preparing.hash = Some(self.document(&mut preparing.request)?);
        Ok(())
    }
}

/// Parses `query`, refusing first what nests too deep for the recursive parser.
fn parse(query: &str) -> ServerResult<async_graphql::parser::types::ExecutableDocument> {
    if nesting_depth(query) > MAX_NESTING {
        return Err(ApiError::QueryTooDeep(format!(
            "the query nests brackets deeper than {MAX_NESTING} levels"
        ))
        .into_request_error());
    }
    parse_query(query).map_err(|error| {
        let mut error = async_graphql::ServerError::from(error);
        let message = std::mem::take(&mut error.message);
        let mut refusal = ApiError::ParseFailed(message).into_request_error();
        refusal.locations = error.locations;
        refusal
    })
}

/// The hash of `extensions.persistedQuery`, when the request carries one.
fn persisted_hash(request: &Request) -> Result<Option<DocumentHash>, ApiError> {
    let Some(persisted) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let invalid = |field: &str, message: &str| ApiError::BadRequest {
        field: format!("extensions.persistedQuery.{field}"),
        message: message.to_owned(),
    };
    let Value::Object(persisted) = persisted else {
        return Err(ApiError::BadRequest {
            field: "extensions.persistedQuery".to_owned(),
            message: "must be an object: {\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}"
                .to_owned(),
        });
    };
    match persisted.get("version") {
        Some(Value::Number(version)) if version.as_u64() == Some(1) => {}
        _ => return Err(invalid("version", "must be 1, the only version there is")),
    }
    match persisted.get("sha256Hash") {
        Some(Value::String(hex)) => DocumentHash::parse(hex).map(Some).ok_or_else(|| {
            invalid(
                "sha256Hash",
                "must be the SHA-256 of the query text, as 64 hexadecimal digits",
            )
        }),
        _ => Err(invalid(
            "sha256Hash",
            "must be the SHA-256 of the query text, as 64 hexadecimal digits",
        )),
    }
}
