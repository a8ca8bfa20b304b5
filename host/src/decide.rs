//! Ask the policy and plan its answer: the protocol-independent middle of
//! every request, shared by the HTTP/2 and HTTP/1.1 paths.
//!
//! Invariant: never touches a connection. It returns a plan; the caller
//! delivers it the way its protocol allows.

use std::sync::Arc;

use http::StatusCode;

use crate::metrics::Metrics;
use crate::planner::{self, Plan};
use crate::policy::registry::Version;
use crate::policy::{PolicyFailure, input};
use crate::server::Shared;

/// Where a request is going, and what the origin answers.
pub struct Begun {
    /// `:authority`, or `Host` (HTTP/1.1 clients send `Host`; HTTP/2 clients
    /// send `:authority`; each protocol says which comes first).
    pub authority: Option<String>,
    pub path_and_query: String,
    pub response: crate::origin::Response,
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
    let response = if shared.serves(authority.as_deref().unwrap_or(""), sni) {
        shared
            .origin
            .respond(
                &parts.method,
                parts.uri.path(),
                &parts.headers,
                crate::origin::Serve::Request,
            )
            .await
    } else {
        crate::origin::misdirected()
    };
    Begun {
        authority,
        path_and_query,
        response,
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

/// The plan, and the counters of the policy version that made it (later
/// steps count pushes and cancels there).
pub struct Decided {
    pub plan: Plan,
    /// The A/B variant that answered (`default` outside experiments).
    pub variant: String,
    /// A `Set-Cookie` for the final response: the user's new sticky key.
    pub set_cookie: Option<http::HeaderValue>,
    pub metrics: Arc<Metrics>,
}

/// Call the active policy (if any) and plan its hints. The registry is read
/// once: a swap during the call does not change which version answers.
pub async fn hints_for(shared: &Shared, ask: &Ask<'_>) -> Decided {
    // Not ours to serve: no policy call, no hints.
    let live = match ask.status {
        StatusCode::MISDIRECTED_REQUEST => None,
        _ => shared.registry.as_ref().map(|r| r.snapshot()),
    };
    let (version, set_cookie) = match live.as_deref() {
        Some(live) => match &live.experiment {
            Some(experiment) => {
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
            None => (live.active().cloned(), None),
        },
        None => (None, None),
    };
    let metrics = version
        .as_ref()
        .map_or_else(|| shared.metrics.clone(), |v| v.metrics.clone());
    let variant = version
        .as_ref()
        .map_or_else(|| "default".to_string(), |v| v.variant.clone());
    let plan = plan_with(shared, ask, version.as_deref(), &metrics).await;
    Decided {
        plan,
        variant,
        set_cookie,
        metrics,
    }
}

async fn plan_with(
    shared: &Shared,
    ask: &Ask<'_>,
    version: Option<&Version>,
    metrics: &Metrics,
) -> Plan {
    Metrics::inc(&metrics.requests);
    let hints = match version.map(|v| &v.policy) {
        Some(policy) => {
            Metrics::inc(&metrics.policy_calls);
            let input = input::build(
                ask.parts,
                ask.scheme,
                ask.authority,
                ask.can_push,
                version.map_or("default", |v| &v.variant),
            );
            let (result, stats) = policy.decide(&input).await;
            if stats.cached {
                Metrics::inc(&metrics.policy_cached);
            } else {
                metrics.observe_policy_call(stats.elapsed);
            }
            match result {
                Ok(hints) => hints,
                Err(failure) => {
                    count_failure(shared, metrics, ask, policy.name(), &failure);
                    Vec::new()
                }
            }
        }
        None => Vec::new(),
    };
    Metrics::add(&metrics.hints, hints.len() as u64);

    // Hints only for a page that is actually served: not for errors, and not
    // for a 304 (the client has the page, and most likely its assets).
    if ask.status != StatusCode::OK || hints.is_empty() {
        return Plan::default();
    }
    let p = &shared.config.policy;
    let plan = planner::plan(
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
    );
    if !plan.invalid.is_empty() || plan.over_limit > 0 {
        Metrics::add(
            &metrics.invalid_hints,
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
    plan
}

fn count_failure(
    shared: &Shared,
    m: &Metrics,
    ask: &Ask<'_>,
    policy: &str,
    failure: &PolicyFailure,
) {
    Metrics::inc(match failure {
        PolicyFailure::Trap(_) => &m.policy_traps,
        PolicyFailure::Timeout => &m.policy_timeouts,
        PolicyFailure::Error(_) => &m.policy_errors,
        PolicyFailure::Busy => &m.policy_busy,
    });
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
