//! A frame tap between h2 and the socket.
//!
//! h2 neither tells us what the client's SETTINGS say (there is no getter for
//! ENABLE_PUSH) nor when a PUSH_PROMISE it queued has been written. Both are
//! needed: the first to decide push vs early hints, the second to keep promised
//! stream ids increasing on the wire across parents (h2 interleaves the send
//! queues of different streams, see `../shared/notes/h2-pitfalls.md`). The tap
//! decodes the HTTP/2 frame headers of both directions as the bytes pass, and
//! never changes a byte.
//!
//! Invariant: the tap only observes. It holds at most one frame header and a
//! 64-byte payload prefix per direction, whatever the frame size.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// HTTP/2 frame types (RFC 9113 §6, RFC 9218 §7.1).
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

const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const FLAG_ACK: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFIX_CAP: usize = 64;

/// What the tap has learned about one connection, shared with its handlers.
#[derive(Debug)]
pub struct PeerState {
    enable_push: AtomicBool,
    max_concurrent_streams: AtomicU32,
    promised: watch::Sender<u32>,
    started: Instant,
    conn_id: u64,
    trace: bool,
}

impl PeerState {
    pub fn new(conn_id: u64, trace: bool) -> Arc<PeerState> {
        Arc::new(PeerState {
            // RFC 9113 §6.5.2: push is enabled until the client says otherwise.
            enable_push: AtomicBool::new(true),
            max_concurrent_streams: AtomicU32::new(u32::MAX),
            promised: watch::channel(0).0,
            started: Instant::now(),
            conn_id,
            trace,
        })
    }

    /// Whether the client allows PUSH_PROMISE, per the SETTINGS it has sent so far.
    pub fn push_enabled(&self) -> bool {
        self.enable_push.load(Ordering::Acquire)
    }

    /// The client's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says).
    pub fn max_concurrent_streams(&self) -> u32 {
        self.max_concurrent_streams.load(Ordering::Acquire)
    }

    /// The highest promised stream id written to the socket so far.
    pub fn promised_on_wire(&self) -> u32 {
        *self.promised.borrow()
    }

    /// Wait until a PUSH_PROMISE for `id` (or a later one) has been written.
    pub async fn wait_promised(&self, id: u32) {
        let mut rx = self.promised.subscribe();
        // Only fails if the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|&seen| seen >= id).await;
    }
}

/// An IO wrapper that decodes frame headers in both directions.
pub struct Tap<IO> {
    io: IO,
    peer: Arc<PeerState>,
    sent: FrameCursor,
    received: FrameCursor,
}

impl<IO> Tap<IO> {
    pub fn new(io: IO, peer: Arc<PeerState>) -> Tap<IO> {
        Tap {
            io,
            peer,
            sent: FrameCursor::new(Direction::Sent),
            received: FrameCursor::new(Direction::Received),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Sent,
    Received,
}

/// Incremental HTTP/2 frame decoder: fed arbitrary slices of one direction of
/// a connection, it reports each frame's header and a payload prefix of at most
/// 64 bytes. Also used by tests to record what a client receives.
pub struct FrameDecoder {
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    current: Option<FrameHead>,
    prefix: Vec<u8>,
}

/// One decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

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
        let at = usize::from(self.head.flags & FLAG_PADDED != 0);
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
                        let h = &self.header;
                        let head = FrameHead {
                            len: (usize::from(h[0]) << 16)
                                | (usize::from(h[1]) << 8)
                                | usize::from(h[2]),
                            kind: h[3],
                            flags: h[4],
                            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                        };
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

/// The tap's view of one direction: decode, update the peer state, trace.
struct FrameCursor {
    direction: Direction,
    decoder: FrameDecoder,
}

impl FrameCursor {
    fn new(direction: Direction) -> FrameCursor {
        FrameCursor {
            direction,
            decoder: FrameDecoder::new(direction == Direction::Received),
        }
    }

    fn feed(&mut self, bytes: &[u8], peer: &PeerState) {
        let direction = self.direction;
        self.decoder
            .feed(bytes, |frame| observe(direction, frame, peer));
    }
}

fn observe(direction: Direction, frame: &Frame<'_>, peer: &PeerState) {
    let head = frame.head;
    match (direction, head.kind) {
        (Direction::Sent, frame_type::PUSH_PROMISE) => {
            if let Some(id) = frame.promised_id() {
                peer.promised.send_if_modified(|seen| {
                    let newer = id > *seen;
                    if newer {
                        *seen = id;
                    }
                    newer
                });
            }
        }
        (Direction::Received, frame_type::SETTINGS) if head.flags & FLAG_ACK == 0 => {
            // Entries past the 64-byte prefix (10 settings) are ignored: more
            // than any real client sends.
            for entry in frame.prefix.chunks_exact(6) {
                let id = u16::from_be_bytes([entry[0], entry[1]]);
                let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                match id {
                    SETTINGS_ENABLE_PUSH => peer.enable_push.store(value == 1, Ordering::Release),
                    SETTINGS_MAX_CONCURRENT_STREAMS => {
                        peer.max_concurrent_streams.store(value, Ordering::Release)
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if peer.trace {
        tracing::info!(
            target: "herald::frames",
            conn = peer.conn_id,
            "{}",
            describe(direction, head, frame.prefix, peer.started.elapsed().as_secs_f64())
        );
    }
}

/// One line per frame, in the spirit of `nghttpd -v`.
fn describe(direction: Direction, head: FrameHead, p: &[u8], at: f64) -> String {
    use frame_type::*;
    let dir = match direction {
        Direction::Sent => "send",
        Direction::Received => "recv",
    };
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
        p.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let detail = match head.kind {
        PUSH_PROMISE => {
            let at = if head.flags & FLAG_PADDED != 0 { 1 } else { 0 };
            u32_at(at)
                .map(|id| format!(" promised_stream_id={}", id & 0x7fff_ffff))
                .unwrap_or_default()
        }
        RST_STREAM => u32_at(0)
            .map(|c| format!(" error_code={}", error_name(c)))
            .unwrap_or_default(),
        GOAWAY => match (u32_at(0), u32_at(4)) {
            (Some(last), Some(code)) => format!(
                " last_stream_id={} error_code={}",
                last & 0x7fff_ffff,
                error_name(code)
            ),
            _ => String::new(),
        },
        WINDOW_UPDATE => u32_at(0)
            .map(|i| format!(" window_size_increment={}", i & 0x7fff_ffff))
            .unwrap_or_default(),
        SETTINGS if head.flags & FLAG_ACK == 0 => p
            .chunks_exact(6)
            .map(|e| {
                let id = u16::from_be_bytes([e[0], e[1]]);
                let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                format!(" {}={v}", settings_name(id))
            })
            .collect(),
        _ => String::new(),
    };
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

fn error_name(code: u32) -> String {
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
        .get(code as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("0x{code:x}"))
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tap<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.received.feed(&buf.filled()[before..], &this.peer);
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tap<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.sent.feed(&buf[..n], &this.peer);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = res {
            for b in bufs {
                if n == 0 {
                    break;
                }
                let take = n.min(b.len());
                this.sent.feed(&b[..take], &this.peer);
                n -= take;
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn reads_client_settings_split_across_reads() {
        let peer = PeerState::new(1, false);
        let mut c = FrameCursor::new(Direction::Received);
        let mut bytes = PREFACE.to_vec();
        let mut settings = Vec::new();
        settings.extend_from_slice(&SETTINGS_ENABLE_PUSH.to_be_bytes());
        settings.extend_from_slice(&0u32.to_be_bytes());
        settings.extend_from_slice(&SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
        settings.extend_from_slice(&7u32.to_be_bytes());
        bytes.extend(frame(frame_type::SETTINGS, 0, 0, &settings));
        bytes.extend(frame(frame_type::DATA, 0, 1, &[0u8; 300]));
        for chunk in bytes.chunks(5) {
            c.feed(chunk, &peer);
        }
        assert!(!peer.push_enabled());
        assert_eq!(peer.max_concurrent_streams(), 7);
    }

    #[test]
    fn tracks_highest_promise_written() {
        let peer = PeerState::new(1, false);
        let mut c = FrameCursor::new(Direction::Sent);
        let mut bytes = frame(frame_type::HEADERS, 4, 1, &[0x88]);
        bytes.extend(frame(frame_type::PUSH_PROMISE, 4, 1, &[0, 0, 0, 2, 0x82]));
        bytes.extend(frame(
            frame_type::PUSH_PROMISE,
            4 | FLAG_PADDED,
            1,
            &[1, 0, 0, 0, 4, 0x82, 0],
        ));
        for b in &bytes {
            c.feed(std::slice::from_ref(b), &peer);
        }
        assert_eq!(peer.promised_on_wire(), 4);
    }
}
