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
//!
//! In front of that shared map and its lock, each thread keeps its last
//! hits (64 slots, direct-mapped by a hash of the parts that tell most
//! requests apart), found without a lock or a copy of the key: the hash is
//! taken, and each part of the key compared, straight from the HTTP
//! request (its path and query as the `:path` they both come from), and
//! the caller is handed the answer where it lies. The declared headers' and
//! cookies' values are read once per lookup (a `cookie` header is parsed
//! once per declared cookie), into a buffer the thread reuses, and that one
//! encoding is hashed, compared and, on a miss, put in the key. A slot
//! names the cache it came from, so another version's cache never answers
//! from it; an answer evicted from the shared map may still be given from a
//! slot until that slot is taken, which changes nothing (the same version,
//! the same key).
//! A key answered from the fronts is not refreshed in the shared map, so it
//! may age out there: it costs a call once its slots are taken, never a
//! wrong answer.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::input::View;
use super::{Hint, Request, front};

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
    /// Names this cache in the threads' fronts (an address could be reused
    /// by a later version's cache).
    id: u64,
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

/// Where a key's parts come from: a built request (tools, samples) or the
/// HTTP request itself (the server). Both give the same parts in the same
/// order, so both give the same key.
trait KeySource {
    fn method(&self) -> &str;
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    fn view(&self) -> View<'_>;
    /// Each value of the `i`th declared header (`name`), in order.
    fn header_values(&self, cache: &DecisionCache, i: usize, part: &mut impl FnMut(&[u8]));
    /// Each value of the declared cookie `name`, in order.
    fn cookie_values(&self, name: &str, part: &mut impl FnMut(&[u8]));
}

impl KeySource for Request {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
    fn view(&self) -> View<'_> {
        View {
            scheme: &self.scheme,
            authority: &self.authority,
            push_enabled: self.push_enabled,
            variant: &self.variant_name,
        }
    }
    fn header_values(&self, cache: &DecisionCache, i: usize, part: &mut impl FnMut(&[u8])) {
        let name = &cache.spec.headers[i];
        for h in self.headers.iter().filter(|h| h.name == *name) {
            part(h.value.as_bytes());
        }
    }
    fn cookie_values(&self, name: &str, part: &mut impl FnMut(&[u8])) {
        for c in self.cookies.iter().filter(|c| c.name == name) {
            part(c.value.as_bytes());
        }
    }
}

/// The HTTP request a key is found from, as `input::build` would see it.
struct Parts<'a> {
    parts: &'a http::request::Parts,
    view: &'a View<'a>,
}

impl KeySource for Parts<'_> {
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }
    fn path(&self) -> &str {
        self.parts.uri.path()
    }
    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }
    fn view(&self) -> View<'_> {
        *self.view
    }
    fn header_values(&self, cache: &DecisionCache, i: usize, part: &mut impl FnMut(&[u8])) {
        // A name no request header can have matches nothing.
        let Some(name) = &cache.header_names[i] else {
            return;
        };
        for v in self.parts.headers.get_all(name) {
            // As `input::build` reads it: lossily, which copies only when
            // the bytes are not UTF-8.
            match std::str::from_utf8(v.as_bytes()) {
                Ok(text) => part(text.as_bytes()),
                Err(_) => part(String::from_utf8_lossy(v.as_bytes()).as_bytes()),
            }
        }
    }
    fn cookie_values(&self, name: &str, part: &mut impl FnMut(&[u8])) {
        let cookies = super::input::cookies_in(&self.parts.headers);
        for (_, raw) in cookies.filter(|(n, _)| *n == name) {
            part(super::input::cookie_value(raw).as_bytes());
        }
    }
}

/// The parts of a key every request has, read from its source once per key
/// (an HTTP request's path and query are found by parsing its URI; the
/// front compares its `:path` whole instead).
struct Fixed<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    view: View<'a>,
}

impl<'a> Fixed<'a> {
    fn of(src: &'a impl KeySource) -> Fixed<'a> {
        Fixed {
            method: src.method(),
            path: src.path(),
            query: src.query(),
            view: src.view(),
        }
    }
}

thread_local! {
    /// This thread's front: its last hits, of any cache.
    static FRONT: std::cell::RefCell<front::Slots<Arc<Answer>>> =
        const { std::cell::RefCell::new(front::Slots::new()) };
    /// The buffer a lookup encodes the declared lists into, reused.
    static LISTS: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One part of a key: its length, four bytes, then its bytes.
fn encode_part(key: &mut Vec<u8>, bytes: &[u8]) {
    key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    key.extend_from_slice(bytes);
}

/// `src`'s key, its declared lists already encoded (`lists`): the fixed
/// parts, each length-prefixed so no two requests share a key by
/// concatenation, then the lists.
fn key_with(src: &Fixed<'_>, lists: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(128 + lists.len());
    let mut part = |bytes: &[u8]| encode_part(&mut key, bytes);
    let view = &src.view;
    part(src.method.as_bytes());
    part(view.scheme.as_bytes());
    part(view.authority.as_bytes());
    part(src.path.as_bytes());
    match src.query {
        Some(q) => part(q.as_bytes()),
        None => part(b"\xff"),
    }
    part(&[u8::from(view.push_enabled)]);
    part(view.variant.as_bytes());
    key.extend_from_slice(lists);
    key
}

impl DecisionCache {
    /// `None` when the spec turns caching off.
    pub fn new(spec: &CacheSpec) -> Option<DecisionCache> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        (spec.entries > 0).then(|| DecisionCache {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            spec: spec.clone(),
            header_names: spec
                .headers
                .iter()
                .map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            maps: Mutex::default(),
        })
    }

    /// Whether no header or cookie is part of its keys.
    pub fn keys_by_request_line(&self) -> bool {
        self.spec.headers.is_empty() && self.spec.cookies.is_empty()
    }

    /// The key of `req`: every part the answer may depend on, each
    /// length-prefixed so no two requests share a key by concatenation.
    pub fn key(&self, req: &Request) -> Vec<u8> {
        self.key_from(req)
    }

    /// The same key as [`key`](Self::key) of the request `input::build`
    /// would make from these arguments, without building it.
    pub fn key_of_parts(&self, parts: &http::request::Parts, view: &View<'_>) -> Vec<u8> {
        self.key_from(&Parts { parts, view })
    }

    fn key_from(&self, src: &impl KeySource) -> Vec<u8> {
        let mut lists = Vec::new();
        self.encode_lists(src, &mut lists);
        key_with(&Fixed::of(src), &lists)
    }

    /// The declared headers' and cookies' parts of `src`'s key, in order,
    /// encoded as in the key, into `out` (left empty when nothing is
    /// declared).
    fn encode_lists(&self, src: &impl KeySource, out: &mut Vec<u8>) {
        // Each declared list ends with its count, four bytes (a count that
        // saturated, or a byte long, could be imitated by a value).
        for i in 0..self.spec.headers.len() {
            let mut n = 0u32;
            src.header_values(self, i, &mut |v| {
                encode_part(out, v);
                n += 1;
            });
            encode_part(out, &n.to_le_bytes());
        }
        for name in &self.spec.cookies {
            let mut n = 0u32;
            src.cookie_values(name, &mut |v| {
                encode_part(out, v);
                n += 1;
            });
            encode_part(out, &n.to_le_bytes());
        }
    }

    /// The answer for the HTTP request `parts` describe, or its key (to
    /// insert the answer under once the policy has given it).
    pub fn lookup(
        &self,
        parts: &http::request::Parts,
        view: &View<'_>,
    ) -> Result<Arc<Answer>, Vec<u8>> {
        self.lookup_then(parts, view, Arc::clone)
    }

    /// [`lookup`](Self::lookup), giving `hit` a reference to the answer
    /// found rather than a clone (one reference count fewer taken and
    /// dropped). `hit` may run while this thread's front is borrowed: it
    /// must not look up a decision cache itself.
    pub fn lookup_then<R>(
        &self,
        parts: &http::request::Parts,
        view: &View<'_>,
        hit: impl FnOnce(&Arc<Answer>) -> R,
    ) -> Result<R, Vec<u8>> {
        let src = Parts { parts, view };
        if self.keys_by_request_line() {
            return self.lookup_with(&src, &[], hit);
        }
        let mut lists = LISTS.take();
        lists.clear();
        self.encode_lists(&src, &mut lists);
        let found = self.lookup_with(&src, &lists, hit);
        LISTS.set(lists);
        found
    }

    /// [`lookup_then`](Self::lookup_then), `lists` being `src`'s declared
    /// lists, encoded.
    fn lookup_with<R>(
        &self,
        src: &Parts<'_>,
        lists: &[u8],
        hit: impl FnOnce(&Arc<Answer>) -> R,
    ) -> Result<R, Vec<u8>> {
        let front = front::Ask::of(src.parts, src.view, lists);
        let mut hit = Some(hit);
        let mut hashed = None;
        if let Some(ask) = &front {
            let hash = ask.hash(self.id);
            hashed = Some(hash);
            let answered = FRONT.with_borrow(|slots| {
                let answer = slots.get(self.id, hash, ask)?;
                Some(hit.take()?(answer))
            });
            if let Some(answered) = answered {
                return Ok(answered);
            }
        }
        let answer = self.shared_lookup(src, lists, front.zip(hashed))?;
        let hit = hit.take().expect("a hit is given once");
        Ok(hit(&answer))
    }

    /// [`lookup_with`](Self::lookup_with) past the front: the shared map,
    /// and a hit kept in the front (`front`: the request as the front sees
    /// it, and its hash). Out of line: most requests end at the front, and
    /// this is most of the code.
    #[cold]
    #[inline(never)]
    fn shared_lookup(
        &self,
        src: &Parts<'_>,
        lists: &[u8],
        front: Option<(front::Ask<'_>, u64)>,
    ) -> Result<Arc<Answer>, Vec<u8>> {
        let key = key_with(&Fixed::of(src), lists);
        let Some(answer) = self.get(&key) else {
            return Err(key);
        };
        if let Some((ask, hash)) = front {
            FRONT.with_borrow_mut(|f| f.put(self.id, hash, &ask, answer.clone()));
        }
        Ok(answer)
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
    fn a_value_cannot_pass_for_a_count() {
        // With one-byte counts that stopped at 255, 48 values counted "0"
        // (byte 48), and a 256th cookie went uncounted: these two requests
        // had one key.
        let c = DecisionCache::new(&CacheSpec {
            headers: vec!["x-a".into()],
            cookies: vec!["c".into()],
            entries: 16,
        })
        .unwrap();
        let values: Vec<String> = (0..48).map(|i| format!("v{i}")).collect();
        let cookies: Vec<String> = (0..255).map(|i| format!("k{i}")).collect();
        let b_headers: Vec<(&str, &str)> = values.iter().map(|v| ("x-a", v.as_str())).collect();
        let mut a_headers = b_headers.clone();
        a_headers.push(("x-a", "0"));
        let a_jar: Vec<(&str, &str)> = cookies.iter().map(|v| ("c", v.as_str())).collect();
        let mut b_jar = vec![("c", "1")];
        b_jar.extend(a_jar.iter().copied());
        let a = c.key(&request("/", &a_headers, &a_jar));
        let b = c.key(&request("/", &b_headers, &b_jar));
        assert_ne!(a, b);
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
    fn a_key_is_its_parts_in_a_fixed_order_each_length_prefixed() {
        // The format tools and logs compare keys by: pinned byte for byte.
        let (parts, ()) = http::Request::get("https://shop.example/p?x=1")
            .header("sec-fetch-dest", "document")
            .header("cookie", "have=/a.css")
            .body(())
            .unwrap()
            .into_parts();
        let view = View {
            scheme: "https",
            authority: "shop.example",
            push_enabled: false,
            variant: "b",
        };
        let mut want = Vec::new();
        let parts_in_order: [&[u8]; 11] = [
            b"GET",
            b"https",
            b"shop.example",
            b"/p",
            b"x=1",
            &[0],
            b"b",
            b"document",
            &1u32.to_le_bytes(),
            b"/a.css",
            &1u32.to_le_bytes(),
        ];
        for part in parts_in_order {
            want.extend_from_slice(&(part.len() as u32).to_le_bytes());
            want.extend_from_slice(part);
        }
        assert_eq!(cache(16).key_of_parts(&parts, &view), want);
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

    fn parts_of(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::get(uri);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    const VIEW: View<'static> = View {
        scheme: "https",
        authority: "shop.example",
        push_enabled: false,
        variant: "default",
    };

    #[test]
    fn a_lookup_answers_what_was_inserted_under_its_key_and_nothing_else() {
        let c = cache(16);
        let page = parts_of(
            "/p?x=1",
            &[("sec-fetch-dest", "document"), ("cookie", "have=/a.css")],
        );
        let Err(key) = c.lookup(&page, &VIEW) else {
            panic!("an empty cache answered");
        };
        assert_eq!(key, c.key_of_parts(&page, &VIEW));
        c.insert(key, hint("/a.css"));
        // From the shared map, then from this thread's front: the same answer.
        let first = c.lookup(&page, &VIEW).expect("inserted");
        let again = c.lookup(&page, &VIEW).expect("kept");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again.hints[0].path, "/a.css");
        // A request that differs in any part of the key misses, front or not.
        let others = [
            parts_of(
                "/p?x=2",
                &[("sec-fetch-dest", "document"), ("cookie", "have=/a.css")],
            ),
            parts_of(
                "/p",
                &[("sec-fetch-dest", "document"), ("cookie", "have=/a.css")],
            ),
            parts_of(
                "/p?x=1",
                &[("sec-fetch-dest", "image"), ("cookie", "have=/a.css")],
            ),
            parts_of("/p?x=1", &[("sec-fetch-dest", "document")]),
            parts_of("/p?x=1", &[("cookie", "have=/a.css")]),
            parts_of(
                "/p?x=1",
                &[
                    ("sec-fetch-dest", "document"),
                    ("sec-fetch-dest", "document"),
                    ("cookie", "have=/a.css"),
                ],
            ),
        ];
        for other in &others {
            match c.lookup(other, &VIEW) {
                Ok(_) => panic!("{other:?} answered from another request's entry"),
                Err(key) => assert_eq!(key, c.key_of_parts(other, &VIEW)),
            }
        }
        for view in [
            View {
                push_enabled: true,
                ..VIEW
            },
            View {
                variant: "b",
                ..VIEW
            },
            View {
                authority: "other.example",
                ..VIEW
            },
            // Not in the front's hash: the same slot, told apart by comparing.
            View {
                scheme: "http",
                ..VIEW
            },
        ] {
            assert!(c.lookup(&page, &view).is_err(), "{view:?}");
        }
        let mut head = page.clone();
        head.method = http::Method::HEAD;
        assert!(c.lookup(&head, &VIEW).is_err(), "HEAD answered as GET");
        // Still there after the misses.
        assert!(Arc::ptr_eq(&c.lookup(&page, &VIEW).unwrap(), &first));
    }

    #[test]
    fn a_front_slot_tells_its_parts_apart_where_their_text_runs_on() {
        // A slot keeps its parts' text in one block: the same bytes split
        // elsewhere between path, authority, scheme and variant are
        // another key.
        let c = cache(16);
        let page = parts_of("/ps", &[]);
        let view = View {
            authority: "hop.example",
            ..VIEW
        };
        let Err(key) = c.lookup(&page, &view) else {
            panic!("an empty cache answered");
        };
        c.insert(key, hint("/a.css"));
        c.lookup(&page, &view).expect("inserted");
        c.lookup(&page, &view).expect("kept in the front");
        let shifted = [
            (parts_of("/p", &[]), VIEW),
            (
                parts_of("/ps", &[]),
                View {
                    authority: "hop.examplehttp",
                    scheme: "s",
                    ..VIEW
                },
            ),
            (
                parts_of("/ps", &[]),
                View {
                    authority: "hop.example",
                    scheme: "httpsdef",
                    variant: "ault",
                    ..VIEW
                },
            ),
        ];
        for (parts, view) in &shifted {
            assert!(c.lookup(parts, view).is_err(), "{} {view:?}", parts.uri);
        }
    }

    #[test]
    fn a_uri_without_a_path_is_never_answered_as_slash() {
        // Its `:path` reads "/", its path is "": another key.
        let c = cache(16);
        let page = parts_of("/", &[("sec-fetch-dest", "document")]);
        c.insert(c.key_of_parts(&page, &VIEW), hint("/a.css"));
        for _ in 0..2 {
            assert!(c.lookup(&page, &VIEW).is_ok());
        }
        let mut bare = page.clone();
        bare.uri = http::Uri::from_parts(Default::default()).unwrap();
        assert_eq!(bare.uri.path(), "");
        match c.lookup(&bare, &VIEW) {
            Ok(_) => panic!("answered from the entry of \"/\""),
            Err(key) => assert_eq!(key, c.key_of_parts(&bare, &VIEW)),
        }
    }

    #[test]
    fn another_cache_never_answers_from_a_threads_front() {
        let (one, two) = (cache(16), cache(16));
        let page = parts_of("/", &[("sec-fetch-dest", "document")]);
        one.insert(one.key_of_parts(&page, &VIEW), hint("/one.css"));
        for _ in 0..2 {
            assert_eq!(one.lookup(&page, &VIEW).unwrap().hints[0].path, "/one.css");
        }
        assert!(two.lookup(&page, &VIEW).is_err());
        two.insert(two.key_of_parts(&page, &VIEW), hint("/two.css"));
        for _ in 0..2 {
            assert_eq!(two.lookup(&page, &VIEW).unwrap().hints[0].path, "/two.css");
            assert_eq!(one.lookup(&page, &VIEW).unwrap().hints[0].path, "/one.css");
        }
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
