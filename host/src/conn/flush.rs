//! Flushes put off by one scheduler round, so that the frames of many
//! responses leave in one write.
//!
//! Each response's handler hands h2 its HEADERS and DATA and wakes the
//! connection task; run at once (tokio runs a woken task next), that task
//! writes and flushes one response at a time: under load about 1.7 writes a
//! request. Here the first flush request of a round answers "not yet" and
//! reschedules the connection task behind the handlers already waiting to
//! run; when h2 asks again, everything they queued meanwhile goes out in one
//! write. The cost is one extra poll of the connection task per flush; no
//! byte waits longer than that round (`BENCHMARKS.md`, throughput).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An IO whose flushes wait one scheduler round.
pub struct DeferredFlush<IO> {
    io: IO,
    deferred: bool,
}

impl<IO> DeferredFlush<IO> {
    pub fn new(io: IO) -> DeferredFlush<IO> {
        DeferredFlush {
            io,
            deferred: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for DeferredFlush<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for DeferredFlush<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.deferred {
            self.deferred = true;
            // A task that wakes itself while running is queued behind the
            // tasks already ready, not run again at once.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.deferred = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
