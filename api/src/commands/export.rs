//! `stations-api export`: the whole table, streamed, in a format `import` reads back to the
//! same rows (codes, names, coordinates and elevations; ids and timestamps are the database's).

use std::io::Write;

use futures_util::TryStreamExt;
use sea_orm::{
    DatabaseConnection,
    sqlx::{self, Connection},
};
use serde_json::json;

use std::path::PathBuf;

use super::{Failure, connect, load_settings};
use crate::commands::import::{CSV_COLUMNS, Format};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the stations failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
}

/// Text cells a spreadsheet would read as a formula when they start with one of these: `=`,
/// `+`, `-` and `@` start formulas, a tab or a carriage return hide one behind whitespace
/// (OWASP's "CSV injection"). Imports and mutations refuse control characters in text today;
/// the last two stay listed so that the export does not depend on that.
const FORMULA_STARTS: [&str; 6] = ["=", "+", "-", "@", "\\t", "\\r"];

/// The columns of the CSV export; with `spreadsheet_safe`, a text cell that a spreadsheet
/// would run as a formula gets a leading `'`, which spreadsheets show as text. Numbers stay
/// numbers (a negative latitude is not text), so only `code` and `name` can change.
fn csv_columns(spreadsheet_safe: bool) -> String {
    CSV_COLUMNS
        .iter()
        .map(|column| match *column {
            "code" | "name" if spreadsheet_safe => {
                let starts = FORMULA_STARTS
                    .iter()
                    .map(|start| format!("E'{start}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "CASE WHEN left({column}, 1) IN ({starts}) THEN '''' || {column} \
                     ELSE {column} END AS {column}"
                )
            }
            column => column.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes every station, ordered by id, to `out`; returns how many. `spreadsheet_safe` (CSV
/// only) defuses cells a spreadsheet would run as formulas; without it the export is exact,
/// for `import` to read back.
pub async fn run(
    db: &DatabaseConnection,
    format: Format,
    spreadsheet_safe: bool,
    out: &mut (dyn Write + Send),
) -> Result<u64, ExportError> {
    let mut connection = db.get_postgres_connection_pool().acquire().await?;
    // One snapshot for the count and the rows.
    let mut transaction = connection.begin().await?;
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM stations")
        .fetch_one(&mut *transaction)
        .await?;

    match format {
        Format::Csv => {
            // PostgreSQL writes the CSV itself, quoting as needed; floats in their shortest
            // exact form, so that an import reads back the same values.
            let statement = format!(
                "COPY (SELECT {} FROM stations ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)",
                csv_columns(spreadsheet_safe)
            );
            let mut chunks = transaction.copy_out_raw(&statement).await?;
            while let Some(chunk) = chunks.try_next().await? {
                out.write_all(&chunk)?;
            }
        }
        Format::GeoJson => {
            out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
            let mut rows = sqlx::query_as::<_, (String, String, f64, f64, Option<f64>)>(
                "SELECT code, name, lat, lng, elevation_m FROM stations ORDER BY id",
            )
            .fetch(&mut *transaction);
            let mut first = true;
            while let Some((code, name, lat, lng, elevation_m)) = rows.try_next().await? {
                if !first {
                    out.write_all(b",\n")?;
                }
                first = false;
                let feature = json!({
                    "type": "Feature",
                    "geometry": { "type": "Point", "coordinates": [lng, lat] },
                    "properties": { "code": code, "name": name, "elevation_m": elevation_m },
                });
                serde_json::to_writer(&mut *out, &feature).map_err(std::io::Error::from)?;
            }
            out.write_all(b"\n]}\n")?;
        }
    }
    out.flush()?;
    transaction.commit().await?;
    Ok(count as u64)
}

/// `stations-api export`: every station, to a file or standard output.
pub async fn command(
    format: Option<Format>,
    spreadsheet_safe: bool,
    file: Option<PathBuf>,
) -> Result<String, Failure> {
    let settings = load_settings()?;
    let format = format
        .or_else(|| file.as_deref().and_then(Format::from_path))
        .unwrap_or(Format::Csv);
    if spreadsheet_safe && format != Format::Csv {
        return Err(Failure::usage(
            "--spreadsheet-safe is for CSV: GeoJSON is not opened as a spreadsheet",
        ));
    }
    let db = connect(&settings).await?;
    let mut out: Box<dyn std::io::Write + Send> = match &file {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|error| {
                Failure::runtime(format!("cannot create {}: {error}", path.display()))
            })?,
        )),
        _ => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let count = run(&db, format, spreadsheet_safe, &mut out)
        .await
        .map_err(Failure::runtime)?;
    tracing::info!(stations = count, "exported");
    Ok(String::new())
}
