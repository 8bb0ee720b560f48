//! Positions on the Earth and distances along its surface.

use super::InvalidValue;

/// The mean Earth radius (IUGG), in kilometres. Distances are great-circle distances on a
/// sphere of this radius: within 0.5 % of the true ellipsoidal distance everywhere.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

bounded_number!(
    /// Latitude in WGS 84 degrees, -90 (south pole) to 90 (north pole).
    Latitude,
    -90.0,
    90.0,
    degrees,
    " degrees"
);

bounded_number!(
    /// Longitude in WGS 84 degrees, -180 to 180; both ends name the antimeridian.
    Longitude,
    -180.0,
    180.0,
    degrees,
    " degrees"
);

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

/// A latitude/longitude rectangle, edges included, that does not cross the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegreeBox {
    pub south: f64,
    pub north: f64,
    pub west: f64,
    pub east: f64,
}

/// The rectangles that together enclose every point within `radius` of (`lat`, `lng`): one,
/// or two where the circle crosses the antimeridian; `None` when the circle covers the whole
/// Earth. (J. P. Matuschek, "Finding Points Within a Distance of a Latitude/Longitude Using
/// Bounding Coordinates".) They enclose a little more than the circle: the exact distance
/// decides.
pub fn enclosing_boxes(lat: Latitude, lng: Longitude, radius: RadiusKm) -> Option<Vec<DegreeBox>> {
    // Rounding must never leave a point on the circle's edge outside its box.
    const MARGIN: f64 = 1e-9;
    let angle = radius.kilometres() / EARTH_RADIUS_KM;
    if angle >= std::f64::consts::PI {
        return None;
    }
    let angle_degrees = angle.to_degrees() + MARGIN;
    let (lat, lng) = (lat.degrees(), lng.degrees());
    let south = lat - angle_degrees;
    let north = lat + angle_degrees;
    if north >= 90.0 || south <= -90.0 {
        // The circle holds a pole: every longitude, up to the pole.
        return Some(vec![DegreeBox {
            south: south.max(-90.0),
            north: north.min(90.0),
            west: -180.0,
            east: 180.0,
        }]);
    }
    let half_width = (angle.sin() / lat.to_radians().cos())
        .min(1.0)
        .asin()
        .to_degrees()
        + MARGIN;
    let (west, east) = (lng - half_width, lng + half_width);
    let band = |west: f64, east: f64| DegreeBox {
        south,
        north,
        west,
        east,
    };
    Some(if west < -180.0 {
        vec![band(west + 360.0, 180.0), band(-180.0, east)]
    } else if east > 180.0 {
        vec![band(west, 180.0), band(-180.0, east - 360.0)]
    } else {
        vec![band(west, east)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(lat: f64, lng: f64, radius: f64) -> Option<Vec<DegreeBox>> {
        enclosing_boxes(
            Latitude::parse(lat).unwrap(),
            Longitude::parse(lng).unwrap(),
            RadiusKm::parse(radius).unwrap(),
        )
    }

    #[test]
    fn a_circle_near_the_equator_gets_one_box_of_its_size() {
        let found = boxes(0.0, 10.0, 111.19508).unwrap();
        assert_eq!(found.len(), 1);
        assert!((found[0].north - 1.0).abs() < 1e-6 && (found[0].east - 11.0).abs() < 1e-6);
    }

    #[test]
    fn a_circle_across_the_antimeridian_gets_a_box_on_each_side() {
        let found = boxes(0.0, 179.9, 50.0).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].east, 180.0);
        assert_eq!(found[1].west, -180.0);
        assert!(found[1].east > -179.8);
    }

    #[test]
    fn a_circle_around_a_pole_spans_every_longitude() {
        let found = boxes(89.9, 0.0, 50.0).unwrap();
        assert_eq!(
            found,
            [DegreeBox {
                south: found[0].south,
                north: 90.0,
                west: -180.0,
                east: 180.0
            }]
        );
    }

    #[test]
    fn a_circle_beyond_half_the_circumference_is_the_whole_earth() {
        assert_eq!(boxes(10.0, 10.0, 20_100.0), None);
    }

    #[test]
    fn a_radius_is_finite_and_not_negative() {
        assert!(RadiusKm::parse(0.0).is_ok());
        assert!(RadiusKm::parse(25_000.0).is_ok());
        assert!(RadiusKm::parse(-0.1).is_err());
        assert!(RadiusKm::parse(f64::NAN).is_err());
        assert!(RadiusKm::parse(f64::INFINITY).is_err());
    }
}
