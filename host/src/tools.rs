//! `herald policy ...`: tools for policy authors, in the spirit of Shopify's
//! function-runner and `extism call`.
//!
//! - `check`: is this component a policy? What does it import and export?
//! - `run`: the hints each request gets, with time, instructions and memory.
//! - `test`: run the policy's sample requests; fail on a mismatch (for CI).
//!
//! Invariant: these run the very engine and limits `herald serve` uses (plus
//! instruction counting), so what passes here behaves the same when served.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::policy::samples::{Sample, Samples};
use crate::policy::{Hint, Limits, Policy, PolicyEngine};

/// The policy configuration and limits to run with: from a herald.toml, or defaults.
pub fn load_config(path: Option<&Path>) -> Result<Config, String> {
    let config = match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    // What `serve` would refuse of `[policy]` (the rest, such as a document
    // root, is not the tools' concern).
    config
        .policy
        .shown_beyond_key()
        .map_err(|e| e.to_string())?;
    Ok(config)
}

fn engine(config: &Config, fuel: bool) -> anyhow::Result<PolicyEngine> {
    let mut limits = Limits::from_config(&config.policy);
    limits.fuel = fuel;
    limits.max_concurrent_calls = 4;
    PolicyEngine::new(limits, config.policy.effective_cache_dir())
}

/// `herald policy check`: one line per problem; `Ok` text when it fits.
pub async fn check(policy: &Path, config: &Config) -> Result<String, Vec<String>> {
    let name = policy.display();
    let bytes = std::fs::read(policy).map_err(|e| vec![format!("{name}: cannot read: {e}")])?;
    let engine = engine(config, false).map_err(|e| vec![format!("{name}: {e:#}")])?;
    let d = engine
        .describe(&bytes)
        .map_err(|e| vec![format!("{name}: {e:#}")])?;
    if let Some(problem) = d.problem {
        let mut lines = vec![format!("{name}: {problem}")];
        if !d.exports.iter().any(|e| e == "decide") {
            lines.push(format!(
                "{name}: exports {:?}, but a policy must export `decide`",
                d.exports
            ));
        }
        return Err(lines);
    }
    let wasi: Vec<&String> = d
        .imports
        .iter()
        .filter(|i| i.starts_with("wasi:"))
        .collect();
    let herald: Vec<&String> = d
        .imports
        .iter()
        .filter(|i| i.starts_with("herald:"))
        .collect();
    // `on-response` makes it a proxy-policy: called again on an upstream's
    // response head.
    let world = match (
        d.exports.iter().any(|e| e == "on-response"),
        d.exports.iter().any(|e| e == "reads"),
    ) {
        (true, true) => "proxy-policy-reads",
        (true, false) => "proxy-policy",
        (false, true) => "push-policy-reads",
        (false, false) => "push-policy",
    };
    // What it reads is its answer to `reads`: asked as `herald serve` asks.
    let loaded = if world.ends_with("-reads") {
        let loaded = engine
            .load_compiled(
                &name.to_string(),
                &bytes,
                &d.component,
                &config.policy.config,
            )
            .map_err(|e| vec![format!("{name}: {e:#}")])?
            .with_declared_reads()
            .await
            .map_err(|e| vec![format!("{name}: {e}")])?;
        Some(loaded)
    } else {
        None
    };
    let mut text = format!(
        "{name}: a herald:policy/{world} component ({} KiB, ready in {} ms: compiled, or loaded from the precompiled cache)\n  exports: {}\n  imports: {}\n  WASI: {} interface(s) linked, nothing granted (no files, environment or network){}\n",
        bytes.len() / 1024,
        d.compile.as_millis(),
        d.exports.join(", "),
        herald
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        wasi.len(),
        if wasi.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                wasi.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    text.push_str(&shown_line(
        loaded.as_ref().and_then(Policy::declared_reads),
    ));
    Ok(text)
}

/// Load a policy file with the configuration's `[policy.config]`, and ask
/// it what it reads, as `herald serve` does.
pub async fn load(
    policy: &Path,
    config: &Config,
    fuel: bool,
) -> Result<(Arc<PolicyEngine>, Policy), String> {
    let engine = Arc::new(engine(config, fuel).map_err(|e| format!("{e:#}"))?);
    let loaded = engine
        .load_file(policy, &config.policy.config)
        .map_err(|e| format!("{e:#}"))?
        .with_isolation(config.policy.isolation)
        .with_declared_reads()
        .await?;
    Ok((engine, loaded))
}

/// What a policy declared it reads, as `check` prints it.
pub fn shown_line(declared: Option<&crate::policy::ReadSet>) -> String {
    match declared {
        None => {
            "  reads: not declared (shown every header and cookie [policy] lets through)\n".into()
        }
        Some(reads) => format!(
            "  reads (declared): headers [{}], cookies [{}]\n",
            reads.headers.join(", "),
            reads.cookies.join(", ")
        ),
    }
}

/// One request for `run`: `METHOD /path` plus `-H 'name: value'` headers.
pub fn sample_from_args(request: &str, headers: &[String], push: bool) -> Result<Sample, String> {
    let mut table = toml::Table::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H `{h}`: expected `name: value`"))?;
        table.insert(
            name.trim().to_ascii_lowercase(),
            toml::Value::String(value.trim().to_string()),
        );
    }
    Ok(Sample {
        request: request.to_string(),
        headers: table,
        push,
        variant: None,
        expect: None,
    })
}

/// Requests from a JSON-lines file: `{"request": "GET /", "headers": {...}, "push": true}`.
pub fn samples_from_jsonl(path: &Path) -> Result<Vec<Sample>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Sample>(l)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn describe_hint(h: &Hint) -> String {
    let mut s = format!(
        "{}  u={} w={} as={}",
        h.path,
        h.urgency,
        h.weight,
        crate::planner::link::destination_name(h.destination)
    );
    if h.incremental {
        s.push_str(" i");
    }
    match h.crossorigin {
        Some(crate::policy::CorsMode::Anonymous) => s.push_str(" crossorigin=anonymous"),
        Some(crate::policy::CorsMode::UseCredentials) => s.push_str(" crossorigin=use-credentials"),
        None => {}
    }
    match h.delivery {
        crate::policy::Delivery::PushOnly => s.push_str(" push-only"),
        crate::policy::Delivery::HintOnly => s.push_str(" hint-only"),
        crate::policy::Delivery::Auto => {}
    }
    s
}

/// `herald policy run`: print each request's hints and what the call cost.
pub async fn run(policy: &Policy, samples: &[Sample]) -> Result<String, String> {
    let mut out = String::new();
    for sample in samples {
        let request = sample.to_request()?;
        let (result, stats) = policy.decide(&request).await;
        // Instructions are only exact for a call that returned: a trap or an
        // interrupt leaves the count unsettled.
        let instructions = match (&result, stats.fuel) {
            (Ok(_), Some(f)) => format!("{f} instructions"),
            _ => "instructions n/a".to_string(),
        };
        let instance = if stats.cached {
            "cached answer, no call".to_string()
        } else if stats.reused {
            format!("reused instance, call {}", stats.calls_on_instance)
        } else if stats.ahead {
            "new instance, instantiated ahead".to_string()
        } else {
            "new instance".to_string()
        };
        let cost = format!(
            "{:.1} us, {instructions}, peak memory {:.1} MiB, {instance}",
            stats.elapsed.as_secs_f64() * 1e6,
            stats.peak_memory as f64 / (1 << 20) as f64
        );
        match result {
            Ok(hints) => {
                out.push_str(&format!(
                    "{} -> {} hint(s) ({cost})\n",
                    sample.request,
                    hints.len()
                ));
                for h in &hints {
                    out.push_str(&format!("  {}\n", describe_hint(h)));
                }
            }
            Err(failure) => out.push_str(&format!(
                "{} -> no hints: the policy {failure} ({cost})\n",
                sample.request
            )),
        }
    }
    Ok(out)
}

/// Why `herald policy test` did not pass.
pub enum TestFailure {
    /// Samples ran and at least one did not match: the report.
    Mismatch(String),
    /// The samples could not be run at all.
    Setup(String),
}

/// `herald policy test`: run the samples in `samples_path`.
pub async fn test(policy: &Policy, samples_path: &Path) -> Result<String, TestFailure> {
    let text = std::fs::read_to_string(samples_path).map_err(|e| {
        TestFailure::Setup(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!(
                    "no samples file: write {} (see `herald policy test --help`)",
                    samples_path.display()
                )
            }
            _ => format!("{}: {e}", samples_path.display()),
        })
    })?;
    let samples =
        Samples::parse(&samples_path.display().to_string(), &text).map_err(TestFailure::Setup)?;
    if samples.samples.is_empty() {
        return Err(TestFailure::Setup(format!(
            "{}: no [[sample]] entries",
            samples_path.display()
        )));
    }
    let mut report = String::new();
    let mut failed = 0;
    for (i, sample) in samples.samples.iter().enumerate() {
        let one = Samples {
            samples: vec![sample.clone()],
        };
        match crate::policy::samples::check(policy, &one).await {
            Ok(_) => report.push_str(&format!("ok    {} {}\n", i + 1, sample.request)),
            Err(e) => {
                failed += 1;
                report.push_str(&format!(
                    "FAIL  {} {}: {}\n",
                    i + 1,
                    sample.request,
                    e.split_once("): ").map_or(e.as_str(), |(_, r)| r)
                ));
            }
        }
    }
    report.push_str(&format!(
        "{} passed, {} failed\n",
        samples.samples.len() - failed,
        failed
    ));
    if failed > 0 {
        Err(TestFailure::Mismatch(report))
    } else {
        Ok(report)
    }
}
