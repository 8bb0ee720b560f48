//! `Station` and the inputs that create and change one.

pub mod connection;
pub mod edges;
pub mod geo;
pub mod list;
mod observations;

use async_graphql::{ID, InputObject, MaybeUndefined, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::{
    Elevation, InvalidValue, Latitude, Longitude, NewStation, StationChanges, StationCode,
    StationName,
};
use crate::error::ApiError;

/// A geographic station. Its observations are fields of their own
/// (`types::station::observations`).
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Station {
    pub id: ID,
    /// Short external identifier, unique across stations: 1 to 32 characters from A-Z, a-z,
    /// 0-9 and - _ . :
    pub code: String,
    pub name: String,
    /// Latitude in WGS 84 degrees, -90 to 90.
    pub lat: f64,
    /// Longitude in WGS 84 degrees, -180 to 180.
    pub lng: f64,
    /// Elevation above mean sea level in metres, when known.
    pub elevation_m: Option<f64>,
    pub created_at: DateTime<Utc>,
    /// Set by the database on every change, whoever makes it.
    pub updated_at: DateTime<Utc>,
    /// The id as the database has it, for the loaders of related rows.
    #[graphql(skip)]
    pub row_id: i32,
}

impl From<entity::station::Model> for Station {
    fn from(row: entity::station::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            row_id: row.id,
            code: row.code,
            name: row.name,
            lat: row.lat,
            lng: row.lng,
            elevation_m: row.elevation_m,
            created_at: row.created_at.with_timezone(&Utc),
            updated_at: row.updated_at.with_timezone(&Utc),
        }
    }
}

/// A station id as clients send it: the decimal digits of a 32-bit integer.
pub fn parse_station_id(id: &ID, field: &str) -> Result<i32, ApiError> {
    id.parse::<i32>().map_err(|_| {
        ApiError::bad_input(
            field,
            format!(
                "must be a station id such as \"42\" (got {:?})",
                id.as_str()
            ),
        )
    })
}

/// Names the field a refused value came from: `input.lat must be between ...`.
pub fn at(field: impl Into<String>) -> impl FnOnce(InvalidValue) -> ApiError {
    move |InvalidValue(message)| ApiError::bad_input(field, message)
}

/// A new station. `code` must not be taken by another station.
#[derive(Debug, Clone, InputObject)]
pub struct CreateStationInput {
    pub code: String,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub elevation_m: Option<f64>,
}

impl CreateStationInput {
    /// Validates every field; `path` prefixes field names in errors (`input`, `inputs[3]`).
    pub fn validate(self, path: &str) -> Result<NewStation, ApiError> {
        Ok(NewStation {
            code: StationCode::parse(self.code).map_err(at(format!("{path}.code")))?,
            name: StationName::parse(self.name).map_err(at(format!("{path}.name")))?,
            lat: Latitude::parse(self.lat).map_err(at(format!("{path}.lat")))?,
            lng: Longitude::parse(self.lng).map_err(at(format!("{path}.lng")))?,
            elevation_m: self
                .elevation_m
                .map(Elevation::parse)
                .transpose()
                .map_err(at(format!("{path}.elevationM")))?,
        })
    }
}

/// Changes to a station: fields left out stay as they are; `elevationM: null` clears the
/// elevation. The other fields cannot be cleared.
#[derive(Debug, Clone, Default, InputObject)]
pub struct UpdateStationInput {
    pub code: MaybeUndefined<String>,
    pub name: MaybeUndefined<String>,
    pub lat: MaybeUndefined<f64>,
    pub lng: MaybeUndefined<f64>,
    pub elevation_m: MaybeUndefined<f64>,
}

impl UpdateStationInput {
    pub fn validate(self, path: &str) -> Result<StationChanges, ApiError> {
        fn required<T, U>(
            value: MaybeUndefined<T>,
            field: String,
            parse: impl FnOnce(T) -> Result<U, InvalidValue>,
        ) -> Result<Option<U>, ApiError> {
            match value {
                MaybeUndefined::Undefined => Ok(None),
                MaybeUndefined::Null => Err(ApiError::bad_input(
                    field,
                    "cannot be null; leave it out to keep the current value",
                )),
                MaybeUndefined::Value(value) => parse(value).map(Some).map_err(at(field)),
            }
        }

        let changes = StationChanges {
            code: required(self.code, format!("{path}.code"), StationCode::parse)?,
            name: required(self.name, format!("{path}.name"), StationName::parse)?,
            lat: required(self.lat, format!("{path}.lat"), Latitude::parse)?,
            lng: required(self.lng, format!("{path}.lng"), Longitude::parse)?,
            elevation_m: match self.elevation_m {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(metres) => Some(Some(
                    Elevation::parse(metres).map_err(at(format!("{path}.elevationM")))?,
                )),
            },
        };
        if changes.is_empty() {
            return Err(ApiError::bad_input(
                path,
                "must set at least one of code, name, lat, lng, elevationM",
            ));
        }
        Ok(changes)
    }
}
