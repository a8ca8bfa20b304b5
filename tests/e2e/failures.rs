//! A policy that goes wrong never fails a response or takes the server down.

use std::time::{Duration, Instant};

use crate::support::*;

fn misbehave() -> Herald {
    Herald::start(&config_for(&demo_site(), Some(&policy("misbehave")), ""))
}

/// Fetch `/?misbehave=MODE`, expect the page without pushes, and return the logs.
async fn survives(herald: &Herald, client: &Client, mode: &str) {
    let start = Instant::now();
    let page = client.get(&format!("/?misbehave={mode}")).await;
    assert_eq!(page.status, 200, "{mode}: page still served");
    assert_eq!(&page.body[..], &demo_file("/index.html")[..]);
    assert!(
        page.pushes.is_empty(),
        "{mode}: no hints from a failed policy"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{mode}: served promptly ({:?})",
        start.elapsed()
    );
    // The server still serves, and the same policy still works for others.
    let good = client.get("/").await;
    assert_eq!(
        good.pushed_paths(),
        ["/css/site.css"],
        "{mode}: same connection, healthy call"
    );
    let fresh = Client::tls(herald, ClientOptions::default()).await;
    assert_eq!(
        fresh.get("/").await.pushed_paths(),
        ["/css/site.css"],
        "{mode}: healthy calls unaffected"
    );
}

#[tokio::test]
async fn a_trapping_policy_serves_the_page_without_push() {
    let mut herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    survives(&herald, &client, "trap").await;
    assert!(herald.is_running());
    assert!(
        eventually(Duration::from_secs(2), || herald
            .logs()
            .contains("kind=\"trap\"")
            || herald.logs().contains("kind=trap"))
        .await,
        "trap logged:\n{}",
        herald.logs()
    );
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    // The epoch clock that enforces deadlines rests after 100 ms without a
    // call: the looping call must wake it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    survives(&herald, &client, "loop").await;
    assert!(
        eventually(Duration::from_secs(2), || herald
            .logs()
            .contains("ran past its deadline"))
        .await,
        "{}",
        herald.logs()
    );
}

#[tokio::test]
async fn loops_on_many_requests_at_once_do_not_starve_other_requests() {
    let herald = misbehave();
    let client = std::sync::Arc::new(Client::tls(&herald, ClientOptions::default()).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.get("/?misbehave=loop").await.status
        }));
    }
    let other = Client::h2c(&herald, ClientOptions::default()).await;
    assert_eq!(other.get("/css/site.css").await.status, 200);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn stack_exhaustion_memory_growth_and_errors_are_contained() {
    let herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    for mode in ["recursion", "memory", "error"] {
        let page = client.get(&format!("/?misbehave={mode}")).await;
        assert_eq!(page.status, 200, "{mode}");
        assert!(page.pushes.is_empty(), "{mode}");
    }
    // 4 MB of stdout: the first max_output_bytes are kept for the debug
    // log, the rest discarded; the writes do not fail, so the policy's
    // answer stands (a Python `print` would otherwise raise).
    let page = client.get("/?misbehave=stdout").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.pushed_paths(), ["/css/site.css"]);
    assert_eq!(
        Client::tls(&herald, ClientOptions::default())
            .await
            .get("/")
            .await
            .pushes
            .len(),
        1
    );
}

#[tokio::test]
async fn invalid_hints_are_dropped_and_valid_ones_kept() {
    let herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/?misbehave=bad-hints").await;
    assert_eq!(page.status, 200);
    // Only the one valid hint survives: no other authority, no dot segments,
    // no data:/javascript: URIs, no bad headers.
    assert_eq!(page.pushed_paths(), ["/css/site.css"]);
    for p in &page.pushes {
        assert_eq!(
            p.request.uri().authority().unwrap().as_str(),
            client.authority
        );
    }
    assert!(
        eventually(Duration::from_secs(2), || herald
            .logs()
            .contains("invalid hints"))
        .await,
        "{}",
        herald.logs()
    );
}

#[tokio::test]
async fn floods_of_hints_are_capped() {
    let herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/?misbehave=many-hints").await;
    assert_eq!(page.status, 200);
    // The hinted files do not exist, so nothing is pushed; the cap bounds the work.
    assert!(page.pushes.is_empty());
    let page = client.get("/index.html?misbehave=huge-hint").await;
    assert_eq!(
        page.pushed_paths(),
        ["/css/site.css"],
        "the 1 MB hint is dropped, the other kept"
    );
}

#[tokio::test]
async fn failures_are_logged_once_per_burst() {
    let herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    for _ in 0..20 {
        assert_eq!(client.get("/?misbehave=error").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = herald
        .logs()
        .lines()
        .filter(|l| l.contains("returned an error"))
        .count();
    assert_eq!(lines, 1, "{}", herald.logs());
}

#[tokio::test]
async fn failures_and_latency_are_counted_on_the_policy_version() {
    let herald = Herald::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        config_for(&demo_site(), Some(&policy("misbehave")), "")
    ));
    let client = Client::h2c(&herald, ClientOptions::default()).await;
    client.get("/?misbehave=trap").await;
    client.get("/?misbehave=error").await;
    client.get("/").await;
    let text = herald.metrics_text();
    let value = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains("policy=\"misbehave\""))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
            .to_string()
    };
    assert_eq!(value("herald_policy_traps_total"), "1");
    assert_eq!(value("herald_policy_errors_total"), "1");
    assert_eq!(value("herald_policy_calls_total"), "3");
    assert_eq!(value("herald_policy_call_seconds_count"), "3");
    assert!(
        text.contains("herald_policy_call_seconds_bucket{policy=\"misbehave\""),
        "{text}"
    );
}

#[tokio::test]
async fn one_call_slot_serves_requests_back_to_back_and_at_once() {
    // A fresh instance is torn down after its request has been answered,
    // and only then gives its call slot back: with a single slot, requests
    // in a row and at once must all still get their hint, none turned away.
    let config = config_for(&demo_site(), Some(&policy("misbehave")), "").replace(
        "deadline_ms = 1000\n",
        "deadline_ms = 1000\nmax_concurrent_calls = 1\nreuse_idle = 0\n",
    );
    let herald = Herald::start(&format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\n"));
    // Without push every answer shows as a `Link` (a push is not repeated
    // on a connection).
    let client = std::sync::Arc::new(Client::tls(&herald, ClientOptions::browser()).await);
    let hinted = |page: &Page| {
        page.links()
            .iter()
            .any(|l| l.starts_with("</css/site.css>"))
    };
    for i in 0..20 {
        let page = client.get("/").await;
        assert!(hinted(&page), "request {i} in a row: {:?}", page.links());
    }
    let at_once: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/").await })
        })
        .collect();
    for (i, task) in at_once.into_iter().enumerate() {
        let page = task.await.unwrap();
        assert!(hinted(&page), "request {i} at once: {:?}", page.links());
    }
    assert_eq!(herald.metric("herald_policy_busy_total"), 0.0);
}

#[tokio::test]
async fn fresh_instances_made_ahead_serve_one_request_each() {
    // After each request the next instance is instantiated ahead of its
    // call; it must still be a new one: the fixture's `count` mode hints
    // how many calls its instance has served.
    let herald = Herald::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        config_for(&demo_site(), Some(&policy("misbehave")), "")
    ));
    // `/count/N` names no file: it is hinted (`Link`), not pushed.
    let client = Client::tls(&herald, ClientOptions::browser()).await;
    for i in 0..10 {
        let page = client.get("/?misbehave=count").await;
        let counts: Vec<String> = page
            .links()
            .into_iter()
            .filter_map(|l| {
                let n = l.split("/count/").nth(1)?;
                Some(n.chars().take_while(char::is_ascii_digit).collect())
            })
            .collect();
        assert_eq!(counts, ["1"], "request {i}: {:?}", page.links());
        // Time for the task after the call to make the next instance, on
        // a machine as loaded as a full test run makes it (a few ms idle).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ahead = herald.metric("herald_policy_instantiated_ahead_total");
    // With those pauses nearly every request finds one; without instances
    // made ahead none would.
    assert!(ahead >= 5.0, "{ahead} of 10 calls on instances made ahead");
}

#[tokio::test]
async fn a_policy_cannot_reach_files_environment_or_network() {
    let herald = misbehave();
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/?misbehave=escape").await;
    assert_eq!(page.status, 200);
    // Only the harmless hint: nothing the sandbox was asked for was granted.
    assert_eq!(
        page.pushed_paths(),
        ["/css/site.css"],
        "the policy reached outside its sandbox"
    );
    let links = page.links();
    assert!(links.is_empty(), "{links:?}");
}

#[test]
fn a_component_of_another_world_is_refused_at_load_with_a_clear_message() {
    let bin = policies().join("not-a-policy.wasm");
    assert!(bin.is_file(), "{} not built", bin.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--no-tls", "--h2c", "127.0.0.1:0", "--root"])
        .arg(demo_site())
        .arg("--policy")
        .arg(&bin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-a-policy.wasm"), "{err}");
    assert!(
        err.contains("herald:policy/push-policy"),
        "names the world it should fit: {err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("herald:")).count(),
        1,
        "one line: {err}"
    );
}
