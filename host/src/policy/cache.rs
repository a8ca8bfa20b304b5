//! A cache of policy answers, for policies whose answer depends on known
//! parts of the request only (`[policy.cache]`).
//!
//! The key is what the answer may depend on: method, authority, path, query,
//! whether the client accepts push, the A/B variant, and the values of the
//! declared headers and cookies (every value, in order; absent is distinct
//! from empty). The policy's configuration is fixed per version and each
//! version has its own cache, so a swap starts empty. Only answers are
//! cached, never failures: a trap or a timeout is retried on the next request.
//!
//! Eviction is by generation: when the current map holds half the capacity
//! it becomes the old one and a new one starts; a hit in the old map moves
//! the entry forward. O(1) per operation, at most `capacity` entries, and
//! what is still asked for survives.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Hint, Request};

/// `[policy.cache]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSpec {
    /// Request headers the answer depends on (lowercase).
    pub headers: Vec<String>,
    /// Cookies the answer depends on.
    pub cookies: Vec<String>,
    /// Entries kept; 0 turns the cache off.
    pub entries: usize,
}

pub struct DecisionCache {
    spec: CacheSpec,
    maps: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<Vec<u8>, Vec<Hint>>,
    old: HashMap<Vec<u8>, Vec<Hint>>,
}

impl DecisionCache {
    /// `None` when the spec turns caching off.
    pub fn new(spec: &CacheSpec) -> Option<DecisionCache> {
        (spec.entries > 0).then(|| DecisionCache {
            spec: spec.clone(),
            maps: Mutex::default(),
        })
    }

    /// The key of `req`: every part the answer may depend on, each
    /// length-prefixed so no two requests share a key by concatenation.
    pub fn key(&self, req: &Request) -> Vec<u8> {
        let mut key = Vec::with_capacity(128);
        let mut part = |bytes: &[u8]| {
            key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            key.extend_from_slice(bytes);
        };
        part(req.method.as_bytes());
        part(req.authority.as_bytes());
        part(req.path.as_bytes());
        match &req.query {
            Some(q) => part(q.as_bytes()),
            None => part(b"\xff"),
        }
        part(&[u8::from(req.push_enabled)]);
        part(req.variant_name.as_bytes());
        for name in &self.spec.headers {
            let mut n = 0u8;
            for h in req.headers.iter().filter(|h| &h.name == name) {
                part(h.value.as_bytes());
                n = n.saturating_add(1);
            }
            part(&[n]);
        }
        for name in &self.spec.cookies {
            let mut n = 0u8;
            for c in req.cookies.iter().filter(|c| &c.name == name) {
                part(c.value.as_bytes());
                n = n.saturating_add(1);
            }
            part(&[n]);
        }
        key
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<Hint>> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hints) = maps.current.get(key) {
            return Some(hints.clone());
        }
        let hints = maps.old.remove(key)?;
        self.put(&mut maps, key.to_vec(), hints.clone());
        Some(hints)
    }

    pub fn insert(&self, key: Vec<u8>, hints: Vec<Hint>) {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        self.put(&mut maps, key, hints);
    }

    fn put(&self, maps: &mut Generations, key: Vec<u8>, hints: Vec<Hint>) {
        if maps.current.len() >= self.spec.entries.div_ceil(2) {
            maps.old = std::mem::take(&mut maps.current);
        }
        maps.current.insert(key, hints);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cookie, Destination, Header};
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)], cookies: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            scheme: "https".into(),
            authority: "example.com".into(),
            path: path.into(),
            query: None,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            cookies: cookies
                .iter()
                .map(|(n, v)| Cookie {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            push_enabled: true,
            variant_name: "default".into(),
        }
    }

    fn hint(path: &str) -> Vec<Hint> {
        vec![Hint {
            path: path.into(),
            urgency: 3,
            incremental: false,
            weight: 16,
            destination: Destination::Style,
            crossorigin: None,
            copy_headers: None,
            headers: Vec::new(),
            delivery: super::super::Delivery::Auto,
        }]
    }

    fn cache(entries: usize) -> DecisionCache {
        DecisionCache::new(&CacheSpec {
            headers: vec!["sec-fetch-dest".into()],
            cookies: vec!["have".into()],
            entries,
        })
        .unwrap()
    }

    #[test]
    fn declared_parts_separate_keys_and_undeclared_ones_do_not() {
        let c = cache(16);
        let base = c.key(&request("/", &[("sec-fetch-dest", "document")], &[]));
        let other_ua = c.key(&request(
            "/",
            &[("sec-fetch-dest", "document"), ("user-agent", "x")],
            &[("theme", "dark")],
        ));
        assert_eq!(base, other_ua);
        for different in [
            request("/a", &[("sec-fetch-dest", "document")], &[]),
            request("/", &[("sec-fetch-dest", "image")], &[]),
            request("/", &[], &[]),
            request("/", &[("sec-fetch-dest", "")], &[]),
            request(
                "/",
                &[("sec-fetch-dest", "document")],
                &[("have", "/a.css")],
            ),
        ] {
            assert_ne!(c.key(&different), base, "{different:?}");
        }
        // Concatenation cannot collide: "ab"+"c" vs "a"+"bc".
        let one = c.key(&request("/", &[("sec-fetch-dest", "ab")], &[("have", "c")]));
        let two = c.key(&request("/", &[("sec-fetch-dest", "a")], &[("have", "bc")]));
        assert_ne!(one, two);
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_what_is_asked_for() {
        let c = cache(4);
        c.insert(b"hot".to_vec(), hint("/hot.css"));
        for i in 0..100u32 {
            c.insert(i.to_le_bytes().to_vec(), hint("/x.css"));
            assert!(c.get(b"hot").is_some(), "evicted at {i}");
            let maps = c.maps.lock().unwrap();
            assert!(maps.current.len() + maps.old.len() <= 4);
        }
        assert_eq!(c.get(b"hot").unwrap()[0].path, "/hot.css");
        assert!(c.get(&0u32.to_le_bytes()).is_none());
    }

    #[test]
    fn zero_entries_is_off() {
        assert!(
            DecisionCache::new(&CacheSpec {
                entries: 0,
                ..CacheSpec::default()
            })
            .is_none()
        );
    }
}
