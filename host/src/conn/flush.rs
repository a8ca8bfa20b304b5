//! Writes gathered until a flush, so that the TLS records of one round of
//! frames leave in one system call.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
