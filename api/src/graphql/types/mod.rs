//! GraphQL object and input types, one folder per entity, and their conversion to and from
//! the service layer; with what the entities share: cursors, page info and the events of
//! subscriptions.

pub mod cursor;
pub mod live;
pub mod observation;
pub mod page;
pub mod station;
