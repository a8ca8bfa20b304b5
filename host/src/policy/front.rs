//! A thread's table of recent request keys, for lookups on every request
//! that must take no lock and copy no key.
//!
//! Direct-mapped: a slot is chosen by a hash of the parts that tell most
//! requests apart (`:path` and authority, and the declared lists when there
//! are some), and holds one key and its value; a new key takes the slot
//! from the one there. A key is kept as its parts, and a request is
//! compared with it part by part straight from the HTTP request, never
//! encoded first. Each slot names its owner (a decision cache, or a policy
//! registry), so no owner is ever answered from another's slot.
//!
//! Two tables are kept per thread: the decision cache's last hits
//! ([`super::cache`]), and the request path's last decisions
//! (`crate::decide`).

use super::input::View;

/// Slots per table.
pub const SLOTS: usize = 64;

/// Seeds the hash (fixed: a table is this process's own, and a collision
/// costs a slower lookup, never a wrong answer).
const SEED: u64 = 0x6865_7261_6c64_6b79;

/// A request as a table finds and compares it.
pub struct Ask<'a> {
    path_and_query: &'a str,
    method: &'a http::Method,
    view: &'a View<'a>,
    /// The declared headers' and cookies' values, encoded (empty when none
    /// are declared).
    lists: &'a [u8],
}

impl<'a> Ask<'a> {
    /// The request `parts` describe, seen as `view`, with `lists`; `None`
    /// for a URI without a path (CONNECT's authority form, or no path and
    /// no scheme, whose path is "" where its `:path` reads "/"): there the
    /// `:path` does not determine the path, and such a request is never
    /// kept.
    pub fn of(
        parts: &'a http::request::Parts,
        view: &'a View<'a>,
        lists: &'a [u8],
    ) -> Option<Ask<'a>> {
        if parts.uri.path().is_empty() {
            return None;
        }
        Some(Ask {
            path_and_query: parts.uri.path_and_query()?.as_str(),
            method: &parts.method,
            view,
            lists,
        })
    }

    /// The text parts of its key other than the lists, in the order a slot
    /// keeps them.
    fn text_parts(&self) -> [&[u8]; 4] {
        [
            self.path_and_query.as_bytes(),
            self.view.authority.as_bytes(),
            self.view.scheme.as_bytes(),
            self.view.variant.as_bytes(),
        ]
    }

    /// Its hash in `owner`'s table: of the parts that tell most requests
    /// apart, and of the owner (each A/B variant has a cache of its own,
    /// and one page in two variants must not take one slot by turns). The
    /// other parts (method, scheme, push, variant) are compared, never
    /// trusted to it.
    pub fn hash(&self, owner: u64) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::with_seed(SEED).build_hasher();
        h.write_u64(owner);
        h.write(self.path_and_query.as_bytes());
        h.write(self.view.authority.as_bytes());
        if !self.lists.is_empty() {
            h.write(self.lists);
        }
        h.finish()
    }
}

/// A slot: a key kept as its parts, and its value. The text parts lie one
/// after another in one allocation: a lookup reads one block, not five.
struct Entry<T> {
    owner: u64,
    hash: u64,
    /// `:path`, authority, scheme, variant, then the declared lists.
    text: Box<[u8]>,
    /// Where each of the first four parts of `text` ends.
    ends: [u32; 4],
    method: http::Method,
    push: bool,
    value: T,
}

impl<T> Entry<T> {
    /// `ask`'s key as a slot keeps it; `None` when a part is too long to be
    /// kept (such a request is looked up the slow way every time).
    fn new(owner: u64, hash: u64, ask: &Ask<'_>, value: T) -> Option<Entry<T>> {
        let parts = ask.text_parts();
        let mut text =
            Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + ask.lists.len());
        let mut ends = [0; 4];
        for (end, part) in ends.iter_mut().zip(parts) {
            text.extend_from_slice(part);
            *end = u32::try_from(text.len()).ok()?;
        }
        text.extend_from_slice(ask.lists);
        Some(Entry {
            owner,
            hash,
            text: text.into(),
            ends,
            method: ask.method.clone(),
            push: ask.view.push_enabled,
            value,
        })
    }

    /// Whether `ask`'s key is this entry's: the method, push and every
    /// part's length first, all at once (a part of no bytes, such as the
    /// memo's variant and lists, then needs no compare), then each part's
    /// bytes by [`same`] (most are a few bytes long).
    fn matches(&self, ask: &Ask<'_>) -> bool {
        let parts = ask.text_parts();
        let mut end = 0;
        let ends = parts.map(|p| {
            end += p.len();
            end
        });
        let t = &self.text;
        if self.ends.map(|e| e as usize) != ends
            || t.len() != end + ask.lists.len()
            || self.method != *ask.method
            || self.push != ask.view.push_enabled
        {
            return false;
        }
        let mut start = 0;
        for (part, stop) in parts.into_iter().zip(ends) {
            if !part.is_empty() && !same(&t[start..stop], part) {
                return false;
            }
            start = stop;
        }
        ask.lists.is_empty() || same(&t[end..], ask.lists)
    }
}

/// A table: its slots are allocated by the first `put`.
pub struct Slots<T> {
    slots: Vec<Option<Entry<T>>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Slots<T> {
        Slots::new()
    }
}

impl<T> Slots<T> {
    pub const fn new() -> Slots<T> {
        Slots { slots: Vec::new() }
    }

    /// What `owner` kept for `ask` (whose [`Ask::hash`] for `owner` is
    /// `hash`).
    #[inline]
    pub fn get(&self, owner: u64, hash: u64, ask: &Ask<'_>) -> Option<&T> {
        let e = self.slots.get(slot_of(hash))?.as_ref()?;
        (e.owner == owner && e.hash == hash && e.matches(ask)).then_some(&e.value)
    }

    /// Keep `value` for `ask` as `owner`'s, in its slot.
    pub fn put(&mut self, owner: u64, hash: u64, ask: &Ask<'_>, value: T) {
        let Some(entry) = Entry::new(owner, hash, ask, value) else {
            return;
        };
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        self.slots[slot_of(hash)] = Some(entry);
    }

    /// Drop every slot's key and value (its memory is kept).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
}

fn slot_of(hash: u64) -> usize {
    (hash >> 58) as usize % SLOTS
}

/// `a == b`, with the short cases (up to 16 bytes: most paths, hosts,
/// schemes and variant names) as a few loads instead of `memcmp`. One copy
/// for every part compared: inlined, it made a slot's compare six times
/// its size, each copy a cold line of code on every request.
#[inline(never)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => a.first_chunk::<4>() == b.first_chunk() && a.last_chunk::<4>() == b.last_chunk(),
        8..=16 => a.first_chunk::<8>() == b.first_chunk() && a.last_chunk::<8>() == b.last_chunk(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: View<'static> = View {
        scheme: "https",
        authority: "example.com",
        push_enabled: false,
        variant: "default",
    };

    fn ask<'a>(path: &'a str, view: &'a View<'a>, lists: &'a [u8]) -> Ask<'a> {
        Ask {
            path_and_query: path,
            method: &http::Method::GET,
            view,
            lists,
        }
    }

    #[test]
    fn the_hash_spreads_paths_that_differ_anywhere() {
        // Paths alike but for one byte, at the start, the middle or the
        // end, short and long: each set takes most of the slots.
        let long = "/products/category/item-detail/reviews";
        let sets: [Box<dyn Fn(usize) -> String>; 5] = [
            Box::new(|i| format!("/{i}")),
            Box::new(|i| format!("/p{i:03}.html")),
            Box::new(|i| format!("/assets/{i:02}/app.js")),
            Box::new(move |i| format!("{}{i:02}{}", &long[..20], &long[20..])),
            Box::new(move |i| format!("{long}?page={i}")),
        ];
        for make in &sets {
            let slots: std::collections::HashSet<usize> = (0..SLOTS)
                .map(|i| slot_of(ask(&make(i), &VIEW, &[]).hash(7)))
                .collect();
            assert!(
                slots.len() >= SLOTS / 2,
                "{} of {SLOTS} slots for {}",
                slots.len(),
                make(0)
            );
        }
        // The owner and the host change the hash.
        let other = View {
            authority: "example.org",
            ..VIEW
        };
        assert_ne!(ask("/", &VIEW, &[]).hash(7), ask("/", &VIEW, &[]).hash(8));
        assert_ne!(ask("/", &VIEW, &[]).hash(7), ask("/", &other, &[]).hash(7));
    }

    #[test]
    fn a_slot_answers_its_own_key_and_owner_only() {
        let mut table = Slots::new();
        let page = ask("/", &VIEW, b"lists");
        let hash = page.hash(1);
        assert_eq!(table.get(1, hash, &page), None);
        table.put(1, hash, &page, "kept");
        assert_eq!(table.get(1, hash, &page), Some(&"kept"));
        // Another owner, with the same hash, is not answered.
        assert_eq!(table.get(2, hash, &page), None);
        // Each part not in the hash is compared.
        let (push, scheme, variant) = (
            View {
                push_enabled: true,
                ..VIEW
            },
            View {
                scheme: "http",
                ..VIEW
            },
            View {
                variant: "b",
                ..VIEW
            },
        );
        for other in [
            ask("/", &push, b"lists"),
            ask("/", &scheme, b"lists"),
            ask("/", &variant, b"lists"),
            ask("/", &VIEW, b"other"),
            Ask {
                method: &http::Method::HEAD,
                ..ask("/", &VIEW, b"lists")
            },
        ] {
            assert_eq!(table.get(1, hash, &other), None);
        }
        // The same bytes split elsewhere between the parts are another key.
        let run_on = View {
            authority: "example.co",
            scheme: "mhttps",
            ..VIEW
        };
        assert_eq!(table.get(1, hash, &ask("/", &run_on, b"lists")), None);
        table.clear();
        assert_eq!(table.get(1, hash, &page), None);
    }

    #[test]
    fn the_short_comparison_is_equality_at_every_length() {
        for n in 0..=40usize {
            let a: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert!(same(&a, &a.clone()), "{n} bytes");
            // One byte different, anywhere, is different.
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same(&a, &b), "{n} bytes, byte {i}");
            }
            // So is a longer or shorter value with the same start.
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same(&a, &longer) && !same(&longer, &a), "{n} bytes");
        }
    }
}
