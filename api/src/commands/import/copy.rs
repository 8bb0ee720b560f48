//! The pipeline every import runs: a reader thread validates the input and encodes each valid
//! record as a line of `COPY` text, in chunks, while the async side sends the chunks before it
//! into a staging table with `COPY ... FROM STDIN`; bad records go to the reject file, or to
//! the list a refusal shows.

use sea_orm::sqlx::PgConnection;
use tokio::sync::mpsc;

use super::rejects::RejectWriter;
use super::{BadRow, ImportError, LISTED_BAD_ROWS, Progress};

/// Encoded rows are sent to PostgreSQL in chunks of about this many bytes.
const CHUNK_BYTES: usize = 256 * 1024;

/// A record as a line of `COPY` text.
pub trait CopyLine {
    /// Appends the line of the record at `position` (its line or feature number).
    fn encode(&self, position: u64, buffer: &mut String);
}

/// Runs `copy` (a `COPY ... FROM STDIN`) with the chunks `produce` sends from a thread of its
/// own, which reads and validates the input while PostgreSQL stores what came before. When
/// either side fails, the COPY is aborted and the error is the first one.
pub async fn copy_in<R: Send + 'static>(
    connection: &mut PgConnection,
    copy: &'static str,
    produce: impl FnOnce(&mpsc::Sender<String>) -> Result<R, ImportError> + Send + 'static,
) -> Result<R, ImportError> {
    let (chunks_tx, mut chunks) = mpsc::channel::<String>(4);
    let producer = tokio::task::spawn_blocking(move || produce(&chunks_tx));
    let mut copy = connection.copy_in_raw(copy).await?;
    let mut sent = Ok(());
    while let Some(chunk) = chunks.recv().await {
        if let Err(error) = copy.send(chunk.into_bytes()).await {
            sent = Err(error);
            break;
        }
    }
    // Closing the channel tells the producer to stop, should sending have failed.
    drop(chunks);
    let produced = producer
        .await
        .map_err(|error| ImportError::File(format!("the file reader stopped: {error}")))?;
    match (sent, produced) {
        (Ok(()), Ok(produced)) => {
            copy.finish().await?;
            Ok(produced)
        }
        (Err(error), _) => {
            let _ = copy.abort("import failed").await;
            Err(error.into())
        }
        (Ok(()), Err(error)) => {
            let _ = copy.abort("import failed").await;
            Err(error)
        }
    }
}

/// The reader thread's side of the COPY: each record taken, valid or not.
pub struct Feed<'a> {
    chunks: &'a mpsc::Sender<String>,
    progress: &'a Progress,
    buffer: String,
    rows_in_buffer: u64,
    fed: Fed,
    /// The COPY stopped taking chunks: it failed, and says why.
    stopped: bool,
    reject_error: Option<ImportError>,
}

/// What a feed took.
pub struct Fed {
    /// Rows sent to `COPY`.
    pub valid: u64,
    /// The first bad records, when there is no reject file.
    pub bad: Vec<BadRow>,
    pub bad_total: u64,
    pub rejects: Option<RejectWriter>,
}

impl<'a> Feed<'a> {
    pub fn new(
        chunks: &'a mpsc::Sender<String>,
        progress: &'a Progress,
        rejects: Option<RejectWriter>,
    ) -> Self {
        Self {
            chunks,
            progress,
            buffer: String::with_capacity(CHUNK_BYTES + 1024),
            rows_in_buffer: 0,
            fed: Fed {
                valid: 0,
                bad: Vec::new(),
                bad_total: 0,
                rejects,
            },
            stopped: false,
            reject_error: None,
        }
    }

    /// Takes the record at `position`, whose bytes are `raw`: encoded for the COPY when valid,
    /// set aside with why when not. False when reading should stop.
    pub fn take(
        &mut self,
        position: u64,
        raw: &[u8],
        record: Result<impl CopyLine, String>,
    ) -> bool {
        match record {
            Ok(record) => {
                record.encode(position, &mut self.buffer);
                self.fed.valid += 1;
                self.rows_in_buffer += 1;
                if self.buffer.len() >= CHUNK_BYTES {
                    self.progress.add_rows(self.rows_in_buffer);
                    self.rows_in_buffer = 0;
                    let chunk = std::mem::replace(
                        &mut self.buffer,
                        String::with_capacity(CHUNK_BYTES + 1024),
                    );
                    if self.chunks.blocking_send(chunk).is_err() {
                        self.stopped = true;
                        return false;
                    }
                }
            }
            Err(reason) => {
                self.fed.bad_total += 1;
                self.progress.add_rows(1);
                match self.fed.rejects.as_mut() {
                    Some(writer) => {
                        if let Err(error) = writer.write(raw) {
                            self.reject_error = Some(writer.error(error));
                            return false;
                        }
                    }
                    None if self.fed.bad.len() < LISTED_BAD_ROWS => {
                        self.fed.bad.push(BadRow { position, reason });
                    }
                    None => {}
                }
            }
        }
        true
    }

    /// Sends what is left, and says what was taken.
    pub fn finish(self) -> Result<Fed, ImportError> {
        if let Some(error) = self.reject_error {
            return Err(error);
        }
        if !self.stopped && !self.buffer.is_empty() {
            self.progress.add_rows(self.rows_in_buffer);
            let _ = self.chunks.blocking_send(self.buffer);
        }
        Ok(self.fed)
    }
}
