//! Signed cache digests: a CASPer-like cookie recording what was pushed.
//!
//! Herald remembers, per client, which resources it has already sent, so a
//! policy can skip pushing what the browser most likely still has cached. The
//! memory lives in the client (a cookie), not in the server: no per-client
//! state, and it survives restarts and load balancing.
//!
//! # What an entry is
//!
//! An entry is a hash of `path`, a 0 byte and the `ETag`, truncated to
//! `universe_bits = log2(max_entries) + fp_bits` bits. Because the ETag is
//! hashed in, a changed asset gets a new entry and therefore counts as "not
//! cached", which is exactly what a push policy wants. Nothing else is
//! recorded: no timestamps, no request headers, and no clear-text path
//! (only truncated hashes of the path, with its query if it has one, and
//! the ETag leave the server).
//!
//! # Format
//!
//! `cookie = base64url_nopad(payload || tag)` where
//!
//! ```text
//! payload = [version = 1][universe_bits][rice k][count: u16 big-endian][bits]
//! tag     = HMAC-SHA256(secret, "herald-cd1" || payload)[..16]
//! ```
//!
//! `bits` is a Golomb-Rice code of the sorted entries, MSB first, zero-padded
//! to a whole byte: with `prev = 0`, each value `v` is coded as `d = v - prev`,
//! `d >> k` one-bits, a zero-bit, then the low `k` bits of `d`; then
//! `prev = v + 1`. `k = floor(log2(2^universe_bits / count))` (0 when empty),
//! which costs about `k + 2` bits per entry — roughly `fp_bits + 2`.
//!
//! # False positives
//!
//! A resource never sent is reported as cached when its entry collides with
//! one of the `n` recorded entries: probability `1 - (1 - 2^-universe_bits)^n`,
//! at most about `2^-fp_bits` when the digest is full (`n = max_entries`).
//! A false positive only means a push is skipped and the browser fetches the
//! resource itself; false negatives do not occur for recorded entries.
//!
//! # Why it is signed
//!
//! A client could otherwise forge a digest claiming everything is cached (or
//! nothing), steer push decisions, or feed the decoder hostile input. The MAC
//! makes the cookie opaque: only digests Herald itself produced are decoded.
//! Decoding is still fully defensive and never panics.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::hash::fnv1a;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
/// Domain separation: the same secret may one day sign other things.
const MAC_DOMAIN: &[u8] = b"herald-cd1";

/// Parameters fixed per server (from config).
#[derive(Clone)]
pub struct DigestKey {
    key: hmac::Key,
    universe_bits: u8,
    /// Entries a digest may hold (also capped by the u16 count field).
    limit: u16,
    /// Longest cookie value a valid digest can have; longer input is refused
    /// before base64 decoding so hostile headers cost no allocation.
    max_value_len: usize,
}

impl fmt::Debug for DigestKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestKey")
            .field("universe_bits", &self.universe_bits)
            .field("max_entries", &self.limit)
            .finish_non_exhaustive()
    }
}

impl DigestKey {
    /// `secret`: at least 16 bytes (caller guarantees). `max_entries`: a power
    /// of two >= 1; `fp_bits`: 1..=16; `log2(max_entries) + fp_bits <= 32`.
    /// `max_entries` above 65535 is capped (the count field is a u16; such a
    /// cookie would exceed browsers' 4 KiB limit anyway).
    ///
    /// # Panics
    /// If the parameters violate the above; the config layer validates them.
    pub fn new(secret: &[u8], max_entries: u32, fp_bits: u8) -> DigestKey {
        assert!(
            max_entries.is_power_of_two(),
            "max_entries must be a power of two"
        );
        assert!((1..=16).contains(&fp_bits), "fp_bits must be in 1..=16");
        let universe_bits = max_entries.trailing_zeros() + u32::from(fp_bits);
        assert!(
            universe_bits <= 32,
            "log2(max_entries) + fp_bits must be <= 32"
        );
        let universe_bits = universe_bits as u8; // <= 32, lossless
        let limit = u16::try_from(max_entries).unwrap_or(u16::MAX);
        // Each entry costs at most k + 3 bits with the canonical k (<= 32).
        let max_bits = usize::from(limit) * (usize::from(universe_bits) + 4);
        let max_bytes = HEADER_LEN + max_bits.div_ceil(8) + TAG_LEN;
        DigestKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            universe_bits,
            limit,
            max_value_len: (max_bytes * 4).div_ceil(3),
        }
    }

    /// A random 32-byte secret from ring's SystemRandom (for when no key file
    /// is configured; digests then do not survive a restart, which is harmless).
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn random_secret() -> [u8; 32] {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the operating system's random number generator failed");
        secret
    }

    /// The entry value of a resource: FNV-1a 64 of `path`, 0, `etag`, then a
    /// murmur3-style finalizer (FNV's high bits alone mix poorly), keeping the
    /// top `universe_bits` bits.
    pub fn entry(&self, path: &str, etag: &str) -> u32 {
        let h = fnv1a(path.bytes().chain(std::iter::once(0u8)).chain(etag.bytes()));
        (fmix64(h) >> (64 - u32::from(self.universe_bits))) as u32
    }

    /// Verify and decode a cookie value; None if malformed, wrong version,
    /// wrong parameters (universe_bits differs), or bad MAC.
    pub fn open(&self, cookie_value: &str) -> Option<Digest> {
        if cookie_value.len() > self.max_value_len {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(cookie_value).ok()?;
        let split = raw.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = raw.split_at(split);
        // MAC first: unauthenticated bytes never reach the decoder.
        if !constant_time_eq(&self.tag(payload), tag) {
            return None;
        }
        self.decode(payload)
    }

    /// Encode and sign: the cookie value (base64url, no padding).
    ///
    /// Values outside the universe (not produced by [`DigestKey::entry`]) are
    /// skipped; beyond `max_entries` only the smallest values are kept, which,
    /// entries being hashes, evicts an effectively random subset.
    pub fn seal(&self, digest: &Digest) -> String {
        let mut raw = self.encode(digest);
        let tag = self.tag(&raw);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn max_entries(&self) -> usize {
        usize::from(self.limit)
    }

    fn universe(&self) -> u64 {
        1u64 << self.universe_bits
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(MAC_DOMAIN);
        ctx.update(payload);
        let full = ctx.sign();
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        out
    }

    /// The unsigned payload.
    fn encode(&self, digest: &Digest) -> Vec<u8> {
        let universe = self.universe();
        let values: Vec<u64> = digest
            .entries
            .iter()
            .map(|&v| u64::from(v))
            .filter(|&v| v < universe)
            .take(self.max_entries())
            .collect();
        let count = values.len() as u16; // <= limit, lossless
        let k = rice_k(self.universe_bits, count);
        let mut w = BitWriter::default();
        w.bytes.extend_from_slice(&[VERSION, self.universe_bits, k]);
        w.bytes.extend_from_slice(&count.to_be_bytes());
        w.len = w.bytes.len() * 8;
        let mut prev = 0u64;
        for v in values {
            let d = v - prev; // sorted and distinct, so v >= prev
            for _ in 0..(d >> k) {
                w.push(true);
            }
            w.push(false);
            for i in (0..k).rev() {
                w.push((d >> i) & 1 == 1);
            }
            prev = v + 1;
        }
        w.bytes
    }

    /// Decode an authenticated payload, accepting only the canonical encoding.
    fn decode(&self, payload: &[u8]) -> Option<Digest> {
        let (header, body) = payload.split_at_checked(HEADER_LEN)?;
        if header[0] != VERSION || header[1] != self.universe_bits {
            return None;
        }
        let k = header[2];
        let count = u16::from_be_bytes([header[3], header[4]]);
        if count > self.limit || k != rice_k(self.universe_bits, count) {
            return None;
        }
        let universe = self.universe();
        let mut r = BitReader {
            bytes: body,
            pos: 0,
        };
        let mut prev = 0u64;
        let mut entries = BTreeSet::new();
        for _ in 0..count {
            let mut q = 0u64;
            while r.bit()? {
                q += 1;
                // Bounds the unary run: no value can reach the universe.
                if prev + (q << k) >= universe {
                    return None;
                }
            }
            let mut low = 0u64;
            for _ in 0..k {
                low = (low << 1) | u64::from(r.bit()?);
            }
            let v = prev + (q << k) + low;
            if v >= universe {
                return None;
            }
            entries.insert(v as u32); // < 2^32, lossless
            prev = v + 1;
        }
        // Only zero padding up to the byte boundary may follow.
        if r.pos.div_ceil(8) != body.len() {
            return None;
        }
        while !r.pos.is_multiple_of(8) {
            if r.bit()? {
                return None;
            }
        }
        Some(Digest { entries })
    }
}

/// Rice parameter for `count` entries in a universe of `2^universe_bits`.
fn rice_k(universe_bits: u8, count: u16) -> u8 {
    if count == 0 {
        return 0;
    }
    let ratio = (1u64 << universe_bits) / u64::from(count);
    if ratio == 0 {
        return 0;
    }
    (63 - ratio.leading_zeros()).min(31) as u8
}

/// murmur3's fmix64: spreads FNV's entropy into the top bits we keep.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Compares without an early exit, so timing does not reveal how many
/// leading tag bytes a forgery got right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits written, including the byte-aligned header.
    len: usize,
}

impl BitWriter {
    fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit && let Some(last) = self.bytes.last_mut() {
            *last |= 0x80 >> (self.len % 8);
        }
        self.len += 1;
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// The next bit, or None at the end of the data (truncated input).
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }
}

/// A set of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    entries: BTreeSet<u32>,
}

impl Digest {
    pub fn new() -> Digest {
        Digest::default()
    }

    pub fn contains(&self, entry: u32) -> bool {
        self.entries.contains(&entry)
    }

    /// Insert; returns true if new.
    pub fn insert(&mut self, entry: u32) -> bool {
        self.entries.insert(entry)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of at least 16 bytes";

    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn random_digest(key: &DigestKey, count: usize, rng: &mut XorShift) -> Digest {
        let mut d = Digest::new();
        while d.len() < count {
            d.insert((rng.next_u64() % key.universe()) as u32);
        }
        d
    }

    /// Signs an arbitrary payload, to reach the decoder's checks behind the MAC.
    fn sign_raw(key: &DigestKey, payload: &[u8]) -> String {
        let mut raw = payload.to_vec();
        raw.extend_from_slice(&key.tag(payload));
        URL_SAFE_NO_PAD.encode(raw)
    }

    #[test]
    fn round_trip() {
        let key = DigestKey::new(SECRET, 256, 7);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for count in [0, 1, 5, 128, 256] {
            let d = random_digest(&key, count, &mut rng);
            assert_eq!(key.open(&key.seal(&d)), Some(d), "count {count}");
        }
    }

    #[test]
    fn tampering_is_rejected() {
        let key = DigestKey::new(SECRET, 256, 7);
        let d = random_digest(&key, 20, &mut XorShift(42));
        let sealed = key.seal(&d);
        assert_eq!(key.open(&sealed).as_ref(), Some(&d));
        for i in 0..sealed.len() {
            for replacement in ['A', '_'] {
                let mut chars: Vec<char> = sealed.chars().collect();
                if chars[i] == replacement {
                    continue;
                }
                chars[i] = replacement;
                let tampered: String = chars.into_iter().collect();
                assert_eq!(key.open(&tampered), None, "flip at {i}");
            }
        }
        let other = DigestKey::new(b"another secret, also 16+ bytes", 256, 7);
        assert_eq!(key.open(&other.seal(&d)), None);
        for (max_entries, fp_bits) in [(512, 7), (256, 8)] {
            let different = DigestKey::new(SECRET, max_entries, fp_bits);
            assert_eq!(key.open(&different.seal(&d)), None);
            assert_eq!(different.open(&sealed), None);
        }
    }

    #[test]
    fn garbage_never_panics() {
        let key = DigestKey::new(SECRET, 256, 7);
        assert_eq!(key.open(""), None);
        assert_eq!(key.open("!!!"), None);
        let mut rng = XorShift(7);
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert_eq!(key.open(&URL_SAFE_NO_PAD.encode(bytes)), None);
        }
        let sealed = key.seal(&random_digest(&key, 50, &mut rng));
        for cut in 0..sealed.len() {
            assert_eq!(key.open(&sealed[..cut]), None, "truncated to {cut}");
        }
    }

    #[test]
    fn decoder_rejects_non_canonical_payloads_even_when_signed() {
        // universe_bits 4: count 1 => k 4, count 2 => k 3.
        let key = DigestKey::new(SECRET, 2, 3);
        let ok = key.open(&sign_raw(&key, &[1, 4, 4, 0, 1, 0b0000_0000]));
        assert_eq!(ok.map(|d| d.contains(0)), Some(true));
        let bad: [&[u8]; 8] = [
            &[1, 4, 4, 0, 1, 0b0000_0001], // non-zero padding
            &[1, 4, 4, 0, 1, 0, 0],        // trailing byte
            &[1, 4, 4, 0, 1],              // truncated bits
            &[1, 4, 3, 0, 1, 0],           // non-canonical k
            &[1, 4, 0, 0, 3, 0],           // count > max_entries
            &[1, 4, 4, 0, 1, 0xff, 0xff],  // unary run past the universe
            &[1, 4, 3, 0, 2, 0xb8, 0x00],  // second value == universe
            &[2, 4, 0, 0, 0],              // unknown version
        ];
        for payload in bad {
            assert_eq!(key.open(&sign_raw(&key, payload)), None, "{payload:?}");
        }
        assert_eq!(key.open(&sign_raw(&key, &[1, 4, 0])), None);
    }

    #[test]
    fn changed_etag_is_a_different_entry() {
        let key = DigestKey::new(SECRET, 256, 7);
        for path in [
            "/",
            "/index.html",
            "/app.js",
            "/css/site.css",
            "/img/logo.png",
        ] {
            assert_ne!(
                key.entry(path, "\"v1\""),
                key.entry(path, "\"v2\""),
                "{path}"
            );
        }
    }

    #[test]
    fn false_positive_rate() {
        let key = DigestKey::new(SECRET, 256, 7);
        let mut d = Digest::new();
        let inserted: Vec<u32> = (0..256)
            .map(|i| key.entry(&format!("/assets/file-{i}.js"), &format!("\"{i}\"")))
            .collect();
        for &e in &inserted {
            d.insert(e);
        }
        let d = key.open(&key.seal(&d)).expect("a sealed digest opens");
        assert!(inserted.iter().all(|&e| d.contains(e)), "false negative");
        let probes = 100_000;
        let hits = (0..probes)
            .filter(|i| d.contains(key.entry(&format!("/other/{i}.css"), "\"x\"")))
            .count();
        let rate = hits as f64 / probes as f64;
        println!(
            "cache digest false-positive rate: {:.3}% (expected ~0.78%)",
            rate * 100.0
        );
        assert!((0.005..=0.011).contains(&rate), "rate {rate}");
    }

    #[test]
    fn sealed_size_is_compact() {
        let key = DigestKey::new(SECRET, 256, 7);
        let d = random_digest(&key, 128, &mut XorShift(0xdead_beef));
        let sealed = key.seal(&d);
        assert!(sealed.len() < 400, "{} characters", sealed.len());
        assert!(sealed.len() <= key.max_value_len);
    }
}
