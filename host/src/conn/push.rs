//! Delivering pushes: a page's promises, through the engine.
//!
//! The engine makes each PUSH_PROMISE, and the pushed response's HEADERS
//! right behind it, in the connection's one ordered output, so promised ids
//! reach the wire in increasing order however many pages push at once, and
//! never exceed the client's MAX_CONCURRENT_STREAMS. What is left here is
//! the host's policy: only what the origin can serve is promised, within
//! the per-request and per-connection budgets, never twice on a connection
//! (the memo), with the request headers the response may vary on. If the
//! connection's writes have not moved for `server.promise_flush_timeout_ms`
//! (a client that stopped reading), the book is poisoned: nobody promises on
//! that connection again.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::Conn;
use crate::http2::{self, Priority, PushError, PushRequest, Responder};
use crate::metrics::Metrics;
use crate::planner::{Planned, Route, ValidHint};
use crate::policy::{Delivery, Destination};

/// Per-connection push state: budgets spent, the memo, and whether pushes
/// stopped for good.
#[derive(Debug)]
pub struct PushBook {
    memo: Memo,
    pushed: usize,
    pushed_bytes: u64,
    /// Set when the connection's writes stalled; no more pushes then.
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

/// A promise made.
pub struct Promised {
    pub hint: Arc<ValidHint>,
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

/// Promise the pushes of `items` on the page behind `respond`. Must run
/// before the page's response HEADERS.
pub async fn deliver(
    conn: &Arc<Conn>,
    respond: &mut Responder,
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
    // byte budgets work with. Heads from an upstream are fetched all at once.
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

    let patience = Duration::from_millis(conn.shared.config.server.promise_flush_timeout_ms);
    let mut book = conn.push_book.lock().unwrap_or_else(|e| e.into_inner());
    if book.poisoned || !respond.push_enabled() {
        servable
            .into_iter()
            .for_each(|(h, _, _)| fallback(&mut out, h));
        return out;
    }

    let cfg = &conn.shared.config.push;
    let mut this_request = 0usize;
    let mut this_request_bytes = 0u64;
    let mut servable = servable.into_iter();
    while let Some((hint, headers, response)) = servable.next() {
        let len = response.body.len();
        let pq = hint.path_and_query.as_str();
        if book.memo.contains(pq) {
            // Pushed earlier on this connection: the client has it.
            continue;
        }
        let over_budget = this_request >= cfg.max_per_request
            || book.pushed >= cfg.max_per_connection
            || this_request_bytes + len > cfg.max_bytes_per_request
            || book.pushed_bytes + len > cfg.max_bytes_per_connection;
        if over_budget {
            metrics.inc(|c| &c.pushes_over_budget);
            fallback(&mut out, hint);
            continue;
        }
        let etag = response
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let promise = PushRequest {
            scheme: conn.scheme,
            authority,
            path: pq,
            headers: &headers,
        };
        let prio = Priority {
            urgency: hint.urgency,
            incremental: hint.incremental,
            weight: hint.weight,
        };
        let done = finished(conn.id, metrics.clone(), pq);
        let body = super::payload(response.body);
        match respond.push(
            promise,
            response.status,
            &response.headers,
            body,
            prio,
            Some(done),
            patience,
        ) {
            Ok(_) => {
                book.memo.insert(pq);
                conn.followups.pushed(pq, metrics);
                book.pushed += 1;
                book.pushed_bytes += len;
                this_request += 1;
                this_request_bytes += len;
                metrics.inc(|c| &c.pushes_promised);
                out.promised.push(Promised { hint, etag });
            }
            Err(PushError::Limit) => {
                // The client's MAX_CONCURRENT_STREAMS is reached.
                metrics.inc(|c| &c.pushes_over_budget);
                fallback(&mut out, hint);
            }
            Err(PushError::Stalled) => {
                book.poisoned = true;
                tracing::warn!(
                    conn = conn.id,
                    "promises not written within {} ms (client not reading?): no more pushes on this connection",
                    patience.as_millis()
                );
                fallback(&mut out, hint);
                servable.for_each(|(h, _, _)| fallback(&mut out, h));
                break;
            }
            Err(e) => {
                // The client disabled push since we looked, or the page is gone.
                tracing::debug!(conn = conn.id, path = pq, "push not made: {e:?}");
                fallback(&mut out, hint);
            }
        }
    }
    out
}

/// What a push's end counts: its bytes, and whether the client took it.
fn finished(conn: u64, metrics: Arc<Metrics>, path: &str) -> http2::Done {
    let path = path.to_string();
    Box::new(move |f: http2::Finished| {
        metrics.add(|c| &c.pushed_bytes, f.bytes);
        match f.outcome {
            http2::Outcome::Complete => metrics.inc(|c| &c.pushes_completed),
            http2::Outcome::Reset(reason) => {
                metrics.inc(|c| &c.pushes_cancelled);
                metrics.add(|c| &c.wasted_bytes, f.bytes);
                tracing::debug!(conn, path, sent = f.bytes, "client reset push: {reason}");
            }
            other => tracing::debug!(conn, path, "push not completed: {other:?}"),
        }
    })
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
