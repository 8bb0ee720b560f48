//! `GET /metrics`: OpenMetrics text (with exemplars) for a scraper that asks for it, else
//! Prometheus text.

use axum::{
    extract::State,
    http::{HeaderMap, header},
    response::IntoResponse,
};

use crate::metrics::Exposition;
use crate::state::AppState;

pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let exposition = Exposition::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    (
        [(header::CONTENT_TYPE, exposition.content_type())],
        state
            .metrics
            .render(&state.db, state.health.is_down(), exposition),
    )
}
