//! Values as the API accepts them. Each type can only hold a valid value, so the service layer
//! never sees an out-of-range coordinate or a blank name, and every entry point (GraphQL,
//! imports) rejects bad input with the same words.

mod geo;
mod observation;
mod station;

use geo::within;
pub use geo::{DegreeBox, EARTH_RADIUS_KM, Latitude, Longitude, RadiusKm, enclosing_boxes};
pub use observation::{CLOCK_SKEW, Measure, NewObservation, observed_at};
pub use station::{Elevation, NewStation, StationChanges, StationCode, StationName};

/// Why a value was refused, phrased to follow the field's name: "must be between -90 and 90".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);
