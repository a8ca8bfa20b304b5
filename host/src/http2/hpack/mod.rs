//! HPACK (RFC 7541): header compression for HTTP/2.
//!
//! The decoder reads the client's request header blocks; the encoder writes
//! our response, 1xx and PUSH_PROMISE blocks. Both keep a dynamic table of
//! at most 4,096 bytes (the protocol default, and what we advertise). Field
//! names are parsed into `http::HeaderName`s once, when a field enters a
//! table, so a field the client sends by index costs a reference count, not
//! a parse.
//!
//! Invariant: a decoder error is a connection error (COMPRESSION_ERROR): once
//! one block fails, the two tables no longer agree and nothing more on the
//! connection can be decoded. Malformed *fields* (an uppercase name, say) are
//! not decoder errors: they are reported as `Name::Invalid` and the request
//! is refused on its own.

mod decoder;
mod encoder;
pub mod huffman;

pub use decoder::Decoder;
pub use encoder::{Encoder, SHORT_BLOCK, is_connection_specific};

use std::collections::VecDeque;

use bytes::Bytes;
use http::HeaderName;

/// The dynamic table size both sides start with (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The block ended inside a representation.
    Truncated,
    /// An integer past 2^32.
    IntegerOverflow,
    /// Index 0, or past the end of both tables.
    BadIndex,
    /// Invalid Huffman data (§5.2).
    Huffman,
    /// A table size update above the limit we advertised, or not at the
    /// start of a block.
    BadSizeUpdate,
    /// The decoded fields exceed the caller's limit (SETTINGS_MAX_HEADER_LIST_SIZE).
    TooLarge,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "header block ends inside a field",
            Error::IntegerOverflow => "integer too large",
            Error::BadIndex => "index outside the tables",
            Error::Huffman => "invalid Huffman code",
            Error::BadSizeUpdate => "invalid dynamic table size update",
            Error::TooLarge => "header list too large",
        })
    }
}

/// A field name as HTTP/2 sees it: a pseudo-header, a regular name, or
/// something a request may not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Authority,
    Method,
    Path,
    Scheme,
    Status,
    Protocol,
    Header(HeaderName),
    /// A `:name` HTTP/2 does not define.
    UnknownPseudo(Bytes),
    /// Not a valid lowercase field name (RFC 9113 §8.2.1).
    Invalid(Bytes),
}

impl Name {
    /// Parse a name from the wire. HTTP/2 names are lowercase: anything else
    /// is `Invalid`, never silently lowercased.
    pub fn parse(raw: &[u8]) -> Name {
        match raw {
            b":authority" => Name::Authority,
            b":method" => Name::Method,
            b":path" => Name::Path,
            b":scheme" => Name::Scheme,
            b":status" => Name::Status,
            b":protocol" => Name::Protocol,
            [b':', ..] => Name::UnknownPseudo(Bytes::copy_from_slice(raw)),
            _ if raw.iter().any(u8::is_ascii_uppercase) => {
                Name::Invalid(Bytes::copy_from_slice(raw))
            }
            _ => match HeaderName::from_bytes(raw) {
                Ok(name) => Name::Header(name),
                Err(_) => Name::Invalid(Bytes::copy_from_slice(raw)),
            },
        }
    }

    /// The name's length in octets, as table sizes count it.
    pub fn len(&self) -> usize {
        match self {
            Name::Authority => 10,
            Name::Method => 7,
            Name::Path => 5,
            Name::Scheme => 7,
            Name::Status => 7,
            Name::Protocol => 9,
            Name::Header(h) => h.as_str().len(),
            Name::UnknownPseudo(b) | Name::Invalid(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name as text (for error messages and the encoder).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Authority => b":authority",
            Name::Method => b":method",
            Name::Path => b":path",
            Name::Scheme => b":scheme",
            Name::Status => b":status",
            Name::Protocol => b":protocol",
            Name::Header(h) => h.as_str().as_bytes(),
            Name::UnknownPseudo(b) | Name::Invalid(b) => b,
        }
    }
}

const fn h(name: &'static str) -> Name {
    Name::Header(HeaderName::from_static(name))
}

const fn v(value: &'static str) -> Bytes {
    Bytes::from_static(value.as_bytes())
}

const E: Bytes = Bytes::from_static(b"");

/// RFC 7541 Appendix A; index 1 is `STATIC[0]`.
static STATIC: [(Name, Bytes); 61] = [
    (Name::Authority, E),
    (Name::Method, v("GET")),
    (Name::Method, v("POST")),
    (Name::Path, v("/")),
    (Name::Path, v("/index.html")),
    (Name::Scheme, v("http")),
    (Name::Scheme, v("https")),
    (Name::Status, v("200")),
    (Name::Status, v("204")),
    (Name::Status, v("206")),
    (Name::Status, v("304")),
    (Name::Status, v("400")),
    (Name::Status, v("404")),
    (Name::Status, v("500")),
    (h("accept-charset"), E),
    (h("accept-encoding"), v("gzip, deflate")),
    (h("accept-language"), E),
    (h("accept-ranges"), E),
    (h("accept"), E),
    (h("access-control-allow-origin"), E),
    (h("age"), E),
    (h("allow"), E),
    (h("authorization"), E),
    (h("cache-control"), E),
    (h("content-disposition"), E),
    (h("content-encoding"), E),
    (h("content-language"), E),
    (h("content-length"), E),
    (h("content-location"), E),
    (h("content-range"), E),
    (h("content-type"), E),
    (h("cookie"), E),
    (h("date"), E),
    (h("etag"), E),
    (h("expect"), E),
    (h("expires"), E),
    (h("from"), E),
    (h("host"), E),
    (h("if-match"), E),
    (h("if-modified-since"), E),
    (h("if-none-match"), E),
    (h("if-range"), E),
    (h("if-unmodified-since"), E),
    (h("last-modified"), E),
    (h("link"), E),
    (h("location"), E),
    (h("max-forwards"), E),
    (h("proxy-authenticate"), E),
    (h("proxy-authorization"), E),
    (h("range"), E),
    (h("referer"), E),
    (h("refresh"), E),
    (h("retry-after"), E),
    (h("server"), E),
    (h("set-cookie"), E),
    (h("strict-transport-security"), E),
    (h("transfer-encoding"), E),
    (h("user-agent"), E),
    (h("vary"), E),
    (h("via"), E),
    (h("www-authenticate"), E),
];

/// One dynamic table entry.
#[derive(Debug, Clone)]
struct Entry {
    name: Name,
    value: Bytes,
}

impl Entry {
    /// §4.1: name and value octets plus 32.
    fn size(&self) -> usize {
        self.name.len() + self.value.len() + 32
    }
}

/// The dynamic table (§2.3.2): newest first, evicted from the back.
#[derive(Debug)]
struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// Entries ever inserted: an entry's absolute number never changes,
    /// so the encoder can remember where a field is.
    inserted: u64,
}

impl Table {
    fn new(max: usize) -> Table {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max,
            inserted: 0,
        }
    }

    /// Entry `index` of the combined index space (1-based: static, then dynamic).
    fn get(&self, index: usize) -> Option<(&Name, &Bytes)> {
        match index {
            0 => None,
            1..=61 => STATIC.get(index - 1).map(|(n, v)| (n, v)),
            _ => self.entries.get(index - 62).map(|e| (&e.name, &e.value)),
        }
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => break,
            }
        }
    }

    /// §4.4: an entry larger than the table empties it and is not added.
    fn insert(&mut self, name: Name, value: Bytes) {
        let entry = Entry { name, value };
        let size = entry.size();
        self.inserted += 1;
        if size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.size += size;
        self.entries.push_front(entry);
    }

    /// The combined index of the entry inserted as number `absolute`, if it
    /// is still in the table.
    fn index_of(&self, absolute: u64) -> Option<usize> {
        let age = self.inserted.checked_sub(absolute)?;
        let age = usize::try_from(age).ok()?;
        (age < self.entries.len()).then_some(62 + age)
    }
}

/// Append an integer with an `n`-bit prefix (§5.1); `first` holds the bits
/// above the prefix. Inline for the common case, one byte (a table index
/// under 127, a short length).
#[inline]
pub(crate) fn encode_int(value: usize, n: u8, first: u8, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
    } else {
        encode_long_int(value, max, first, out);
    }
}

/// [`encode_int`] past its prefix.
#[inline(never)]
fn encode_long_int(value: usize, max: usize, first: u8, out: &mut Vec<u8>) {
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Read an integer with an `n`-bit prefix at `*at`, advancing it.
pub(crate) fn decode_int(block: &[u8], at: &mut usize, n: u8) -> Result<usize, Error> {
    let max = (1usize << n) - 1;
    let first = *block.get(*at).ok_or(Error::Truncated)?;
    *at += 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at).ok_or(Error::Truncated)?;
        *at += 1;
        if shift > 28 {
            return Err(Error::IntegerOverflow);
        }
        value += usize::from(b & 0x7f) << shift;
        if value > u32::MAX as usize {
            return Err(Error::IntegerOverflow);
        }
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7541 C.1: 10 with a 5-bit prefix, 1337 with a 5-bit prefix, 42 at
    /// an octet boundary.
    #[test]
    fn integers_as_in_the_rfc() {
        for (value, n, bytes) in [
            (10usize, 5u8, vec![0x0a]),
            (1337, 5, vec![0x1f, 0x9a, 0x0a]),
            (42, 8, vec![0x2a]),
        ] {
            let mut out = Vec::new();
            encode_int(value, n, 0, &mut out);
            assert_eq!(out, bytes);
            let mut at = 0;
            assert_eq!(decode_int(&out, &mut at, n), Ok(value));
            assert_eq!(at, out.len());
        }
        let mut at = 0;
        assert_eq!(
            decode_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut at, 5),
            Err(Error::IntegerOverflow)
        );
        let mut at = 0;
        assert_eq!(decode_int(&[0x1f, 0x9a], &mut at, 5), Err(Error::Truncated));
    }

    #[test]
    fn names_are_lowercase_or_invalid() {
        assert_eq!(Name::parse(b":path"), Name::Path);
        assert_eq!(
            Name::parse(b"content-type"),
            Name::Header(http::header::CONTENT_TYPE)
        );
        assert!(matches!(Name::parse(b"Content-Type"), Name::Invalid(_)));
        assert!(matches!(Name::parse(b"bad name"), Name::Invalid(_)));
        assert!(matches!(Name::parse(b":nope"), Name::UnknownPseudo(_)));
    }
}
