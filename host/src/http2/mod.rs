//! Herald's HTTP/2 server side (RFC 9113, HPACK RFC 7541, priorities
//! RFC 9218).
//!
//! Why our own, and not the `h2` crate's server: a push server needs three
//! things h2 does not give. Promises of different pages must reach the wire
//! in id order (h2 interleaves its streams' queues and the client then kills
//! the connection); a PUSH_PROMISE may only follow a page before its final
//! HEADERS; and priority and weight must decide which DATA frame goes next,
//! frame by frame, as late as possible. Here one engine per connection makes
//! every frame in one ordered output, so all three hold by construction, and
//! the scheduler picks each DATA frame when the socket can take it.
//!
//! The layers: `frame` (the wire format), `hpack` (header compression),
//! `sched` (whose DATA goes next), `engine` (the connection's state
//! machine, without IO), `body` (bodies in and out), and this module's
//! driver, which owns the socket and runs the connection's request handlers
//! on its own task: a request's handler is polled right after the read that
//! completed it, so a batch of requests from one read is answered by one
//! write.
//!
//! Invariant: the only code that writes to a connection's socket is the
//! driver, and the only bytes it writes are the engine's output, in order.

mod body;
pub mod engine;
pub mod frame;
pub mod hpack;
pub mod sched;
#[cfg(test)]
mod tests;

pub use body::{BodyError, Payload, RecvBody, Source};
pub use engine::{ConnError, Done, Finished, Gone, Outcome, PushError, PushRequest, Settings};
pub use frame::Reason;
pub use sched::Priority;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use engine::Engine;
use frame::FrameDecoder;

/// Per-stream state of one connection, by stream id. Looked up several
/// times per frame: hashed with foldhash, not SipHash. Stream ids are the
/// client's choice, but at most `max_concurrent_streams` are live and the
/// hasher is seeded per process, so collisions cannot be forced at scale.
pub type StreamMap<V> = std::collections::HashMap<u32, V, foldhash::fast::RandomState>;

/// Stop reading while this much output waits (a client that sends but does
/// not read gets TCP backpressure instead of our memory).
const READ_PAUSE: usize = 256 * 1024;

/// Reads per poll of the driver before it lets other tasks run.
const READS_PER_POLL: usize = 16;

/// How long a finished connection may take to write its last frames (a
/// GOAWAY to a client that does not read) before it is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The read buffer's growth step.
const READ_CHUNK: usize = 16 * 1024;

/// The connection shared by its driver and its handlers' responders.
pub struct Shared {
    engine: Mutex<Engine>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the engine; wake the driver if it is not the caller.
    fn with<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let mut e = self.lock();
        let out = f(&mut e);
        if !e.in_poll
            && let Some(w) = &e.waker
        {
            w.wake_by_ref();
        }
        out
    }
}

/// How a handler answers one request. Dropping it without a final response
/// resets the stream (INTERNAL_ERROR).
pub struct Responder {
    conn: Arc<Shared>,
    id: u32,
    answered: bool,
}

impl Responder {
    pub fn stream_id(&self) -> u32 {
        self.id
    }

    /// Whether the client accepts pushes now.
    pub fn push_enabled(&self) -> bool {
        self.conn.lock().push_enabled()
    }

    /// Take the page's place in the scheduler now, before its pushes.
    pub fn schedule(&self, prio: Priority) {
        let now = Instant::now();
        self.conn.with(|e| e.schedule(self.id, prio, now));
    }

    /// The page will have no body for a while: it holds nobody back.
    pub fn idle(&self) {
        let now = Instant::now();
        self.conn.with(|e| e.idle(self.id, now));
    }

    /// A `103 Early Hints` with one `Link` field.
    pub fn early_hints(&mut self, links: &HeaderValue) -> Result<(), Gone> {
        self.conn.with(|e| e.early_hints(self.id, links))
    }

    /// Promise a pushed response on this page and queue it (see
    /// [`Engine::push`]).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        promise: PushRequest<'_>,
        status: StatusCode,
        headers: &HeaderMap,
        payload: Payload,
        prio: Priority,
        done: Option<Done>,
        patience: Duration,
    ) -> Result<u32, PushError> {
        let now = Instant::now();
        self.conn.with(|e| {
            e.push(
                self.id, promise, status, headers, payload, prio, done, patience, now,
            )
        })
    }

    /// The final response. `done` is told how the body's sending ended.
    pub fn respond<'a>(
        self,
        status: StatusCode,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        payload: Payload,
        done: Option<Done>,
    ) -> Result<(), Gone> {
        self.respond_after(Before::default(), status, headers, payload, done)
    }

    /// The final response, and what was held to precede it: the same
    /// frames in the same order as separate calls, in one turn of the engine
    /// (for a page whose response is ready at once, nothing is gained by
    /// sending them earlier). `Ok` means all of it was queued.
    pub fn respond_after<'a>(
        mut self,
        before: Before<'_>,
        status: StatusCode,
        headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        payload: Payload,
        done: Option<Done>,
    ) -> Result<(), Gone> {
        let now = Instant::now();
        self.answered = true;
        self.conn.with(|e| {
            if let Some(prio) = before.schedule {
                e.schedule(self.id, prio, now);
            }
            let links = before.early_hints;
            e.respond_after_103(self.id, links, status, headers, payload, done, now)
        })
    }

    /// Resolves when the client resets the stream (or it is otherwise gone).
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        self.conn.lock().poll_reset(self.id, cx)
    }

    /// Whether the stream is still open (not reset, not finished).
    pub fn is_open(&self) -> bool {
        self.conn.lock().is_open(self.id)
    }
}

/// What [`Responder::respond_after`] sends before the response.
#[derive(Debug, Default, Clone, Copy)]
pub struct Before<'a> {
    /// Take the page's place in the scheduler ([`Responder::schedule`]).
    pub schedule: Option<Priority>,
    /// A `103 Early Hints` with this `Link` field.
    pub early_hints: Option<&'a HeaderValue>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let id = self.id;
            self.conn.with(|e| e.cancel(id));
        }
    }
}

/// One request for the connection's handler.
pub struct Request {
    pub parts: http::request::Parts,
    pub body: RecvBody,
}

/// What the driver needs besides the engine's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The client's preface and SETTINGS must arrive within this.
    pub handshake_timeout: Duration,
    /// Log every frame, tagged with this connection id.
    pub trace: Option<u64>,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// GOAWAY exchanged or the client hung up after its streams.
    Closed,
    /// No preface and SETTINGS within the handshake timeout.
    HandshakeTimeout,
    /// We closed it for a protocol error or abuse (GOAWAY with this).
    Error(ConnError),
    /// The transport failed.
    Io(io::Error),
}

type Handler = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serve one HTTP/2 connection on `io` until it ends. `handle` makes the
/// future that answers a request; it runs on this connection's task.
/// `shutdown` resolving starts a graceful close (GOAWAY, drain).
pub async fn serve<IO, H>(
    io: IO,
    settings: Settings,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
    mut handle: H,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    H: FnMut(Request, Responder) -> Handler + Send,
{
    let now = Instant::now();
    let shared = Arc::new(Shared {
        engine: Mutex::new(Engine::new(settings, now)),
    });
    let mut driver = Driver {
        io,
        shared,
        read: BytesMut::with_capacity(READ_CHUNK),
        handlers: FuturesUnordered::new(),
        timer: Box::pin(tokio::time::sleep_until(
            (now + options.handshake_timeout).into(),
        )),
        timer_at: Some(now + options.handshake_timeout),
        handshake_deadline: Some(now + options.handshake_timeout),
        close_deadline: None,
        eof: false,
        unflushed: false,
        draining: false,
        shutting_down: false,
        started: now,
        trace: options.trace.map(|id| Trace {
            conn: id,
            sent: FrameDecoder::new(false),
            received: FrameDecoder::new(true),
        }),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    std::future::poll_fn(|cx| {
        if !driver.draining && shutdown.as_mut().poll(cx).is_ready() {
            driver.draining = true;
            driver.shared.lock().shutdown();
        }
        driver.poll(cx, &mut handle)
    })
    .await
}

/// A request's handler, polled so that a panic in it loses its own stream
/// (its responder's drop resets it), never the connection.
struct Guarded {
    stream: u32,
    handler: Handler,
}

impl Future for Guarded {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let handler = &mut self.handler;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                tracing::error!(
                    stream = self.stream,
                    "request handler panicked; stream reset"
                );
                Poll::Ready(())
            }
        }
    }
}

struct Trace {
    conn: u64,
    sent: FrameDecoder,
    received: FrameDecoder,
}

impl Trace {
    fn log(decoder: &mut FrameDecoder, conn: u64, dir: &str, bytes: &[u8], started: Instant) {
        decoder.feed(bytes, |f| {
            tracing::info!(
                target: "herald::frames",
                conn,
                "{}",
                frame::describe(dir, f.head, f.prefix, started.elapsed().as_secs_f64())
            );
        });
    }
}

struct Driver<IO> {
    io: IO,
    shared: Arc<Shared>,
    read: BytesMut,
    handlers: FuturesUnordered<Guarded>,
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    handshake_deadline: Option<Instant>,
    /// Once the connection is over: how long its last output may take.
    close_deadline: Option<Instant>,
    eof: bool,
    /// Bytes handed to the transport since its last complete flush.
    unflushed: bool,
    draining: bool,
    shutting_down: bool,
    started: Instant,
    trace: Option<Trace>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Driver<IO> {
    fn poll<H>(&mut self, cx: &mut Context<'_>, handle: &mut H) -> Poll<Ended>
    where
        H: FnMut(Request, Responder) -> Handler,
    {
        {
            let mut e = self.shared.lock();
            e.in_poll = true;
            if e.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                e.waker = Some(cx.waker().clone());
            }
        }
        let result = self.run(cx, handle);
        self.shared.lock().in_poll = false;
        result
    }

    fn run<H>(&mut self, cx: &mut Context<'_>, handle: &mut H) -> Poll<Ended>
    where
        H: FnMut(Request, Responder) -> Handler,
    {
        let mut rounds = 0;
        loop {
            rounds += 1;
            let now = Instant::now();
            let mut progress = false;

            // Input.
            if let Some(ended) = self.read_input(cx, now, &mut progress) {
                return Poll::Ready(ended);
            }
            // New requests start at once, on this task.
            let requests = self.shared.lock().take_requests();
            for r in requests {
                let responder = Responder {
                    conn: self.shared.clone(),
                    id: r.id,
                    answered: false,
                };
                let request = Request {
                    parts: r.parts,
                    body: r.body,
                };
                self.handlers.push(Guarded {
                    stream: r.id,
                    handler: handle(request, responder),
                });
            }
            while let Poll::Ready(Some(())) = self.handlers.poll_next_unpin(cx) {
                progress = true;
            }
            // Output.
            let wait = {
                let mut e = self.shared.lock();
                e.collect_released();
                e.fill(cx, now)
            };
            let written = self.write_output(cx, now, &mut progress);
            let finished = self.shared.lock().take_finished();
            for (done, f) in finished {
                done(f);
            }
            if let Err(e) = written {
                self.shared.lock().transport_closed();
                return Poll::Ready(Ended::Io(e));
            }
            // The end: the client left, or nothing more will happen and the
            // output is out (or would not go out within the linger).
            let (finished, error, empty) = {
                let e = self.shared.lock();
                (e.is_finished(), e.error().cloned(), e.output().is_empty())
            };
            let ended = || match &error {
                Some(e) => Ended::Error(e.clone()),
                None => Ended::Closed,
            };
            if self.eof {
                return Poll::Ready(ended());
            }
            if finished {
                let linger = *self.close_deadline.get_or_insert(now + CLOSE_LINGER);
                if empty || self.shutting_down {
                    self.shutting_down = true;
                    if Pin::new(&mut self.io).poll_shutdown(cx).is_ready() {
                        return Poll::Ready(ended());
                    }
                }
                if now >= linger {
                    return Poll::Ready(ended());
                }
            }
            // Timers: the handshake deadline, and the scheduler's hold.
            if let Some(deadline) = self.handshake_deadline {
                if self.shared.lock().handshake_done() {
                    self.handshake_deadline = None;
                } else if now >= deadline {
                    return Poll::Ready(Ended::HandshakeTimeout);
                }
            }
            let next = [wait, self.handshake_deadline, self.close_deadline]
                .into_iter()
                .flatten()
                .min();
            if let Some(at) = next {
                if self.timer_at != Some(at) {
                    self.timer.as_mut().reset(at.into());
                    self.timer_at = Some(at);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    self.timer_at = None;
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
            if rounds >= READS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Read what is there; feed it to the engine. `Some` when the connection
    /// is over for the reading side.
    fn read_input(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        progress: &mut bool,
    ) -> Option<Ended> {
        if self.eof || self.shutting_down {
            return None;
        }
        for _ in 0..READS_PER_POLL {
            {
                let e = self.shared.lock();
                if !e.wants_input() || e.output().len() >= READ_PAUSE {
                    return None;
                }
            }
            if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
                self.read.reserve(READ_CHUNK);
            }
            let before = self.read.len();
            let spare = self.read.spare_capacity_mut();
            let mut buf = ReadBuf::uninit(spare);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => return None,
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    if n == 0 {
                        self.eof = true;
                        self.shared.lock().transport_closed();
                        *progress = true;
                        return None;
                    }
                    // SAFETY: `poll_read` initialised the first `n` bytes of
                    // the spare capacity.
                    unsafe { self.read.set_len(before + n) };
                    if let Some(t) = self.trace.as_mut() {
                        Trace::log(
                            &mut t.received,
                            t.conn,
                            "recv",
                            &self.read[before..],
                            self.started,
                        );
                    }
                    self.shared.lock().recv(&mut self.read, now, cx.waker());
                    *progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.eof = true;
                    self.shared.lock().transport_closed();
                    return Some(Ended::Io(e));
                }
            }
        }
        None
    }

    fn write_output(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        progress: &mut bool,
    ) -> io::Result<()> {
        let mut wrote = false;
        loop {
            let mut e = self.shared.lock();
            if e.output().is_empty() {
                break;
            }
            match Pin::new(&mut self.io).poll_write(cx, e.next_write()) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    if let Some(t) = self.trace.as_mut() {
                        Trace::log(&mut t.sent, t.conn, "send", &e.output()[..n], self.started);
                    }
                    e.consumed(n, now);
                    wrote = true;
                    *progress = true;
                    // More DATA may fit now.
                    if e.output().is_empty() {
                        e.fill(cx, now);
                    }
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => {
                    e.blocked(now);
                    break;
                }
            }
        }
        // What the transport took may still sit in its own buffer (TLS
        // records rustls could not write yet): flushed until it is out, on
        // every poll, whether or not this one wrote anything.
        self.unflushed |= wrote;
        if self.unflushed || self.shutting_down {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Pending => {}
            }
        }
        Ok(())
    }
}
