//! One HTTP/2 server connection as a state machine, without IO.
//!
//! The driver feeds it the bytes it reads (`recv`), takes the requests they
//! complete (`take_requests`), lets handlers answer through `respond`,
//! `informational` and `push`, and asks it to frame DATA (`fill`) into the
//! output buffer it then writes (`output`, `consumed`). Everything the
//! protocol owns lives here: stream states, both directions' flow control,
//! SETTINGS, HPACK, the abuse limits, and the order frames leave in.
//!
//! Invariants, each by construction rather than by waiting:
//! - Frames reach the output in the order they are made, and HPACK blocks
//!   are encoded in that same order.
//! - A PUSH_PROMISE is made only on a client stream that has not sent its
//!   final HEADERS, before them, and promised ids increase across the whole
//!   connection (one counter, one output).
//! - Nothing follows a stream's final HEADERS on that stream but its DATA.
//! - Promised and open pushes never exceed the client's
//!   MAX_CONCURRENT_STREAMS.
//! - DATA never exceeds either send window; what we accept never exceeds
//!   what we advertised.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};

use super::StreamMap;
use super::body::{Inbound, Payload, RecvBody, Source};
use super::frame::{
    self, DEFAULT_WINDOW, FrameHead, MAX_WINDOW, PREFACE, Reason, flag, frame_type, setting,
};
use super::hpack::{self, Name};
use super::sched::{Pick, Priority, Ready, Scheduler};

/// Our side of the connection: what we advertise and the limits we keep.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: client streams open at once.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on one stream
    /// before we read it.
    pub initial_window_size: u32,
    /// The connection-level receive window.
    pub connection_window_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE for frames we receive.
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the largest request header section.
    pub max_header_list_size: u32,
    /// Client resets of streams we had not answered yet, in a burst
    /// (refilled at the same number per second); past it, the connection
    /// is closed with ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    pub max_reset_burst: u32,
    /// Streams we may reset for the client's protocol errors before the
    /// connection is closed.
    pub max_local_error_resets: u32,
    /// DATA bytes framed ahead of the socket. Small, so the scheduler, not a
    /// queue, decides what leaves next.
    pub out_target: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent_streams: 128,
            initial_window_size: 256 * 1024,
            connection_window_size: 1024 * 1024,
            max_frame_size: frame::DEFAULT_MAX_FRAME as u32,
            max_header_list_size: 64 * 1024,
            max_reset_burst: 100,
            max_local_error_resets: 256,
            out_target: 16 * 1024,
        }
    }
}

/// PING and SETTINGS frames (not acks) a client may send in a burst, and
/// per second after it. Each costs an ack: past this, a client is flooding
/// (CVE-2019-9512, -9515). Browsers send a handful per connection.
const CONTROL_BURST: f64 = 1000.0;
const CONTROL_PER_SECOND: f64 = 100.0;

/// Empty DATA frames without END_STREAM: they cost work and carry nothing
/// (CVE-2019-9518).
const EMPTY_DATA_BURST: f64 = 100.0;

/// Most CONTINUATION frames one header block may take (a 64 KiB block needs
/// five at the default frame size); more is a flood (CVE-2024-27316).
const MAX_CONTINUATIONS: usize = 32;

/// The largest chunk framed per turn: one default-size DATA frame.
pub const QUANTUM: usize = 16 * 1024;

/// How much a body source is asked for at a time.
const SOURCE_CHUNK: usize = 64 * 1024;

/// Pending PRIORITY_UPDATEs for streams not yet open, at most.
const MAX_EARLY_PRIORITIES: usize = 128;

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    fn new(burst: f64, per_second: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            burst,
            per_second,
            at: now,
        }
    }

    /// Spend one token; false when there is none left.
    fn spend(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How a stream's sending ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte framed, END_STREAM set.
    Complete,
    /// The client reset it (for a push, usually CANCEL).
    Reset(Reason),
    /// Its body failed (a read error, a short upstream); we reset it.
    Failed(String),
    /// The connection ended first.
    Closed,
    /// The response could not be sent at all (the stream was gone).
    NotSent,
}

/// What a stream sent, reported once its sending has ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Body bytes framed.
    pub bytes: u64,
    pub outcome: Outcome,
}

/// Called once when a stream's sending ends. Runs on the connection's task
/// outside its lock; it must not block.
pub type Done = Box<dyn FnOnce(Finished) + Send>;

/// A request the client completed.
pub struct NewRequest {
    pub id: u32,
    pub parts: http::request::Parts,
    pub body: RecvBody,
}

/// Why a push was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The client sent SETTINGS_ENABLE_PUSH=0, or the connection is going away.
    Disabled,
    /// As many pushes are open as the client's MAX_CONCURRENT_STREAMS allows.
    Limit,
    /// The parent already sent its final HEADERS, or is gone.
    Parent,
    /// The connection's writes have not moved for longer than the caller's
    /// patience: the client is not reading.
    Stalled,
}

/// Why a call on a stream did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Reset, or the connection ended.
    Stream,
    /// Its final HEADERS were already sent.
    Answered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// No final HEADERS yet (1xx and promises may still go).
    Pending,
    /// Final HEADERS sent; DATA to come.
    Body,
}

/// What is left to send of a body.
struct Outgoing {
    /// Ready to frame.
    buf: Bytes,
    /// The chunk after it, read ahead so a source's latency (a file read on
    /// the blocking pool) overlaps the framing of the one before: a stream
    /// waiting on its source would lose its share to the others.
    next: Option<Bytes>,
    /// Where more comes from; `None` once it has all been read.
    source: Option<Box<dyn Source>>,
    /// Declared bytes not yet read from the source (`None`: unknown).
    unread: Option<u64>,
}

impl Outgoing {
    /// Everything has been read and framed.
    fn is_done(&self) -> bool {
        self.buf.is_empty() && self.next.is_none() && self.source.is_none()
    }
}

struct Stream {
    pushed: bool,
    /// The client may still send DATA or trailers on it.
    recv_open: bool,
    inbound: Option<Arc<Inbound>>,
    recv_window: i64,
    recv_unacked: i64,
    content_length: Option<u64>,
    received: u64,
    send: SendState,
    send_window: i64,
    out: Option<Outgoing>,
    sent: u64,
    done: Option<Done>,
    reset_waker: Option<Waker>,
    /// A PRIORITY_UPDATE that came before the stream was scheduled.
    priority: Option<Priority>,
    /// A pushed response's HEADERS, held back to go out with its first
    /// DATA: a push less urgent than its page does not put its head
    /// before the page's bytes (HPACK encodes it then, in wire order).
    head: Option<Box<(StatusCode, HeaderMap)>>,
}

impl Stream {
    fn new(pushed: bool, send_window: i64, recv_window: i64) -> Stream {
        Stream {
            pushed,
            recv_open: !pushed,
            inbound: None,
            recv_window,
            recv_unacked: 0,
            content_length: None,
            received: 0,
            send: SendState::Pending,
            send_window,
            out: None,
            sent: 0,
            done: None,
            reset_waker: None,
            priority: None,
            head: None,
        }
    }
}

/// A header block being assembled from HEADERS + CONTINUATION frames.
struct Partial {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
    frames: usize,
}

/// The client's settings.
#[derive(Debug, Clone, Copy)]
struct Peer {
    enable_push: bool,
    max_concurrent_streams: u32,
    initial_window: u32,
    max_frame: usize,
}

/// A connection error: GOAWAY with this code, then close.
#[derive(Debug, Clone)]
pub struct ConnError {
    pub reason: Reason,
    pub message: String,
    /// The client flooded PING/SETTINGS (the host counts and logs those).
    pub flood: bool,
}

impl ConnError {
    fn new(reason: Reason, message: impl Into<String>) -> ConnError {
        ConnError {
            reason,
            message: message.into(),
            flood: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Open,
    /// GOAWAY sent: streams up to this id are served, no new ones.
    Draining(u32),
    /// A connection error: GOAWAY sent, nothing more is read.
    Failed,
}

/// One HTTP/2 server connection.
pub struct Engine {
    cfg: Settings,
    phase: Phase,
    error: Option<ConnError>,
    preface_left: usize,
    got_settings: bool,
    peer: Peer,
    goaway_received: bool,
    dec: hpack::Decoder,
    enc: hpack::Encoder,
    streams: StreamMap<Stream>,
    max_client: u32,
    next_push: u32,
    client_open: usize,
    pushes_open: usize,
    inbound_streams: usize,
    /// Streams whose body comes from a `Source` (polled by `fill`).
    sources: usize,
    send_window: i64,
    recv_window: i64,
    recv_unacked: i64,
    out: Vec<u8>,
    /// Offsets in `out` where a write ends early: just past the last DATA
    /// frame of a stream that outranks what follows.
    boundaries: std::collections::VecDeque<usize>,
    /// Where the last stream to finish ended, and its rank.
    last_end: Option<(usize, (u8, bool))>,
    block: Vec<u8>,
    sched: Scheduler,
    partial: Option<Partial>,
    requests: Vec<NewRequest>,
    finished: Vec<(Done, Finished)>,
    early_priorities: StreamMap<Priority>,
    control: Bucket,
    resets: Bucket,
    empty_data: Bucket,
    local_resets: u32,
    /// Since when the output has waited for the socket without any of it
    /// being written.
    stalled_since: Option<Instant>,
    /// The driver's waker, and whether it is polling right now (then a
    /// handler's call needs no wake-up: the driver writes after it).
    pub(crate) waker: Option<Waker>,
    pub(crate) in_poll: bool,
}

impl Engine {
    /// A connection that has just been accepted; our SETTINGS are already
    /// in the output.
    pub fn new(cfg: Settings, now: Instant) -> Engine {
        let mut e = Engine {
            phase: Phase::Open,
            error: None,
            preface_left: PREFACE.len(),
            got_settings: false,
            peer: Peer {
                enable_push: true,
                max_concurrent_streams: u32::MAX,
                initial_window: DEFAULT_WINDOW,
                max_frame: frame::DEFAULT_MAX_FRAME,
            },
            goaway_received: false,
            dec: hpack::Decoder::new(),
            enc: hpack::Encoder::new(),
            streams: StreamMap::default(),
            max_client: 0,
            next_push: 2,
            client_open: 0,
            pushes_open: 0,
            inbound_streams: 0,
            sources: 0,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            out: Vec::with_capacity(4096),
            boundaries: std::collections::VecDeque::new(),
            last_end: None,
            block: Vec::with_capacity(512),
            sched: Scheduler::default(),
            partial: None,
            requests: Vec::new(),
            finished: Vec::new(),
            early_priorities: StreamMap::default(),
            control: Bucket::new(CONTROL_BURST, CONTROL_PER_SECOND, now),
            resets: Bucket::new(
                f64::from(cfg.max_reset_burst.max(1)),
                f64::from(cfg.max_reset_burst.max(1)),
                now,
            ),
            empty_data: Bucket::new(EMPTY_DATA_BURST, EMPTY_DATA_BURST, now),
            local_resets: 0,
            stalled_since: None,
            waker: None,
            in_poll: false,
            cfg,
        };
        let mut ours = vec![
            (
                setting::MAX_CONCURRENT_STREAMS,
                e.cfg.max_concurrent_streams,
            ),
            (setting::INITIAL_WINDOW_SIZE, e.cfg.initial_window_size),
            (setting::MAX_HEADER_LIST_SIZE, e.cfg.max_header_list_size),
            // RFC 9218 §2.1: we schedule by the priority header and
            // PRIORITY_UPDATE, not by RFC 7540's tree.
            (setting::NO_RFC7540_PRIORITIES, 1),
        ];
        if e.cfg.max_frame_size as usize != frame::DEFAULT_MAX_FRAME {
            ours.push((setting::MAX_FRAME_SIZE, e.cfg.max_frame_size));
        }
        frame::settings(&mut e.out, &ours);
        let extra = i64::from(e.cfg.connection_window_size) - i64::from(DEFAULT_WINDOW);
        if extra > 0 {
            frame::window_update(&mut e.out, 0, extra as u32);
            e.recv_window += extra;
        }
        e
    }

    // ---- state the driver reads ---------------------------------------

    /// The client's preface and first SETTINGS have arrived.
    pub fn handshake_done(&self) -> bool {
        self.got_settings
    }

    /// The connection error that ended it, if one did.
    pub fn error(&self) -> Option<&ConnError> {
        self.error.as_ref()
    }

    /// Nothing more will happen on this connection once the output is out.
    pub fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Failed => true,
            Phase::Draining(_) => self.streams.is_empty(),
            Phase::Open => self.goaway_received && self.streams.is_empty(),
        }
    }

    /// Whether more input may be read (not after a connection error).
    pub fn wants_input(&self) -> bool {
        self.phase != Phase::Failed
    }

    /// Whether the client allows pushes now.
    pub fn push_enabled(&self) -> bool {
        self.peer.enable_push && !self.goaway_received && self.phase == Phase::Open
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// What the next write should carry: the output up to the first place a
    /// stream's body ended, so that under TLS each response ends its own
    /// record. A record is decrypted only once it has all arrived: the
    /// page's last bytes must not wait in one record with the start of a
    /// font behind them (up to 16 KiB, 6.5 ms at 20 Mbit/s). The writes go
    /// to a buffer (`conn::flush`), so the socket still sees one write.
    pub fn next_write(&self) -> &[u8] {
        match self.boundaries.front() {
            Some(&end) => &self.out[..end],
            None => &self.out,
        }
    }

    /// `n` bytes of the output were written.
    pub fn consumed(&mut self, n: usize, now: Instant) {
        self.out.drain(..n);
        self.boundaries.retain_mut(|b| {
            *b = b.saturating_sub(n);
            *b > 0
        });
        // A stream that ended in what was written needs no boundary.
        self.last_end = self
            .last_end
            .and_then(|(at, rank)| at.checked_sub(n).filter(|&at| at > 0).map(|at| (at, rank)));
        // The clock restarts at every write that moved: a connection busy
        // with a long body keeps some output waiting all along (the engine
        // frames up to `out_target` ahead), and is slow, not stalled.
        self.stalled_since = if self.out.is_empty() {
            None
        } else if n > 0 {
            Some(now)
        } else {
            Some(self.stalled_since.unwrap_or(now))
        };
    }

    /// The socket refused more: the output waits from now.
    pub fn blocked(&mut self, now: Instant) {
        if !self.out.is_empty() && self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
    }

    pub fn take_requests(&mut self) -> Vec<NewRequest> {
        std::mem::take(&mut self.requests)
    }

    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    pub fn take_finished(&mut self) -> Vec<(Done, Finished)> {
        std::mem::take(&mut self.finished)
    }

    /// Graceful shutdown: GOAWAY now, serve what was asked, accept nothing new.
    pub fn shutdown(&mut self) {
        if self.phase == Phase::Open {
            frame::goaway(&mut self.out, self.max_client, Reason::NO_ERROR, b"");
            self.phase = Phase::Draining(self.max_client);
        }
    }

    /// The transport ended (EOF or an IO error): every stream is over.
    pub fn transport_closed(&mut self) {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.close_stream(id, Outcome::Closed);
        }
        if self.phase == Phase::Open {
            self.phase = Phase::Draining(self.max_client);
        }
    }

    // ---- input ---------------------------------------------------------

    /// Process every complete frame in `buf`, consuming it.
    pub fn recv(&mut self, buf: &mut BytesMut, now: Instant, waker: &Waker) {
        if self.phase == Phase::Failed {
            buf.clear();
            return;
        }
        if let Err(e) = self.recv_frames(buf, now, waker) {
            self.fail(e);
            buf.clear();
        }
    }

    fn recv_frames(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        waker: &Waker,
    ) -> Result<(), ConnError> {
        if self.preface_left > 0 {
            let have = buf.len().min(self.preface_left);
            let at = PREFACE.len() - self.preface_left;
            if buf[..have] != PREFACE[at..at + have] {
                return Err(ConnError::new(
                    Reason::PROTOCOL_ERROR,
                    "invalid connection preface",
                ));
            }
            buf.advance(have);
            self.preface_left -= have;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while buf.len() >= frame::HEADER_LEN {
            let head = FrameHead::parse(&buf[..frame::HEADER_LEN]);
            if head.len > self.cfg.max_frame_size as usize {
                return Err(ConnError::new(
                    Reason::FRAME_SIZE_ERROR,
                    format!("frame of {} bytes over SETTINGS_MAX_FRAME_SIZE", head.len),
                ));
            }
            if buf.len() < frame::HEADER_LEN + head.len {
                buf.reserve(frame::HEADER_LEN + head.len - buf.len());
                break;
            }
            if !self.got_settings
                && (head.kind != frame_type::SETTINGS || head.flags & flag::ACK != 0)
            {
                return Err(ConnError::new(
                    Reason::PROTOCOL_ERROR,
                    "the client's first frame is not SETTINGS",
                ));
            }
            let payload = &buf[frame::HEADER_LEN..frame::HEADER_LEN + head.len];
            let result = self.frame(head, payload, now, waker);
            buf.advance(frame::HEADER_LEN + head.len);
            result?;
            if self.phase == Phase::Failed {
                break;
            }
        }
        self.give_back_connection_window(false);
        Ok(())
    }

    fn frame(
        &mut self,
        head: FrameHead,
        p: &[u8],
        now: Instant,
        waker: &Waker,
    ) -> Result<(), ConnError> {
        if let Some(partial) = &self.partial
            && (head.kind != frame_type::CONTINUATION || head.stream != partial.stream)
        {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "a header block was interrupted by another frame",
            ));
        }
        match head.kind {
            frame_type::DATA => self.recv_data(head, p, now),
            frame_type::HEADERS => self.recv_headers(head, p, now, waker),
            frame_type::CONTINUATION => self.recv_continuation(head, p, now, waker),
            frame_type::PRIORITY => self.recv_priority(head, p),
            frame_type::RST_STREAM => self.recv_rst(head, p, now),
            frame_type::SETTINGS => self.recv_settings(head, p, now),
            frame_type::PUSH_PROMISE => Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "a client may not send PUSH_PROMISE",
            )),
            frame_type::PING => self.recv_ping(head, p, now),
            frame_type::GOAWAY => self.recv_goaway(head, p),
            frame_type::WINDOW_UPDATE => self.recv_window_update(head, p),
            frame_type::PRIORITY_UPDATE => self.recv_priority_update(head, p),
            // §4.1: unknown types are ignored.
            _ => Ok(()),
        }
    }

    /// Strip padding (§6.1): the payload without it, and the padding's size.
    fn unpad(head: FrameHead, p: &[u8]) -> Result<(&[u8], usize), ConnError> {
        if head.flags & flag::PADDED == 0 {
            return Ok((p, 0));
        }
        let Some((&pad, rest)) = p.split_first() else {
            return Err(ConnError::new(
                Reason::FRAME_SIZE_ERROR,
                "padded frame without a pad length",
            ));
        };
        let pad = usize::from(pad);
        if pad > rest.len() {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "padding longer than the frame",
            ));
        }
        Ok((&rest[..rest.len() - pad], pad + 1))
    }

    /// Whether `id` names a stream that was never opened.
    fn is_idle(&self, id: u32) -> bool {
        if id % 2 == 1 {
            id > self.max_client
        } else {
            id >= self.next_push
        }
    }

    fn recv_data(&mut self, head: FrameHead, p: &[u8], now: Instant) -> Result<(), ConnError> {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError::new(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = head.len as i64;
        if len > self.recv_window {
            return Err(ConnError::new(
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        self.recv_window -= len;
        let (data, padding) = Self::unpad(head, p)?;
        if self.is_idle(id) {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "DATA on an idle stream",
            ));
        }
        let end = head.flags & flag::END_STREAM != 0;
        if data.is_empty() && !end && !self.empty_data.spend(now) {
            return Err(ConnError::new(
                Reason::ENHANCE_YOUR_CALM,
                "too many empty DATA frames",
            ));
        }
        let Some(s) = self.streams.get_mut(&id) else {
            // Closed (by us, say): its window is given back, the data dropped.
            self.recv_unacked += len;
            return Ok(());
        };
        if !s.recv_open {
            self.recv_unacked += len;
            return self.stream_error(id, Reason::STREAM_CLOSED);
        }
        if len > s.recv_window {
            self.recv_unacked += len;
            return self.stream_error(id, Reason::FLOW_CONTROL_ERROR);
        }
        s.recv_window -= len;
        s.received += data.len() as u64;
        let over = s
            .content_length
            .is_some_and(|cl| s.received > cl || (end && s.received != cl));
        if over {
            self.recv_unacked += len;
            return self.stream_error(id, Reason::PROTOCOL_ERROR);
        }
        // Padding is never read by anyone: give it back at once.
        let mut give_back = padding as i64;
        let delivered = match &s.inbound {
            Some(inbound) => inbound.push(Bytes::copy_from_slice(data), end),
            None => false,
        };
        if !delivered {
            give_back += data.len() as i64;
        }
        s.recv_window += give_back;
        let mut answered = false;
        if end {
            s.recv_open = false;
            answered = s.send == SendState::Body && s.out.is_none();
        }
        self.recv_unacked += give_back;
        if answered {
            self.close_stream(id, Outcome::Complete);
        }
        Ok(())
    }

    fn recv_headers(
        &mut self,
        head: FrameHead,
        p: &[u8],
        now: Instant,
        waker: &Waker,
    ) -> Result<(), ConnError> {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "HEADERS on stream 0",
            ));
        }
        let (mut fragment, _) = Self::unpad(head, p)?;
        let mut self_dependent = false;
        if head.flags & flag::PRIORITY != 0 {
            if fragment.len() < 5 {
                return Err(ConnError::new(
                    Reason::FRAME_SIZE_ERROR,
                    "HEADERS too short for its priority",
                ));
            }
            let dep = u32::from_be_bytes([fragment[0], fragment[1], fragment[2], fragment[3]])
                & 0x7fff_ffff;
            self_dependent = dep == id;
            fragment = &fragment[5..];
        }
        let end_stream = head.flags & flag::END_STREAM != 0;
        if head.flags & flag::END_HEADERS == 0 {
            if fragment.len() > self.block_cap() {
                return Err(ConnError::new(
                    Reason::ENHANCE_YOUR_CALM,
                    "header block too large",
                ));
            }
            self.partial = Some(Partial {
                stream: id,
                end_stream,
                block: fragment.to_vec(),
                frames: 1,
            });
            return Ok(());
        }
        self.headers_complete(id, end_stream, fragment, self_dependent, now, waker)
    }

    /// The most header block bytes buffered across CONTINUATION frames.
    fn block_cap(&self) -> usize {
        (self.cfg.max_header_list_size as usize).max(frame::DEFAULT_MAX_FRAME)
    }

    fn recv_continuation(
        &mut self,
        head: FrameHead,
        p: &[u8],
        now: Instant,
        waker: &Waker,
    ) -> Result<(), ConnError> {
        let cap = self.block_cap();
        let Some(partial) = self.partial.as_mut() else {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION without a header block",
            ));
        };
        partial.frames += 1;
        if partial.block.len() + p.len() > cap || partial.frames > MAX_CONTINUATIONS {
            return Err(ConnError::new(
                Reason::ENHANCE_YOUR_CALM,
                "header block too large",
            ));
        }
        partial.block.extend_from_slice(p);
        if head.flags & flag::END_HEADERS == 0 {
            return Ok(());
        }
        let partial = self.partial.take().expect("checked above");
        self.headers_complete(
            partial.stream,
            partial.end_stream,
            &partial.block,
            false,
            now,
            waker,
        )
    }

    fn headers_complete(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
        self_dependent: bool,
        now: Instant,
        waker: &Waker,
    ) -> Result<(), ConnError> {
        if id.is_multiple_of(2) {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "HEADERS on a server stream",
            ));
        }
        let max_list = self.cfg.max_header_list_size as usize;
        let mut fields = Fields::default();
        let decoded = self
            .dec
            .decode(block, max_list, |name, value| fields.add(name, value));
        let too_large = match decoded {
            Ok(()) => false,
            Err(hpack::Error::TooLarge) => true,
            Err(e) => return Err(ConnError::new(Reason::COMPRESSION_ERROR, e.to_string())),
        };
        if id <= self.max_client {
            return self.trailers(id, end_stream, fields);
        }
        self.max_client = id;
        let _ = now;
        if let Phase::Draining(_) = self.phase {
            // After our GOAWAY: not processed; the client may retry elsewhere.
            return Ok(());
        }
        if self.client_open >= self.cfg.max_concurrent_streams as usize {
            frame::rst_stream(&mut self.out, id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        if too_large {
            self.respond_plain(id, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, !end_stream);
            return Ok(());
        }
        if self_dependent {
            frame::rst_stream(&mut self.out, id, Reason::PROTOCOL_ERROR);
            return self.count_local_reset();
        }
        let (parts, content_length) = match fields.into_request() {
            Ok(r) => r,
            Err(why) => {
                tracing::debug!(stream = id, "malformed request: {why}");
                frame::rst_stream(&mut self.out, id, Reason::PROTOCOL_ERROR);
                return self.count_local_reset();
            }
        };
        if end_stream && content_length.is_some_and(|n| n > 0) {
            frame::rst_stream(&mut self.out, id, Reason::PROTOCOL_ERROR);
            return self.count_local_reset();
        }
        let mut s = Stream::new(
            false,
            i64::from(self.peer.initial_window),
            i64::from(self.cfg.initial_window_size),
        );
        s.recv_open = !end_stream;
        s.content_length = content_length;
        s.priority = self.early_priorities.remove(&id);
        let body = if end_stream {
            RecvBody::empty()
        } else {
            let inbound = Inbound::new(waker.clone());
            s.inbound = Some(inbound.clone());
            self.inbound_streams += 1;
            RecvBody::new(Some(inbound))
        };
        self.streams.insert(id, s);
        self.client_open += 1;
        self.requests.push(NewRequest { id, parts, body });
        Ok(())
    }

    fn trailers(&mut self, id: u32, end_stream: bool, fields: Fields) -> Result<(), ConnError> {
        let Some(s) = self.streams.get_mut(&id) else {
            // A closed stream: the block was decoded for HPACK's sake only.
            return Ok(());
        };
        if !s.recv_open || !end_stream || fields.has_pseudo || fields.error.is_some() {
            return self.stream_error(id, Reason::PROTOCOL_ERROR);
        }
        s.recv_open = false;
        if let Some(inbound) = &s.inbound {
            inbound.trailers(fields.headers);
        }
        if s.send == SendState::Body && s.out.is_none() {
            self.close_stream(id, Outcome::Complete);
        }
        Ok(())
    }

    fn recv_priority(&mut self, head: FrameHead, p: &[u8]) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "PRIORITY on stream 0",
            ));
        }
        if p.len() != 5 {
            return self.stream_error(head.stream, Reason::FRAME_SIZE_ERROR);
        }
        let dep = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
        if dep == head.stream {
            return self.stream_error(head.stream, Reason::PROTOCOL_ERROR);
        }
        // RFC 7540 priorities are deprecated (we said so in SETTINGS).
        Ok(())
    }

    fn recv_rst(&mut self, head: FrameHead, p: &[u8], now: Instant) -> Result<(), ConnError> {
        if p.len() != 4 {
            return Err(ConnError::new(
                Reason::FRAME_SIZE_ERROR,
                "RST_STREAM of the wrong size",
            ));
        }
        let id = head.stream;
        if id == 0 || self.is_idle(id) {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "RST_STREAM on an idle stream",
            ));
        }
        let reason = Reason(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
        let Some(s) = self.streams.get(&id) else {
            return Ok(());
        };
        if !s.pushed && s.send == SendState::Pending && !self.resets.spend(now) {
            return Err(ConnError::new(
                Reason::ENHANCE_YOUR_CALM,
                "too many streams reset before they were answered",
            ));
        }
        if let Some(inbound) = &s.inbound {
            inbound.reset(reason);
        }
        self.close_stream(id, Outcome::Reset(reason));
        Ok(())
    }

    fn recv_settings(&mut self, head: FrameHead, p: &[u8], now: Instant) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "SETTINGS on a stream",
            ));
        }
        if head.flags & flag::ACK != 0 {
            if !p.is_empty() {
                return Err(ConnError::new(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS ack with a payload",
                ));
            }
            return Ok(());
        }
        if !p.len().is_multiple_of(6) {
            return Err(ConnError::new(
                Reason::FRAME_SIZE_ERROR,
                "SETTINGS of the wrong size",
            ));
        }
        if !self.control.spend(now) {
            return Err(flood());
        }
        self.got_settings = true;
        let mut window_changed = false;
        for entry in p.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match id {
                setting::HEADER_TABLE_SIZE => self.enc.set_peer_limit(value as usize),
                setting::ENABLE_PUSH => match value {
                    0 => self.peer.enable_push = false,
                    1 => self.peer.enable_push = true,
                    _ => {
                        return Err(ConnError::new(
                            Reason::PROTOCOL_ERROR,
                            "ENABLE_PUSH not 0 or 1",
                        ));
                    }
                },
                setting::MAX_CONCURRENT_STREAMS => self.peer.max_concurrent_streams = value,
                setting::INITIAL_WINDOW_SIZE => {
                    if i64::from(value) > MAX_WINDOW {
                        return Err(ConnError::new(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    let delta = i64::from(value) - i64::from(self.peer.initial_window);
                    self.peer.initial_window = value;
                    window_changed = true;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(ConnError::new(
                                Reason::FLOW_CONTROL_ERROR,
                                "a stream window past 2^31-1",
                            ));
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..=0xff_ffff).contains(&value) {
                        return Err(ConnError::new(
                            Reason::PROTOCOL_ERROR,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer.max_frame = value as usize;
                }
                // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored.
                _ => {}
            }
        }
        if window_changed {
            // A held head waits for its stream's DATA; with the window shut
            // it would wait on a client that may wait for it.
            let shut: Vec<u32> = self
                .streams
                .iter()
                .filter(|(_, s)| s.send_window <= 0 && s.head.is_some())
                .map(|(&id, _)| id)
                .collect();
            for id in shut {
                self.flush_head(id);
            }
        }
        frame::settings_ack(&mut self.out);
        Ok(())
    }

    fn recv_ping(&mut self, head: FrameHead, p: &[u8], now: Instant) -> Result<(), ConnError> {
        if p.len() != 8 {
            return Err(ConnError::new(
                Reason::FRAME_SIZE_ERROR,
                "PING of the wrong size",
            ));
        }
        if head.stream != 0 {
            return Err(ConnError::new(Reason::PROTOCOL_ERROR, "PING on a stream"));
        }
        if head.flags & flag::ACK != 0 {
            return Ok(());
        }
        if !self.control.spend(now) {
            return Err(flood());
        }
        frame::ping_ack(&mut self.out, p);
        Ok(())
    }

    fn recv_goaway(&mut self, head: FrameHead, p: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError::new(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
        }
        if p.len() < 8 {
            return Err(ConnError::new(Reason::FRAME_SIZE_ERROR, "GOAWAY too short"));
        }
        let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
        let code = Reason(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        tracing::debug!(last_stream = last, error = %code, "client sent GOAWAY");
        self.goaway_received = true;
        // Pushes past what the client says it processed will not be read.
        let unread: Vec<u32> = self
            .streams
            .iter()
            .filter(|(id, s)| s.pushed && **id > last)
            .map(|(id, _)| *id)
            .collect();
        for id in unread {
            self.close_stream(id, Outcome::Reset(Reason::REFUSED_STREAM));
        }
        Ok(())
    }

    fn recv_window_update(&mut self, head: FrameHead, p: &[u8]) -> Result<(), ConnError> {
        if p.len() != 4 {
            return Err(ConnError::new(
                Reason::FRAME_SIZE_ERROR,
                "WINDOW_UPDATE of the wrong size",
            ));
        }
        let increment = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
        let id = head.stream;
        if id == 0 {
            if increment == 0 {
                return Err(ConnError::new(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.send_window += increment;
            if self.send_window > MAX_WINDOW {
                return Err(ConnError::new(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window past 2^31-1",
                ));
            }
            return Ok(());
        }
        if self.is_idle(id) {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if increment == 0 {
            return self.stream_error(id, Reason::PROTOCOL_ERROR);
        }
        s.send_window += increment;
        if s.send_window > MAX_WINDOW {
            return self.stream_error(id, Reason::FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    fn recv_priority_update(&mut self, head: FrameHead, p: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "PRIORITY_UPDATE on a stream",
            ));
        }
        if p.len() < 4 {
            return Err(ConnError::new(
                Reason::FRAME_SIZE_ERROR,
                "PRIORITY_UPDATE too short",
            ));
        }
        let id = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
        if id == 0 {
            return Err(ConnError::new(
                Reason::PROTOCOL_ERROR,
                "PRIORITY_UPDATE for stream 0",
            ));
        }
        let Ok(text) = std::str::from_utf8(&p[4..]) else {
            return Ok(());
        };
        if let Some(current) = self.sched.priority(id) {
            self.sched.reprioritize(id, Priority::parse(text, current));
        } else if let Some(s) = self.streams.get_mut(&id) {
            s.priority = Some(Priority::parse(text, s.priority.unwrap_or_default()));
        } else if id % 2 == 1
            && id > self.max_client
            && self.early_priorities.len() < MAX_EARLY_PRIORITIES
        {
            self.early_priorities
                .insert(id, Priority::parse(text, Priority::default()));
        }
        Ok(())
    }

    /// A stream error (§5.4.2): reset it, count it against the client.
    fn stream_error(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
        frame::rst_stream(&mut self.out, id, reason);
        if let Some(s) = self.streams.get(&id)
            && let Some(inbound) = &s.inbound
        {
            inbound.reset(reason);
        }
        if self.streams.contains_key(&id) {
            self.close_stream(id, Outcome::Reset(reason));
        }
        self.count_local_reset()
    }

    fn count_local_reset(&mut self) -> Result<(), ConnError> {
        self.local_resets += 1;
        if self.local_resets > self.cfg.max_local_error_resets {
            return Err(ConnError::new(
                Reason::ENHANCE_YOUR_CALM,
                "too many stream errors",
            ));
        }
        Ok(())
    }

    /// A connection error: GOAWAY, and every stream is over.
    fn fail(&mut self, e: ConnError) {
        if self.phase == Phase::Failed {
            return;
        }
        frame::goaway(
            &mut self.out,
            self.max_client,
            e.reason,
            e.message.as_bytes(),
        );
        self.phase = Phase::Failed;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.close_stream(id, Outcome::Closed);
        }
        self.partial = None;
        self.error = Some(e);
    }

    /// Give back receive window the client's data no longer holds. Batched:
    /// an update once half the window is owed (`now`: whatever is owed).
    fn give_back_connection_window(&mut self, now: bool) {
        let threshold = i64::from(self.cfg.connection_window_size) / 2;
        if self.recv_unacked > 0 && (now || self.recv_unacked >= threshold) {
            frame::window_update(&mut self.out, 0, self.recv_unacked as u32);
            self.recv_window += self.recv_unacked;
            self.recv_unacked = 0;
        }
    }

    /// Window freed by the readers of request bodies.
    pub fn collect_released(&mut self) {
        if self.inbound_streams == 0 {
            return;
        }
        let threshold = i64::from(self.cfg.initial_window_size) / 2;
        let mut updates = Vec::new();
        for (&id, s) in self.streams.iter_mut() {
            let Some(inbound) = &s.inbound else { continue };
            let (released, dropped) = inbound.take_released();
            let released = released as i64;
            self.recv_unacked += released;
            if dropped {
                // Nobody reads the rest: let it come, and drop it.
                s.inbound = None;
                self.inbound_streams -= 1;
                continue;
            }
            s.recv_unacked += released;
            if s.recv_open && s.recv_unacked >= threshold {
                updates.push((id, s.recv_unacked));
                s.recv_window += s.recv_unacked;
                s.recv_unacked = 0;
            }
        }
        for (id, n) in updates {
            frame::window_update(&mut self.out, id, n as u32);
        }
        self.give_back_connection_window(false);
    }

    // ---- answering (called by handlers) --------------------------------

    /// Place a page's response in the scheduler before its pushes, so a
    /// push of the same urgency that is not incremental follows the page.
    pub fn schedule(&mut self, id: u32, prio: Priority, now: Instant) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        let prio = s.priority.unwrap_or(prio);
        if !self.sched.contains(id) {
            self.sched.register(id, prio, now);
        }
    }

    /// The page will not have a body for a while (an upstream computes).
    pub fn idle(&mut self, id: u32, now: Instant) {
        self.sched.idle(id, now);
    }

    /// Whether the stream is still there (not reset, not done).
    pub fn is_open(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Wait for the client to reset the stream (Ready at once if it is gone).
    pub fn poll_reset(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Reason> {
        match self.streams.get_mut(&id) {
            None => Poll::Ready(Reason::CANCEL),
            Some(s) => {
                s.reset_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// A 1xx response (103 Early Hints), before the final one.
    pub fn informational<'a>(
        &mut self,
        id: u32,
        status: StatusCode,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    ) -> Result<(), Gone> {
        debug_assert!(status.is_informational());
        self.write_1xx(id, |enc, block| {
            enc.response(status.as_u16(), headers, block)
        })
    }

    /// A `103 Early Hints` with one `Link` field (most often the same block
    /// as the connection's last 103: see [`hpack::Encoder::early_hints`]).
    pub fn early_hints(&mut self, id: u32, links: &HeaderValue) -> Result<(), Gone> {
        unanswered(&self.streams, id)?;
        self.write_early_hints(id, links);
        Ok(())
    }

    /// [`early_hints`](Self::early_hints) for a stream known unanswered.
    /// Inlined: the block sent last time goes out as it is (most often an
    /// index or two, framed and copied as one fixed-size array), with no
    /// call to save and restore registers around it.
    #[inline]
    fn write_early_hints(&mut self, id: u32, links: &HeaderValue) {
        if let Some((short, len)) = self.enc.early_short_block(links) {
            let mut frame = [0; 9 + hpack::SHORT_BLOCK];
            frame::head_into(
                &mut frame,
                len,
                frame_type::HEADERS,
                frame::flag::END_HEADERS,
                id,
            );
            frame[9..].copy_from_slice(short);
            let start = self.out.len();
            self.out.extend_from_slice(&frame);
            self.out.truncate(start + 9 + len);
            return;
        }
        self.write_early_hints_block(id, links);
    }

    /// [`write_early_hints`](Self::write_early_hints) of a block that is
    /// not a short one sent last time.
    #[inline(never)]
    fn write_early_hints_block(&mut self, id: u32, links: &HeaderValue) {
        if let Some(block) = self.enc.early_block(links)
            && block.len() <= self.peer.max_frame
        {
            let flags = frame::flag::END_HEADERS;
            frame::head(&mut self.out, block.len(), frame_type::HEADERS, flags, id);
            self.out.extend_from_slice(block);
            return;
        }
        self.block.clear();
        self.enc.early_hints(links, &mut self.block);
        self.write_1xx_block(id);
    }

    fn write_1xx(
        &mut self,
        id: u32,
        encode: impl FnOnce(&mut hpack::Encoder, &mut Vec<u8>),
    ) -> Result<(), Gone> {
        unanswered(&self.streams, id)?;
        self.block.clear();
        encode(&mut self.enc, &mut self.block);
        self.write_1xx_block(id);
        Ok(())
    }

    /// The 1xx header block in `self.block`, framed into the output.
    fn write_1xx_block(&mut self, id: u32) {
        frame::header_block(
            &mut self.out,
            frame_type::HEADERS,
            id,
            false,
            &[],
            &self.block,
            self.peer.max_frame,
        );
    }

    /// The final response: HEADERS now, the body as the scheduler allows.
    pub fn respond<'a>(
        &mut self,
        id: u32,
        status: StatusCode,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        payload: Payload,
        done: Option<Done>,
        now: Instant,
    ) -> Result<(), Gone> {
        self.respond_after_103(id, None, status, headers, payload, done, now)
    }

    /// [`respond`](Self::respond), after a `103` of `links` when given: one
    /// look at the stream for both (a stream that cannot take the response
    /// gets neither).
    #[allow(clippy::too_many_arguments)]
    pub fn respond_after_103<'a>(
        &mut self,
        id: u32,
        links: Option<&HeaderValue>,
        status: StatusCode,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        payload: Payload,
        done: Option<Done>,
        now: Instant,
    ) -> Result<(), Gone> {
        if let Err(why) = unanswered(&self.streams, id) {
            if let Some(done) = done {
                self.finished.push((
                    done,
                    Finished {
                        bytes: 0,
                        outcome: Outcome::NotSent,
                    },
                ));
            }
            return Err(why);
        }
        if let Some(links) = links {
            self.write_early_hints(id, links);
        }
        self.headers_and_body(id, status, headers, payload, done, false, now);
        Ok(())
    }

    /// HEADERS for `id` (a response, or a pushed stream's), then its body.
    #[allow(clippy::too_many_arguments)]
    fn headers_and_body<'a>(
        &mut self,
        id: u32,
        status: StatusCode,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        payload: Payload,
        done: Option<Done>,
        pushed: bool,
        now: Instant,
    ) {
        let end = payload.is_empty();
        // Held only while the stream has window for its DATA: HEADERS are
        // not flow-controlled, and a client may open a stream's window
        // only once it has seen its response.
        let window_open = || self.streams.get(&id).is_some_and(|s| s.send_window > 0);
        if !end && pushed && window_open() {
            let head: HeaderMap = headers
                .into_iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            let s = self.streams.get_mut(&id).expect("the caller checked");
            s.head = Some(Box::new((status, head)));
        } else {
            let max = self.peer.max_frame;
            let (enc, block, out) = (&mut self.enc, &mut self.block, &mut self.out);
            write_head(enc, block, out, max, id, status, headers, end);
        }
        let s = self.streams.get_mut(&id).expect("the caller checked");
        s.send = SendState::Body;
        s.done = done;
        if end {
            if !pushed && s.recv_open {
                // §8.1: answered before the request ended; stop its upload.
                frame::rst_stream(&mut self.out, id, Reason::NO_ERROR);
            }
            self.close_stream(id, Outcome::Complete);
            return;
        }
        s.out = Some(match payload {
            Payload::Bytes(b) => Outgoing {
                buf: b,
                next: None,
                source: None,
                unread: Some(0),
            },
            Payload::Stream { source, len } => {
                self.sources += 1;
                Outgoing {
                    buf: Bytes::new(),
                    next: None,
                    source: Some(source),
                    unread: len,
                }
            }
            Payload::Empty => unreachable!("empty payloads end above"),
        });
        let prio = s.priority.unwrap_or_default();
        if self.sched.contains(id) {
            self.sched.arm(id, now);
        } else {
            self.sched.register(id, prio, now);
        }
    }

    /// Promise `path` on the page `parent` and queue its response: the
    /// PUSH_PROMISE now, the pushed HEADERS and body when the scheduler
    /// picks it at `prio` (a push without a body answers at once).
    /// `patience`: refuse if no write has moved for that long while output
    /// waited (the client is not reading).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        parent: u32,
        promise: PushRequest<'_>,
        status: StatusCode,
        headers: &HeaderMap,
        payload: Payload,
        prio: Priority,
        done: Option<Done>,
        patience: std::time::Duration,
        now: Instant,
    ) -> Result<u32, PushError> {
        match self.streams.get(&parent) {
            Some(s) if !s.pushed && s.send == SendState::Pending => {}
            _ => return Err(PushError::Parent),
        }
        if !self.push_enabled() || self.next_push > MAX_WINDOW as u32 - 1 {
            return Err(PushError::Disabled);
        }
        if self
            .stalled_since
            .is_some_and(|t| now.duration_since(t) >= patience)
        {
            return Err(PushError::Stalled);
        }
        if self.pushes_open >= self.peer.max_concurrent_streams as usize {
            return Err(PushError::Limit);
        }
        let id = self.next_push;
        self.next_push += 2;
        self.block.clear();
        self.enc.push_request(
            promise.scheme,
            promise.authority,
            promise.path,
            promise.headers,
            &mut self.block,
        );
        frame::header_block(
            &mut self.out,
            frame_type::PUSH_PROMISE,
            parent,
            false,
            &id.to_be_bytes(),
            &self.block,
            self.peer.max_frame,
        );
        let s = Stream::new(true, i64::from(self.peer.initial_window), 0);
        self.streams.insert(id, s);
        self.pushes_open += 1;
        if !payload.is_empty() {
            self.sched.register(id, prio, now);
        }
        self.headers_and_body(id, status, headers, payload, done, true, now);
        Ok(id)
    }

    /// The handler gave up on a stream it never answered.
    pub fn cancel(&mut self, id: u32) {
        if let Some(s) = self.streams.get(&id)
            && s.send == SendState::Pending
        {
            frame::rst_stream(&mut self.out, id, Reason::INTERNAL_ERROR);
            if let Some(inbound) = &s.inbound {
                inbound.reset(Reason::INTERNAL_ERROR);
            }
            self.close_stream(id, Outcome::Failed("not answered".into()));
        }
    }

    /// A response of our own, with a one-line body (431 and the like).
    fn respond_plain(&mut self, id: u32, status: StatusCode, stop_upload: bool) {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        self.block.clear();
        self.enc
            .response(status.as_u16(), &headers, &mut self.block);
        frame::header_block(
            &mut self.out,
            frame_type::HEADERS,
            id,
            true,
            &[],
            &self.block,
            self.peer.max_frame,
        );
        if stop_upload {
            frame::rst_stream(&mut self.out, id, Reason::NO_ERROR);
        }
    }

    /// Forget a stream; report how its sending ended.
    fn close_stream(&mut self, id: u32, outcome: Outcome) {
        let Some(mut s) = self.streams.remove(&id) else {
            return;
        };
        self.sched.remove(id);
        if s.out.as_ref().is_some_and(|o| o.source.is_some()) {
            self.sources -= 1;
        }
        if s.pushed {
            self.pushes_open -= 1;
        } else {
            self.client_open -= 1;
        }
        if let Some(inbound) = s.inbound.take() {
            self.inbound_streams -= 1;
            // A reader still waiting learns the body will not continue (a
            // complete response stops the upload with NO_ERROR).
            inbound.reset(if outcome == Outcome::Complete {
                Reason::NO_ERROR
            } else {
                Reason::CANCEL
            });
            let (released, _) = inbound.take_released();
            self.recv_unacked += released as i64;
        }
        if let Some(w) = s.reset_waker.take() {
            w.wake();
        }
        if let Some(done) = s.done.take() {
            self.finished.push((
                done,
                Finished {
                    bytes: s.sent,
                    outcome,
                },
            ));
        }
    }

    // ---- output --------------------------------------------------------

    /// Frame DATA while the output is under its target; returns when the
    /// scheduler wants to be asked again if nothing else happens first.
    pub fn fill(&mut self, cx: &mut Context<'_>, now: Instant) -> Option<Instant> {
        if self.sched.is_empty() {
            return None;
        }
        if self.sources > 0 {
            self.poll_sources(cx, None);
        }
        let max_frame = self.peer.max_frame.min(QUANTUM);
        while self.out.len() < self.cfg.out_target {
            let streams = &self.streams;
            let pick = self
                .sched
                .pick(now, self.send_window, |id| ready(streams.get(&id)));
            match pick {
                Pick::Send(id) => {
                    self.frame_data(id, max_frame);
                    self.poll_sources(cx, Some(id));
                }
                Pick::WaitUntil(t) => return Some(t),
                Pick::Nothing => break,
            }
        }
        None
    }

    fn frame_data(&mut self, id: u32, max_frame: usize) {
        // A stream that ended just before, and outranks this one: its last
        // record ends there, so its end is not held back by our bytes. (Among
        // equals, pages answered in a row, a record each would cost more
        // than it saves.)
        if let Some((at, rank)) = self.last_end.take()
            && at > 0
            && let Some(s) = self.streams.get(&id)
            && rank < self.rank(id, s.pushed)
            && self.boundaries.back() != Some(&at)
        {
            self.boundaries.push_back(at);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(o) = s.out.as_mut() else { return };
        let n = o
            .buf
            .len()
            .min(max_frame)
            .min(self.send_window.max(0) as usize)
            .min(s.send_window.max(0) as usize);
        if n == 0 {
            return;
        }
        if let Some(head) = s.head.take() {
            let max = self.peer.max_frame;
            let (enc, block, out) = (&mut self.enc, &mut self.block, &mut self.out);
            write_head(enc, block, out, max, id, head.0, &head.1, false);
        }
        let chunk = o.buf.split_to(n);
        if o.buf.is_empty()
            && let Some(next) = o.next.take()
        {
            o.buf = next;
        }
        let end = o.is_done();
        frame::head(
            &mut self.out,
            n,
            frame_type::DATA,
            if end { flag::END_STREAM } else { 0 },
            id,
        );
        self.out.extend_from_slice(&chunk);
        self.send_window -= n as i64;
        s.send_window -= n as i64;
        s.sent += n as u64;
        self.sched.sent(id, n);
        if end {
            s.out = None;
            self.body_sent(id);
        }
    }

    /// Write `id`'s held-back HEADERS, if it has any (see `Stream::head`).
    fn flush_head(&mut self, id: u32) {
        if let Some(head) = self.streams.get_mut(&id).and_then(|s| s.head.take()) {
            let max = self.peer.max_frame;
            let (enc, block, out) = (&mut self.enc, &mut self.block, &mut self.out);
            write_head(enc, block, out, max, id, head.0, &head.1, false);
        }
    }

    /// How a stream ranks for record boundaries: urgency, then a page before
    /// a push of the same urgency.
    fn rank(&self, id: u32, pushed: bool) -> (u8, bool) {
        let urgency = self.sched.priority(id).map_or(3, |p| p.urgency);
        (urgency, pushed)
    }

    /// The last DATA of `id` is framed.
    fn body_sent(&mut self, id: u32) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        self.last_end = Some((self.out.len(), self.rank(id, s.pushed)));
        if !s.pushed && s.recv_open {
            frame::rst_stream(&mut self.out, id, Reason::NO_ERROR);
        }
        self.close_stream(id, Outcome::Complete);
    }

    /// Ask body sources for their next chunks, keeping one framed and one
    /// read ahead (all streams, or only `only`).
    fn poll_sources(&mut self, cx: &mut Context<'_>, only: Option<u32>) {
        let mut ends: Vec<(u32, Result<(), String>)> = Vec::new();
        let mut drained = 0usize;
        let mut visit = |id: u32, s: &mut Stream| {
            let Some(o) = s.out.as_mut() else { return };
            while o.next.is_none() {
                let Some(source) = o.source.as_mut() else {
                    return;
                };
                match source.poll_chunk(cx, SOURCE_CHUNK) {
                    Poll::Pending => return,
                    Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                    Poll::Ready(Some(Ok(chunk))) => {
                        if let Some(unread) = o.unread.as_mut() {
                            if chunk.len() as u64 > *unread {
                                ends.push((id, Err("body longer than its content-length".into())));
                                return;
                            }
                            *unread -= chunk.len() as u64;
                            if *unread == 0 {
                                o.source = None;
                                drained += 1;
                            }
                        }
                        if o.buf.is_empty() {
                            o.buf = chunk;
                        } else {
                            o.next = Some(chunk);
                        }
                    }
                    Poll::Ready(None) => {
                        if o.unread.is_some_and(|u| u > 0) {
                            ends.push((id, Err("body ended before its content-length".into())));
                            return;
                        }
                        o.source = None;
                        drained += 1;
                        if o.is_done() {
                            // Nothing left to carry the END_STREAM flag.
                            ends.push((id, Ok(())));
                        }
                        return;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        ends.push((id, Err(e.to_string())));
                        return;
                    }
                }
            }
        };
        match only {
            Some(id) => {
                if let Some(s) = self.streams.get_mut(&id) {
                    visit(id, s);
                }
            }
            None => {
                for (&id, s) in self.streams.iter_mut() {
                    visit(id, s);
                }
            }
        }
        self.sources -= drained;
        for (id, result) in ends {
            match result {
                Ok(()) => {
                    // A push whose body turned out empty: its HEADERS first.
                    self.flush_head(id);
                    frame::head(&mut self.out, 0, frame_type::DATA, flag::END_STREAM, id);
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.out = None;
                    }
                    self.body_sent(id);
                }
                Err(why) => {
                    tracing::debug!(stream = id, "response body failed: {why}");
                    frame::rst_stream(&mut self.out, id, Reason::INTERNAL_ERROR);
                    self.close_stream(id, Outcome::Failed(why));
                }
            }
        }
    }
}

/// Whether `id` is a stream still waiting for its response.
fn unanswered(streams: &StreamMap<Stream>, id: u32) -> Result<(), Gone> {
    match streams.get(&id) {
        None => Err(Gone::Stream),
        Some(s) if s.send != SendState::Pending => Err(Gone::Answered),
        Some(_) => Ok(()),
    }
}

/// A response's HEADERS, encoded as they go on the wire (HPACK state is
/// order-sensitive). Takes the engine's fields apart so a stream can stay
/// borrowed meanwhile.
#[allow(clippy::too_many_arguments)]
fn write_head<'a>(
    enc: &mut hpack::Encoder,
    block: &mut Vec<u8>,
    out: &mut Vec<u8>,
    max_frame: usize,
    id: u32,
    status: StatusCode,
    fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    end: bool,
) {
    block.clear();
    enc.response(status.as_u16(), fields, block);
    frame::header_block(out, frame_type::HEADERS, id, end, &[], block, max_frame);
}

/// What the scheduler needs to know of a stream.
fn ready(stream: Option<&Stream>) -> Ready {
    let Some(s) = stream else {
        return Ready {
            data: false,
            window: 0,
            soon: false,
        };
    };
    let out = s.out.as_ref();
    let waiting = out.is_some_and(|o| o.buf.is_empty());
    Ready {
        data: out.is_some_and(|o| !o.buf.is_empty()),
        window: s.send_window,
        // Its file's next chunk is being read (nothing buffered, the
        // source still there).
        soon: waiting && out.is_some_and(|o| o.source.as_ref().is_some_and(|src| src.is_local())),
    }
}

/// The request of a PUSH_PROMISE (always a GET).
pub struct PushRequest<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

fn flood() -> ConnError {
    ConnError {
        reason: Reason::ENHANCE_YOUR_CALM,
        message: "PING/SETTINGS flood".into(),
        flood: true,
    }
}

/// A request's fields as they are decoded, checked as RFC 9113 §8.2-8.3 asks.
#[derive(Default)]
struct Fields {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    headers: HeaderMap,
    has_pseudo: bool,
    regular_seen: bool,
    content_length: Option<u64>,
    error: Option<&'static str>,
}

impl Fields {
    fn add(&mut self, name: Name, value: Bytes) {
        if self.error.is_some() {
            return;
        }
        self.error = match name {
            Name::Method => self.pseudo(0, value),
            Name::Scheme => self.pseudo(1, value),
            Name::Authority => self.pseudo(2, value),
            Name::Path => self.pseudo(3, value),
            Name::Status => Some(":status in a request"),
            Name::Protocol => Some("extended CONNECT (:protocol) is not supported"),
            Name::UnknownPseudo(_) => Some("unknown pseudo-header"),
            Name::Invalid(_) => Some("invalid field name"),
            Name::Header(name) => self.regular(name, value),
        };
    }

    /// `which`: 0 :method, 1 :scheme, 2 :authority, 3 :path.
    fn pseudo(&mut self, which: u8, value: Bytes) -> Option<&'static str> {
        if self.regular_seen {
            return Some("pseudo-header after a regular field");
        }
        self.has_pseudo = true;
        let slot = match which {
            0 => &mut self.method,
            1 => &mut self.scheme,
            2 => &mut self.authority,
            _ => &mut self.path,
        };
        if slot.is_some() {
            return Some("repeated pseudo-header");
        }
        *slot = Some(value);
        None
    }

    fn regular(&mut self, name: HeaderName, value: Bytes) -> Option<&'static str> {
        self.regular_seen = true;
        if hpack::is_connection_specific(&name) {
            return Some("connection-specific header field");
        }
        if name == http::header::TE && value.as_ref() != b"trailers" {
            return Some("te other than trailers");
        }
        if value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || value.last().is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            return Some("field value with surrounding whitespace");
        }
        let Ok(value) = HeaderValue::from_maybe_shared(value) else {
            return Some("invalid field value");
        };
        if name == http::header::CONTENT_LENGTH {
            let parsed = value
                .to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (parsed, self.content_length) {
                (None, _) => return Some("invalid content-length"),
                (Some(n), Some(m)) if n != m => return Some("conflicting content-length"),
                (Some(n), _) => self.content_length = Some(n),
            }
        }
        self.headers.append(name, value);
        None
    }

    /// The request, or why it is malformed.
    fn into_request(self) -> Result<(http::request::Parts, Option<u64>), &'static str> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let method = self.method.ok_or("no :method")?;
        let method = if method.as_ref() == b"GET" {
            Method::GET
        } else {
            Method::from_bytes(&method).map_err(|_| "invalid :method")?
        };
        let mut uri = http::uri::Parts::default();
        if method == Method::CONNECT {
            if self.scheme.is_some() || self.path.is_some() {
                return Err("CONNECT with :scheme or :path");
            }
            let authority = self.authority.ok_or("CONNECT without :authority")?;
            uri.authority = Some(
                http::uri::Authority::from_maybe_shared(authority)
                    .map_err(|_| "invalid :authority")?,
            );
        } else {
            let scheme = self.scheme.ok_or("no :scheme")?;
            let path = self.path.ok_or("no :path")?;
            if path.is_empty() {
                return Err("empty :path");
            }
            if path.as_ref() != b"*" && path[0] != b'/' {
                return Err(":path is not absolute");
            }
            if let Some(authority) = self.authority {
                uri.scheme = Some(match scheme.as_ref() {
                    b"https" => http::uri::Scheme::HTTPS,
                    b"http" => http::uri::Scheme::HTTP,
                    other => http::uri::Scheme::try_from(other).map_err(|_| "invalid :scheme")?,
                });
                uri.authority = Some(
                    http::uri::Authority::from_maybe_shared(authority)
                        .map_err(|_| "invalid :authority")?,
                );
            }
            uri.path_and_query = Some(
                http::uri::PathAndQuery::from_maybe_shared(path).map_err(|_| "invalid :path")?,
            );
        }
        let uri = Uri::from_parts(uri).map_err(|_| "invalid request target")?;
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_2;
        *request.headers_mut() = self.headers;
        Ok((request.into_parts().0, self.content_length))
    }
}
