//! What an operation may cost, within `graphql.max_fields`, `graphql.max_depth` and
//! `graphql.max_complexity`: fields are counted with fragments expanded (ten thousand aliases
//! or a fragment bomb are refused before validation walks them); depth and complexity are what
//! async-graphql's validation measures, compared here so that each refusal names its limit.

use async_graphql::{Request, ServerError, ServerResult, ValidationResult};

use crate::error::ApiError;
use crate::graphql::limits::{Limits, field_count, selected_operation};

pub struct Cost {
    limits: Limits,
}

impl Cost {
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// Refuses a document that selects more than `graphql.max_fields` fields.
    pub fn count_fields(&self, request: &mut Request) -> ServerResult<()> {
        let operation_name = request.operation_name.clone();
        let document = request.parsed_query()?;
        if let Some((_, _, selection)) = selected_operation(document, operation_name.as_deref()) {
            let fields = field_count(document, selection);
            let limit = self.limits.max_fields;
            if fields > limit {
                return Err(ApiError::TooManyFields(format!(
                    "the operation selects {fields} fields (fragments expanded); the limit is \
                     {limit} (graphql.max_fields)"
                ))
                .into_request_error());
            }
        }
        Ok(())
    }

    /// Refuses what validation measured deeper or costlier than the limits.
    pub fn check(&self, result: ValidationResult) -> Result<ValidationResult, Vec<ServerError>> {
        if result.depth > self.limits.max_depth {
            return Err(vec![
                ApiError::QueryTooDeep(format!(
                    "the query nests selections {} levels deep; the limit is {} \
                     (graphql.max_depth)",
                    result.depth, self.limits.max_depth
                ))
                .into_request_error(),
            ]);
        }
        if result.complexity > self.limits.max_complexity {
            return Err(vec![
                ApiError::QueryTooComplex(format!(
                    "the query costs {}: each field costs 1 and a list field its page size times \
                     what it selects; the limit is {} (graphql.max_complexity)",
                    result.complexity, self.limits.max_complexity
                ))
                .into_request_error(),
            ]);
        }
        Ok(result)
    }
}
