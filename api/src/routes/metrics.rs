//! `GET /metrics`: Prometheus text exposition.

use axum::{extract::State, http::header, response::IntoResponse};

use crate::state::AppState;

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&state.db, state.health.is_down()),
    )
}
