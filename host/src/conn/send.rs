//! Writing a body into an h2 stream without ever buffering more than the
//! stream's flow-control capacity.
//!
//! h2's `send_data` accepts any amount and buffers it all; we only hand it what
//! the peer's window allows, so a client that stops reading costs at most one
//! chunk of memory per stream.

use std::future::poll_fn;
use std::task::Poll;

use bytes::Bytes;
use h2::SendStream;

use crate::origin::{Body, CHUNK};

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

/// Send `body` on `stream`, ending the stream with the last chunk. Returns the
/// number of body bytes handed to h2; on error, also the bytes sent before it.
pub async fn send_body(
    stream: &mut SendStream<Bytes>,
    mut body: Body,
) -> Result<u64, (u64, SendError)> {
    let mut remaining = body.len();
    let mut sent = 0u64;
    while remaining > 0 {
        stream.reserve_capacity((remaining as usize).min(CHUNK));
        let capacity = poll_fn(|cx| {
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
        })
        .await
        .map_err(|e| (sent, e))?;
        let chunk = body
            .next_chunk(capacity)
            .await
            .map_err(|e| (sent, SendError::Io(e)))?;
        let Some(chunk) = chunk else { break };
        remaining -= chunk.len() as u64;
        sent += chunk.len() as u64;
        stream
            .send_data(chunk, remaining == 0)
            .map_err(|e| (sent, SendError::H2(e)))?;
    }
    Ok(sent)
}
