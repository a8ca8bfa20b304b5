//! Hot swap: new policy versions go live without a restart and without a
//! failed request, and a version that fails any check never goes live.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Two components with different answers for `/`: page_map (from config)
/// and misbehave (always /css/site.css).
const PAGE_MAP_ASSETS: &str = r#""/" = ["/js/app.js", "/img/logo.svg"]"#;
const A: [&str; 2] = [
    "</js/app.js>; rel=preload; as=script",
    "</img/logo.svg>; rel=preload; as=image",
];
const B: [&str; 1] = ["</css/site.css>; rel=preload; as=style"];

/// Replace a file the way deployments should: write beside it, then rename.
fn land(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("landing");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

fn start(dir: &Path, extra: &str) -> Herald {
    let live = dir.join("p.wasm");
    if !live.exists() {
        std::fs::copy(policy("page_map"), &live).unwrap();
    }
    Herald::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}",
        config_for(&demo_site(), Some(&live), PAGE_MAP_ASSETS)
    ))
}

/// The Link values of a page fetched by a browser-like client (no push).
async fn links(herald: &Herald) -> Vec<String> {
    let client = Client::h2c(herald, ClientOptions::browser()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    page.links()
}

async fn wait_for_links(herald: &Herald, want: &[&str]) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if links(herald).await == want {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("links never became {want:?}; logs:\n{}", herald.logs());
}

fn admin(herald: &Herald, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(herald.admin.unwrap()).unwrap();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    tcp.write_all(body).unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_landed_file_goes_live_and_a_broken_one_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let herald = start(dir.path(), "");
    assert_eq!(links(&herald).await, A);
    let live = dir.path().join("p.wasm");

    land(&policy("misbehave"), &live);
    let took = wait_for_links(&herald, &B).await;
    eprintln!("file landed -> new version answering: {took:?}");

    // Garbage lands: refused, the current version keeps serving.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"\0asm this is not a component").unwrap();
    land(&junk, &live);
    assert!(
        eventually(Duration::from_secs(5), || herald
            .logs()
            .contains("new policy version refused"))
        .await,
        "{}",
        herald.logs()
    );
    assert_eq!(links(&herald).await, B);
    let (_, policies) = admin(&herald, "GET", "/policies", b"");
    let policies: serde_json::Value = serde_json::from_str(&policies).unwrap();
    assert!(
        policies["policies"]["p"]["last_error"]
            .as_str()
            .unwrap()
            .contains("not a valid component"),
        "{policies}"
    );
    assert_eq!(
        herald
            .logs()
            .lines()
            .filter(|l| l.contains("new policy version refused"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_version_that_fails_its_samples_never_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    // The samples say what `/` must get: page_map's answer.
    std::fs::write(
        dir.path().join("p.samples.toml"),
        "[[sample]]\nrequest = \"GET /\"\nexpect = [\"/js/app.js\", \"/img/logo.svg\"]\n",
    )
    .unwrap();
    let herald = start(dir.path(), "");
    land(&policy("misbehave"), &dir.path().join("p.wasm"));
    assert!(
        eventually(Duration::from_secs(5), || herald.logs().contains(
            "expected [\"/js/app.js\", \"/img/logo.svg\"], got [\"/css/site.css\"]"
        ))
        .await,
        "{}",
        herald.logs()
    );
    assert_eq!(links(&herald).await, A, "the old version keeps serving");
}

#[tokio::test]
async fn admin_upload_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let herald = start(dir.path(), "");
    let (status, body) = admin(
        &herald,
        "PUT",
        "/policies/p",
        &std::fs::read(policy("misbehave")).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(links(&herald).await, B);
    let (status, body) = admin(&herald, "PUT", "/policies/p", b"not wasm");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"live\":false"), "{body}");
    assert_eq!(links(&herald).await, B);
    let (status, body) = admin(&herald, "POST", "/policies/p/rollback", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(links(&herald).await, A);
}

#[tokio::test]
async fn sighup_reloads_the_policy_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let herald = start(dir.path(), "");
    assert_eq!(links(&herald).await, A);
    // Edit the config file Herald runs with, then SIGHUP.
    let config = herald.dir.path().join("herald.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(PAGE_MAP_ASSETS, r#""/" = ["/css/site.css"]"#);
    std::fs::write(&config, text).unwrap();
    herald.signal("HUP");
    wait_for_links(&herald, &B).await;
    // A broken config on reload changes nothing.
    std::fs::write(&config, "[policy\nbroken").unwrap();
    herald.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || herald
            .logs()
            .contains("reload refused"))
        .await,
        "{}",
        herald.logs()
    );
    assert_eq!(links(&herald).await, B);
}

#[tokio::test]
async fn a_hundred_swaps_under_load_fail_no_request_and_never_mix_versions() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Arc::new(start(dir.path(), ""));
    let versions = [
        std::fs::read(policy("page_map")).unwrap(),
        std::fs::read(policy("misbehave")).unwrap(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (herald, stop, served) = (herald.clone(), stop.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let client = Client::h2c(&herald, ClientOptions::browser()).await;
            let mut seen = [0usize; 2];
            while !stop.load(Ordering::Relaxed) {
                let page = client.get("/").await;
                assert_eq!(page.status, 200, "a request failed during swaps");
                let links = page.links();
                let early: Vec<String> = page
                    .informational
                    .iter()
                    .flat_map(|i| crate::support::links(i.headers()))
                    .collect();
                assert_eq!(
                    links, early,
                    "the 103 and the final response come from one version"
                );
                if links == A {
                    seen[0] += 1;
                } else if links == B {
                    seen[1] += 1;
                } else {
                    panic!("hints from no single version: {links:?}");
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    let herald2 = herald.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..100 {
            let (status, body) = admin(&herald2, "PUT", "/policies/p", &versions[(i + 1) % 2]);
            assert_eq!(status, 200, "swap {i}: {body}");
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut seen = [0usize; 2];
    for task in load {
        let s = task.await.unwrap();
        seen[0] += s[0];
        seen[1] += s[1];
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both versions answered: {seen:?}"
    );
    assert_eq!(seen[0] + seen[1], served.load(Ordering::Relaxed));
    let (_, policies) = admin(&herald, "GET", "/policies", b"");
    assert!(policies.contains("\"generation\""), "{policies}");
}

#[tokio::test]
async fn the_precompiled_cache_is_written_reused_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let extra = format!("cache_dir = {:?}\n", cache.display().to_string());
    let config = config_for(&demo_site(), Some(&policy("page_map")), PAGE_MAP_ASSETS).replace(
        "deadline_ms = 1000\n",
        &format!("deadline_ms = 1000\n{extra}"),
    );
    {
        let herald = Herald::start(&config);
        assert_eq!(links(&herald).await, A);
    }
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0].extension().unwrap(), "cwasm");
    let written = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();
    {
        // A restart loads the artifact instead of compiling (it is not rewritten).
        let herald = Herald::start(&config);
        assert_eq!(links(&herald).await, A);
        assert_eq!(
            std::fs::metadata(&artifacts[0])
                .unwrap()
                .modified()
                .unwrap(),
            written
        );
    }
    // A corrupt artifact is recompiled, never fatal.
    std::fs::write(&artifacts[0], b"garbage").unwrap();
    let herald = Herald::start(&config);
    assert_eq!(links(&herald).await, A);
    assert!(herald.logs().contains("unusable"), "{}", herald.logs());
}

#[tokio::test]
async fn cached_answers_follow_every_swap_and_each_request_is_counted() {
    // Answers cached by the request line: from a page's third request on,
    // a worker decides it by comparing the request with what it decided
    // last. A swap must still be seen by the very next request, there and
    // back, and each request counted as a cached answer of its version.
    let dir = tempfile::tempdir().unwrap();
    let herald = start(dir.path(), "[policy.cache]\nentries = 64\n");
    let versions = [
        std::fs::read(policy("page_map")).unwrap(),
        std::fs::read(policy("misbehave")).unwrap(),
    ];
    let client = Client::h2c(&herald, ClientOptions::browser()).await;
    for (round, want) in [&A[..], &B[..], &A[..]].into_iter().enumerate() {
        if round > 0 {
            let (status, body) = admin(&herald, "PUT", "/policies/p", &versions[round % 2]);
            assert_eq!(status, 200, "swap {round}: {body}");
        }
        for i in 0..4 {
            let page = client.get("/").await;
            assert_eq!(page.status, 200);
            assert_eq!(page.links(), want, "round {round}, request {i}");
        }
    }
    // Each version called once; its other three requests answered from its
    // cache, with its hints (two from page_map, one from misbehave).
    assert_eq!(herald.metric("herald_requests_total"), 12.0);
    assert_eq!(herald.metric("herald_policy_cached_answers_total"), 9.0);
    assert_eq!(herald.metric("herald_hints_total"), 20.0);
}
