//! Who is calling, and in which role: bearer tokens, either static ones configured by their
//! SHA-256 hash (service accounts) or JWTs issued by an identity provider (people, see
//! [`jwt`]).
//!
//! The configuration holds hashes of static tokens, never the tokens themselves, so a leaked
//! configuration file grants nothing; a presented token is compared with every configured hash
//! in constant time. A refusal says nothing about what was wrong. What each role may do is
//! enforced by guards on the schema ([`guard`]).

pub mod guard;
pub mod jwt;

use std::{fmt::Write as _, sync::Arc, time::SystemTime};

use sha2::{Digest, Sha256};

use crate::configuration::AuthSettings;
use jwt::{JwtError, JwtVerifier};

/// What a caller may do, each role including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Queries and subscriptions.
    Reader,
    /// Also mutations.
    Writer,
    /// Also whatever is restricted further.
    Admin,
}

impl Role {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "reader" => Some(Self::Reader),
            "writer" => Some(Self::Writer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`; `None` for a static token and for anonymous callers.
    pub subject: Option<String>,
    /// The role the token grants; `None` when it grants none (or there is no token).
    pub role: Option<Role>,
    /// Whether a valid token was presented.
    pub authenticated: bool,
    /// When the token stops being accepted (a JWT's `exp`, plus the leeway for clock skew).
    pub expires_at: Option<SystemTime>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            subject: None,
            role: None,
            authenticated: false,
            expires_at: None,
        }
    }
}

/// A request's principal and what the settings allow anyone: what guards decide on. In each
/// operation's data.
#[derive(Debug, Clone)]
pub struct Access {
    pub principal: Principal,
    /// The role of a caller without a token: writer when auth.allow_unauthenticated_writes,
    /// reader unless auth.require_for_queries, none otherwise.
    pub open_role: Option<Role>,
}

impl Access {
    /// The role the request acts in: a token never grants less than no token would.
    pub fn role(&self) -> Option<Role> {
        self.principal.role.max(self.open_role)
    }
}

/// Why a request could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A token was presented and is not valid: `UNAUTHENTICATED`. What was wrong goes to the
    /// log at debug level, never to the client.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A JWT came before the identity provider's signing keys could be loaded:
    /// `SERVICE_UNAVAILABLE`.
    #[error("signing keys not loaded yet")]
    KeysNotLoaded,
}

/// The server cannot start with these settings.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(
        "auth.token_sha256 is empty, auth.jwt is off and auth.allow_unauthenticated_writes is \
         false, so nobody could write: create a token with `stations-api token new` and set \
         APP__AUTH__TOKEN_SHA256 to its hash (several: comma-separated), or configure auth.jwt"
    )]
    NoWayToWrite,
    #[error(
        "auth.token_sha256 holds {0:?}, which is not a SHA-256 hash (64 hex digits), optionally followed by :reader, :writer or :admin"
    )]
    BadHash(String),
    #[error(transparent)]
    Jwt(#[from] jwt::JwtSetupError),
}

/// Tokens longer than this are refused without being parsed.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Authenticates requests with the configured tokens.
pub struct Authenticator {
    static_tokens: Vec<([u8; 32], Role)>,
    require_for_queries: bool,
    allow_unauthenticated_writes: bool,
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthSetupError> {
        let static_tokens = settings
            .token_sha256
            .iter()
            .map(|entry| {
                let (hash, role) = match entry.split_once(':') {
                    Some((hash, role)) => (hash, Role::parse(role.trim())),
                    None => (entry.as_str(), Some(Role::Writer)),
                };
                match (decode_hex(hash.trim()), role) {
                    (Some(hash), Some(role)) => Ok((hash, role)),
                    _ => Err(AuthSetupError::BadHash(entry.clone())),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let jwt = if settings.jwt.enabled {
            Some(Arc::new(JwtVerifier::new(&settings.jwt)?))
        } else {
            None
        };
        if static_tokens.is_empty() && jwt.is_none() && !settings.allow_unauthenticated_writes {
            return Err(AuthSetupError::NoWayToWrite);
        }
        Ok(Self {
            static_tokens,
            require_for_queries: settings.require_for_queries,
            allow_unauthenticated_writes: settings.allow_unauthenticated_writes,
            jwt,
        })
    }

    /// Whether writes are open to anyone (said loudly at start-up).
    pub fn writes_are_open(&self) -> bool {
        self.allow_unauthenticated_writes
    }

    /// The role of a caller without a token.
    pub fn open_role(&self) -> Option<Role> {
        if self.allow_unauthenticated_writes {
            Some(Role::Writer)
        } else if self.require_for_queries {
            None
        } else {
            Some(Role::Reader)
        }
    }

    /// The JWT verifier, when `auth.jwt` is on.
    pub fn jwt(&self) -> Option<&Arc<JwtVerifier>> {
        self.jwt.as_ref()
    }

    /// Who sent this `Authorization` header: anonymous without one, or the principal its
    /// token names. Whether that principal may run the operation is for the caller to decide.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        let Some(header) = authorization else {
            return Ok(Principal::anonymous());
        };
        if header.len() > MAX_TOKEN_BYTES + 7 {
            return Err(AuthError::Invalid(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or_else(|| AuthError::Invalid("not a Bearer token".to_owned()))?;
        if let Some(role) = self.static_role(token) {
            return Ok(Principal {
                subject: None,
                role: Some(role),
                authenticated: true,
                expires_at: None,
            });
        }
        match (&self.jwt, std::str::from_utf8(token)) {
            (Some(jwt), Ok(token)) if token.matches('.').count() == 2 => {
                jwt.verify(token).await.map_err(|error| match error {
                    JwtError::KeysNotLoaded => AuthError::KeysNotLoaded,
                    other => AuthError::Invalid(other.to_string()),
                })
            }
            _ => Err(AuthError::Invalid("no such token".to_owned())),
        }
    }

    /// The role of `token` if it is a configured static token. Every configured hash is
    /// compared, each in constant time, whatever the outcome.
    fn static_role(&self, token: &[u8]) -> Option<Role> {
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for (hash, role) in &self.static_tokens {
            let difference = hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(*role);
            }
        }
        found
    }
}

/// A new random token (256 bits, hex) and the SHA-256 hash to configure for it.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = hex(&bytes);
    let hash = hex(&Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::JwtSettings;

    fn authenticator(
        hashes: Vec<String>,
        open_writes: bool,
    ) -> Result<Authenticator, AuthSetupError> {
        Authenticator::new(&AuthSettings {
            token_sha256: hashes,
            require_for_queries: false,
            allow_unauthenticated_writes: open_writes,
            jwt: JwtSettings::default(),
        })
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[tokio::test]
    async fn a_static_token_is_known_by_its_hash_with_its_role() {
        let (writer, writer_hash) = new_token().unwrap();
        let (reader, reader_hash) = new_token().unwrap();
        let auth = authenticator(
            vec![writer_hash.to_uppercase(), format!("{reader_hash}:reader")],
            false,
        )
        .unwrap();
        let role = |header: Vec<u8>| {
            let auth = &auth;
            async move { auth.authenticate(Some(&header)).await.map(|who| who.role) }
        };
        assert_eq!(role(bearer(&writer)).await, Ok(Some(Role::Writer)));
        assert_eq!(role(bearer(&reader)).await, Ok(Some(Role::Reader)));
        assert!(role(bearer(&format!("{writer}x"))).await.is_err());
        assert!(
            role(writer.clone().into_bytes()).await.is_err(),
            "the scheme is required"
        );
        assert!(role(bearer(&"x".repeat(100_000))).await.is_err());
        assert_eq!(auth.authenticate(None).await, Ok(Principal::anonymous()));
    }

    #[test]
    fn without_a_way_to_write_the_server_does_not_start() {
        assert!(matches!(
            authenticator(Vec::new(), false),
            Err(AuthSetupError::NoWayToWrite)
        ));
        assert!(authenticator(Vec::new(), true).is_ok());
        assert!(matches!(
            authenticator(vec!["abc:writer".to_owned()], true),
            Err(AuthSetupError::BadHash(_))
        ));
        let (_, hash) = new_token().unwrap();
        assert!(matches!(
            authenticator(vec![format!("{hash}:owner")], true),
            Err(AuthSetupError::BadHash(_))
        ));
    }
}
