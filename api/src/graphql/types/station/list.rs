//! Arguments of the `stations` list: filter, order, page size and cursor.

use async_graphql::{Enum, InputObject};

use super::at;
use super::geo::WithinRadius;
use crate::domain::{Latitude, Longitude};
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::types::Filter;
use crate::service::station::{
    BoundingBox as BoxCriterion, ElevationRange, SortDirection, SortField, StationCriteria,
    StationOrdering,
};

/// Checks `first` against the page size limit, `graphql.max_page_size`.
pub fn page_size(first: i32, field: &str, limits: &Limits) -> Result<u64, ApiError> {
    let max = limits.max_page_size;
    match u32::try_from(first) {
        Ok(size) if size <= max => Ok(u64::from(size)),
        _ => Err(ApiError::bad_input(
            field,
            format!("must be between 0 and {max} (got {first})"),
        )),
    }
}

/// Which stations to list. Every criterion given must match.
#[derive(Debug, Clone, Default, InputObject)]
pub struct StationFilter {
    /// Case-insensitive substring of the name; `%` and `_` match themselves.
    pub name_contains: Option<String>,
    /// Exact code.
    pub code: Option<String>,
    /// Stations inside this latitude/longitude box.
    pub bbox: Option<BoundingBox>,
    /// Stations within this distance of a point.
    pub within: Option<WithinRadius>,
    /// Stations whose elevation is in this range (stations without one never match).
    pub elevation_m: Option<FloatRange>,
}

/// A latitude/longitude box, edges included. A box with `minLng` greater than `maxLng`
/// crosses the antimeridian: `minLng: 170, maxLng: -170` is 20 degrees wide.
#[derive(Debug, Clone, Copy, InputObject)]
pub struct BoundingBox {
    pub min_lat: f64,
    pub max_lat: f64,
    pub min_lng: f64,
    pub max_lng: f64,
}

/// Inclusive bounds; either may be left out.
#[derive(Debug, Clone, Copy, Default, InputObject)]
pub struct FloatRange {
    pub gte: Option<f64>,
    pub lte: Option<f64>,
}

/// The order of a list. Ties are broken by id, in the same direction.
#[derive(Debug, Clone, Copy, InputObject)]
pub struct StationOrder {
    pub field: StationOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum StationOrderField {
    Id,
    Name,
    Code,
    CreatedAt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
pub enum OrderDirection {
    #[default]
    Asc,
    Desc,
}

impl Filter for StationFilter {
    type Criteria = StationCriteria;

    fn validate(self, path: &str) -> Result<StationCriteria, ApiError> {
        let bbox = self
            .bbox
            .map(|bbox| bbox.validate(&format!("{path}.bbox")))
            .transpose()?;
        let within = self
            .within
            .map(|circle| circle.validate(&format!("{path}.within")))
            .transpose()?;
        let elevation_m = self
            .elevation_m
            .map(|range| range.validate(&format!("{path}.elevationM")))
            .transpose()?;
        Ok(StationCriteria {
            name_contains: self.name_contains,
            code: self.code,
            bbox,
            within,
            elevation_m,
        })
    }
}

impl BoundingBox {
    pub fn validate(self, path: &str) -> Result<BoxCriterion, ApiError> {
        let min_lat = Latitude::parse(self.min_lat).map_err(at(format!("{path}.minLat")))?;
        let max_lat = Latitude::parse(self.max_lat).map_err(at(format!("{path}.maxLat")))?;
        let min_lng = Longitude::parse(self.min_lng).map_err(at(format!("{path}.minLng")))?;
        let max_lng = Longitude::parse(self.max_lng).map_err(at(format!("{path}.maxLng")))?;
        if min_lat.degrees() > max_lat.degrees() {
            return Err(ApiError::bad_input(
                format!("{path}.minLat"),
                format!(
                    "must not exceed maxLat (got minLat {} and maxLat {})",
                    self.min_lat, self.max_lat
                ),
            ));
        }
        Ok(BoxCriterion {
            min_lat,
            max_lat,
            min_lng,
            max_lng,
        })
    }
}

impl FloatRange {
    fn validate(self, path: &str) -> Result<ElevationRange, ApiError> {
        for (name, value) in [("gte", self.gte), ("lte", self.lte)] {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(ApiError::bad_input(
                    format!("{path}.{name}"),
                    "must be a finite number",
                ));
            }
        }
        if let (Some(gte), Some(lte)) = (self.gte, self.lte)
            && gte > lte
        {
            return Err(ApiError::bad_input(
                format!("{path}.gte"),
                format!("must not exceed lte (got gte {gte} and lte {lte})"),
            ));
        }
        Ok(ElevationRange {
            gte: self.gte,
            lte: self.lte,
        })
    }
}

impl From<StationOrder> for StationOrdering {
    fn from(order: StationOrder) -> Self {
        Self {
            field: match order.field {
                StationOrderField::Id => SortField::Id,
                StationOrderField::Name => SortField::Name,
                StationOrderField::Code => SortField::Code,
                StationOrderField::CreatedAt => SortField::CreatedAt,
            },
            direction: match order.direction {
                OrderDirection::Asc => SortDirection::Asc,
                OrderDirection::Desc => SortDirection::Desc,
            },
        }
    }
}
