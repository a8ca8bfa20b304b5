//! Encoding our header blocks: responses, 1xx, and the requests of
//! PUSH_PROMISE frames.
//!
//! Every field the peer may reuse goes into the dynamic table once and is
//! sent as a one- or two-byte index after that, so a page's repeated
//! `content-type`, `link` or `:authority` costs almost nothing on the second
//! response of a connection. Fields are found in the table through a hash of
//! name and value, not a scan. Values are Huffman-coded when that is shorter.

use std::hash::{BuildHasher, Hasher};

use http::{HeaderName, HeaderValue};

#[cfg(test)]
use http::HeaderMap;

use super::{DEFAULT_TABLE_SIZE, Name, Table, encode_int, huffman};

/// One connection's HPACK encoder.
#[derive(Debug)]
pub struct Encoder {
    table: Table,
    /// hash(name, value) → the absolute number of the newest entry with it.
    /// Entries may be stale (evicted, or a collision): checked on use.
    index: std::collections::HashMap<u64, u64, foldhash::fast::FixedState>,
    hasher: foldhash::fast::FixedState,
    /// A size change the peer's SETTINGS_HEADER_TABLE_SIZE forced since the
    /// last block: the smallest size in between, and the final one (§4.2).
    pending: Option<(usize, usize)>,
    /// Fields met before, by the address of their name and value: a cached
    /// file's head or a cached plan's `Link` is the same allocation on
    /// every response, so it is found without hashing or comparing its
    /// bytes. Each entry holds its name and value, so the memory cannot be
    /// freed and reused for other bytes while the address is remembered.
    seen: std::collections::HashMap<(usize, usize, usize), Seen, foldhash::fast::FixedState>,
    /// The newest fields of `seen`, four-way set-associative by address: a
    /// response's few repeated fields are each found with one multiply and
    /// a compare or two, where the map hashes and probes. Four ways, so
    /// that the fields of one response never evict each other by turns:
    /// with two, three of a response's six fields in one set (a matter of
    /// where the allocator put their values) sent each of them the slow
    /// way on every response. Only fields `seen`
    /// holds (so their memory is kept), cleared with it. Empty until the
    /// first field is remembered (an idle connection does not pay for it).
    recent: Vec<[Recent; RECENT_WAYS]>,
    /// The last status outside the static table, and its entry.
    last_status: Option<(u16, u64)>,
    /// The last `103` block ([`Encoder::early_hints`]) that added nothing
    /// to the table, and the table it is valid for.
    early: Option<EarlyBlock>,
}

/// A `103 Early Hints` block of indices only, sent again as it is while the
/// table is as it was: no entry added or dropped since. A page's hints are
/// a cached plan's one `Link` field, the same allocation on every response,
/// so most 103s of a connection are this block.
#[derive(Debug)]
struct EarlyBlock {
    /// Held: its address cannot be reused for other bytes meanwhile.
    links: HeaderValue,
    inserted: u64,
    entries: usize,
    block: Vec<u8>,
    /// `block` zero-padded, when it fits: copied as a whole, a fixed size
    /// needs no call to `memcpy` (such a block is an index or two).
    short: Option<[u8; SHORT_BLOCK]>,
}

/// The longest block [`Encoder::early_short_block`] gives.
pub const SHORT_BLOCK: usize = 16;

/// A field found by address: where it went in the table.
#[derive(Debug)]
struct Seen {
    absolute: u64,
    _name: HeaderName,
    _value: HeaderValue,
}

/// Fields remembered by address, at most (then forgotten all at once).
const MAX_SEEN: usize = 256;

/// A slot of [`Encoder::recent`]: a field's address (name, value, length;
/// all zero when empty: no field's name is at address zero) and its entry.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    address: (usize, usize, usize),
    absolute: u64,
}

/// Sets of [`Encoder::recent`] (a power of two), and their ways: 2 KB a
/// connection.
const RECENT_SETS: usize = 16;
const RECENT_WAYS: usize = 4;

impl Recent {
    /// The set of a field's address: the value's address (the fields of a
    /// block share a few names, never a value) spread by a multiply.
    #[inline]
    fn set(address: (usize, usize, usize)) -> usize {
        let mixed = (address.1 ^ address.2.rotate_left(48)) as u64;
        (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % RECENT_SETS
    }
}

/// How a literal field is sent (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexing {
    Yes,
    No,
    Never,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2): never encoded.
pub fn is_connection_specific(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
    // Not standard names in `http`: compared as names, a standard one (most
    // fields) differs at once, where `as_str` would look its text up.
    const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            table: Table::new(DEFAULT_TABLE_SIZE),
            index: Default::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x6865_7261_6c64),
            pending: None,
            seen: Default::default(),
            recent: Vec::new(),
            last_status: None,
            early: None,
        }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE: we use at most that, and never
    /// more than the default.
    pub fn set_peer_limit(&mut self, limit: usize) {
        let size = limit.min(DEFAULT_TABLE_SIZE);
        if size == self.table.max && self.pending.is_none() {
            return;
        }
        let smallest = self.pending.map_or(size, |(s, _)| s.min(size));
        self.pending = Some((smallest, size));
        self.table.set_max(smallest);
    }

    /// Start a block: announce any size change first.
    fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some((smallest, last)) = self.pending.take() {
            if smallest != last {
                encode_int(smallest, 5, 0x20, out);
            }
            encode_int(last, 5, 0x20, out);
            self.table.set_max(last);
        }
    }

    /// A response (or 1xx) header block.
    pub fn response<'a>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        out: &mut Vec<u8>,
    ) {
        self.begin(out);
        match status {
            200 => out.push(0x80 | 8),
            204 => out.push(0x80 | 9),
            206 => out.push(0x80 | 10),
            304 => out.push(0x80 | 11),
            400 => out.push(0x80 | 12),
            404 => out.push(0x80 | 13),
            500 => out.push(0x80 | 14),
            _ => {
                // 103 on every page that hints: its entry, remembered.
                if let Some((code, absolute)) = self.last_status
                    && code == status
                    && let Some(index) = self.table.index_of(absolute)
                {
                    encode_int(index, 7, 0x80, out);
                } else {
                    let code = itoa3(status);
                    self.field(&Name::Status, &code, Indexing::Yes, out);
                    let key = self.key(b":status", &code);
                    if let Some(index) = self.find(key, b":status", &code) {
                        self.last_status =
                            Some((status, self.table.inserted - (index - 62) as u64));
                    }
                }
            }
        }
        self.headers(headers, out);
    }

    /// The block of the last `103` ([`early_hints`](Self::early_hints)),
    /// if it is the one for `links` now: the same field, and the table
    /// unchanged since.
    pub fn early_block(&self, links: &HeaderValue) -> Option<&[u8]> {
        let e = self.early.as_ref()?;
        (self.pending.is_none()
            && e.inserted == self.table.inserted
            && e.entries == self.table.entries.len()
            && e.links.as_bytes().as_ptr() == links.as_bytes().as_ptr()
            && e.links.len() == links.len())
        .then_some(&e.block)
    }

    /// [`early_block`](Self::early_block), zero-padded, and its length,
    /// when it is at most [`SHORT_BLOCK`] bytes.
    pub fn early_short_block(&self, links: &HeaderValue) -> Option<(&[u8; SHORT_BLOCK], usize)> {
        self.early_block(links)?;
        let e = self.early.as_ref()?;
        Some((e.short.as_ref()?, e.block.len()))
    }

    /// A `103 Early Hints` block with one `Link` field: the block sent last
    /// time, when it is the same field and the table has not changed since.
    pub fn early_hints(&mut self, links: &HeaderValue, out: &mut Vec<u8>) {
        if let Some(block) = self.early_block(links) {
            out.extend_from_slice(block);
            return;
        }
        let (start, inserted, resized) = (out.len(), self.table.inserted, self.pending.is_some());
        self.response(103, [(&http::header::LINK, links)], out);
        // Only a block that added nothing to the table may be sent again:
        // a literal with indexing would add its field a second time.
        self.early = (self.table.inserted == inserted && !resized).then(|| {
            let block = out[start..].to_vec();
            let short = (block.len() <= SHORT_BLOCK).then(|| {
                let mut short = [0; SHORT_BLOCK];
                short[..block.len()].copy_from_slice(&block);
                short
            });
            EarlyBlock {
                links: links.clone(),
                inserted,
                entries: self.table.entries.len(),
                block,
                short,
            }
        });
    }

    /// The request of a PUSH_PROMISE: always a GET.
    pub fn push_request<'a>(
        &mut self,
        scheme: &str,
        authority: &str,
        path: &str,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        out: &mut Vec<u8>,
    ) {
        self.begin(out);
        out.push(0x80 | 2); // :method GET
        match scheme {
            "https" => out.push(0x80 | 7),
            "http" => out.push(0x80 | 6),
            other => self.field(&Name::Scheme, other.as_bytes(), Indexing::Yes, out),
        }
        self.field(&Name::Authority, authority.as_bytes(), Indexing::Yes, out);
        // Each path is pushed once per connection: not worth a table entry.
        self.field(&Name::Path, path.as_bytes(), Indexing::No, out);
        self.headers(headers, out);
    }

    fn headers<'a>(
        &mut self,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        out: &mut Vec<u8>,
    ) {
        for (name, value) in headers {
            // A field sent before as this very allocation: it was checked
            // then, and went into the table (only fields that may be
            // indexed are remembered; sensitivity is the value's own flag).
            let address = address_of(name, value);
            if let Some(index) = self.recent_index(address)
                && !value.is_sensitive()
            {
                encode_int(index, 7, 0x80, out);
                continue;
            }
            if is_connection_specific(name) {
                continue;
            }
            let indexing = if value.is_sensitive()
                || *name == http::header::SET_COOKIE
                || *name == http::header::AUTHORIZATION
                || *name == http::header::PROXY_AUTHORIZATION
            {
                Indexing::Never
            } else {
                Indexing::Yes
            };
            self.header(name, value, address, indexing, out);
        }
    }

    /// A field that is not a recent one; `address` is [`address_of`] it
    /// (computed once: a standard name's text may have one copy per
    /// inlined `as_str`).
    fn header(
        &mut self,
        name: &HeaderName,
        value: &HeaderValue,
        address: (usize, usize, usize),
        how: Indexing,
        out: &mut Vec<u8>,
    ) {
        if how == Indexing::Never {
            let key = self.key(name.as_str().as_bytes(), value.as_bytes());
            self.literal(
                Name::Header(name.clone()),
                static_name_index(name),
                value.as_bytes(),
                how,
                key,
                out,
            );
            return;
        }
        // The common case first: the same allocation as before.
        if let Some(absolute) = self.seen.get(&address).map(|s| s.absolute)
            && let Some(index) = self.table.index_of(absolute)
        {
            self.remember_recent(address, absolute);
            encode_int(index, 7, 0x80, out);
            return;
        }
        let key = self.key(name.as_str().as_bytes(), value.as_bytes());
        let index = match self.find(key, name.as_str().as_bytes(), value.as_bytes()) {
            Some(index) => {
                encode_int(index, 7, 0x80, out);
                Some(index)
            }
            None => {
                self.literal(
                    Name::Header(name.clone()),
                    static_name_index(name),
                    value.as_bytes(),
                    how,
                    key,
                    out,
                );
                self.find(key, name.as_str().as_bytes(), value.as_bytes())
            }
        };
        if let Some(index) = index {
            if self.seen.len() >= MAX_SEEN {
                self.seen.clear();
                self.recent.clear();
            }
            let absolute = self.table.inserted - (index - 62) as u64;
            self.remember_recent(address, absolute);
            self.seen.insert(
                address,
                Seen {
                    absolute,
                    _name: name.clone(),
                    _value: value.clone(),
                },
            );
        }
    }

    /// The table index of the field at `address`, if it is a recent one
    /// still in the table.
    #[inline]
    fn recent_index(&self, address: (usize, usize, usize)) -> Option<usize> {
        let set = self.recent.get(Recent::set(address))?;
        let found = set.iter().find(|r| r.address == address)?;
        self.table.index_of(found.absolute)
    }

    /// Keep a field of `seen` as a recent one: first in its set, the others
    /// moved down a way (the last one out, unless it is this field).
    fn remember_recent(&mut self, address: (usize, usize, usize), absolute: u64) {
        if self.recent.is_empty() {
            self.recent.resize(RECENT_SETS, Default::default());
        }
        let set = &mut self.recent[Recent::set(address)];
        let at = set
            .iter()
            .position(|r| r.address == address)
            .unwrap_or(RECENT_WAYS - 1);
        set[..=at].rotate_right(1);
        set[0] = Recent { address, absolute };
    }

    fn field(&mut self, name: &Name, value: &[u8], how: Indexing, out: &mut Vec<u8>) {
        let key = self.key(name.as_bytes(), value);
        if how != Indexing::Never
            && let Some(index) = self.find(key, name.as_bytes(), value)
        {
            encode_int(index, 7, 0x80, out);
            return;
        }
        let name_index = match name {
            Name::Authority => Some(1),
            Name::Method => Some(2),
            Name::Path => Some(4),
            Name::Scheme => Some(6),
            Name::Status => Some(8),
            Name::Header(h) => static_name_index(h),
            _ => None,
        };
        self.literal(name.clone(), name_index, value, how, key, out);
    }

    fn literal(
        &mut self,
        name: Name,
        name_index: Option<usize>,
        value: &[u8],
        how: Indexing,
        key: u64,
        out: &mut Vec<u8>,
    ) {
        // A field over half the table would only push everything else out.
        let how = if how == Indexing::Yes && name.len() + value.len() + 32 > self.table.max / 2 {
            Indexing::No
        } else {
            how
        };
        let (prefix, first) = match how {
            Indexing::Yes => (6, 0x40),
            Indexing::No => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        match name_index {
            Some(i) => encode_int(i, prefix, first, out),
            None => {
                out.push(first);
                string(name.as_bytes(), out);
            }
        }
        string(value, out);
        if how == Indexing::Yes {
            self.table
                .insert(name, bytes::Bytes::copy_from_slice(value));
            if self.table.entries.front().is_some() {
                self.index.insert(key, self.table.inserted);
            }
            if self.index.len() > 2 * self.table.entries.len() + 64 {
                self.reindex();
            }
        }
    }

    fn key(&self, name: &[u8], value: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(name);
        h.write_u8(0xff);
        h.write(value);
        h.finish()
    }

    /// The index of an entry with exactly this name and value.
    fn find(&self, key: u64, name: &[u8], value: &[u8]) -> Option<usize> {
        let absolute = *self.index.get(&key)?;
        let index = self.table.index_of(absolute)?;
        let (n, v) = self.table.get(index)?;
        (n.as_bytes() == name && v.as_ref() == value).then_some(index)
    }

    /// Drop stale entries from the hash index.
    fn reindex(&mut self) {
        self.index.clear();
        let newest = self.table.inserted;
        for (age, e) in self.table.entries.iter().enumerate().rev() {
            let key = {
                let mut h = self.hasher.build_hasher();
                h.write(e.name.as_bytes());
                h.write_u8(0xff);
                h.write(&e.value);
                h.finish()
            };
            self.index.insert(key, newest - age as u64);
        }
    }
}

/// Where a field's name and value lie: a cached file's head or a cached
/// plan's `Link` is the same allocation on every response.
#[inline]
fn address_of(name: &HeaderName, value: &HeaderValue) -> (usize, usize, usize) {
    (
        name.as_str().as_ptr() as usize,
        value.as_bytes().as_ptr() as usize,
        value.len(),
    )
}

/// A string literal, Huffman-coded when that is shorter.
fn string(raw: &[u8], out: &mut Vec<u8>) {
    let coded = huffman::encoded_len(raw);
    if coded < raw.len() {
        encode_int(coded, 7, 0x80, out);
        huffman::encode(raw, out);
    } else {
        encode_int(raw.len(), 7, 0, out);
        out.extend_from_slice(raw);
    }
}

/// Three decimal digits (a status code is 100-999).
fn itoa3(n: u16) -> [u8; 3] {
    [
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

/// The static table index of a name (Appendix A), for a literal with an
/// indexed name.
fn static_name_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "accept-charset" => 15,
        "accept-encoding" => 16,
        "accept-language" => 17,
        "accept-ranges" => 18,
        "accept" => 19,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "authorization" => 23,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "cookie" => 32,
        "date" => 33,
        "etag" => 34,
        "expect" => 35,
        "expires" => 36,
        "from" => 37,
        "host" => 38,
        "if-match" => 39,
        "if-modified-since" => 40,
        "if-none-match" => 41,
        "if-range" => 42,
        "if-unmodified-since" => 43,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "max-forwards" => 47,
        "proxy-authenticate" => 48,
        "proxy-authorization" => 49,
        "range" => 50,
        "referer" => 51,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "transfer-encoding" => 57,
        "user-agent" => 58,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Decoder;
    use super::*;

    fn decode_all(d: &mut Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        d.decode(block, usize::MAX, |n, v| {
            out.push((n.as_bytes().to_vec(), v.to_vec()))
        })
        .unwrap();
        out
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(*n, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn an_early_hints_block_is_sent_again_only_while_the_table_is_unchanged() {
        let mut e = Encoder::new();
        let mut d = Decoder::new();
        let links = HeaderValue::from_static(
            "</a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script",
        );
        let expected = vec![
            (b":status".to_vec(), b"103".to_vec()),
            (b"link".to_vec(), links.as_bytes().to_vec()),
        ];
        let early = |e: &mut Encoder, d: &mut Decoder, links: &HeaderValue| {
            let mut block = Vec::new();
            e.early_hints(links, &mut block);
            assert_eq!(decode_all(d, &block), expected);
            block
        };
        // Literals first, then two indices, then the same two bytes again.
        early(&mut e, &mut d, &links);
        let indexed = early(&mut e, &mut d, &links);
        assert_eq!(indexed.len(), 2, "{indexed:x?}");
        // Given padded for a fixed-size copy, the same bytes.
        let (short, len) = e.early_short_block(&links).expect("short");
        assert_eq!((&short[..len], len), (&indexed[..], 2));
        assert!(short[len..].iter().all(|&b| b == 0));
        assert_eq!(early(&mut e, &mut d, &links), indexed);
        // A response adds an entry: the indices move, and the next 103 says so.
        let mut response = Vec::new();
        e.response(200, &map(&[("x-new", "1")]), &mut response);
        decode_all(&mut d, &response);
        assert_ne!(early(&mut e, &mut d, &links), indexed);
        // The same bytes in another allocation, and a smaller table.
        early(
            &mut e,
            &mut d,
            &HeaderValue::from_bytes(links.as_bytes()).unwrap(),
        );
        e.set_peer_limit(256);
        early(&mut e, &mut d, &links);
        early(&mut e, &mut d, &links);
    }

    #[test]
    fn responses_round_trip_and_repeats_cost_an_index_each() {
        let mut e = Encoder::new();
        let mut d = Decoder::new();
        let headers = map(&[
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", "789"),
            ("link", "</css/site.css>; rel=preload; as=style"),
            ("x-custom", "a"),
            ("x-custom", "b"),
        ]);
        let mut first = Vec::new();
        e.response(200, &headers, &mut first);
        let fields = decode_all(&mut d, &first);
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(fields.len(), 6);
        assert_eq!(fields[5], (b"x-custom".to_vec(), b"b".to_vec()));
        let mut second = Vec::new();
        e.response(200, &headers, &mut second);
        assert_eq!(second.len(), 6, "one byte per field: {second:x?}");
        assert_eq!(decode_all(&mut d, &second), fields);
        // An uncommon status, twice.
        let mut third = Vec::new();
        e.response(103, &HeaderMap::new(), &mut third);
        e.response(103, &HeaderMap::new(), &mut third);
        let mut got = Vec::new();
        d.decode(&third, usize::MAX, |n, v| got.push((n, v)))
            .unwrap();
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|(n, v)| *n == Name::Status && v.as_ref() == b"103")
        );
    }

    #[test]
    fn every_connection_specific_field_is_left_out() {
        // As an upstream's response would carry them: names parsed at run
        // time, not constants.
        let mut headers = HeaderMap::new();
        for name in [
            "Connection",
            "transfer-encoding",
            "upgrade",
            "Keep-Alive",
            "proxy-connection",
            "keep-alive-x",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_static("v"));
        }
        let mut block = Vec::new();
        Encoder::new().response(200, &headers, &mut block);
        let fields = decode_all(&mut Decoder::new(), &block);
        let names: Vec<&[u8]> = fields.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b":status"[..], b"keep-alive-x"]);
    }

    #[test]
    fn sensitive_and_connection_specific_fields() {
        let mut e = Encoder::new();
        let mut d = Decoder::new();
        let mut headers = map(&[("set-cookie", "k=v"), ("connection", "close")]);
        let mut secret = HeaderValue::from_static("hunter2");
        secret.set_sensitive(true);
        headers.insert("x-token", secret);
        let mut block = Vec::new();
        e.response(200, &headers, &mut block);
        e.response(200, &headers, &mut block);
        let fields = decode_all(&mut d, &block);
        let names: Vec<&[u8]> = fields.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            names,
            [
                &b":status"[..],
                b"set-cookie",
                b"x-token",
                b":status",
                b"set-cookie",
                b"x-token"
            ]
        );
        assert!(e.table.entries.is_empty(), "nothing sensitive was indexed");
    }

    #[test]
    fn a_value_sent_indexed_is_never_indexed_once_marked_sensitive() {
        let mut e = Encoder::new();
        let value = HeaderValue::from_static("secret-ish");
        let name = HeaderName::from_static("x-token");
        let mut block = Vec::new();
        e.response(200, [(&name, &value), (&name, &value)], &mut block);
        assert_eq!(block[block.len() - 1] & 0x80, 0x80, "indexed: {block:x?}");
        // The same bytes, the same allocation, now sensitive.
        let mut sensitive = value.clone();
        sensitive.set_sensitive(true);
        let mut block = Vec::new();
        e.response(200, [(&name, &sensitive)], &mut block);
        assert_eq!(block[1] & 0xf0, 0x10, "never indexed: {block:x?}");
        let fields = decode_all(&mut Decoder::new(), &block);
        assert_eq!(fields[1], (b"x-token".to_vec(), b"secret-ish".to_vec()));
    }

    #[test]
    fn fields_of_one_response_in_one_set_are_all_found_as_recent() {
        // As many values as a set has ways, all in one set: after one
        // response, the next finds each of them without the map.
        let name = HeaderName::from_static("x-n");
        let mut candidates: Vec<HeaderValue> = (0..4096).map(HeaderValue::from).collect();
        let set = Recent::set(address_of(&name, &candidates[0]));
        candidates.retain(|v| Recent::set(address_of(&name, v)) == set);
        assert!(
            candidates.len() >= RECENT_WAYS,
            "{} in one set",
            candidates.len()
        );
        let fields: Vec<(&HeaderName, &HeaderValue)> = candidates[..RECENT_WAYS]
            .iter()
            .map(|v| (&name, v))
            .collect();
        let mut e = Encoder::new();
        for _ in 0..2 {
            let mut block = Vec::new();
            e.response(200, fields.iter().copied(), &mut block);
        }
        for (n, v) in &fields {
            assert!(
                e.recent_index(address_of(n, v)).is_some(),
                "{v:?} was evicted by its set's other fields"
            );
        }
    }

    #[test]
    fn recent_fields_are_forgotten_with_the_fields_they_hold() {
        let mut e = Encoder::new();
        let name = HeaderName::from_static("x-n");
        let values: Vec<HeaderValue> = (0..MAX_SEEN + 40).map(HeaderValue::from).collect();
        for value in &values {
            let mut block = Vec::new();
            e.response(200, [(&name, value)], &mut block);
            e.response(200, [(&name, value)], &mut block);
        }
        // Every remembered address is one whose memory `seen` still holds.
        for r in e.recent.iter().flatten().filter(|r| r.address != (0, 0, 0)) {
            assert!(e.seen.contains_key(&r.address), "{r:?} outlived seen");
        }
        assert!(e.seen.len() < MAX_SEEN);
    }

    #[test]
    fn a_smaller_peer_table_is_announced_and_obeyed() {
        let mut e = Encoder::new();
        let mut d = Decoder::new();
        let headers = map(&[("x-a", "1")]);
        let mut block = Vec::new();
        e.response(200, &headers, &mut block);
        decode_all(&mut d, &block);
        // The peer shrinks its table to 0, then allows 100: the next block
        // starts with both updates, and the old entry is gone.
        e.set_peer_limit(0);
        e.set_peer_limit(100);
        let mut block = Vec::new();
        e.push_request("https", "example.com", "/a.css", &headers, &mut block);
        assert_eq!(&block[..2], &[0x20, 0x3f], "{block:x?}");
        let fields = decode_all(&mut d, &block);
        assert_eq!(fields[0], (b":method".to_vec(), b"GET".to_vec()));
        assert_eq!(fields[2], (b":authority".to_vec(), b"example.com".to_vec()));
        assert_eq!(fields[3], (b":path".to_vec(), b"/a.css".to_vec()));
        assert!(e.table.size <= 100);
    }

    #[test]
    fn many_distinct_fields_evict_and_stay_decodable() {
        let mut e = Encoder::new();
        let mut d = Decoder::new();
        for i in 0..2000 {
            let mut h = HeaderMap::new();
            h.insert("etag", HeaderValue::from_str(&format!("\"{i}\"")).unwrap());
            h.insert("content-length", HeaderValue::from(i % 7));
            let mut block = Vec::new();
            e.response(200, &h, &mut block);
            let fields = decode_all(&mut d, &block);
            assert_eq!(fields[1].1, format!("\"{i}\"").into_bytes());
        }
        assert!(e.index.len() <= 2 * e.table.entries.len() + 65);
        assert!(e.table.size <= DEFAULT_TABLE_SIZE);
    }
}
