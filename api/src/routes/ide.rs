//! The GraphiQL IDE at `GET /graphql` for browsers, with every asset it loads served from
//! `/graphql/assets/` out of the binary itself (see `api/build.rs`): it works offline, behind
//! proxies and under a strict Content-Security-Policy.

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use crate::state::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/ide_assets.rs"));
}

/// Only this server's own origin, for everything.
///
/// Two exceptions, both for what GraphiQL cannot run without:
/// - `style-src 'unsafe-inline'`: the Monaco editor positions every line and cursor with
///   inline `style` attributes and injects `<style>` elements for its themes;
/// - `font-src data:`: GraphiQL's stylesheet carries its typefaces inline as `data:` URIs
///   (fonts are not executable).
///
/// Scripts, workers, images and requests stay restricted to `'self'`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; worker-src 'self'; font-src 'self' data:; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Asset names carry a content hash, so a name never changes meaning: cache it for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What to run when the binary was built without the IDE.
const BUILD_COMMAND: &str = "npm --prefix api/ide ci && npm --prefix api/ide run build";

/// The IDE page, for a browser that opens `GET /graphql` (see `routes::graphql::get`).
pub fn page(state: &AppState) -> Response {
    if !state.ide_enabled {
        return disabled();
    }
    page_for(embedded::INDEX_HTML)
}

/// The IDE page, or, when the binary was built without it, what to run to get it.
fn page_for(built: Option<&'static str>) -> Response {
    let Some(html) = built else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(format!(
                "<!doctype html><title>GraphiQL not built</title>\
                 <h1>GraphiQL is not built into this binary</h1>\
                 <p>From the repository root run <code>{BUILD_COMMAND}</code>, then \
                 <code>cargo run -p stations-api</code> again. The API itself works: send \
                 queries with <code>POST /graphql</code>.</p>"
            )),
        )
            .into_response();
    };
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The page names the current asset hashes: always revalidate it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub async fn asset(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if !state.ide_enabled {
        return disabled();
    }
    match embedded::ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, IMMUTABLE),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such IDE asset\n").into_response(),
    }
}

fn disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        "The GraphQL IDE is disabled here (graphql.ide = false). Send queries with POST /graphql.\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_built_assets_the_page_says_what_to_run() {
        let response = page_for(None);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = runtime
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(BUILD_COMMAND), "{body}");
    }
}
