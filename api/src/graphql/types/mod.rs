//! GraphQL object and input types, one folder per entity, and their conversion to and from
//! the service layer; with what the entities share: cursors, page info and the events of
//! subscriptions.

use crate::error::ApiError;

pub mod column;
pub mod cursor;
pub mod live;
pub mod observation;
pub mod page;
pub mod station;

/// An input type that narrows a list or a stream, checked into the criteria the service layer
/// matches.
pub trait Filter: Sized {
    /// What the filter matches; the default matches everything.
    type Criteria: Default;

    /// Checks every field; `path` prefixes field names in errors (`filter.bbox.south`).
    fn validate(self, path: &str) -> Result<Self::Criteria, ApiError>;

    /// The criteria of a field's optional `filter` argument: everything when it is left out.
    fn argument(filter: Option<Self>) -> Result<Self::Criteria, ApiError> {
        filter.map_or_else(
            || Ok(Self::Criteria::default()),
            |filter| filter.validate("filter"),
        )
    }
}
