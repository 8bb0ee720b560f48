//! What a document may cost, within `graphql.max_fields`, `graphql.max_fragments`,
//! `graphql.max_fragment_spreads`, `graphql.max_depth` and `graphql.max_complexity`.
//!
//! Before validation: the document's shape ([`DocumentShape`]), over *all* its operations,
//! because async-graphql validates every operation of a document and expands every fragment
//! spread wherever it occurs, as synchronous CPU work that no timeout can interrupt (ten
//! thousand aliases, or a fragment bomb beside a harmless operation, are refused here); and a
//! document whose operation cannot be selected is refused before anything walks it. After
//! validation: depth and complexity as async-graphql measures them, compared here so that each
//! refusal names its limit.

use async_graphql::{
    Request, ServerError, ServerResult, ValidationResult,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};

use super::{Policy, PreparedOperation, Preparing};
use crate::configuration::GraphqlSettings;
use crate::error::ApiError;
use crate::graphql::document_analysis::DocumentShape;

pub struct Cost {
    limits: GraphqlSettings,
    /// `subscriptions.max_complexity`: a subscription's selection is resolved again for every
    /// event and every subscriber.
    subscription_max_complexity: usize,
}

impl Cost {
    pub fn new(limits: &GraphqlSettings, subscription_max_complexity: usize) -> Self {
        Self {
            limits: limits.clone(),
            subscription_max_complexity,
        }
    }

    /// Refuses a document larger than the limits in what validation would walk.
    fn bound_document(&self, request: &mut Request) -> ServerResult<()> {
        let document = request.parsed_query()?;
        let shape = DocumentShape::of(document);
        let limits = &self.limits;
        if shape.fragments > limits.max_fragments {
            return Err(ApiError::QueryTooComplex(format!(
                "the document defines {} fragments; the limit is {} (graphql.max_fragments)",
                shape.fragments, limits.max_fragments
            ))
            .into_request_error());
        }
        if shape.spreads > limits.max_fragment_spreads {
            return Err(ApiError::QueryTooComplex(format!(
                "the document spreads fragments {} times; the limit is {} \
                 (graphql.max_fragment_spreads)",
                shape.spreads, limits.max_fragment_spreads
            ))
            .into_request_error());
        }
        if shape.fields > limits.max_fields {
            return Err(ApiError::TooManyFields(format!(
                "the document selects {} fields (fragments expanded, every operation counted); \
                 the limit is {} (graphql.max_fields)",
                shape.fields, limits.max_fields
            ))
            .into_request_error());
        }
        Ok(())
    }
}

impl Policy for Cost {
    /// The document within the limits, then the operation it runs: one the request selects.
    async fn prepare(&self, preparing: &mut Preparing) -> ServerResult<()> {
        self.bound_document(&mut preparing.request)?;
        preparing.operation()?;
        Ok(())
    }

    /// Refuses what validation measured deeper or costlier than the limits for its kind.
    fn validated(
        &self,
        operation: &PreparedOperation,
        result: &ValidationResult,
    ) -> ServerResult<()> {
        if operation.kind == OperationType::Subscription
            && result.complexity > self.subscription_max_complexity
        {
            return Err(ApiError::QueryTooComplex(format!(
                "the subscription costs {}, resolved again for every event: each field costs \
                     1 and a list field its page size times what it selects; the limit is {} \
                     (subscriptions.max_complexity)",
                result.complexity, self.subscription_max_complexity
            ))
            .into_request_error());
        }
        if result.depth > self.limits.max_depth {
            return Err(ApiError::QueryTooDeep(format!(
                "the query nests selections {} levels deep; the limit is {} \
                     (graphql.max_depth)",
                result.depth, self.limits.max_depth
            ))
            .into_request_error());
        }
        if result.complexity > self.limits.max_complexity {
            return Err(ApiError::QueryTooComplex(format!(
                "the query costs {}: each field costs 1 and a list field its page size times \
                     what it selects; the limit is {} (graphql.max_complexity)",
                result.complexity, self.limits.max_complexity
            ))
            .into_request_error());
        }
        Ok(())
    }
}

/// Why no operation of `document` is the one to run.
pub(super) fn unselectable(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> ServerError {
    const NAMES_SHOWN: usize = 10;
    let names: Vec<&str> = match &document.operations {
        DocumentOperations::Single(_) => Vec::new(),
        DocumentOperations::Multiple(operations) => {
            let mut names: Vec<&str> = operations.keys().map(|name| name.as_str()).collect();
            names.sort_unstable();
            names
        }
    };
    let mut listed = names
        .iter()
        .take(NAMES_SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        listed.push_str(", ...");
    }
    let message = match operation_name {
        None => format!(
            "is required: the document holds {} operations, so name the one to run ({listed})",
            names.len()
        ),
        Some(_) => format!("names no operation of the document; it holds {listed}"),
    };
    ApiError::BadRequest {
        field: "operationName".to_owned(),
        message,
    }
    .into_request_error()
}
