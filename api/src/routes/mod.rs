//! Plain HTTP handlers: GraphQL over HTTP, the IDE and health checks.

pub mod graphql;
pub mod ide;
pub mod metrics;
pub mod sites;
