//! The reverse proxy: path prefixes served by an upstream application.
//!
//! Each `[[proxy]]` route has its own pooled hyper client (HTTP/1.1
//! keep-alive, or one multiplexed h2c connection). The request goes upstream
//! with its method, path and query unchanged, its body streamed, hop-by-hop
//! headers removed, `x-forwarded-for/-proto/-host` and `via` added; the
//! response comes back the same way, its body streamed chunk by chunk into
//! the client's stream. The URI sent upstream carries the client's authority
//! (so `Host`/`:authority` are what the client asked for) while the
//! connector always dials the configured upstream address.
//!
//! Failures never reach the client as a broken stream: a refused or broken
//! upstream connection is a `502`, a timeout (connect or response head) a
//! `504`, each with one log line naming the upstream and the cause.
//!
//! Invariant: the proxy never decides hints; it only reports what the
//! upstream said (its `103`s and its response head) to the caller.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::mpsc;

use crate::config::{ProxyRoute, UpstreamProtocol};
use crate::origin::{Body, Response};

pub type BoxError = Box<dyn StdError + Send + Sync>;
/// A request body on its way upstream.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// Every route, longest prefix first.
pub struct Proxy {
    upstreams: Vec<Upstream>,
}

/// One route and its client.
pub struct Upstream {
    pub route: ProxyRoute,
    client: Client<Dial, RequestBody>,
    /// `host:port` of the upstream, for URIs when the client sent no authority.
    address: http::uri::Authority,
    /// Responses past [`MAX_EARLY_HINTS`] `103`s, logged once per burst.
    too_many_early: std::sync::Arc<TooManyEarly>,
}

/// What a request's `103` callback needs to report a breach: made once per
/// upstream, shared by its requests.
struct TooManyEarly {
    log: crate::metrics::BurstLog,
    upstream: String,
}

/// `103`s of one upstream response passed on; later ones are dropped (one
/// or two is what applications send; each is a frame to every client).
pub const MAX_EARLY_HINTS: usize = 8;

impl Proxy {
    pub fn new(routes: &[ProxyRoute]) -> Proxy {
        let mut upstreams: Vec<Upstream> = routes.iter().map(Upstream::new).collect();
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.route.prefix.len()));
        Proxy { upstreams }
    }

    /// The upstream serving `path` (no query), if any: the longest prefix
    /// that matches and whose `except` list does not.
    pub fn route(&self, path: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| {
            path.starts_with(&u.route.prefix) && !u.route.except.iter().any(|e| path.starts_with(e))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }
}

/// The connector: whatever the URI says, dial the route's upstream, within
/// the connect timeout.
#[derive(Clone)]
struct Dial {
    inner: HttpConnector,
    target: Uri,
    timeout: Duration,
}

/// The upstream did not accept a connection in time.
#[derive(Debug)]
struct ConnectTimedOut;

impl std::fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connect timed out")
    }
}

impl StdError for ConnectTimedOut {}

type Dialing =
    Pin<Box<dyn Future<Output = Result<TokioIo<tokio::net::TcpStream>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Dialing;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, _uri: Uri) -> Dialing {
        let connecting = self.inner.call(self.target.clone());
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimedOut) as BoxError),
            }
        })
    }
}

/// Why the upstream gave no response head.
#[derive(Debug)]
pub enum ProxyError {
    /// Connecting timed out, or the response head did not come in time: 504.
    Timeout(&'static str),
    /// Refused, reset, or not speaking HTTP: 502.
    Failed(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Failed(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Timeout(what) => write!(f, "{what} timed out"),
            ProxyError::Failed(why) => f.write_str(why),
        }
    }
}

/// The parts of the client's request that go upstream besides its headers.
#[derive(Clone, Copy)]
pub struct Forward<'a> {
    pub method: &'a http::Method,
    pub path_and_query: &'a str,
    pub authority: &'a str,
    pub scheme: &'static str,
    pub client: Option<std::net::IpAddr>,
    /// The client's protocol, for `via`.
    pub version: http::Version,
    /// The client connection, for logs.
    pub conn: u64,
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Remove hop-by-hop headers, including those the `connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

fn via(version: http::Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        http::Version::HTTP_2 => "2 herald",
        http::Version::HTTP_10 => "1.0 herald",
        _ => "1.1 herald",
    })
}

impl Upstream {
    fn new(route: &ProxyRoute) -> Upstream {
        let target: Uri = route.upstream.parse().expect("validated upstream URL");
        let address = target.authority().expect("validated upstream host").clone();
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        let dial = Dial {
            inner,
            target,
            timeout: Duration::from_millis(route.connect_timeout_ms),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(route.pool_idle);
        if route.protocol == UpstreamProtocol::H2c {
            builder.http2_only(true);
        }
        Upstream {
            route: route.clone(),
            client: builder.build(dial),
            address,
            too_many_early: std::sync::Arc::new(TooManyEarly {
                log: crate::metrics::BurstLog::new(Duration::from_secs(10)),
                upstream: route.upstream.clone(),
            }),
        }
    }

    /// Send the request upstream and wait for its response head. Each `103`
    /// the upstream sends first (HTTP/1.1 upstreams) is passed to `early`.
    pub async fn fetch(
        &self,
        fwd: Forward<'_>,
        mut headers: HeaderMap,
        body: RequestBody,
        early: Option<mpsc::UnboundedSender<HeaderMap>>,
    ) -> Result<Response, ProxyError> {
        strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        // The client's address is appended: earlier proxies' entries stay.
        if let Some(ip) = fwd.client {
            let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(before) => format!("{before}, {ip}"),
                None => ip.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert("x-forwarded-for", v);
            }
        }
        headers.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if fwd.scheme == "https" {
                "https"
            } else {
                "http"
            }),
        );
        if let Ok(host) = HeaderValue::from_str(fwd.authority)
            && !fwd.authority.is_empty()
        {
            headers.insert("x-forwarded-host", host);
        }
        headers.append(header::VIA, via(fwd.version));

        let authority = Some(fwd.authority)
            .filter(|a| !a.is_empty())
            .and_then(|a| a.parse::<http::uri::Authority>().ok())
            .unwrap_or_else(|| self.address.clone());
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(fwd.path_and_query)
            .build()
            .map_err(|e| ProxyError::Failed(format!("request target not forwardable: {e}")))?;
        let mut request = http::Request::new(body);
        *request.method_mut() = fwd.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        if let Some(early) = early {
            let seen = std::sync::atomic::AtomicUsize::new(0);
            let breach = self.too_many_early.clone();
            let path = fwd.path_and_query.to_string();
            hyper::ext::on_informational(&mut request, move |res| {
                if res.status() != StatusCode::EARLY_HINTS {
                    return;
                }
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n < MAX_EARLY_HINTS {
                    let _ = early.send(res.headers().clone());
                } else if n == MAX_EARLY_HINTS
                    && let Some(suppressed) = breach.log.admit()
                {
                    let upstream = &breach.upstream;
                    tracing::warn!(
                        %upstream,
                        path = %path,
                        suppressed,
                        "upstream {upstream}: more than {MAX_EARLY_HINTS} 103 responses before its response; the rest are not passed on"
                    );
                }
            });
        }
        let timeout = Duration::from_millis(self.route.response_timeout_ms);
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => return Err(ProxyError::Timeout("response head")),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(r)) => r,
        };
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.append(header::VIA, via(parts.version));
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let no_body = parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED
            || fwd.method == http::Method::HEAD;
        let body = if no_body {
            Body::Empty
        } else {
            Body::Upstream(UpstreamBody {
                body,
                len,
                idle: Duration::from_millis(self.route.body_idle_timeout_ms),
                pending: Bytes::new(),
                idle_timer: None,
            })
        };
        Ok(Response {
            status: parts.status,
            headers,
            body,
        })
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    let mut deepest = e.to_string();
    while let Some(s) = source {
        if s.is::<ConnectTimedOut>() {
            return ProxyError::Timeout("connect");
        }
        deepest = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        ProxyError::Failed(format!("connect failed: {deepest}"))
    } else {
        ProxyError::Failed(deepest)
    }
}

/// The `502`/`504` a client gets when the upstream fails.
pub fn error_response(e: &ProxyError) -> Response {
    let status = e.status();
    let text = match status {
        StatusCode::GATEWAY_TIMEOUT => "upstream timed out\n",
        _ => "bad gateway\n",
    };
    crate::origin::simple(status, text)
}

/// A response body streamed from the upstream.
pub struct UpstreamBody {
    body: Incoming,
    /// `content-length`, when the upstream sent one.
    len: Option<u64>,
    idle: Duration,
    pending: Bytes,
    /// While the engine waits for the next frame: the idle timeout.
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl UpstreamBody {
    /// The `content-length` the upstream declared, if any.
    pub fn declared_len(&self) -> Option<u64> {
        self.len
    }

    /// The next chunk of at most `max` bytes, `None` at the end; an error if
    /// the upstream breaks off or sends nothing for the idle timeout.
    pub async fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        while self.pending.is_empty() {
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream body idle timeout",
                    ));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(std::io::Error::other(e)),
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers are not forwarded.
            if let Ok(data) = frame.into_data() {
                self.pending = data;
            }
        }
        let n = max.min(self.pending.len());
        Ok(Some(self.pending.split_to(n)))
    }
}

impl crate::http2::Source for UpstreamBody {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        loop {
            if !self.pending.is_empty() {
                self.idle_timer = None;
                let n = max.min(self.pending.len());
                return Poll::Ready(Some(Ok(self.pending.split_to(n))));
            }
            match http_body::Body::poll_frame(Pin::new(&mut self.body), cx) {
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                // Trailers are not forwarded.
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending = data;
                    }
                    self.idle_timer = None;
                }
                Poll::Pending => {
                    let idle = self.idle;
                    let timer = self
                        .idle_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "upstream body idle timeout",
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Box any request body for the client.
pub fn boxed<B>(body: B) -> RequestBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An empty request body (pushed fetches).
pub fn empty() -> RequestBody {
    boxed(http_body_util::Empty::<Bytes>::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, except: &[&str]) -> ProxyRoute {
        ProxyRoute {
            prefix: prefix.into(),
            upstream: "http://127.0.0.1:9".into(),
            protocol: UpstreamProtocol::Http1,
            except: except.iter().map(|s| s.to_string()).collect(),
            connect_timeout_ms: 100,
            response_timeout_ms: 100,
            body_idle_timeout_ms: 100,
            pool_idle: 1,
            link_hints: true,
        }
    }

    #[tokio::test]
    async fn longest_prefix_wins_and_except_goes_static() {
        let proxy = Proxy::new(&[route("/", &["/assets/"]), route("/api/", &[])]);
        assert_eq!(proxy.route("/api/x").unwrap().route.prefix, "/api/");
        assert_eq!(proxy.route("/page").unwrap().route.prefix, "/");
        assert!(proxy.route("/assets/site.css").is_none());
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }
}
