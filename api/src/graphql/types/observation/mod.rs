//! `Observation`, the lists of them, their summary, and the inputs that record and filter them.

pub mod series;

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::cursor;
use super::page::{EarlierRows, PageInfo};
use super::station::list::BoundingBox;
use super::station::{Station, at, parse_station_id};
use crate::domain::{Measure, NewObservation, observed_at};
use crate::error::ApiError;
use crate::graphql::loaders::{OfStation, StationRow, load_one};
use crate::graphql::types::Filter;
use crate::service::observation::{
    MeasureStats, ObservationCriteria, ObservationPage, ObservationPosition, Summary, TimeOrder,
    TimeRange,
};

/// What one station measured at one instant. A measurement the station does not report is
/// null.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Observation {
    pub id: ID,
    pub observed_at: DateTime<Utc>,
    /// Air temperature in degrees Celsius.
    pub temperature_c: Option<f64>,
    /// Air pressure in hectopascals.
    pub pressure_hpa: Option<f64>,
    /// Relative humidity in percent.
    pub humidity_pct: Option<f64>,
    /// Precipitation since the station's previous observation, in millimetres.
    pub precipitation_mm: Option<f64>,
    #[graphql(skip)]
    pub station_id: i32,
    #[graphql(skip)]
    pub position: ObservationPosition,
}

#[ComplexObject]
impl Observation {
    /// The station that made this observation. The stations of a whole list are read in one
    /// statement.
    async fn station(&self, ctx: &Context<'_>) -> Result<Station> {
        match load_one(ctx, OfStation::new(self.station_id, StationRow)).await? {
            Some(row) => Ok(Station::from(row)),
            // The foreign key makes this impossible, short of a delete between two statements.
            None => Err(ApiError::NotFound {
                id: self.station_id.to_string(),
            }
            .into()),
        }
    }
}

impl From<entity::observation::Model> for Observation {
    fn from(row: entity::observation::Model) -> Self {
        let observed_at = row.observed_at.with_timezone(&Utc);
        Self {
            id: ID(row.id.to_string()),
            observed_at,
            temperature_c: row.temperature_c,
            pressure_hpa: row.pressure_hpa,
            humidity_pct: row.humidity_pct,
            precipitation_mm: row.precipitation_mm,
            station_id: row.station_id,
            position: ObservationPosition {
                observed_at,
                id: row.id,
            },
        }
    }
}

/// The order of a list of observations; ties (one instant, several stations) by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
pub enum ObservationOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

impl From<ObservationOrder> for TimeOrder {
    fn from(order: ObservationOrder) -> Self {
        match order {
            ObservationOrder::NewestFirst => Self::NewestFirst,
            ObservationOrder::OldestFirst => Self::OldestFirst,
        }
    }
}

/// A page of observations (<https://relay.dev/graphql/connections.htm>).
#[derive(SimpleObject)]
pub struct ObservationConnection {
    pub edges: Vec<ObservationEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct ObservationEdge {
    /// Pass as `after` to continue the list after this observation.
    pub cursor: String,
    pub node: Observation,
}

impl ObservationConnection {
    /// `page` as a connection; `station_ids` and `range` say what `hasPreviousPage` asks
    /// about when the page started `after` a cursor.
    pub fn new(
        page: ObservationPage,
        order: TimeOrder,
        after: Option<ObservationPosition>,
        station_ids: Option<Vec<i32>>,
        range: TimeRange,
    ) -> Self {
        let edges: Vec<ObservationEdge> = page
            .rows
            .into_iter()
            .map(|row| {
                let node = Observation::from(row);
                ObservationEdge {
                    cursor: cursor::encode_observation(node.position, order),
                    node,
                }
            })
            .collect();
        let earlier = after.map(|after| EarlierRows::Observations {
            station_ids,
            range,
            order,
            after,
        });
        let page_info = PageInfo::of(&edges, |edge| &edge.cursor, page.has_next_page, earlier);
        Self { edges, page_info }
    }
}

/// Counts and extremes of one measurement over a time range, computed in the database.
#[derive(Debug, Clone, SimpleObject)]
pub struct MeasureSummary {
    /// Observations that reported this measurement.
    pub count: i64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
}

/// What a station observed over a time range.
#[derive(Debug, Clone, SimpleObject)]
pub struct ObservationSummary {
    /// Observations in the range.
    pub count: i64,
    pub temperature_c: MeasureSummary,
    pub pressure_hpa: MeasureSummary,
    pub humidity_pct: MeasureSummary,
    pub precipitation_mm: MeasureSummary,
    /// All precipitation in the range, in millimetres; null without any report.
    pub precipitation_total_mm: Option<f64>,
}

impl From<Summary> for ObservationSummary {
    fn from(summary: Summary) -> Self {
        Self {
            count: summary.count,
            temperature_c: summary.temperature_c.into(),
            pressure_hpa: summary.pressure_hpa.into(),
            humidity_pct: summary.humidity_pct.into(),
            precipitation_mm: summary.precipitation_mm.into(),
            precipitation_total_mm: summary.precipitation_mm_total,
        }
    }
}

impl From<MeasureStats> for MeasureSummary {
    fn from(stats: MeasureStats) -> Self {
        let MeasureStats {
            count,
            min,
            max,
            avg,
        } = stats;
        Self {
            count,
            min,
            max,
            avg,
        }
    }
}

/// Checks a time range given as `since` (inclusive) and `until` (exclusive).
pub fn time_range(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    path: &str,
) -> Result<TimeRange, ApiError> {
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        return Err(ApiError::bad_input(
            format!("{path}since"),
            format!(
                "must be before until (got since {} and until {})",
                since.to_rfc3339(),
                until.to_rfc3339()
            ),
        ));
    }
    Ok(TimeRange { since, until })
}

/// Which observations the root `observations` list holds. Every criterion given must match.
#[derive(Debug, Clone, Default, InputObject)]
pub struct ObservationFilter {
    /// Observations of these stations only (at most 1000 ids).
    pub station_ids: Option<Vec<ID>>,
    /// Observed at this instant or later.
    pub since: Option<DateTime<Utc>>,
    /// Observed before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Observations of stations inside this box.
    pub bbox: Option<BoundingBox>,
}

/// The most station ids a filter may list.
const MAX_FILTER_STATIONS: usize = 1000;

impl Filter for ObservationFilter {
    type Criteria = ObservationCriteria;

    fn validate(self, path: &str) -> Result<ObservationCriteria, ApiError> {
        let station_ids = match self.station_ids {
            Some(ids) if ids.len() > MAX_FILTER_STATIONS => {
                return Err(ApiError::bad_input(
                    format!("{path}.stationIds"),
                    format!(
                        "must list at most {MAX_FILTER_STATIONS} stations (got {})",
                        ids.len()
                    ),
                ));
            }
            Some(ids) => Some(
                ids.iter()
                    .enumerate()
                    .map(|(index, id)| parse_station_id(id, &format!("{path}.stationIds[{index}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(ObservationCriteria {
            station_ids,
            range: time_range(self.since, self.until, &format!("{path}."))?,
            bbox: self
                .bbox
                .map(|bbox| bbox.validate(&format!("{path}.bbox")))
                .transpose()?,
        })
    }
}

/// One observation to record. At least one measurement is required.
#[derive(Debug, Clone, InputObject)]
pub struct ObservationInput {
    pub station_id: ID,
    /// When it was measured; not in the future (a few minutes of clock skew are allowed).
    pub observed_at: DateTime<Utc>,
    /// Air temperature in degrees Celsius, -90 to 60.
    pub temperature_c: Option<f64>,
    /// Air pressure in hectopascals, 300 to 1100.
    pub pressure_hpa: Option<f64>,
    /// Relative humidity in percent, 0 to 100.
    pub humidity_pct: Option<f64>,
    /// Precipitation since the previous observation in millimetres, 0 to 2000.
    pub precipitation_mm: Option<f64>,
}

impl ObservationInput {
    /// Validates every field; `path` prefixes field names in errors (`inputs[3]`).
    pub fn validate(self, path: &str, now: DateTime<Utc>) -> Result<NewObservation, ApiError> {
        let measured = |value: Option<f64>, measure: Measure, name: &str| {
            value
                .map(|value| measure.parse(value))
                .transpose()
                .map_err(at(format!("{path}.{name}")))
        };
        let observation = NewObservation {
            station_id: parse_station_id(&self.station_id, &format!("{path}.stationId"))?,
            observed_at: observed_at(self.observed_at, now)
                .map_err(at(format!("{path}.observedAt")))?,
            temperature_c: measured(self.temperature_c, Measure::TemperatureC, "temperatureC")?,
            pressure_hpa: measured(self.pressure_hpa, Measure::PressureHpa, "pressureHpa")?,
            humidity_pct: measured(self.humidity_pct, Measure::HumidityPct, "humidityPct")?,
            precipitation_mm: measured(
                self.precipitation_mm,
                Measure::PrecipitationMm,
                "precipitationMm",
            )?,
        };
        if observation.temperature_c.is_none()
            && observation.pressure_hpa.is_none()
            && observation.humidity_pct.is_none()
            && observation.precipitation_mm.is_none()
        {
            return Err(ApiError::bad_input(
                path,
                "must carry at least one of temperatureC, pressureHpa, humidityPct, \
                 precipitationMm",
            ));
        }
        Ok(observation)
    }
}

/// What `recordObservations` did.
#[derive(Debug, Clone, SimpleObject)]
pub struct RecordObservationsPayload {
    /// Observations stored by this call.
    pub inserted: u64,
    /// Observations already stored for the same station and instant (or given twice in this
    /// call): left as they were.
    pub duplicates: u64,
}
