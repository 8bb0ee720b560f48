//! Batch loaders: what the resolvers of a list's rows ask for one row at a time, fetched for
//! all of them in one statement.
//!
//! `stations(first: 50) { edges { node { latestObservation { ... } } } }` resolves fifty
//! `latestObservation` fields; each asks async-graphql's `DataLoader` for its station's key, the
//! loader collects the keys the fifty ask for and calls [`Loader::load`] once with all of them.
//! One statement per level of the query, whatever the page size: no N+1.
//!
//! Why `DataLoader` rather than prefetching in the list's own resolver (looking ahead at the
//! selection and joining there): it reads as one small function per relation, works wherever a
//! `Station` or an `Observation` appears (a page, a single station, an observation's station,
//! a subscription's event), and measured the same (`bench/run`, scenario
//! `stations_latest_observation`). The loader is shared by every request of the schema and
//! caches nothing, so no request sees another's stale rows.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use entity::{observation, station};
use sea_orm::{DatabaseConnection, EntityTrait, QueryFilter};

use crate::error::ApiError;
use crate::service::observation::{
    self as observations, ObservationPage, Summary, TimeRange, Window,
};

/// The loaders' one connection pool.
pub struct Batches {
    db: DatabaseConnection,
}

impl Batches {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// A station, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StationById(pub i32);

/// A station's latest observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatestObservationOf(pub i32);

/// One page of a station's observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObservationsOf {
    pub station_id: i32,
    pub window: Window,
}

/// The summary of a station's observations in a time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SummaryOf {
    pub station_id: i32,
    pub range: TimeRange,
}

/// A database failure, as every waiting resolver gets it (logged once, here).
fn failure(error: sea_orm::DbErr) -> async_graphql::Error {
    ApiError::from(error).into()
}

impl Loader<StationById> for Batches {
    type Value = station::Model;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[StationById],
    ) -> Result<HashMap<StationById, Self::Value>, Self::Error> {
        use sea_orm::ColumnTrait;
        let ids = keys.iter().map(|key| key.0);
        let rows = station::Entity::find()
            .filter(station::Column::Id.is_in(ids))
            .all(&self.db)
            .await
            .map_err(failure)?;
        Ok(rows
            .into_iter()
            .map(|row| (StationById(row.id), row))
            .collect())
    }
}

impl Loader<LatestObservationOf> for Batches {
    type Value = observation::Model;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[LatestObservationOf],
    ) -> Result<HashMap<LatestObservationOf, Self::Value>, Self::Error> {
        let ids = keys.iter().map(|key| key.0).collect();
        let rows = observations::latest(&self.db, ids).await.map_err(failure)?;
        Ok(rows
            .into_iter()
            .map(|row| (LatestObservationOf(row.station_id), row))
            .collect())
    }
}

impl Loader<ObservationsOf> for Batches {
    type Value = ObservationPage;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[ObservationsOf],
    ) -> Result<HashMap<ObservationsOf, Self::Value>, Self::Error> {
        // Keys asking for different windows (aliases with other arguments) need a statement
        // each; usually there is one window.
        let mut by_window: HashMap<Window, Vec<i32>> = HashMap::new();
        for key in keys {
            by_window
                .entry(key.window)
                .or_default()
                .push(key.station_id);
        }
        let mut loaded = HashMap::with_capacity(keys.len());
        for (window, station_ids) in by_window {
            let mut pages = observations::pages(&self.db, station_ids.clone(), window)
                .await
                .map_err(failure)?;
            for station_id in station_ids {
                let page = pages.remove(&station_id).unwrap_or_default();
                loaded.insert(ObservationsOf { station_id, window }, page);
            }
        }
        Ok(loaded)
    }
}

impl Loader<SummaryOf> for Batches {
    type Value = Summary;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[SummaryOf],
    ) -> Result<HashMap<SummaryOf, Self::Value>, Self::Error> {
        let mut by_range: HashMap<TimeRange, Vec<i32>> = HashMap::new();
        for key in keys {
            by_range.entry(key.range).or_default().push(key.station_id);
        }
        let mut loaded = HashMap::with_capacity(keys.len());
        for (range, station_ids) in by_range {
            let summaries = observations::summaries(&self.db, station_ids, range)
                .await
                .map_err(failure)?;
            for (station_id, summary) in summaries {
                loaded.insert(SummaryOf { station_id, range }, summary);
            }
        }
        Ok(loaded)
    }
}
