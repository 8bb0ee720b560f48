//! Geographic inputs and results: circles around a point, and stations with their distance.

use async_graphql::{InputObject, SimpleObject};

use super::{Station, at};
use crate::domain::{Latitude, Longitude, RadiusKm};
use crate::error::ApiError;
use crate::service::station::{Circle, NearbyStation};

/// Stations no farther than `radiusKm` from (`lat`, `lng`) along the Earth's surface
/// (great-circle distance on a sphere of radius 6371.0088 km).
#[derive(Debug, Clone, Copy, InputObject)]
pub struct WithinRadius {
    pub lat: f64,
    pub lng: f64,
    pub radius_km: f64,
}

impl WithinRadius {
    pub fn validate(self, path: &str) -> Result<Circle, ApiError> {
        Ok(Circle {
            lat: Latitude::parse(self.lat).map_err(at(format!("{path}.lat")))?,
            lng: Longitude::parse(self.lng).map_err(at(format!("{path}.lng")))?,
            radius: RadiusKm::parse(self.radius_km).map_err(at(format!("{path}.radiusKm")))?,
        })
    }
}

/// A station and how far it is from the point asked about.
#[derive(Debug, Clone, SimpleObject)]
pub struct StationDistance {
    pub station: Station,
    /// Great-circle distance in kilometres, on a sphere of radius 6371.0088 km (the mean
    /// Earth radius): within 0.5 % of the distance on the WGS 84 ellipsoid.
    pub distance_km: f64,
}

impl From<NearbyStation> for StationDistance {
    fn from(nearby: NearbyStation) -> Self {
        Self {
            station: Station::from(nearby.row),
            distance_km: nearby.distance_km,
        }
    }
}
