//! Hostile clients: each attack is bounded by h2's limits or Herald's, the
//! process stays up, and another client is served normally afterwards.

use std::time::{Duration, Instant};

use herald::http2::frame::frame_type;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::raw::{RawClient, frame, hpack_literal};
use crate::support::*;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn server() -> Herald {
    Herald::start(&format!(
        "{}\n[server]\nhandshake_timeout_ms = 500\n",
        config_for(&demo_site(), Some(&policy("page_map")), DEMO_ASSETS)
    ))
}

/// Another, well-behaved client is served in full, with `pushes` pushes.
async fn served_with(herald: &mut Herald, pushes: usize) {
    assert!(herald.is_running(), "herald died:\n{}", herald.logs());
    let client = Client::tls(herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.pushes.len(), pushes);
    assert!(page.pushes.iter().all(|p| p.status == 200));
}

async fn others_are_served(herald: &mut Herald) {
    served_with(herald, 5).await
}

/// Read until the server closes the connection or `limit` passes; the
/// frames seen, and whether it closed.
async fn drain(client: &mut RawClient, limit: Duration) -> bool {
    let start = Instant::now();
    client
        .read_until(|_| vec![], |_| start.elapsed() > limit)
        .await;
    start.elapsed() < limit
}

#[tokio::test]
async fn rapid_reset_is_cut_off_with_enhance_your_calm() {
    let mut herald = server();
    let mut client = RawClient::connect(herald.h2c, &[]).await;
    // CVE-2023-44487: open and cancel streams as fast as possible.
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let id = 1 + 2 * i;
        burst.extend(frame(
            frame_type::HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &client.request_block("/"),
        ));
        burst.extend(frame(frame_type::RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = client.send(&burst).await;
    let closed = drain(&mut client, Duration::from_secs(10)).await;
    assert!(closed, "the connection must be closed");
    let goaway = client
        .frames
        .iter()
        .find(|f| f.kind == frame_type::GOAWAY)
        .expect("a GOAWAY");
    assert_eq!(goaway.error, Some(ENHANCE_YOUR_CALM));
    others_are_served(&mut herald).await;
}

#[tokio::test]
async fn settings_and_ping_floods_do_not_take_the_server_down() {
    let mut herald = server();
    for kind in [frame_type::SETTINGS, frame_type::PING] {
        let mut client = RawClient::connect(herald.h2c, &[]).await;
        let one = if kind == frame_type::PING {
            frame(kind, 0, 0, &[7; 8])
        } else {
            frame(kind, 0, 0, &[])
        };
        let flood: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 50_000)
            .collect();
        let _ = client.send(&flood).await;
        assert!(
            drain(&mut client, Duration::from_secs(5)).await,
            "a flood of frame type {kind} must close the connection"
        );
    }
    others_are_served(&mut herald).await;
    // Counted, and logged once for the burst of two.
    let logs = herald.logs();
    assert_eq!(
        logs.matches("client flooded PING/SETTINGS frames; connection closed")
            .count(),
        1,
        "{logs}"
    );
}

#[tokio::test]
async fn oversized_and_endless_header_blocks_are_refused() {
    let mut herald = server();
    // One header block far over max_header_list_size (64 KiB).
    let mut client = RawClient::connect(herald.h2c, &[]).await;
    let mut block = client.request_block("/");
    hpack_literal(&mut block, "x-big", &"a".repeat(200_000));
    let mut bytes = frame(frame_type::HEADERS, END_STREAM, 1, &block[..16_000]);
    for chunk in block[16_000..].chunks(16_000) {
        bytes.extend(frame(frame_type::CONTINUATION, 0, 1, chunk));
    }
    let _ = client.send(&bytes).await;
    drain(&mut client, Duration::from_secs(3)).await;
    assert!(
        !client
            .frames
            .iter()
            .any(|f| f.kind == frame_type::DATA && f.stream == 1),
        "a request with a 200 KB header block must not be served: {:?}",
        client.frames
    );
    // A CONTINUATION flood that never ends the block.
    let mut client = RawClient::connect(herald.h2c, &[]).await;
    let mut flood = frame(
        frame_type::HEADERS,
        END_STREAM,
        1,
        &client.request_block("/"),
    );
    for _ in 0..20_000 {
        flood.extend(frame(
            frame_type::CONTINUATION,
            0,
            1,
            &[0x00, 0x01, b'x', 0x01, b'y'],
        ));
    }
    let _ = client.send(&flood).await;
    assert!(
        drain(&mut client, Duration::from_secs(5)).await,
        "a never-ending header block closes the connection"
    );
    others_are_served(&mut herald).await;
}

#[tokio::test]
async fn a_window_update_overflow_is_a_connection_error_for_that_client_only() {
    let mut herald = server();
    let mut client = RawClient::connect(herald.h2c, &[]).await;
    let huge = 0x7fff_ffffu32.to_be_bytes();
    let mut bytes = frame(frame_type::WINDOW_UPDATE, 0, 0, &huge);
    bytes.extend(frame(frame_type::WINDOW_UPDATE, 0, 0, &huge));
    let _ = client.send(&bytes).await;
    assert!(drain(&mut client, Duration::from_secs(3)).await);
    let goaway = client
        .frames
        .iter()
        .find(|f| f.kind == frame_type::GOAWAY)
        .expect("a GOAWAY");
    assert_eq!(goaway.error, Some(0x3), "FLOW_CONTROL_ERROR");
    others_are_served(&mut herald).await;
}

#[tokio::test]
async fn slowloris_connections_are_dropped_after_the_handshake_timeout() {
    let mut herald = server();
    let start = Instant::now();
    // Nothing at all, then half a preface: both are dropped (500 ms in this config).
    let mut silent = tokio::net::TcpStream::connect(herald.h2c).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(herald.h2c).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut tls = tokio::net::TcpStream::connect(herald.https).await.unwrap();
    for conn in [&mut silent, &mut half, &mut tls] {
        // The server may greet first (its SETTINGS); then it must hang up.
        let mut rest = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
        assert!(end.is_ok(), "not closed by the server");
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    others_are_served(&mut herald).await;
}

#[tokio::test]
async fn turning_push_off_mid_connection_is_respected() {
    let mut herald = server();
    let mut client = RawClient::connect(herald.h2c, &[(0x2, 1)]).await;
    client.get(1, "/").await;
    assert!(
        client
            .read_until(|_| vec![], |f| RawClient::ended(f, 1))
            .await
    );
    let promised_first = client
        .frames
        .iter()
        .filter(|f| f.kind == frame_type::PUSH_PROMISE)
        .count();
    assert_eq!(promised_first, 5);
    // SETTINGS_ENABLE_PUSH = 0 now; the next page must get no promise.
    client
        .send(&frame(frame_type::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]))
        .await
        .unwrap();
    client.get(3, "/index.html").await;
    assert!(
        client
            .read_until(|_| vec![], |f| RawClient::ended(f, 3))
            .await
    );
    assert_eq!(
        client
            .frames
            .iter()
            .filter(|f| f.kind == frame_type::PUSH_PROMISE)
            .count(),
        promised_first
    );
    assert!(!client.frames.iter().any(|f| f.kind == frame_type::GOAWAY));
    others_are_served(&mut herald).await;
}

#[tokio::test]
async fn a_client_that_accepts_pushes_and_never_reads_costs_one_window() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>x</p>").unwrap();
    for i in 0..4 {
        std::fs::write(dir.path().join(format!("b{i}.bin")), vec![1u8; 2 << 20]).unwrap();
    }
    let mut herald = Herald::start(&format!(
        "{}\n[push]\nmax_bytes_per_request = 100000000\n",
        config_for(
            dir.path(),
            Some(&policy("page_map")),
            r#""/" = ["/b0.bin", "/b1.bin", "/b2.bin", "/b3.bin"]"#
        )
    ));
    // Accepts the promises, then never reads a byte (no WINDOW_UPDATE either:
    // the raw client only sends them for frames it reads).
    let mut client = RawClient::connect(herald.h2c, &[(0x4, 65_535)]).await;
    client.get(1, "/").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The server holds at most one window per stream, not 8 MB: other
    // clients are unaffected, and the stuck connection costs nothing else.
    served_with(&mut herald, 4).await;
    drop(client);
    served_with(&mut herald, 4).await;
}

#[tokio::test]
async fn promises_that_cannot_reach_the_wire_stop_pushes_on_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>x</p>").unwrap();
    std::fs::write(dir.path().join("two.html"), "<p>two</p>").unwrap();
    for i in 0..4 {
        std::fs::write(dir.path().join(format!("b{i}.bin")), vec![1u8; 4 << 20]).unwrap();
    }
    let assets = r#""/" = ["/b0.bin", "/b1.bin"]
"/two.html" = ["/b2.bin", "/b3.bin"]"#;
    let mut herald = Herald::start(&format!(
        "{}\n[push]\nmax_bytes_per_request = 100000000\nmax_bytes_per_connection = 100000000\n[server]\npromise_flush_timeout_ms = 300\n",
        config_for(dir.path(), Some(&policy("page_map")), assets)
    ));
    // Huge windows, and then never a read: the server fills the socket.
    let mut client = RawClient::connect(herald.h2c, &[(0x4, 0x7fff_ffff)]).await;
    client.get(1, "/").await;
    // The socket fills in milliseconds; the writes then stop moving, and the
    // flush timeout counts from that. Plenty of time on a loaded machine.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // This page's promises cannot be written: after the flush timeout the
    // connection stops pushing (and says so once).
    client.get(3, "/two.html").await;
    assert!(
        eventually(Duration::from_secs(5), || herald
            .logs()
            .contains("promises not written within 300 ms"))
        .await,
        "{}",
        herald.logs()
    );
    // Only that connection: a new one pushes as usual.
    served_with(&mut herald, 2).await;
}
