//! One HTTP/2 connection: Herald's own engine (`crate::http2`) and the
//! handler each request runs.
//!
//! The path of a request: the origin prepares the parent's response (status
//! and headers known, body not yet read); the policy is called; the planner
//! turns its answer into pushes and early hints; `push::deliver` promises
//! them through the engine, which queues each promise and its response
//! HEADERS in order and schedules its body; a `103 Early Hints` carries the
//! rest; then the parent's HEADERS, and its body through the same scheduler.
//!
//! Invariant: nothing is sent on the parent's stream after its final HEADERS
//! except its body: no promise, no 1xx (the engine refuses both).

pub mod flush;
pub mod push;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::http2::{self, Payload, Priority, Responder};
use crate::metrics::Metrics;
use crate::planner;
use crate::server::Shared;

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
    /// Push budgets and the memo of pushed paths.
    pub push_book: std::sync::Mutex<push::PushBook>,
    /// What was pushed or hinted, to count what the client then requested.
    pub followups: crate::metrics::Followups,
}

/// The engine's settings from `[h2]`.
pub fn settings(config: &crate::config::Config) -> http2::Settings {
    let h = &config.h2;
    http2::Settings {
        max_concurrent_streams: h.max_concurrent_streams,
        initial_window_size: h.initial_window_size,
        connection_window_size: h.initial_connection_window_size,
        max_frame_size: h.max_frame_size,
        max_header_list_size: h.max_header_list_size,
        max_reset_burst: h.max_pending_accept_reset_streams as u32,
        max_local_error_resets: h.max_local_error_reset_streams as u32,
        out_target: h.max_send_buffer_size,
    }
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
    let handshake = Duration::from_millis(shared.config.server.handshake_timeout_ms);
    let options = http2::Options {
        handshake_timeout: handshake,
        trace: shared.config.server.trace_frames.then_some(id),
    };
    let conn = Arc::new(Conn {
        id,
        scheme,
        client,
        sni,
        push_book: std::sync::Mutex::new(push::PushBook::new(shared.config.push.memo_size)),
        followups: crate::metrics::Followups::new(shared.config.push.memo_size),
        shared: shared.clone(),
    });
    let stop = async move {
        let _ = shutdown.wait_for(|&s| s).await;
    };
    let ended = http2::serve(
        io,
        settings(&shared.config),
        options,
        stop,
        move |request, respond| Box::pin(handle(conn.clone(), request, respond)),
    )
    .await;
    match ended {
        http2::Ended::Closed => tracing::debug!(conn = id, "connection closed"),
        http2::Ended::Io(e) => tracing::debug!(conn = id, "connection ended: {e}"),
        http2::Ended::HandshakeTimeout => tracing::info!(
            conn = id,
            "HTTP/2 preface not received within {} ms",
            handshake.as_millis()
        ),
        http2::Ended::Error(e) if e.flood => {
            shared.metrics.inc(|c| &c.floods);
            if let Some(suppressed) = shared.flood_log.admit() {
                tracing::warn!(
                    conn = id,
                    client = ?client,
                    suppressed,
                    "client flooded PING/SETTINGS frames; connection closed"
                );
            }
        }
        http2::Ended::Error(e) => tracing::info!(
            conn = id,
            client = ?client,
            "connection error: {} ({}); GOAWAY sent",
            e.message,
            e.reason
        ),
    }
}

/// A response body as the engine takes it.
pub fn payload(body: crate::origin::Body) -> Payload {
    use crate::origin::Body;
    match body {
        Body::Empty => Payload::Empty,
        Body::Bytes(b) => Payload::Bytes(b),
        Body::File { file, len } => Payload::Stream {
            source: Box::new(crate::origin::FileSource::new(file, len)),
            len: Some(len),
        },
        Body::Upstream(u) => {
            let len = u.declared_len();
            Payload::Stream {
                source: Box::new(u),
                len,
            }
        }
    }
}

/// Handle one client request: policy, promises, early hints, response.
///
/// A proxied request leaves for its upstream first; the policy's hints are
/// decided, promised and their bodies started while the upstream computes.
/// The upstream's `103`s and its response head may add hints (its
/// `Link: rel=preload`), pushed before the page's HEADERS, which go out last.
async fn handle(conn: Arc<Conn>, request: http2::Request, mut respond: Responder) {
    let shared = &conn.shared;
    let http2::Request { parts, body } = request;
    let crate::decide::Begun {
        authority,
        path_and_query,
        target,
    } = crate::decide::begin(shared, &parts, false, conn.sni.as_deref()).await;
    conn.followups.requested(&path_and_query);
    let authority_str = authority.as_deref().unwrap_or("");
    let status = target.expected_status();
    // A proxied request leaves now (the static origin does not read request
    // bodies; dropping it tells the engine to discard what comes).
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
            crate::proxy::boxed(body)
        });

    let can_push = shared.config.push.enabled && respond.push_enabled();
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
    // A page the thread's memo answers needs no future of the policy path.
    let decided = match crate::decide::recalled(shared, &ask) {
        Some(decided) => decided,
        None => crate::decide::decide(shared, &ask).await,
    };

    let prio = Priority::from_header(parts.headers.get(http2::sched::PRIORITY));
    let parent = Parent {
        conn: &conn,
        authority: authority.as_deref(),
        headers: &parts.headers,
        decided: &decided,
        can_push,
    };
    let mut sent = Sent::default();
    // A page that is ready, with nothing to push and no digest to keep,
    // needs nothing on the wire before its response: its place in the
    // scheduler, its 103 and its HEADERS go in one turn of the engine.
    let plan = &decided.plan;
    let outgoing = parent.outgoing(plan);
    let held = ready.is_some() && !matches!(outgoing, Outgoing::Round);
    let mut held_103 = None;
    if held {
        if let Outgoing::EarlyOnly(field) = outgoing {
            // The final response repeats it (borrowed from the plan).
            sent.hinted += plan.items.len();
            held_103 = Some(field);
        }
    } else {
        // The parent takes its place before its pushes: a push of the same
        // urgency that is not incremental then follows the page, not the
        // reverse.
        respond.schedule(prio);
        if upstreaming.is_some() {
            // No body until the upstream answers: the pushes go meanwhile.
            respond.idle();
        }
        parent.send(&mut respond, plan, outgoing, &mut sent).await;
    }

    let response = match (ready, upstreaming.as_mut()) {
        (Some(response), _) => response,
        (None, Some(up)) => loop {
            // Biased: a 103 the upstream sent before its response head is
            // handled before that head, even when both are waiting (its
            // pushes must be promised before the page's HEADERS). A client
            // that gave up is looked at first: so does the upstream request
            // (dropping it aborts its task).
            tokio::select! {
                biased;
                _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                    tracing::debug!(conn = conn.id, path = %path_and_query, "page reset while its upstream was computing");
                    return;
                }
                Some(hints) = up.early.recv() => {
                    // An upstream 103: its preloads are pushed where the
                    // client accepts push, the rest forwarded as a 103.
                    let values: Vec<HeaderValue> =
                        hints.get_all(http::header::LINK).iter().cloned().collect();
                    if can_push && up.link_hints {
                        let plan = crate::decide::plan_links(shared, &ask, &values, decided.metrics());
                        parent.push_and_hint(&mut respond, &plan, &mut sent).await;
                    } else if let Some(field) = planner::link::join(&values) {
                        send_103(&conn, &mut respond, &field, values.len(), decided.metrics());
                    }
                }
                head = &mut up.response => {
                    break head.unwrap_or_else(|_| crate::origin::simple(
                        StatusCode::BAD_GATEWAY,
                        "bad gateway\n",
                    ));
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

    let status = response.status;
    // What the page adds to the origin's head, sent after it (appending to
    // the head would grow its map on every request).
    let extra = [
        sent.links.take().map(|v| (http::header::LINK, v)),
        decided
            .set_cookie
            .clone()
            .map(|v| (http::header::SET_COOKIE, v)),
        decided
            .digest_cookie(shared, conn.scheme == "https")
            .map(|v| (http::header::SET_COOKIE, v)),
    ];
    let body = if parts.method == Method::HEAD {
        Payload::Empty
    } else {
        payload(response.body)
    };
    let stream = respond.stream_id();
    let log = shared.config.server.access_log.then(|| AccessLog {
        conn: conn.id,
        stream,
        method: parts.method.clone(),
        path: path_and_query.clone(),
        status: status.as_u16(),
        pushed: sent.pushed,
        hinted: sent.hinted,
        variant: decided.variant().to_string(),
    });
    let done: Option<http2::Done> = log.map(|log| -> http2::Done {
        Box::new(move |finished: http2::Finished| {
            let outcome = match finished.outcome {
                http2::Outcome::Complete => "ok",
                http2::Outcome::NotSent => "not-sent",
                _ => "incomplete",
            };
            log.write(finished.bytes, outcome);
        })
    });
    let fields = response
        .headers
        .iter()
        .chain(held_103.as_deref().map(|v| (&http::header::LINK, v)))
        .chain(extra.iter().flatten().map(|(n, v)| (n, v)));
    let before = http2::Before {
        schedule: held.then_some(prio),
        early_hints: held_103.as_deref(),
    };
    match respond.respond_after(before, status, fields, body, done) {
        Ok(()) if held_103.is_some() => {
            decided.metrics().early_hints_sent(plan.items.len());
            parent.hinted_own_plan();
        }
        Ok(()) => {}
        Err(e) => {
            tracing::debug!(conn = conn.id, path = %path_and_query, "response not sent: {e:?}")
        }
    }
}

/// The access log line of one request, written when its response is over.
struct AccessLog {
    conn: u64,
    stream: u32,
    method: Method,
    path: String,
    status: u16,
    pushed: usize,
    hinted: usize,
    variant: String,
}

impl AccessLog {
    fn write(&self, bytes: u64, outcome: &str) {
        tracing::info!(
            conn = self.conn,
            stream = self.stream,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes,
            pushed = self.pushed,
            hinted = self.hinted,
            outcome,
            variant = %self.variant,
            "request"
        );
    }
}

/// What a plan's delivery takes.
enum Outgoing<'p> {
    /// Nothing: most requests (assets, pages without a policy).
    Nothing,
    /// Nothing to push and no digest to keep: the plan's own `Link` field
    /// (a cached plan's is made once) in one 103, with no delivery round.
    EarlyOnly(Cow<'p, HeaderValue>),
    /// A delivery round: pushes, budgets, the digest.
    Round,
}

/// What every round of a page's pushes and hints needs.
struct Parent<'a> {
    conn: &'a Arc<Conn>,
    authority: Option<&'a str>,
    /// The page's request headers.
    headers: &'a HeaderMap,
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
    /// Promise one plan's pushes (before the page's HEADERS); their bodies
    /// go as the scheduler allows. Returns what is left to hint.
    async fn round(
        &self,
        respond: &mut Responder,
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
            self.decided.metrics(),
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
        delivered.early
    }

    /// Remember a plan's links as hinted on this connection (a 103 of
    /// them was sent); `send_103` counted the 103.
    fn hinted_plan(&self, plan: &planner::Plan) {
        if std::ptr::eq(plan, &*self.decided.plan) {
            self.hinted_own_plan();
        } else {
            let paths = plan.items.iter().map(|i| i.hint.path_and_query.as_str());
            self.conn.followups.hinted(paths, self.decided.metrics());
        }
    }

    /// [`hinted_plan`](Self::hinted_plan) of the page's own plan, a shared
    /// list: inlined, on a page hinted as its connection's last one, it is
    /// a comparison.
    #[inline(always)]
    fn hinted_own_plan(&self) {
        let plan = &self.decided.plan;
        let paths = plan.items.iter().map(|i| i.hint.path_and_query.as_str());
        self.conn
            .followups
            .hinted_set(plan, paths, self.decided.metrics());
    }

    /// A round, then what it did not push as a `103 Early Hints`, whose
    /// `Link` field the final response repeats.
    async fn push_and_hint(&self, respond: &mut Responder, plan: &planner::Plan, sent: &mut Sent) {
        let outgoing = self.outgoing(plan);
        self.send(respond, plan, outgoing, sent).await;
    }

    /// What delivering `plan` takes.
    fn outgoing<'p>(&self, plan: &'p planner::Plan) -> Outgoing<'p> {
        if plan.items.is_empty() {
            return Outgoing::Nothing;
        }
        match plan.early_links(self.can_push) {
            Some(field) if self.decided.digest.is_none() => Outgoing::EarlyOnly(field),
            _ => Outgoing::Round,
        }
    }

    /// [`push_and_hint`](Self::push_and_hint), once its `outgoing` is known.
    async fn send(
        &self,
        respond: &mut Responder,
        plan: &planner::Plan,
        outgoing: Outgoing<'_>,
        sent: &mut Sent,
    ) {
        match outgoing {
            Outgoing::Nothing => return,
            Outgoing::EarlyOnly(field) => {
                let count = plan.items.len();
                if send_103(self.conn, respond, &field, count, self.decided.metrics()) {
                    self.hinted_plan(plan);
                }
                sent.add_links(field.into_owned(), count);
                return;
            }
            Outgoing::Round => {}
        }
        let early = self.round(respond, plan, sent).await;
        // Nothing was to be pushed: the plan's own field (a cached plan's is
        // made once); otherwise the field of what is left.
        let Some(field) = plan.early_links(self.can_push).or_else(|| {
            planner::link::field(early.iter().map(|h| &**h), self.can_push).map(Cow::Owned)
        }) else {
            return;
        };
        let metrics = self.decided.metrics();
        if send_103(self.conn, respond, &field, early.len(), metrics) {
            self.conn
                .followups
                .hinted(early.iter().map(|h| h.path_and_query.as_str()), metrics);
        }
        sent.add_links(field.into_owned(), early.len());
    }
}

/// Send a `103 Early Hints` with one `Link` field holding `count` links.
fn send_103(
    conn: &Conn,
    respond: &mut Responder,
    links: &HeaderValue,
    count: usize,
    metrics: &Metrics,
) -> bool {
    match respond.early_hints(links) {
        Ok(()) => {
            metrics.early_hints_sent(count);
            true
        }
        Err(e) => {
            tracing::debug!(conn = conn.id, "103 not sent: {e:?}");
            false
        }
    }
}
