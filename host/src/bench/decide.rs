//! Policy decision cost, in process: one `decide` on a fresh instance
//! (pooling allocator, copy-on-write memory, instantiation, marshalling the
//! request in and the hints out), as `herald serve` runs it.
//!
//! The baseline, measured in the same run, is a minimal policy (one constant
//! hint, no configuration read), so the ratio shows what the policy itself
//! costs on top of the per-call machinery.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::policy::samples::Sample;
use crate::policy::{Limits, PolicyEngine};

/// Options of `herald bench policy`.
#[derive(Debug, Clone)]
pub struct Options {
    pub calls: usize,
    /// The policy measured (with the demo's page map as configuration).
    pub policy: PathBuf,
    /// The minimal baseline policy.
    pub baseline: PathBuf,
}

const DEMO_MAP: &str = r#"[policy.config]
"/" = ["/css/site.css u=0", "/js/app.js u=1", "/fonts/dejavu-light.woff u=1", "/img/logo.svg u=4", "/img/hero.svg u=5 i"]
"#;

async fn measure(
    engine: &PolicyEngine,
    path: &std::path::Path,
    config: &toml::Table,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
    let policy = engine.load_file(path, config)?;
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
    let request = sample.to_request().map_err(anyhow::Error::msg)?;
    for _ in 0..calls / 10 {
        let _ = policy.decide(&request).await;
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let (result, _) = policy.decide(&request).await;
        times.push(start.elapsed());
        anyhow::ensure!(result.is_ok(), "the policy failed: {:?}", result.err());
    }
    times.sort();
    Ok(times)
}

/// Measure both and print a Markdown report.
pub async fn report(opts: &Options) -> anyhow::Result<String> {
    let config = Config::parse("bench", DEMO_MAP)?;
    let mut limits = Limits::from_config(&config.policy);
    limits.deadline = Duration::from_secs(1);
    let engine = PolicyEngine::new(limits, None)?;
    // Alternate the two so both see the same machine conditions.
    let (mut base, mut measured) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        base.extend(measure(&engine, &opts.baseline, &toml::Table::new(), opts.calls / 3).await?);
        measured
            .extend(measure(&engine, &opts.policy, &config.policy.config, opts.calls / 3).await?);
    }
    base.sort();
    measured.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let mut out = format!(
        "{} calls each, fresh instance per call, one task (1 core)\n\n| policy | p50 | p90 | p99 | p50 vs baseline |\n|---|---|---|---|---|\n",
        measured.len()
    );
    out.push_str(&format!(
        "| baseline: {} | {:.2} us | {:.2} us | {:.2} us | 1.00 |\n",
        opts.baseline
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pct(&base, 0.5),
        pct(&base, 0.9),
        pct(&base, 0.99)
    ));
    out.push_str(&format!(
        "| {} (5 hints from config) | {:.2} us | {:.2} us | {:.2} us | {:.2} |\n",
        opts.policy
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pct(&measured, 0.5),
        pct(&measured, 0.9),
        pct(&measured, 0.99),
        pct(&measured, 0.5) / pct(&base, 0.5)
    ));
    Ok(out)
}
