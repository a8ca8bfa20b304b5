//! Ask the policy and plan its answer: the protocol-independent middle of
//! every request, shared by the HTTP/2 and HTTP/1.1 paths.
//!
//! Invariant: never touches a connection. It returns a plan; the caller
//! delivers it the way its protocol allows.

use std::sync::Arc;

use http::StatusCode;

use crate::metrics::Metrics;
use crate::planner::{self, Plan};
use crate::policy::registry::{Live, Registry, Version};
use crate::policy::{PolicyFailure, front, input};
use crate::server::Shared;

/// Where a request is going, and what the origin answers.
pub struct Begun {
    /// `:authority`, or `Host` (HTTP/1.1 clients send `Host`; HTTP/2 clients
    /// send `:authority`; each protocol says which comes first).
    pub authority: Option<String>,
    pub path_and_query: String,
    pub target: Target,
}

/// Who answers a request.
pub enum Target {
    /// The static origin (or Herald itself: 421, 400...), answer ready.
    Ready(Box<crate::origin::Response>),
    /// An upstream (`[[proxy]]`): the caller starts the request with
    /// [`upstream`] and decides hints meanwhile.
    Upstream,
}

impl Target {
    /// The status the policy is told about: a proxied page is expected to
    /// succeed (its hints go out before the upstream has answered).
    pub fn expected_status(&self) -> StatusCode {
        match self {
            Target::Ready(r) => r.status,
            Target::Upstream => StatusCode::OK,
        }
    }
}

/// The start every request shares: its target, then the origin's response
/// (421 for a host this server does not serve, or that the connection's
/// certificate does not cover).
pub async fn begin(
    shared: &Shared,
    parts: &http::request::Parts,
    host_header_first: bool,
    sni: Option<&str>,
) -> Begun {
    let from_uri = parts.uri.authority().map(|a| a.as_str().to_string());
    let from_host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let authority = if host_header_first {
        from_host.or(from_uri)
    } else {
        from_uri.or(from_host)
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let target = if !shared.serves(authority.as_deref().unwrap_or(""), sni) {
        Target::Ready(Box::new(crate::origin::misdirected()))
    } else if shared.proxy.route(parts.uri.path()).is_some() {
        Target::Upstream
    } else {
        Target::Ready(Box::new(
            shared
                .origin
                .respond(
                    &parts.method,
                    parts.uri.path(),
                    &parts.headers,
                    crate::origin::Serve::Request,
                )
                .await,
        ))
    };
    Begun {
        authority,
        path_and_query,
        target,
    }
}

/// A request on its way upstream: the `103`s it sends first, then its
/// response (a 502/504 of ours if it fails). Dropping it abandons the request.
pub struct Upstreaming {
    pub early: tokio::sync::mpsc::UnboundedReceiver<http::HeaderMap>,
    pub response: tokio::task::JoinHandle<crate::origin::Response>,
    /// The route reads `Link: rel=preload` as hints.
    pub link_hints: bool,
}

impl Drop for Upstreaming {
    fn drop(&mut self) {
        self.response.abort();
    }
}

use crate::proxy::Forward;

/// The response ready now, or the upstream request started now (the body
/// is only made for the latter).
pub fn start(
    shared: &Arc<Shared>,
    target: Target,
    fwd: &Forward<'_>,
    headers: &http::HeaderMap,
    body: impl FnOnce() -> crate::proxy::RequestBody,
) -> (Option<crate::origin::Response>, Option<Upstreaming>) {
    match target {
        Target::Ready(response) => (Some(*response), None),
        Target::Upstream => (None, Some(upstream(shared, fwd, headers.clone(), body()))),
    }
}

/// Start `ask` on the upstream that routes it, in its own task, so hints can
/// be decided and delivered while the upstream computes.
pub fn upstream(
    shared: &Arc<Shared>,
    ask: &Forward<'_>,
    headers: http::HeaderMap,
    body: crate::proxy::RequestBody,
) -> Upstreaming {
    let (tx, early) = tokio::sync::mpsc::unbounded_channel();
    let path = ask
        .path_and_query
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let link_hints = shared
        .proxy
        .route(&path)
        .is_some_and(|u| u.route.link_hints);
    let shared = shared.clone();
    let (method, pq, authority) = (
        ask.method.clone(),
        ask.path_and_query.to_string(),
        ask.authority.to_string(),
    );
    let (scheme, client, version, conn) = (ask.scheme, ask.client, ask.version, ask.conn);
    let response = tokio::spawn(async move {
        let ask = Forward {
            method: &method,
            path_and_query: &pq,
            authority: &authority,
            scheme,
            client,
            version,
            conn,
        };
        fetch_upstream(&shared, &ask, headers, body, Some(tx)).await
    });
    Upstreaming {
        early,
        response,
        link_hints,
    }
}

/// Ask the upstream routing `ask` and wait for its response head; a failure
/// becomes our 502/504, logged once per burst.
pub async fn fetch_upstream(
    shared: &Shared,
    ask: &Forward<'_>,
    headers: http::HeaderMap,
    body: crate::proxy::RequestBody,
    early: Option<tokio::sync::mpsc::UnboundedSender<http::HeaderMap>>,
) -> crate::origin::Response {
    let path = ask.path_and_query.split('?').next().unwrap_or("/");
    let Some(upstream) = shared.proxy.route(path) else {
        return crate::origin::simple(StatusCode::NOT_FOUND, "not found\n");
    };
    match upstream.fetch(*ask, headers, body, early).await {
        Ok(response) => response,
        Err(e) => {
            shared.metrics.inc(|c| &c.upstream_errors);
            let status = e.status().as_u16();
            if let Some(suppressed) = shared.upstream_log.admit() {
                tracing::warn!(
                    conn = ask.conn,
                    upstream = %upstream.route.upstream,
                    path = %ask.path_and_query,
                    status,
                    suppressed,
                    "upstream {}: {e}; answered {status}",
                    upstream.route.upstream
                );
            }
            crate::proxy::error_response(&e)
        }
    }
}

/// The response a push of `path_and_query` would get: from the upstream
/// that routes it, or from the static root (the same rule as a request).
pub async fn fetch_for_push(
    shared: &Shared,
    ask: &Forward<'_>,
    headers: &http::HeaderMap,
) -> crate::origin::Response {
    let path = ask.path_and_query.split('?').next().unwrap_or("/");
    if shared.proxy.route(path).is_some() {
        let body = crate::proxy::empty();
        let response = fetch_upstream(shared, ask, headers.clone(), body, None).await;
        if response.status == StatusCode::OK
            && let Some(etag) = response
                .headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
        {
            shared
                .versions
                .upstream_etags
                .learn(ask.path_and_query, etag);
        }
        response
    } else {
        shared
            .origin
            .respond(
                &http::Method::GET,
                path,
                headers,
                crate::origin::Serve::Push,
            )
            .await
    }
}

/// What the middle needs to know about a request.
pub struct Ask<'a> {
    pub parts: &'a http::request::Parts,
    pub scheme: &'static str,
    pub authority: &'a str,
    pub path_and_query: &'a str,
    /// The status the origin will answer with.
    pub status: StatusCode,
    /// The client accepts push and the host allows it.
    pub can_push: bool,
    /// For logs.
    pub conn: u64,
    /// The client's address (experiments may key on it).
    pub client: Option<std::net::IpAddr>,
}

impl<'a> Ask<'a> {
    /// How the policy answering as `variant` sees this request.
    fn view(&self, variant: &'a str) -> input::View<'a> {
        input::View {
            scheme: self.scheme,
            authority: self.authority,
            push_enabled: self.can_push,
            variant,
        }
    }
}

/// The plan, and the counters of the policy version that made it (later
/// steps count pushes and cancels there).
pub struct Decided {
    /// Shared with the decision cache when the answer came from it.
    pub plan: Arc<Plan>,
    /// A `Set-Cookie` for the final response: the user's new sticky key.
    pub set_cookie: Option<http::HeaderValue>,
    /// The client's cache digest (`[push.cache_digest]`): record what is
    /// sent in it, then add its `Set-Cookie`.
    pub digest: Option<Arc<crate::client_cache::ClientDigest>>,
    /// The policy version that answered (for its `on-response` and its
    /// counters), or the process's counters when none did.
    answered: Answered,
}

/// Who answered a request. A version's counters are reached through it:
/// one reference count fewer a request than holding both.
enum Answered {
    Version(Arc<Version>),
    Nobody(Arc<Metrics>),
}

impl Decided {
    /// The counters of the policy version that answered, or the process's.
    pub fn metrics(&self) -> &Arc<Metrics> {
        match &self.answered {
            Answered::Version(v) => &v.metrics,
            Answered::Nobody(m) => m,
        }
    }

    /// The policy version that answered.
    pub fn version(&self) -> Option<&Version> {
        match &self.answered {
            Answered::Version(v) => Some(v),
            Answered::Nobody(_) => None,
        }
    }

    /// The A/B variant that answered (`default` outside experiments).
    pub fn variant(&self) -> &str {
        self.version().map_or("default", |v| &v.variant)
    }

    /// The digest cookie to set, if this response changed it.
    pub fn digest_cookie(&self, shared: &Shared, https: bool) -> Option<http::HeaderValue> {
        let d = &shared.config.push.cache_digest;
        self.digest
            .as_ref()?
            .set_cookie(&d.cookie, d.max_age_s, https)
    }
}

/// Call the active policy (if any) and plan its hints. The registry is read
/// once: a swap during the call does not change which version answers.
pub async fn hints_for(shared: &Shared, ask: &Ask<'_>) -> Decided {
    match recalled(shared, ask) {
        Some(decided) => decided,
        None => decide(shared, ask).await,
    }
}

/// The registry that answers `ask`, if any.
fn registry_for<'s>(shared: &'s Shared, ask: &Ask<'_>) -> Option<&'s Registry> {
    match (ask.status, &shared.registry) {
        // Not ours to serve: no policy call, no hints.
        (StatusCode::MISDIRECTED_REQUEST, _) | (_, None) => None,
        (_, Some(registry)) => Some(&**registry),
    }
}

/// The decision this thread's memo keeps for `ask`, if it may be used.
/// Synchronous: a request the memo answers (most requests for a page)
/// builds and polls no future of [`decide`], whose state and moves cost
/// about as much as the lookup. Inlined (the lookup is not): with no
/// registry, or for a request the memo never keeps, it is a test or two.
#[inline(always)]
pub fn recalled(shared: &Shared, ask: &Ask<'_>) -> Option<Decided> {
    let registry = registry_for(shared, ask).filter(|_| memo_applies(shared, ask))?;
    recall(registry, ask)
}

/// [`hints_for`] past the memo: pick the version, then its plan (from the
/// decision cache or a call), kept in the memo when it may be.
pub async fn decide(shared: &Shared, ask: &Ask<'_>) -> Decided {
    let registry = registry_for(shared, ask);
    let memo = registry.filter(|_| memo_applies(shared, ask));
    // Read before the snapshot, as `with_live` reads it.
    let stored = memo.map(Registry::stored);
    let pick = |live: &Live| match &live.experiment {
        Some(experiment) => (pick_variant(experiment, live, ask), false),
        None => ((live.active().cloned(), None), true),
    };
    let ((version, set_cookie), plain) = match registry {
        Some(registry) => registry.with_live(pick),
        None => ((None, None), false),
    };
    let metrics = version.as_ref().map_or(&shared.metrics, |v| &v.metrics);
    let digest = shared
        .digest_key
        .as_ref()
        .map(|key| client_digest(shared, key, ask));
    let (plan, hit) = plan_with(shared, ask, version.as_deref(), metrics, digest.clone()).await;
    if let (Some(registry), Some(stored), Some(version), Some(hints), true) =
        (memo, stored, &version, hit, plain)
    {
        remember(registry, stored, ask, version, &plan, hints);
    }
    Decided {
        plan,
        set_cookie,
        answered: match version {
            Some(v) => Answered::Version(v),
            None => Answered::Nobody(shared.metrics.clone()),
        },
        digest,
    }
}

/// A thread's memo of its last decisions, for the requests that need no
/// more than a comparison to be decided again: a page served 200, with no
/// A/B experiment and no cache digest in force, by a version whose cached
/// answers are keyed by the request line alone. Found by the request's
/// method, scheme, authority, `:path` and push, it gives the version and
/// its plan at once: no snapshot, no cache and no plan are looked up, each
/// a few cache lines of code and data on every request.
///
/// Every decision in it was made under one generation of one registry
/// (`under`), and the memo is emptied when the generation changes: a swap
/// is seen by the next request, and the versions it retired are held no
/// longer than that, as a thread's kept snapshot is.
struct Memo<T = Remembered> {
    under: Option<(u64, u64)>,
    slots: front::Slots<T>,
}

impl<T> Default for Memo<T> {
    fn default() -> Memo<T> {
        Memo {
            under: None,
            slots: front::Slots::new(),
        }
    }
}

/// A decision, as [`Memo`] keeps it.
struct Remembered {
    version: Arc<Version>,
    plan: Arc<Plan>,
    /// The answer's hints (counted per request as a cache hit's are).
    hints: usize,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::default();
}

impl<T> Memo<T> {
    /// The decision kept for `ask` under `under`. A memo of another
    /// generation is emptied; an empty memo (its registry's versions
    /// cannot be memoised) is not looked into.
    fn get(&mut self, under: (u64, u64), ask: &Ask<'_>) -> Option<&T> {
        if self.under != Some(under) {
            self.forget();
            return None;
        }
        let slots = &self.slots;
        as_memo_finds(ask, |front| slots.get(under.0, front.hash(under.0), front))?
    }

    /// Keep `decided` for `ask`, made under `under` (a memo of another
    /// generation is emptied first).
    fn keep(&mut self, under: (u64, u64), ask: &Ask<'_>, decided: T) {
        if self.under != Some(under) {
            self.forget();
            self.under = Some(under);
        }
        let slots = &mut self.slots;
        as_memo_finds(ask, |front| {
            slots.put(under.0, front.hash(under.0), front, decided)
        });
    }

    #[cold]
    fn forget(&mut self) {
        if self.under.take().is_some() {
            self.slots.clear();
        }
    }
}

/// Whether a decision for `ask` may be kept in, and taken from, the memo
/// (the rest is known once the version is: [`remember`]).
fn memo_applies(shared: &Shared, ask: &Ask<'_>) -> bool {
    served(ask) && shared.digest_key.is_none()
}

/// `f` of `ask` as the memo finds it (`None` for a request no table
/// keeps): the variant is left out (with no experiment, it is the
/// generation's), and so are the lists (none are declared).
fn as_memo_finds<R>(ask: &Ask<'_>, f: impl FnOnce(&front::Ask<'_>) -> R) -> Option<R> {
    let view = ask.view("");
    front::Ask::of(ask.parts, &view, &[]).map(|front| f(&front))
}

/// The decision this thread made for a request like `ask` under the
/// registry's current generation, counted as a cache hit is.
fn recall(registry: &Registry, ask: &Ask<'_>) -> Option<Decided> {
    let under = (registry.id(), registry.stored());
    let (version, plan, hints) = MEMO.with_borrow_mut(|memo| {
        let r = memo.get(under, ask)?;
        Some((r.version.clone(), r.plan.clone(), r.hints))
    })?;
    let adder = version.metrics.adder();
    adder.add(|c| &c.requests, 1);
    adder.add(|c| &c.policy_calls, 1);
    adder.add(|c| &c.policy_cached, 1);
    adder.add(|c| &c.hints, hints as u64);
    Some(Decided {
        plan,
        set_cookie: None,
        digest: None,
        answered: Answered::Version(version),
    })
}

/// Keep a decision from the decision cache in the memo, if a request like
/// it may be given it again: its version caches by the request line alone,
/// and its plan dropped nothing (a dropped hint is counted and logged per
/// request). Once per key and thread.
#[cold]
#[inline(never)]
fn remember(
    registry: &Registry,
    stored: u64,
    ask: &Ask<'_>,
    version: &Arc<Version>,
    plan: &Arc<Plan>,
    hints: usize,
) {
    if !version.policy.caches_by_request_line() || !plan.invalid.is_empty() || plan.over_limit > 0 {
        return;
    }
    let decided = Remembered {
        version: version.clone(),
        plan: plan.clone(),
        hints,
    };
    MEMO.with_borrow_mut(|memo| memo.keep((registry.id(), stored), ask, decided));
}

/// The version of the A/B variant `ask` is assigned to, and the `Set-Cookie`
/// that makes it stick. Out of line, as the digest below: what a request
/// runs on every path is kept together, and a feature that is off costs no
/// cache line of its code.
#[inline(never)]
fn pick_variant(
    experiment: &crate::policy::registry::LiveExperiment,
    live: &Live,
    ask: &Ask<'_>,
) -> (Option<Arc<Version>>, Option<http::HeaderValue>) {
    let assignment = crate::experiment::assign(
        &experiment.config,
        &experiment.sticky,
        &crate::experiment::Ask {
            headers: &ask.parts.headers,
            client: ask.client,
            https: ask.scheme == "https",
        },
    );
    let name = &experiment.config.variants[assignment.variant].name;
    let cookie = assignment
        .set_cookie
        .and_then(|c| http::HeaderValue::from_str(&c).ok());
    (live.slots.get(name).map(|s| s.current.clone()), cookie)
}

/// The client's cache digest, read from its cookie (`[push.cache_digest]`).
#[inline(never)]
fn client_digest(
    shared: &Shared,
    key: &Arc<crate::digest::DigestKey>,
    ask: &Ask<'_>,
) -> Arc<crate::client_cache::ClientDigest> {
    Arc::new(crate::client_cache::ClientDigest::from_request(
        key.clone(),
        shared.versions.clone(),
        &shared.config.push.cache_digest.cookie,
        &ask.parts.headers,
    ))
}

/// The plan of no hints, shared (an `Arc::default()` would allocate).
fn no_plan() -> Arc<Plan> {
    static NONE: std::sync::LazyLock<Arc<Plan>> = std::sync::LazyLock::new(Arc::default);
    NONE.clone()
}

/// The plan for `ask` by `version`, and the count of its answer's hints if
/// the answer came from the decision cache.
async fn plan_with(
    shared: &Shared,
    ask: &Ask<'_>,
    version: Option<&Version>,
    metrics: &Metrics,
    digest: Option<Arc<crate::client_cache::ClientDigest>>,
) -> (Arc<Plan>, Option<usize>) {
    let Some(version) = version else {
        metrics.inc(|c| &c.requests);
        return (no_plan(), None);
    };
    let policy = &version.policy;
    let view = ask.view(&version.variant);
    // A hit is planned where it is found: its plan is the answer's own.
    let hit = policy.cached(ask.parts, &view, |answer| {
        (
            answer.hints.len(),
            cached_plan(shared, ask, answer, metrics),
        )
    });
    {
        // Counted as it arrives: a request whose client leaves during the
        // call was still received (an experiment's rates would otherwise
        // undercount its slower variant).
        let adder = metrics.adder();
        adder.add(|c| &c.requests, 1);
        adder.add(|c| &c.policy_calls, 1);
        if let crate::policy::Cached::Hit((hints, _)) = &hit {
            adder.add(|c| &c.policy_cached, 1);
            adder.add(|c| &c.hints, *hints as u64);
        }
    }
    match hit {
        crate::policy::Cached::Hit((hints, plan)) => (plan, Some(hints)),
        // Behind a pointer to a future of its own: a hit runs none of its
        // code, and this function's stays the few lines a hit takes.
        crate::policy::Cached::Miss(key) => {
            let missed: std::pin::Pin<Box<dyn Future<Output = Arc<Plan>> + Send + '_>> =
                Box::pin(plan_missed(shared, ask, version, metrics, digest, key));
            (missed.await, None)
        }
    }
}

/// [`plan_with`] after the decision cache had no answer: call the policy.
async fn plan_missed(
    shared: &Shared,
    ask: &Ask<'_>,
    version: &Version,
    metrics: &Metrics,
    digest: Option<Arc<crate::client_cache::ClientDigest>>,
    key: Option<Vec<u8>>,
) -> Arc<Plan> {
    let policy = &version.policy;
    let view = ask.view(&version.variant);
    let client_cache = digest.map(|d| d as Arc<dyn crate::policy::ClientCache>);
    let (result, stats) = policy
        .answer_missed(ask.parts, &view, key, client_cache)
        .await;
    let hints = result.as_ref().map_or(0, |a| a.hints.len() as u64);
    metrics.add(|c| &c.hints, hints);
    if stats.ahead {
        metrics.inc(|c| &c.policy_ahead);
    }
    metrics.observe_policy_call(stats.elapsed);
    let answer = match result {
        Ok(answer) => answer,
        Err(failure) => {
            count_failure(shared, metrics, ask, policy.name(), &failure);
            return no_plan();
        }
    };
    // Given by the cache (another request's call filled it meanwhile): not
    // worth a failed unwrap (a locked instruction) to learn it is shared.
    let owned = if stats.cached {
        Err(answer)
    } else {
        Arc::try_unwrap(answer)
    };
    match owned {
        Ok(answer) => plan_owned(shared, ask, answer.hints, metrics),
        // Kept by the cache as well: planned once, as a hit is.
        Err(kept) => cached_plan(shared, ask, &kept, metrics),
    }
}

/// Hints only for a page that is actually served: not for errors, and not
/// for a 304 (the client has the page, and most likely its assets).
fn served(ask: &Ask<'_>) -> bool {
    ask.status == StatusCode::OK
}

/// The plan of an answer no one else holds, made for this request alone.
fn plan_owned(
    shared: &Shared,
    ask: &Ask<'_>,
    hints: Vec<crate::policy::Hint>,
    metrics: &Metrics,
) -> Arc<Plan> {
    if !served(ask) || hints.is_empty() {
        return no_plan();
    }
    Arc::new(plan_hints(shared, ask, hints, metrics))
}

/// The plan of a cached answer, its drops counted and logged: made (and its
/// links formatted) once, by the first request that got it. Everything the
/// plan depends on is in the cache key (method, path and query, push) or
/// fixed for the process (the `[push]` and `[policy]` limits).
fn cached_plan(
    shared: &Shared,
    ask: &Ask<'_>,
    answer: &crate::policy::cache::Answer,
    metrics: &Metrics,
) -> Arc<Plan> {
    if !served(ask) || answer.hints.is_empty() {
        return no_plan();
    }
    let plan = answer.derived(|hints| {
        let plan = plan_only(shared, ask, hints.to_vec());
        for item in &plan.items {
            item.hint.link(ask.can_push);
        }
        plan.early_links(ask.can_push);
        plan
    });
    report_invalid(shared, ask, &plan, metrics);
    plan
}

/// The plan for a proxied page's response head, before its HEADERS go out:
/// the hints its `Link: rel=preload` headers name (if the route reads them),
/// passed through the policy's `on-response` when it has one (which may drop
/// or add hints; if it fails, the links are used as they are).
pub async fn response_hints(
    shared: &Shared,
    ask: &Ask<'_>,
    decided: &Decided,
    response: &crate::origin::Response,
    read_links: bool,
) -> Plan {
    if response.status != StatusCode::OK {
        return Plan::default();
    }
    let links = if read_links {
        planner::link::preload_hints(response.headers.get_all(http::header::LINK), ask.authority)
    } else {
        Vec::new()
    };
    let metrics = decided.metrics();
    let hints = match decided.version() {
        Some(v) if v.policy.has_on_response() => {
            let input = v.policy.request_of(ask.parts, &ask.view(&v.variant));
            let head = v
                .policy
                .response_of(response.status.as_u16(), &response.headers);
            metrics.inc(|c| &c.policy_calls);
            let (result, stats) = v.policy.on_response(&input, &head, links.clone()).await;
            metrics.observe_policy_call(stats.elapsed);
            match result {
                Ok(hints) => {
                    metrics.add(|c| &c.hints, hints.len() as u64);
                    hints
                }
                Err(failure) => {
                    count_failure(shared, metrics, ask, v.policy.name(), &failure);
                    links
                }
            }
        }
        _ => links,
    };
    if hints.is_empty() {
        return Plan::default();
    }
    plan_hints(shared, ask, hints, metrics)
}

/// The plan for an upstream's `Link: rel=preload` values (of a `103` or of
/// its final response), validated and limited like a policy's hints.
pub fn plan_links<'a>(
    shared: &Shared,
    ask: &Ask<'_>,
    links: impl IntoIterator<Item = &'a http::HeaderValue>,
    metrics: &Metrics,
) -> Plan {
    let hints = planner::link::preload_hints(links, ask.authority);
    if hints.is_empty() {
        return Plan::default();
    }
    plan_hints(shared, ask, hints, metrics)
}

fn plan_hints(
    shared: &Shared,
    ask: &Ask<'_>,
    hints: Vec<crate::policy::Hint>,
    metrics: &Metrics,
) -> Plan {
    let plan = plan_only(shared, ask, hints);
    report_invalid(shared, ask, &plan, metrics);
    plan
}

fn plan_only(shared: &Shared, ask: &Ask<'_>, hints: Vec<crate::policy::Hint>) -> Plan {
    let p = &shared.config.policy;
    planner::plan(
        hints,
        &planner::Context {
            method: &ask.parts.method,
            parent: ask.path_and_query,
            can_push: ask.can_push,
            early_hints: shared.config.push.early_hints,
            max_hints: p.max_hints,
            max_hint_bytes: p.max_hint_bytes,
            on_invalid: shared.on_invalid,
        },
    )
}

/// Count and log (once per burst) what a plan dropped.
#[inline]
fn report_invalid(shared: &Shared, ask: &Ask<'_>, plan: &Plan, metrics: &Metrics) {
    if !plan.invalid.is_empty() || plan.over_limit > 0 {
        report_dropped(shared, ask, plan, metrics);
    }
}

#[cold]
fn report_dropped(shared: &Shared, ask: &Ask<'_>, plan: &Plan, metrics: &Metrics) {
    metrics.add(
        |c| &c.invalid_hints,
        (plan.invalid.len() + plan.over_limit) as u64,
    );
    if let Some(suppressed) = shared.invalid_log.admit() {
        let first = plan
            .invalid
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "too many hints".into());
        tracing::warn!(
            conn = ask.conn,
            path = %ask.path_and_query,
            invalid = plan.invalid.len(),
            over_limit = plan.over_limit,
            suppressed,
            "policy returned invalid hints, dropped: {first}"
        );
    }
}

fn count_failure(
    shared: &Shared,
    m: &Metrics,
    ask: &Ask<'_>,
    policy: &str,
    failure: &PolicyFailure,
) {
    let pick: crate::metrics::Pick = match failure {
        PolicyFailure::Trap(_) => |c| &c.policy_traps,
        PolicyFailure::Timeout => |c| &c.policy_timeouts,
        PolicyFailure::Error(_) => |c| &c.policy_errors,
        PolicyFailure::Busy => |c| &c.policy_busy,
    };
    m.inc(pick);
    if let Some(suppressed) = shared.failure_log.admit() {
        tracing::warn!(
            conn = ask.conn,
            policy,
            path = %ask.path_and_query,
            kind = failure.kind(),
            suppressed,
            "policy {failure}; request served without hints"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(parts: &'a http::request::Parts, can_push: bool) -> Ask<'a> {
        Ask {
            parts,
            scheme: "https",
            authority: "example.com",
            path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            status: StatusCode::OK,
            can_push,
            conn: 1,
            client: None,
        }
    }

    #[test]
    fn the_memo_answers_within_one_generation_and_lets_go_when_it_changes() {
        let parts = |uri| http::Request::get(uri).body(()).unwrap().into_parts().0;
        let (page, other) = (
            parts("https://example.com/"),
            parts("https://example.com/a"),
        );
        let held = Arc::new("decided");
        let mut memo = Memo::default();
        memo.keep((1, 5), &ask(&page, false), held.clone());
        assert_eq!(memo.get((1, 5), &ask(&page, false)), Some(&held));
        // Another path, or the same page for a client that accepts push.
        assert_eq!(memo.get((1, 5), &ask(&other, false)), None);
        assert_eq!(memo.get((1, 5), &ask(&page, true)), None);
        // Another registry's generation of the same number: nothing, and
        // the memo is emptied, its decisions dropped at once.
        assert_eq!(memo.get((2, 5), &ask(&page, false)), None);
        assert_eq!(Arc::strong_count(&held), 1);
        assert_eq!(memo.get((1, 5), &ask(&page, false)), None);
        // Kept again, then a swap (the next generation): the same.
        memo.keep((1, 5), &ask(&page, false), held.clone());
        assert_eq!(Arc::strong_count(&held), 2);
        assert_eq!(memo.get((1, 6), &ask(&page, false)), None);
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
