//! Writing a body into an h2 stream without ever buffering more than the
//! stream's flow-control capacity.
//!
//! h2's `send_data` accepts any amount and buffers it all; we only hand it what
//! the peer's window allows, so a client that stops reading costs at most one
//! chunk of memory per stream.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;

use super::sched::{QUANTUM, Registered};
use crate::origin::Body;

/// How a body transfer ended early.
#[derive(Debug)]
pub enum SendError {
    /// The client reset the stream (for a push, usually CANCEL).
    Reset(h2::Reason),
    /// The connection went away or h2 refused the data.
    H2(h2::Error),
    /// Reading the file failed.
    Io(std::io::Error),
}

/// How long a turn may wait for h2 to assign capacity before it yields to
/// other streams (the stream's own window is shut: the client is not reading it).
const CAPACITY_WAIT: Duration = Duration::from_millis(250);

/// Send `body` on `stream`, ending the stream with the last chunk (or, for a
/// body of unknown length, with an empty DATA frame), one scheduler turn per
/// chunk. Returns the body bytes handed to h2; on error,
/// also the bytes handed over before it.
pub async fn send_body(
    stream: &mut SendStream<Bytes>,
    mut body: Body,
    slot: &Registered,
) -> Result<u64, (u64, SendError)> {
    let (sched, id) = (slot.scheduler(), slot.stream());
    let mut remaining = body.known_len();
    // An upstream's next chunk may be a long time coming: such a stream
    // leaves the ready set after each chunk (and rejoins when it asks again)
    // instead of being granted turns it cannot use.
    let streamed = matches!(body, Body::Upstream(_));
    let mut sent = 0u64;
    let mut pending = Bytes::new();
    while remaining != Some(0) {
        if pending.is_empty() {
            // Read ahead of the turn, so disk (or upstream) time never holds
            // up other streams.
            pending = match body.next_chunk(QUANTUM).await {
                Ok(Some(chunk)) if chunk.is_empty() => continue,
                Ok(Some(chunk)) => chunk,
                Ok(None) if remaining.is_none() => {
                    return match stream.send_data(Bytes::new(), true) {
                        Ok(()) => Ok(sent),
                        Err(e) => Err((sent, SendError::H2(e))),
                    };
                }
                Ok(None) => {
                    let short = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "body ended before its content-length",
                    );
                    return Err((sent, SendError::Io(short)));
                }
                Err(e) => return Err((sent, SendError::Io(e))),
            };
        }
        // A stream waiting for its turn (say, its window is shut) must still
        // notice a reset at once. If the reset wins after the turn was
        // granted, dropping the slot (our caller) passes the turn on.
        let turn = tokio::select! {
            turn = sched.turn(id, pending.len()) => turn,
            reset = poll_fn(|cx| stream.poll_reset(cx)) => {
                return Err((sent, match reset {
                    Ok(reason) => SendError::Reset(reason),
                    Err(e) => SendError::H2(e),
                }));
            }
        };
        stream.reserve_capacity(turn.max.min(pending.len()));
        let mut wait = std::pin::pin!(poll_fn(|cx| {
            if let Poll::Ready(r) = stream.poll_reset(cx) {
                return Poll::Ready(Err(match r {
                    Ok(reason) => SendError::Reset(reason),
                    Err(e) => SendError::H2(e),
                }));
            }
            match stream.poll_capacity(cx) {
                Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Err(SendError::H2(e))),
                // The stream can no longer send: it was reset or closed.
                Poll::Ready(None) => Poll::Ready(Err(SendError::Reset(h2::Reason::CANCEL))),
                Poll::Pending => Poll::Pending,
            }
        }));
        // Capacity is usually assigned as it is reserved: only a wait that
        // does not end at once arms the timer (registering one wakes the
        // event loop, a system call per request under h2load).
        let capacity = match poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => tokio::time::timeout(CAPACITY_WAIT, wait).await,
        };
        let capacity = match capacity {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                sched.complete(id, 0, false);
                return Err((sent, e));
            }
            Err(_) => {
                tracing::debug!(
                    stream = id,
                    "no capacity within {} ms: yielding the turn",
                    CAPACITY_WAIT.as_millis()
                );
                stream.reserve_capacity(0);
                sched.complete(id, 0, false);
                continue;
            }
        };
        let n = capacity.min(turn.max).min(pending.len());
        let chunk = pending.split_to(n);
        if let Some(r) = remaining.as_mut() {
            *r -= (n as u64).min(*r);
        }
        sent += n as u64;
        let last = remaining == Some(0);
        match stream.send_data(chunk, last) {
            Ok(()) => sched.complete(id, n, !last && (!streamed || !pending.is_empty())),
            Err(e) => {
                // h2 took none of it: nothing was handed over.
                sched.complete(id, 0, false);
                return Err((sent - n as u64, SendError::H2(e)));
            }
        }
    }
    Ok(sent)
}
