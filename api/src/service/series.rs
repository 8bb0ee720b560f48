//! Observations as time series: per station (or over all of them together) and per time
//! bucket, how many observations there are and each measure's count, minimum, maximum,
//! average, and the precipitation total.
//!
//! A request is answered in two statements:
//! 1. the buckets' starts, computed by PostgreSQL in the requested zone (so that a day is 23
//!    or 25 hours long on a daylight-saving change, exactly as `date_trunc(unit, t, zone)` has
//!    it, and a week starts on Monday as ISO 8601 has it);
//! 2. the aggregates, each row placed in its bucket by `width_bucket` over those starts.
//!
//! The second statement reads the hourly rollup (`observations_hourly`, which PostgreSQL keeps
//! in the writing transaction) for every whole hour of the range when each bucket is made of
//! whole UTC hours: buckets of an hour or longer, in zones whose offsets are whole hours over
//! the range. The raw rows answer the rest: the partial hours at either end of the range,
//! 15-minute buckets, and zones such as Asia/Kolkata (+05:30).
//!
//! The first and last buckets may be partial: they start on their natural boundary (the
//! start of the day, in the zone) but count only observations from `since` to `until`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use tokio::sync::OnceCell;

use super::observation::MeasureStats;
use super::sql::Sql;
use crate::domain::Measure;

/// How long each bucket of a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketWidth {
    FifteenMinutes,
    Hour,
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    Month,
}

impl BucketWidth {
    /// The step from one bucket's start to the next, in the zone's wall-clock time.
    fn step(self) -> &'static str {
        match self {
            Self::FifteenMinutes => "15 minutes",
            Self::Hour => "1 hour",
            Self::Day => "1 day",
            Self::Week => "7 days",
            Self::Month => "1 month",
        }
    }

    /// The start of the bucket holding the instant `since` in the zone `zone` (placeholders).
    fn first_start(self, since: &str, zone: &str) -> String {
        let unit = match self {
            // Quarter hours are UTC's (the width takes no zone); `date_bin` would need
            // PostgreSQL 14.
            Self::FifteenMinutes => {
                return format!(
                    "to_timestamp(floor(extract(epoch FROM {since}::timestamptz) / 900) * 900)"
                );
            }
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        };
        format!("date_trunc('{unit}', {since}::timestamptz, {zone}::text)")
    }

    /// The shortest a bucket of this width can be: bounds the number of buckets of a range.
    pub fn shortest(self) -> Duration {
        match self {
            Self::FifteenMinutes => Duration::minutes(15),
            Self::Hour => Duration::hours(1),
            // A day on which clocks go forward.
            Self::Day => Duration::hours(23),
            Self::Week => Duration::hours(7 * 24 - 1),
            Self::Month => Duration::hours(28 * 24 - 1),
        }
    }

    /// Whether buckets of this width may be counted in a time zone other than UTC.
    pub fn takes_time_zone(self) -> bool {
        matches!(self, Self::Day | Self::Week | Self::Month)
    }
}

/// Whether a series lists its empty buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Gaps {
    /// Only buckets that hold observations.
    #[default]
    Omit,
    /// Every bucket of the range; an empty one has count 0 and null values.
    Null,
}

/// What series to compute. `since` and `until` are checked (`since < until`) by the caller.
#[derive(Debug, Clone)]
pub struct SeriesRequest {
    /// In the order the series are to be returned.
    pub station_ids: Vec<i32>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub width: BucketWidth,
    /// An IANA zone name that `TimeZones::check` accepted.
    pub zone: String,
    pub gaps: Gaps,
    /// One series for all the stations together, instead of one per station.
    pub combined: bool,
}

/// The aggregates of one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub count: i64,
    /// In the order of `Measure::ALL`.
    pub measures: [MeasureStats; 4],
    /// All precipitation in the bucket; null when no observation reported any.
    pub precipitation_total_mm: Option<f64>,
}

/// One station's series, or the combined series (`station_id` None).
#[derive(Debug, Clone, PartialEq)]
pub struct StationSeries {
    pub station_id: Option<i32>,
    pub points: Vec<Point>,
}

/// Where the aggregates were read from, for tests and `--explain`-style reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The hourly rollup, with raw rows for the partial hours at the ends.
    HourlyRollup,
    RawRows,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The start of every bucket of the range, the first one possibly before `since`.
    pub bucket_starts: Vec<DateTime<Utc>>,
    pub series: Vec<StationSeries>,
    pub source: Source,
}

/// The start of every bucket of `request`'s range, in order.
pub async fn bucket_starts(
    db: &impl ConnectionTrait,
    request: &SeriesRequest,
) -> Result<Vec<DateTime<Utc>>, DbErr> {
    let mut sql = Sql::new("");
    let since = sql.bind(request.since);
    let zone = sql.bind(request.zone.clone());
    let until = sql.bind(request.until);
    let step = sql.bind(request.width.step());
    // Wall-clock steps in the zone, each turned back into an instant: across a change of
    // clocks, a day bucket is 23 or 25 hours long.
    sql.text(&format!(
        "SELECT s FROM (
             SELECT l AT TIME ZONE {zone}::text AS s
             FROM generate_series(({first}) AT TIME ZONE {zone}::text,
                                  {until}::timestamptz AT TIME ZONE {zone}::text,
                                  {step}::interval) l) b
         WHERE s < {until}::timestamptz ORDER BY s",
        first = request.width.first_start(&since, &zone)
    ));
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter().map(|row| row.try_get("", "s")).collect()
}

/// Computes the series of `request`, whose buckets start at `bucket_starts`.
#[tracing::instrument(level = "debug", skip_all, fields(stations = request.station_ids.len()))]
pub async fn series(
    db: &impl ConnectionTrait,
    request: &SeriesRequest,
    bucket_starts: Vec<DateTime<Utc>>,
) -> Result<Series, DbErr> {
    let (rows, source) = if request.station_ids.is_empty() || bucket_starts.is_empty() {
        (Vec::new(), Source::RawRows)
    } else {
        aggregate(db, request, &bucket_starts).await?
    };
    let mut by_station: HashMap<Option<i32>, Vec<Point>> = HashMap::new();
    for row in &rows {
        let station_id: Option<i32> = if request.combined {
            None
        } else {
            Some(row.try_get("", "station_id")?)
        };
        let bucket: i32 = row.try_get("", "bucket")?;
        let mut point = read_point(row)?;
        point.start = bucket_starts[bucket as usize - 1];
        by_station.entry(station_id).or_default().push(point);
    }
    let keys: Vec<Option<i32>> = if request.combined {
        vec![None]
    } else {
        request.station_ids.iter().copied().map(Some).collect()
    };
    let series = keys
        .into_iter()
        .map(|station_id| {
            let points = by_station.remove(&station_id).unwrap_or_default();
            let points = match request.gaps {
                Gaps::Omit => points,
                Gaps::Null => with_empty_buckets(points, &bucket_starts),
            };
            StationSeries { station_id, points }
        })
        .collect();
    Ok(Series {
        bucket_starts,
        series,
        source,
    })
}

/// `points` (in bucket order) with an empty point for every bucket that has none.
fn with_empty_buckets(points: Vec<Point>, bucket_starts: &[DateTime<Utc>]) -> Vec<Point> {
    let mut points = points.into_iter().peekable();
    bucket_starts
        .iter()
        .map(
            |&start| match points.next_if(|point| point.start == start) {
                Some(point) => point,
                None => Point {
                    start,
                    ..Point::default()
                },
            },
        )
        .collect()
}

/// Whether every bucket boundary inside the range falls on a whole UTC hour, so that each
/// hour of the rollup lies in exactly one bucket.
fn whole_hours(width: BucketWidth, bucket_starts: &[DateTime<Utc>]) -> bool {
    width != BucketWidth::FifteenMinutes
        && bucket_starts
            .iter()
            .skip(1)
            .all(|start| start.timestamp().rem_euclid(3600) == 0)
}

/// The rows of the aggregate statement: `[station_id,] bucket, count`, and per measure
/// `<m>_count`, `<m>_sum`, `<m>_min`, `<m>_max`.
async fn aggregate(
    db: &impl ConnectionTrait,
    request: &SeriesRequest,
    bucket_starts: &[DateTime<Utc>],
) -> Result<(Vec<QueryResult>, Source), DbErr> {
    let hour = Duration::hours(1);
    // The rollup serves the whole hours of the range; raw rows the partial ones at its ends.
    let first_whole_hour = ceil_hour(request.since);
    let last_whole_hour = request.until.duration_trunc(hour).unwrap_or(request.until);
    let source = if whole_hours(request.width, bucket_starts) && first_whole_hour < last_whole_hour
    {
        Source::HourlyRollup
    } else {
        Source::RawRows
    };
    // The buckets' thresholds: the first starts at `since` (a partial bucket counts only what
    // is in the range), the last ends at `until`.
    let mut thresholds: Vec<DateTime<Utc>> = Vec::with_capacity(bucket_starts.len() + 1);
    thresholds.push(request.since);
    thresholds.extend(bucket_starts.iter().skip(1));
    thresholds.push(request.until);

    let station = if request.combined {
        ""
    } else {
        "p.station_id, "
    };
    let measures = Measure::ALL
        .map(|measure| {
            let m = measure.column();
            format!(
                "sum(p.{m}_count)::bigint AS {m}_count, sum(p.{m}_sum) AS {m}_sum, \
                 min(p.{m}_min) AS {m}_min, max(p.{m}_max) AS {m}_max"
            )
        })
        .join(", ");
    let mut sql = Sql::new("");
    sql.push(
        &format!(
            "SELECT {station}width_bucket(p.at, ?::timestamptz[]) AS bucket, \
             sum(p.count)::bigint AS count, {measures} FROM ("
        ),
        thresholds,
    );
    let ids = sql.bind(request.station_ids.clone());
    match source {
        Source::HourlyRollup => {
            let rollup_columns = Measure::ALL
                .map(|measure| {
                    let m = measure.column();
                    format!("h.{m}_count, h.{m}_sum, h.{m}_min, h.{m}_max")
                })
                .join(", ");
            sql.text(&format!(
                "SELECT h.station_id, h.hour AS at, h.count, {rollup_columns} \
                 FROM observations_hourly h WHERE h.station_id = ANY({ids}::integer[])"
            ));
            sql.push(" AND h.hour >= ?", first_whole_hour)
                .push(" AND h.hour < ?", last_whole_hour);
            sql.text(&format!(" UNION ALL {} AND (", raw_rows(&ids)));
            sql.push("(o.observed_at >= ?", request.since)
                .push(" AND o.observed_at < ?)", first_whole_hour)
                .push(" OR (o.observed_at >= ?", last_whole_hour)
                .push(" AND o.observed_at < ?))", request.until);
        }
        Source::RawRows => {
            sql.text(&raw_rows(&ids));
            sql.push(" AND o.observed_at >= ?", request.since)
                .push(" AND o.observed_at < ?", request.until);
        }
    }
    let group = if request.combined {
        "bucket"
    } else {
        "p.station_id, bucket"
    };
    sql.text(&format!(") p GROUP BY {group} ORDER BY {group}"));
    Ok((db.query_all_raw(sql.build()).await?, source))
}

/// The raw observations of the stations bound at `ids`, shaped like rows of the rollup; the
/// caller appends the time condition.
fn raw_rows(ids: &str) -> String {
    let columns = Measure::ALL
        .map(|measure| {
            let m = measure.column();
            format!(
                "(o.{m} IS NOT NULL)::integer AS {m}_count, coalesce(o.{m}, 0) AS {m}_sum, \
                 o.{m} AS {m}_min, o.{m} AS {m}_max"
            )
        })
        .join(", ");
    format!(
        "SELECT o.station_id, o.observed_at AS at, 1 AS count, {columns} \
         FROM observations o WHERE o.station_id = ANY({ids}::integer[])"
    )
}

fn ceil_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let hour = Duration::hours(1);
    match at.duration_trunc(hour) {
        Ok(start) if start == at => at,
        Ok(start) => start + hour,
        Err(_) => at,
    }
}

fn read_point(row: &QueryResult) -> Result<Point, DbErr> {
    let mut measures: [MeasureStats; 4] = Default::default();
    let mut precipitation_total_mm = None;
    for (stats, measure) in measures.iter_mut().zip(Measure::ALL) {
        let m = measure.column();
        let count: i64 = row.try_get("", &format!("{m}_count"))?;
        let sum: Option<f64> = row.try_get("", &format!("{m}_sum"))?;
        let sum = sum.filter(|_| count > 0);
        *stats = MeasureStats {
            count,
            min: row.try_get("", &format!("{m}_min"))?,
            max: row.try_get("", &format!("{m}_max"))?,
            avg: sum.map(|sum| sum / count as f64),
        };
        if measure == Measure::PrecipitationMm {
            precipitation_total_mm = sum;
        }
    }
    Ok(Point {
        start: DateTime::<Utc>::MIN_UTC,
        count: row.try_get("", "count")?,
        measures,
        precipitation_total_mm,
    })
}

/// The IANA time zones PostgreSQL knows, read once: `pg_timezone_names` reads every zone file,
/// too slow to ask on each request, and the list changes only with the server's tz data.
pub struct TimeZones;

static ZONE_NAMES: OnceCell<HashSet<String>> = OnceCell::const_new();

impl TimeZones {
    /// Whether `name` is a time zone of the IANA database as PostgreSQL has it. Abbreviations
    /// (`PST`) and POSIX rules (`UTC+3`), which PostgreSQL also accepts, name no zone.
    pub async fn knows(db: &impl ConnectionTrait, name: &str) -> Result<bool, DbErr> {
        let names = ZONE_NAMES
            .get_or_try_init(|| async {
                let rows = db
                    .query_all_raw(Sql::new("SELECT name FROM pg_timezone_names").build())
                    .await?;
                rows.iter()
                    .map(|row| row.try_get::<String>("", "name"))
                    .collect::<Result<HashSet<_>, _>>()
            })
            .await?;
        Ok(names.contains(name))
    }
}
