//! Swap latency: from a policy file landing (or an admin upload) to the new
//! version answering requests.
//!
//! An in-process Herald watches `p.wasm`; each round lands the other of two
//! components (write beside, rename) and polls `/` over cleartext HTTP/1.1
//! every 2 ms until the answer's `Link` shows the new version.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::server::{Server, Shared};

/// Options of `herald bench swap`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub interval_ms: u64,
    /// Two components that answer `/` differently.
    pub a: PathBuf,
    pub b: PathBuf,
}

async fn links(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let head = text.rsplit("HTTP/1.1 200").next().unwrap_or("");
    Ok(head
        .lines()
        .filter(|l| l.starts_with("link:"))
        .collect::<Vec<_>>()
        .join("\n"))
}

async fn until_changed(
    addr: std::net::SocketAddr,
    from: &str,
    start: Instant,
) -> anyhow::Result<Duration> {
    loop {
        if links(addr).await? != from {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the new version never answered (still {from:?})");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Measure and print a Markdown report.
pub async fn report(opts: &Options) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("js"))?;
    std::fs::write(root.join("index.html"), "<p>swap</p>")?;
    let live = dir.path().join("p.wasm");
    std::fs::copy(&opts.a, &live)?;
    let text = format!(
        r#"[server]
listen = []
listen_h2c = ["127.0.0.1:0"]
access_log = false
[origin]
root = {root:?}
[admin]
listen = "127.0.0.1:0"
[policy]
path = {live:?}
watch_interval_ms = {interval}
deadline_ms = 1000
cache_dir = ""
[policy.config]
"/" = ["/js/app.js"]
"#,
        root = root.display().to_string(),
        live = live.display().to_string(),
        interval = opts.interval_ms,
    );
    let config = Config::parse("swap bench", &text)?;
    config.validate()?;
    let server = Server::bind(Shared::from_config(config).await?).await?;
    let addr = server.local_addrs()[0].1;
    let admin = server.admin_addr().expect("configured");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(server.run(rx, Duration::from_secs(1)));

    let files = [std::fs::read(&opts.a)?, std::fs::read(&opts.b)?];
    let mut landed = Vec::new();
    for round in 0..opts.rounds {
        let before = links(addr).await?;
        let next = &files[(round + 1) % 2];
        let tmp = dir.path().join("p.landing");
        std::fs::write(&tmp, next)?;
        let start = Instant::now();
        std::fs::rename(&tmp, &live)?;
        landed.push(until_changed(addr, &before, start).await?);
    }
    let mut uploaded = Vec::new();
    for round in 0..opts.rounds {
        let before = links(addr).await?;
        // After the file rounds, files[rounds % 2] is live: send the other.
        let body = &files[(opts.rounds + round + 1) % 2];
        let start = Instant::now();
        let mut tcp = tokio::net::TcpStream::connect(admin).await?;
        let head = format!(
            "PUT /policies/p HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body).await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        anyhow::ensure!(
            out.starts_with(b"HTTP/1.1 200"),
            "upload refused: {}",
            String::from_utf8_lossy(&out)
        );
        uploaded.push(until_changed(addr, &before, start).await?);
    }
    let _ = stop.send(true);
    let _ = serving.await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let row = |name: &str, v: &[Duration]| {
        format!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            ms(super::percentile(v, 0.5)),
            ms(super::percentile(v, 0.9)),
            ms(*v.iter().max().expect("rounds > 0"))
        )
    };
    let mut out = format!(
        "{} rounds each, watch interval {} ms, no precompiled cache (every swap compiles)\n\n| new version via | p50 | p90 | max |\n|---|---|---|---|\n",
        opts.rounds, opts.interval_ms
    );
    out.push_str(&row("file landed (watcher)", &landed));
    out.push_str(&row("admin upload (PUT)", &uploaded));
    Ok(out)
}
