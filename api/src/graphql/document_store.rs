//! Parsed GraphQL documents by the SHA-256 of their text: one bounded store that is both the
//! parsed-document cache and the store of persisted queries.
//!
//! Clients send the same few documents over and over. Keeping each parsed document by its hash
//! lets a repeated text skip the parser, and lets a client that uses automatic persisted queries
//! (Apollo Client, urql, Relay: <https://github.com/apollographql/apollo-link-persisted-queries#apollo-engine>)
//! send only the hash. The store is an LRU bounded both in documents and in bytes of text, so
//! that clients sending ever-new documents cost at most one parse each and cannot grow the
//! server's memory. In allowlist mode (`graphql.persisted_only`) it holds exactly the
//! operations of a manifest, pinned, and learns nothing from requests.

use std::{
    collections::HashMap,
    fmt::Write as _,
    num::NonZeroUsize,
    path::Path,
    sync::{Arc, Mutex},
};

use async_graphql::parser::{parse_query, types::ExecutableDocument};
use lru::LruCache;
use sha2::{Digest, Sha256};

/// The SHA-256 of a document's text, as `extensions.persistedQuery.sha256Hash` carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocumentHash([u8; 32]);

impl DocumentHash {
    pub fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// Reads the 64 hexadecimal digits clients send (either case).
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl std::fmt::Debug for DocumentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            let _ = write!(hex, "{byte:02x}");
        }
        f.write_str(&hex)
    }
}

/// A document as it was received and as it parsed.
pub struct StoredDocument {
    pub text: String,
    pub document: ExecutableDocument,
}

/// How many documents, and how many bytes of their text, the store keeps at most.
#[derive(Debug, Clone, Copy)]
pub struct StoreBounds {
    pub documents: usize,
    pub text_bytes: usize,
}

pub struct DocumentStore {
    learned: Mutex<Learned>,
    /// The manifest's operations in allowlist mode: never evicted, and the only ones that run.
    allowlist: Option<HashMap<DocumentHash, Arc<StoredDocument>>>,
    bounds: StoreBounds,
}

struct Learned {
    entries: LruCache<DocumentHash, Arc<StoredDocument>>,
    text_bytes: usize,
}

impl DocumentStore {
    /// A store that learns every document that parses, up to `bounds`.
    pub fn new(bounds: StoreBounds) -> Self {
        let capacity = NonZeroUsize::new(bounds.documents).unwrap_or(NonZeroUsize::MIN);
        Self {
            learned: Mutex::new(Learned {
                entries: LruCache::new(capacity),
                text_bytes: 0,
            }),
            allowlist: None,
            bounds,
        }
    }

    /// A store holding exactly the operations of `manifest`.
    pub fn allowlist(manifest: Manifest) -> Self {
        Self {
            allowlist: Some(manifest.0),
            ..Self::new(StoreBounds {
                documents: 1,
                text_bytes: 0,
            })
        }
    }

    /// Whether only the manifest's operations may run.
    pub fn is_allowlist(&self) -> bool {
        self.allowlist.is_some()
    }

    /// The document with this hash, if the store holds it.
    pub fn get(&self, hash: &DocumentHash) -> Option<Arc<StoredDocument>> {
        if let Some(allowlist) = &self.allowlist {
            return allowlist.get(hash).cloned();
        }
        let mut learned = self.learned.lock().ok()?;
        learned.entries.get(hash).cloned()
    }

    /// Keeps `document`, parsed from `text` whose hash is `hash`, evicting the least recently
    /// used documents as needed. A text larger than a sixteenth of the byte bound is not kept:
    /// one huge document must not flush every other. Nothing is learned in allowlist mode.
    pub fn insert(&self, hash: DocumentHash, text: &str, document: &ExecutableDocument) {
        if self.allowlist.is_some() || text.len() > self.bounds.text_bytes / 16 {
            return;
        }
        let Ok(mut learned) = self.learned.lock() else {
            return;
        };
        let stored = Arc::new(StoredDocument {
            text: text.to_owned(),
            document: document.clone(),
        });
        learned.text_bytes += text.len();
        if let Some((_, replaced)) = learned.entries.push(hash, stored) {
            learned.text_bytes -= replaced.text.len();
        }
        while learned.text_bytes > self.bounds.text_bytes {
            match learned.entries.pop_lru() {
                Some((_, evicted)) => learned.text_bytes -= evicted.text.len(),
                None => break,
            }
        }
    }

    #[cfg(test)]
    fn learned_size(&self) -> (usize, usize) {
        let learned = self.learned.lock().unwrap();
        (learned.entries.len(), learned.text_bytes)
    }
}

/// The operations a client build may run, by hash: what `graphql.persisted_manifest` names.
pub struct Manifest(HashMap<DocumentHash, Arc<StoredDocument>>);

/// Why a manifest cannot be used; the server does not start with one.
#[derive(Debug, thiserror::Error)]
#[error("graphql.persisted_manifest ({path}): {problem}")]
pub struct ManifestError {
    path: String,
    problem: String,
}

impl Manifest {
    /// Reads a manifest in either format client tooling writes:
    /// - Apollo's (`@apollo/generate-persisted-query-manifest`):
    ///   `{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id": "<sha256>", "body": "<document>", ...}]}`;
    /// - a plain object from hash to document (`{"<sha256>": "<document>"}`), as Relay's
    ///   `persistConfig` and most other tools write it.
    ///
    /// Every hash must be the SHA-256 of its document, and every document must parse.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let fail = |problem: String| ManifestError {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| fail(format!("cannot be read: {error}")))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|error| fail(format!("is not JSON: {error}")))?;
        let pairs: Vec<(String, String)> = match &json {
            serde_json::Value::Object(object) if object.contains_key("operations") => {
                object["operations"]
                    .as_array()
                    .ok_or_else(|| fail("`operations` must be an array".to_owned()))?
                    .iter()
                    .enumerate()
                    .map(|(index, operation)| {
                        let field = |name: &str| {
                            operation[name].as_str().map(str::to_owned).ok_or_else(|| {
                                fail(format!("operations[{index}].{name} must be a string"))
                            })
                        };
                        Ok((field("id")?, field("body")?))
                    })
                    .collect::<Result<_, ManifestError>>()?
            }
            serde_json::Value::Object(object) => object
                .iter()
                .map(|(hash, document)| {
                    let document = document.as_str().ok_or_else(|| {
                        fail(format!("the value of {hash:?} must be the document's text"))
                    })?;
                    Ok((hash.clone(), document.to_owned()))
                })
                .collect::<Result<_, ManifestError>>()?,
            _ => return Err(fail("must be a JSON object".to_owned())),
        };
        let mut operations = HashMap::with_capacity(pairs.len());
        for (id, text) in pairs {
            let hash = DocumentHash::parse(&id)
                .ok_or_else(|| fail(format!("{id:?} is not a SHA-256 hash (64 hex digits)")))?;
            if DocumentHash::of(&text) != hash {
                return Err(fail(format!(
                    "{id} is not the SHA-256 of its document: regenerate the manifest"
                )));
            }
            let document = parse_query(&text)
                .map_err(|error| fail(format!("the document of {id} does not parse: {error}")))?;
            operations.insert(hash, Arc::new(StoredDocument { text, document }));
        }
        if operations.is_empty() {
            return Err(fail("holds no operation".to_owned()));
        }
        Ok(Self(operations))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> ExecutableDocument {
        parse_query(text).unwrap()
    }

    #[test]
    fn a_hash_reads_back_in_either_case_and_refuses_anything_else() {
        let hash = DocumentHash::of("{ a }");
        let hex = format!("{hash:?}");
        assert_eq!(DocumentHash::parse(&hex), Some(hash));
        assert_eq!(DocumentHash::parse(&hex.to_uppercase()), Some(hash));
        assert_eq!(DocumentHash::parse(&hex[1..]), None);
        assert_eq!(DocumentHash::parse(&format!("{}g", &hex[1..])), None);
    }

    #[test]
    fn the_store_is_bounded_in_documents_and_in_bytes_and_forgets_the_least_recent() {
        let store = DocumentStore::new(StoreBounds {
            documents: 4,
            text_bytes: 1600,
        });
        let texts: Vec<String> = (0..6).map(|index| format!("{{ field{index} }}")).collect();
        for text in &texts {
            store.insert(DocumentHash::of(text), text, &parsed(text));
        }
        assert_eq!(store.learned_size().0, 4);
        assert!(store.get(&DocumentHash::of(&texts[0])).is_none());
        assert!(store.get(&DocumentHash::of(&texts[5])).is_some());

        // Touching texts[2] makes texts[3] the least recently used.
        assert!(store.get(&DocumentHash::of(&texts[2])).is_some());
        let big = format!("{{ {} }}", "x ".repeat(45));
        store.insert(DocumentHash::of(&big), &big, &parsed(&big));
        assert!(store.get(&DocumentHash::of(&texts[3])).is_none());
        assert!(store.get(&DocumentHash::of(&texts[2])).is_some());

        let too_big = format!("{{ {} }}", "y ".repeat(60));
        store.insert(DocumentHash::of(&too_big), &too_big, &parsed(&too_big));
        assert!(
            store.get(&DocumentHash::of(&too_big)).is_none(),
            "a text over a sixteenth of the byte bound is not kept"
        );

        // Past the byte bound, the least recent documents go until the rest fits.
        let store = DocumentStore::new(StoreBounds {
            documents: 100,
            text_bytes: 160,
        });
        for text in &texts {
            store.insert(DocumentHash::of(text), text, &parsed(text));
        }
        let extra: Vec<String> = (100..120).map(|index| format!("{{ f{index} }}")).collect();
        for text in &extra {
            store.insert(DocumentHash::of(text), text, &parsed(text));
        }
        let (documents, bytes) = store.learned_size();
        // Twenty 8-byte texts fill the 160 bytes; the 10-byte ones inserted before them went.
        assert_eq!((documents, bytes), (20, 160));
        assert!(store.get(&DocumentHash::of(&extra[19])).is_some());
        assert!(store.get(&DocumentHash::of(&texts[0])).is_none());
    }

    #[test]
    fn a_manifest_must_hash_and_parse_and_then_is_all_the_store_holds() {
        let directory = std::env::temp_dir().join(format!("manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let text = "query Stations { stations { totalCount } }";
        let hash = format!("{:?}", DocumentHash::of(text));

        let apollo = directory.join("apollo.json");
        std::fs::write(
            &apollo,
            serde_json::json!({
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{ "id": hash, "name": "Stations", "type": "query", "body": text }]
            })
            .to_string(),
        )
        .unwrap();
        let store = DocumentStore::allowlist(Manifest::load(&apollo).unwrap());
        assert!(store.get(&DocumentHash::of(text)).is_some());
        store.insert(DocumentHash::of("{ a }"), "{ a }", &parsed("{ a }"));
        assert!(store.get(&DocumentHash::of("{ a }")).is_none());

        let plain = directory.join("plain.json");
        std::fs::write(
            &plain,
            serde_json::json!({ hash.clone(): text }).to_string(),
        )
        .unwrap();
        assert_eq!(Manifest::load(&plain).unwrap().len(), 1);

        let wrong = directory.join("wrong.json");
        std::fs::write(&wrong, serde_json::json!({ hash: "{ other }" }).to_string()).unwrap();
        let error = Manifest::load(&wrong).err().unwrap().to_string();
        assert!(
            error.contains("is not the SHA-256 of its document"),
            "{error}"
        );
        std::fs::remove_dir_all(directory).unwrap();
    }
}
