//! The push engine on the wire: priority and weight as DATA frame order,
//! ordering under concurrency, the client's stream limit, cancellation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald::http2::frame::frame_type;

use crate::raw::{REFUSED_STREAM, RawClient};
use crate::support::*;

/// A site with `files` (name, size) plus an index.html.
fn site(files: &[(&str, usize)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><p>hello</p>").unwrap();
    for (name, size) in files {
        let body: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

fn serve(root: &Path, assets: &str, extra: &str) -> Herald {
    Herald::start(&format!(
        "{}\n{extra}",
        config_for(root, Some(&policy("page_map")), assets)
    ))
}

/// Indexes of the DATA frames of `stream` in the recorded sequence.
fn data_frames(frames: &[Seen], stream: u32) -> Vec<usize> {
    frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == frame_type::DATA && f.stream == stream && f.len > 0)
        .map(|(i, _)| i)
        .collect()
}

fn stream_of(page: &Page, path: &str) -> u32 {
    page.pushes
        .iter()
        .find(|p| p.request.uri().path() == path)
        .unwrap_or_else(|| panic!("{path} not pushed"))
        .stream
}

#[tokio::test]
async fn an_urgent_push_completes_before_any_byte_of_a_less_urgent_one() {
    // The less urgent one is hinted first, so h2's own order would favour it.
    let dir = site(&[("late.bin", 400_000), ("early.bin", 200_000)]);
    let herald = serve(
        dir.path(),
        r#""/" = ["/late.bin u=5", "/early.bin u=0"]"#,
        "",
    );
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.pushes.len(), 2);
    for p in &page.pushes {
        assert_eq!(
            p.body.len(),
            if p.request.uri().path() == "/late.bin" {
                400_000
            } else {
                200_000
            }
        );
    }
    let frames = client.seen();
    let early = data_frames(&frames, stream_of(&page, "/early.bin"));
    let late = data_frames(&frames, stream_of(&page, "/late.bin"));
    assert!(
        early.last() < late.first(),
        "u=0 DATA frames {:?}..{:?} vs u=5 from {:?}: {:?}",
        early.first(),
        early.last(),
        late.first(),
        frames
            .iter()
            .map(|f| (f.kind, f.stream, f.len))
            .collect::<Vec<_>>()
    );
    assert_wire_healthy(&frames);
}

#[tokio::test]
async fn weights_share_bandwidth_within_an_urgency() {
    let dir = site(&[("heavy.bin", 1_200_000), ("light.bin", 1_200_000)]);
    let herald = serve(
        dir.path(),
        r#""/" = ["/light.bin u=3 i w=50", "/heavy.bin u=3 i w=200"]"#,
        "[push]\nmax_bytes_per_request = 4000000\n",
    );
    // Weights share what can be sent among streams that have data ready.
    // A file body is read ahead one chunk; on a loaded machine a read can
    // take longer than loopback takes to send that chunk, and the other
    // stream rightly gets the link meanwhile. A small connection window makes
    // the client's WINDOW_UPDATEs pace the sending, as a real link would, so
    // both bodies stay backlogged and the split is the scheduler's.
    let client = Client::tls(
        &herald,
        ClientOptions {
            connection_window: 128 << 10,
            ..ClientOptions::default()
        },
    )
    .await;
    let page = client.get("/").await;
    let frames = client.seen();
    let (heavy, light) = (
        stream_of(&page, "/heavy.bin"),
        stream_of(&page, "/light.bin"),
    );
    // While both are sending: from the first DATA of the one that starts
    // last (before it, its file was still being opened) to the last of the
    // one that finishes first.
    let start = data_frames(&frames, heavy)[0].max(data_frames(&frames, light)[0]);
    let end = (*data_frames(&frames, heavy).last().unwrap())
        .min(*data_frames(&frames, light).last().unwrap());
    assert!(start < end, "one body ended before the other began");
    let bytes = |s: u32| -> usize {
        frames[start..=end]
            .iter()
            .filter(|f| f.kind == frame_type::DATA && f.stream == s)
            .map(|f| f.len)
            .sum()
    };
    let ratio = bytes(heavy) as f64 / bytes(light) as f64;
    assert!(
        (3.0..=5.0).contains(&ratio),
        "weight 200 vs 50 gave {} vs {} bytes (ratio {ratio:.2})",
        bytes(heavy),
        bytes(light)
    );
}

#[tokio::test]
async fn the_page_priority_header_orders_it_against_its_pushes() {
    let dir = site(&[("before.bin", 150_000), ("after.bin", 150_000)]);
    let page_html: String = "<p>big page</p>\n".repeat(8_000);
    std::fs::write(dir.path().join("index.html"), &page_html).unwrap();
    let herald = serve(
        dir.path(),
        r#""/" = ["/after.bin u=4", "/before.bin u=1"]"#,
        "",
    );
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let request = client
        .request("GET", "/")
        .header("priority", "u=2")
        .body(())
        .unwrap();
    let page = client.fetch(request).await;
    assert_eq!(page.body.len(), page_html.len());
    let frames = client.seen();
    let parent = data_frames(&frames, page.stream);
    let before = data_frames(&frames, stream_of(&page, "/before.bin"));
    let after = data_frames(&frames, stream_of(&page, "/after.bin"));
    assert!(
        before.last() < parent.first(),
        "u=1 push completes before the u=2 page starts"
    );
    assert!(
        parent.last() < after.first(),
        "the u=2 page completes before the u=4 push starts"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_pages_each_pushing_five_keep_promises_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut assets = String::new();
    for p in 0..100 {
        std::fs::write(
            dir.path().join(format!("p{p}.html")),
            format!("<p>page {p}</p>"),
        )
        .unwrap();
        let list: Vec<String> = (0..5)
            .map(|a| {
                let name = format!("a{p}_{a}.css");
                std::fs::write(dir.path().join(&name), format!("/* {p} {a} */").repeat(50))
                    .unwrap();
                format!("\"/{name}\"")
            })
            .collect();
        assets.push_str(&format!("\"/p{p}.html\" = [{}]\n", list.join(", ")));
    }
    let herald = serve(dir.path(), &assets, "[push]\nmax_per_connection = 1000\n");
    for round in 0..3 {
        let client = Arc::new(Client::tls(&herald, ClientOptions::default()).await);
        let tasks: Vec<_> = (0..100)
            .map(|p| {
                let client = client.clone();
                tokio::spawn(async move { client.get(&format!("/p{p}.html")).await })
            })
            .collect();
        for t in tasks {
            let page = t.await.unwrap();
            assert_eq!(page.status, 200);
            assert_eq!(
                page.pushes.len(),
                5,
                "round {round}: {:?}\n{}",
                page.informational,
                herald
                    .logs()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("push"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            assert!(
                page.pushes
                    .iter()
                    .all(|p| p.status == 200 && !p.body.is_empty())
            );
        }
        let frames = client.seen();
        assert_eq!(
            frames
                .iter()
                .filter(|f| f.kind == frame_type::PUSH_PROMISE)
                .count(),
            500
        );
        assert!(
            !frames
                .iter()
                .any(|f| f.kind == frame_type::GOAWAY || f.kind == frame_type::RST_STREAM)
        );
        assert_wire_healthy(&frames);
        assert!(client.is_open());
    }
    // nghttp, an independent client, with the same 100 pages on one
    // connection. It allows 100 concurrent pushed streams, so some hints must
    // go out as 103s instead: never more open pushes than the client allows.
    let urls: Vec<String> = (0..100)
        .map(|p| format!("https://127.0.0.1:{}/p{p}.html", herald.https.port()))
        .collect();
    let out = std::process::Command::new("nghttp")
        .arg("-nv")
        .args(&urls)
        .output()
        .expect("nghttp installed by scripts/setup");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let promised = text.matches("recv PUSH_PROMISE frame").count();
    assert!((100..=500).contains(&promised), "{promised} promises");
    assert_eq!(
        text.matches(":status: 200").count(),
        100 + promised,
        "every page and push answered"
    );
    assert!(
        !text.contains("recv GOAWAY") && !text.contains("recv RST_STREAM"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_allowing_one_stream_that_refuses_pushes_keeps_its_connection() {
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ));
    // SETTINGS_MAX_CONCURRENT_STREAMS = 1.
    let mut client = RawClient::connect(herald.h2c, &[(0x3, 1)]).await;
    for (round, stream) in [1u32, 3, 5].into_iter().enumerate() {
        client.get(stream, "/").await;
        let ok = client
            .read_until(
                |f| match f.promised {
                    Some(promised) => vec![RawClient::rst_frame(promised, REFUSED_STREAM)],
                    None => vec![],
                },
                |frames| RawClient::ended(frames, stream),
            )
            .await;
        assert!(
            ok,
            "round {round}: response not completed; frames: {:?}",
            client.frames
        );
        let promises = client
            .frames
            .iter()
            .filter(|f| f.kind == frame_type::PUSH_PROMISE && f.stream == stream)
            .count();
        assert!(
            promises <= 1,
            "round {round}: {promises} promises with a limit of 1"
        );
    }
    assert!(
        !client.frames.iter().any(|f| f.kind == frame_type::GOAWAY),
        "{:?}",
        client.frames
    );
    // The hints that could not be pushed went out as a 103 instead (a second
    // HEADERS frame on the page's stream before the final one).
    let headers_on_1 = client
        .frames
        .iter()
        .filter(|f| f.kind == frame_type::HEADERS && f.stream == 1)
        .count();
    assert_eq!(headers_on_1, 2, "103 + 200 on the first page");
}

#[tokio::test]
async fn a_cancelled_push_stops_at_once_and_its_bytes_count_as_waste() {
    let dir = site(&[("big.bin", 5 << 20)]);
    let herald = serve(
        dir.path(),
        r#""/" = ["/big.bin"]"#,
        "[push]\nmax_bytes_per_request = 10000000\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    // A 64 KiB stream window: the server can never be far ahead of the client.
    let client = Client::tls(
        &herald,
        ClientOptions {
            stream_window: 65_535,
            ..Default::default()
        },
    )
    .await;
    let mut send = client.sender().ready().await.unwrap();
    let (mut response, _) = send
        .send_request(client.request("GET", "/").body(()).unwrap(), true)
        .unwrap();
    let mut promises = response.push_promises();
    let promise = promises.push_promise().await.unwrap().unwrap();
    let (_, pushed) = promise.into_parts();
    let pushed_stream = u32::from(pushed.stream_id());
    let mut body = pushed.await.unwrap().into_body();
    let first = body.data().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body); // the h2 client resets the stream with CANCEL
    let page = response.await.unwrap();
    assert_eq!(page.status(), 200);
    read_body(page.into_body()).await;

    assert!(
        eventually(Duration::from_secs(5), || herald
            .metric("herald_pushes_cancelled_total")
            == 1.0)
        .await,
        "cancel counted"
    );
    let wasted = herald.metric("herald_wasted_bytes_total");
    assert!(wasted > 0.0 && wasted < 1_000_000.0, "wasted {wasted}");
    let received: usize = client
        .seen()
        .iter()
        .filter(|f| f.kind == frame_type::DATA && f.stream == pushed_stream)
        .map(|f| f.len)
        .sum();
    assert!(
        received < 1_000_000,
        "{received} bytes of a 5 MB push arrived after the cancel"
    );
    // The connection carries on.
    assert_eq!(client.get("/index.html").await.status, 200);
    assert_wire_healthy(&client.seen());
}

#[tokio::test]
async fn byte_budgets_turn_excess_pushes_into_early_hints() {
    let dir = site(&[("a.bin", 300_000), ("b.bin", 300_000), ("c.bin", 300_000)]);
    let herald = serve(
        dir.path(),
        r#""/" = ["/a.bin", "/b.bin", "/c.bin"]"#,
        "[push]\nmax_bytes_per_request = 700000\n",
    );
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.pushed_paths(), ["/a.bin", "/b.bin"]);
    assert_eq!(
        page.early_links(0),
        ["</c.bin>; rel=preload; as=fetch; crossorigin; nopush"]
    );
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let herald = Herald::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n",
        config_for(&demo_site(), Some(&policy("page_map")), DEMO_ASSETS)
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    client.get("/").await;
    // Without the token: refused.
    let text = herald.admin_get("/metrics", None);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    let text = herald.admin_get("/metrics", Some("s3cret"));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("herald_pushes_promised_total{policy=\"page_map\""),
        "{text}"
    );
    let promised = text
        .lines()
        .find(|l| l.starts_with("herald_pushes_promised_total{policy=\"page_map\""))
        .unwrap();
    assert!(promised.ends_with(" 5"), "{promised}");
}

#[tokio::test]
async fn a_paused_download_does_not_block_later_responses_of_the_same_urgency() {
    let dir = site(&[("big.bin", 2 << 20)]);
    let herald = serve(dir.path(), "", "");
    // Small stream windows: the big response stops once the client stops reading.
    let client = Client::tls(
        &herald,
        ClientOptions {
            stream_window: 65_535,
            ..Default::default()
        },
    )
    .await;
    let mut send = client.sender().ready().await.unwrap();
    let (big, _) = send
        .send_request(client.request("GET", "/big.bin").body(()).unwrap(), true)
        .unwrap();
    let big = big.await.unwrap();
    assert_eq!(big.status(), 200);
    // Never read `big`: its window stays shut. Both are u=3, not incremental.
    let page = tokio::time::timeout(Duration::from_secs(5), client.get("/index.html")).await;
    assert!(
        page.is_ok(),
        "the page waited behind a stream whose reader paused"
    );
    assert_eq!(page.unwrap().status, 200);
    drop(big);
}

#[tokio::test]
async fn cancelled_responses_do_not_leak_the_connection_window() {
    let dir = site(&[("big.bin", 1 << 20)]);
    let herald = serve(dir.path(), "", "");
    // The protocol's default 64 KiB connection window: bytes h2 drops when a
    // cancel arrives before they are written must not stay counted against
    // it, or the connection stops after a cancel or two. (Whether bytes are
    // still queued at the cancel depends on timing: this catches a leak
    // often, not always.)
    let options = ClientOptions {
        stream_window: 65_535,
        connection_window: 65_535,
        ..Default::default()
    };
    let client = Client::tls(&herald, options).await;
    for _ in 0..8 {
        let mut send = client.sender().ready().await.unwrap();
        let (big, _) = send
            .send_request(client.request("GET", "/big.bin").body(()).unwrap(), true)
            .unwrap();
        let mut body = big.await.unwrap().into_body();
        let first = body.data().await.unwrap().unwrap();
        let _ = body.flow_control().release_capacity(first.len());
        drop(body); // RST_STREAM(CANCEL) with data still queued on the server
    }
    let page = tokio::time::timeout(Duration::from_secs(5), client.get("/index.html")).await;
    assert!(page.is_ok(), "the connection stalled after cancels");
    assert_eq!(page.unwrap().status, 200);
}
