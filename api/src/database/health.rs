//! Whether the database can be reached, as requests find out, with a watcher that notices
//! when it can be reached again.
//!
//! While it is down, requests fail at once with SERVICE_UNAVAILABLE instead of each waiting
//! for the pool's timeout, and the log says so once, not once per request.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::probe;
use crate::configuration::DatabaseSettings;

/// How often the watcher tries the database while it is down.
const PROBE_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct DatabaseHealth {
    down: AtomicBool,
    changed: Notify,
}

impl DatabaseHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// A request found no database connection: the database may be down, or only busy. The
    /// watcher finds out which with a connection of its own.
    pub fn report_trouble(&self) {
        self.changed.notify_one();
    }

    /// Runs for the life of the server: when trouble is reported, tries a connection; if that
    /// fails, marks the database down, says why once, tries again every half second until it
    /// answers, and says that too. A database that was only busy is never marked down.
    pub async fn watch(self: Arc<Self>, settings: DatabaseSettings) {
        loop {
            self.changed.notified().await;
            let since = Instant::now();
            let mut explained = false;
            loop {
                match probe(&settings).await {
                    Ok(connection) => {
                        let _ = sea_orm::sqlx::Connection::close(connection).await;
                        self.down.store(false, Ordering::Relaxed);
                        if explained {
                            tracing::info!(
                                after_secs = since.elapsed().as_secs(),
                                "the database is reachable again"
                            );
                        }
                        break;
                    }
                    Err(error) => {
                        self.down.store(true, Ordering::Relaxed);
                        if !explained {
                            tracing::error!(
                                "the database is unreachable; requests fail with \
                                 SERVICE_UNAVAILABLE until it answers: {}",
                                error.diagnosis.problem
                            );
                            explained = true;
                        }
                        tokio::time::sleep(PROBE_EVERY).await;
                    }
                }
            }
        }
    }
}
