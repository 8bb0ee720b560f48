//! `stations-api import`: station lists from CSV or GeoJSON files, of any size; observations
//! (`observations`) from CSV.
//!
//! A reader thread streams the file, validates each record with the API's own rules and
//! encodes the valid ones for `COPY`; the async side sends them into a temporary staging table.
//! Then, in the same transaction: duplicate codes within the file are found, conflicts with
//! existing stations are resolved as `--on-conflict` says, and the rows are upserted into
//! `stations`. An import is all or nothing: any failure rolls everything back.

mod copy;
mod csv_source;
pub mod demo;
mod geojson_source;
pub mod observations;
mod progress;
mod random;
mod records;
mod rejects;

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{
    DatabaseConnection,
    sqlx::{self, Connection, PgConnection},
};
use tokio::sync::mpsc;

use copy::{Fed, Feed, copy_in};
pub use csv_source::COLUMNS as CSV_COLUMNS;
pub use progress::Progress;
use records::{Fields, validate};
use rejects::RejectWriter;

/// What a source hands over for each record: its position (CSV line, GeoJSON feature number),
/// its bytes verbatim, and its fields or why it has none. Returning false stops the reading.
pub type EachRecord<'a> = dyn FnMut(u64, &[u8], Result<Fields<'_>, String>) -> bool + 'a;

/// From this many rows on, an import is a bulk load: indexes of an empty table are built
/// afterwards, and statistics are refreshed.
const BULK_LOAD_ROWS: i64 = 10_000;
/// From this many rows on, subscribers hear of an import as one RESYNC rather than row by
/// row (see migration `notify_live_changes`).
const BULK_NOTIFY_ROWS: i64 = 1_000;
/// How many bad rows a refusal lists; the count covers all of them.
const LISTED_BAD_ROWS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    #[value(name = "geojson")]
    GeoJson,
}

impl Format {
    /// The format a file name suggests: `.geojson` and `.json` are GeoJSON, `.csv` is CSV.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "geojson" | "json" => Some(Self::GeoJson),
            _ => None,
        }
    }

    fn position_word(self) -> &'static str {
        match self {
            Self::Csv => "line",
            Self::GeoJson => "feature",
        }
    }
}

/// What to do with a station whose code is already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnConflict {
    /// Overwrite its name, position and elevation with the file's.
    #[default]
    Update,
    /// Keep the station as it is.
    Skip,
    /// Refuse the whole import.
    Fail,
}

/// Where the stations come from.
#[derive(Debug, Clone)]
pub enum Source {
    File {
        path: PathBuf,
        format: Format,
    },
    /// `count` synthetic stations (see [`demo`]).
    Demo {
        count: u64,
    },
}

impl Source {
    fn format(&self) -> Format {
        match self {
            Self::File { format, .. } => *format,
            Self::Demo { .. } => Format::Csv,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub on_conflict: OnConflict,
    /// Load the valid rows and write the bad ones here, verbatim, in the input's format.
    pub reject_file: Option<PathBuf>,
}

/// The refusal of an import without a reject file: the first of the bad rows the reader found
/// (`bad_total` in all) and those the database found later, every kind listed at once, in file
/// order.
fn refusal(
    format: Format,
    read: Vec<BadRow>,
    bad_total: u64,
    found_later: Vec<BadRow>,
) -> ImportError {
    let total = bad_total + found_later.len() as u64;
    let mut rows = read;
    rows.extend(found_later);
    rows.sort_by_key(|row| row.position);
    rows.truncate(LISTED_BAD_ROWS);
    ImportError::BadRows {
        format,
        rows,
        total,
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub inserted: u64,
    pub updated: u64,
    /// Already present: unchanged (with `update`) or kept (with `skip`).
    pub skipped: u64,
    pub rejected: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = [
            ("inserted", self.inserted),
            ("updated", self.updated),
            ("skipped", self.skipped),
            ("rejected", self.rejected),
        ];
        write_outcome(f, &counts, self.elapsed)
    }
}

/// `inserted 3, rejected 1 in 0.2 s (20 rows/s)`: what an import did with its rows, and how
/// fast, counting every row it read.
fn write_outcome(
    f: &mut fmt::Formatter<'_>,
    counts: &[(&str, u64)],
    elapsed: Duration,
) -> fmt::Result {
    for (index, (what, count)) in counts.iter().enumerate() {
        let separator = if index == 0 { "" } else { ", " };
        write!(f, "{separator}{what} {count}")?;
    }
    let rows: u64 = counts.iter().map(|(_, count)| count).sum();
    let seconds = elapsed.as_secs_f64();
    write!(
        f,
        " in {seconds:.1} s ({:.0} rows/s)",
        rows as f64 / seconds.max(1e-9)
    )
}

/// A record that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub position: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file as a whole cannot be read: missing, not CSV or GeoJSON, a wrong header.
    #[error("{0}")]
    File(String),
    #[error("{}", describe_bad_rows(*.format, .rows, *.total))]
    BadRows {
        format: Format,
        rows: Vec<BadRow>,
        total: u64,
    },
    #[error("{}", describe_conflicts(*.format, .rows, *.total))]
    Conflicts {
        format: Format,
        rows: Vec<(u64, String)>,
        total: u64,
    },
    #[error("cannot write the reject file {path}: {error}")]
    RejectFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the database refused the import, nothing was imported: {0}")]
    Database(#[from] sqlx::Error),
}

fn describe_bad_rows(format: Format, rows: &[BadRow], total: u64) -> String {
    let mut text = format!(
        "the file has {total} bad row(s), so nothing was imported; fix them, or pass \
         --reject-file PATH to import the valid rows and set the bad ones aside:"
    );
    for row in rows {
        text.push_str(&format!(
            "\n  {} {}: {}",
            format.position_word(),
            row.position,
            row.reason
        ));
    }
    if total > rows.len() as u64 {
        text.push_str(&format!("\n  and {} more", total - rows.len() as u64));
    }
    text
}

fn describe_conflicts(format: Format, rows: &[(u64, String)], total: u64) -> String {
    let mut text = format!(
        "{total} station(s) in the file have a code that is already taken, and --on-conflict is \
         fail, so nothing was imported (use --on-conflict update or skip):"
    );
    for (position, code) in rows {
        text.push_str(&format!(
            "\n  {} {position}: code {code:?} exists",
            format.position_word()
        ));
    }
    if total > rows.len() as u64 {
        text.push_str(&format!("\n  and {} more", total - rows.len() as u64));
    }
    text
}

/// Imports `source` into `stations` in one transaction.
pub async fn run(
    db: &DatabaseConnection,
    source: Source,
    options: Options,
    progress: Arc<Progress>,
) -> Result<Summary, ImportError> {
    let started = Instant::now();
    let format = source.format();
    let mut rejects = options
        .reject_file
        .as_ref()
        .map(|path| {
            RejectWriter::create(path, format).map_err(|error| ImportError::RejectFile {
                path: path.clone(),
                error,
            })
        })
        .transpose()?;
    // A CSV reject file starts with the input's own header line.
    if let (
        Some(writer),
        Source::File {
            path,
            format: Format::Csv,
        },
    ) = (rejects.as_mut(), &source)
    {
        writer.set_header(
            &csv_source::header(path, &csv_source::STATIONS).map_err(ImportError::File)?,
        );
    }

    let mut connection = db.get_postgres_connection_pool().acquire().await?;
    let mut transaction = connection.begin().await?;
    sqlx::raw_sql(
        "CREATE TEMPORARY TABLE import_staging (
            position    bigint NOT NULL,
            code        text NOT NULL,
            name        text NOT NULL,
            lat         double precision NOT NULL,
            lng         double precision NOT NULL,
            elevation_m double precision
        ) ON COMMIT DROP",
    )
    .execute(&mut *transaction)
    .await?;

    let outcome = stage(&mut transaction, &source, rejects, &progress).await?;

    progress.phase("checking codes");
    let duplicates = repeated_codes(&mut transaction, format).await?;
    let rejected = match outcome.rejects {
        None if outcome.bad_total > 0 || !duplicates.is_empty() => {
            return Err(refusal(format, outcome.bad, outcome.bad_total, duplicates));
        }
        None => 0,
        Some(mut writer) => {
            if !duplicates.is_empty() {
                let positions: Vec<i64> =
                    duplicates.iter().map(|row| row.position as i64).collect();
                sqlx::query("DELETE FROM import_staging WHERE position = ANY($1)")
                    .bind(&positions)
                    .execute(&mut *transaction)
                    .await?;
                let wanted: BTreeSet<u64> = duplicates.iter().map(|row| row.position).collect();
                for raw in verbatim_records(&source, &wanted)? {
                    writer.write(&raw).map_err(|error| writer.error(error))?;
                }
            }
            writer
                .finish()
                .map_err(|(path, error)| ImportError::RejectFile { path, error })?;
            outcome.bad_total + duplicates.len() as u64
        }
    };

    if options.on_conflict == OnConflict::Fail {
        let taken: Vec<(i64, String)> = sqlx::query_as(
            "SELECT s.position, s.code FROM import_staging s JOIN stations t ON t.code = s.code \
             ORDER BY s.position",
        )
        .fetch_all(&mut *transaction)
        .await?;
        if !taken.is_empty() {
            return Err(ImportError::Conflicts {
                format,
                total: taken.len() as u64,
                rows: taken
                    .into_iter()
                    .take(LISTED_BAD_ROWS)
                    .map(|(position, code)| (position as u64, code))
                    .collect(),
            });
        }
    }

    progress.phase("writing to stations");
    let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM import_staging")
        .fetch_one(&mut *transaction)
        .await?;
    if staged >= BULK_NOTIFY_ROWS {
        announce_in_bulk(&mut transaction).await?;
    }
    let (inserted, updated) =
        if staged >= BULK_LOAD_ROWS && table_is_empty(&mut transaction).await? {
            // Loading an empty table: building its indexes once afterwards is several times
            // faster than updating them row by row. The lock this takes only makes readers of an
            // empty table wait.
            let rebuilt = drop_secondary_indexes(&mut transaction).await?;
            // Nothing to conflict with: duplicates within the file are gone already.
            let written = insert_all(&mut transaction).await?;
            progress.phase("building indexes");
            for definition in rebuilt {
                sqlx::raw_sql(sqlx::AssertSqlSafe(definition))
                    .execute(&mut *transaction)
                    .await?;
            }
            written
        } else {
            upsert(&mut transaction, options.on_conflict).await?
        };
    if staged >= BULK_LOAD_ROWS {
        // Fresh statistics, so that the planner knows the table's new size at once.
        sqlx::raw_sql("ANALYZE stations")
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    progress.finish();

    Ok(Summary {
        inserted,
        updated,
        skipped: (staged as u64).saturating_sub(inserted + updated),
        rejected,
        elapsed: started.elapsed(),
    })
}

/// Streams the valid records of `source` into `import_staging` with `COPY`.
async fn stage(
    connection: &mut PgConnection,
    source: &Source,
    rejects: Option<RejectWriter>,
    progress: &Arc<Progress>,
) -> Result<Fed, ImportError> {
    let source = source.clone();
    let progress = Arc::clone(progress);
    copy_in(
        connection,
        "COPY import_staging (position, code, name, lat, lng, elevation_m) FROM STDIN",
        move |chunks| read_records(&source, rejects, chunks, &progress),
    )
    .await
}

/// The reader thread: validates every record and feeds it to the COPY.
fn read_records(
    source: &Source,
    rejects: Option<RejectWriter>,
    chunks: &mpsc::Sender<String>,
    progress: &Progress,
) -> Result<Fed, ImportError> {
    let mut feed = Feed::new(chunks, progress, rejects);
    let mut each = |position: u64, raw: &[u8], fields: Result<Fields<'_>, String>| -> bool {
        feed.take(position, raw, fields.and_then(validate))
    };
    let mut on_bytes = |bytes: u64| progress.set_bytes(bytes);
    let result = match source {
        Source::File {
            path,
            format: Format::Csv,
        } => csv_source::read(path, &mut each, &mut on_bytes),
        Source::File {
            path,
            format: Format::GeoJson,
        } => geojson_source::read(path, &mut each, &mut on_bytes),
        Source::Demo { count } => {
            demo::generate(*count, &mut each);
            Ok(())
        }
    };
    result.map_err(ImportError::File)?;
    feed.finish()
}

/// Records whose code an earlier record of the file already has.
async fn repeated_codes(
    connection: &mut PgConnection,
    format: Format,
) -> Result<Vec<BadRow>, sqlx::Error> {
    // The cheap question first: most files repeat nothing.
    let any: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM import_staging GROUP BY code HAVING count(*) > 1 LIMIT 1",
    )
    .fetch_optional(&mut *connection)
    .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT position, code, first FROM (
             SELECT position, code, min(position) OVER (PARTITION BY code) AS first
             FROM import_staging) numbered
         WHERE position <> first ORDER BY position",
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(position, code, first)| BadRow {
            position: position as u64,
            reason: format!(
                "code {code:?} repeats the one at {} {first}",
                format.position_word()
            ),
        })
        .collect())
}

/// The verbatim text of the records at `positions`, read again from the source.
fn verbatim_records(
    source: &Source,
    positions: &BTreeSet<u64>,
) -> Result<Vec<Vec<u8>>, ImportError> {
    let mut found = Vec::new();
    let mut each = |position: u64, raw: &[u8], _: Result<Fields<'_>, String>| -> bool {
        if positions.contains(&position) {
            found.push(raw.to_vec());
        }
        found.len() < positions.len()
    };
    let result = match source {
        Source::File {
            path,
            format: Format::Csv,
        } => csv_source::read(path, &mut each, &mut |_| {}),
        Source::File {
            path,
            format: Format::GeoJson,
        } => geojson_source::read(path, &mut each, &mut |_| {}),
        // Synthetic codes never repeat.
        Source::Demo { .. } => Ok(()),
    };
    result.map_err(ImportError::File)?;
    Ok(found)
}

/// Makes the live-change triggers announce this transaction's writes as one summary.
async fn announce_in_bulk(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("SET LOCAL stations_api.bulk_write = on")
        .execute(connection)
        .await
        .map(drop)
}

async fn table_is_empty(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM stations)")
        .fetch_one(connection)
        .await
}

/// Drops the indexes of `stations` that back no constraint and returns the statements that
/// create them again, read from the catalog so that indexes added by later migrations count.
/// The primary key and the unique code stay: the upsert needs them.
async fn drop_secondary_indexes(connection: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i
         WHERE i.indrelid = 'stations'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
    )
    .fetch_all(&mut *connection)
    .await?;
    let mut definitions = Vec::with_capacity(indexes.len());
    for (name, definition) in indexes {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(&mut *connection)
            .await?;
        definitions.push(definition);
    }
    Ok(definitions)
}

/// Moves the staged rows into an empty `stations`: a plain insert, cheaper than an upsert.
async fn insert_all(connection: &mut PgConnection) -> Result<(u64, u64), sqlx::Error> {
    let written = sqlx::raw_sql(
        "INSERT INTO stations (code, name, lat, lng, elevation_m)
         SELECT code, name, lat, lng, elevation_m FROM import_staging ORDER BY position",
    )
    .execute(connection)
    .await?;
    Ok((written.rows_affected(), 0))
}

/// Moves the staged rows into `stations` and returns how many were inserted and updated.
async fn upsert(
    connection: &mut PgConnection,
    on_conflict: OnConflict,
) -> Result<(u64, u64), sqlx::Error> {
    // Rows go in file order, so ids follow the file. `xmax = 0` tells a fresh row from an
    // updated one in RETURNING; rows the update would not change are not updated at all.
    let conflict = match on_conflict {
        OnConflict::Update => {
            "ON CONFLICT (code) DO UPDATE SET
                 name = EXCLUDED.name, lat = EXCLUDED.lat, lng = EXCLUDED.lng,
                 elevation_m = EXCLUDED.elevation_m
             WHERE (stations.name, stations.lat, stations.lng, stations.elevation_m)
                 IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.lat, EXCLUDED.lng, EXCLUDED.elevation_m)"
        }
        OnConflict::Skip => "ON CONFLICT (code) DO NOTHING",
        // Conflicts were ruled out before; a concurrent insert fails the import.
        OnConflict::Fail => "",
    };
    let statement = format!(
        "WITH written AS (
             INSERT INTO stations (code, name, lat, lng, elevation_m)
             SELECT code, name, lat, lng, elevation_m FROM import_staging ORDER BY position
             {conflict}
             RETURNING (xmax = 0) AS inserted)
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
         FROM written"
    );
    let (inserted, updated): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .fetch_one(&mut *connection)
        .await?;
    Ok((inserted as u64, updated as u64))
}
