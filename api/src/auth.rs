//! Who may do what: bearer tokens for mutations (and, optionally, queries).
//!
//! The configuration holds SHA-256 hashes of the tokens, never the tokens themselves, so a
//! leaked configuration file grants nothing. A presented token is hashed and compared with
//! every configured hash in constant time; a refusal says nothing about what was wrong.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::configuration::AuthSettings;

/// What a request needs to run an operation.
#[derive(Debug, Clone)]
pub struct Authenticator {
    hashes: Vec<[u8; 32]>,
    require_for_queries: bool,
    allow_unauthenticated_writes: bool,
}

/// The server cannot start with these settings.
#[derive(Debug, thiserror::Error)]
#[error(
    "auth.token_sha256 is empty and auth.allow_unauthenticated_writes is false, so nobody could \
     write: create a token with `stations-api token new` and set APP__AUTH__TOKEN_SHA256 to its \
     hash (several hashes: comma-separated)"
)]
pub struct NoTokenConfigured;

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, NoTokenConfigured> {
        let hashes: Vec<[u8; 32]> = settings
            .token_sha256
            .iter()
            .filter_map(|hash| decode_hex(hash))
            .collect();
        if hashes.is_empty() && !settings.allow_unauthenticated_writes {
            return Err(NoTokenConfigured);
        }
        Ok(Self {
            hashes,
            require_for_queries: settings.require_for_queries,
            allow_unauthenticated_writes: settings.allow_unauthenticated_writes,
        })
    }

    /// Whether writes are open to anyone (said loudly at start-up).
    pub fn writes_are_open(&self) -> bool {
        self.allow_unauthenticated_writes
    }

    /// Whether a request with this `Authorization` header may run a mutation (`write`) or a
    /// query.
    pub fn permits(&self, authorization: Option<&[u8]>, write: bool) -> bool {
        let open = if write {
            self.allow_unauthenticated_writes
        } else {
            !self.require_for_queries
        };
        open || authorization.is_some_and(|header| self.accepts(header))
    }

    /// Whether `header` is `Bearer <token>` with a configured token. Every configured hash is
    /// compared, each in constant time, whatever the outcome.
    pub fn accepts(&self, header: &[u8]) -> bool {
        let Some(token) = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
        else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut matched = 0u8;
        for hash in &self.hashes {
            let difference = hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= u8::from(difference == 0);
        }
        matched == 1
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

    fn authenticator(hashes: Vec<String>, open_writes: bool) -> Authenticator {
        Authenticator::new(&AuthSettings {
            token_sha256: hashes,
            require_for_queries: false,
            allow_unauthenticated_writes: open_writes,
        })
        .unwrap()
    }

    #[test]
    fn a_new_token_is_accepted_by_its_hash_and_nothing_else() {
        let (token, hash) = new_token().unwrap();
        let auth = authenticator(vec![hash.to_uppercase()], false);
        assert!(auth.permits(Some(format!("Bearer {token}").as_bytes()), true));
        assert!(!auth.permits(Some(format!("Bearer {token}x").as_bytes()), true));
        assert!(
            !auth.permits(Some(token.as_bytes()), true),
            "the scheme is required"
        );
        assert!(!auth.permits(None, true));
        assert!(auth.permits(None, false), "queries are open by default");
    }

    #[test]
    fn without_tokens_writes_must_be_opened_explicitly() {
        let settings = AuthSettings {
            token_sha256: Vec::new(),
            require_for_queries: false,
            allow_unauthenticated_writes: false,
        };
        assert!(Authenticator::new(&settings).is_err());
        assert!(authenticator(Vec::new(), true).permits(None, true));
    }
}
