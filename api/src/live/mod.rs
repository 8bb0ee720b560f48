//! Live updates: every committed change to stations and observations, as this replica hears it
//! from PostgreSQL, fanned out to its subscribers.
//!
//! PostgreSQL is the one source of truth and its LISTEN/NOTIFY the fan-out between replicas:
//! the tables' triggers announce each committed write (migration `notify_live_changes`), each
//! replica holds one listening connection ([`listener`]), reads the changed rows back once, and
//! publishes them on [`LiveHub`], a bounded broadcast that every subscription of the replica
//! reads. A subscriber that falls more than the buffer behind is dropped, not waited for.

pub mod connection;
pub mod listener;
pub mod socket;
pub mod subscription_limit;

use std::{collections::HashMap, sync::Arc};

use entity::{observation, station};
use tokio::sync::broadcast;

/// What happened to a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// Where a changed station is, and was: what subscription filters look at. Its row, when it
/// still exists, is read back separately.
#[derive(Debug, Clone, PartialEq)]
pub struct StationTrace {
    pub id: i32,
    pub code: String,
    pub lat: f64,
    pub lng: f64,
    /// Before an update: code, latitude and longitude.
    pub before: Option<(String, f64, f64)>,
}

/// One thing subscribers hear about.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// Stations written by one statement of a committed transaction.
    Stations {
        kind: ChangeKind,
        traces: Vec<StationTrace>,
        /// The rows as they are now, by id (none for deleted ones).
        rows: HashMap<i32, station::Model>,
    },
    /// Observations inserted by one statement of a committed transaction.
    Observations { rows: Vec<observation::Model> },
    /// Too many changes to announce one by one (a bulk import), or changes that may have been
    /// missed (the listening connection was lost): re-read. `None`: about everything.
    Resync {
        /// Stations whose observations changed, when only observations did.
        observations_of: Option<Vec<i32>>,
        /// Whether stations themselves may have changed.
        stations: bool,
    },
}

impl LiveEvent {
    /// Everything may have changed.
    pub fn resync_all() -> Self {
        Self::Resync {
            observations_of: None,
            stations: true,
        }
    }
}

/// The replica's broadcast of live events.
pub struct LiveHub {
    sender: broadcast::Sender<Arc<LiveEvent>>,
}

impl LiveHub {
    /// A hub where a subscriber may fall `buffer` events behind before it is dropped.
    pub fn new(buffer: usize) -> Self {
        Self {
            sender: broadcast::Sender::new(buffer.max(1)),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }

    /// Whether anyone on this replica subscribes: with no one, changes need not be read back.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Sends `event` to every subscription of this replica; how many it reached.
    pub fn publish(&self, event: LiveEvent) -> usize {
        // No subscriber is no error: nobody listens right now.
        self.sender.send(Arc::new(event)).unwrap_or(0)
    }
}
