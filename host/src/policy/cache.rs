//! A cache of policy answers, for policies whose answer depends on known
//! parts of the request only (`[policy.cache]`).
//!
//! The key is what the answer may depend on: method, scheme, authority,
//! path, query, whether the client accepts push, the A/B variant, and the
//! values of the declared headers and cookies (every value, in order; absent
//! is distinct from empty). The policy's configuration is fixed per version and each
//! version has its own cache, so a swap starts empty. Only answers are
//! cached, never failures: a trap or a timeout is retried on the next request.
//!
//! Eviction is by generation: when the current map holds half the capacity
//! it becomes the old one and a new one starts; a hit in the old map moves
//! the entry forward. O(1) per operation, at most `capacity` entries, and
//! what is still asked for survives.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::input::View;
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

/// A policy's answer, shared by every request that gets it from the cache.
///
/// It also carries what the caller derives from the hints for this key (the
/// host's plan, with its formatted `Link` values), made on the first request
/// and reused by the next ones: a cache hit then costs a key and a lookup,
/// not a validation and formatting of every hint again. This module never
/// looks inside it.
#[derive(Default)]
pub struct Answer {
    pub hints: Vec<Hint>,
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl Answer {
    pub fn new(hints: Vec<Hint>) -> Answer {
        Answer {
            hints,
            derived: OnceLock::new(),
        }
    }

    /// What `make` derives from these hints, made once per answer. Every
    /// caller of one answer must derive the same type (a different one gets
    /// a fresh value, not cached).
    pub fn derived<T: Any + Send + Sync>(&self, make: impl FnOnce(&[Hint]) -> T) -> Arc<T> {
        if let Some(stored) = self.derived.get() {
            return match stored.clone().downcast::<T>() {
                Ok(value) => value,
                Err(_) => Arc::new(make(&self.hints)),
            };
        }
        let value = Arc::new(make(&self.hints));
        // Two first requests may both make it: they made the same value.
        let _ = self.derived.set(value.clone());
        value
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("hints", &self.hints)
            .finish_non_exhaustive()
    }
}

pub struct DecisionCache {
    spec: CacheSpec,
    /// `spec.headers`, parsed at load: a lookup by `&str` would parse the
    /// name on every request.
    header_names: Vec<Option<http::HeaderName>>,
    maps: Mutex<Generations>,
}

/// Keys are hashed with foldhash, seeded per process: looked up on every
/// request, and each generation holds at most `entries` keys.
type KeyMap = HashMap<Vec<u8>, Arc<Answer>, foldhash::fast::RandomState>;

#[derive(Default)]
struct Generations {
    current: KeyMap,
    old: KeyMap,
}

/// The fixed parts of a key: what every answer depends on.
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    view: View<'a>,
}

/// Feeds each value of a declared header or cookie to `part`, in order.
/// Gets the declared name's index and the name itself.
type Values<'a> = &'a dyn Fn(usize, &str, &mut dyn FnMut(&[u8]));

impl DecisionCache {
    /// `None` when the spec turns caching off.
    pub fn new(spec: &CacheSpec) -> Option<DecisionCache> {
        (spec.entries > 0).then(|| DecisionCache {
            spec: spec.clone(),
            // A name no request header can have matches nothing.
            header_names: spec
                .headers
                .iter()
                .map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            maps: Mutex::default(),
        })
    }

    /// The key of `req`: every part the answer may depend on, each
    /// length-prefixed so no two requests share a key by concatenation.
    pub fn key(&self, req: &Request) -> Vec<u8> {
        let head = Head {
            method: &req.method,
            path: &req.path,
            query: req.query.as_deref(),
            view: View {
                scheme: &req.scheme,
                authority: &req.authority,
                push_enabled: req.push_enabled,
                variant: &req.variant_name,
            },
        };
        let headers = |_, name: &str, part: &mut dyn FnMut(&[u8])| {
            for h in req.headers.iter().filter(|h| h.name == name) {
                part(h.value.as_bytes());
            }
        };
        let cookies = |_, name: &str, part: &mut dyn FnMut(&[u8])| {
            for c in req.cookies.iter().filter(|c| c.name == name) {
                part(c.value.as_bytes());
            }
        };
        self.build_key(&head, &headers, &cookies)
    }

    /// The same key as [`key`](Self::key) of the request `input::build`
    /// would make from these arguments, without building it: a hit then
    /// copies nothing of the request.
    pub fn key_of_parts(&self, parts: &http::request::Parts, view: &View<'_>) -> Vec<u8> {
        let mut key = Vec::with_capacity(128);
        self.write_key_of_parts(parts, view, &mut key);
        key
    }

    /// [`key_of_parts`](Self::key_of_parts), appended to `key` (a buffer
    /// reused across requests: a hit then allocates nothing).
    pub fn write_key_of_parts(
        &self,
        parts: &http::request::Parts,
        view: &View<'_>,
        key: &mut Vec<u8>,
    ) {
        let head = Head {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            view: *view,
        };
        let headers = |i: usize, _: &str, part: &mut dyn FnMut(&[u8])| {
            let Some(name) = &self.header_names[i] else {
                return;
            };
            for v in parts.headers.get_all(name) {
                part(String::from_utf8_lossy(v.as_bytes()).as_bytes());
            }
        };
        let cookies = |_, name: &str, part: &mut dyn FnMut(&[u8])| {
            for (_, value) in super::input::cookies_in(&parts.headers).filter(|(n, _)| *n == name) {
                part(value.as_bytes());
            }
        };
        self.write_key(&head, &headers, &cookies, key)
    }

    fn build_key(&self, head: &Head<'_>, headers: Values<'_>, cookies: Values<'_>) -> Vec<u8> {
        let mut key = Vec::with_capacity(128);
        self.write_key(head, headers, cookies, &mut key);
        key
    }

    fn write_key(
        &self,
        head: &Head<'_>,
        headers: Values<'_>,
        cookies: Values<'_>,
        key: &mut Vec<u8>,
    ) {
        let mut part = |bytes: &[u8]| {
            key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            key.extend_from_slice(bytes);
        };
        part(head.method.as_bytes());
        part(head.view.scheme.as_bytes());
        part(head.view.authority.as_bytes());
        part(head.path.as_bytes());
        match head.query {
            Some(q) => part(q.as_bytes()),
            None => part(b"\xff"),
        }
        part(&[u8::from(head.view.push_enabled)]);
        part(head.view.variant.as_bytes());
        for (names, values) in [(&self.spec.headers, headers), (&self.spec.cookies, cookies)] {
            for (i, name) in names.iter().enumerate() {
                let mut n = 0u8;
                values(i, name, &mut |v| {
                    part(v);
                    n = n.saturating_add(1);
                });
                part(&[n]);
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<Answer>> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(answer) = maps.current.get(key) {
            return Some(answer.clone());
        }
        let answer = maps.old.remove(key)?;
        self.put(&mut maps, key.to_vec(), answer.clone());
        Some(answer)
    }

    pub fn insert(&self, key: Vec<u8>, answer: Arc<Answer>) {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        self.put(&mut maps, key, answer);
    }

    fn put(&self, maps: &mut Generations, key: Vec<u8>, answer: Arc<Answer>) {
        if maps.current.len() >= self.spec.entries.div_ceil(2) {
            maps.old = std::mem::take(&mut maps.current);
        }
        maps.current.insert(key, answer);
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

    fn hint(path: &str) -> Arc<Answer> {
        Arc::new(Answer::new(vec![Hint {
            path: path.into(),
            urgency: 3,
            incremental: false,
            weight: 16,
            destination: Destination::Style,
            crossorigin: None,
            copy_headers: None,
            headers: Vec::new(),
            delivery: super::super::Delivery::Auto,
        }]))
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
            Request {
                scheme: "http".into(),
                ..request("/", &[("sec-fetch-dest", "document")], &[])
            },
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
        assert_eq!(c.get(b"hot").unwrap().hints[0].path, "/hot.css");
        assert!(c.get(&0u32.to_le_bytes()).is_none());
    }

    #[test]
    fn the_key_from_http_parts_is_the_key_of_the_built_request() {
        let c = cache(16);
        let http = http::Request::get("https://shop.example/p?x=1")
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-dest", "iframe")
            .header("user-agent", "UA")
            .header("cookie", "have=/a.css; other=1")
            .header("cookie", "have=\"/b.css\"")
            .body(())
            .unwrap();
        let (parts, ()) = http.into_parts();
        for (scheme, push_enabled) in [("https", true), ("https", false), ("http", true)] {
            let view = View {
                scheme,
                authority: "shop.example",
                push_enabled,
                variant: "b",
            };
            let built = super::super::input::build(&parts, &view, &Default::default());
            assert_eq!(c.key_of_parts(&parts, &view), c.key(&built), "{view:?}");
        }
        let (bare, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let view = View {
            scheme: "https",
            authority: "h",
            push_enabled: true,
            variant: "default",
        };
        let built = super::super::input::build(&bare, &view, &Default::default());
        assert_eq!(c.key_of_parts(&bare, &view), c.key(&built));
    }

    #[test]
    fn what_is_derived_from_an_answer_is_made_once() {
        let answer = hint("/a.css");
        let made = std::cell::Cell::new(0);
        let make = |hints: &[Hint]| {
            made.set(made.get() + 1);
            hints[0].path.clone()
        };
        assert_eq!(*answer.derived(make), "/a.css");
        assert_eq!(*answer.derived(make), "/a.css");
        assert_eq!(made.get(), 1);
        // Another type is made fresh each time, never mistaken for the first.
        assert_eq!(*answer.derived(|h| h.len()), 1);
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
