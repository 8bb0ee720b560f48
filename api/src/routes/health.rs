//! Health checks for orchestrators and load balancers.
//!
//! `/health/live` answers as long as the process serves HTTP: restart me if this fails.
//! `/health/ready` also requires the database to answer and its schema to match this binary:
//! send me traffic only if this succeeds.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::database::{self, migrations};
use crate::startup::AppState;

/// Load balancers probe every few seconds; an answer later than this is as bad as none.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match tokio::time::timeout(READINESS_TIMEOUT, migrations::state(&state.db)).await {
        Ok(Ok(migrations)) if migrations.is_current() => {
            (StatusCode::OK, Json(json!({ "status": "ready" })))
        }
        Ok(Ok(migrations)) => {
            let reason = if migrations.unknown.is_empty() {
                format!(
                    "{} pending migration(s): {}",
                    migrations.pending.len(),
                    migrations.pending.join(", ")
                )
            } else {
                format!(
                    "the database has migrations this binary does not know: {}",
                    migrations.unknown.join(", ")
                )
            };
            unavailable(reason)
        }
        Ok(Err(error)) if database::is_unavailable(&error) => {
            unavailable("the database is unreachable".to_owned())
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, "readiness check failed");
            unavailable("the database did not answer the readiness check".to_owned())
        }
        Err(_elapsed) => unavailable(format!(
            "the database did not answer within {} s",
            READINESS_TIMEOUT.as_secs()
        )),
    }
}

fn unavailable(reason: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": reason })),
    )
}
