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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
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
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
/// RFC 9113 §6.9.2: both windows start at 65,535 until SETTINGS say otherwise.
const DEFAULT_WINDOW: u32 = 65_535;
const FLAG_PADDED: u8 = 0x8;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFIX_CAP: usize = 64;

/// Per-stream state of one connection, by stream id. Looked up several
/// times per frame: hashed with foldhash, not SipHash (`hash_one` was 1.2%
/// of a worker under h2load). Stream ids are the client's choice, but at
/// most `MAX_CONCURRENT_STREAMS` are live, and the hasher is seeded per
/// process, so collisions cannot be forced at scale.
pub type StreamMap<V> = std::collections::HashMap<u32, V, foldhash::fast::RandomState>;
pub type StreamSet = std::collections::HashSet<u32, foldhash::fast::RandomState>;

/// What the tap has learned about one connection, shared with its handlers.
#[derive(Debug)]
pub struct PeerState {
    enable_push: AtomicBool,
    max_concurrent_streams: AtomicU32,
    promised: watch::Sender<u32>,
    /// Bumped when DATA was written or a stream ended on the wire (see
    /// `announce_written`); its value counts the announcements.
    data_written: watch::Sender<u64>,
    /// Bumped whenever the peer grants window or changes settings.
    flow_epoch: watch::Sender<u64>,
    flow: Mutex<Flow>,
    /// Pushed streams promised and not yet closed on the wire.
    open_pushes: Mutex<StreamSet>,
    started: Instant,
    conn_id: u64,
    trace: bool,
    /// The client sent PING/SETTINGS faster than `CONTROL_PER_SECOND`
    /// allows: the connection is being closed.
    flooded: AtomicBool,
}

/// The peer's flow-control grants, as read from the wire. Together with the
/// bytes the host handed to h2 this gives exactly the windows h2 sends under.
#[derive(Debug)]
struct Flow {
    initial_window: u32,
    connection_updates: u64,
    /// WINDOW_UPDATE totals of the streams the scheduler tracks (others are
    /// ignored, so closed streams leave nothing behind).
    stream_updates: StreamMap<u64>,
    /// DATA bytes written per tracked stream.
    stream_written: StreamMap<u64>,
    /// DATA bytes handed to h2 per stream (the scheduler reports them).
    stream_handed: StreamMap<u64>,
    /// Bytes handed to h2 that it dropped unwritten because the stream was
    /// reset: they never consumed the peer's connection window.
    dropped: u64,
}

impl PeerState {
    pub fn new(conn_id: u64, trace: bool) -> Arc<PeerState> {
        Arc::new(PeerState {
            // RFC 9113 §6.5.2: push is enabled until the client says otherwise.
            enable_push: AtomicBool::new(true),
            max_concurrent_streams: AtomicU32::new(u32::MAX),
            promised: watch::channel(0).0,
            data_written: watch::channel(0).0,
            flow_epoch: watch::channel(0).0,
            flow: Mutex::new(Flow {
                initial_window: DEFAULT_WINDOW,
                connection_updates: 0,
                stream_updates: StreamMap::default(),
                stream_written: StreamMap::default(),
                stream_handed: StreamMap::default(),
                dropped: 0,
            }),
            open_pushes: Mutex::new(StreamSet::default()),
            started: Instant::now(),
            conn_id,
            trace,
            flooded: AtomicBool::new(false),
        })
    }

    /// Whether the client flooded PING/SETTINGS (the connection is closing).
    pub fn flooded(&self) -> bool {
        self.flooded.load(Ordering::Acquire)
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

    /// A receiver that changes whenever the peer grants window or changes settings.
    pub fn flow_changes(&self) -> watch::Receiver<u64> {
        self.flow_epoch.subscribe()
    }

    /// Start counting WINDOW_UPDATEs for `stream`.
    pub fn track_stream(&self, stream: u32) {
        let mut f = self.flow.lock().unwrap_or_else(|e| e.into_inner());
        // Keep updates the client sent before the stream was registered.
        f.stream_updates.entry(stream).or_insert(0);
        f.stream_written.entry(stream).or_insert(0);
    }

    /// `bytes` of `stream` were handed to h2 (to account for what h2 drops).
    pub fn record_handed(&self, stream: u32, bytes: u64) {
        *self
            .flow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stream_handed
            .entry(stream)
            .or_insert(0) += bytes;
    }

    /// Stop counting window updates for `stream`. Its written-bytes count
    /// lives on until the stream's end is seen on the wire (END_STREAM or
    /// RST_STREAM), so a successor can wait for its last bytes; if it sent
    /// nothing there is nothing to wait for.
    pub fn untrack_stream(&self, stream: u32, sent_anything: bool) {
        {
            let mut f = self.flow.lock().unwrap_or_else(|e| e.into_inner());
            f.stream_updates.remove(&stream);
            if !sent_anything {
                f.stream_written.remove(&stream);
            }
        }
        self.announce_written();
    }

    /// Wake whoever waits in `wait_stream_written`, after the `flow` update
    /// this announces. With no waiter, the usual case, this is one atomic
    /// load, not a wake-up of the channel's eight notify shards under their
    /// locks (2% of a worker under h2load). No waiter is missed: one
    /// subscribes before it looks at `flow` under its lock, so if it looked
    /// before this update, the lock orders its subscription before the count
    /// read here.
    fn announce_written(&self) {
        if self.data_written.receiver_count() > 0 {
            self.data_written.send_modify(|n| *n += 1);
        }
    }

    /// The stream ended on the wire: nothing more of it will be written.
    fn stream_ended(&self, stream: u32, reset: bool) {
        {
            let mut f = self.flow.lock().unwrap_or_else(|e| e.into_inner());
            let written = f.stream_written.remove(&stream).unwrap_or(0);
            let handed = f.stream_handed.remove(&stream).unwrap_or(0);
            f.stream_updates.remove(&stream);
            if reset {
                // h2 clears a reset stream's queue: what was handed but not
                // written never reached the peer.
                f.dropped += handed.saturating_sub(written);
            }
        }
        self.push_closed(stream);
    }

    /// Wait until `bytes` DATA bytes of `stream` are written, or the stream is
    /// no longer tracked (finished or reset: h2 drops a reset stream's queue).
    pub async fn wait_stream_written(&self, stream: u32, bytes: u64) {
        let mut rx = self.data_written.subscribe();
        loop {
            let done = {
                let f = self.flow.lock().unwrap_or_else(|e| e.into_inner());
                f.stream_written.get(&stream).is_none_or(|&w| w >= bytes)
            };
            if done || rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The send windows given `connection_sent` bytes handed to h2 in all and
    /// `stream_sent` on `stream`: (connection window, stream window).
    pub fn windows(&self, stream: u32, connection_sent: u64, stream_sent: u64) -> (i64, i64) {
        let f = self.flow.lock().unwrap_or_else(|e| e.into_inner());
        let connection = i64::from(DEFAULT_WINDOW) + f.connection_updates as i64 + f.dropped as i64
            - connection_sent as i64;
        let updates = f.stream_updates.get(&stream).copied().unwrap_or(0);
        let stream = i64::from(f.initial_window) + updates as i64 - stream_sent as i64;
        (connection, stream)
    }

    /// Record a promise: the pushed stream counts against the client's
    /// MAX_CONCURRENT_STREAMS until it closes on the wire.
    pub fn push_opened(&self, stream: u32) {
        self.open_pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream);
    }

    /// A pushed stream is closed (seen on the wire, or reset as h2 reported).
    pub fn push_closed(&self, stream: u32) {
        self.open_pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream);
    }

    /// Pushed streams promised and not yet closed.
    pub fn open_pushes(&self) -> usize {
        self.open_pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
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

/// PING and SETTINGS frames (not acks) a client may send in a burst, and
/// per second after it. Each costs an ack: past this, a client is flooding
/// (CVE-2019-9512, -9515), and its connection is closed. Browsers send a
/// handful per connection.
const CONTROL_BURST: f64 = 1000.0;
const CONTROL_PER_SECOND: f64 = 100.0;

/// A token bucket over the client's PING and SETTINGS frames.
#[derive(Debug)]
struct ControlBudget {
    tokens: f64,
    at: Instant,
}

impl ControlBudget {
    fn new() -> ControlBudget {
        ControlBudget {
            tokens: CONTROL_BURST,
            at: Instant::now(),
        }
    }

    /// Spend one token; false when there is none left.
    fn spend(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * CONTROL_PER_SECOND;
        self.tokens = (self.tokens + refill).min(CONTROL_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The tap's view of one direction: decode, update the peer state, trace.
struct FrameCursor {
    direction: Direction,
    decoder: FrameDecoder,
    control: ControlBudget,
}

impl FrameCursor {
    fn new(direction: Direction) -> FrameCursor {
        FrameCursor {
            direction,
            decoder: FrameDecoder::new(direction == Direction::Received),
            control: ControlBudget::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8], peer: &PeerState) {
        let direction = self.direction;
        let control = &mut self.control;
        self.decoder.feed(bytes, |frame| {
            let head = frame.head;
            if direction == Direction::Received
                && matches!(head.kind, frame_type::PING | frame_type::SETTINGS)
                && head.flags & FLAG_ACK == 0
                && !control.spend()
            {
                peer.flooded.store(true, Ordering::Release);
            }
            observe(direction, frame, peer)
        });
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
        (Direction::Sent, frame_type::DATA) => {
            if let Some(w) = peer
                .flow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stream_written
                .get_mut(&head.stream)
            {
                *w += head.len as u64;
            }
            if head.flags & FLAG_END_STREAM != 0 {
                peer.stream_ended(head.stream, false);
            }
            peer.announce_written();
        }
        (Direction::Sent, frame_type::HEADERS) if head.flags & FLAG_END_STREAM != 0 => {
            peer.stream_ended(head.stream, false);
            peer.announce_written();
        }
        (_, frame_type::RST_STREAM) => {
            // Sent: the stream is over. Received: h2 drops what it queued.
            // Either way nothing more of it reaches the wire.
            peer.stream_ended(head.stream, true);
            peer.announce_written();
        }
        (Direction::Received, frame_type::HEADERS) if head.stream % 2 == 1 => {
            // A client stream opens: count its WINDOW_UPDATEs from now on,
            // even before the scheduler registers its response.
            peer.flow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stream_updates
                .entry(head.stream)
                .or_insert(0);
        }
        (Direction::Received, frame_type::WINDOW_UPDATE) => {
            if let Some(b) = frame.prefix.get(0..4) {
                let increment =
                    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                {
                    let mut f = peer.flow.lock().unwrap_or_else(|e| e.into_inner());
                    if head.stream == 0 {
                        f.connection_updates += increment;
                    } else if let Some(total) = f.stream_updates.get_mut(&head.stream) {
                        *total += increment;
                    }
                }
                peer.flow_epoch.send_modify(|e| *e += 1);
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
                    SETTINGS_INITIAL_WINDOW_SIZE => {
                        peer.flow
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .initial_window = value;
                    }
                    _ => {}
                }
            }
            peer.flow_epoch.send_modify(|e| *e += 1);
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
            if this.peer.flooded() {
                // h2 sees the connection fail and drops it with everything
                // the flood queued; acking on would be the amplification.
                return Poll::Ready(Err(io::Error::other(
                    "PING/SETTINGS flood: connection closed",
                )));
            }
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
impl PeerState {
    /// As if the client had granted `amount` of window everywhere.
    pub(crate) fn test_grant_window(&self, amount: u64) {
        let mut f = self.flow.lock().unwrap();
        f.connection_updates += amount;
        f.initial_window = amount.min(i32::MAX as u64) as u32;
    }

    /// As if `n` DATA bytes of `stream` had been written.
    pub(crate) fn test_written(&self, stream: u32, n: u64) {
        if let Some(w) = self.flow.lock().unwrap().stream_written.get_mut(&stream) {
            *w += n;
        }
        self.announce_written();
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

    /// A waiter for a stream's bytes wakes when the wire carries them, and
    /// when the stream ends otherwise; with nobody waiting, writes still
    /// count.
    #[tokio::test]
    async fn waiters_for_written_bytes_wake_when_the_wire_has_them() {
        let peer = PeerState::new(1, false);
        let mut sent = FrameCursor::new(Direction::Sent);
        peer.track_stream(1);
        peer.track_stream(3);
        // Nobody waits: the write is counted all the same.
        sent.feed(&frame(frame_type::DATA, 0, 1, &[0u8; 100]), &peer);
        let five = std::time::Duration::from_secs(5);
        tokio::time::timeout(five, peer.wait_stream_written(1, 100))
            .await
            .expect("already written");

        let waiter = {
            let peer = peer.clone();
            tokio::spawn(async move { peer.wait_stream_written(1, 300).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "200 bytes still to come");
        sent.feed(&frame(frame_type::DATA, 0, 1, &[0u8; 200]), &peer);
        let woken = tokio::time::timeout(five, waiter).await;
        woken.expect("woken by the write").unwrap();

        let waiter = {
            let peer = peer.clone();
            tokio::spawn(async move { peer.wait_stream_written(3, 1000).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        sent.feed(&frame(frame_type::RST_STREAM, 0, 3, &[0, 0, 0, 8]), &peer);
        let woken = tokio::time::timeout(five, waiter).await;
        woken.expect("woken by the reset").unwrap();
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
