//! A minimal frame-level HTTP/2 client for behaviour the `h2` crate will not
//! produce on demand (refusing pushes with a chosen error code, odd settings).
//! Requests are HPACK-encoded as literals without indexing; responses are not
//! decoded, only framed.

use std::time::Duration;

use herald::http2::frame::{FrameDecoder, frame_type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Seen;

pub const REFUSED_STREAM: u32 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

pub struct RawClient {
    tcp: TcpStream,
    decoder: FrameDecoder,
    pub frames: Vec<Seen>,
    authority: String,
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    fn int7(out: &mut Vec<u8>, n: usize) {
        if n < 127 {
            out.push(n as u8);
        } else {
            out.push(127);
            let mut n = n - 127;
            while n >= 128 {
                out.push((n % 128 + 128) as u8);
                n /= 128;
            }
            out.push(n as u8);
        }
    }
    out.push(0x00); // literal header field without indexing, new name
    int7(out, name.len());
    out.extend_from_slice(name.as_bytes());
    int7(out, value.len());
    out.extend_from_slice(value.as_bytes());
}

impl RawClient {
    /// Connect with prior knowledge and send `settings` (id, value).
    pub async fn connect(addr: std::net::SocketAddr, settings: &[(u16, u32)]) -> RawClient {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(frame_type::SETTINGS, 0, 0, &payload));
        // A large connection window so pushed bodies are never the bottleneck.
        hello.extend(frame(
            frame_type::WINDOW_UPDATE,
            0,
            0,
            &(16u32 << 20).to_be_bytes(),
        ));
        tcp.write_all(&hello).await.unwrap();
        RawClient {
            tcp,
            decoder: FrameDecoder::new(false),
            frames: Vec::new(),
            authority: addr.to_string(),
        }
    }

    /// Write raw bytes (frames built with `frame`).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// A request header block for `path` (HPACK literals).
    pub fn request_block(&self, path: &str) -> Vec<u8> {
        let mut block = Vec::new();
        for (n, v) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", &self.authority),
            (":path", path),
        ] {
            hpack_literal(&mut block, n, v);
        }
        block
    }

    pub async fn get(&mut self, stream: u32, path: &str) {
        let block = self.request_block(path);
        let f = frame(
            frame_type::HEADERS,
            END_STREAM | END_HEADERS,
            stream,
            &block,
        );
        self.tcp.write_all(&f).await.unwrap();
    }

    /// Read frames until `done` says so (or the connection ends, or 10 s pass).
    /// SETTINGS are acknowledged; `on_frame` may answer any frame.
    pub async fn read_until(
        &mut self,
        mut on_frame: impl FnMut(&Seen) -> Vec<Vec<u8>>,
        mut done: impl FnMut(&[Seen]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut write_failed = false;
        let mut buf = vec![0u8; 64 * 1024];
        while !done(&self.frames) {
            let n = match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
                Ok(Ok(n)) => n,
            };
            let mut new = Vec::new();
            self.decoder.feed(&buf[..n], |f| new.push(Seen::of(f)));
            for f in new {
                let mut replies = on_frame(&f);
                if f.kind == frame_type::SETTINGS && f.flags & ACK == 0 {
                    replies.push(frame(frame_type::SETTINGS, ACK, 0, &[]));
                }
                if f.kind == frame_type::DATA && f.len > 0 {
                    // Keep every window open: this client reads everything.
                    replies.push(frame(
                        frame_type::WINDOW_UPDATE,
                        0,
                        f.stream,
                        &(f.len as u32).to_be_bytes(),
                    ));
                }
                self.frames.push(f);
                for r in replies {
                    if !write_failed && self.tcp.write_all(&r).await.is_err() {
                        // The server hung up; what it sent before is still
                        // to be read, so keep reading to the end.
                        write_failed = true;
                    }
                }
            }
        }
        true
    }

    /// Whether `stream` has ended (END_STREAM on DATA or HEADERS, or a reset).
    pub fn ended(frames: &[Seen], stream: u32) -> bool {
        frames.iter().any(|f| {
            f.stream == stream
                && ((matches!(f.kind, frame_type::DATA | frame_type::HEADERS)
                    && f.flags & END_STREAM != 0)
                    || f.kind == frame_type::RST_STREAM)
        })
    }

    pub fn rst_frame(stream: u32, code: u32) -> Vec<u8> {
        frame(frame_type::RST_STREAM, 0, stream, &code.to_be_bytes())
    }
}
