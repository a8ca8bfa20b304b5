//! `herald bench instructions`: one request's policy path (the request
//! handed to the policy, the call, the plan of its answer), repeated
//! `calls` times on one thread, for `valgrind --tool=callgrind`, whose
//! instruction count is stable on a noisy machine where a timer is not.
//! `scripts/callgrind` runs it twice and reports the difference per call.
//! With `cached`, a decision cache answers every run after the first: the
//! count is then a cache hit's (the key read from the request, the lookup,
//! the plan made once and shared).
//!
//! The measured work is inside [`measured`], which callgrind is told to
//! collect alone (`--toggle-collect`): start-up, compilation and the epoch
//! thread are left out.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::planner;
use crate::policy::{Isolation, Limits, Policy, PolicyEngine};

/// Options of `herald bench instructions`.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: PathBuf,
    pub calls: usize,
    pub isolation: Isolation,
    /// Show the policy only what the reference policy reads
    /// (`request_headers`, `request_cookies`), not the whole request.
    pub shown_as_read: bool,
    /// Show the policy what it declares it reads (as `herald serve`).
    pub as_declared: bool,
    /// A decision cache in front: each run after the first is a hit.
    pub cached: bool,
}

/// Run the policy path `calls` times; returns the hints planned in all.
pub fn run(opts: &Options) -> anyhow::Result<usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = Config::parse("bench", super::DEMO_MAP)?;
    let mut limits = Limits::from_config(&config.policy);
    // Small enough for valgrind to map the pool; long enough that a slowed
    // call is never cut off.
    limits.max_concurrent_calls = 2;
    limits.reuse_idle = 1;
    limits.memory_bytes = 16 << 20;
    limits.deadline = Duration::from_secs(30);
    if opts.cached {
        // Keyed by its declaration with `--as-declared`; without, by no
        // header or cookie, and so shown none (as `herald serve` would).
        limits.cache.entries = 1024;
    }
    let engine = PolicyEngine::new(limits, None)?;
    let policy = engine
        .load_file(&opts.policy, &config.policy.config)?
        .with_isolation(opts.isolation);
    // Shown everything unless asked otherwise, whatever the policy declares:
    // the count stays comparable with earlier sessions'.
    let policy = if opts.shown_as_read {
        policy.with_shown(super::shown_as_read())
    } else if opts.as_declared {
        rt.block_on(policy.with_declared_reads())
            .map_err(anyhow::Error::msg)?
    } else {
        policy
    };
    let request = http::Request::builder()
        .method("GET")
        .uri("https://shop.example/")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0")
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-encoding", "gzip, br")
        .header("sec-fetch-dest", "document")
        .header("cookie", "session=abc123; herald-have=/img/logo.svg")
        .body(())?;
    let (parts, ()) = request.into_parts();
    // Warm: the first calls touch lazily initialised state.
    measured(&rt, &policy, &parts, 3);
    Ok(measured(&rt, &policy, &parts, opts.calls))
}

/// The measured region: `calls` times, hand the request to the policy (as
/// `herald serve` does), call it, plan the answer.
#[inline(never)]
pub fn measured(
    rt: &tokio::runtime::Runtime,
    policy: &Policy,
    parts: &http::request::Parts,
    calls: usize,
) -> usize {
    rt.block_on(async {
        let mut planned = 0;
        for _ in 0..calls {
            // As the server calls it: lowered from the request's parts.
            let (result, _) = policy.answer(parts, &super::DEMO_VIEW, None).await;
            let plan = |hints| {
                planner::plan(
                    hints,
                    &planner::Context {
                        method: &parts.method,
                        parent: "/",
                        can_push: true,
                        early_hints: true,
                        max_hints: 64,
                        max_hint_bytes: 4096,
                        on_invalid: planner::OnInvalid::default(),
                    },
                )
            };
            // Not shared without a cache, so taken; a cached answer is
            // planned once and its plan reused, as `herald serve` does.
            planned += match result.map(std::sync::Arc::try_unwrap) {
                Ok(Ok(answer)) => plan(answer.hints).items.len(),
                Ok(Err(cached)) => cached.derived(|hints| plan(hints.to_vec())).items.len(),
                Err(_) => 0,
            };
        }
        planned
    })
}
