//! What a document is, read before anything else walks it: how deep its brackets nest (before
//! parsing), which operation a request runs, and how much validation will walk
//! ([`DocumentShape`]). The `documents` and `cost` policies refuse by these measures.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned};

/// Brackets nested deeper than this are refused before parsing: the parser is recursive, and
/// ten thousand levels would exhaust its stack.
pub const MAX_NESTING: usize = 64;

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

/// What validation will walk in a document, measured without walking it that way.
///
/// async-graphql validates every operation of a document, not only the one a request runs,
/// and its depth, complexity and cache-control visitors expand each fragment spread again
/// wherever it occurs: a few hundred bytes of fragments spreading each other four times are
/// 4^20 steps of CPU that no timeout can interrupt. This counts the same expansion with one
/// count per fragment, so it costs what the document is long, and the cost policy refuses a
/// document whose expansion exceeds the limits before validation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentShape {
    /// Fields over every operation, fragments expanded, plus the expansion of every fragment
    /// that no operation reaches (validation walks those too, without expanding them less).
    pub fields: usize,
    /// Fragment definitions in the document.
    pub fragments: usize,
    /// `...Name` spreads written in the document, counted where they are written.
    pub spreads: usize,
}

impl DocumentShape {
    pub fn of(document: &ExecutableDocument) -> Self {
        let mut walk = Walk {
            fragments: &document.fragments,
            counted: HashMap::new(),
            visiting: HashSet::new(),
        };
        let mut fields = 0usize;
        for (_, operation) in document.operations.iter() {
            fields = fields.saturating_add(walk.count(&operation.node.selection_set));
        }
        // What the operations reached is in `counted` now; what they did not reach is
        // validated as well, so it counts on its own.
        let unreached: Vec<&Positioned<FragmentDefinition>> = document
            .fragments
            .iter()
            .filter(|(name, _)| !walk.counted.contains_key(name.as_str()))
            .map(|(_, fragment)| fragment)
            .collect();
        let mut unreached_fields = 0usize;
        for fragment in unreached {
            unreached_fields =
                unreached_fields.saturating_add(walk.count(&fragment.node.selection_set));
        }
        let spreads = document
            .operations
            .iter()
            .map(|(_, operation)| spreads_in(&operation.node.selection_set))
            .chain(
                document
                    .fragments
                    .values()
                    .map(|fragment| spreads_in(&fragment.node.selection_set)),
            )
            .fold(0usize, usize::saturating_add);
        Self {
            fields: fields.saturating_add(unreached_fields),
            fragments: document.fragments.len(),
            spreads,
        }
    }
}

/// Counts fields with fragments expanded, remembering each fragment's count.
struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    counted: HashMap<&'a str, usize>,
    visiting: HashSet<&'a str>,
}

impl<'a> Walk<'a> {
    fn count(&mut self, selection_set: &'a Positioned<SelectionSet>) -> usize {
        let mut total = 0usize;
        for selection in &selection_set.node.items {
            let fields = match &selection.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.count(&field.node.selection_set))
                }
                Selection::InlineFragment(inline) => self.count(&inline.node.selection_set),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match (self.counted.get(name), self.fragments.get(name)) {
                        (Some(known), _) => *known,
                        // A cycle (refused by validation) or an unknown fragment: nothing to
                        // add.
                        (None, None) => 0,
                        (None, Some(_)) if self.visiting.contains(name) => 0,
                        (None, Some(fragment)) => {
                            self.visiting.insert(name);
                            let fields = self.count(&fragment.node.selection_set);
                            self.visiting.remove(name);
                            self.counted.insert(name, fields);
                            fields
                        }
                    }
                }
            };
            total = total.saturating_add(fields);
        }
        total
    }
}

/// The fragment spreads written in `selection_set`, not expanded.
fn spreads_in(selection_set: &Positioned<SelectionSet>) -> usize {
    selection_set
        .node
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => spreads_in(&field.node.selection_set),
            Selection::InlineFragment(inline) => spreads_in(&inline.node.selection_set),
            Selection::FragmentSpread(_) => 1,
        })
        .fold(0usize, usize::saturating_add)
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
        assert_eq!(DocumentShape::of(&document).fields, 2usize << 30);
    }

    /// The shape of the attack the issue reported: a harmless operation runs, another one
    /// holds a fragment bomb that validation would expand.
    fn bomb_beside_a_harmless_operation(levels: usize) -> String {
        let mut query = String::from("query A { __typename } query B { ...F20 }\n");
        query.push_str("fragment F0 on Query { __typename }\n");
        for level in 1..=levels {
            let previous = level - 1;
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{previous} ...F{previous} ...F{previous} ...F{previous} }}\n"
            ));
        }
        query
    }

    #[test]
    fn every_operation_counts_not_only_the_selected_one() {
        let document = parse_query(bomb_beside_a_harmless_operation(20)).unwrap();
        let shape = DocumentShape::of(&document);
        assert_eq!(shape.fields, 1 + 4usize.pow(20));
        assert_eq!(shape.fragments, 21);
        assert_eq!(shape.spreads, 1 + 4 * 20);
    }

    #[test]
    fn fragments_no_operation_reaches_count_too() {
        let document = parse_query(
            "query { a } fragment Unused on Query { ...Leaf ...Leaf } fragment Leaf on Query { b c }",
        )
        .unwrap();
        // `a`, then each fragment no operation reaches, expanded as validation expands it:
        // Unused (4) and Leaf (2).
        assert_eq!(DocumentShape::of(&document).fields, 7);
    }

    #[test]
    fn the_operation_is_found_by_name() {
        let document = parse_query("query A { a } mutation B { b(x: 1) }").unwrap();
        assert_eq!(
            selected_operation(&document, Some("B")).unwrap().1,
            OperationType::Mutation
        );
        assert!(selected_operation(&document, None).is_none());
    }

    proptest::proptest! {
        #[test]
        fn measuring_nesting_never_panics(text in ".*") {
            let _ = nesting_depth(&text);
        }
    }
}
