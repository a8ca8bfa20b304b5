//! The planner: from a policy's raw answer to what the host will deliver.
//!
//! It validates every hint (`validate`), enforces the per-answer limits, drops
//! what must never be pushed (the parent's own path, duplicates, non-GET
//! parents), and routes each remaining hint to a push or an early hint
//! according to the client and the hint's preferred delivery. Per-connection
//! budgets and the "already pushed" memo are applied at delivery time (see
//! `conn::push`), because only there is the connection's state known.
//!
//! Invariant: pure and synchronous. No IO, no locks, no clock.

pub mod link;
pub mod validate;

pub use validate::{InvalidHint, ValidHint};

use crate::policy::{Delivery, Hint};

/// Where a hint goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A PUSH_PROMISE (may still fall back to an early hint at delivery).
    Push,
    /// A `103 Early Hints` and a `Link` in the final response.
    EarlyHint,
}

/// A hint with its route. The hint is shared: a cached plan is handed to
/// every request that gets its answer (`decide.rs`), and each takes its
/// hints without copying them.
#[derive(Debug, Clone)]
pub struct Planned {
    pub hint: std::sync::Arc<ValidHint>,
    pub route: Route,
}

/// The planner's answer for one request.
#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Planned>,
    /// Hints refused by validation, with the reason.
    pub invalid: Vec<InvalidHint>,
    /// Hints beyond `max_hints`, dropped unread.
    pub over_limit: usize,
    /// [`Plan::early_links`], once made.
    early_links: validate::LinkMemo,
}

impl Plan {
    /// Every item as one `Link` field, when every item is routed as an early
    /// hint (nothing to push, so delivery sends them all, in this order).
    /// Made once per plan: a cached plan's field serves every request that
    /// gets it.
    ///
    /// Inlined: a cached plan's field is a load and a compare away; the
    /// first request makes it out of line.
    #[inline]
    pub fn early_links(&self, nopush: bool) -> Option<std::borrow::Cow<'_, http::HeaderValue>> {
        // Kept only for a plan that passed the test in `make_early_links`.
        if let Some(value) = self.early_links.get(nopush) {
            debug_assert!(self.items.iter().all(|i| i.route == Route::EarlyHint));
            return Some(std::borrow::Cow::Borrowed(value));
        }
        self.make_early_links(nopush)
    }

    #[cold]
    #[inline(never)]
    fn make_early_links(&self, nopush: bool) -> Option<std::borrow::Cow<'_, http::HeaderValue>> {
        if self.items.is_empty() || self.items.iter().any(|i| i.route != Route::EarlyHint) {
            return None;
        }
        let make = || {
            link::field(self.items.iter().map(|i| &*i.hint), nopush)
                .expect("a plan with items has links")
        };
        Some(self.early_links.get_or(nopush, make))
    }
}

/// What to do with an answer that contains an invalid hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnInvalid {
    /// Drop the invalid hint, keep the valid ones (default).
    #[default]
    DropHint,
    /// Drop every hint of that answer: a policy that produced one bad hint
    /// may be wrong about the others too.
    DropAll,
}

/// The facts the planner decides on.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub method: &'a http::Method,
    /// The parent's path and query.
    pub parent: &'a str,
    /// The client accepts push and the host allows it.
    pub can_push: bool,
    /// Early hints are enabled.
    pub early_hints: bool,
    pub max_hints: usize,
    pub max_hint_bytes: usize,
    pub on_invalid: OnInvalid,
}

/// Plan one answer.
pub fn plan(raw: Vec<Hint>, ctx: &Context<'_>) -> Plan {
    let mut plan = Plan {
        over_limit: raw.len().saturating_sub(ctx.max_hints),
        ..Plan::default()
    };
    let mut valid = Vec::new();
    for hint in raw.into_iter().take(ctx.max_hints) {
        match validate::validate(hint, ctx.max_hint_bytes) {
            Ok(v) => valid.push(v),
            Err(e) => plan.invalid.push(e),
        }
    }
    if !plan.invalid.is_empty() && ctx.on_invalid == OnInvalid::DropAll {
        return plan;
    }
    // Only a GET page gets hints: a HEAD is not rendered, and a push from a
    // non-GET parent is not allowed (Apache and H2O agree).
    if ctx.method != http::Method::GET {
        return plan;
    }
    let parent_path = ctx.parent.split('?').next().unwrap_or("");
    // A linear scan: answers are short (`max_hints`), and a set of copied
    // strings cost more than the scan (callgrind, BENCHMARKS.md).
    let mut seen: Vec<http::uri::PathAndQuery> = Vec::new();
    for hint in valid {
        let pq = hint.path_and_query.as_str();
        if pq == ctx.parent
            || hint.path_and_query.path() == parent_path && hint.path_and_query.query().is_none()
        {
            continue;
        }
        if seen.contains(&hint.path_and_query) {
            continue;
        }
        seen.push(hint.path_and_query.clone());
        let route = match hint.delivery {
            Delivery::Auto | Delivery::PushOnly if ctx.can_push => Route::Push,
            Delivery::PushOnly => continue,
            Delivery::Auto | Delivery::HintOnly if ctx.early_hints => Route::EarlyHint,
            _ => continue,
        };
        plan.items.push(Planned {
            hint: std::sync::Arc::new(hint),
            route,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Destination;
    use std::borrow::Cow;

    fn hint(path: &str, delivery: Delivery) -> Hint {
        Hint {
            path: path.into(),
            urgency: 3,
            incremental: false,
            weight: 16,
            destination: Destination::Script,
            crossorigin: None,
            copy_headers: None,
            headers: vec![],
            delivery,
        }
    }

    fn ctx(method: &http::Method, can_push: bool) -> Context<'_> {
        Context {
            method,
            parent: "/index.html",
            can_push,
            early_hints: true,
            max_hints: 3,
            max_hint_bytes: 4096,
            on_invalid: OnInvalid::DropHint,
        }
    }

    fn routes(p: &Plan) -> Vec<(String, Route)> {
        p.items
            .iter()
            .map(|i| (i.hint.path_and_query.to_string(), i.route))
            .collect()
    }

    #[test]
    fn routes_by_client_and_delivery() {
        let get = http::Method::GET;
        let raw = || {
            vec![
                hint("/a.js", Delivery::Auto),
                hint("/b.js", Delivery::PushOnly),
                hint("/c.js", Delivery::HintOnly),
            ]
        };
        let p = plan(raw(), &ctx(&get, true));
        assert_eq!(
            routes(&p),
            [
                ("/a.js".into(), Route::Push),
                ("/b.js".into(), Route::Push),
                ("/c.js".into(), Route::EarlyHint)
            ]
        );
        let p = plan(raw(), &ctx(&get, false));
        assert_eq!(
            routes(&p),
            [
                ("/a.js".into(), Route::EarlyHint),
                ("/c.js".into(), Route::EarlyHint)
            ]
        );
    }

    #[test]
    fn a_plan_of_early_hints_only_has_one_link_field() {
        let get = http::Method::GET;
        let raw = || {
            vec![
                hint("/a.js", Delivery::Auto),
                hint("/c.js", Delivery::HintOnly),
            ]
        };
        let hints_only = plan(raw(), &ctx(&get, false));
        let field = hints_only.early_links(false).unwrap().into_owned();
        assert_eq!(
            field,
            "</a.js>; rel=preload; as=script, </c.js>; rel=preload; as=script"
        );
        assert!(
            matches!(hints_only.early_links(false), Some(Cow::Borrowed(f)) if *f == field),
            "kept, and lent"
        );
        assert_eq!(
            hints_only.early_links(true).unwrap().into_owned(),
            "</a.js>; rel=preload; as=script; nopush, </c.js>; rel=preload; as=script; nopush",
            "made again for the other push setting"
        );
        // Something to push: delivery decides what is left to hint.
        assert_eq!(plan(raw(), &ctx(&get, true)).early_links(true), None);
        assert_eq!(Plan::default().early_links(false), None);
    }

    #[test]
    fn never_for_non_get_parents() {
        for m in [http::Method::HEAD, http::Method::POST] {
            assert!(
                plan(vec![hint("/a.js", Delivery::Auto)], &ctx(&m, true))
                    .items
                    .is_empty()
            );
        }
    }

    #[test]
    fn drops_own_path_duplicates_and_excess() {
        let get = http::Method::GET;
        let raw = vec![
            hint("/index.html", Delivery::Auto),
            hint("/a.js", Delivery::Auto),
            hint("/a.js", Delivery::Auto),
            hint("/d.js", Delivery::Auto),
        ];
        let p = plan(raw, &ctx(&get, true));
        assert_eq!(routes(&p), [("/a.js".into(), Route::Push)]);
        assert_eq!(p.over_limit, 1);
    }

    #[test]
    fn invalid_hints_are_dropped_or_poison_the_answer() {
        let get = http::Method::GET;
        let raw = || vec![hint("/../x", Delivery::Auto), hint("/a.js", Delivery::Auto)];
        let p = plan(raw(), &ctx(&get, true));
        assert_eq!(p.invalid.len(), 1);
        assert_eq!(p.items.len(), 1);
        let mut c = ctx(&get, true);
        c.on_invalid = OnInvalid::DropAll;
        assert!(plan(raw(), &c).items.is_empty());
    }
}
