//! What one request may ask for: how deep it nests, how many fields it selects, how large a
//! page it asks for, how long it may take, how large its body and its batch may be. The
//! policies of `pipeline` enforce them.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned};

use crate::configuration::{GraphqlSettings, ServerSettings};

/// Brackets nested deeper than this are refused before parsing: the parser is recursive, and
/// ten thousand levels would exhaust its stack.
pub const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_page_size: u32,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_fields: usize,
    pub max_body_bytes: usize,
    pub max_batch_size: usize,
    /// How long caches may keep a successful answer to a GET; 0: not at all.
    pub get_max_age_secs: u64,
    pub request_timeout: Duration,
}

impl Limits {
    pub fn new(graphql: &GraphqlSettings, server: &ServerSettings) -> Self {
        Self {
            max_page_size: graphql.max_page_size,
            max_depth: graphql.max_depth,
            max_complexity: graphql.max_complexity,
            max_fields: graphql.max_fields,
            max_body_bytes: server.max_body_bytes,
            max_batch_size: graphql.max_batch_size,
            get_max_age_secs: graphql.get_max_age_secs,
            request_timeout: Duration::from_secs(server.request_timeout_secs),
        }
    }
}

/// The deepest nesting of `{`, `[` and `(` in `query`, outside strings and comments.
pub fn nesting_depth(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut depth, mut deepest, mut index) = (0usize, 0usize, 0usize);
    while index < bytes.len() {
        match bytes[index] {
            b'#' => {
                while index < bytes.len() && bytes[index] != b'\n' {
                    index += 1;
                }
            }
            b'"' if bytes[index..].starts_with(b"\"\"\"") => {
                index += 3;
                while index < bytes.len() && !bytes[index..].starts_with(b"\"\"\"") {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
                index += 2;
            }
            b'"' => {
                index += 1;
                while index < bytes.len() && bytes[index] != b'"' && bytes[index] != b'\n' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        index += 1;
    }
    deepest
}

/// The operation a request runs: the one named by `operation_name`, or the only one. `None`
/// when the document does not say (async-graphql then refuses it).
pub fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(Option<&'a str>, OperationType, &'a Positioned<SelectionSet>)> {
    use async_graphql::parser::types::DocumentOperations;
    match (&document.operations, operation_name) {
        // A document's only operation is anonymous: it has no name to match.
        (DocumentOperations::Single(operation), _) => {
            let node = &operation.node;
            Some((None, node.ty, &node.selection_set))
        }
        (DocumentOperations::Multiple(operations), Some(wanted)) => operations
            .iter()
            .find(|(name, _)| name.as_str() == wanted)
            .map(|(name, operation)| {
                (
                    Some(name.as_str()),
                    operation.node.ty,
                    &operation.node.selection_set,
                )
            }),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.iter().next().map(|(name, operation)| {
                (
                    Some(name.as_str()),
                    operation.node.ty,
                    &operation.node.selection_set,
                )
            })
        }
        _ => None,
    }
}

/// Whether any operation of the document is a mutation.
pub fn has_mutation(document: &ExecutableDocument) -> bool {
    document
        .operations
        .iter()
        .any(|(_, operation)| operation.node.ty == OperationType::Mutation)
}

/// How many fields `selection_set` selects, fragments expanded, each fragment counted once per
/// spread without being walked again: a document spreading fragments into each other cannot
/// make this expensive.
pub fn field_count(
    document: &ExecutableDocument,
    selection_set: &Positioned<SelectionSet>,
) -> usize {
    let mut counted = HashMap::new();
    let mut visiting = HashSet::new();
    count(
        &document.fragments,
        selection_set,
        &mut counted,
        &mut visiting,
    )
}

fn count<'a>(
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    selection_set: &'a Positioned<SelectionSet>,
    counted: &mut HashMap<&'a str, usize>,
    visiting: &mut HashSet<&'a str>,
) -> usize {
    let mut total = 0usize;
    for selection in &selection_set.node.items {
        let fields = match &selection.node {
            Selection::Field(field) => 1usize.saturating_add(count(
                fragments,
                &field.node.selection_set,
                counted,
                visiting,
            )),
            Selection::InlineFragment(inline) => {
                count(fragments, &inline.node.selection_set, counted, visiting)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match (counted.get(name), fragments.get(name)) {
                    (Some(known), _) => *known,
                    // A cycle (refused by validation) or an unknown fragment: nothing to add.
                    (None, None) => 0,
                    (None, Some(_)) if visiting.contains(name) => 0,
                    (None, Some(fragment)) => {
                        visiting.insert(name);
                        let fields =
                            count(fragments, &fragment.node.selection_set, counted, visiting);
                        visiting.remove(name);
                        counted.insert(name, fields);
                        fields
                    }
                }
            }
        };
        total = total.saturating_add(fields);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    #[test]
    fn nesting_ignores_brackets_in_strings_and_comments() {
        assert_eq!(nesting_depth("{ a { b(x: \"{{{{\") } } # {{{{"), 3);
        assert_eq!(nesting_depth("{ a(s: \"\"\"{[(\"\"\") }"), 2);
        assert_eq!(nesting_depth(&"{".repeat(10_000)), 10_000);
    }

    #[test]
    fn fragments_are_counted_once_per_spread_without_blowing_up() {
        // Each fragment spreads the previous one twice: 2^30 fields if expanded naively.
        let mut query = String::from("query { ...F30 }\nfragment F0 on Query { a b }\n");
        for level in 1..=30 {
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{} ...F{} }}\n",
                level - 1,
                level - 1
            ));
        }
        let document = parse_query(&query).unwrap();
        let (_, _, selection) = selected_operation(&document, None).unwrap();
        assert_eq!(field_count(&document, selection), 2usize << 30);
    }

    #[test]
    fn the_operation_is_found_by_name() {
        let document = parse_query("query A { a } mutation B { b(x: 1) }").unwrap();
        assert_eq!(
            selected_operation(&document, Some("B")).unwrap().1,
            OperationType::Mutation
        );
        assert!(selected_operation(&document, None).is_none());
        assert!(has_mutation(&document));
    }

    proptest::proptest! {
        #[test]
        fn measuring_nesting_never_panics(text in ".*") {
            let _ = nesting_depth(&text);
        }
    }
}
