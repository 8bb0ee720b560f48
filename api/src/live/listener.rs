//! The replica's one listening connection: LISTEN on the channels the triggers notify, read the
//! announced rows back by id, publish them on the hub.
//!
//! The connection is its own, outside the request pool, whatever the number of subscribers.
//! When it drops (PostgreSQL restarts, the network cuts it), the listener reconnects with a
//! growing pause, LISTENs again, and publishes a RESYNC: notifications sent meanwhile are lost,
//! and subscribers must hear that rather than miss changes silently. The first LISTEN does the
//! same for anyone already subscribed, since the server accepts subscriptions while it is still
//! connecting; `stations_live_listening` says whether it listens now. A connection that stops
//! delivering without failing (a cut that sends no reset) is found by a heartbeat: every few
//! seconds the replica notifies itself over a second connection of its own, and a listener that
//! has heard nothing for long is replaced.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use entity::{observation, station};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    sqlx::postgres::{PgListener, PgNotification, PgPool, PgPoolOptions},
};
use serde_json::Value;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{ChangeKind, LiveEvent, LiveHub, StationTrace};
use crate::configuration::DatabaseSettings;
use crate::database;
use crate::metrics::Metrics;
use crate::telemetry::traces;

/// The channels the triggers of migration `notify_live_changes` notify.
const STATIONS: &str = "stations_changed";
const OBSERVATIONS: &str = "observations_recorded";
/// What replicas notify to prove that their listening connection still delivers.
const HEARTBEAT: &str = "stations_api_heartbeat";

const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Silence after which the listening connection is taken for dead.
const SILENT_FOR: Duration = Duration::from_secs(20);
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(10);

pub struct Listener {
    pub settings: DatabaseSettings,
    /// The request pool, for reading rows back and for heartbeats.
    pub db: DatabaseConnection,
    pub hub: Arc<LiveHub>,
    pub metrics: Arc<Metrics>,
}

impl Listener {
    /// Runs for the life of the server.
    pub async fn run(self) {
        let mut pause = FIRST_PAUSE;
        let mut connected_before = false;
        let mut failed_attempts = 0u32;
        loop {
            let (mut listener, pool) = match self.listen().await {
                Ok(connected) => connected,
                Err(error) => {
                    failed_attempts += 1;
                    if failed_attempts == 1 {
                        tracing::warn!(error = %error, "cannot listen for live changes yet; retrying");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    continue;
                }
            };
            self.metrics.record_listening(true);
            // Whoever subscribed while nobody listened (before the first LISTEN too: a client
            // can subscribe as soon as the server accepts connections) may have missed changes.
            self.hub.publish(LiveEvent::resync_all());
            if connected_before {
                self.metrics.record_listener_reconnect();
                tracing::info!(
                    attempts = failed_attempts + 1,
                    "listening for live changes again; subscribers were told to re-read"
                );
            } else {
                tracing::debug!("listening for live changes");
            }
            connected_before = true;
            failed_attempts = 0;
            pause = FIRST_PAUSE;

            let heartbeat = tokio::spawn(heartbeats(pool.clone()));
            let mut heard_at = Instant::now();
            loop {
                let silent_until = tokio::time::Instant::from_std(heard_at + SILENT_FOR);
                let notification = tokio::select! {
                    notification = listener.try_recv() => notification,
                    // Abandoning the listener: whatever it was reading goes with it.
                    () = tokio::time::sleep_until(silent_until) => {
                        tracing::warn!("the listening connection went silent; reconnecting");
                        break;
                    }
                };
                match notification {
                    Ok(Some(notification)) => {
                        heard_at = Instant::now();
                        self.handle(&notification).await;
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!(
                            "lost the listening connection; reconnecting (subscribers will be \
                             told to re-read)"
                        );
                        break;
                    }
                }
            }
            self.metrics.record_listening(false);
            heartbeat.abort();
            drop(listener);
            pool.close().await;
        }
    }

    /// Opens the listening connection and one for heartbeats, both outside the request pool.
    async fn listen(&self) -> Result<(PgListener, PgPool), sea_orm::sqlx::Error> {
        let options = database::connect_options(&self.settings)
            .await
            .map_err(|error| error.cause)?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(self.settings.connect_timeout())
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener
            .listen_all([STATIONS, OBSERVATIONS, HEARTBEAT])
            .await?;
        Ok((listener, pool))
    }

    async fn handle(&self, notification: &PgNotification) {
        // Nobody to tell: no row is read back for no one.
        if !self.hub.has_subscribers() {
            return;
        }
        let payload: Value = match serde_json::from_str(notification.payload()) {
            Ok(payload) => payload,
            Err(_) => return,
        };
        let channel = notification.channel();
        let delivery = delivery_span(channel, &payload);
        let event = async {
            match channel {
                STATIONS => self.stations_changed(&payload).await,
                OBSERVATIONS => self.observations_recorded(&payload).await,
                _ => None,
            }
        }
        .instrument(delivery.clone())
        .await;
        if let Some(event) = event {
            let reached = self.hub.publish(event);
            delivery.record("stations.live.subscriptions", reached);
        }
    }

    async fn stations_changed(&self, payload: &Value) -> Option<LiveEvent> {
        let kind = match payload["kind"].as_str()? {
            "CREATED" => ChangeKind::Created,
            "UPDATED" => ChangeKind::Updated,
            "DELETED" => ChangeKind::Deleted,
            "RESYNC" => {
                return Some(LiveEvent::Resync {
                    observations_of: None,
                    stations: true,
                });
            }
            _ => return None,
        };
        let mut traces: Vec<StationTrace> = payload["rows"]
            .as_array()?
            .iter()
            .filter_map(|row| {
                let before = match (row.get(4), row.get(5), row.get(6)) {
                    (Some(code), Some(lat), Some(lng)) => {
                        Some((code.as_str()?.to_owned(), lat.as_f64()?, lng.as_f64()?))
                    }
                    _ => None,
                };
                Some(StationTrace {
                    id: i32::try_from(row.get(0)?.as_i64()?).ok()?,
                    code: row.get(1)?.as_str()?.to_owned(),
                    lat: row.get(2)?.as_f64()?,
                    lng: row.get(3)?.as_f64()?,
                    before,
                })
            })
            .collect();
        let rows = if kind == ChangeKind::Deleted {
            HashMap::new()
        } else {
            let ids: Vec<i32> = traces.iter().map(|trace| trace.id).collect();
            match station::Entity::find()
                .filter(station::Column::Id.is_in(ids))
                .all(&self.db)
                .await
            {
                Ok(rows) => rows.into_iter().map(|row| (row.id, row)).collect(),
                Err(error) => {
                    tracing::warn!(error = %error, "could not read changed stations back; subscribers will re-read");
                    return Some(LiveEvent::resync_all());
                }
            }
        };
        // A row gone by the time it is read back was deleted since: the DELETED event that
        // follows (notifications arrive in commit order) tells subscribers, where a CREATED or
        // UPDATED event without its station would tell them nothing they could use.
        if kind != ChangeKind::Deleted {
            traces.retain(|trace| rows.contains_key(&trace.id));
            if traces.is_empty() {
                return None;
            }
        }
        Some(LiveEvent::Stations { kind, traces, rows })
    }

    async fn observations_recorded(&self, payload: &Value) -> Option<LiveEvent> {
        if let Some(stations) = payload.get("resync").and_then(Value::as_array) {
            let ids = stations
                .iter()
                .filter_map(|id| i32::try_from(id.as_i64()?).ok())
                .collect();
            return Some(LiveEvent::Resync {
                observations_of: Some(ids),
                stations: false,
            });
        }
        let ids: Vec<i64> = payload["rows"]
            .as_array()?
            .iter()
            .filter_map(|row| row.get(0)?.as_i64())
            .collect();
        match observation::Entity::find()
            .filter(observation::Column::Id.is_in(ids))
            .all(&self.db)
            .await
        {
            Ok(rows) => Some(LiveEvent::Observations { rows }),
            Err(error) => {
                tracing::warn!(error = %error, "could not read recorded observations back; subscribers will re-read");
                Some(LiveEvent::resync_all())
            }
        }
    }
}

/// The span of this replica's delivery of a change, under the span of the mutation that made
/// it (its notification carries the mutation's `traceparent`: migration
/// `m20261205_000011`), while traces are sent: its read-back statements, how many subscriptions
/// it reached, and how long after the write. A change that carries no trace gets none.
fn delivery_span(channel: &str, payload: &Value) -> Span {
    if !traces::enabled() {
        return Span::none();
    }
    let Some(writer) = payload["traceparent"]
        .as_str()
        .and_then(traces::writers_context)
    else {
        return Span::none();
    };
    let span = tracing::info_span!(
        "delivery",
        otel.name = format!("deliver {channel}"),
        otel.kind = "consumer",
        messaging.system = "postgresql",
        messaging.destination.name = channel,
        messaging.operation.type = "process",
        stations.live.subscriptions = Empty,
        stations.live.delay_ms = Empty,
    );
    let _ = span.set_parent(writer);
    if let Some(written_at_ms) = payload["written_at_ms"].as_i64() {
        let now_ms = chrono::Utc::now().timestamp_millis();
        span.record(
            "stations.live.delay_ms",
            now_ms.saturating_sub(written_at_ms),
        );
    }
    span
}

/// Notifies the heartbeat channel every few seconds over `pool`'s second connection.
async fn heartbeats(pool: PgPool) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // A failure shows as silence on the listener, which is what counts.
        let _ = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(format!("NOTIFY {HEARTBEAT}")))
            .execute(&pool)
            .await;
    }
}
