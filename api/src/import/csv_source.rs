//! CSV with the header `code,name,lat,lng,elevation_m` (any order; `elevation_m` optional),
//! read one record at a time. Each record comes with its line number and its bytes exactly as
//! they stand in the file, so that a rejected record can be set aside verbatim.

use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

use super::EachRecord;
use super::records::{Fields, number_from_text};

/// The columns a file may have, in the order `export` writes them.
pub const COLUMNS: [&str; 5] = ["code", "name", "lat", "lng", "elevation_m"];
const REQUIRED: [&str; 4] = ["code", "name", "lat", "lng"];

/// The header line of the CSV file at `path`, verbatim, once checked.
pub fn header(path: &Path) -> Result<Vec<u8>, String> {
    let mut reader = open(path)?;
    let header = headers(&mut reader)?;
    column_indexes(&header)?;
    Ok(reader.get_ref().slice(0, reader.position().byte()).to_vec())
}

/// Hands every record of the CSV file at `path` to `each`: its line, its verbatim bytes, and
/// its fields (`Err` when the record itself is malformed). `each` returns false to stop.
pub fn read(
    path: &Path,
    each: &mut EachRecord<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let mut reader = open(path)?;
    let header = headers(&mut reader)?;
    let columns = column_indexes(&header)?;

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
        let fields = fields_of(&record, &columns, header.len());
        let keep_going = each(line, reader.get_ref().slice(begin, end), fields);
        reader.get_mut().forget_before(end);
        progress(end);
        if !keep_going {
            break;
        }
    }
    Ok(())
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

/// Where each known column is in the file.
struct ColumnIndexes {
    code: usize,
    name: usize,
    lat: usize,
    lng: usize,
    elevation_m: Option<usize>,
}

fn column_indexes(header: &csv::ByteRecord) -> Result<ColumnIndexes, String> {
    let names: Vec<String> = header
        .iter()
        .map(|name| {
            String::from_utf8_lossy(name)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !COLUMNS.contains(name))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown column(s) {}: the header must be {}",
            unknown.join(", "),
            COLUMNS.join(",")
        ));
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|column| !names.iter().any(|name| name == column))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing column(s) {}: the header must be {}",
            missing.join(", "),
            COLUMNS.join(",")
        ));
    }
    let position = |column: &str| names.iter().position(|name| name == column);
    if let Some(repeated) = COLUMNS
        .iter()
        .find(|column| names.iter().filter(|name| name == column).count() > 1)
    {
        return Err(format!("the column {repeated} appears twice in the header"));
    }
    Ok(ColumnIndexes {
        code: position("code").unwrap_or_default(),
        name: position("name").unwrap_or_default(),
        lat: position("lat").unwrap_or_default(),
        lng: position("lng").unwrap_or_default(),
        elevation_m: position("elevation_m"),
    })
}

fn fields_of<'a>(
    record: &'a csv::ByteRecord,
    columns: &ColumnIndexes,
    width: usize,
) -> Result<Fields<'a>, String> {
    if record.len() != width {
        return Err(format!(
            "has {} fields where the header has {width}",
            record.len()
        ));
    }
    let text = |index: usize| -> Result<&'a str, String> {
        std::str::from_utf8(record.get(index).unwrap_or_default())
            .map_err(|_| format!("field {} is not valid UTF-8", index + 1))
    };
    Ok(Fields {
        code: Some(text(columns.code)?.into()),
        name: Some(text(columns.name)?.into()),
        lat: number_from_text(text(columns.lat)?),
        lng: number_from_text(text(columns.lng)?),
        elevation_m: match columns.elevation_m {
            Some(index) => number_from_text(text(index)?),
            None => Ok(None),
        },
    })
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
