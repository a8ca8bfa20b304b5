//! HTTP/1.1 clients (ALPN `http/1.1`, no ALPN, or cleartext without the h2
//! preface), served through hyper with the same origin and policy.
//!
//! There is no push in HTTP/1.1, so every hint becomes a `103 Early Hints`
//! (for HTTP/1.1 requests; RFC 8297 forbids 1xx to HTTP/1.0) and a `Link` in
//! the final response. hyper cannot send a 1xx from a server, so the service
//! writes the 103 straight to the connection's write half. That is safe
//! because an HTTP/1.1 connection in hyper writes nothing while the service
//! for its current request runs: the 103 is followed by hyper's final
//! response, never interleaved with it.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Version};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::origin;
use crate::server::Shared;

type SharedWriter<IO> = Arc<Mutex<WriteHalf<IO>>>;

/// What a request's handler knows of its connection.
struct Conn {
    id: u64,
    scheme: &'static str,
    client: Option<std::net::IpAddr>,
    sni: Option<Arc<str>>,
    followups: Arc<crate::metrics::Followups>,
}

/// The connection as hyper sees it: reads from the read half, writes through
/// the shared write half (which the service also uses for 103s).
struct SplitIo<IO> {
    read: ReadHalf<IO>,
    write: SharedWriter<IO>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<IO: AsyncRead + AsyncWrite> AsyncRead for SplitIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite> AsyncWrite for SplitIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.write)).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.write)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.write)).poll_shutdown(cx)
    }
}

async fn write_all<IO: AsyncRead + AsyncWrite>(w: &SharedWriter<IO>, buf: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        let n = poll_fn(|cx| Pin::new(&mut *lock(w)).poll_write(cx, &buf[off..])).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        off += n;
    }
    poll_fn(|cx| Pin::new(&mut *lock(w)).poll_flush(cx)).await
}

/// Serve HTTP/1.1 on an established byte stream.
pub async fn serve<IO>(
    io: IO,
    shared: Arc<Shared>,
    id: u64,
    scheme: &'static str,
    client: Option<std::net::IpAddr>,
    sni: Option<Arc<str>>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let write = Arc::new(Mutex::new(write));
    let io = SplitIo {
        read,
        write: write.clone(),
    };
    let timeout = Duration::from_millis(shared.config.server.handshake_timeout_ms);
    let followups = Arc::new(crate::metrics::Followups::new(shared.config.push.memo_size));
    let service = service_fn(move |req| {
        let (shared, write, followups) = (shared.clone(), write.clone(), followups.clone());
        let conn = Conn {
            id,
            scheme,
            client,
            sni: sni.clone(),
            followups,
        };
        async move { Ok::<_, Infallible>(handle(shared, write, req, conn).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(conn = id, "HTTP/1.1 connection ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn handle<IO: AsyncRead + AsyncWrite>(
    shared: Arc<Shared>,
    write: SharedWriter<IO>,
    req: http::Request<hyper::body::Incoming>,
    conn: Conn,
) -> http::Response<OriginBody> {
    let Conn {
        id: conn,
        scheme,
        client,
        sni,
        followups,
    } = conn;
    let (parts, body) = req.into_parts();
    let crate::decide::Begun {
        authority,
        path_and_query,
        target,
    } = crate::decide::begin(&shared, &parts, true, sni.as_deref()).await;
    let authority = authority.unwrap_or_default();
    followups.requested(&path_and_query);
    let status = target.expected_status();
    // A proxied request leaves now; its hints go out as a 103 meanwhile.
    let fwd = crate::proxy::Forward {
        method: &parts.method,
        path_and_query: &path_and_query,
        authority: &authority,
        scheme,
        client,
        version: parts.version,
        conn,
    };
    let (ready, mut upstreaming) =
        crate::decide::start(&shared, target, &fwd, &parts.headers, || {
            crate::proxy::boxed(body)
        });
    let ask = crate::decide::Ask {
        parts: &parts,
        scheme,
        authority: &authority,
        path_and_query: &path_and_query,
        status,
        can_push: false,
        conn,
        client,
    };
    let decided = crate::decide::hints_for(&shared, &ask).await;
    let mut links: Vec<HeaderValue> = decided
        .plan
        .items
        .iter()
        .map(|p| p.hint.link(false))
        .collect();
    // RFC 8297: no 1xx to an HTTP/1.0 client.
    let early_ok = parts.version == Version::HTTP_11;
    if !links.is_empty() && early_ok && write_103(&write, &links, decided.metrics(), conn).await {
        followups.hinted(
            decided
                .plan
                .items
                .iter()
                .map(|p| p.hint.path_and_query.as_str()),
            decided.metrics(),
        );
    }
    if let Some(digest) = &decided.digest {
        for item in &decided.plan.items {
            digest
                .record_current(item.hint.path_and_query.as_str())
                .await;
        }
    }
    let response = match (ready, upstreaming.as_mut()) {
        (Some(response), _) => response,
        (None, Some(up)) => loop {
            tokio::select! {
                head = &mut up.response => {
                    break head.unwrap_or_else(|_| origin::simple(
                        http::StatusCode::BAD_GATEWAY,
                        "bad gateway\n",
                    ));
                }
                Some(hints) = up.early.recv() => {
                    // The upstream's 103, forwarded (its links as they are).
                    let values: Vec<HeaderValue> =
                        hints.get_all(http::header::LINK).iter().cloned().collect();
                    if !values.is_empty() && early_ok {
                        write_103(&write, &values, decided.metrics(), conn).await;
                    }
                }
            }
        },
        (None, None) => unreachable!("a target is either ready or upstream"),
    };
    // The policy's `on-response` may add hints: as Link headers here.
    if let Some(up) = &upstreaming {
        let plan =
            crate::decide::response_hints(&shared, &ask, &decided, &response, up.link_hints).await;
        for item in plan.items {
            let pq = item.hint.path_and_query.as_str();
            if !crate::planner::link::names(&response.headers, pq) {
                links.push(item.hint.link(false));
                if let Some(digest) = &decided.digest {
                    digest.record_current(pq).await;
                }
            }
        }
    }
    drop(upstreaming);
    if shared.config.server.access_log {
        tracing::info!(
            conn,
            method = %parts.method,
            path = %path_and_query,
            status = response.status.as_u16(),
            bytes = response.body.len(),
            pushed = 0,
            hinted = links.len(),
            proto = "http/1.1",
            variant = %decided.variant(),
            "request"
        );
    }
    let mut out = http::Response::new(OriginBody::new(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    for link in links {
        out.headers_mut().append(http::header::LINK, link);
    }
    if let Some(cookie) = decided.set_cookie.clone() {
        out.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    if let Some(cookie) = decided.digest_cookie(&shared, scheme == "https") {
        out.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    out
}

/// Write a `103 Early Hints` with `links` while hyper is idle; false if the
/// connection refused it.
async fn write_103<IO: AsyncRead + AsyncWrite>(
    write: &SharedWriter<IO>,
    links: &[HeaderValue],
    metrics: &Metrics,
    conn: u64,
) -> bool {
    let mut early = b"HTTP/1.1 103 Early Hints\r\n".to_vec();
    for link in links {
        early.extend_from_slice(b"link: ");
        early.extend_from_slice(link.as_bytes());
        early.extend_from_slice(b"\r\n");
    }
    early.extend_from_slice(b"\r\n");
    match write_all(write, &early).await {
        Ok(()) => {
            metrics.early_hints_sent(links.len());
            true
        }
        Err(e) => {
            tracing::debug!(conn, "103 not written: {e}");
            false
        }
    }
}

type NextChunk = Pin<Box<dyn Future<Output = (io::Result<Option<Bytes>>, origin::Body)> + Send>>;

/// An origin body as a hyper body, read in 64 KiB chunks.
pub struct OriginBody {
    body: Option<origin::Body>,
    /// Bytes left, when known (an upstream body may not say).
    len: Option<u64>,
    reading: Option<NextChunk>,
}

impl OriginBody {
    fn new(body: origin::Body) -> OriginBody {
        OriginBody {
            len: body.known_len(),
            body: Some(body),
            reading: None,
        }
    }
}

impl http_body::Body for OriginBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        if self.reading.is_none() {
            let Some(mut body) = self.body.take() else {
                return Poll::Ready(None);
            };
            self.reading = Some(Box::pin(async move {
                let chunk = body.next_chunk(64 * 1024).await;
                (chunk, body)
            }));
        }
        let reading = self.reading.as_mut().expect("set above");
        let (chunk, body) = std::task::ready!(reading.as_mut().poll(cx));
        self.reading = None;
        match chunk {
            Ok(Some(bytes)) => {
                if let Some(len) = self.len.as_mut() {
                    *len = len.saturating_sub(bytes.len() as u64);
                }
                self.body = Some(body);
                Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
            }
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reading.is_none() && (self.body.is_none() || self.len == Some(0))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.len {
            Some(len) => http_body::SizeHint::with_exact(len),
            None => http_body::SizeHint::default(),
        }
    }
}
