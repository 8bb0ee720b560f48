//! GraphQL object and input types, and their conversion to and from the service layer.

pub mod connection;
pub mod cursor;
pub mod edges;
pub mod geo;
pub mod list;
pub mod live;
pub mod observation;
pub mod station;
pub mod station_observations;
