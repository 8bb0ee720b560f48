//! What subscriptions deliver: changes to stations, recorded observations, and RESYNC, the
//! event that says changes may have been missed and the client should read again.

use async_graphql::{Enum, ID, InputObject, SimpleObject};

use super::observation::Observation;
use super::station::{Station, list::BoundingBox};
use crate::error::ApiError;
use crate::graphql::types::Filter;
use crate::live::{ChangeKind, StationTrace};
use crate::service::station::BoundingBox as Area;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum StationChangeKind {
    Created,
    Updated,
    Deleted,
    /// Changes may have been missed (the server lost its connection to the database for a
    /// moment, or a bulk import wrote too many to announce one by one): read the stations you
    /// show again.
    Resync,
}

impl From<ChangeKind> for StationChangeKind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Created => Self::Created,
            ChangeKind::Updated => Self::Updated,
            ChangeKind::Deleted => Self::Deleted,
        }
    }
}

/// A change to one station, announced once its transaction committed.
#[derive(Debug, Clone, SimpleObject)]
pub struct StationChange {
    pub kind: StationChangeKind,
    /// The station's id; null for RESYNC.
    pub id: Option<ID>,
    /// The station as it is now; null when it was deleted, and for RESYNC.
    pub station: Option<Station>,
}

impl StationChange {
    pub fn resync() -> Self {
        Self {
            kind: StationChangeKind::Resync,
            id: None,
            station: None,
        }
    }
}

/// Which station changes to deliver. Every criterion given must match; a change matches when
/// the station matched before it or matches after it (a station moving out of the box is
/// reported too).
#[derive(Debug, Clone, Default, InputObject)]
pub struct StationChangeFilter {
    /// Only these station codes.
    pub codes: Option<Vec<String>>,
    /// Only stations inside this box.
    pub bbox: Option<BoundingBox>,
}

/// A validated [`StationChangeFilter`].
#[derive(Debug, Clone, Default)]
pub struct StationWatch {
    codes: Option<Vec<String>>,
    area: Option<Area>,
}

impl Filter for StationChangeFilter {
    type Criteria = StationWatch;

    fn validate(self, path: &str) -> Result<StationWatch, ApiError> {
        Ok(StationWatch {
            codes: self.codes,
            area: self
                .bbox
                .map(|bbox| bbox.validate(&format!("{path}.bbox")))
                .transpose()?,
        })
    }
}

impl StationWatch {
    /// Whether `trace` is a change this watch asks for.
    pub fn matches(&self, trace: &StationTrace) -> bool {
        let place = |code: &str, lat: f64, lng: f64| {
            self.codes
                .as_ref()
                .is_none_or(|codes| codes.iter().any(|wanted| wanted == code))
                && self.area.is_none_or(|area| area.contains(lat, lng))
        };
        place(&trace.code, trace.lat, trace.lng)
            || trace
                .before
                .as_ref()
                .is_some_and(|(code, lat, lng)| place(code, *lat, *lng))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ObservationEventKind {
    Recorded,
    /// Observations may have been missed (a lost database connection, a bulk import): read the
    /// stations' observations again.
    Resync,
}

/// An observation recorded once its transaction committed, or a RESYNC.
#[derive(Debug, Clone, SimpleObject)]
pub struct ObservationEvent {
    pub kind: ObservationEventKind,
    /// The new observation; null for RESYNC.
    pub observation: Option<Observation>,
}
