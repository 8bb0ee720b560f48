//! Batch loaders: what the resolvers of a list's rows ask for one row at a time, fetched for
//! all of them in one statement.
//!
//! `stations(first: 50) { edges { node { latestObservation { ... } } } }` resolves fifty
//! `latestObservation` fields. Each asks [`load_one`] for its station's key; the first to ask
//! yields once, which lets the other forty-nine (polled in the same pass by async-graphql's
//! list resolution) add their keys, then calls [`Loader::load`] once with all of them and
//! shares the answer. One statement per level of the query, whatever the page size: no N+1.
//!
//! Why not async-graphql's own `DataLoader`: it gathers keys for a fixed delay (1 ms by
//! default) and then loads on another task, so a request that does not get the CPU within that
//! delay splits its batch. Under the test suite's load, the statement-count test
//! (`round_trips.rs`) saw 4 statements where 3 belong, every time; gathering by poll instead of
//! by clock is deterministic and adds no latency. The loaders themselves implement
//! async-graphql's `Loader` trait, one small function per relation, and work wherever a
//! `Station` or an `Observation` appears.

use std::{
    any::{Any, TypeId},
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::{Context, dataloader::Loader};
use entity::{observation, station};
use sea_orm::{DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::service::observation::{
    self as observations, ObservationPage, Summary, TimeRange, Window,
};

/// The loaders: one statement for many keys.
pub struct Batches {
    db: DatabaseConnection,
}

impl Batches {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// Loads `key` through this operation's batches, or alone where there are none (the fields
/// of a subscription's event, which resolve one object at a time).
pub async fn load_one<K>(
    ctx: &Context<'_>,
    key: K,
) -> async_graphql::Result<Option<<Batches as Loader<K>>::Value>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    Batches: Loader<K, Error = async_graphql::Error>,
{
    if let Some(batches) = ctx.data_opt::<OperationBatches>() {
        return batches.load_one(key).await;
    }
    let loader = ctx.data::<Arc<Batches>>()?;
    let mut loaded = loader.load(std::slice::from_ref(&key)).await?;
    Ok(loaded.remove(&key))
}

/// The batches of one operation: for each kind of key, the keys asked for since the last load.
pub struct OperationBatches {
    loader: Arc<Batches>,
    open: Mutex<HashMap<TypeId, Box<dyn Any + Send>>>,
}

/// The keys of one batch not loaded yet, and where its answer will be.
struct Open<K, V> {
    keys: HashSet<K>,
    answer: Arc<Answer<K, V>>,
}

/// What a batch loaded, by key; `None` when its loader was dropped unfinished.
type Outcome<K, V> = Option<Result<Arc<HashMap<K, V>>, async_graphql::Error>>;

/// A batch's answer, once loaded.
struct Answer<K, V> {
    loaded: OnceLock<Outcome<K, V>>,
    ready: Notify,
}

impl<K, V> Answer<K, V> {
    fn set(&self, outcome: Outcome<K, V>) {
        let _ = self.loaded.set(outcome);
        self.ready.notify_waiters();
    }
}

/// Completes the batch as abandoned if its loader is dropped before loading it (the operation
/// was cancelled), so that no one waits for it forever.
struct Leader<K, V>(Arc<Answer<K, V>>);

impl<K, V> Drop for Leader<K, V> {
    fn drop(&mut self) {
        if self.0.loaded.get().is_none() {
            self.0.set(None);
        }
    }
}

impl OperationBatches {
    pub fn new(loader: Arc<Batches>) -> Self {
        Self {
            loader,
            open: Mutex::default(),
        }
    }

    async fn load_one<K>(
        &self,
        key: K,
    ) -> async_graphql::Result<Option<<Batches as Loader<K>>::Value>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        Batches: Loader<K, Error = async_graphql::Error>,
    {
        type Batch<K> = Option<Open<K, <Batches as Loader<K>>::Value>>;
        let (answer, leading) = {
            let mut open = self
                .open
                .lock()
                .map_err(|_| async_graphql::Error::new("a batch loader failed"))?;
            let batch = open
                .entry(TypeId::of::<K>())
                .or_insert_with(|| Box::new(Batch::<K>::None))
                .downcast_mut::<Batch<K>>()
                .ok_or_else(|| async_graphql::Error::new("a batch loader failed"))?;
            match batch {
                Some(open) => {
                    open.keys.insert(key.clone());
                    (Arc::clone(&open.answer), false)
                }
                None => {
                    let answer = Arc::new(Answer {
                        loaded: OnceLock::new(),
                        ready: Notify::new(),
                    });
                    *batch = Some(Open {
                        keys: HashSet::from([key.clone()]),
                        answer: Arc::clone(&answer),
                    });
                    (answer, true)
                }
            }
        };
        if leading {
            let leader = Leader(Arc::clone(&answer));
            // The other fields of this pass add their keys before the batch closes.
            tokio::task::yield_now().await;
            let keys: Vec<K> = {
                let mut open = self
                    .open
                    .lock()
                    .map_err(|_| async_graphql::Error::new("a batch loader failed"))?;
                open.get_mut(&TypeId::of::<K>())
                    .and_then(|batch| batch.downcast_mut::<Batch<K>>())
                    .and_then(Option::take)
                    .map(|open| open.keys.into_iter().collect())
                    .unwrap_or_default()
            };
            let loaded = self.loader.load(&keys).await.map(Arc::new);
            leader.0.set(Some(loaded));
        }
        loop {
            let notified = answer.ready.notified();
            if let Some(outcome) = answer.loaded.get() {
                return match outcome {
                    Some(Ok(loaded)) => Ok(loaded.get(&key).cloned()),
                    Some(Err(error)) => Err(error.clone()),
                    None => Err(async_graphql::Error::new("the operation was cancelled")),
                };
            }
            notified.await;
        }
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
