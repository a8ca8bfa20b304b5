//! Bodies crossing the engine: what we send (`Payload`, pulled by the
//! scheduler one frame at a time) and what the client sends (`RecvBody`,
//! read by whoever forwards it, releasing flow-control window as it goes).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;

use super::frame::Reason;

/// A body produced as it is sent (a file read in chunks, an upstream's
/// response). Polled by the connection's task, with its context, only when
/// the scheduler could send more of it.
pub trait Source: Send + 'static {
    /// The next chunk, of at most `max` bytes; `None` at the end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<io::Result<Bytes>>>;

    /// Its next chunk is a local read away (a file), not at the mercy of
    /// another server: while it is read, the stream counts as about to be
    /// ready (see `sched`, rule 4).
    fn is_local(&self) -> bool {
        false
    }
}

/// A response body as the engine takes it.
pub enum Payload {
    Empty,
    /// All of it, in memory (a cached file, an error page).
    Bytes(Bytes),
    /// Produced as it goes; `len` is its declared length, if any (the
    /// stream then ends with its last byte; otherwise with an empty frame).
    Stream {
        source: Box<dyn Source>,
        len: Option<u64>,
    },
}

impl Payload {
    pub fn is_empty(&self) -> bool {
        match self {
            Payload::Empty => true,
            Payload::Bytes(b) => b.is_empty(),
            Payload::Stream { len, .. } => *len == Some(0),
        }
    }
}

/// What the connection shares with the reader of one request body.
#[derive(Debug)]
pub(crate) struct Inbound {
    state: Mutex<InState>,
    /// The connection's task: woken when the reader frees window or leaves.
    driver: Waker,
}

#[derive(Debug, Default)]
struct InState {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    end: bool,
    reset: Option<Reason>,
    reader: Option<Waker>,
    /// Bytes read since the connection last looked: window to give back.
    released: usize,
    /// The reader dropped the body: what comes next is discarded.
    dropped: bool,
}

impl Inbound {
    pub(crate) fn new(driver: Waker) -> Arc<Inbound> {
        Arc::new(Inbound {
            state: Mutex::new(InState::default()),
            driver,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A DATA payload arrived; false if the reader is gone (the caller then
    /// gives the window back itself).
    pub(crate) fn push(&self, data: Bytes, end: bool) -> bool {
        let mut s = self.lock();
        if s.dropped {
            return false;
        }
        if !data.is_empty() {
            s.chunks.push_back(data);
        }
        s.end |= end;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        true
    }

    pub(crate) fn trailers(&self, trailers: HeaderMap) {
        let mut s = self.lock();
        s.trailers = Some(trailers);
        s.end = true;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    /// The stream was reset (by the client, or by us for an error).
    pub(crate) fn reset(&self, reason: Reason) {
        let mut s = self.lock();
        if !s.end && s.reset.is_none() {
            s.reset = Some(reason);
        }
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    /// Window the reader has freed since the last call, and whether it left.
    pub(crate) fn take_released(&self) -> (usize, bool) {
        let mut s = self.lock();
        (std::mem::take(&mut s.released), s.dropped)
    }
}

/// A request body, as `http_body::Body` (what the proxy forwards).
#[derive(Debug, Default)]
pub struct RecvBody {
    inbound: Option<Arc<Inbound>>,
}

/// The client reset the stream, or the connection ended, mid-body.
#[derive(Debug)]
pub struct BodyError(pub Reason);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body aborted: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl RecvBody {
    pub(crate) fn new(inbound: Option<Arc<Inbound>>) -> RecvBody {
        RecvBody { inbound }
    }

    /// A body that was over when its HEADERS arrived.
    pub fn empty() -> RecvBody {
        RecvBody { inbound: None }
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        let Some(inbound) = &self.inbound else {
            return Poll::Ready(None);
        };
        let mut s = inbound.lock();
        if let Some(chunk) = s.chunks.pop_front() {
            let first = s.released == 0;
            s.released += chunk.len();
            drop(s);
            if first {
                inbound.driver.wake_by_ref();
            }
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        if let Some(reason) = s.reset {
            return Poll::Ready(Some(Err(BodyError(reason))));
        }
        if let Some(t) = s.trailers.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(t))));
        }
        if s.end {
            return Poll::Ready(None);
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        match &self.inbound {
            None => true,
            Some(i) => {
                let s = i.lock();
                s.end && s.chunks.is_empty() && s.trailers.is_none()
            }
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        if let Some(inbound) = &self.inbound {
            let mut s = inbound.lock();
            s.dropped = true;
            // What was buffered and never read is window to give back too.
            let unread: usize = s.chunks.drain(..).map(|c| c.len()).sum();
            s.released += unread;
            drop(s);
            inbound.driver.wake_by_ref();
        }
    }
}
