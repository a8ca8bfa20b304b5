//! One request's view of its client's cache: the signed digest cookie it
//! brought (see `digest`), answered for the policy's `likely-cached`, and
//! updated with what this response sends.
//!
//! A resource's version is its ETag now: for a static file, computed from
//! the file as it is on disk; for a resource served by an upstream, the ETag
//! that upstream last sent for it when Herald pushed it (remembered in a
//! bounded book). A resource whose ETag is unknown is never "likely cached"
//! and is not recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::digest::{Digest, DigestKey};
use crate::origin::StaticOrigin;
use crate::proxy::Proxy;

/// The ETags upstreams sent for resources Herald pushed from them.
pub struct EtagBook {
    map: Mutex<HashMap<String, String>>,
    cap: usize,
}

impl EtagBook {
    pub fn new(cap: usize) -> EtagBook {
        EtagBook {
            map: Mutex::new(HashMap::new()),
            cap,
        }
    }

    pub fn learn(&self, path: &str, etag: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.cap && !map.contains_key(path) {
            // Bounded: start over rather than track ages. Unknown means
            // "not cached", the safe answer.
            map.clear();
        }
        map.insert(path.to_string(), etag.to_string());
    }

    pub fn get(&self, path: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(path).cloned()
    }
}

/// Where current ETags come from.
pub struct Versions {
    pub origin: Arc<StaticOrigin>,
    pub proxy: Arc<Proxy>,
    pub upstream_etags: EtagBook,
}

impl Versions {
    /// The current ETag of `path_and_query`, if known.
    pub async fn etag(&self, path_and_query: &str) -> Option<String> {
        let path = path_and_query.split('?').next().unwrap_or("/");
        if self.proxy.route(path).is_some() {
            return self.upstream_etags.get(path_and_query);
        }
        self.origin.etag_of(path).await
    }
}

/// The digest a request brought, and what its response adds.
pub struct ClientDigest {
    key: Arc<DigestKey>,
    versions: Arc<Versions>,
    state: Mutex<State>,
}

struct State {
    digest: Digest,
    changed: bool,
}

impl ClientDigest {
    /// From the request's cookies: a digest that fails its signature or
    /// does not decode counts as empty.
    pub fn from_request(
        key: Arc<DigestKey>,
        versions: Arc<Versions>,
        cookie_name: &str,
        headers: &http::HeaderMap,
    ) -> ClientDigest {
        let value = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == cookie_name)
            .map(|(_, value)| value.trim_matches('"'));
        let digest = value.and_then(|v| key.open(v)).unwrap_or_default();
        ClientDigest {
            key,
            versions,
            state: Mutex::new(State {
                digest,
                changed: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record that `path_and_query` at `etag` was sent to this client. When
    /// the digest is full it starts over (from what this response sends).
    pub fn record(&self, path_and_query: &str, etag: &str) {
        let entry = self.key.entry(path_and_query, etag);
        let mut st = self.state();
        if st.digest.contains(entry) {
            return;
        }
        if st.digest.len() >= self.key.max_entries() {
            st.digest = Digest::new();
        }
        st.digest.insert(entry);
        st.changed = true;
    }

    /// Record a hinted resource at its current version, if known.
    pub async fn record_current(&self, path_and_query: &str) {
        if let Some(etag) = self.versions.etag(path_and_query).await {
            self.record(path_and_query, &etag);
        }
    }

    /// The `Set-Cookie` for the response, if the digest changed.
    pub fn set_cookie(
        &self,
        cookie_name: &str,
        max_age_s: u64,
        https: bool,
    ) -> Option<HeaderValue> {
        let st = self.state();
        if !st.changed {
            return None;
        }
        let value = self.key.seal(&st.digest);
        let secure = if https { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{cookie_name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}"
        ))
        .ok()
    }
}

#[async_trait::async_trait]
impl crate::policy::ClientCache for ClientDigest {
    async fn likely_cached(&self, path: &str) -> bool {
        if self.state().digest.is_empty() {
            return false;
        }
        let Some(etag) = self.versions.etag(path).await else {
            return false;
        };
        let entry = self.key.entry(path, &etag);
        self.state().digest.contains(entry)
    }
}
