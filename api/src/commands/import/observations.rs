//! `stations-api import observations`: time series from a CSV file of any size, or a demo year
//! of hourly observations, in one transaction.
//!
//! A reader thread validates each row with the API's own rules (`recordObservations`) and
//! encodes the valid ones for `COPY` into a staging table; then rows naming no station are set
//! aside, and one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` writes the rest: an
//! observation already stored (same station and instant) is counted as a duplicate, so
//! importing a file twice changes nothing. Memory stays flat whatever the file's size.

use std::{
    collections::BTreeSet,
    fmt,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::{
    DatabaseConnection,
    sqlx::{self, Connection},
};
use tokio::sync::mpsc;

use super::csv_source::{self, Layout, Row};
use super::random::SplitMix64;
use super::rejects::RejectWriter;
use super::{
    BULK_LOAD_ROWS, BULK_NOTIFY_ROWS, BadRow, Format, ImportError, Progress, announce_in_bulk,
    copy::{CopyLine, Fed, Feed, copy_in},
    records::number_from_text,
    refusal, write_outcome,
};
use crate::domain::{InvalidValue, Measure, StationCode, observed_at};

/// `station_code,observed_at,temperature_c,pressure_hpa,humidity_pct,precipitation_mm`, in any
/// order; measurement columns may be left out, but each row needs one measurement at least.
pub const LAYOUT: Layout = Layout {
    columns: &[
        "station_code",
        "observed_at",
        "temperature_c",
        "pressure_hpa",
        "humidity_pct",
        "precipitation_mm",
    ],
    required: &["station_code", "observed_at"],
};

/// Where the observations come from.
#[derive(Debug, Clone)]
pub enum ObservationSource {
    File(PathBuf),
    /// Hourly observations for the last `days` days (up to the current hour), for the first
    /// `stations` stations by id (see [`demo_reading`]).
    Demo {
        stations: u64,
        days: u32,
    },
}

/// What an import of observations did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservationSummary {
    pub inserted: u64,
    /// Already stored for the same station and instant, or repeated in the file.
    pub duplicates: u64,
    pub rejected: u64,
    pub elapsed: Duration,
}

impl fmt::Display for ObservationSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = [
            ("inserted", self.inserted),
            ("duplicates", self.duplicates),
            ("rejected", self.rejected),
        ];
        write_outcome(f, &counts, self.elapsed)
    }
}

/// One valid row, ready for `COPY`.
struct Reading<'a> {
    station_code: &'a str,
    observed_at: DateTime<Utc>,
    values: [Option<f64>; 4],
}

/// Imports `source` into `observations` in one transaction.
pub async fn run(
    db: &DatabaseConnection,
    source: ObservationSource,
    reject_file: Option<PathBuf>,
    progress: Arc<Progress>,
) -> Result<ObservationSummary, ImportError> {
    let started = Instant::now();
    let mut rejects = reject_file
        .as_ref()
        .map(|path| {
            RejectWriter::create(path, Format::Csv).map_err(|error| ImportError::RejectFile {
                path: path.clone(),
                error,
            })
        })
        .transpose()?;
    if let (Some(writer), ObservationSource::File(path)) = (rejects.as_mut(), &source) {
        writer.set_header(&csv_source::header(path, &LAYOUT).map_err(ImportError::File)?);
    }

    let mut connection = db.get_postgres_connection_pool().acquire().await?;
    let demo_stations = match &source {
        ObservationSource::Demo { stations, .. } => {
            sqlx::query_as::<_, (String, f64, Option<f64>)>(
                "SELECT code, lat, elevation_m FROM stations ORDER BY id LIMIT $1",
            )
            .bind(*stations as i64)
            .fetch_all(&mut *connection)
            .await?
        }
        ObservationSource::File(_) => Vec::new(),
    };
    let mut transaction = connection.begin().await?;
    sqlx::raw_sql(
        "CREATE TEMPORARY TABLE observation_staging (
            position         bigint NOT NULL,
            station_code     text NOT NULL,
            observed_at      timestamptz NOT NULL,
            temperature_c    double precision,
            pressure_hpa     double precision,
            humidity_pct     double precision,
            precipitation_mm double precision
        ) ON COMMIT DROP",
    )
    .execute(&mut *transaction)
    .await?;

    let outcome = {
        let source = source.clone();
        let progress = Arc::clone(&progress);
        copy_in(
            &mut transaction,
            "COPY observation_staging (position, station_code, observed_at, temperature_c, \
             pressure_hpa, humidity_pct, precipitation_mm) FROM STDIN",
            move |chunks| read(&source, &demo_stations, rejects, chunks, &progress),
        )
        .await?
    };

    progress.phase("checking stations");
    let unknown: Vec<(i64, String)> = sqlx::query_as(
        "SELECT s.position, s.station_code FROM observation_staging s
         WHERE NOT EXISTS (SELECT 1 FROM stations t WHERE t.code = s.station_code)
         ORDER BY s.position",
    )
    .fetch_all(&mut *transaction)
    .await?;
    let unknown: Vec<BadRow> = unknown
        .into_iter()
        .map(|(position, code)| BadRow {
            position: position as u64,
            reason: format!("station_code {code:?} names no station"),
        })
        .collect();
    let rejected = match outcome.rejects {
        None if outcome.bad_total > 0 || !unknown.is_empty() => {
            return Err(refusal(
                Format::Csv,
                outcome.bad,
                outcome.bad_total,
                unknown,
            ));
        }
        None => 0,
        Some(mut writer) => {
            if let (false, ObservationSource::File(path)) = (unknown.is_empty(), &source) {
                sqlx::query(
                    "DELETE FROM observation_staging s
                     WHERE NOT EXISTS (SELECT 1 FROM stations t WHERE t.code = s.station_code)",
                )
                .execute(&mut *transaction)
                .await?;
                let wanted: BTreeSet<u64> = unknown.iter().map(|row| row.position).collect();
                for raw in verbatim_lines(path, &wanted)? {
                    writer.write(&raw).map_err(|error| writer.error(error))?;
                }
            }
            writer
                .finish()
                .map_err(|(path, error)| ImportError::RejectFile { path, error })?;
            outcome.bad_total + unknown.len() as u64
        }
    };

    progress.phase("writing to observations");
    if outcome.valid >= BULK_NOTIFY_ROWS as u64 {
        announce_in_bulk(&mut transaction).await?;
    }
    let inserted = sqlx::raw_sql(
        "INSERT INTO observations (station_id, observed_at, temperature_c, pressure_hpa,
                                   humidity_pct, precipitation_mm)
         SELECT t.id, s.observed_at, s.temperature_c, s.pressure_hpa, s.humidity_pct,
                s.precipitation_mm
         FROM observation_staging s JOIN stations t ON t.code = s.station_code
         ON CONFLICT (station_id, observed_at) DO NOTHING",
    )
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    if outcome.valid >= BULK_LOAD_ROWS as u64 {
        // Fresh statistics, so that the planner knows the table's new size at once.
        sqlx::raw_sql("ANALYZE observations")
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    progress.finish();
    let staged = outcome.valid.saturating_sub(rejected - outcome.bad_total);
    Ok(ObservationSummary {
        inserted,
        duplicates: staged.saturating_sub(inserted),
        rejected,
        elapsed: started.elapsed(),
    })
}

/// The reader thread: validates every row and feeds it to the COPY.
fn read(
    source: &ObservationSource,
    demo_stations: &[(String, f64, Option<f64>)],
    rejects: Option<RejectWriter>,
    chunks: &mpsc::Sender<String>,
    progress: &Progress,
) -> Result<Fed, ImportError> {
    let now = Utc::now();
    let mut feed = Feed::new(chunks, progress, rejects);
    let mut each = |position: u64, raw: &[u8], reading: Result<Reading<'_>, String>| -> bool {
        feed.take(position, raw, reading)
    };
    match source {
        ObservationSource::File(path) => csv_source::read_rows(
            path,
            &LAYOUT,
            &mut |line, raw, row| each(line, raw, row.and_then(|row| reading(&row, now))),
            &mut |bytes| progress.set_bytes(bytes),
        )
        .map_err(ImportError::File)?,
        ObservationSource::Demo { days, .. } => {
            let last = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
            let hours = i64::from(*days) * 24;
            let mut position = 0;
            'stations: for (code, lat, elevation_m) in demo_stations {
                for back in (0..=hours).rev() {
                    position += 1;
                    let at = last - TimeDelta::hours(back);
                    let reading = Reading {
                        station_code: code,
                        observed_at: at,
                        values: demo_reading(code, *lat, elevation_m.unwrap_or(0.0), at),
                    };
                    if !each(position, b"", Ok(reading)) {
                        break 'stations;
                    }
                }
            }
        }
    }
    feed.finish()
}

/// Validates one row with the rules of `recordObservations`; the error names the column.
fn reading<'a>(row: &Row<'a>, now: DateTime<Utc>) -> Result<Reading<'a>, String> {
    fn named(column: &str) -> impl FnOnce(InvalidValue) -> String + '_ {
        move |InvalidValue(message)| format!("{column} {message}")
    }
    let station_code = row
        .text(0)?
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .ok_or("station_code is missing")?;
    StationCode::parse(station_code.to_owned()).map_err(named("station_code"))?;
    let at = row
        .text(1)?
        .map(str::trim)
        .filter(|at| !at.is_empty())
        .ok_or("observed_at is missing")?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| {
            format!(
                "observed_at is not an RFC 3339 instant such as 2026-06-01T12:00:00Z (got {at:?})"
            )
        })?
        .with_timezone(&Utc);
    let observed_at = observed_at(at, now).map_err(named("observed_at"))?;
    let mut values = [None; 4];
    // The layout's measurement columns, from column 2 on, are in `Measure::ALL`'s order.
    for (index, measure) in Measure::ALL.into_iter().enumerate() {
        let column = measure.column();
        let Some(text) = row.text(index + 2)? else {
            continue;
        };
        values[index] = number_from_text(text)
            .map_err(|reason| format!("{column} {reason}"))?
            .map(|value| measure.parse(value).map_err(named(column)))
            .transpose()?;
    }
    if values.iter().all(Option::is_none) {
        return Err(
            "has no measurement: give one of temperature_c, pressure_hpa, humidity_pct, \
             precipitation_mm at least"
                .to_owned(),
        );
    }
    Ok(Reading {
        station_code,
        observed_at,
        values,
    })
}

/// One row of `COPY` text: position, code, instant, measurements (`\N` when missing). Codes
/// hold no character that COPY text escapes.
impl CopyLine for Reading<'_> {
    fn encode(&self, position: u64, buffer: &mut String) {
        let reading = self;
        let _ = write!(
            buffer,
            "{position}\t{}\t{}",
            reading.station_code,
            reading.observed_at.to_rfc3339()
        );
        for value in reading.values {
            match value {
                Some(value) => {
                    let _ = write!(buffer, "\t{value:?}");
                }
                None => buffer.push_str("\t\\N"),
            }
        }
        buffer.push('\n');
    }
}

/// The verbatim lines of the file at `positions`, read again.
fn verbatim_lines(path: &Path, positions: &BTreeSet<u64>) -> Result<Vec<Vec<u8>>, ImportError> {
    let mut found = Vec::new();
    csv_source::read_rows(
        path,
        &LAYOUT,
        &mut |line, raw, _| {
            if positions.contains(&line) {
                found.push(raw.to_vec());
            }
            found.len() < positions.len()
        },
        &mut |_| {},
    )
    .map_err(ImportError::File)?;
    Ok(found)
}

/// A plausible, repeatable reading of the station `code` at latitude `lat` and `elevation_m`
/// at the instant `at`: a seasonal and a daily temperature cycle that depend on latitude and
/// elevation, pressure falling with height, humidity opposite to the daily warming, and rain in
/// about one hour out of twelve. The same station and hour always give the same values, so a
/// demo imported again adds only the hours since.
pub fn demo_reading(code: &str, lat: f64, elevation_m: f64, at: DateTime<Utc>) -> [Option<f64>; 4] {
    use std::f64::consts::TAU;
    let mut random = SplitMix64::seeded(code, at.timestamp());
    let day_of_year = f64::from(chrono::Datelike::ordinal(&at));
    let hour = f64::from(chrono::Timelike::hour(&at));
    // Local solar time, roughly, from a longitude-free guess: the demo needs a daily shape,
    // not astronomy.
    let north = if lat >= 0.0 { 1.0 } else { -1.0 };
    let mean = 28.0 - 0.45 * lat.abs() - 0.0065 * elevation_m;
    let seasonal =
        north * (0.3 * lat.abs()).min(20.0) * (TAU * (day_of_year - 200.0) / 365.0).cos();
    let daily = 4.0 * (TAU * (hour - 15.0) / 24.0).cos();
    let temperature = (mean + seasonal + daily + random.between(-1.5, 1.5)).clamp(-85.0, 55.0);
    let pressure = (1013.25 * (-elevation_m / 8434.0).exp() + random.between(-12.0, 12.0))
        .clamp(305.0, 1095.0);
    let humidity = (70.0 - 3.0 * daily + random.between(-15.0, 15.0)).clamp(5.0, 100.0);
    let precipitation = if random.between(0.0, 1.0) < 0.08 {
        (random.between(0.0, 1.0).powi(2) * 12.0 * 10.0).round() / 10.0
    } else {
        0.0
    };
    let round = |value: f64| (value * 10.0).round() / 10.0;
    [
        Some(round(temperature)),
        Some(round(pressure)),
        Some(round(humidity)),
        Some(precipitation),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_lists_the_measures_in_their_order() {
        let measures = Measure::ALL.map(Measure::column);
        assert_eq!(&LAYOUT.columns[2..], &measures[..]);
    }

    #[test]
    fn demo_readings_are_plausible_and_repeatable() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for (code, lat, elevation) in [
            ("POLE", -89.9, 2835.0),
            ("EQ", 0.5, 10.0),
            ("HIGH", 46.5, 3571.0),
        ] {
            for hour in (0..24 * 365).step_by(7) {
                let at = start + TimeDelta::hours(hour);
                let values = demo_reading(code, lat, elevation, at);
                assert_eq!(values, demo_reading(code, lat, elevation, at));
                for (measure, value) in Measure::ALL.into_iter().zip(values) {
                    let value = value.unwrap();
                    assert!(measure.parse(value).is_ok(), "{code} {measure:?} {value}");
                }
            }
        }
        let summer = demo_reading("ZRH", 47.4, 408.0, start + TimeDelta::days(200))[0].unwrap();
        let winter = demo_reading("ZRH", 47.4, 408.0, start + TimeDelta::days(15))[0].unwrap();
        assert!(summer > winter + 8.0, "{summer} vs {winter}");
    }

    #[test]
    fn a_copy_line_has_every_column_and_nulls() {
        let mut line = String::new();
        CopyLine::encode(
            &Reading {
                station_code: "ZRH",
                observed_at: DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                values: [Some(21.5), None, Some(40.0), None],
            },
            3,
            &mut line,
        );
        assert_eq!(
            line,
            "3\tZRH\t2026-06-01T12:00:00+00:00\t21.5\t\\N\t40.0\t\\N\n"
        );
    }
}
