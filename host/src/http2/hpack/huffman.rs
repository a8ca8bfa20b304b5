//! HPACK's static Huffman code (RFC 7541 §5.2, Appendix B).
//!
//! The code is canonical: codes of one length are consecutive integers,
//! given out in symbol order, each length starting where the previous one
//! ended, shifted left by one. So the whole code follows from the length of
//! each symbol's code (`LENGTHS`, the "len" column of Appendix B); the codes
//! themselves and the decoding tables are computed from it at compile time,
//! and the unit tests check them against the RFC's examples.

use super::Error;

/// Bits in the code of each symbol, 0..=255, then EOS (256).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const MIN_LEN: usize = 5;
const MAX_LEN: usize = 30;
const EOS: u16 = 256;

/// The canonical code of every symbol, right-aligned in `LENGTHS[s]` bits.
const CODES: [u32; 257] = {
    let mut codes = [0u32; 257];
    let mut next = 0u32;
    let mut len = MIN_LEN;
    while len <= MAX_LEN {
        let mut s = 0;
        while s < 257 {
            if LENGTHS[s] as usize == len {
                codes[s] = next;
                next += 1;
            }
            s += 1;
        }
        next <<= 1;
        len += 1;
    }
    codes
};

/// Decoding tables: symbols sorted by (length, symbol); for each length, the
/// first code, how many codes it has and where its symbols start in `SORTED`;
/// and `LIMIT[len]`, one past its last code, left-aligned in 30 bits.
struct Canonical {
    sorted: [u16; 257],
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    limit: [u32; MAX_LEN + 1],
}

const CANONICAL: Canonical = {
    let mut c = Canonical {
        sorted: [0; 257],
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        limit: [0; MAX_LEN + 1],
    };
    let mut at = 0usize;
    let mut len = MIN_LEN;
    while len <= MAX_LEN {
        c.offset[len] = at as u16;
        let mut s = 0;
        while s < 257 {
            if LENGTHS[s] as usize == len {
                if c.count[len] == 0 {
                    c.first[len] = CODES[s];
                }
                c.count[len] += 1;
                c.sorted[at] = s as u16;
                at += 1;
            }
            s += 1;
        }
        // Left-aligned in 30 bits; a length without codes keeps the
        // previous limit (no window can fall into it).
        c.limit[len] = if c.count[len] == 0 {
            c.limit[len - 1]
        } else {
            (c.first[len] + c.count[len]) << (MAX_LEN - len)
        };
        len += 1;
    }
    c
};

/// The length in bytes of `input` once Huffman-coded (padding included).
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input
        .iter()
        .map(|&b| usize::from(LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}

/// Append the Huffman code of `input` to `out`, padded with the most
/// significant bits of EOS (ones), as §5.2 requires.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in input {
        let len = u32::from(LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODES[usize::from(b)]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

/// Decode a Huffman-coded string into `out`. Errors (§5.2): an EOS symbol in
/// the data, padding longer than 7 bits, or padding that is not all ones.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let c = &CANONICAL;
    let mut acc: u64 = 0;
    let mut bits = 0usize;
    for &b in input {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= MIN_LEN {
            // The next 30 bits, zero-filled past what has arrived: a code
            // found no longer than `bits` lies wholly in real bits.
            let window = if bits >= MAX_LEN {
                (acc >> (bits - MAX_LEN)) as u32
            } else {
                (acc << (MAX_LEN - bits)) as u32
            } & ((1 << MAX_LEN) - 1);
            let mut len = MIN_LEN;
            while window >= c.limit[len] {
                len += 1;
                if len > MAX_LEN {
                    return Err(Error::Huffman);
                }
            }
            if len > bits {
                break;
            }
            let index = c.offset[len] as u32 + (window >> (MAX_LEN - len)) - c.first[len];
            let symbol = c.sorted[index as usize];
            if symbol == EOS {
                return Err(Error::Huffman);
            }
            out.push(symbol as u8);
            bits -= len;
            acc &= (1u64 << bits) - 1;
        }
    }
    if bits > 7 || acc != (1u64 << bits) - 1 {
        return Err(Error::Huffman);
    }
    Ok(())
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

    /// Codes against Appendix B's "code as hex" column, a few rows.
    #[test]
    fn codes_are_the_rfcs() {
        assert_eq!((CODES[0], LENGTHS[0]), (0x1ff8, 13));
        assert_eq!((CODES[b' ' as usize], LENGTHS[b' ' as usize]), (0x14, 6));
        assert_eq!((CODES[b'0' as usize], LENGTHS[b'0' as usize]), (0x0, 5));
        assert_eq!((CODES[b'a' as usize], LENGTHS[b'a' as usize]), (0x3, 5));
        assert_eq!((CODES[b'z' as usize], LENGTHS[b'z' as usize]), (0x7b, 7));
        assert_eq!((CODES[255], LENGTHS[255]), (0x3ffffee, 26));
        assert_eq!((CODES[256], LENGTHS[256]), (0x3fffffff, 30));
    }

    /// RFC 7541 Appendix C.4 and C.6: Huffman-coded strings.
    #[test]
    fn rfc_examples_round_trip() {
        let cases = [
            ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
            ("no-cache", "a8eb 1064 9cbf"),
            ("custom-key", "25a8 49e9 5ba9 7d7f"),
            ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
            ("302", "6402"),
            ("private", "aec3 771a 4b"),
            (
                "Mon, 21 Oct 2013 20:13:21 GMT",
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            ),
            (
                "https://www.example.com",
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            ),
            (
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ),
        ];
        for (text, coded) in cases {
            let coded = hex(coded);
            let mut out = Vec::new();
            encode(text.as_bytes(), &mut out);
            assert_eq!(out, coded, "{text}");
            assert_eq!(encoded_len(text.as_bytes()), coded.len());
            let mut back = Vec::new();
            decode(&coded, &mut back).unwrap();
            assert_eq!(back, text.as_bytes());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        encode(&all, &mut out);
        let mut back = Vec::new();
        decode(&out, &mut back).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        // 'a' (00011) then three zero bits of padding: not EOS's prefix.
        assert!(decode(&[0b0001_1000], &mut Vec::new()).is_err());
        // A whole byte of ones is more than 7 bits of padding.
        assert!(decode(&[0xff], &mut Vec::new()).is_err());
        // EOS itself (30 ones), padded.
        assert!(decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()).is_err());
        // Valid: 'a' then padding of ones.
        let mut out = Vec::new();
        decode(&[0b0001_1111], &mut out).unwrap();
        assert_eq!(out, b"a");
    }
}
