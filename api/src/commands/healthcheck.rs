//! `stations-api healthcheck`: one HTTP GET to a running server, so that a container
//! healthcheck needs no curl, wget or shell in the runtime image.

use std::time::Duration;

use url::Url;

use super::Failure;
use crate::configuration::Settings;

/// A healthcheck that takes longer than this has failed.
const TIMEOUT: Duration = Duration::from_secs(3);

/// GETs `url` (plain HTTP) and returns the body when the status is 200.
pub async fn probe(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url).map_err(|error| format!("{url} is not a URL: {error}"))?;
    if parsed.scheme() != "http" {
        return Err(format!("{url}: only http:// URLs can be probed"));
    }
    // Straight to the server: a proxy from the environment or a redirect would answer for it.
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| format!("no HTTP client: {error}"))?;
    let failed = |error: reqwest::Error| {
        if error.is_timeout() {
            format!("{url} did not answer within {} s", TIMEOUT.as_secs())
        } else {
            format!("{url}: {error}")
        }
    };
    let response = client.get(parsed).send().await.map_err(failed)?;
    let status = response.status();
    let body = response.text().await.map_err(failed)?;
    if status == reqwest::StatusCode::OK {
        Ok(format!("{body}\n"))
    } else {
        Err(format!("{url} answered {}: {body}", status.as_u16()))
    }
}

/// `stations-api healthcheck [URL]`: probes `URL`, by default this configuration's own
/// `/health/ready`.
pub async fn command(url: Option<String>) -> Result<String, Failure> {
    let url = match url {
        Some(url) => url,
        None => {
            let settings = Settings::load().map_err(Failure::usage)?;
            // A server listening on every address is reached on loopback.
            let host = match settings.server.host.as_str() {
                "0.0.0.0" => "127.0.0.1",
                "::" | "[::]" => "[::1]",
                host => host,
            };
            format!("http://{host}:{}/health/ready", settings.server.port)
        }
    };
    probe(&url).await.map_err(Failure::runtime)
}
