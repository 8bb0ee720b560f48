//! `Column<T>`: a list of scalars that the schema declares as `[T!]!` (or `[T]!` for
//! `Column<Option<T>>`) and that resolves in one step.
//!
//! async-graphql resolves every item of a `Vec<T>` as a future of its own, with a path and
//! its error handling: right for lists of objects, wasted on the columns of a time series
//! (100 stations × 168 hours × five columns is 84,000 items). A scalar has no selection to
//! resolve and cannot fail, so its values are written straight into the response.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ScalarType, ServerResult, Value};
use chrono::{DateTime, Utc};

/// A scalar a column can hold.
pub trait Cell: OutputType {
    fn value(&self) -> Value;
}

impl Cell for i64 {
    fn value(&self) -> Value {
        Value::from(*self)
    }
}

impl Cell for f64 {
    fn value(&self) -> Value {
        ScalarType::to_value(self)
    }
}

impl Cell for DateTime<Utc> {
    fn value(&self) -> Value {
        ScalarType::to_value(self)
    }
}

impl Cell for Option<f64> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Cell::value)
    }
}

/// One value per bucket of a series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Column<T>(pub Vec<T>);

impl<T> FromIterator<T> for Column<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<T: Cell> OutputType for Column<T> {
    fn type_name() -> Cow<'static, str> {
        <Vec<T> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<T> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<T> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(Value::List(self.0.iter().map(Cell::value).collect()))
    }
}
