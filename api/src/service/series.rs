//! Observations as time series: per station (or over all of them together) and per time
//! bucket, how many observations there are and each measure's count, minimum, maximum,
//! average, and the precipitation total.
//!
//! A request is answered in two statements:
//! 1. the buckets' starts, computed by PostgreSQL in the requested zone (so that a day is 23
//!    or 25 hours long on a daylight-saving change, exactly as `date_trunc(unit, t, zone)` has
//!    it, and a week starts on Monday as ISO 8601 has it);
//! 2. the aggregates the operation selects, and no others, each row placed in its bucket by
//!    `width_bucket` over those starts; hour buckets of single stations are the rollup's own
//!    rows, placed by their hour. A column costs PostgreSQL and the server on every row: a week
//!    of 100 stations' hours is 16,800 rows.
//!
//! The second statement reads the hourly rollup (`observations_hourly`) for every whole hour
//! of the range when each bucket is made of whole UTC hours: buckets of an hour or longer, in
//! zones whose offsets are whole hours over the range. The raw rows answer the rest: the
//! partial hours at either end of the range, 15-minute buckets, zones such as Asia/Kolkata
//! (+05:30), and the hours that writes noted and the rollup's refresh has not counted yet
//! (`service::rollup`), so that a series is exact from the moment a write commits.
//!
//! The first and last buckets may be partial: they start on their natural boundary (the
//! start of the day, in the zone) but count only observations from `since` to `until`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Statement};
use tokio::sync::OnceCell;

use super::observation::MeasureStats;
use super::sql::Sql;
use crate::database::standbys::ReadConnection;
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
    /// The measures to aggregate, in the order of `Measure::ALL`, each with the aggregates to
    /// compute; the others stay empty.
    pub measures: Vec<MeasureAggregates>,
}

/// One measure of a series and which of its aggregates to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasureAggregates {
    pub measure: Measure,
    pub count: bool,
    pub min: bool,
    pub max: bool,
    pub avg: bool,
    /// The sum, null where no observation reported the measure: precipitation's total.
    pub total: bool,
}

impl MeasureAggregates {
    /// Whether any of the measure's aggregates is asked for.
    pub fn is_wanted(&self) -> bool {
        self.wanted().next().is_some()
    }
}

/// The aggregates of one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub count: i64,
    /// Indexed by `Measure::index`.
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

/// Where the aggregates are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The hourly rollup, with raw rows for the partial hours at the ends.
    HourlyRollup,
    RawRows,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The start of every bucket of the range, the first one possibly before `since`.
    pub bucket_starts: Vec<DateTime<Utc>>,
    pub series: Vec<StationSeries>,
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
    db: &ReadConnection,
    request: &SeriesRequest,
    bucket_starts: Vec<DateTime<Utc>>,
) -> Result<Series, DbErr> {
    let plan = Plan::of(request, &bucket_starts);
    let series_count = if request.combined {
        1
    } else {
        request.station_ids.len()
    };
    let position: HashMap<i32, usize> = request
        .station_ids
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index))
        .collect();
    // Every bucket of every series, filled in place as rows come, in whatever order: a point
    // is a few hundred bytes and a chart has thousands of them, so none is moved or copied.
    let empty = || -> Vec<Vec<Point>> {
        let empty_series: Vec<Point> = bucket_starts
            .iter()
            .map(|&start| Point {
                start,
                ..Point::default()
            })
            .collect();
        vec![empty_series; series_count]
    };
    let points = if request.station_ids.is_empty() || bucket_starts.is_empty() {
        empty()
    } else {
        let fill = |points: &mut Vec<Vec<Point>>, row: &QueryResult| {
            let row = postgres_row(row)?;
            let series = if request.combined {
                0
            } else {
                position[&decoded::<i32>(row, 0)?]
            };
            let bucket = match plan.rows {
                RowsAre::Buckets => decoded::<i32>(row, 1)? as usize - 1,
                RowsAre::Hours => {
                    let hour: DateTime<Utc> = decoded(row, 1)?;
                    bucket_starts.partition_point(|start| *start <= hour) - 1
                }
            };
            read_point(row, &request.measures, &mut points[series][bucket])
        };
        db.fold_rows(plan.statement(request, &bucket_starts), empty, fill)
            .await?
    };
    let series = points
        .into_iter()
        .enumerate()
        .map(|(index, mut points)| {
            // A bucket without observations has no row, so its count stayed 0.
            if request.gaps == Gaps::Omit {
                points.retain(|point| point.count > 0);
            }
            StationSeries {
                station_id: (!request.combined).then(|| request.station_ids[index]),
                points,
            }
        })
        .collect();
    Ok(Series {
        bucket_starts,
        series,
    })
}

/// What a row of the statement stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowsAre {
    /// Column 1 is the bucket's number, from 1.
    Buckets,
    /// Column 1 is the start of a UTC hour, which lies in one bucket.
    Hours,
}

/// How a request is answered.
struct Plan {
    source: Source,
    rows: RowsAre,
    /// The first whole UTC hour of the range, and the end of its last.
    whole_hours: (DateTime<Utc>, DateTime<Utc>),
}

impl Plan {
    fn of(request: &SeriesRequest, bucket_starts: &[DateTime<Utc>]) -> Self {
        let hour = Duration::hours(1);
        let first_whole_hour = ceil_hour(request.since);
        let last_whole_hour = request.until.duration_trunc(hour).unwrap_or(request.until);
        // The rollup serves when every hour of it lies in one bucket: every boundary inside
        // the range is a whole UTC hour.
        let rollup = request.width != BucketWidth::FifteenMinutes
            && first_whole_hour < last_whole_hour
            && bucket_starts
                .iter()
                .skip(1)
                .all(|start| start.timestamp().rem_euclid(3600) == 0);
        let source = if rollup {
            Source::HourlyRollup
        } else {
            Source::RawRows
        };
        // Hour buckets of one station each are the rollup's rows themselves: nothing to group.
        let rows = if rollup && request.width == BucketWidth::Hour && !request.combined {
            RowsAre::Hours
        } else {
            RowsAre::Buckets
        };
        Self {
            source,
            rows,
            whole_hours: (first_whole_hour, last_whole_hour),
        }
    }

    /// The statement: columns `station_id` (or NULL when combined), the bucket's number or
    /// hour, `count`, then the aggregates each measure asks for (`MeasureAggregates::wanted`).
    fn statement(&self, request: &SeriesRequest, bucket_starts: &[DateTime<Utc>]) -> Statement {
        let (first_whole_hour, last_whole_hour) = self.whole_hours;
        let measures = &request.measures;
        let mut sql = Sql::new("");
        let ids = sql.bind(request.station_ids.clone());
        let since = sql.bind(request.since);
        let until = sql.bind(request.until);
        let (first_hour, last_hour) = (sql.bind(first_whole_hour), sql.bind(last_whole_hour));
        // Raw rows in the partial hours at both ends of the range (empty ranges when the
        // range starts and ends on whole hours).
        let edges = format!(
            "((o.observed_at >= {since} AND o.observed_at < {first_hour}) \
             OR (o.observed_at >= {last_hour} AND o.observed_at < {until}))"
        );
        // Hours that writes noted and no refresh has counted yet (`service::rollup`), merged
        // per station: the rollup's rows for them are left out and their raw rows read.
        // PostgreSQL cannot know that there are usually none, and estimates the statement
        // costly enough to compile it (JIT, 20 ms): the sessions turn that off
        // (`database::connect_for_requests`).
        if self.source == Source::HourlyRollup {
            sql.text(&format!(
                "WITH noted AS MATERIALIZED ( \
                     SELECT p.station_id, unnest(range_agg(tstzrange( \
                                p.first_hour, p.last_hour + interval '1 hour'))) AS span \
                     FROM observations_hourly_pending p \
                     WHERE p.station_id = ANY({ids}::integer[]) \
                       AND p.last_hour >= {first_hour} AND p.first_hour < {last_hour} \
                     GROUP BY p.station_id) "
            ));
        }
        // Two arms, of which PostgreSQL runs one, each gated by a one-time filter: the plain
        // scan when nothing is noted (the rule: no cost per row), the scan that leaves noted
        // hours out otherwise.
        let rollup_rows = |columns: String| {
            let scan = format!(
                "SELECT h.station_id, h.hour AS at, h.count::bigint{columns} \
                 FROM observations_hourly h WHERE h.station_id = ANY({ids}::integer[]) \
                 AND h.hour >= {first_hour} AND h.hour < {last_hour}"
            );
            format!(
                "{scan} AND NOT (SELECT EXISTS (SELECT FROM noted)) UNION ALL \
                 {scan} AND (SELECT EXISTS (SELECT FROM noted)) \
                 AND NOT EXISTS (SELECT FROM noted n \
                                 WHERE n.station_id = h.station_id AND n.span @> h.hour)"
            )
        };
        // The raw rows read beside the rollup: the partial hours at both ends, and the noted
        // hours inside.
        let observed_columns = std::iter::once("o.station_id, o.observed_at".to_owned())
            .chain(Measure::ALL.map(|measure| format!("o.{}", measure.column())))
            .collect::<Vec<_>>()
            .join(", ");
        let observed = format!(
            "(SELECT {observed_columns} FROM observations o \
              WHERE o.station_id = ANY({ids}::integer[]) AND {edges} \
              UNION ALL \
              SELECT {observed_columns} FROM noted n \
              JOIN observations o ON o.station_id = n.station_id \
                   AND o.observed_at >= greatest(lower(n.span), {first_hour}) \
                   AND o.observed_at < least(upper(n.span), {last_hour}))"
        );
        if self.rows == RowsAre::Hours {
            // Each rollup row is a bucket; raw rows are grouped by hour.
            let hours = rollup_rows(outputs(measures, |aggregate, m| match aggregate {
                Aggregate::Count => format!("h.{m}_count::bigint"),
                Aggregate::Min => format!("h.{m}_min"),
                Aggregate::Max => format!("h.{m}_max"),
                Aggregate::Avg => format!("h.{m}_sum / nullif(h.{m}_count, 0)::float8"),
                Aggregate::Total => format!("CASE WHEN h.{m}_count > 0 THEN h.{m}_sum END"),
            }));
            sql.text(&format!(
                "{hours} UNION ALL \
                 SELECT o.station_id, date_trunc('hour', o.observed_at, 'UTC'), count(*){} \
                 FROM {observed} o GROUP BY 1, 2",
                outputs(measures, |aggregate, m| match aggregate {
                    Aggregate::Count => format!("count(o.{m})"),
                    Aggregate::Min => format!("min(o.{m})"),
                    Aggregate::Max => format!("max(o.{m})"),
                    Aggregate::Avg => format!("sum(o.{m}) / nullif(count(o.{m}), 0)::float8"),
                    Aggregate::Total => format!("sum(o.{m})"),
                })
            ));
            return sql.build();
        }
        // The buckets' thresholds: the first bucket counts from `since`, the last until
        // `until`.
        let mut thresholds: Vec<DateTime<Utc>> = Vec::with_capacity(bucket_starts.len() + 1);
        thresholds.push(request.since);
        thresholds.extend(bucket_starts.iter().skip(1));
        thresholds.push(request.until);
        let thresholds = sql.bind(thresholds);
        // The rows a bucket is made of: rollup hours, and raw rows as hours of one observation.
        let raw = |from: &str| {
            format!(
                "SELECT o.station_id, o.observed_at AS at, 1 AS count{} FROM {from}",
                inputs(measures, |part, m| match part {
                    Part::Count => format!("(o.{m} IS NOT NULL)::integer"),
                    Part::Sum => format!("coalesce(o.{m}, 0)"),
                    Part::Min | Part::Max => format!("o.{m}"),
                })
            )
        };
        let rows = match self.source {
            Source::HourlyRollup => {
                let hours = rollup_rows(inputs(measures, |part, m| match part {
                    Part::Count => format!("h.{m}_count::bigint"),
                    Part::Sum => format!("h.{m}_sum"),
                    Part::Min => format!("h.{m}_min"),
                    Part::Max => format!("h.{m}_max"),
                }));
                format!("{hours} UNION ALL {}", raw(&format!("{observed} o")))
            }
            Source::RawRows => raw(&format!(
                "observations o WHERE o.station_id = ANY({ids}::integer[]) \
                 AND o.observed_at >= {since} AND o.observed_at < {until}"
            )),
        };
        let station = if request.combined {
            "NULL::integer"
        } else {
            "p.station_id"
        };
        let group = if request.combined { "2" } else { "1, 2" };
        // Positional names for the inner columns, so that one list of aggregates serves both.
        let names = inputs(measures, |part, m| match part {
            Part::Count => format!("{m}_count"),
            Part::Sum => format!("{m}_sum"),
            Part::Min => format!("{m}_min"),
            Part::Max => format!("{m}_max"),
        });
        sql.text(&format!(
            "SELECT {station}, width_bucket(p.at, {thresholds}::timestamptz[]), \
                    sum(p.count)::bigint{} \
             FROM ({rows}) AS p (station_id, at, count{names}) GROUP BY {group}",
            outputs(measures, |aggregate, m| match aggregate {
                Aggregate::Count => format!("sum(p.{m}_count)::bigint"),
                Aggregate::Min => format!("min(p.{m}_min)"),
                Aggregate::Max => format!("max(p.{m}_max)"),
                Aggregate::Avg => {
                    format!("sum(p.{m}_sum) / nullif(sum(p.{m}_count), 0)::float8")
                }
                Aggregate::Total => {
                    format!("CASE WHEN sum(p.{m}_count) > 0 THEN sum(p.{m}_sum) END")
                }
            })
        ));
        sql.build()
    }
}

/// An aggregate of one measure over a bucket, in the order a row of the statement has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Count,
    Min,
    Max,
    Avg,
    Total,
}

/// What the rows a bucket is grouped from carry of one measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Count,
    Sum,
    Min,
    Max,
}

impl MeasureAggregates {
    /// The aggregates asked for, in the statement's order.
    fn wanted(&self) -> impl Iterator<Item = Aggregate> {
        [
            (self.count, Aggregate::Count),
            (self.min, Aggregate::Min),
            (self.max, Aggregate::Max),
            (self.avg, Aggregate::Avg),
            (self.total, Aggregate::Total),
        ]
        .into_iter()
        .filter_map(|(wanted, aggregate)| wanted.then_some(aggregate))
    }

    /// What the grouped rows must carry for them: an average and a total are computed from
    /// the count and the sum.
    fn parts(&self) -> impl Iterator<Item = Part> {
        let count_and_sum = self.avg || self.total;
        [
            (self.count || count_and_sum, Part::Count),
            (count_and_sum, Part::Sum),
            (self.min, Part::Min),
            (self.max, Part::Max),
        ]
        .into_iter()
        .filter_map(|(needed, part)| needed.then_some(part))
    }
}

/// `, ` and `column(aggregate, m)` for each aggregate wanted of each measure `m`, in the order
/// `read_point` reads them: nothing when nothing is asked for.
fn outputs(measures: &[MeasureAggregates], column: impl Fn(Aggregate, &str) -> String) -> String {
    measures
        .iter()
        .flat_map(|wanted| {
            let m = wanted.measure.column();
            wanted.wanted().map(move |aggregate| (aggregate, m))
        })
        .map(|(aggregate, m)| format!(", {}", column(aggregate, m)))
        .collect()
}

/// `, ` and `column(part, m)` for each part the grouped rows need of each measure `m`.
fn inputs(measures: &[MeasureAggregates], column: impl Fn(Part, &str) -> String) -> String {
    measures
        .iter()
        .flat_map(|wanted| {
            let m = wanted.measure.column();
            wanted.parts().map(move |part| (part, m))
        })
        .map(|(part, m)| format!(", {}", column(part, m)))
        .collect()
}

fn ceil_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let hour = Duration::hours(1);
    match at.duration_trunc(hour) {
        Ok(start) if start == at => at,
        Ok(start) => start + hour,
        Err(_) => at,
    }
}

/// Fills `point` from a row of the statement: `count` in column 2, then the aggregates each
/// measure of `measures` asks for, in `MeasureAggregates::wanted`'s order; the rest stays
/// empty.
fn read_point(row: &PgRow, measures: &[MeasureAggregates], point: &mut Point) -> Result<(), DbErr> {
    point.count = decoded(row, 2)?;
    let mut column = 3;
    for wanted in measures {
        let stats = &mut point.measures[wanted.measure.index()];
        for aggregate in wanted.wanted() {
            match aggregate {
                Aggregate::Count => stats.count = decoded(row, column)?,
                Aggregate::Min => stats.min = decoded(row, column)?,
                Aggregate::Max => stats.max = decoded(row, column)?,
                Aggregate::Avg => stats.avg = decoded(row, column)?,
                // Precipitation's is the schema's one total.
                Aggregate::Total => point.precipitation_total_mm = decoded(row, column)?,
            }
            column += 1;
        }
    }
    Ok(())
}

/// The PostgreSQL row under SeaORM's: the series decode with sqlx itself, because SeaORM's
/// getters build an error message for every NULL they meet (an `Option` is decoded by failing
/// first), and a chart's rows are mostly NULLs: precipitation is null whenever it is dry.
fn postgres_row(row: &QueryResult) -> Result<&PgRow, DbErr> {
    row.try_as_pg_row()
        .ok_or_else(|| DbErr::Type("the series are read from PostgreSQL only".to_owned()))
}

fn decoded<'r, T>(row: &'r PgRow, column: usize) -> Result<T, DbErr>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|error| DbErr::Type(format!("series column {column}: {error}")))
}

/// The IANA time zones PostgreSQL knows, read once: `pg_timezone_names` reads every zone file,
/// too slow to ask on each request, and the list changes only with the server's tz data.
pub struct TimeZones;

static ZONE_NAMES: OnceCell<HashSet<String>> = OnceCell::const_new();

impl TimeZones {
    /// Whether `name` is a time zone of the IANA database as PostgreSQL has it. Abbreviations
    /// (`PST`) and POSIX rules (`UTC+3`), which PostgreSQL also accepts, name no zone.
    pub async fn knows(db: &impl ConnectionTrait, name: &str) -> Result<bool, DbErr> {
        // The default needs no list: a server that is only asked for UTC never reads it.
        if name == "UTC" {
            return Ok(true);
        }
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
