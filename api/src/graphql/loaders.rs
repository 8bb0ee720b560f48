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
//! by clock is deterministic and adds no latency. Every key is a question about one station
//! ([`OfStation`]: its row, its latest observation, a window of its observations, a summary);
//! each kind of question is answered for many stations by one function
//! ([`StationsQuestion::answer`]), on the operation's [`ReadConnection`] (a standby for a
//! query, when there are any). They work wherever a `Station` or an `Observation` appears.

use std::{
    any::{Any, TypeId},
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::Context;
use entity::{observation, station};
use sea_orm::{EntityTrait, QueryFilter};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::database::standbys::ReadConnection;
use crate::error::ApiError;
use crate::service::observation::{
    self as observations, ObservationPage, Summary, TimeRange, Window,
};
use crate::telemetry::traces;

/// Loads `key` through this operation's batches, or alone where there are none (the fields
/// of a subscription's event, which resolve one object at a time).
pub async fn load_one<Asked: StationsQuestion>(
    ctx: &Context<'_>,
    key: OfStation<Asked>,
) -> async_graphql::Result<Option<Asked::Answer>> {
    let db = ctx.data::<ReadConnection>()?;
    if let Some(batches) = ctx.data_opt::<OperationBatches>() {
        return batches.load_one(db, key).await;
    }
    let mut loaded = load(db, &[key]).await?;
    Ok(loaded.remove(&key))
}

/// The batches of one operation: for each kind of key, the keys asked for since the last load.
#[derive(Default)]
pub struct OperationBatches {
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
    async fn load_one<Asked: StationsQuestion>(
        &self,
        db: &ReadConnection,
        key: OfStation<Asked>,
    ) -> async_graphql::Result<Option<Asked::Answer>> {
        type K<Asked> = OfStation<Asked>;
        type Batch<Asked> = Option<Open<K<Asked>, <Asked as StationsQuestion>::Answer>>;
        let (answer, leading) = {
            let mut open = self
                .open
                .lock()
                .map_err(|_| async_graphql::Error::new("a batch loader failed"))?;
            let batch = open
                .entry(TypeId::of::<K<Asked>>())
                .or_insert_with(|| Box::new(Batch::<Asked>::None))
                .downcast_mut::<Batch<Asked>>()
                .ok_or_else(|| async_graphql::Error::new("a batch loader failed"))?;
            match batch {
                Some(open) => {
                    open.keys.insert(key);
                    (Arc::clone(&open.answer), false)
                }
                None => {
                    let answer = Arc::new(Answer {
                        loaded: OnceLock::new(),
                        ready: Notify::new(),
                    });
                    *batch = Some(Open {
                        keys: HashSet::from([key]),
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
            let keys: Vec<K<Asked>> = {
                let mut open = self
                    .open
                    .lock()
                    .map_err(|_| async_graphql::Error::new("a batch loader failed"))?;
                open.get_mut(&TypeId::of::<K<Asked>>())
                    .and_then(|batch| batch.downcast_mut::<Batch<Asked>>())
                    .and_then(Option::take)
                    .map(|open| open.keys.into_iter().collect())
                    .unwrap_or_default()
            };
            let loading = load(db, &keys);
            let loaded = if traces::enabled() {
                let question = short_type_name::<Asked>();
                let span = tracing::info_span!(
                    "batch",
                    otel.name = format!("load {question}"),
                    loader = question,
                    keys = keys.len(),
                );
                loading.instrument(span).await
            } else {
                loading.await
            }
            .map(Arc::new);
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

/// What a resolver asks about one station besides its id (a window of observations, a time
/// range); asked of many stations alike, it is read for all of them in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OfStation<Asked> {
    pub station_id: i32,
    pub asked: Asked,
}

impl<Asked> OfStation<Asked> {
    pub fn new(station_id: i32, asked: Asked) -> Self {
        Self { station_id, asked }
    }
}

/// The station's own row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StationRow;

/// The station's most recent observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatestObservation;

/// `StationRow` for `stations_api::graphql::loaders::StationRow`: a batch's span says which
/// question it answered.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

/// A database failure, as every waiting resolver gets it (logged once, here).
fn failure(error: sea_orm::DbErr) -> async_graphql::Error {
    ApiError::from(error).into()
}

/// A question asked of many stations alike, answered for all of them in one statement.
pub trait StationsQuestion: Copy + Eq + Hash + Send + Sync + 'static {
    type Answer: Clone + Send + Sync + 'static;

    fn answer(
        self,
        db: &ReadConnection,
        ids: Vec<i32>,
    ) -> impl Future<Output = Answers<Self::Answer>> + Send;
}

/// Each station's answer, by its id.
pub type Answers<Answer> = Result<HashMap<i32, Answer>, sea_orm::DbErr>;

impl StationsQuestion for StationRow {
    type Answer = station::Model;

    async fn answer(self, db: &ReadConnection, ids: Vec<i32>) -> Answers<station::Model> {
        use sea_orm::ColumnTrait;
        let rows = station::Entity::find()
            .filter(station::Column::Id.is_in(ids))
            .all(db)
            .await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

impl StationsQuestion for LatestObservation {
    type Answer = observation::Model;

    async fn answer(self, db: &ReadConnection, ids: Vec<i32>) -> Answers<observation::Model> {
        let rows = observations::latest(db, ids).await?;
        Ok(rows.into_iter().map(|row| (row.station_id, row)).collect())
    }
}

impl StationsQuestion for Window {
    type Answer = ObservationPage;

    async fn answer(self, db: &ReadConnection, ids: Vec<i32>) -> Answers<ObservationPage> {
        observations::pages(db, ids, self).await
    }
}

impl StationsQuestion for TimeRange {
    type Answer = Summary;

    async fn answer(self, db: &ReadConnection, ids: Vec<i32>) -> Answers<Summary> {
        observations::summaries(db, ids, self).await
    }
}

/// Answers `keys` with one statement per distinct question: keys asking different ones
/// (aliases with other arguments) need a statement each, though usually all ask the same. A
/// station the answer leaves out has no value.
async fn load<Asked: StationsQuestion>(
    db: &ReadConnection,
    keys: &[OfStation<Asked>],
) -> async_graphql::Result<HashMap<OfStation<Asked>, Asked::Answer>> {
    let mut by_question: HashMap<Asked, Vec<i32>> = HashMap::new();
    for key in keys {
        by_question
            .entry(key.asked)
            .or_default()
            .push(key.station_id);
    }
    let mut loaded = HashMap::with_capacity(keys.len());
    for (asked, station_ids) in by_question {
        let answers = asked.answer(db, station_ids).await.map_err(failure)?;
        for (station_id, answer) in answers {
            loaded.insert(OfStation { station_id, asked }, answer);
        }
    }
    Ok(loaded)
}
