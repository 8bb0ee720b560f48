//! Parsed GraphQL documents, kept by query text.
//!
//! Clients send the same few query texts over and over, with the values in variables; parsing
//! one is a tree of allocations and a recursive descent, where a copy of the parsed tree is far
//! cheaper. Bounded in entries and in text length, so that clients sending ever-new texts (or
//! huge ones) cost at most one parse each and cannot grow the server's memory.

use std::{collections::HashMap, sync::Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Documents kept at most; past this, one entry makes room for the next.
const CAPACITY: usize = 256;
/// Longer query texts are parsed every time and never kept.
const MAX_QUERY_LENGTH: usize = 4096;

#[derive(Default)]
pub struct DocumentCache {
    documents: Mutex<HashMap<String, ExecutableDocument>>,
}

impl DocumentCache {
    /// A copy of the document parsed from `query`, if it is kept.
    pub fn get(&self, query: &str) -> Option<ExecutableDocument> {
        self.documents.lock().ok()?.get(query).cloned()
    }

    /// Keeps `document`, the successful parse of `query`.
    pub fn insert(&self, query: &str, document: &ExecutableDocument) {
        if query.len() > MAX_QUERY_LENGTH {
            return;
        }
        let Ok(mut documents) = self.documents.lock() else {
            return;
        };
        if documents.len() >= CAPACITY && !documents.contains_key(query) {
            // Which entry goes matters little: a text in steady use comes back at once.
            if let Some(evicted) = documents.keys().next().cloned() {
                documents.remove(&evicted);
            }
        }
        documents.insert(query.to_owned(), document.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    #[test]
    fn a_kept_document_comes_back_and_the_cache_stays_bounded() {
        let cache = DocumentCache::default();
        for index in 0..CAPACITY * 2 {
            let query = format!("{{ a{index} }}");
            cache.insert(&query, &parse_query(&query).unwrap());
            assert!(cache.get(&query).is_some());
        }
        assert_eq!(cache.documents.lock().unwrap().len(), CAPACITY);

        let long = format!("{{ {} }}", "a ".repeat(MAX_QUERY_LENGTH));
        cache.insert(&long, &parse_query(&long).unwrap());
        assert!(cache.get(&long).is_none());
    }
}
