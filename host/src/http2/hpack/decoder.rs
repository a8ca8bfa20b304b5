//! Decoding the client's header blocks (RFC 7541 §3, §6).

use bytes::Bytes;

use super::{DEFAULT_TABLE_SIZE, Error, Name, Table, decode_int, huffman};

/// One connection's HPACK decoder.
#[derive(Debug)]
pub struct Decoder {
    table: Table,
    /// The most the client may set the table to: what we advertised in
    /// SETTINGS_HEADER_TABLE_SIZE (we keep the default).
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            table: Table::new(DEFAULT_TABLE_SIZE),
            limit: DEFAULT_TABLE_SIZE,
        }
    }

    /// Decode one complete header block, calling `field` for each field in
    /// order. `max_list` bounds the decoded size (§4.1's accounting, as
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts it): past it the block is still
    /// decoded to the end, so the table stays in step with the client's,
    /// but `field` is no longer called and `Error::TooLarge` is returned.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        mut field: impl FnMut(Name, Bytes),
    ) -> Result<(), Error> {
        let mut at = 0;
        let mut list = 0usize;
        let mut fields_seen = false;
        let mut scratch = Vec::new();
        while at < block.len() {
            let b = block[at];
            let (name, value) = if b & 0x80 != 0 {
                // §6.1: indexed field.
                let index = decode_int(block, &mut at, 7)?;
                let (n, v) = self.table.get(index).ok_or(Error::BadIndex)?;
                (n.clone(), v.clone())
            } else if b & 0xe0 == 0x20 {
                // §6.3: dynamic table size update, only before any field.
                let size = decode_int(block, &mut at, 5)?;
                if fields_seen || size > self.limit {
                    return Err(Error::BadSizeUpdate);
                }
                self.table.set_max(size);
                continue;
            } else {
                // §6.2: literal; with incremental indexing (01), without
                // (0000) or never indexed (0001).
                let indexing = b & 0xc0 == 0x40;
                let prefix = if indexing { 6 } else { 4 };
                let index = decode_int(block, &mut at, prefix)?;
                let name = if index == 0 {
                    let raw = string(block, &mut at, &mut scratch)?;
                    Name::parse(raw)
                } else {
                    self.table.get(index).ok_or(Error::BadIndex)?.0.clone()
                };
                let value = Bytes::copy_from_slice(string(block, &mut at, &mut scratch)?);
                if indexing {
                    self.table.insert(name.clone(), value.clone());
                }
                (name, value)
            };
            fields_seen = true;
            list += name.len() + value.len() + 32;
            if list <= max_list {
                field(name, value);
            }
        }
        if list > max_list {
            return Err(Error::TooLarge);
        }
        Ok(())
    }
}

/// A string literal (§5.2): the raw octets, or their Huffman decoding in
/// `scratch`.
fn string<'a>(
    block: &'a [u8],
    at: &mut usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], Error> {
    let huffman_coded = *block.get(*at).ok_or(Error::Truncated)? & 0x80 != 0;
    let len = decode_int(block, at, 7)?;
    let end = at.checked_add(len).ok_or(Error::Truncated)?;
    let raw = block.get(*at..end).ok_or(Error::Truncated)?;
    *at = end;
    if !huffman_coded {
        return Ok(raw);
    }
    scratch.clear();
    huffman::decode(raw, scratch)?;
    Ok(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.decode(&hex(block), usize::MAX, |n, v| {
            out.push((
                String::from_utf8(n.as_bytes().to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ))
        })
        .unwrap();
        out
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// RFC 7541 C.3 (requests without Huffman) and C.4 (with), three
    /// requests each on one connection, with the table sizes it lists.
    #[test]
    fn rfc_request_examples() {
        for (blocks, sizes) in [
            (
                [
                    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    "8286 84be 5808 6e6f 2d63 6163 6865",
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                ],
                [57, 110, 164],
            ),
            (
                [
                    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                    "8286 84be 5886 a8eb 1064 9cbf",
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                ],
                [57, 110, 164],
            ),
        ] {
            let mut d = Decoder::new();
            assert_eq!(
                fields(&mut d, blocks[0]),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com")
                ])
            );
            assert_eq!(d.table.size, sizes[0]);
            assert_eq!(
                fields(&mut d, blocks[1]),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com"),
                    ("cache-control", "no-cache")
                ])
            );
            assert_eq!(d.table.size, sizes[1]);
            assert_eq!(
                fields(&mut d, blocks[2]),
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value")
                ])
            );
            assert_eq!(d.table.size, sizes[2]);
        }
    }

    /// RFC 7541 C.5: responses with a 256-byte table, so entries are evicted.
    #[test]
    fn rfc_response_examples_with_eviction() {
        let mut d = Decoder::new();
        d.decode(&[0x3f, 0xe1, 0x01], usize::MAX, |_, _| {})
            .unwrap(); // size update to 256
        assert_eq!(d.table.max, 256);
        let first = fields(
            &mut d,
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        );
        assert_eq!(first[0], (":status".into(), "302".into()));
        assert_eq!(d.table.size, 222);
        let second = fields(&mut d, "4803 3330 37c1 c0bf");
        assert_eq!(second[0], (":status".into(), "307".into()));
        assert_eq!(
            second[3],
            ("location".into(), "https://www.example.com".into())
        );
        assert_eq!(d.table.size, 222);
        let third = fields(
            &mut d,
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
        );
        assert_eq!(third[0], (":status".into(), "200".into()));
        assert_eq!(third[4], ("content-encoding".into(), "gzip".into()));
        assert_eq!(d.table.size, 215);
    }

    #[test]
    fn errors() {
        let mut d = Decoder::new();
        let mut run = |b: &[u8]| d.decode(b, usize::MAX, |_, _| {});
        assert_eq!(run(&[0x80]), Err(Error::BadIndex));
        assert_eq!(run(&[0xff, 0x00]), Err(Error::BadIndex)); // 127: past both tables
        assert_eq!(run(&[0x41, 0x05, b'a']), Err(Error::Truncated));
        // A size update above the 4,096 we advertised, and one after a field.
        assert_eq!(run(&[0x3f, 0xe2, 0x1f]), Err(Error::BadSizeUpdate));
        assert_eq!(run(&[0x82, 0x20]), Err(Error::BadSizeUpdate));
    }

    #[test]
    fn a_block_over_the_list_limit_is_decoded_but_refused() {
        let mut d = Decoder::new();
        // :method GET, then a literal indexed field "x: yyyy..." (100 bytes).
        let mut block = vec![0x82, 0x40, 0x01, b'x', 100];
        block.extend([b'y'; 100]);
        let mut seen = 0;
        assert_eq!(d.decode(&block, 64, |_, _| seen += 1), Err(Error::TooLarge));
        assert_eq!(seen, 1);
        // The field still entered the table: the next block can use it.
        let mut got = Vec::new();
        d.decode(&[0xbe], usize::MAX, |n, v| got.push((n, v)))
            .unwrap();
        assert_eq!(got[0].1.len(), 100);
    }
}
