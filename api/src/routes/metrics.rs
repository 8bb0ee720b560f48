//! `GET /metrics`: Prometheus text exposition.

use axum::{extract::State, http::header, response::IntoResponse};

use crate::startup::AppState;

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.db, state.health.is_down()),
    )
}
