//! Which sites may reach this server through a browser, beyond what CORS decides for HTTP:
//!
//! - **DNS rebinding.** A page on any site can make its own host name resolve to 127.0.0.1 and
//!   then call a server on the developer's machine as if it were same-origin. So a server that
//!   listens on a loopback address answers only requests whose `Host` names loopback
//!   (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`) or one of `server.allowed_hosts`, on
//!   HTTP and WebSocket alike; others get 421. A server on any other address is reached
//!   through names this module cannot know (a load balancer's, a container's), and is not
//!   checked.
//! - **Cross-site WebSockets.** Browsers apply no CORS to a WebSocket: a page on any origin
//!   could open `/graphql` and, with development's open writes, change stations. An upgrade
//!   whose `Origin` is neither this server's own (its host and port are the request's `Host`)
//!   nor one of `server.cors_allowed_origins` is refused with 403. No `Origin` at all (a
//!   program, not a browser) stays allowed.

use std::sync::Arc;

use axum::{
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use url::Url;

use crate::configuration::{ServerSettings, is_loopback_host};
use crate::error::{ErrorCode, Refusal};

/// The `Host` values a loopback server answers.
#[derive(Debug)]
pub struct HostAllowlist {
    extra: Vec<String>,
}

impl HostAllowlist {
    /// The allowlist when the server listens on loopback; `None` otherwise (nothing to check).
    pub fn for_server(server: &ServerSettings) -> Option<Arc<Self>> {
        is_loopback_host(&server.host).then(|| {
            Arc::new(Self {
                // Compared without regard to case, as host names are.
                extra: server.allowed_hosts.clone(),
            })
        })
    }

    /// Without allocating: this runs for every request.
    fn allows(&self, host_header: &str) -> bool {
        let (host, _port) = split_port(host_header);
        names_loopback(host)
            || self
                .extra
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// The answer to a request whose `Host` this server does not answer to; `None` for the
    /// others.
    pub fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        match headers.get(header::HOST).map(|host| host.to_str()) {
            // HTTP/1.0 clients may send none; browsers always do.
            None => None,
            Some(Ok(host)) if self.allows(host) => None,
            Some(_) => Some(
                Refusal::new(
                    ErrorCode::MisdirectedRequest,
                    "this server listens on a loopback address and answers only Host names of \
                 loopback (localhost, 127.0.0.1, [::1]) or those in server.allowed_hosts",
                )
                .into_response(),
            ),
        }
    }
}

/// Whether a WebSocket upgrade with these headers may proceed: no `Origin` (not a browser),
/// the server's own origin, or one of `allowed_origins`.
pub fn websocket_origin_allowed(headers: &HeaderMap, allowed_origins: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed_origins.iter().any(|allowed| allowed == origin) {
        return true;
    }
    let Ok(url) = Url::parse(origin) else {
        // `null` (a sandboxed page, a file) and anything else that is not an origin.
        return false;
    };
    let (Some(origin_host), Some(origin_port)) = (url.host_str(), url.port_or_known_default())
    else {
        return false;
    };
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
    else {
        return false;
    };
    let (host_name, host_port) = split_port(host);
    let host_port = host_port.unwrap_or(origin_port);
    host_name.eq_ignore_ascii_case(origin_host) && host_port == origin_port
}

/// Whether `host` (no port; an IPv6 address in brackets or not) names this machine's
/// loopback; browsers resolve `*.localhost` there themselves.
fn names_loopback(host: &str) -> bool {
    const SUFFIX: &str = ".localhost";
    host == "127.0.0.1"
        || is_loopback_host(host)
        || host
            .len()
            .checked_sub(SUFFIX.len())
            .and_then(|start| host.get(start..))
            .is_some_and(|end| end.eq_ignore_ascii_case(SUFFIX))
}

/// `host[:port]` or `[v6]:port`, split; the name keeps an IPv6 address's brackets.
fn split_port(host: &str) -> (&str, Option<u16>) {
    if let Some(end) = host.rfind(']') {
        let port = host[end + 1..]
            .strip_prefix(':')
            .and_then(|p| p.parse().ok());
        return (&host[..=end], port);
    }
    match host.rsplit_once(':') {
        Some((name, port)) => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn loopback_names_are_answered_and_others_are_not() {
        let allowlist = HostAllowlist {
            extra: vec!["dev.internal".into()],
        };
        for host in [
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "app.localhost:8080",
            "dev.internal:8080",
        ] {
            assert!(allowlist.allows(host), "{host}");
        }
        for host in [
            "attacker.example:8080",
            "10.0.0.1",
            "localhost.attacker.example",
        ] {
            assert!(!allowlist.allows(host), "{host}");
        }
    }

    #[test]
    fn a_websocket_from_the_servers_own_origin_or_an_allowed_one_may_open() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(websocket_origin_allowed(
            &headers("localhost:8080", Some("http://localhost:8080")),
            &allowed
        ));
        assert!(websocket_origin_allowed(
            &headers("localhost", Some("http://localhost")),
            &allowed
        ));
        assert!(websocket_origin_allowed(
            &headers("api.example.com", Some("https://app.example.com")),
            &allowed
        ));
        assert!(websocket_origin_allowed(
            &headers("localhost:8080", None),
            &allowed
        ));
        // The scheme is not compared: behind a TLS terminator the server cannot know its own,
        // and one port serves one scheme anyway.
        for origin in ["http://localhost:3000", "http://attacker.example", "null"] {
            assert!(
                !websocket_origin_allowed(&headers("localhost:8080", Some(origin)), &allowed),
                "{origin}"
            );
        }
    }
}
