//! "Policies in any Wasm language", proven: the reference policy written in
//! Rust, Python, JavaScript (on QuickJS-ng and on StarlingMonkey) and C,
//! each built from source by its own build script, must give exactly the
//! hints of `plugins-example/conformance.toml` for every row, on fresh and
//! on reused instances. And the two isolation
//! modes do what they say about state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::support::*;

#[derive(Deserialize)]
struct Table {
    configs: BTreeMap<String, toml::Table>,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(default = "default_config")]
    config: String,
    request: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    expect: Vec<String>,
    #[serde(default)]
    error: bool,
}

fn default_config() -> String {
    "default".into()
}

/// What `herald policy run` said about one request.
#[derive(Debug, PartialEq)]
enum Outcome {
    Hints(Vec<String>),
    Error(String),
}

/// Run `herald policy run` on `requests` (JSON lines) with `config` (TOML);
/// its report.
fn policy_run(policy: &Path, config: &str, requests: &[serde_json::Value]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("herald.toml");
    // A deadline of 1 s unless the test sets one: a loaded machine must not
    // turn a row into a deadline test (as in `config_toml`).
    let mut config: toml::Table = config.parse().unwrap();
    if let toml::Value::Table(p) = config
        .entry("policy")
        .or_insert_with(|| toml::Table::new().into())
    {
        p.entry("deadline_ms").or_insert(1000.into());
    }
    std::fs::write(&config_path, config.to_string()).unwrap();
    let requests_path = dir.path().join("requests.jsonl");
    let lines: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
    std::fs::write(&requests_path, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["policy", "run"])
        .arg(policy)
        .arg("--config")
        .arg(&config_path)
        .arg("--requests")
        .arg(&requests_path)
        // Compiled Python and JavaScript components are cached between runs
        // (seconds each); keep that cache inside the target directory.
        .env("XDG_CACHE_HOME", workspace().join("target/test-cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "herald policy run {} failed: {}{stdout}",
        policy.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

/// `policy_run`, split per request.
fn run(policy: &Path, config: &str, requests: &[serde_json::Value]) -> Vec<Outcome> {
    let stdout = policy_run(policy, config, requests);
    let mut outcomes = Vec::new();
    for line in stdout.lines() {
        if let Some(hint) = line.strip_prefix("  ") {
            match outcomes.last_mut() {
                Some(Outcome::Hints(h)) => h.push(normalise(hint)),
                _ => panic!("a hint line outside a request: {stdout}"),
            }
        } else if let Some((_, rest)) = line.split_once(" -> ") {
            outcomes.push(match rest.strip_prefix("no hints: ") {
                Some(why) => Outcome::Error(why.to_string()),
                None => Outcome::Hints(Vec::new()),
            });
        }
    }
    assert_eq!(outcomes.len(), requests.len(), "{stdout}");
    outcomes
}

fn normalise(hint: &str) -> String {
    hint.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn config_toml(isolation: &str, policy_config: &toml::Table) -> String {
    let mut policy = toml::Table::new();
    policy.insert("isolation".into(), isolation.into());
    // As in `support::config_for`: a loaded machine must not turn a
    // conformance row into a deadline test (deadlines have their own).
    policy.insert("deadline_ms".into(), 1000.into());
    policy.insert("config".into(), toml::Value::Table(policy_config.clone()));
    let mut root = toml::Table::new();
    root.insert("policy".into(), toml::Value::Table(policy));
    toml::to_string(&root).unwrap()
}

fn reference(lang: &str) -> PathBuf {
    match lang {
        "rust" => policy("reference"),
        other => language_policy(other),
    }
}

fn conformance(lang: &str) {
    let table: Table = toml::from_str(
        &std::fs::read_to_string(workspace().join("plugins-example/conformance.toml")).unwrap(),
    )
    .unwrap();
    let component = reference(lang);
    let mut failures = Vec::new();
    for isolation in ["fresh", "reuse"] {
        for (config_name, policy_config) in &table.configs {
            let cases: Vec<(usize, &Case)> = table
                .cases
                .iter()
                .enumerate()
                .filter(|(_, c)| &c.config == config_name)
                .collect();
            let requests: Vec<serde_json::Value> = cases
                .iter()
                .map(|(_, c)| {
                    serde_json::json!({"request": c.request, "headers": c.headers, "push": true})
                })
                .collect();
            let got = run(
                &component,
                &config_toml(isolation, policy_config),
                &requests,
            );
            for ((i, case), outcome) in cases.iter().zip(got) {
                let ok = match &outcome {
                    Outcome::Error(why) => case.error && why.contains("returned an error"),
                    Outcome::Hints(h) => {
                        !case.error
                            && *h == case.expect.iter().map(|e| normalise(e)).collect::<Vec<_>>()
                    }
                };
                if !ok {
                    let expected = if case.error {
                        "an error".to_string()
                    } else {
                        format!("{:?}", case.expect)
                    };
                    failures.push(format!(
                        "{lang} ({isolation}) row {} `{}`: expected {expected}, got {outcome:?}",
                        i + 1,
                        case.name
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rust_reference_policy_matches_the_conformance_table() {
    conformance("rust");
}

#[test]
fn python_reference_policy_matches_the_conformance_table() {
    conformance("python");
}

#[test]
fn javascript_reference_policy_matches_the_conformance_table() {
    conformance("js");
}

/// Build `source` as a JavaScript policy with `sdk/js/build-policy.sh`
/// (sharing the reference policy's QuickJS build): the component's path,
/// and the build's output.
fn build_js(dir: &Path, source: &str) -> (PathBuf, std::process::Output) {
    let policy = dir.join("policy.js");
    std::fs::write(&policy, source).unwrap();
    let out = dir.join("policy.wasm");
    let build = Command::new(workspace().join("sdk/js/build-policy.sh"))
        .arg(&policy)
        .arg(&out)
        .env("HERALD_JS_TARGET_DIR", workspace().join("target/guests"))
        .output()
        .unwrap();
    (out, build)
}

#[test]
fn a_javascript_policy_that_does_not_parse_fails_its_build_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (out, build) = build_js(
        dir.path(),
        "export function decide(req) {\n  return [;\n}\n",
    );
    let err = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success() && !out.exists(), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "herald-js: {}:2:11: unexpected token in expression: ';'",
            dir.path().join("policy.js").display()
        )
    );
}

#[test]
fn a_javascript_policy_that_throws_as_it_loads_fails_each_request_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, build) = build_js(
        dir.path(),
        "throw \"broken at load\";\nexport function decide(req) { return []; }\n",
    );
    assert!(build.status.success(), "{build:?}");
    let requests = [
        serde_json::json!({"request": "GET /"}),
        serde_json::json!({"request": "GET /"}),
    ];
    for isolation in ["fresh", "reuse"] {
        let outcomes = run(
            &policy,
            &config_toml(isolation, &toml::Table::new()),
            &requests,
        );
        for outcome in outcomes {
            assert!(
                matches!(&outcome, Outcome::Error(why) if why.contains("loading the policy: broken at load")),
                "{isolation}: {outcome:?}"
            );
        }
    }
}

#[test]
fn javascript_reference_policy_on_starlingmonkey_matches_the_conformance_table() {
    conformance("js-starlingmonkey");
}

#[test]
fn c_reference_policy_matches_the_conformance_table() {
    conformance("c");
}

/// The `/count/N` hints of a run of the misbehave fixture's `count` mode:
/// N is how many calls the instance has served.
fn counts(isolation: &str, extra: &str, requests: &[&str]) -> Vec<String> {
    let config = format!(
        "[policy]\nisolation = \"{isolation}\"\n{extra}\n[policy.config]\nmode = \"count\"\n"
    );
    let requests: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| serde_json::json!({ "request": r }))
        .collect();
    run(&policy("misbehave"), &config, &requests)
        .into_iter()
        .map(|o| match o {
            Outcome::Hints(h) => h
                .first()
                .and_then(|h| h.split(' ').next())
                .unwrap_or("none")
                .to_string(),
            Outcome::Error(why) => {
                format!(
                    "failed: {}",
                    why.split([':', '(']).next().unwrap_or("").trim()
                )
            }
        })
        .collect()
}

#[test]
fn a_fresh_instance_per_request_keeps_no_state_between_requests() {
    assert_eq!(
        counts("fresh", "", &["GET /", "GET /", "GET /"]),
        ["/count/1", "/count/1", "/count/1"]
    );
}

#[test]
fn a_reused_instance_keeps_state_and_is_recycled_after_a_trap() {
    assert_eq!(
        counts(
            "reuse",
            "",
            &[
                "GET /",
                "GET /",
                "GET /",
                "GET /?misbehave=trap",
                "GET /",
                "GET /"
            ]
        ),
        [
            "/count/1",
            "/count/2",
            "/count/3",
            "failed: the policy trapped",
            "/count/1",
            "/count/2"
        ]
    );
}

#[test]
fn a_reused_instance_is_replaced_after_its_call_limit() {
    assert_eq!(
        counts(
            "reuse",
            "reuse_max_calls = 2",
            &["GET /", "GET /", "GET /", "GET /", "GET /"]
        ),
        ["/count/1", "/count/2", "/count/1", "/count/2", "/count/1"]
    );
}

#[test]
fn a_reused_instance_is_recycled_after_a_timeout() {
    assert_eq!(
        counts(
            "reuse",
            "deadline_ms = 300",
            &["GET /", "GET /", "GET /?misbehave=loop", "GET /"]
        ),
        [
            "/count/1",
            "/count/2",
            "failed: the policy ran past its deadline",
            "/count/1"
        ]
    );
}

/// `herald policy new --lang LANG`, built with the project's own build
/// script, passes the samples it was created with.
fn new_project_builds_and_passes_its_samples(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["policy", "new", "shop-hints", "--lang", lang, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("./build.sh"), "{stdout}");
    let project = dir.path().join("shop-hints");
    // A JavaScript project builds with the QuickJS the reference policy's
    // build compiled, instead of its own.
    let build = Command::new(project.join("build.sh"))
        .env("HERALD_JS_TARGET_DIR", workspace().join("target/guests"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{lang} build.sh: {}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    // `herald policy SUB` on the built component, then `more` arguments.
    let policy_cmd = |sub: &str, more: &[&std::path::Path]| {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["policy", sub])
            .arg(project.join("shop_hints.wasm"))
            .args(more)
            .env("XDG_CACHE_HOME", workspace().join("target/test-cache"))
            .output()
            .unwrap()
    };
    let samples = project.join("shop_hints.samples.toml");
    // Limits as `policy_run` sets them: a deadline of 1 s, not 20 ms.
    let limits = dir.path().join("herald.toml");
    std::fs::write(&limits, "[policy]\ndeadline_ms = 1000\n").unwrap();
    let test = policy_cmd(
        "test",
        &["--samples".as_ref(), &samples, "-c".as_ref(), &limits],
    );
    let report = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && report.ends_with("2 passed, 0 failed\n"),
        "{lang}: {report}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    // The template says what it reads, so it is shown only that.
    let check = policy_cmd("check", &[]);
    let described = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success()
            && described.contains("reads (declared): headers [sec-fetch-dest], cookies []"),
        "{lang}: {described}{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn policy_new_python_project_builds_and_passes_its_samples() {
    new_project_builds_and_passes_its_samples("python");
}

#[test]
fn policy_new_javascript_project_builds_and_passes_its_samples() {
    new_project_builds_and_passes_its_samples("js");
}

#[test]
fn policy_new_c_project_builds_and_passes_its_samples() {
    new_project_builds_and_passes_its_samples("c");
}

#[test]
fn the_decision_cache_keys_a_policy_by_what_it_declares_it_reads() {
    // No lists in [policy.cache]: the policy's `reads` (accept, cookie
    // `have`) is the key.
    let config = "[policy]\nisolation = \"reuse\"\n[policy.cache]\nentries = 64\n";
    let rows = [
        r#"{"request": "GET /", "headers": {"accept": "text/html"}}"#,
        // Another user agent, not declared: the cached answer.
        r#"{"request": "GET /", "headers": {"accept": "text/html", "user-agent": "x"}}"#,
        // The declared header differs: its own answer.
        r#"{"request": "GET /", "headers": {"accept": "image/png"}}"#,
        // The declared cookie differs: its own answer.
        r#"{"request": "GET /", "headers": {"accept": "text/html", "cookie": "have=1"}}"#,
    ];
    let requests: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let stdout = policy_run(&policy("declares"), config, &requests);
    let answers: Vec<(String, bool)> = stdout
        .split_terminator('\n')
        .collect::<Vec<_>>()
        .split(|l| !l.starts_with("  "))
        .skip(1)
        .zip(stdout.lines().filter(|l| !l.starts_with("  ")))
        .map(|(hints, head)| {
            let paths: Vec<&str> = hints
                .iter()
                .map(|h| h.split_whitespace().next().unwrap())
                .collect();
            (paths.join(" "), head.contains("cached answer"))
        })
        .collect();
    let expect = [
        ("/seen/header/accept/text/html", false),
        ("/seen/header/accept/text/html", true),
        ("/seen/header/accept/image/png", false),
        ("/seen/header/accept/text/html /seen/cookie/have/1", false),
    ];
    assert_eq!(answers, expect.map(|(h, c)| (h.to_string(), c)), "{stdout}");
}

#[test]
fn the_decision_cache_answers_requests_that_agree_on_what_the_policy_declared() {
    let config = "[policy]\nisolation = \"reuse\"\n[policy.cache]\nentries = 64\nheaders = [\"sec-fetch-dest\"]\ncookies = [\"have\"]\n[policy.config]\nmode = \"count\"\n";
    let rows = [
        r#"{"request": "GET /", "headers": {"sec-fetch-dest": "document"}}"#,
        // Same declared values, another user agent: the cached answer.
        r#"{"request": "GET /", "headers": {"sec-fetch-dest": "document", "user-agent": "x"}}"#,
        // A declared header differs: a call (the reused instance's second).
        r#"{"request": "GET /", "headers": {"sec-fetch-dest": "iframe"}}"#,
        // A declared cookie differs: a call.
        r#"{"request": "GET /", "headers": {"sec-fetch-dest": "document", "cookie": "have=/a.css"}}"#,
        // Another path: a call.
        r#"{"request": "GET /about", "headers": {"sec-fetch-dest": "document"}}"#,
        r#"{"request": "GET /", "headers": {"sec-fetch-dest": "iframe"}}"#,
    ];
    let requests: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let stdout = policy_run(&policy("misbehave"), config, &requests);
    let lines: Vec<&str> = stdout.lines().collect();
    let answers: Vec<(String, bool)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with("  "))
        .map(|(i, l)| {
            let hint = lines[i + 1].split_whitespace().next().unwrap().to_string();
            (hint, l.contains("cached answer"))
        })
        .collect();
    let expect = [
        ("/count/1", false),
        ("/count/1", true),
        ("/count/2", false),
        ("/count/3", false),
        ("/count/4", false),
        ("/count/2", true),
    ];
    assert_eq!(answers, expect.map(|(h, c)| (h.to_string(), c)), "{stdout}");
}
