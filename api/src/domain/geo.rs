//! Positions on the Earth and distances along its surface.

use super::InvalidValue;

/// The mean Earth radius (IUGG), in kilometres. Distances are great-circle distances on a
/// sphere of this radius: within 0.5 % of the true ellipsoidal distance everywhere.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Latitude in WGS 84 degrees, -90 (south pole) to 90 (north pole).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latitude(f64);

/// Longitude in WGS 84 degrees, -180 to 180; both ends name the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Longitude(f64);

/// A search radius along the Earth's surface, in kilometres: 0 (the exact point) or more.
/// Radii beyond half the circumference (about 20,015 km) cover the whole Earth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadiusKm(f64);

pub(super) fn within(value: f64, min: f64, max: f64, unit: &str) -> Result<f64, InvalidValue> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(InvalidValue(format!(
            "must be between {min} and {max}{unit} (got {value})"
        )))
    }
}

impl Latitude {
    pub const MIN: f64 = -90.0;
    pub const MAX: f64 = 90.0;

    pub fn parse(degrees: f64) -> Result<Self, InvalidValue> {
        within(degrees, Self::MIN, Self::MAX, " degrees").map(Self)
    }

    pub fn degrees(self) -> f64 {
        self.0
    }
}

impl Longitude {
    pub const MIN: f64 = -180.0;
    pub const MAX: f64 = 180.0;

    pub fn parse(degrees: f64) -> Result<Self, InvalidValue> {
        within(degrees, Self::MIN, Self::MAX, " degrees").map(Self)
    }

    pub fn degrees(self) -> f64 {
        self.0
    }
}

impl RadiusKm {
    pub fn parse(kilometres: f64) -> Result<Self, InvalidValue> {
        if kilometres.is_finite() && kilometres >= 0.0 {
            Ok(Self(kilometres))
        } else {
            Err(InvalidValue(format!(
                "must be a finite number of kilometres, 0 or more (got {kilometres})"
            )))
        }
    }

    pub fn kilometres(self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_radius_is_finite_and_not_negative() {
        assert!(RadiusKm::parse(0.0).is_ok());
        assert!(RadiusKm::parse(25_000.0).is_ok());
        assert!(RadiusKm::parse(-0.1).is_err());
        assert!(RadiusKm::parse(f64::NAN).is_err());
        assert!(RadiusKm::parse(f64::INFINITY).is_err());
    }
}
