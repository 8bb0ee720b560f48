//! CSV files read one record at a time, for any layout of named columns (stations,
//! observations). Each record comes with its line number and its bytes exactly as they stand in
//! the file, so that a rejected record can be set aside verbatim.

use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

use super::EachRecord;
use super::records::{Fields, number_from_text};

/// The columns a kind of file may have (in the order `export` writes them) and those it must.
pub struct Layout {
    pub columns: &'static [&'static str],
    pub required: &'static [&'static str],
}

/// Stations: `code,name,lat,lng,elevation_m` in any order, `elevation_m` optional.
pub const STATIONS: Layout = Layout {
    columns: &COLUMNS,
    required: &["code", "name", "lat", "lng"],
};

/// The columns a station file may have, in the order `export` writes them.
pub const COLUMNS: [&str; 5] = ["code", "name", "lat", "lng", "elevation_m"];

/// One record: its fields, found by the layout's column numbers.
pub struct Row<'a> {
    record: &'a csv::ByteRecord,
    /// For each column of the layout, where it is in the file.
    positions: &'a [Option<usize>],
}

impl<'a> Row<'a> {
    /// The text of the layout's column `column`; `None` when the file has no such column.
    pub fn text(&self, column: usize) -> Result<Option<&'a str>, String> {
        let Some(Some(position)) = self.positions.get(column) else {
            return Ok(None);
        };
        std::str::from_utf8(self.record.get(*position).unwrap_or_default())
            .map(Some)
            .map_err(|_| format!("field {} is not valid UTF-8", position + 1))
    }
}

/// The header line of the CSV file at `path`, verbatim, once checked against `layout`.
pub fn header(path: &Path, layout: &Layout) -> Result<Vec<u8>, String> {
    let mut reader = open(path)?;
    let header = headers(&mut reader)?;
    column_positions(&header, layout)?;
    Ok(reader.get_ref().slice(0, reader.position().byte()).to_vec())
}

/// What [`read_rows`] hands over for each record: its line, its bytes verbatim, and its row or
/// why the record is malformed. Returning false stops the reading.
pub type EachRow<'a> = dyn FnMut(u64, &[u8], Result<Row<'_>, String>) -> bool + 'a;

/// Hands every record of the CSV file at `path` to `each`. `each` returns false to stop.
pub fn read_rows(
    path: &Path,
    layout: &Layout,
    each: &mut EachRow<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let mut reader = open(path)?;
    let header = headers(&mut reader)?;
    let positions = column_positions(&header, layout)?;

    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().clone();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(format!("line {}: {error}", start.line())),
        }
        let line = record.position().map_or(start.line(), csv::Position::line);
        let begin = record.position().map_or(start.byte(), csv::Position::byte);
        let end = reader.position().byte();
        let row = if record.len() == header.len() {
            Ok(Row {
                record: &record,
                positions: &positions,
            })
        } else {
            Err(format!(
                "has {} fields where the header has {}",
                record.len(),
                header.len()
            ))
        };
        let keep_going = each(line, reader.get_ref().slice(begin, end), row);
        reader.get_mut().forget_before(end);
        progress(end);
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// Hands every station of the CSV file at `path` to `each`.
pub fn read(
    path: &Path,
    each: &mut EachRecord<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    read_rows(
        path,
        &STATIONS,
        &mut |line, raw, row| each(line, raw, row.and_then(|row| station_fields(&row))),
        progress,
    )
}

fn station_fields<'a>(row: &Row<'a>) -> Result<Fields<'a>, String> {
    let number = |column: usize| -> Result<_, String> {
        Ok(match row.text(column)? {
            Some(text) => number_from_text(text),
            None => Ok(None),
        })
    };
    Ok(Fields {
        code: row.text(0)?.map(Into::into),
        name: row.text(1)?.map(Into::into),
        lat: number(2)?,
        lng: number(3)?,
        elevation_m: number(4)?,
    })
}

fn open(path: &Path) -> Result<csv::Reader<Tee<File>>, String> {
    let file =
        File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(Tee::new(file)))
}

fn headers(reader: &mut csv::Reader<Tee<File>>) -> Result<csv::ByteRecord, String> {
    reader
        .byte_headers()
        .cloned()
        .map_err(|error| format!("cannot read the CSV header: {error}"))
}

/// Where each column of `layout` is in the file, refusing unknown, missing or repeated ones.
fn column_positions(
    header: &csv::ByteRecord,
    layout: &Layout,
) -> Result<Vec<Option<usize>>, String> {
    let names: Vec<String> = header
        .iter()
        .map(|name| {
            String::from_utf8_lossy(name)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    let expected = layout.columns.join(",");
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !layout.columns.contains(name))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown column(s) {}: the header must be {expected}",
            unknown.join(", ")
        ));
    }
    let missing: Vec<&str> = layout
        .required
        .iter()
        .copied()
        .filter(|column| !names.iter().any(|name| name == column))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing column(s) {}: the header must be {expected}",
            missing.join(", ")
        ));
    }
    if let Some(repeated) = layout
        .columns
        .iter()
        .find(|column| names.iter().filter(|name| name == column).count() > 1)
    {
        return Err(format!("the column {repeated} appears twice in the header"));
    }
    Ok(layout
        .columns
        .iter()
        .map(|column| names.iter().position(|name| name == column))
        .collect())
}

/// A reader that keeps what it has read since the last `forget_before`, so that the bytes of
/// the record just parsed can be copied out verbatim.
struct Tee<R> {
    inner: R,
    kept: Vec<u8>,
    /// File offset of `kept[0]`.
    kept_from: u64,
}

impl<R> Tee<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            kept: Vec::new(),
            kept_from: 0,
        }
    }

    fn slice(&self, begin: u64, end: u64) -> &[u8] {
        let from = begin.saturating_sub(self.kept_from) as usize;
        let to = end.saturating_sub(self.kept_from) as usize;
        self.kept
            .get(from..to.min(self.kept.len()))
            .unwrap_or_default()
    }

    /// Drops bytes before `offset`, in large steps: shifting the buffer after every record
    /// would cost a copy of it each time.
    fn forget_before(&mut self, offset: u64) {
        const STEP: usize = 1 << 20;
        let forgettable = offset.saturating_sub(self.kept_from) as usize;
        if forgettable >= STEP {
            self.kept.drain(..forgettable);
            self.kept_from = offset;
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.kept.extend_from_slice(&buffer[..read]);
        Ok(read)
    }
}
