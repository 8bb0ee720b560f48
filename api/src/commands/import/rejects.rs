//! The reject file: the records an import set aside, verbatim, in the input's own format, so
//! that it can be corrected and imported again.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use super::{Format, ImportError};

pub struct RejectWriter {
    path: PathBuf,
    file: BufWriter<File>,
    format: Format,
    /// The CSV header, written before the first record (it is only known once reading began).
    header: Option<Vec<u8>>,
    written: u64,
}

impl RejectWriter {
    pub fn create(path: &Path, format: Format) -> io::Result<Self> {
        let mut file = BufWriter::new(File::create(path)?);
        if format == Format::GeoJson {
            file.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            format,
            header: None,
            written: 0,
        })
    }

    pub fn set_header(&mut self, header: &[u8]) {
        self.header = Some(header.to_vec());
    }

    pub fn write(&mut self, raw: &[u8]) -> io::Result<()> {
        match self.format {
            Format::Csv => {
                if self.written == 0
                    && let Some(header) = self.header.take()
                {
                    write_line(&mut self.file, &header)?;
                }
                write_line(&mut self.file, raw)?;
            }
            Format::GeoJson => {
                if self.written > 0 {
                    self.file.write_all(b",\n")?;
                }
                self.file.write_all(raw)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// The error to report for `error`, naming this file.
    pub fn error(&self, error: io::Error) -> ImportError {
        ImportError::RejectFile {
            path: self.path.clone(),
            error,
        }
    }

    pub fn finish(mut self) -> Result<(), (PathBuf, io::Error)> {
        let mut finish = || -> io::Result<()> {
            if self.format == Format::GeoJson {
                self.file.write_all(b"\n]}\n")?;
            } else if self.written == 0
                && let Some(header) = self.header.take()
            {
                write_line(&mut self.file, &header)?;
            }
            self.file.flush()
        };
        finish().map_err(|error| (self.path.clone(), error))
    }
}

/// `raw`, ending with exactly the line break it had, or `\n` when it had none.
fn write_line(file: &mut impl Write, raw: &[u8]) -> io::Result<()> {
    file.write_all(raw)?;
    if !raw.ends_with(b"\n") {
        file.write_all(b"\n")?;
    }
    Ok(())
}
