//! HTTP/2 frames (RFC 9113 §4, §6; RFC 9218 §7.1): the 9-byte header, the
//! constants, writers for every frame the server sends, an incremental
//! decoder that tests and benches use to record what a client receives, and
//! the one-line description `--trace-frames` prints.

use std::fmt::Write as _;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The frame header's length.
pub const HEADER_LEN: usize = 9;

/// The smallest SETTINGS_MAX_FRAME_SIZE, and the default.
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// Both windows start at this until SETTINGS say otherwise (§6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types.
pub mod frame_type {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
    pub const PRIORITY_UPDATE: u8 = 0x10;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const NO_RFC7540_PRIORITIES: u16 = 0x9;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);

    pub fn name(self) -> String {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES
            .get(self.0 as usize)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("0x{:x}", self.0))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHead {
    pub fn parse(h: &[u8]) -> FrameHead {
        FrameHead {
            len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        }
    }
}

/// Append a frame header.
pub fn head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let mut head = [0; 9];
    head_into(&mut head, len, kind, flags, stream);
    out.extend_from_slice(&head);
}

/// A frame header, into the first nine bytes of `out`.
#[inline]
pub fn head_into(out: &mut [u8], len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    let id = stream.to_be_bytes();
    out[..9].copy_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        id[0],
        id[1],
        id[2],
        id[3],
    ]);
}

/// A header block as HEADERS (or PUSH_PROMISE) plus as many CONTINUATION
/// frames as `max_frame` requires. `prefix` goes before the block in the
/// first frame (PUSH_PROMISE's promised stream id).
pub fn header_block(
    out: &mut Vec<u8>,
    kind: u8,
    stream: u32,
    end_stream: bool,
    prefix: &[u8],
    block: &[u8],
    max_frame: usize,
) {
    let first = block.len().min(max_frame - prefix.len());
    let end_headers = first == block.len();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if end_headers {
        flags |= flag::END_HEADERS;
    }
    head(out, prefix.len() + first, kind, flags, stream);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&block[..first]);
    let mut rest = &block[first..];
    while !rest.is_empty() {
        let n = rest.len().min(max_frame);
        let flags = if n == rest.len() {
            flag::END_HEADERS
        } else {
            0
        };
        head(out, n, frame_type::CONTINUATION, flags, stream);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

pub fn settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
    head(out, entries.len() * 6, frame_type::SETTINGS, 0, 0);
    for (id, value) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn settings_ack(out: &mut Vec<u8>) {
    head(out, 0, frame_type::SETTINGS, flag::ACK, 0);
}

pub fn ping_ack(out: &mut Vec<u8>, payload: &[u8]) {
    head(out, 8, frame_type::PING, flag::ACK, 0);
    out.extend_from_slice(payload);
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, frame_type::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    head(out, 4, frame_type::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &[u8]) {
    head(out, 8 + debug.len(), frame_type::GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug);
}

/// Incremental frame decoder: fed arbitrary slices of one direction of a
/// connection, it reports each frame's header and a payload prefix of at
/// most 64 bytes. Holds one frame header and that prefix, whatever the
/// frame size. (Clients in the tests and benches use it to record what they
/// receive; the server parses its own input in `engine`.)
pub struct FrameDecoder {
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    current: Option<FrameHead>,
    prefix: Vec<u8>,
}

const PREFIX_CAP: usize = 64;

/// A whole frame as the decoder reports it.
#[derive(Debug)]
pub struct Frame<'a> {
    pub head: FrameHead,
    /// The first bytes of the payload (at most 64).
    pub prefix: &'a [u8],
}

impl Frame<'_> {
    /// For a PUSH_PROMISE, the promised stream id.
    pub fn promised_id(&self) -> Option<u32> {
        if self.head.kind != frame_type::PUSH_PROMISE {
            return None;
        }
        let at = usize::from(self.head.flags & flag::PADDED != 0);
        let b = self.prefix.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
    }

    /// For a RST_STREAM or GOAWAY, the error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.head.kind {
            frame_type::RST_STREAM => 0,
            frame_type::GOAWAY => 4,
            _ => return None,
        };
        let b = self.prefix.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl FrameDecoder {
    /// `client_preface`: the stream starts with the 24-byte client preface
    /// (true for what a server receives).
    pub fn new(client_preface: bool) -> FrameDecoder {
        FrameDecoder {
            preface_left: if client_preface { PREFACE.len() } else { 0 },
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            current: None,
            prefix: Vec::with_capacity(PREFIX_CAP),
        }
    }

    /// Feed the next bytes; `on_frame` is called for every frame completed.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(&Frame<'_>)) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            match self.current {
                None => {
                    let n = (9 - self.header_len).min(bytes.len());
                    self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                    self.header_len += n;
                    bytes = &bytes[n..];
                    if self.header_len == 9 {
                        let head = FrameHead::parse(&self.header);
                        self.header_len = 0;
                        self.payload_left = head.len;
                        self.prefix.clear();
                        self.current = Some(head);
                        if head.len == 0 {
                            self.finish(&mut on_frame);
                        }
                    }
                }
                Some(_) => {
                    let n = self.payload_left.min(bytes.len());
                    let keep = (PREFIX_CAP - self.prefix.len()).min(n);
                    self.prefix.extend_from_slice(&bytes[..keep]);
                    self.payload_left -= n;
                    bytes = &bytes[n..];
                    if self.payload_left == 0 {
                        self.finish(&mut on_frame);
                    }
                }
            }
        }
    }

    fn finish(&mut self, on_frame: &mut impl FnMut(&Frame<'_>)) {
        if let Some(head) = self.current.take() {
            on_frame(&Frame {
                head,
                prefix: &self.prefix,
            });
        }
    }
}

/// One line per frame, in the spirit of `nghttpd -v`: `dir` is "send" or
/// "recv", `payload` (a prefix of) the frame's payload, `at` seconds since
/// the connection began.
pub fn describe(dir: &str, head: FrameHead, payload: &[u8], at: f64) -> String {
    use frame_type::*;
    let name = match head.kind {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        PRIORITY_UPDATE => "PRIORITY_UPDATE",
        _ => "UNKNOWN",
    };
    let u32_at = |i: usize| {
        payload
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut detail = String::new();
    match head.kind {
        PUSH_PROMISE => {
            let at = usize::from(head.flags & flag::PADDED != 0);
            if let Some(id) = u32_at(at) {
                let _ = write!(detail, " promised_stream_id={}", id & 0x7fff_ffff);
            }
        }
        RST_STREAM => {
            if let Some(c) = u32_at(0) {
                let _ = write!(detail, " error_code={}", Reason(c));
            }
        }
        GOAWAY => {
            if let (Some(last), Some(code)) = (u32_at(0), u32_at(4)) {
                let _ = write!(
                    detail,
                    " last_stream_id={} error_code={}",
                    last & 0x7fff_ffff,
                    Reason(code)
                );
            }
        }
        WINDOW_UPDATE => {
            if let Some(i) = u32_at(0) {
                let _ = write!(detail, " window_size_increment={}", i & 0x7fff_ffff);
            }
        }
        SETTINGS if head.flags & flag::ACK == 0 => {
            for e in payload.chunks_exact(6) {
                let id = u16::from_be_bytes([e[0], e[1]]);
                let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                let _ = write!(detail, " {}={v}", settings_name(id));
            }
        }
        _ => {}
    }
    format!(
        "[{at:10.6}] {dir} {name} frame <length={}, flags=0x{:02x}, stream_id={}>{detail}",
        head.len, head.flags, head.stream
    )
}

fn settings_name(id: u16) -> String {
    match id {
        0x1 => "HEADER_TABLE_SIZE".into(),
        0x2 => "ENABLE_PUSH".into(),
        0x3 => "MAX_CONCURRENT_STREAMS".into(),
        0x4 => "INITIAL_WINDOW_SIZE".into(),
        0x5 => "MAX_FRAME_SIZE".into(),
        0x6 => "MAX_HEADER_LIST_SIZE".into(),
        0x8 => "ENABLE_CONNECT_PROTOCOL".into(),
        0x9 => "NO_RFC7540_PRIORITIES".into(),
        other => format!("0x{other:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_header_block_is_split_into_continuations() {
        let block = vec![7u8; 40_000];
        let mut out = Vec::new();
        header_block(
            &mut out,
            frame_type::PUSH_PROMISE,
            1,
            false,
            &[0, 0, 0, 2],
            &block,
            16_384,
        );
        let mut frames = Vec::new();
        let mut payload = Vec::new();
        let mut d = FrameDecoder::new(false);
        d.feed(&out, |f| frames.push(f.head));
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].kind, frame_type::PUSH_PROMISE);
        assert_eq!(frames[0].len, 16_384);
        assert_eq!(frames[0].flags & flag::END_HEADERS, 0);
        assert_eq!(frames[1].kind, frame_type::CONTINUATION);
        assert_eq!(frames[2].flags, flag::END_HEADERS);
        let total: usize = frames.iter().map(|f| f.len).sum();
        assert_eq!(total, 40_004);
        // The decoder holds a prefix only.
        d.feed(&out[..20], |f| payload.push(f.prefix.len()));
        assert!(payload.is_empty());
    }

    #[test]
    fn describes_frames_as_nghttp_does() {
        let head = FrameHead {
            len: 8,
            kind: frame_type::GOAWAY,
            flags: 0,
            stream: 0,
        };
        let line = describe("send", head, &[0, 0, 0, 5, 0, 0, 0, 0xb], 1.5);
        assert!(
            line.ends_with("last_stream_id=5 error_code=ENHANCE_YOUR_CALM"),
            "{line}"
        );
        assert!(line.contains("send GOAWAY frame <length=8"), "{line}");
    }
}
