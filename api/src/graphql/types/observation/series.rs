//! `observationSeries`: aggregates per station and time bucket, in columns (one list per
//! aggregate, one value per bucket) that a chart library takes as they are.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, OneofObject, Result, SimpleObject};
use chrono::{DateTime, Utc};

use sea_orm::ConnectionTrait;

use super::time_range;
use crate::domain::Measure;
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::loaders::{OfStation, StationRow, load_one};
use crate::graphql::types::Filter;
use crate::graphql::types::column::Column;
use crate::graphql::types::station::list::StationFilter;
use crate::graphql::types::station::{Station, parse_station_id};
use crate::service::series::{BucketWidth, Gaps, Point, StationSeries};
use crate::service::station;

/// Which stations a series covers: exactly one of the three.
#[derive(Debug, Clone, OneofObject)]
pub enum StationSelection {
    /// These stations, in this order.
    Ids(Vec<ID>),
    /// The stations with these codes, in this order.
    Codes(Vec<String>),
    /// Every station the filter matches, in id order.
    Filter(StationFilter),
}

impl StationSelection {
    /// How many stations the static cost assumes: a filter's count is known only when it
    /// runs (then `graphql.max_series_points` bounds it).
    pub fn estimated_count(&self) -> usize {
        match self {
            Self::Ids(ids) => ids.len(),
            Self::Codes(codes) => codes.len(),
            Self::Filter(_) => 100,
        }
    }
}

/// How long each bucket of a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SeriesBucket {
    FifteenMinutes,
    Hour,
    Day,
    /// An ISO 8601 week: Monday to Sunday.
    Week,
    Month,
}

impl From<SeriesBucket> for BucketWidth {
    fn from(bucket: SeriesBucket) -> Self {
        match bucket {
            SeriesBucket::FifteenMinutes => Self::FifteenMinutes,
            SeriesBucket::Hour => Self::Hour,
            SeriesBucket::Day => Self::Day,
            SeriesBucket::Week => Self::Week,
            SeriesBucket::Month => Self::Month,
        }
    }
}

/// What a series does with buckets that hold no observation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
pub enum EmptyBuckets {
    /// Leave them out: `bucketStarts` says which buckets each series has.
    #[default]
    Omit,
    /// List every bucket of the range; an empty one has count 0 and null values, which a
    /// chart draws as a gap.
    Nulls,
}

impl From<EmptyBuckets> for Gaps {
    fn from(empty: EmptyBuckets) -> Self {
        match empty {
            EmptyBuckets::Omit => Self::Omit,
            EmptyBuckets::Nulls => Self::Null,
        }
    }
}

/// The answer of `observationSeries`.
#[derive(SimpleObject)]
pub struct ObservationSeries {
    pub bucket: SeriesBucket,
    /// The IANA zone whose calendar the buckets follow.
    pub time_zone: String,
    /// The start of every bucket of the range, empty or not; the first may be before `since`
    /// (its bucket then counts only what is observed from `since` on).
    pub bucket_starts: Column<DateTime<Utc>>,
    /// One per station, in the order asked; or one for all of them with `combine: true`.
    pub series: Vec<ObservationSeriesOfStation>,
}

pub struct ObservationSeriesOfStation {
    pub station_id: Option<i32>,
    pub points: Arc<Vec<Point>>,
}

/// One station's series (or all stations' together): each list holds one value per bucket,
/// in the order of `bucketStarts`.
#[Object(name = "StationSeries")]
impl ObservationSeriesOfStation {
    /// The station; null for the combined series of several.
    async fn station(&self, ctx: &Context<'_>) -> Result<Option<Station>> {
        let Some(id) = self.station_id else {
            return Ok(None);
        };
        Ok(load_one(ctx, OfStation::new(id, StationRow))
            .await?
            .map(Station::from))
    }

    /// When each of this series' buckets starts.
    async fn bucket_starts(&self) -> Column<DateTime<Utc>> {
        self.points.iter().map(|point| point.start).collect()
    }

    /// Observations in each bucket.
    async fn count(&self) -> Column<i64> {
        self.points.iter().map(|point| point.count).collect()
    }

    /// Air temperature in degrees Celsius.
    async fn temperature_c(&self) -> MeasureSeries {
        self.measure(Measure::TemperatureC)
    }

    /// Air pressure in hectopascals.
    async fn pressure_hpa(&self) -> MeasureSeries {
        self.measure(Measure::PressureHpa)
    }

    /// Relative humidity in percent.
    async fn humidity_pct(&self) -> MeasureSeries {
        self.measure(Measure::HumidityPct)
    }

    /// Precipitation per observation, in millimetres.
    async fn precipitation_mm(&self) -> MeasureSeries {
        self.measure(Measure::PrecipitationMm)
    }

    /// All precipitation in each bucket, in millimetres; null where none was reported.
    async fn precipitation_total_mm(&self) -> Column<Option<f64>> {
        self.points
            .iter()
            .map(|point| point.precipitation_total_mm)
            .collect()
    }
}

impl ObservationSeriesOfStation {
    fn measure(&self, measure: Measure) -> MeasureSeries {
        MeasureSeries {
            points: Arc::clone(&self.points),
            index: measure.index(),
        }
    }
}

impl From<StationSeries> for ObservationSeriesOfStation {
    fn from(series: StationSeries) -> Self {
        Self {
            station_id: series.station_id,
            points: Arc::new(series.points),
        }
    }
}

pub struct MeasureSeries {
    points: Arc<Vec<Point>>,
    index: usize,
}

/// One measure's aggregates, a value per bucket; null where no observation reported it.
#[Object]
impl MeasureSeries {
    /// Observations that reported it.
    async fn count(&self) -> Column<i64> {
        self.column(|point| point.measures[self.index].count)
    }

    async fn min(&self) -> Column<Option<f64>> {
        self.column(|point| point.measures[self.index].min)
    }

    async fn max(&self) -> Column<Option<f64>> {
        self.column(|point| point.measures[self.index].max)
    }

    async fn avg(&self) -> Column<Option<f64>> {
        self.column(|point| point.measures[self.index].avg)
    }
}

impl MeasureSeries {
    fn column<T>(&self, value: impl Fn(&Point) -> T) -> Column<T> {
        self.points.iter().map(value).collect()
    }
}

/// How many values of a series' columns cost as much as one field, for
/// `graphql.max_complexity`. A value is written straight into the response (`Column`), a
/// field is resolved with its path and errors; measured with `bench/run` (a week of 100
/// stations' hours against `stations(first: 50)`), a value costs about a third of a field in
/// CPU. The weight is set lower on purpose, so that the default budget admits the series a
/// chart asks for (16,800 points, five columns), and `graphql.max_series_points` bounds the
/// size of any one series.
const VALUES_PER_COST: usize = 100;

/// The cost `graphql.max_complexity` counts for `observationSeries`: its estimated points
/// (stations × the most buckets the range can hold) times what each point selects
/// (`child_complexity`), in units of `VALUES_PER_COST`.
pub fn series_complexity(
    stations: &StationSelection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket: SeriesBucket,
    combine: bool,
    child_complexity: usize,
) -> usize {
    let shortest = BucketWidth::from(bucket).shortest().num_seconds().max(1);
    let buckets = ((until - since).num_seconds().max(0) / shortest + 2) as usize;
    let stations = if combine {
        1
    } else {
        stations.estimated_count().max(1)
    };
    let values = stations
        .saturating_mul(buckets)
        .saturating_mul(child_complexity.max(1));
    1 + values.div_ceil(VALUES_PER_COST)
}

impl StationSelection {
    /// The ids of the selected stations, in the order of the series; at most
    /// `limits.max_series_stations` of them. `path` names the argument in errors.
    pub async fn resolve(
        self,
        db: &impl ConnectionTrait,
        limits: &Limits,
        path: &str,
    ) -> Result<Vec<i32>, ApiError> {
        let max = limits.max_series_stations;
        let too_many = |field: String, count: String| {
            ApiError::bad_input(
                field,
                format!(
                    "must select at most {max} stations (got {count}; \
                     graphql.max_series_stations): narrow the selection or send several requests"
                ),
            )
        };
        match self {
            Self::Ids(ids) => {
                if ids.len() > max {
                    return Err(too_many(format!("{path}.ids"), ids.len().to_string()));
                }
                let ids = ids
                    .iter()
                    .enumerate()
                    .map(|(index, id)| parse_station_id(id, &format!("{path}.ids[{index}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let found: HashSet<i32> = station::ids_and_codes(db, &ids, &[])
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                if let Some((index, id)) =
                    ids.iter().enumerate().find(|(_, id)| !found.contains(id))
                {
                    return Err(ApiError::bad_input(
                        format!("{path}.ids[{index}]"),
                        format!("no station has id {id}"),
                    ));
                }
                Ok(ids)
            }
            Self::Codes(codes) => {
                if codes.len() > max {
                    return Err(too_many(format!("{path}.codes"), codes.len().to_string()));
                }
                let found: HashMap<String, i32> = station::ids_and_codes(db, &[], &codes)
                    .await?
                    .into_iter()
                    .map(|(id, code)| (code, id))
                    .collect();
                codes
                    .iter()
                    .enumerate()
                    .map(|(index, code)| {
                        found.get(code).copied().ok_or_else(|| {
                            ApiError::bad_input(
                                format!("{path}.codes[{index}]"),
                                format!("no station has code {code:?}"),
                            )
                        })
                    })
                    .collect()
            }
            Self::Filter(filter) => {
                let path = format!("{path}.filter");
                let criteria = filter.validate(&path)?;
                let ids = station::matching_ids(db, &criteria, max as u64 + 1).await?;
                if ids.len() > max {
                    return Err(too_many(path, format!("more than {max}")));
                }
                Ok(ids)
            }
        }
    }
}

/// Checks the arguments of `observationSeries` that need no database: the range, and the
/// time zone's use with the bucket.
pub fn check_range_and_zone(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket: SeriesBucket,
    time_zone: &str,
) -> Result<(), ApiError> {
    time_range(Some(since), Some(until), "")?;
    if !BucketWidth::from(bucket).takes_time_zone() && time_zone != "UTC" {
        return Err(ApiError::bad_input(
            "timeZone",
            format!(
                "must be UTC (or left out) for {} buckets (got {time_zone:?}): only DAY, WEEK and \
                 MONTH buckets follow a zone's calendar",
                match bucket {
                    SeriesBucket::FifteenMinutes => "FIFTEEN_MINUTES",
                    _ => "HOUR",
                }
            ),
        ));
    }
    Ok(())
}

/// Refuses a series of more points than `graphql.max_series_points`.
pub fn check_points(
    stations: usize,
    buckets: usize,
    combine: bool,
    limits: &Limits,
) -> Result<(), ApiError> {
    let points = if combine { buckets } else { stations * buckets };
    if points <= limits.max_series_points {
        return Ok(());
    }
    Err(ApiError::bad_input(
        "until",
        format!(
            "the series would hold {points} points ({stations} stations × {buckets} buckets{}), \
             more than {} (graphql.max_series_points): shorten the range, take a longer bucket, \
             select fewer stations, or combine them",
            if combine { ", combined" } else { "" },
            limits.max_series_points
        ),
    ))
}
