//! Each operation gets batch loaders of its own (`graphql::loaders`): related rows asked for by
//! many fields of one operation are read in one statement, and nothing read for one operation
//! is served to another.

use std::sync::Arc;

use async_graphql::Data;

use super::Policy;
use crate::graphql::loaders::{Batches, OperationBatches};

pub struct Loaders {
    batches: Arc<Batches>,
}

impl Loaders {
    pub fn new(batches: Arc<Batches>) -> Self {
        Self { batches }
    }
}

impl Policy for Loaders {
    fn execution_data(&self, data: &mut Data) {
        data.insert(OperationBatches::new(Arc::clone(&self.batches)));
    }
}
