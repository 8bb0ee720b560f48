//! Queries on PostgreSQL streaming standbys (`database.read_urls`), with read-your-writes.
//!
//! Every query operation reads through one [`ReadConnection`], chosen when the operation
//! starts: a healthy standby (in turn), or the primary. Everything else stays on the primary:
//! mutations and what they read back, transactions, the subscriptions' listener and its
//! read-backs, migrations, imports and `doctor`.
//!
//! A background check ([`Standbys::watch`]) asks each standby whether it is in recovery, which
//! cluster it belongs to and how far it has replayed, and the primary where its WAL stands. A
//! standby serves queries while it answers, is still a standby, belongs to the primary's
//! cluster and lags no more than `database.max_standby_lag_bytes` behind. The lag is measured
//! in WAL bytes, not by `pg_last_xact_replay_timestamp()`, which grows on an idle primary and
//! would exclude a standby that is fully caught up. With no usable standby, queries read from
//! the primary: a sick standby is never an error. A statement that fails on a standby because
//! it cannot be reached (or conflicts with replay) runs again on the primary; writes never
//! go to a standby at all.
//!
//! A query that sends back a mutation's token ([`WalPosition`]) is served by a standby that
//! has replayed that position. If none has, it asks them at once and then after 1, 2, 4 and 8
//! ms and every [`REPLAY_POLL`] (there is no `WAIT FOR LSN` in PostgreSQL 15 to 17) for up to
//! `database.read_your_writes_wait_ms`, then reads from the primary.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement, StreamTrait, sqlx,
};
use secrecy::ExposeSecret;

use super::wal_position::{Cluster, WalPosition};
use crate::configuration::{DatabaseSettings, redact_url};
use crate::metrics::Metrics;

/// A query waiting for its write to be replayed asks the standbys at once, then again after
/// `FIRST_REPLAY_POLL`, a pause that doubles up to `REPLAY_POLL`.
pub const FIRST_REPLAY_POLL: Duration = Duration::from_millis(1);
pub const REPLAY_POLL: Duration = Duration::from_millis(10);

/// The longest a health check of one standby may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The primary and the standbys that may serve queries.
pub struct Standbys {
    primary: DatabaseConnection,
    /// Query operations that read the primary (`stations_db_reads_total{target="primary"}`).
    primary_reads: Counter,
    standbys: Vec<Arc<Standby>>,
    /// The next standby to offer a query, so that they take turns.
    turn: AtomicUsize,
    /// The primary's cluster and timeline, once the first check has read them.
    cluster: Mutex<Option<Cluster>>,
    max_lag_bytes: u64,
    read_your_writes_wait: Duration,
    check_interval: Duration,
    metrics: Arc<Metrics>,
}

/// One standby: its pool and what the last check found.
pub struct Standby {
    /// `host:port/database`, for logs, metrics and `/health/ready` (never the password).
    pub name: String,
    pool: DatabaseConnection,
    /// Query operations that read it.
    reads: Counter,
    usable: AtomicBool,
    /// Bytes of WAL replayed, as last read.
    replayed: AtomicU64,
    state: Mutex<StandbyState>,
}

/// What the last check found of a standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandbyState {
    /// Not checked yet: no queries until it is.
    Unknown,
    Streaming {
        lag_bytes: u64,
    },
    Lagging {
        lag_bytes: u64,
    },
    /// It answers, but is no standby any more: it was promoted.
    Promoted,
    /// It belongs to another cluster than the primary.
    OtherCluster,
    Down {
        reason: String,
    },
}

impl StandbyState {
    /// The word `/health/ready` and the log use.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Streaming { .. } => "streaming",
            Self::Lagging { .. } => "lagging",
            Self::Promoted => "promoted",
            Self::OtherCluster => "other_cluster",
            Self::Down { .. } => "down",
        }
    }
}

/// Why a query read from the primary although standbys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The request asked for the primary.
    Asked,
    NoUsableStandby,
    /// No standby replayed the token's position within the wait.
    NotReplayed,
    /// The token belongs to another cluster or timeline (a failover since the write).
    OtherHistory,
    /// A statement failed on the standby.
    StandbyFailed,
}

impl Fallback {
    pub fn label(self) -> &'static str {
        match self {
            Self::Asked => "asked",
            Self::NoUsableStandby => "no_usable_standby",
            Self::NotReplayed => "not_replayed",
            Self::OtherHistory => "other_history",
            Self::StandbyFailed => "standby_failed",
        }
    }
}

impl Standbys {
    /// Opens a pool for each of `settings.read_urls`, lazily: a standby that is down at
    /// start-up serves no queries until the check finds it up.
    pub fn new(
        settings: &DatabaseSettings,
        primary: DatabaseConnection,
        standby_pools: Vec<DatabaseConnection>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let standbys = standby_pools
            .into_iter()
            .enumerate()
            .map(|(index, pool)| {
                let name = standby_name(settings.read_urls[index].expose_secret());
                Arc::new(Standby {
                    reads: metrics.reads_of(&name),
                    name,
                    pool,
                    usable: AtomicBool::new(false),
                    replayed: AtomicU64::new(0),
                    state: Mutex::new(StandbyState::Unknown),
                })
            })
            .collect();
        Self {
            primary,
            primary_reads: metrics.reads_of("primary"),
            standbys,
            turn: AtomicUsize::new(0),
            cluster: Mutex::new(None),
            max_lag_bytes: settings.max_standby_lag_bytes,
            read_your_writes_wait: Duration::from_millis(settings.read_your_writes_wait_ms),
            check_interval: Duration::from_millis(settings.standby_check_interval_ms),
            metrics,
        }
    }

    /// Whether any standby is configured: without one, nothing here runs.
    pub fn any(&self) -> bool {
        !self.standbys.is_empty()
    }

    pub fn standbys(&self) -> &[Arc<Standby>] {
        &self.standbys
    }

    pub fn primary(&self) -> &DatabaseConnection {
        &self.primary
    }

    /// The primary's cluster, once known.
    pub fn cluster(&self) -> Option<Cluster> {
        self.cluster.lock().ok().and_then(|cluster| *cluster)
    }

    /// Checks every standby now, then every `database.standby_check_interval_ms`, for as long
    /// as the server runs.
    pub async fn watch(self: Arc<Self>) {
        loop {
            self.check().await;
            tokio::time::sleep(self.check_interval).await;
        }
    }

    /// One round of checks: the primary's position, then each standby against it.
    pub async fn check(&self) {
        let primary = tokio::time::timeout(CHECK_TIMEOUT, WalPosition::of_primary(&self.primary))
            .await
            .ok()
            .and_then(Result::ok);
        // Without the primary's position no lag can be measured: keep what was known.
        let Some(primary) = primary else {
            return;
        };
        if let Ok(mut cluster) = self.cluster.lock() {
            if cluster.is_some_and(|known| known != primary.cluster) {
                tracing::warn!(
                    timeline = primary.cluster.timeline,
                    "the primary's cluster or timeline changed: read-your-writes tokens issued \
                     before are read from the primary"
                );
            }
            *cluster = Some(primary.cluster);
        }
        for standby in &self.standbys {
            let state = self.check_standby(standby, primary).await;
            standby.settle(state, &self.metrics);
        }
    }

    async fn check_standby(&self, standby: &Standby, primary: WalPosition) -> StandbyState {
        let status = tokio::time::timeout(CHECK_TIMEOUT, replay_status(&standby.pool)).await;
        match status {
            Err(_elapsed) => StandbyState::Down {
                reason: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
            },
            Ok(Err(error)) => StandbyState::Down {
                reason: describe(&error),
            },
            Ok(Ok(status)) if !status.in_recovery => StandbyState::Promoted,
            Ok(Ok(status)) if status.system_identifier != primary.cluster.system_identifier => {
                StandbyState::OtherCluster
            }
            Ok(Ok(status)) => {
                standby
                    .replayed
                    .fetch_max(status.replayed, Ordering::Relaxed);
                let lag_bytes = primary.lsn.saturating_sub(status.replayed);
                if lag_bytes > self.max_lag_bytes {
                    StandbyState::Lagging { lag_bytes }
                } else {
                    StandbyState::Streaming { lag_bytes }
                }
            }
        }
    }

    /// Where a query operation reads: a standby that has replayed `token` (any usable one
    /// without a token), or the primary; waiting up to `database.read_your_writes_wait_ms` for
    /// a standby to replay the token.
    pub async fn for_query(
        &self,
        token: Option<WalPosition>,
        primary_asked: bool,
    ) -> ReadConnection {
        if self.standbys.is_empty() {
            return ReadConnection::primary(self.primary.clone());
        }
        if primary_asked {
            return self.fall_back(Fallback::Asked);
        }
        let Some(token) = token else {
            return match self.next_usable(0) {
                Some(standby) => self.on(standby),
                None => self.fall_back(Fallback::NoUsableStandby),
            };
        };
        if self.cluster() != Some(token.cluster) {
            return self.fall_back(Fallback::OtherHistory);
        }
        if let Some(standby) = self.next_usable(token.lsn) {
            return self.on(standby);
        }
        if self.next_usable(0).is_none() {
            return self.fall_back(Fallback::NoUsableStandby);
        }
        // Ask them now (the last check's positions are up to a check interval old), then
        // again after a pause that doubles up to REPLAY_POLL: replay on a nearby standby
        // takes about a millisecond, so most reads go without waiting a whole poll.
        let deadline = tokio::time::Instant::now() + self.read_your_writes_wait;
        let mut pause = FIRST_REPLAY_POLL;
        loop {
            for standby in self.standbys.iter().filter(|standby| standby.is_usable()) {
                if let Ok(Ok(status)) =
                    tokio::time::timeout(REPLAY_POLL, replay_status(&standby.pool)).await
                {
                    standby
                        .replayed
                        .fetch_max(status.replayed, Ordering::Relaxed);
                }
            }
            if let Some(standby) = self.next_usable(token.lsn) {
                return self.on(standby);
            }
            if tokio::time::Instant::now() + pause > deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REPLAY_POLL);
        }
        self.fall_back(Fallback::NotReplayed)
    }

    /// The next usable standby, in turn, that has replayed at least `lsn`.
    fn next_usable(&self, lsn: u64) -> Option<&Arc<Standby>> {
        let count = self.standbys.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.standbys[(start + offset) % count])
            .find(|standby| standby.is_usable() && standby.replayed.load(Ordering::Relaxed) >= lsn)
    }

    fn on(&self, standby: &Arc<Standby>) -> ReadConnection {
        standby.reads.inc();
        ReadConnection {
            primary: self.primary.clone(),
            standby: Some(StandbyRead {
                standby: Arc::clone(standby),
                metrics: Arc::clone(&self.metrics),
            }),
        }
    }

    fn fall_back(&self, reason: Fallback) -> ReadConnection {
        self.primary_reads.inc();
        self.metrics.record_read_fallback(reason.label());
        ReadConnection::primary(self.primary.clone())
    }
}

impl Standby {
    fn is_usable(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }

    /// Closes its pool, at shutdown.
    pub async fn close(&self) {
        if let Err(error) = self.pool.close_by_ref().await {
            tracing::warn!(standby = %self.name, error = %error, "closing a standby's pool failed");
        }
    }

    pub fn state(&self) -> StandbyState {
        self.state
            .lock()
            .map(|state| state.clone())
            .unwrap_or(StandbyState::Unknown)
    }

    /// Takes the state a check found, logging each change once.
    fn settle(&self, state: StandbyState, metrics: &Metrics) {
        let usable = matches!(state, StandbyState::Streaming { .. });
        self.usable.store(usable, Ordering::Relaxed);
        let lag_bytes = match state {
            StandbyState::Streaming { lag_bytes } | StandbyState::Lagging { lag_bytes } => {
                Some(lag_bytes)
            }
            _ => None,
        };
        metrics.record_standby(&self.name, usable, lag_bytes);
        let Ok(mut known) = self.state.lock() else {
            return;
        };
        if known.label() != state.label() {
            let standby = &self.name;
            match &state {
                StandbyState::Streaming { .. } => {
                    tracing::info!(standby, "the standby serves queries");
                }
                StandbyState::Lagging { lag_bytes } => tracing::warn!(
                    standby,
                    lag_bytes,
                    "the standby lags behind the primary past database.max_standby_lag_bytes: \
                     it serves no queries until it catches up"
                ),
                StandbyState::Promoted => tracing::error!(
                    standby,
                    "the standby is no standby any more (it was promoted): it serves no queries; \
                     point database.read_urls at the new standbys"
                ),
                StandbyState::OtherCluster => tracing::error!(
                    standby,
                    "the standby belongs to another cluster than database.url: it serves no \
                     queries; check database.read_urls"
                ),
                StandbyState::Down { reason } => tracing::warn!(
                    standby,
                    reason,
                    "the standby cannot be reached: queries read from the primary"
                ),
                StandbyState::Unknown => {}
            }
        }
        *known = state;
    }

    /// A statement failed on it in a way the next check would find: no more queries until it
    /// does.
    fn failed(&self, metrics: &Metrics, error: &DbErr) {
        if self.usable.swap(false, Ordering::Relaxed) {
            metrics.record_standby(&self.name, false, None);
            tracing::warn!(
                standby = %self.name,
                reason = %describe(error),
                "a statement failed on the standby: it ran again on the primary"
            );
        }
    }
}

/// What a standby says of its replay.
pub struct ReplayStatus {
    pub in_recovery: bool,
    /// Bytes of WAL replayed; 0 outside recovery.
    pub replayed: u64,
    pub system_identifier: u64,
}

pub async fn replay_status(standby: &DatabaseConnection) -> Result<ReplayStatus, DbErr> {
    let row = standby
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS in_recovery,
                    COALESCE((pg_last_wal_replay_lsn() - '0/0')::bigint, 0) AS replayed,
                    (SELECT system_identifier FROM pg_control_system()) AS system_identifier",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the standby's replay status".to_owned()))?;
    Ok(ReplayStatus {
        in_recovery: row.try_get("", "in_recovery")?,
        replayed: row.try_get::<i64>("", "replayed")? as u64,
        system_identifier: row.try_get::<i64>("", "system_identifier")? as u64,
    })
}

/// `host:port/database` of a URL: a standby's name that holds no secret.
fn standby_name(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => format!(
            "{}:{}{}",
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or(5432),
            url.path()
        ),
        Err(_) => redact_url(url),
    }
}

/// A driver error in words that hold no SQL and no password.
pub fn describe(error: &DbErr) -> String {
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => match error.as_ref() {
            sqlx::Error::Database(error) => error.message().to_owned(),
            sqlx::Error::Io(error) => error.to_string(),
            sqlx::Error::PoolTimedOut => "no connection within database.acquire_timeout_ms".into(),
            other => other.to_string(),
        },
        DbErr::ConnectionAcquire(error) => error.to_string(),
        _ => "the statement failed".to_owned(),
    }
}

/// Whether a statement that failed on a standby may run again on the primary: the standby
/// could not be reached, or replay cancelled the statement (a recovery conflict, 40001).
fn worth_retrying(error: &DbErr) -> bool {
    if super::is_unavailable(error) {
        return true;
    }
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            matches!(error.as_ref(), sqlx::Error::Database(error) if error.code().as_deref() == Some("40001"))
        }
        _ => false,
    }
}

/// Where one operation's queries read: a standby, with the primary behind it, or the primary.
#[derive(Clone)]
pub struct ReadConnection {
    primary: DatabaseConnection,
    standby: Option<StandbyRead>,
}

#[derive(Clone)]
struct StandbyRead {
    standby: Arc<Standby>,
    metrics: Arc<Metrics>,
}

impl ReadConnection {
    pub fn primary(primary: DatabaseConnection) -> Self {
        Self {
            primary,
            standby: None,
        }
    }

    /// Runs `statement` and folds its rows into `init()` with `step` as they arrive, instead
    /// of collecting them first: the work on each row then overlaps PostgreSQL's sending of
    /// the next (a chart can be 16,800 rows). A standby that fails the way `query_all_raw`
    /// retries makes it start over, from `init()`, on the primary.
    pub async fn fold_rows<T>(
        &self,
        statement: Statement,
        init: impl Fn() -> T,
        mut step: impl FnMut(&mut T, &QueryResult) -> Result<(), DbErr>,
    ) -> Result<T, DbErr> {
        if let Some(on) = &self.standby {
            match fold_stream(&on.standby.pool, statement.clone(), init(), &mut step).await {
                Err(error) if self.again_on_primary(&error) => {}
                outcome => return outcome,
            }
        }
        fold_stream(&self.primary, statement, init(), &mut step).await
    }

    /// The standby it reads from, if any.
    pub fn standby_name(&self) -> Option<&str> {
        self.standby.as_ref().map(|read| read.standby.name.as_str())
    }

    /// Whether a read that failed with `error` on the standby runs again on the primary; the
    /// standby then serves no queries until a check finds it well.
    fn again_on_primary(&self, error: &DbErr) -> bool {
        match &self.standby {
            Some(on) if worth_retrying(error) => {
                on.standby.failed(&on.metrics, error);
                on.metrics
                    .record_read_fallback(Fallback::StandbyFailed.label());
                true
            }
            _ => false,
        }
    }
}

/// `ReadConnection::fold_rows` on one pool. A step that fails stops the work on rows, not the
/// reading: the statement's stream runs to its end, as a collected one does, which is when
/// sqlx reports the rows it returned to the statement's span (`telemetry::sql`).
async fn fold_stream<T>(
    pool: &DatabaseConnection,
    statement: Statement,
    mut state: T,
    step: &mut impl FnMut(&mut T, &QueryResult) -> Result<(), DbErr>,
) -> Result<T, DbErr> {
    let mut rows = pool.stream_raw(statement).await?;
    let mut failed = None;
    while let Some(row) = rows.next().await {
        let row = row?;
        if failed.is_none() {
            failed = step(&mut state, &row).err();
        }
    }
    match failed {
        Some(error) => Err(error),
        None => Ok(state),
    }
}

/// Reads go where the operation was routed; anything that writes goes to the primary, which
/// is where it would go anyway (a query operation writes nothing).
#[async_trait::async_trait]
impl ConnectionTrait for ReadConnection {
    fn get_database_backend(&self) -> DbBackend {
        self.primary.get_database_backend()
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        self.primary.execute_raw(statement).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.primary.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        if self.standby.is_none() {
            return self.primary.query_one_raw(statement).await;
        }
        // The statements of a query that wants one row return one row at most.
        Ok(self.query_all_raw(statement).await?.into_iter().next())
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let Some(on) = &self.standby else {
            return self.primary.query_all_raw(statement).await;
        };
        match on.standby.pool.query_all_raw(statement.clone()).await {
            Err(error) if self.again_on_primary(&error) => {
                self.primary.query_all_raw(statement).await
            }
            outcome => outcome,
        }
    }
}
