//! Which media type to answer in, from the request's `Accept` header, as GraphQL over HTTP
//! specifies (<https://graphql.github.io/graphql-over-http/draft/#sec-Accept>): q-values are
//! honoured; `application/graphql-response+json` when the client prefers it, `application/json`
//! otherwise (and when the header is missing or says only `*/*`, as older clients do).

use axum::http::{HeaderMap, header};

use crate::error::{ErrorCode, Refusal, ResponseMedia};

/// The client accepts neither media type.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAcceptable;

impl From<NotAcceptable> for Refusal {
    fn from(_: NotAcceptable) -> Self {
        Refusal::new(
            ErrorCode::NotAcceptable,
            "this endpoint answers application/graphql-response+json or application/json: \
             accept one of them",
        )
    }
}

/// What a request's `Accept` header asks for.
pub struct Accept {
    ranges: Vec<MediaRange>,
}

struct MediaRange {
    kind: String,
    subtype: String,
    quality: f32,
}

/// How well a range matches a media type: `type/subtype` beats `type/*` beats `*/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Wildcard,
    Kind,
    Exact,
}

impl Accept {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut ranges = Vec::new();
        for value in headers.get_all(header::ACCEPT) {
            let Ok(value) = value.to_str() else { continue };
            ranges.extend(value.split(',').filter_map(MediaRange::parse));
        }
        Self { ranges }
    }

    /// The media type to answer a GraphQL request in.
    pub fn graphql(&self) -> Result<ResponseMedia, NotAcceptable> {
        if self.ranges.is_empty() {
            return Ok(ResponseMedia::Json);
        }
        let preferred = self.quality("application", "graphql-response+json");
        let json = self.quality("application", "json");
        match (preferred, json) {
            (None, None) => Err(NotAcceptable),
            (Some(_), None) => Ok(ResponseMedia::GraphqlResponse),
            (None, Some(_)) => Ok(ResponseMedia::Json),
            (Some((q_preferred, how_preferred)), Some((q_json, how_json))) => {
                // Equal qualities: the media type the client named beats one it only allowed
                // by a wildcard, and when it named both, the one made for GraphQL wins.
                let preferred_wins = q_preferred > q_json
                    || (q_preferred == q_json
                        && how_preferred == Specificity::Exact
                        && how_json <= Specificity::Exact);
                Ok(if preferred_wins {
                    ResponseMedia::GraphqlResponse
                } else {
                    ResponseMedia::Json
                })
            }
        }
    }

    /// Whether the client named `text/html` and prefers it to JSON: a browser opening the URL,
    /// which gets the IDE. `*/*` alone (fetch, curl) asks for a GraphQL response.
    pub fn prefers_html(&self) -> bool {
        let Some((html, Specificity::Exact)) = self.quality("text", "html") else {
            return false;
        };
        let best_json = [
            self.quality("application", "graphql-response+json"),
            self.quality("application", "json"),
        ]
        .into_iter()
        .flatten()
        .map(|(quality, _)| quality)
        .fold(0.0, f32::max);
        html > best_json
    }

    /// The quality the client gives `kind/subtype`, from the most specific range that matches
    /// it; `None` when no range matches or the best match has q=0 (refused).
    fn quality(&self, kind: &str, subtype: &str) -> Option<(f32, Specificity)> {
        let best = self
            .ranges
            .iter()
            .filter_map(|range| range.matches(kind, subtype).map(|how| (how, range.quality)))
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))?;
        (best.1 > 0.0).then_some((best.1, best.0))
    }
}

impl MediaRange {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let mut quality = 1.0;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = value.trim().parse::<f32>().ok()?.clamp(0.0, 1.0);
            }
        }
        Some(Self {
            kind: kind.trim().to_ascii_lowercase(),
            subtype: subtype.trim().to_ascii_lowercase(),
            quality,
        })
    }

    fn matches(&self, kind: &str, subtype: &str) -> Option<Specificity> {
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", "*") => Some(Specificity::Wildcard),
            (k, "*") if k == kind => Some(Specificity::Kind),
            (k, s) if k == kind && s == subtype => Some(Specificity::Exact),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> Accept {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        Accept::from_headers(&headers)
    }

    #[test]
    fn the_media_type_follows_the_clients_preference() {
        use ResponseMedia::{GraphqlResponse, Json};
        let cases = [
            ("application/graphql-response+json", Ok(GraphqlResponse)),
            ("application/json", Ok(Json)),
            ("*/*", Ok(Json)),
            ("application/*", Ok(Json)),
            // What Apollo Client and urql send.
            (
                "application/graphql-response+json, application/json;q=0.9",
                Ok(GraphqlResponse),
            ),
            (
                "application/graphql-response+json;q=0.5, application/json",
                Ok(Json),
            ),
            (
                "application/json, application/graphql-response+json",
                Ok(GraphqlResponse),
            ),
            (
                "application/graphql-response+json, */*;q=0.8",
                Ok(GraphqlResponse),
            ),
            ("application/json; charset=utf-8", Ok(Json)),
            ("application/json;q=0, */*", Ok(GraphqlResponse)),
            ("text/html", Err(NotAcceptable)),
            ("application/json;q=0", Err(NotAcceptable)),
            ("APPLICATION/JSON", Ok(Json)),
        ];
        for (header, expected) in cases {
            assert_eq!(accept(header).graphql(), expected, "{header}");
        }
        assert_eq!(
            Accept::from_headers(&HeaderMap::new()).graphql(),
            Ok(Json),
            "no Accept header"
        );
    }

    #[test]
    fn only_a_browser_that_names_html_gets_the_ide() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(accept(browser).prefers_html());
        assert!(!accept("*/*").prefers_html());
        assert!(!accept("application/json, text/html;q=0.5").prefers_html());
        assert!(!accept("text/*").prefers_html());
        assert!(!Accept::from_headers(&HeaderMap::new()).prefers_html());
    }

    proptest::proptest! {
        #[test]
        fn any_header_is_parsed_without_panicking(text in "[ -~]{0,80}") {
            if let Ok(value) = HeaderValue::from_str(&text) {
                let mut headers = HeaderMap::new();
                headers.insert(header::ACCEPT, value);
                let accept = Accept::from_headers(&headers);
                let _ = accept.graphql();
                let _ = accept.prefers_html();
            }
        }
    }
}
