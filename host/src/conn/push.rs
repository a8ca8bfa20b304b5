//! Delivering pushes: the one place per connection that issues PUSH_PROMISEs.
//!
//! h2 sends the frames of different streams in turn, so promises issued by two
//! parents at once can reach the wire out of order (2, 6, 4, 8), and the client
//! then kills the connection. Here a parent takes the connection's push gate,
//! issues all of its promises, and keeps the gate until the frame tap has seen
//! the last of them written. Promised ids therefore reach the wire in the order
//! h2 allocated them. If the wire does not take the promises within
//! `server.promise_flush_timeout_ms` (a client that stopped reading), the gate
//! is poisoned: nobody promises on that connection again.
//!
//! The gate also owns the per-connection budgets and the memo of pushed paths,
//! and never lets promised-or-open pushes exceed what the client's
//! MAX_CONCURRENT_STREAMS allows (h2 would queue them, and a reset of a queued
//! push kills the connection).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::Conn;
use super::sched::{Priority, Registered};
use crate::metrics::Metrics;
use crate::planner::{Planned, Route, ValidHint};
use crate::policy::{Delivery, Destination};

/// Per-connection push state, guarded by the push gate.
#[derive(Debug)]
pub struct PushBook {
    memo: Memo,
    pushed: usize,
    pushed_bytes: u64,
    /// Set when promises did not reach the wire in time; no more pushes then.
    poisoned: bool,
}

impl PushBook {
    pub fn new(memo_size: usize) -> PushBook {
        PushBook {
            memo: Memo::new(memo_size),
            pushed: 0,
            pushed_bytes: 0,
            poisoned: false,
        }
    }
}

/// The paths pushed on a connection, oldest forgotten first.
#[derive(Debug)]
struct Memo {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Memo {
    fn new(cap: usize) -> Memo {
        Memo {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, path: &str) -> bool {
        self.set.contains(path)
    }

    fn insert(&mut self, path: &str) {
        if self.set.insert(path.to_string()) {
            self.order.push_back(path.to_string());
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// A promise issued, waiting for its response.
pub struct Promised {
    /// Counters of the policy version that asked for this push.
    pub metrics: Arc<Metrics>,
    /// The pushed stream, its response HEADERS already queued.
    pub send: h2::SendStream<Bytes>,
    pub body: crate::origin::Body,
    pub hint: Arc<ValidHint>,
    pub slot: Registered,
    /// The pushed response's ETag (for the client's cache digest).
    pub etag: Option<String>,
}

/// The outcome of delivery for one parent.
#[derive(Default)]
pub struct Delivered {
    pub promised: Vec<Promised>,
    /// Hints to send as early hints (planned so, or fallen back from push).
    pub early: Vec<Arc<ValidHint>>,
}

/// Issue the promises of `plan` for the parent behind `respond`. Must run
/// before the parent's response HEADERS.
pub async fn deliver(
    conn: &Arc<Conn>,
    respond: &mut SendResponse<Bytes>,
    items: &[Planned],
    authority: Option<&str>,
    parent_headers: &HeaderMap,
    metrics: &Arc<Metrics>,
) -> Delivered {
    let mut out = Delivered {
        early: Vec::with_capacity(items.len()),
        ..Delivered::default()
    };
    let mut candidates = Vec::new();
    for item in items {
        match item.route {
            Route::EarlyHint => out.early.push(item.hint.clone()),
            Route::Push => candidates.push(item.hint.clone()),
        }
    }
    if candidates.is_empty() {
        return out;
    }
    let fallback = |out: &mut Delivered, hint: Arc<ValidHint>| {
        if hint.delivery == Delivery::Auto && conn.shared.config.push.early_hints {
            out.early.push(hint);
        }
    };
    let Some(authority) = authority.filter(|a| !a.is_empty()) else {
        // Without an authority there is no absolute URI to promise.
        candidates.into_iter().for_each(|h| fallback(&mut out, h));
        return out;
    };

    // Only promise what the origin can serve: a promised 404 wastes a stream.
    // The file size (or the upstream's content-length) is the estimate the
    // byte budgets work with. The pushed response head is prepared before the
    // promise: h2 opens a pushed stream directly only if its HEADERS are
    // queued before the PUSH_PROMISE is written; queued later, it waits in
    // h2's pending-open queue, where a client's RST_STREAM makes h2 kill the
    // connection. Heads from an upstream are fetched all at once.
    let fetches = candidates.into_iter().map(|hint| {
        let headers = promise_headers(&hint, parent_headers, &conn.shared.copy_headers);
        async move {
            let ask = crate::proxy::Forward {
                method: &Method::GET,
                path_and_query: hint.path_and_query.as_str(),
                authority,
                scheme: conn.scheme,
                client: conn.client,
                version: http::Version::HTTP_2,
                conn: conn.id,
            };
            let response = crate::decide::fetch_for_push(&conn.shared, &ask, &headers).await;
            (hint, headers, response)
        }
    });
    let mut servable = Vec::new();
    for (hint, headers, response) in futures_util::future::join_all(fetches).await {
        if response.status != http::StatusCode::OK {
            tracing::debug!(conn = conn.id, path = %hint.path_and_query, status = response.status.as_u16(), "hint not servable: not pushed");
            continue;
        }
        servable.push((hint, headers, response));
    }

    let flush_timeout = Duration::from_millis(conn.shared.config.server.promise_flush_timeout_ms);
    // No timeout on taking the gate: every holder leaves within the flush
    // timeout, and one that times out poisons the gate, so the rest pass at once.
    let mut book = conn.push_book.lock().await;
    if book.poisoned || !conn.peer.push_enabled() {
        servable
            .into_iter()
            .for_each(|(h, _, _)| fallback(&mut out, h));
        return out;
    }

    let cfg = &conn.shared.config.push;
    let scheme = conn.scheme;
    let mut last_id = None;
    let mut this_request = 0usize;
    let mut this_request_bytes = 0u64;
    for (hint, headers, response) in servable {
        let len = response.body.len();
        let pq = hint.path_and_query.as_str();
        if book.memo.contains(pq) {
            // Pushed earlier on this connection: the client has it.
            continue;
        }
        // The client's MAX_CONCURRENT_STREAMS bounds the pushed streams that
        // are promised or open; h2 would queue the rest, and a client reset
        // of a queued push makes h2 kill the connection.
        let peer_limit = conn.peer.max_concurrent_streams() as usize;
        let over_budget = this_request >= cfg.max_per_request
            || book.pushed >= cfg.max_per_connection
            || this_request_bytes + len > cfg.max_bytes_per_request
            || book.pushed_bytes + len > cfg.max_bytes_per_connection
            || conn.peer.open_pushes() >= peer_limit;
        if over_budget {
            Metrics::inc(&metrics.pushes_over_budget);
            fallback(&mut out, hint);
            continue;
        }
        let mut request = http::Request::builder()
            .method(Method::GET)
            .uri(format!("{scheme}://{authority}{pq}"))
            .body(())
            .expect("validated path and authority form a URI");
        *request.headers_mut() = headers;
        match respond.push_request(request) {
            Ok(mut stream) => {
                let id = u32::from(stream.stream_id());
                last_id = Some(id);
                conn.peer.push_opened(id);
                book.memo.insert(pq);
                conn.followups.pushed(pq, metrics);
                book.pushed += 1;
                book.pushed_bytes += len;
                this_request += 1;
                this_request_bytes += len;
                Metrics::inc(&metrics.pushes_promised);
                let end = response.body.is_empty();
                let etag = response
                    .headers
                    .get(http::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut head = http::Response::builder()
                    .status(response.status)
                    .body(())
                    .expect("status is valid");
                *head.headers_mut() = response.headers;
                match stream.send_response(head, end) {
                    Ok(send) => {
                        let slot = conn.sched.register(
                            id,
                            Priority {
                                urgency: hint.urgency,
                                incremental: hint.incremental,
                                weight: hint.weight,
                            },
                        );
                        out.promised.push(Promised {
                            metrics: metrics.clone(),
                            send,
                            body: response.body,
                            hint,
                            slot,
                            etag,
                        });
                    }
                    Err(e) => {
                        conn.peer.push_closed(id);
                        tracing::debug!(
                            conn = conn.id,
                            path = pq,
                            "pushed response not queued: {e}"
                        );
                    }
                }
            }
            Err(e) => {
                // The client disabled push since we looked, or the parent is gone.
                tracing::debug!(conn = conn.id, path = pq, "push refused by h2: {e}");
                fallback(&mut out, hint);
            }
        }
    }
    if let Some(id) = last_id {
        let written = tokio::time::timeout(flush_timeout, conn.peer.wait_promised(id));
        tokio::select! {
            result = written => {
                if result.is_err() {
                    book.poisoned = true;
                    tracing::warn!(
                        conn = conn.id,
                        "promises not written within {} ms (client not reading?): no more pushes on this connection",
                        flush_timeout.as_millis()
                    );
                }
            }
            _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                // The client reset the page: h2 dropped its queue, promises
                // included. Those not written will never be: forget them (the
                // gate stays open for the connection's other pages).
                let on_wire = conn.peer.promised_on_wire();
                out.promised.retain(|p| {
                    let id = p.slot.stream();
                    if id > on_wire {
                        conn.peer.push_closed(id);
                    }
                    id <= on_wire
                });
            }
        }
    }
    out
}

/// The request headers of a promise: the parent's headers the response may
/// vary on, then the hint's own, then an `accept` fitting the destination.
fn promise_headers(hint: &ValidHint, parent: &HeaderMap, default_copy: &[HeaderName]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let copy = |name: &HeaderName, headers: &mut HeaderMap| {
        for value in parent.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    };
    let names = hint.copy_headers.as_deref().unwrap_or(default_copy);
    names.iter().for_each(|n| copy(n, &mut headers));
    for (name, value) in &hint.headers {
        headers.insert(name.clone(), value.clone());
    }
    if !headers.contains_key(http::header::ACCEPT) {
        let accept = match hint.destination {
            Destination::Style => "text/css,*/*;q=0.1",
            Destination::Image => "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
            _ => "*/*",
        };
        headers.insert(http::header::ACCEPT, HeaderValue::from_static(accept));
    }
    headers
}

/// Answer one promise with a complete response (or a reset if the body fails).
pub async fn serve_pushed(conn: Arc<Conn>, promised: Promised) {
    let Promised {
        metrics,
        mut send,
        body,
        hint,
        slot,
        etag: _,
    } = promised;
    let id = slot.stream();
    slot.arm();
    if body.is_empty() {
        Metrics::inc(&metrics.pushes_completed);
        return;
    }
    match super::send::send_body(&mut send, body, &slot).await {
        Ok(n) => {
            Metrics::add(&metrics.pushed_bytes, n);
            Metrics::inc(&metrics.pushes_completed);
        }
        Err((n, e)) => {
            Metrics::add(&metrics.pushed_bytes, n);
            // Reset by the client, or by us below: either way closed. (A reset
            // we send is also seen by the tap.)
            conn.peer.push_closed(id);
            match e {
                super::send::SendError::Reset(reason) => {
                    Metrics::inc(&metrics.pushes_cancelled);
                    Metrics::add(&metrics.wasted_bytes, n);
                    tracing::debug!(conn = conn.id, path = %hint.path_and_query, sent = n, "client reset push: {reason:?}");
                }
                other => {
                    tracing::debug!(conn = conn.id, path = %hint.path_and_query, "push body failed: {other:?}");
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                }
            }
        }
    }
}
