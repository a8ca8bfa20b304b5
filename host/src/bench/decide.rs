//! Policy decision cost, in process: one `decide` as `herald serve` runs it,
//! in both isolation modes: on a fresh instance (pooling allocator,
//! copy-on-write memory, instantiation, marshalling the request in and the
//! hints out), on a reused one (marshalling and the call), and answered from
//! the decision cache (the key built from the request, a lookup, a copy).
//!
//! The baseline, measured in the same run, is a minimal policy (one constant
//! hint, no configuration read), so the ratio shows what the policy itself
//! costs on top of the per-call machinery.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::policy::samples::Sample;
use crate::policy::{Isolation, Limits, PolicyEngine};

/// Options of `herald bench policy`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Calls measured per policy and isolation mode (fewer if the time
    /// budget runs out first).
    pub calls: usize,
    /// The policies measured (with the demo's page map as configuration),
    /// each in `fresh` and in `reuse` isolation.
    pub policies: Vec<PathBuf>,
    /// The minimal baseline policy (fresh isolation).
    pub baseline: PathBuf,
}

/// Wall-clock budget per (policy, isolation) and round: interpreted guests
/// in fresh isolation take milliseconds per call.
const BUDGET: Duration = Duration::from_secs(4);

async fn measure(
    engine: &PolicyEngine,
    path: &std::path::Path,
    config: &toml::Table,
    mode: Mode,
    calls: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let policy = engine
        .load_file(path, config)?
        .with_declared_reads()
        .await
        .map_err(anyhow::Error::msg)?;
    let policy = match mode {
        Mode::Fresh => policy,
        Mode::Everything => policy.with_shown(Default::default()),
        Mode::ReuseEverything => policy
            .with_isolation(Isolation::Reuse)
            .with_shown(Default::default()),
        Mode::Reuse => policy.with_isolation(Isolation::Reuse),
        Mode::Shown => policy.with_shown(super::shown_as_read()),
        Mode::ReuseShown => policy
            .with_isolation(Isolation::Reuse)
            .with_shown(super::shown_as_read()),
        // Every call after the first is a hit: the cost of the lookup.
        Mode::Cached => policy.with_cache(&super::reference_reads()),
    };
    let sample = Sample {
        request: "GET /".into(),
        headers: [
            ("accept", "text/html,application/xhtml+xml"),
            ("sec-fetch-dest", "document"),
            ("sec-fetch-mode", "navigate"),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench"),
            ("cookie", "session=abc123; theme=dark"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), toml::Value::String(v.into())))
        .collect(),
        push: false,
        variant: None,
        expect: None,
    };
    let parts = sample.to_parts().map_err(anyhow::Error::msg)?;
    // As the server calls it: from the HTTP request, shown what the
    // policy's lists let through, lowered from where the strings are.
    let view = sample.view();
    for _ in 0..(calls / 10).max(3) {
        let _ = policy.answer(&parts, &view, None).await;
    }
    let mut times = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let start = Instant::now();
        let (result, _) = policy.answer(&parts, &view, None).await;
        times.push(start.elapsed());
        // As `herald serve` does between requests: let the runtime run what
        // waits, here the teardown of the instance just used (off the
        // request's path, yet on this thread and in the row's "per call").
        tokio::task::yield_now().await;
        anyhow::ensure!(
            result.as_ref().is_ok_and(|h| !h.hints.is_empty()),
            "{}: the policy gave no hints: {:?}",
            path.display(),
            result.err()
        );
        if started.elapsed() > BUDGET {
            break;
        }
    }
    Ok((times, started.elapsed()))
}

/// How a row's calls are made.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Fresh, shown what the policy declares it reads (everything when it
    /// declares nothing): what `herald serve` does by default.
    Fresh,
    /// Fresh, shown every header and cookie, declared or not.
    Everything,
    Reuse,
    /// Reuse, shown every header and cookie.
    ReuseEverything,
    /// Fresh, shown only the headers and cookies the policy reads.
    Shown,
    /// Reuse, shown the same: what an interpreted guest is best run as.
    ReuseShown,
    Cached,
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Measure every policy and print a Markdown report.
pub async fn report(opts: &Options) -> anyhow::Result<String> {
    let config = Config::parse("bench", super::DEMO_MAP)?;
    let mut limits = Limits::from_config(&config.policy);
    limits.deadline = Duration::from_secs(1);
    let engine = PolicyEngine::new(limits, None)?;
    // One row per (policy, mode): the baseline first, fresh.
    // Per row: each call's latency, and the wall time of all its calls
    // with what ran between them (a retired instance's teardown).
    let mut runs: Vec<(&PathBuf, Mode, Vec<Duration>, Duration)> =
        vec![(&opts.baseline, Mode::Fresh, Vec::new(), Duration::ZERO)];
    for p in &opts.policies {
        for mode in [
            Mode::Fresh,
            Mode::Everything,
            Mode::Shown,
            Mode::Reuse,
            Mode::ReuseEverything,
            Mode::ReuseShown,
            Mode::Cached,
        ] {
            runs.push((p, mode, Vec::new(), Duration::ZERO));
        }
    }
    // Three rounds, every measurement in each: all see the same machine.
    let empty = toml::Table::new();
    for _ in 0..3 {
        for (i, (path, mode, times, whole)) in runs.iter_mut().enumerate() {
            let policy_config = if i == 0 {
                &empty
            } else {
                &config.policy.config
            };
            let (measured, wall) =
                measure(&engine, path, policy_config, *mode, opts.calls / 3).await?;
            times.extend(measured);
            *whole += wall;
        }
    }
    let pct = |v: &[Duration], p: f64| super::percentile(v, p).as_secs_f64() * 1e6;
    let base = pct(&runs[0].2, 0.5);
    let mut out = String::from(
        "one task (1 core); the policies get the demo page map (5 hints). p50..p99: what a request waits for; \
         per call: the loop's wall time over its calls, teardown of retired instances included; \
         \"fresh\" and \"reuse\": shown what the policy declares it reads (`reads`), everything when it declares nothing; \
         \"shown only what it reads\": request_headers = [sec-fetch-dest, sec-fetch-mode, accept], \
         request_cookies = [herald-have] (of a request with 5 headers and 2 cookies)\n\n\
         | policy | isolation | calls | p50 | p90 | p99 | per call | p50 vs baseline |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (i, (path, isolation, times, whole)) in runs.iter().enumerate() {
        let name = file_name(path);
        let label = if i == 0 {
            format!("baseline: {name}")
        } else {
            name
        };
        out.push_str(&format!(
            "| {label} | {} | {} | {:.2} us | {:.2} us | {:.2} us | {:.2} us | {:.2} |\n",
            match isolation {
                Mode::Fresh => "fresh",
                Mode::Everything => "fresh, shown everything",
                Mode::ReuseEverything => "reuse, shown everything",
                Mode::Reuse => "reuse",
                Mode::Shown => "fresh, shown only what it reads",
                Mode::ReuseShown => "reuse, shown only what it reads",
                Mode::Cached => "fresh + [policy.cache], all hits",
            },
            times.len(),
            pct(times, 0.5),
            pct(times, 0.9),
            pct(times, 0.99),
            whole.as_secs_f64() * 1e6 / times.len().max(1) as f64,
            pct(times, 0.5) / base
        ));
    }
    Ok(out)
}
