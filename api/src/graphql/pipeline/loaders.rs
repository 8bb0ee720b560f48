//! Each operation gets batch loaders of its own (`graphql::loaders`): related rows asked for by
//! many fields of one operation are read in one statement, and nothing read for one operation
//! is served to another.

use async_graphql::Data;

use super::Policy;
use crate::graphql::loaders::OperationBatches;

pub struct Loaders;

impl Policy for Loaders {
    fn execution_data(&self, data: &mut Data) {
        data.insert(OperationBatches::default());
    }
}
