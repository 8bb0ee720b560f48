//! Every statement the API runs against `observations`.
//!
//! Reads that serve many stations at once take the stations' ids as one array and answer for
//! all of them in one statement: `unnest` the ids and, per id, a `LATERAL` subquery that the
//! `(station_id, observed_at)` index answers with a short range scan. This is what the GraphQL
//! layer's batch loaders call, one statement per level of a query whatever the page size.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::observation;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, QueryResult};

use super::page::Page;
use super::sql::Sql;
use crate::database;
use crate::domain::{Measure, NewObservation};
use crate::service::station::BoundingBox;

/// The columns of an observation, as `observation::Model` reads them.
const COLUMNS: &str = "o.id, o.station_id, o.observed_at, o.temperature_c, o.pressure_hpa, \
                       o.humidity_pct, o.precipitation_mm, o.created_at";

/// Which way a list of observations runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TimeOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// A position in a list of observations: the instant and id of the last one seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObservationPosition {
    pub observed_at: DateTime<Utc>,
    pub id: i64,
}

/// Which part of a time series to read: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One page of a station's observations, as `Station.observations` asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub range: TimeRange,
    pub order: TimeOrder,
    pub after: Option<ObservationPosition>,
    pub first: u64,
}

/// A page of observations.
pub type ObservationPage = Page<observation::Model>;

/// Which observations the root `observations` list holds. Every present criterion must match.
#[derive(Debug, Clone, Default)]
pub struct ObservationCriteria {
    pub station_ids: Option<Vec<i32>>,
    pub range: TimeRange,
    /// Stations inside this box (their position, not the observation's).
    pub bbox: Option<BoundingBox>,
}

/// Counts and extremes of a station's observations in a time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub count: i64,
    pub temperature_c: MeasureStats,
    pub pressure_hpa: MeasureStats,
    pub humidity_pct: MeasureStats,
    pub precipitation_mm: MeasureStats,
    pub precipitation_mm_total: Option<f64>,
}

/// Counts and extremes of one measure: `count` observations reported it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasureStats {
    pub count: i64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
}

impl MeasureStats {
    /// `count(m) AS m_count, min(m) AS m_min, …` of the `measure` column of `table`.
    fn select(table: &str, measure: &str) -> String {
        ["count", "min", "max", "avg"]
            .map(|aggregate| format!("{aggregate}({table}.{measure}) AS {measure}_{aggregate}"))
            .join(", ")
    }

    fn read(row: &QueryResult, measure: &str) -> Result<Self, DbErr> {
        let column = |aggregate: &str| format!("{measure}_{aggregate}");
        Ok(Self {
            count: row.try_get("", &column("count"))?,
            min: row.try_get("", &column("min"))?,
            max: row.try_get("", &column("max"))?,
            avg: row.try_get("", &column("avg"))?,
        })
    }
}

impl Summary {
    fn read(row: &QueryResult) -> Result<Self, DbErr> {
        Ok(Self {
            count: row.try_get("", "count")?,
            temperature_c: MeasureStats::read(row, "temperature_c")?,
            pressure_hpa: MeasureStats::read(row, "pressure_hpa")?,
            humidity_pct: MeasureStats::read(row, "humidity_pct")?,
            precipitation_mm: MeasureStats::read(row, "precipitation_mm")?,
            precipitation_mm_total: row.try_get("", "precipitation_mm_total")?,
        })
    }
}

/// What `record` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub inserted: u64,
    /// Already stored for the same station and instant (or given twice): not stored again.
    pub duplicates: u64,
}

/// Why observations were not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The observation at this index names a station that does not exist.
    #[error("no station has id {station_id}")]
    UnknownStation { index: usize, station_id: i32 },
    #[error(transparent)]
    Database(#[from] DbErr),
}

fn push_range(sql: &mut Sql, range: TimeRange) {
    if let Some(since) = range.since {
        sql.push(" AND o.observed_at >= ?", since);
    }
    if let Some(until) = range.until {
        sql.push(" AND o.observed_at < ?", until);
    }
}

/// `(observed_at, id)` beyond `after` in `order`, and the ordering itself.
fn push_keyset(sql: &mut Sql, order: TimeOrder, after: Option<ObservationPosition>) {
    let (comparison, direction) = match order {
        TimeOrder::NewestFirst => ("<", "DESC"),
        TimeOrder::OldestFirst => (">", "ASC"),
    };
    if let Some(after) = after {
        sql.push(
            &format!(" AND (o.observed_at, o.id) {comparison} (?"),
            after.observed_at,
        )
        .push(", ?)", after.id);
    }
    sql.text(&format!(
        " ORDER BY o.observed_at {direction}, o.id {direction}"
    ));
}

/// The latest observation of each station in `station_ids` that has any.
#[tracing::instrument(level = "debug", skip(db, station_ids), fields(stations = station_ids.len()))]
pub async fn latest(
    db: &impl ConnectionTrait,
    station_ids: Vec<i32>,
) -> Result<Vec<observation::Model>, DbErr> {
    let mut sql = Sql::new("");
    sql.push(
        &format!(
            "SELECT {COLUMNS} FROM unnest(?::integer[]) AS s(id)
             CROSS JOIN LATERAL (
                 SELECT * FROM observations o WHERE o.station_id = s.id
                 ORDER BY o.observed_at DESC LIMIT 1) o"
        ),
        station_ids,
    );
    observation::Model::find_by_statement(sql.build())
        .all(db)
        .await
}

/// One page of observations for each station in `station_ids`, all in one statement.
#[tracing::instrument(level = "debug", skip(db, station_ids), fields(stations = station_ids.len()))]
pub async fn pages(
    db: &impl ConnectionTrait,
    station_ids: Vec<i32>,
    window: Window,
) -> Result<HashMap<i32, ObservationPage>, DbErr> {
    let mut sql = Sql::new("");
    sql.push(
        &format!(
            "SELECT {COLUMNS} FROM unnest(?::integer[]) AS s(id)
             CROSS JOIN LATERAL (SELECT * FROM observations o WHERE o.station_id = s.id"
        ),
        station_ids,
    );
    push_range(&mut sql, window.range);
    push_keyset(&mut sql, window.order, window.after);
    // One row more than asked tells whether another page follows.
    sql.push(" LIMIT ?) o", (window.first + 1) as i64);
    let rows = observation::Model::find_by_statement(sql.build())
        .all(db)
        .await?;
    let mut pages: HashMap<i32, ObservationPage> = HashMap::new();
    for row in rows {
        pages
            .entry(row.station_id)
            .or_default()
            .push_one_extra(row, window.first);
    }
    Ok(pages)
}

/// The root list: observations matching `criteria`, a page at a time.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn page(
    db: &impl ConnectionTrait,
    criteria: &ObservationCriteria,
    order: TimeOrder,
    after: Option<ObservationPosition>,
    first: u64,
) -> Result<ObservationPage, DbErr> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM observations o"));
    if let Some(bbox) = criteria.bbox {
        sql.text(" JOIN stations s ON s.id = o.station_id");
        let (south, north) = (bbox.min_lat.degrees(), bbox.max_lat.degrees());
        let (west, east) = (bbox.min_lng.degrees(), bbox.max_lng.degrees());
        sql.push(" AND s.lat BETWEEN ?", south)
            .push(" AND ?", north);
        if west <= east {
            sql.push(" AND s.lng BETWEEN ?", west).push(" AND ?", east);
        } else {
            // Across the antimeridian.
            sql.push(" AND (s.lng >= ?", west)
                .push(" OR s.lng <= ?)", east);
        }
    }
    sql.text(" WHERE true");
    if let Some(ids) = &criteria.station_ids {
        sql.push(" AND o.station_id = ANY(?::integer[])", ids.clone());
    }
    push_range(&mut sql, criteria.range);
    push_keyset(&mut sql, order, after);
    sql.push(" LIMIT ?", (first + 1) as i64);
    let rows = observation::Model::find_by_statement(sql.build())
        .all(db)
        .await?;
    Ok(Page::from_one_extra(rows, first))
}

/// Whether any observation matching `criteria` stands at `position` or before it in `order`:
/// `hasPreviousPage` of a page that starts after `position`.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn any_up_to(
    db: &impl ConnectionTrait,
    station_ids: Option<&[i32]>,
    range: TimeRange,
    order: TimeOrder,
    position: ObservationPosition,
) -> Result<bool, DbErr> {
    let comparison = match order {
        TimeOrder::NewestFirst => ">=",
        TimeOrder::OldestFirst => "<=",
    };
    let mut sql = Sql::new("SELECT EXISTS (SELECT 1 FROM observations o WHERE true");
    if let Some(ids) = station_ids {
        sql.push(" AND o.station_id = ANY(?::integer[])", ids.to_vec());
    }
    push_range(&mut sql, range);
    sql.push(
        &format!(" AND (o.observed_at, o.id) {comparison} (?"),
        position.observed_at,
    )
    .push(", ?)) AS found", position.id);
    let row = db.query_one_raw(sql.build()).await?;
    row.map_or(Ok(false), |row| row.try_get("", "found"))
}

/// Counts and extremes of the observations of each station in `station_ids` within `range`;
/// stations without any get zero counts.
#[tracing::instrument(level = "debug", skip(db, station_ids), fields(stations = station_ids.len()))]
pub async fn summaries(
    db: &impl ConnectionTrait,
    station_ids: Vec<i32>,
    range: TimeRange,
) -> Result<HashMap<i32, Summary>, DbErr> {
    let measures = Measure::ALL.map(|measure| MeasureStats::select("o", measure.column()));
    let mut sql = Sql::new("");
    sql.push(
        &format!(
            "SELECT s.id AS station_id, count(o.id) AS count, {},
                    sum(o.precipitation_mm) AS precipitation_mm_total
             FROM unnest(?::integer[]) AS s(id)
             LEFT JOIN observations o ON o.station_id = s.id",
            measures.join(", ")
        ),
        station_ids,
    );
    push_range(&mut sql, range);
    sql.text(" GROUP BY s.id");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| Ok((row.try_get::<i32>("", "station_id")?, Summary::read(row)?)))
        .collect()
}

/// How many observations a station has.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn count_for_station(db: &impl ConnectionTrait, station_id: i32) -> Result<i64, DbErr> {
    let mut sql = Sql::new("");
    sql.push(
        "SELECT count(*) AS count FROM observations o WHERE o.station_id = ?",
        station_id,
    );
    let row = db.query_one_raw(sql.build()).await?;
    row.map_or(Ok(0), |row| row.try_get("", "count"))
}

/// Stores every observation not stored yet, in one statement: all of them or, on any error,
/// none. An observation whose station already has one at the same instant is counted as a
/// duplicate and left as it is.
#[tracing::instrument(level = "debug", skip(db, observations), fields(count = observations.len()))]
pub async fn record(
    db: &impl ConnectionTrait,
    observations: &[NewObservation],
) -> Result<Recorded, RecordError> {
    if observations.is_empty() {
        return Ok(Recorded {
            inserted: 0,
            duplicates: 0,
        });
    }
    // The rows travel as one JSON array: one statement text whatever their number, so it is
    // prepared once, with NULLs where a measurement is missing.
    let rows: Vec<serde_json::Value> = observations
        .iter()
        .map(|observation| {
            serde_json::json!({
                "station_id": observation.station_id,
                "observed_at": observation.observed_at.to_rfc3339(),
                "temperature_c": observation.temperature_c,
                "pressure_hpa": observation.pressure_hpa,
                "humidity_pct": observation.humidity_pct,
                "precipitation_mm": observation.precipitation_mm,
            })
        })
        .collect();
    let mut sql = Sql::new("");
    sql.push(
        "WITH written AS (
             INSERT INTO observations
                 (station_id, observed_at, temperature_c, pressure_hpa, humidity_pct,
                  precipitation_mm)
             SELECT station_id, observed_at, temperature_c, pressure_hpa, humidity_pct,
                    precipitation_mm
             FROM jsonb_to_recordset(?::text::jsonb) AS r(
                 station_id integer, observed_at timestamptz, temperature_c double precision,
                 pressure_hpa double precision, humidity_pct double precision,
                 precipitation_mm double precision)
             ON CONFLICT (station_id, observed_at) DO NOTHING
             RETURNING 1)
         SELECT count(*) AS inserted FROM written",
        serde_json::Value::Array(rows).to_string(),
    );
    match db.query_one_raw(sql.build()).await {
        Ok(row) => {
            let inserted: i64 = row.map_or(Ok(0), |row| row.try_get("", "inserted"))?;
            Ok(Recorded {
                inserted: inserted as u64,
                duplicates: observations.len() as u64 - inserted as u64,
            })
        }
        Err(error)
            if database::violated_constraint(&error) == Some("observations_station_id_fkey") =>
        {
            // Nothing was written. Name the first observation whose station is missing.
            let ids: Vec<i32> = observations.iter().map(|o| o.station_id).collect();
            let mut sql = Sql::new("");
            sql.push(
                "SELECT id FROM stations WHERE id = ANY(?::integer[])",
                ids.clone(),
            );
            let existing: Vec<i32> = db
                .query_all_raw(sql.build())
                .await?
                .iter()
                .map(|row| row.try_get("", "id"))
                .collect::<Result<_, _>>()?;
            let missing = ids
                .iter()
                .enumerate()
                .find(|(_, id)| !existing.contains(id));
            match missing {
                Some((index, station_id)) => Err(RecordError::UnknownStation {
                    index,
                    station_id: *station_id,
                }),
                // The station existed when we looked: it was deleted while we wrote.
                None => Err(RecordError::Database(error)),
            }
        }
        Err(error) => Err(RecordError::Database(error)),
    }
}
