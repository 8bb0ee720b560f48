//! Whether the database can be reached, as requests find out, with a watcher that checks at
//! once when a request meets trouble and notices when it can be reached again.
//!
//! While it is down, operations fail at once with SERVICE_UNAVAILABLE instead of each waiting
//! for the pool's timeout (the pool retries a refused connection until then), operations
//! already waiting are released with the same answer, and the log says so once, not once per
//! request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::configuration::DatabaseSettings;
use crate::database::probe;

/// How often the watcher tries the database while it is down.
const PROBE_EVERY: Duration = Duration::from_millis(500);

pub struct DatabaseHealth {
    /// Read on every request; mirrors `changes`.
    down: AtomicBool,
    /// For operations that wait: they learn at once that the database went down.
    changes: watch::Sender<bool>,
    trouble: Notify,
}

impl Default for DatabaseHealth {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            changes: watch::Sender::new(false),
            trouble: Notify::new(),
        }
    }
}

impl DatabaseHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Completes when the database is found down (at once if it is already).
    pub async fn went_down(&self) {
        let mut changes = self.changes.subscribe();
        if changes.wait_for(|down| *down).await.is_err() {
            // The health record is gone with the server: nothing will ever be found down.
            std::future::pending::<()>().await;
        }
    }

    /// A request found no usable database connection: the database may be down, or only
    /// busy. The watcher finds out which with a connection of its own.
    pub fn report_trouble(&self) {
        self.trouble.notify_one();
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
        self.changes.send_if_modified(|current| {
            let changed = *current != down;
            *current = down;
            changed
        });
    }

    /// Runs for the life of the server: when trouble is reported, tries a connection; if that
    /// fails, marks the database down, says why once, tries again every half second until it
    /// answers, and says that too. A database that was only busy is never marked down.
    pub async fn watch(self: Arc<Self>, settings: DatabaseSettings) {
        loop {
            self.trouble.notified().await;
            let since = Instant::now();
            let mut explained = false;
            loop {
                match probe(&settings).await {
                    Ok(connection) => {
                        let _ = sea_orm::sqlx::Connection::close(connection).await;
                        self.set_down(false);
                        if explained {
                            tracing::info!(
                                after_secs = since.elapsed().as_secs(),
                                "the database is reachable again"
                            );
                        }
                        break;
                    }
                    Err(error) => {
                        self.set_down(true);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_operations_learn_at_once_that_the_database_went_down() {
        let health = Arc::new(DatabaseHealth::default());
        let waiting = tokio::spawn({
            let health = Arc::clone(&health);
            async move { health.went_down().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        health.set_down(true);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released as soon as the database is down")
            .unwrap();
        assert!(health.is_down());
        // Already down: no wait at all.
        tokio::time::timeout(Duration::from_millis(10), health.went_down())
            .await
            .unwrap();
    }
}
