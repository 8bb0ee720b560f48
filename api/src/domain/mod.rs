//! Values as the API accepts them. Each type can only hold a valid value, so the service layer
//! never sees an out-of-range coordinate or a blank name, and every entry point (GraphQL,
//! imports) rejects bad input with the same words.

/// A number type that holds only values from `MIN` to `MAX`, both included, read back through
/// a getter named for its unit (`lat.degrees()`, `elevation.metres()`).
macro_rules! bounded_number {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $getter:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name(f64);

        impl $name {
            pub const MIN: f64 = $min;
            pub const MAX: f64 = $max;

            pub fn parse(value: f64) -> Result<Self, InvalidValue> {
                within(value, Self::MIN, Self::MAX, $unit).map(Self)
            }

            pub fn $getter(self) -> f64 {
                self.0
            }
        }
    };
}

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
