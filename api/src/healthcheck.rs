//! `stations-api healthcheck`: one HTTP GET to a running server, so that a container
//! healthcheck needs no curl, wget or shell in the runtime image.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// A healthcheck that takes longer than this has failed.
const TIMEOUT: Duration = Duration::from_secs(3);

/// GETs `url` (plain HTTP) and returns the body when the status is 200.
pub async fn probe(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url).map_err(|error| format!("{url} is not a URL: {error}"))?;
    if parsed.scheme() != "http" {
        return Err(format!("{url}: only http:// URLs can be probed"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let path = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };

    let exchange = async {
        let mut stream = TcpStream::connect((host.as_str(), port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|error| format!("{url}: {error}"))?;

    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("no status");
    let body = dechunk(head, body);
    if status == "200" {
        Ok(format!("{body}\n"))
    } else {
        Err(format!("{url} answered {status}: {body}"))
    }
}

/// The body of a chunked response without its chunk sizes; other bodies as they are.
fn dechunk(head: &str, body: &str) -> String {
    let chunked = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if !chunked {
        return body.to_owned();
    }
    let mut text = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(remainder)) = (after.get(..size), after.get(size..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        text.push_str(chunk);
        rest = remainder.trim_start_matches("\r\n");
    }
    text
}
