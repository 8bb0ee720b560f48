//! What one request may ask for: how deep it nests, how many fields it selects, how large a
//! page it asks for, how long it may take, how large its body and its batch may be. The
//! policies of `pipeline` enforce them, and the HTTP transport those of the request around
//! the operations (body, batch, caching).

use std::time::Duration;

use crate::configuration::{GraphqlSettings, ServerSettings};
use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_page_size: u32,
    pub max_body_bytes: usize,
    pub max_batch_size: usize,
    pub max_rows_per_mutation: usize,
    pub max_series_points: usize,
    pub max_series_stations: usize,
    /// How long caches may keep a successful answer to a GET; 0: not at all.
    pub get_max_age_secs: u64,
    pub request_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Limits {
    pub fn new(graphql: &GraphqlSettings, server: &ServerSettings) -> Self {
        Self {
            max_page_size: graphql.max_page_size,
            max_body_bytes: server.max_body_bytes,
            max_batch_size: graphql.max_batch_size,
            max_rows_per_mutation: graphql.max_rows_per_mutation,
            max_series_points: graphql.max_series_points,
            max_series_stations: graphql.max_series_stations,
            get_max_age_secs: graphql.get_max_age_secs,
            request_timeout: Duration::from_secs(server.request_timeout_secs),
            body_read_timeout: Duration::from_secs(server.body_read_timeout_secs),
        }
    }
}

impl Limits {
    /// Refuses a mutation's argument `inputs` when it holds more `rows` (stations,
    /// observations) than one mutation may write.
    pub fn check_rows_per_mutation(&self, count: usize, rows: &str) -> Result<(), ApiError> {
        if count <= self.max_rows_per_mutation {
            return Ok(());
        }
        Err(ApiError::bad_input(
            "inputs",
            format!(
                "must hold at most {} {rows} (got {count}; graphql.max_rows_per_mutation): send \
                 several calls",
                self.max_rows_per_mutation
            ),
        ))
    }
}
