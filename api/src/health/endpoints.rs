//! Health checks for orchestrators and load balancers.
//!
//! `/health/live` answers as long as the process serves HTTP: restart me if this fails.
//! `/health/ready` also requires the database to answer and its schema to match this binary:
//! send me traffic only if this succeeds. A standby that serves no queries leaves it 200,
//! `degraded`: queries read from the primary meanwhile.

use std::time::{Duration, Instant};

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::database::standbys::StandbyState;
use crate::database::{self, migrations};
use crate::state::AppState;

/// Load balancers probe every few seconds; an answer later than this is as bad as none.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

/// How long one readiness answer serves every probe: while the pool fails, each check opens a
/// connection of its own, and probes from many balancers must not multiply that on a sick
/// database.
const READINESS_REUSE: Duration = Duration::from_secs(1);

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return unavailable(
            "the server is shutting down: it serves the requests it gets until \
             server.shutdown_delay_secs ends"
                .to_owned(),
            "send requests to another replica",
        );
    }
    // Its lock also makes concurrent probes wait for the one check in flight instead of each
    // starting another.
    let mut last = state.readiness.lock().await;
    if let Some((at, status, body)) = &*last
        && at.elapsed() < READINESS_REUSE
    {
        return (*status, Json(body.clone()));
    }
    let (status, Json(body)) = check_readiness(&state).await;
    *last = Some((Instant::now(), status, body.clone()));
    (status, Json(body))
}

async fn check_readiness(state: &AppState) -> (StatusCode, Json<Value>) {
    if let Some(jwt) = state.authenticator.jwt()
        && !jwt.keys_loaded()
    {
        return unavailable(
            "signing keys not loaded yet: the identity provider's JWKS could not be fetched"
                .to_owned(),
            "check auth.jwt.jwks_url and that the provider answers; the server keeps retrying",
        );
    }
    match tokio::time::timeout(READINESS_TIMEOUT, migrations::state(&state.db)).await {
        Ok(Ok(migrations)) if migrations.is_current() => (StatusCode::OK, Json(ready_body(state))),
        Ok(Ok(migrations)) if migrations.unknown.is_empty() => unavailable(
            format!(
                "{} pending migration(s): {}",
                migrations.pending.len(),
                migrations.pending.join(", ")
            ),
            "apply them with `stations-api migrate up`",
        ),
        Ok(Ok(migrations)) => unavailable(
            format!(
                "the database has migrations this binary does not know: {}",
                migrations.unknown.join(", ")
            ),
            "this binary is older than the schema: deploy the release that added them",
        ),
        Ok(Err(error)) if !database::is_unavailable(&error) => {
            tracing::error!(error = %error, "readiness check failed");
            unavailable(
                "the database did not answer the readiness check".to_owned(),
                "see the server log",
            )
        }
        // Unreachable or too slow: a connection of its own gets the server's own answer, where
        // the pool only says that it timed out.
        _ => {
            match tokio::time::timeout(READINESS_TIMEOUT, database::probe(&state.database_settings))
                .await
            {
                Ok(Err(error)) if state.health_details => {
                    unavailable(error.diagnosis.problem, &error.diagnosis.remedy)
                }
                Ok(Err(error)) => {
                    // Host, port, role and settings are for the operator, not for any caller.
                    tracing::error!(
                        remedy = %error.diagnosis.remedy,
                        "not ready: {}",
                        error.diagnosis.problem
                    );
                    unavailable(
                        "the database cannot be reached".to_owned(),
                        "see the server log",
                    )
                }
                _ => unavailable(
                    format!(
                        "the database did not answer within {} s",
                        READINESS_TIMEOUT.as_secs()
                    ),
                    "check the database server's load and the network",
                ),
            }
        }
    }
}

/// The ready answer: `ready`, or `degraded` while a standby serves no queries (they go to the
/// primary meanwhile, so the replica still takes traffic); each standby's state.
fn ready_body(state: &AppState) -> Value {
    let standbys = state.standbys.standbys();
    if standbys.is_empty() {
        return json!({ "status": "ready" });
    }
    let mut degraded = false;
    let states: Vec<Value> = standbys
        .iter()
        .map(|standby| {
            let found = standby.state();
            degraded |= !matches!(found, StandbyState::Streaming { .. });
            let mut entry = json!({ "state": found.label() });
            if state.health_details {
                entry["name"] = Value::String(standby.name.clone());
            }
            if let StandbyState::Streaming { lag_bytes } | StandbyState::Lagging { lag_bytes } =
                found
            {
                entry["lag_bytes"] = json!(lag_bytes);
            }
            entry
        })
        .collect();
    let status = if degraded { "degraded" } else { "ready" };
    json!({ "status": status, "standbys": states })
}

fn unavailable(reason: String, fix: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason, "fix": fix })),
    )
}
