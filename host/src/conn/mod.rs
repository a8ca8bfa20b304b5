//! One HTTP/2 connection: the h2 driver, and the handler each request runs.
//!
//! The path of a request: the origin prepares the parent's response (status
//! and headers known, body not yet read); the policy is called; the planner
//! turns its answer into pushes and early hints; `push::deliver` issues the
//! promises through the connection's push gate; a `103 Early Hints` carries the
//! rest; then the parent's HEADERS and body go out, and each promise is
//! answered by its own task.
//!
//! Invariant: nothing is sent on the parent's stream after its final HEADERS
//! except its body: no promise, no 1xx (h2 would send both; clients reject them).

pub mod flush;
pub mod push;
pub mod sched;
pub mod send;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::planner;
use crate::server::Shared;
use crate::tap::{PeerState, Tap};

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id for logs.
pub fn next_id() -> u64 {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

/// Per-connection state shared by the handlers of its requests.
pub struct Conn {
    pub id: u64,
    pub scheme: &'static str,
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
    /// The server name of the TLS handshake (SNI), if any.
    pub sni: Option<Arc<str>>,
    pub shared: Arc<Shared>,
    pub peer: Arc<PeerState>,
    pub push_book: tokio::sync::Mutex<push::PushBook>,
    /// Decides whose DATA goes next.
    pub sched: Arc<sched::Scheduler>,
    /// What was pushed or hinted, to count what the client then requested.
    pub followups: crate::metrics::Followups,
}

/// Serve HTTP/2 on an established byte stream (TLS with ALPN h2, or h2c).
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
    let peer = PeerState::new(id, shared.config.server.trace_frames);
    let io = flush::DeferredFlush::new(Tap::new(io, peer.clone()));
    let h = &shared.config.h2;
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(h.initial_window_size)
        .initial_connection_window_size(h.initial_connection_window_size)
        .max_concurrent_streams(h.max_concurrent_streams)
        .max_header_list_size(h.max_header_list_size)
        .max_frame_size(h.max_frame_size)
        .max_send_buffer_size(h.max_send_buffer_size)
        .max_concurrent_reset_streams(h.max_concurrent_reset_streams)
        .reset_stream_duration(Duration::from_millis(h.reset_stream_duration_ms))
        .max_pending_accept_reset_streams(h.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(h.max_local_error_reset_streams));
    let handshake = Duration::from_millis(shared.config.server.handshake_timeout_ms);
    let mut connection =
        match tokio::time::timeout(handshake, builder.handshake::<_, Bytes>(io)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::info!(conn = id, "HTTP/2 handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(
                    conn = id,
                    "HTTP/2 preface not received within {} ms",
                    handshake.as_millis()
                );
                return;
            }
        };
    let conn = Arc::new(Conn {
        id,
        scheme,
        client,
        sni,
        peer: peer.clone(),
        push_book: tokio::sync::Mutex::new(push::PushBook::new(shared.config.push.memo_size)),
        sched: Arc::new(sched::Scheduler::new(peer.clone())),
        followups: crate::metrics::Followups::new(shared.config.push.memo_size),
        shared,
    });
    let mut draining = false;
    loop {
        let next = tokio::select! {
            next = connection.accept() => next,
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.graceful_shutdown();
                continue;
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                let conn = conn.clone();
                // Boxed: the handler's future (3 KB) is copied once into
                // its box; the task then moves only a pointer.
                tokio::spawn(Box::pin(handle(conn, request, respond)));
            }
            Some(Err(_)) if conn.peer.flooded() => {
                Metrics::inc(&conn.shared.metrics.floods);
                if let Some(suppressed) = conn.shared.flood_log.admit() {
                    tracing::warn!(
                        conn = id,
                        client = ?client,
                        suppressed,
                        "client flooded PING/SETTINGS frames; connection closed"
                    );
                }
                break;
            }
            Some(Err(e)) => {
                if e.is_go_away() || e.is_io() {
                    tracing::debug!(conn = id, "connection ended: {e}");
                } else {
                    tracing::info!(conn = id, "connection error: {e}");
                }
                break;
            }
            None => break,
        }
    }
    tracing::debug!(conn = id, "connection closed");
}

/// Handle one client request: policy, promises, early hints, response.
///
/// A proxied request leaves for its upstream first; the policy's hints are
/// decided, promised and their bodies started while the upstream computes.
/// The upstream's `103`s and its response head may add hints (its
/// `Link: rel=preload`), pushed before the page's HEADERS, which go out last.
async fn handle(
    conn: Arc<Conn>,
    request: http::Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let shared = &conn.shared;
    let (parts, body) = request.into_parts();
    let crate::decide::Begun {
        authority,
        path_and_query,
        target,
    } = crate::decide::begin(shared, &parts, false, conn.sni.as_deref()).await;
    conn.followups.requested(&path_and_query);
    let authority_str = authority.as_deref().unwrap_or("");
    let status = target.expected_status();
    // A proxied request leaves now (the static origin does not read request
    // bodies; dropping it tells h2 to stop accepting it).
    let fwd = crate::proxy::Forward {
        method: &parts.method,
        path_and_query: &path_and_query,
        authority: authority_str,
        scheme: conn.scheme,
        client: conn.client,
        version: http::Version::HTTP_2,
        conn: conn.id,
    };
    let (ready, mut upstreaming) =
        crate::decide::start(shared, target, &fwd, &parts.headers, || {
            crate::proxy::boxed(crate::proxy::H2RequestBody(body))
        });

    let can_push = shared.config.push.enabled && conn.peer.push_enabled();
    let ask = crate::decide::Ask {
        parts: &parts,
        scheme: conn.scheme,
        authority: authority_str,
        path_and_query: &path_and_query,
        status,
        can_push,
        conn: conn.id,
        client: conn.client,
    };
    let decided = crate::decide::hints_for(shared, &ask).await;

    // The parent takes its place before its pushes: a push of the same
    // urgency that is not incremental then follows the page, not the reverse.
    let slot = conn.sched.register(
        u32::from(respond.stream_id()),
        sched::Priority::from_header(parts.headers.get(sched::PRIORITY)),
    );
    if upstreaming.is_some() {
        // No body until the upstream answers: the pushes go meanwhile.
        slot.idle();
    }
    let parent = Parent {
        conn: &conn,
        authority: authority.as_deref(),
        headers: &parts.headers,
        decided: &decided,
        can_push,
    };
    let mut sent = Sent::default();
    parent
        .push_and_hint(&mut respond, &decided.plan, &mut sent)
        .await;

    let mut response = match (ready, upstreaming.as_mut()) {
        (Some(response), _) => response,
        (None, Some(up)) => loop {
            tokio::select! {
                head = &mut up.response => {
                    break head.unwrap_or_else(|_| crate::origin::simple(
                        StatusCode::BAD_GATEWAY,
                        "bad gateway\n",
                    ));
                }
                Some(hints) = up.early.recv() => {
                    // An upstream 103: its preloads are pushed where the
                    // client accepts push, the rest forwarded as a 103.
                    let values: Vec<HeaderValue> =
                        hints.get_all(http::header::LINK).iter().cloned().collect();
                    if can_push && up.link_hints {
                        let plan = crate::decide::plan_links(shared, &ask, &values, &decided.metrics);
                        parent.push_and_hint(&mut respond, &plan, &mut sent).await;
                    } else if let Some(field) = planner::link::join(&values) {
                        send_103(&conn, &mut respond, field, values.len(), &decided.metrics);
                    }
                }
                // The client gave up on the page: so does the upstream
                // request (dropping it aborts its task).
                _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                    tracing::debug!(conn = conn.id, path = %path_and_query, "page reset while its upstream was computing");
                    return;
                }
            }
        },
        (None, None) => unreachable!("a target is either ready or upstream"),
    };
    // The upstream's response head: its preloads, through the policy's
    // `on-response` if it has one, are pushed before the page's HEADERS (no
    // promise may follow them); what is not pushed, and not already in the
    // application's own Link header, is added to it.
    if let Some(up) = &upstreaming {
        let plan =
            crate::decide::response_hints(shared, &ask, &decided, &response, up.link_hints).await;
        if !plan.items.is_empty() {
            let early = parent.round(&mut respond, &plan, &mut sent).await;
            let fresh: Vec<&planner::ValidHint> = early
                .iter()
                .map(|h| &**h)
                .filter(|h| !planner::link::names(&response.headers, h.path_and_query.as_str()))
                .collect();
            if let Some(field) = planner::link::field(fresh.iter().copied(), can_push) {
                sent.add_links(field, fresh.len());
            }
        }
    }
    drop(upstreaming);

    // Promises are on the wire: from now on the page could send at once.
    slot.arm();
    let status = response.status;
    let end = response.body.is_empty() || parts.method == Method::HEAD;
    let mut head = http::Response::builder()
        .status(response.status)
        .body(())
        .expect("status is valid");
    *head.headers_mut() = std::mem::take(&mut response.headers);
    if let Some(links) = sent.links {
        head.headers_mut().append(http::header::LINK, links);
    }
    if let Some(cookie) = decided.set_cookie.clone() {
        head.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    if let Some(cookie) = decided.digest_cookie(shared, conn.scheme == "https") {
        head.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    let mut body_sent = 0;
    let mut outcome = "ok";
    match respond.send_response(head, end) {
        Ok(mut send) => {
            if !end {
                match send::send_body(&mut send, response.body, &slot).await {
                    Ok(n) => body_sent = n,
                    Err((n, e)) => {
                        body_sent = n;
                        outcome = "incomplete";
                        tracing::debug!(conn = conn.id, path = %path_and_query, "response body not completed: {e:?}");
                    }
                }
            }
        }
        Err(e) => {
            outcome = "not-sent";
            tracing::debug!(conn = conn.id, path = %path_and_query, "response not sent: {e}");
        }
    }
    if shared.config.server.access_log {
        tracing::info!(
            conn = conn.id,
            stream = slot.stream(),
            method = %parts.method,
            path = %path_and_query,
            status = status.as_u16(),
            bytes = body_sent,
            pushed = sent.pushed,
            hinted = sent.hinted,
            outcome,
            variant = %decided.variant(),
            "request"
        );
    }
}

/// What every round of a page's pushes and hints needs.
struct Parent<'a> {
    conn: &'a Arc<Conn>,
    authority: Option<&'a str>,
    /// The page's request headers.
    headers: &'a http::HeaderMap,
    decided: &'a crate::decide::Decided,
    can_push: bool,
}

/// What a page's rounds sent before its HEADERS.
#[derive(Default)]
struct Sent {
    pushed: usize,
    hinted: usize,
    /// The final response's `Link` field: every round's, joined.
    links: Option<HeaderValue>,
}

impl Sent {
    /// Keep a round's `Link` field, of `count` links, for the final response.
    fn add_links(&mut self, field: HeaderValue, count: usize) {
        self.hinted += count;
        self.links = match self.links.take() {
            None => Some(field),
            Some(before) => planner::link::join([before, field]),
        };
    }
}

impl Parent<'_> {
    /// Deliver one plan's pushes (before the page's HEADERS) and start
    /// their bodies; returns what is left to hint.
    async fn round(
        &self,
        respond: &mut SendResponse<Bytes>,
        plan: &planner::Plan,
        sent: &mut Sent,
    ) -> Vec<Arc<planner::ValidHint>> {
        let conn = self.conn;
        let delivered = push::deliver(
            conn,
            respond,
            &plan.items,
            self.authority,
            self.headers,
            &self.decided.metrics,
        )
        .await;
        sent.pushed += delivered.promised.len();
        if let Some(digest) = &self.decided.digest {
            for p in &delivered.promised {
                if let Some(etag) = &p.etag {
                    digest.record(p.hint.path_and_query.as_str(), etag);
                }
            }
            for hint in &delivered.early {
                digest.record_current(hint.path_and_query.as_str()).await;
            }
        }
        // Bodies start now: for a proxied page, while the upstream computes.
        for promised in delivered.promised {
            tokio::spawn(push::serve_pushed(conn.clone(), promised));
        }
        delivered.early
    }

    /// A round, then what it did not push as a `103 Early Hints`, whose
    /// `Link` field the final response repeats.
    async fn push_and_hint(
        &self,
        respond: &mut SendResponse<Bytes>,
        plan: &planner::Plan,
        sent: &mut Sent,
    ) {
        let early = self.round(respond, plan, sent).await;
        // Nothing was to be pushed: the plan's own field (a cached plan's is
        // made once); otherwise the field of what is left.
        let Some(field) = plan
            .early_links(self.can_push)
            .or_else(|| planner::link::field(early.iter().map(|h| &**h), self.can_push))
        else {
            return;
        };
        sent.add_links(field.clone(), early.len());
        let metrics = &self.decided.metrics;
        if send_103(self.conn, respond, field, early.len(), metrics) {
            self.conn
                .followups
                .hinted(early.iter().map(|h| h.path_and_query.as_str()), metrics);
        }
    }
}

/// Send a `103 Early Hints` with one `Link` field holding `count` links.
fn send_103(
    conn: &Conn,
    respond: &mut SendResponse<Bytes>,
    links: HeaderValue,
    count: usize,
    metrics: &Metrics,
) -> bool {
    let mut early = http::Response::builder()
        .status(StatusCode::EARLY_HINTS)
        .body(())
        .expect("103 is valid");
    early.headers_mut().insert(http::header::LINK, links);
    match respond.send_informational(early) {
        Ok(()) => {
            Metrics::inc(&metrics.early_hints_sent);
            Metrics::add(&metrics.hinted_links, count as u64);
            true
        }
        Err(e) => {
            tracing::debug!(conn = conn.id, "103 not sent: {e}");
            false
        }
    }
}
