//! Flushes put off by one scheduler round, so that the frames of many
//! responses leave in one write.
//!
//! Each response's handler hands h2 its HEADERS and DATA and wakes the
//! connection task; run at once (tokio runs a woken task next), that task
//! writes and flushes one response at a time: under load about 1.7 writes a
//! request. Here the first flush request of a round answers "not yet" and
//! reschedules the connection task behind the handlers already waiting to
//! run; when h2 asks again, everything they queued meanwhile goes out in one
//! write. While each round brings more frames (under load, other handlers
//! finishing), the flush waits again, up to `MAX_ROUNDS`. The cost is one
//! extra poll of the connection task per flush when idle; under load no
//! byte waits longer than four rounds (`BENCHMARKS.md`, throughput).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An IO whose flushes wait one scheduler round, and more while each round
/// brings more bytes (other responses' frames), up to `MAX_ROUNDS`.
pub struct DeferredFlush<IO> {
    io: IO,
    /// Rounds this flush has waited.
    rounds: u8,
    /// Bytes written since the last round began.
    fresh: usize,
}

/// The most rounds a flush waits. Under load each round lets every ready
/// handler add its frames (h2load, 16 connections x 8 streams: 0.8 socket
/// writes a request with one round, 0.4 with up to four); idle, the second
/// round finds nothing new and the flush goes at once.
const MAX_ROUNDS: u8 = 4;

impl<IO> DeferredFlush<IO> {
    pub fn new(io: IO) -> DeferredFlush<IO> {
        DeferredFlush {
            io,
            rounds: 0,
            fresh: 0,
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
        let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.fresh += n;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.fresh += n;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Wait a round if this is the first try, or if the last round brought
        // more frames (others may be on their way).
        if self.rounds == 0 || (self.fresh > 0 && self.rounds < MAX_ROUNDS) {
            self.rounds += 1;
            self.fresh = 0;
            // A task that wakes itself while running is queued behind the
            // tasks already ready, not run again at once.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.rounds = 0;
        self.fresh = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Writes gathered until a flush, then written in one go; like tokio's
/// `BufWriter`, but the buffer is only allocated while it holds bytes, so an
/// idle connection costs nothing here (measured: `BENCHMARKS.md`, scale).
pub struct WriteBuffer<IO> {
    io: IO,
    buf: Vec<u8>,
    written: usize,
    capacity: usize,
}

impl<IO> WriteBuffer<IO> {
    pub fn new(io: IO, capacity: usize) -> WriteBuffer<IO> {
        WriteBuffer {
            io,
            buf: Vec::new(),
            written: 0,
            capacity,
        }
    }
}

impl<IO: AsyncWrite + Unpin> WriteBuffer<IO> {
    /// Write out what is buffered; the buffer is released when empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteBuffer<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteBuffer<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() + data.len() > self.capacity {
            std::task::ready!(self.poll_drain(cx))?;
        }
        if data.len() >= self.capacity {
            return Pin::new(&mut self.io).poll_write(cx, data);
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn a_flush_waits_while_frames_keep_coming_but_at_most_max_rounds() {
        let (client, _server) = tokio::io::duplex(1 << 16);
        let mut io = DeferredFlush::new(client);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Quiet: one round, then out.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        // Busy: every round brings a frame.
        let mut rounds = 0;
        loop {
            let wrote = Pin::new(&mut io).poll_write(&mut cx, b"frame");
            assert!(matches!(wrote, Poll::Ready(Ok(5))));
            match Pin::new(&mut io).poll_flush(&mut cx) {
                Poll::Pending => rounds += 1,
                Poll::Ready(r) => break r.unwrap(),
            }
        }
        assert_eq!(rounds, MAX_ROUNDS);
    }

    #[tokio::test]
    async fn gathers_until_flush_then_writes_everything_in_order() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut w = WriteBuffer::new(client, 16);
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world, and more than sixteen bytes")
            .await
            .unwrap();
        w.write_all(b"!").await.unwrap();
        w.flush().await.unwrap();
        assert!(w.buf.capacity() == 0, "released once drained");
        drop(w);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server, &mut got)
            .await
            .unwrap();
        assert_eq!(got, b"hello world, and more than sixteen bytes!");
    }
}
