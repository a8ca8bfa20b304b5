//! The command line: bad input gets one clear line that names the culprit.

use std::process::Command;

use crate::support::*;

fn herald(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = herald(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--root",
        demo_site().to_str().unwrap(),
    ]);
    (code, err)
}

#[test]
fn unknown_config_key_is_one_line_naming_the_key() {
    let (code, err) = with_config("[server]\nlisten = [\"127.0.0.1:0\"]\nlisen = 1\n");
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("herald.toml:3: server.lisen: unknown field `lisen`"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_key() {
    let (code, err) = with_config("[policy]\ndeadline_ms = \"fast\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("policy.deadline_ms"), "{err}");
    let (code, err) = with_config("[h2]\nmax_frame_size = 10\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("h2.max_frame_size: 10 is out of range"),
        "{err}"
    );
    for (line, culprit) in [
        (
            "request_headers = [\"Accept\"]",
            "policy.request_headers: `Accept`",
        ),
        (
            "request_cookies = [\"a b\"]",
            "policy.request_cookies: `a b`",
        ),
        (
            "request_headers = [\"user-agent\"]\n[policy.cache]\nentries = 8",
            "policy.request_headers: `user-agent` is shown to the policy but policy.cache.headers does not key on it",
        ),
    ] {
        let (code, err) = with_config(&format!("[policy]\n{line}\n"));
        assert_eq!(code, 2);
        assert!(err.contains(culprit), "{line}: {err}");
    }
    let (code, err) = with_config("[policy]\npath = \"/nonexistent/p.wasm\"\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("policy.path: /nonexistent/p.wasm is not a readable file"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_policy_is_refused_at_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, b"\0asm\x01\0\0\0").unwrap();
    let (code, _, err) = herald(&[
        "serve",
        "--no-tls",
        "--h2c",
        "127.0.0.1:0",
        "--root",
        demo_site().to_str().unwrap(),
        "--policy",
        fake.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("fake.wasm") && err.contains("not a component"),
        "{err}"
    );
}

#[test]
fn help_documents_every_serve_flag() {
    let (code, out, _) = herald(&["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--listen",
        "--h2c",
        "--no-tls",
        "--root",
        "--policy",
        "--cert",
        "--key",
        "--trace-frames",
        "--log",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
}

#[test]
fn trace_frames_prints_each_frame() {
    let herald = Herald::start_with_args(
        &config_for(&demo_site(), Some(&policy("page_map")), DEMO_ASSETS),
        &["--trace-frames"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::h2c(&herald, ClientOptions::default()).await;
        client.get("/").await;
    });
    assert!(
        rt.block_on(eventually(std::time::Duration::from_secs(2), || herald
            .logs()
            .contains("send PUSH_PROMISE frame"))),
        "{}",
        herald.logs()
    );
    let logs = herald.logs();
    assert!(logs.contains("recv SETTINGS frame"), "{logs}");
    assert!(logs.contains("promised_stream_id=2"), "{logs}");
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(Client::tls(&herald, ClientOptions::default()));
    assert_eq!(rt.block_on(client.get("/")).status, 200);
    herald.signal("TERM");
    let status = herald
        .wait_exit(std::time::Duration::from_secs(15))
        .expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", herald.logs());
    assert!(
        herald.logs().contains("SIGTERM received"),
        "{}",
        herald.logs()
    );
}

#[test]
fn the_head_of_line_bench_runs_and_reports_both_rows() {
    // Not a timing check: the bench must keep working.
    let (code, out, err) = herald(&[
        "bench",
        "hol",
        "--runs",
        "1",
        "--rtt-ms",
        "10",
        "--push-mb",
        "0.3",
        "--policy",
        policy("page_map").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| idle connection (baseline) |"), "{out}");
    assert!(
        out.contains("| TCP_NOTSENT_LOWAT off |") && out.contains("| TCP_NOTSENT_LOWAT 16384 |"),
        "{out}"
    );
}

#[test]
fn the_swap_bench_runs_and_reports_both_paths() {
    let (code, out, err) = herald(&[
        "bench",
        "swap",
        "--rounds",
        "1",
        "--interval-ms",
        "50",
        "--a",
        policy("page_map").to_str().unwrap(),
        "--b",
        policy("misbehave").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("| file landed (watcher) |") && out.contains("| admin upload (PUT) |"),
        "{out}"
    );
}

#[test]
fn sigterm_lets_in_flight_pushes_finish_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>x</p>").unwrap();
    for name in ["a.bin", "b.bin"] {
        std::fs::write(dir.path().join(name), vec![9u8; 3 << 20]).unwrap();
    }
    let mut herald = Herald::start(&format!(
        "{}\n[push]\nmax_bytes_per_request = 100000000\n",
        config_for(
            dir.path(),
            Some(&policy("page_map")),
            r#""/" = ["/a.bin", "/b.bin"]"#
        )
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A small window: the pushes take many round trips, so they are
    // certainly in flight when the signal arrives.
    let client = rt.block_on(Client::tls(
        &herald,
        ClientOptions {
            stream_window: 65_535,
            ..Default::default()
        },
    ));
    let page = rt.block_on(async {
        let fetch = client.get("/");
        tokio::pin!(fetch);
        // Signal once the pushes are promised, not after a fixed delay (a
        // loaded machine may not even have sent the request by then).
        let promised = async {
            let push_promise = herald::http2::frame::frame_type::PUSH_PROMISE;
            while !client.seen().iter().any(|f| f.kind == push_promise) {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::select! {
            _ = &mut fetch => panic!("finished before the signal"),
            _ = promised => {}
        }
        herald.signal("TERM");
        fetch.await
    });
    assert_eq!(page.status, 200);
    assert_eq!(page.pushes.len(), 2);
    for p in &page.pushes {
        assert_eq!(p.body.len(), 3 << 20, "{} cut short", p.request.uri());
    }
    let frames = client.seen();
    let goaway = frames
        .iter()
        .find(|f| f.kind == herald::http2::frame::frame_type::GOAWAY)
        .expect("a GOAWAY");
    assert_eq!(goaway.error, Some(0), "graceful: NO_ERROR");
    let status = herald
        .wait_exit(std::time::Duration::from_secs(15))
        .expect("exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn policy_check_describes_a_policy_and_names_what_is_wrong_with_others() {
    let (code, out, err) = herald(&["policy", "check", policy("page_map").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("a herald:policy/push-policy-reads component"),
        "{out}"
    );
    assert!(
        out.contains("exports: reads, decide") && out.contains("herald:policy/config@0.1.2"),
        "{out}"
    );
    assert!(out.contains("nothing granted"), "{out}");
    // The page map reads the path only, and says so.
    assert!(
        out.contains("reads (declared): headers [], cookies []"),
        "{out}"
    );
    let (code, out, err) = herald(&["policy", "check", policy("policy_0_1_0").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("a herald:policy/push-policy component"),
        "{out}"
    );
    assert!(out.contains("reads: not declared"), "{out}");
    let not = policies().join("not-a-policy.wasm");
    let (code, _, err) = herald(&["policy", "check", not.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.lines().all(|l| l.contains("not-a-policy.wasm")),
        "one line per problem, each naming the file: {err}"
    );
    assert!(err.contains("must export `decide`"), "{err}");
}

#[test]
fn policy_run_prints_hints_and_costs_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[policy]\ndeadline_ms = 1000\n[policy.config]\n\"/\" = [\"/css/site.css u=0\", \"/img/hero.svg u=5 i\"]\n",
    )
    .unwrap();
    let jsonl = dir.path().join("requests.jsonl");
    std::fs::write(
        &jsonl,
        "{\"request\": \"GET /\", \"push\": false}\n{\"request\": \"GET /none\"}\n",
    )
    .unwrap();
    let (code, out, err) = herald(&[
        "policy",
        "run",
        policy("page_map").to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "-r",
        "GET /",
        "-H",
        "accept: text/html",
        "--requests",
        jsonl.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("GET / -> 2 hint(s) ("), "{out}");
    assert!(lines[0].contains(" instructions, peak memory "), "{out}");
    assert_eq!(lines[1].trim(), "/css/site.css  u=0 w=16 as=style");
    assert_eq!(lines[2].trim(), "/img/hero.svg  u=5 w=16 as=image i");
    assert!(out.contains("GET /none -> 0 hint(s)"), "{out}");
    let limits = dir.path().join("limits.toml");
    std::fs::write(&limits, "[policy]\ndeadline_ms = 1000\n").unwrap();
    let (code, out, _) = herald(&[
        "policy",
        "run",
        policy("misbehave").to_str().unwrap(),
        "-c",
        limits.to_str().unwrap(),
        "-r",
        "GET /?misbehave=trap",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("no hints: the policy trapped"), "{out}");
}

#[test]
fn a_policy_that_declares_a_name_that_is_not_one_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[policy.config]\nreads_headers = [\"accept\", \"x y\"]\n",
    )
    .unwrap();
    let declares = policy("declares");
    let (code, _, err) = herald(&[
        "policy",
        "check",
        declares.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("declares.wasm: its `reads` export: `x y` is not a lowercase header name"),
        "{err}"
    );
    // `herald serve` refuses to start with it, the same way.
    std::fs::write(
        &config,
        format!(
            "[policy]\npath = {:?}\n[policy.config]\nreads_cookies = [\"a;b\"]\n",
            declares.display().to_string()
        ),
    )
    .unwrap();
    let (code, _, err) = herald(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--root",
        demo_site().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("declares.wasm")
            && err.contains("its `reads` export: `a;b` is not a cookie name"),
        "{err}"
    );
}

#[test]
fn a_policy_whose_reads_fails_is_refused_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    let many: Vec<String> = (0..65).map(|i| format!("\"x-{i}\"")).collect();
    for (policy_config, why) in [
        // The panic's message, from what the instance wrote, on the line.
        ("reads = \"trap\"", "(declares: deliberate panic in reads)"),
        (
            "reads = \"spin\"",
            "its `reads` export did not answer within 1000 ms",
        ),
        (
            &format!("reads_headers = [{}]", many.join(", ")),
            "its `reads` export lists 65 headers (at most 64)",
        ),
        // Echoed escaped: still one line.
        (
            "reads_headers = [\"a\\nb\"]",
            "its `reads` export: `a\\nb` is not a lowercase header name",
        ),
    ] {
        std::fs::write(&config, format!("[policy.config]\n{policy_config}\n")).unwrap();
        let (code, _, err) = herald(&[
            "policy",
            "check",
            policy("declares").to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{policy_config}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{policy_config}: {err}");
        assert!(err.contains("declares.wasm: "), "names the file: {err}");
        assert!(err.contains(why), "{policy_config}: {err}");
    }
}

#[test]
fn policy_run_shows_the_policy_what_serving_would() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[policy]\nrequest_headers = [\"accept\"]\ndeadline_ms = 1000\n",
    )
    .unwrap();
    let (code, out, err) = herald(&[
        "policy",
        "run",
        policy("misbehave").to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "-r",
        "GET /?misbehave=seen",
        "-H",
        "accept: text/html",
        "-H",
        "authorization: Bearer secret",
        "-H",
        "cookie: session=secret",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /?misbehave=seen -> 1 hint(s)"), "{out}");
    assert!(out.contains("/seen/header/accept"), "{out}");
}

#[test]
fn policy_test_runs_the_samples_and_fails_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[policy]\ndeadline_ms = 1000\n[policy.config]\n\"/\" = [\"/a.css\", \"/b.js\"]\n",
    )
    .unwrap();
    let good = dir.path().join("good.samples.toml");
    std::fs::write(&good, "[[sample]]\nrequest = \"GET /\"\nexpect = [\"/a.css\", \"/b.js\"]\n[[sample]]\nrequest = \"POST /\"\nexpect = []\n").unwrap();
    let args = |samples: &std::path::Path| {
        vec![
            "policy".to_string(),
            "test".into(),
            policy("page_map").display().to_string(),
            "-c".into(),
            config.display().to_string(),
            "--samples".into(),
            samples.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| herald(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, out, _) = run(args(&good));
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("2 passed, 0 failed\n"), "{out}");
    let bad = dir.path().join("bad.samples.toml");
    std::fs::write(
        &bad,
        "[[sample]]\nrequest = \"GET /\"\nexpect = [\"/b.js\", \"/a.css\"]\n",
    )
    .unwrap();
    let (code, out, _) = run(args(&bad));
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "FAIL  1 GET /: expected [\"/b.js\", \"/a.css\"], got [\"/a.css\", \"/b.js\"]"
        ),
        "{out}"
    );
    let (code, _, err) = run(args(&dir.path().join("missing.samples.toml")));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn policy_new_creates_a_project_that_tests_builds_and_passes_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = herald(&[
        "policy",
        "new",
        "shop-hints",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created") && out.contains("shop_hints.samples.toml"),
        "{out}"
    );
    let project = dir.path().join("shop-hints");
    let target = workspace().join("target/policy-new");
    let cargo = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(&project)
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(cargo(&["test", "--quiet"]).contains("3 passed"));
    cargo(&["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/shop_hints.wasm");
    let samples = project.join("shop_hints.samples.toml");
    // A deadline of 1 s, not the production 20 ms: a loaded machine must
    // not fail a sample.
    let limits = dir.path().join("limits.toml");
    std::fs::write(&limits, "[policy]\ndeadline_ms = 1000\n").unwrap();
    let (code, out, err) = herald(&[
        "policy",
        "test",
        wasm.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "-c",
        limits.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("2 passed, 0 failed\n"), "{out}");
    // A bad name is one clear line.
    let (code, _, err) = herald(&[
        "policy",
        "new",
        "Bad Name",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("a policy name is lowercase"), "{err}");
}

#[test]
fn the_policy_bench_runs_and_reports_against_its_baseline() {
    let (code, out, err) = herald(&[
        "bench",
        "policy",
        "--calls",
        "300",
        "--policy",
        policy("page_map").to_str().unwrap(),
        "--baseline",
        policy("misbehave").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("| baseline: misbehave.wasm | fresh |")
            && out.contains("| page_map.wasm | fresh |")
            && out.contains("| page_map.wasm | reuse |"),
        "{out}"
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // The unit as shipped, pointed at the binary under test (verify checks
    // that ExecStart is executable). Any complaint (unknown key, bad value)
    // is printed, with exit status 0 for some: both count.
    let unit = std::fs::read_to_string(workspace().join("docs/systemd/herald.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/herald serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/herald", env!("CARGO_BIN_EXE_herald")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian systemd; scripts/setup installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

#[test]
fn an_instruction_budget_stops_a_looping_policy_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[policy]\nmax_instructions = 5000000\ndeadline_ms = 10000\n",
    )
    .unwrap();
    let requests = dir.path().join("requests.jsonl");
    std::fs::write(
        &requests,
        "{\"request\": \"GET /\"}\n{\"request\": \"GET /?misbehave=loop\"}\n",
    )
    .unwrap();
    let (code, out, err) = herald(&[
        "policy",
        "run",
        policy("misbehave").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--requests",
        requests.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("  ")).collect();
    // The well-behaved call fits the budget; the endless loop runs out of it
    // long before its 10 s deadline.
    assert!(lines[0].contains("-> 1 hint(s)"), "{out}");
    assert!(
        lines[1].contains(
            "trapped: used up its instruction budget (policy.max_instructions = 5000000)"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_built_against_wit_0_1_0_still_loads_and_decides() {
    let frozen = policy("policy_0_1_0");
    let (code, out, err) = herald(&["policy", "check", frozen.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("herald:policy/types@0.1.0"), "{out}");
    assert!(!out.contains("client-cache"), "{out}");
    let server = Herald::start(&config_for(&demo_site(), Some(&frozen), ""));
    let client = Client::tls(&server, ClientOptions::default()).await;
    assert_eq!(client.get("/").await.pushed_paths(), ["/css/site.css"]);
}
