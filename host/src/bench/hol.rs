//! Head-of-line benchmark: how long does the HTML's first byte take while a
//! large low-urgency push is in flight, with and without TCP_NOTSENT_LOWAT?
//!
//! An in-process Herald serves a page whose policy pushes a big file at
//! urgency 7, behind the delaying proxy. Once the push fills the link, the
//! client asks for the HTML and times its response HEADERS. The scheduler sends
//! the HTML first at once; what remains is whatever already sits in the
//! server's kernel send queue, which TCP_NOTSENT_LOWAT bounds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;

use super::proxy::{self, Link};
use crate::config::Config;
use crate::server::{Server, Shared};

/// Options of `herald bench hol`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rtt: Duration,
    pub mbit: f64,
    pub push_bytes: usize,
    pub runs: usize,
    pub policy: PathBuf,
    pub lowat: u32,
}

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct Sample {
    pub idle_ttfb: Duration,
    pub loaded_ttfb: Duration,
    pub loaded_complete: Duration,
}

struct Site {
    _dir: tempfile::TempDir,
    config: Config,
}

fn site(opts: &Options, lowat: u32) -> anyhow::Result<Site> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir(&root)?;
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>x</title>".repeat(60),
    )?;
    std::fs::write(root.join("start.html"), "<!doctype html><p>start</p>")?;
    std::fs::write(root.join("big.bin"), vec![7u8; opts.push_bytes])?;
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
tcp_notsent_lowat = {lowat}
access_log = false
[tls]
self_signed_out = {cert:?}
[origin]
root = {root:?}
[push]
max_bytes_per_request = {max}
max_bytes_per_connection = {max}
[policy]
path = {policy:?}
[policy.config]
"/start.html" = ["/big.bin u=7 push"]
"#,
        cert = dir.path().join("cert.pem").display().to_string(),
        root = root.display().to_string(),
        max = opts.push_bytes * 2,
        policy = opts.policy.display().to_string(),
    );
    let config = Config::parse("hol bench", &text)?;
    config.validate()?;
    Ok(Site { _dir: dir, config })
}

/// Measure one configuration `runs` times.
pub async fn measure(opts: &Options, lowat: u32) -> anyhow::Result<Vec<Sample>> {
    let site = site(opts, lowat)?;
    let cert = site.config.tls.self_signed_out.clone().expect("set above");
    let server = Server::bind(Shared::from_config(site.config.clone()).await?).await?;
    let addr = server.local_addrs()[0].1;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(server.run(rx, Duration::from_secs(1)));
    let link = Link {
        rtt: opts.rtt,
        down_bytes_per_sec: (opts.mbit * 1e6 / 8.0) as u64,
    };
    let front = proxy::start(addr, link).await?;
    let mut samples = Vec::new();
    for _ in 0..opts.runs {
        samples.push(one_run(front, &cert, opts.push_bytes).await?);
    }
    let _ = stop.send(true);
    let _ = serving.await;
    Ok(samples)
}

async fn connect(
    front: std::net::SocketAddr,
    cert: &std::path::Path,
) -> anyhow::Result<h2::client::SendRequest<Bytes>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert)? {
        roots.add(c?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = proxy::connect(front).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    let (send, conn) = h2::client::Builder::new()
        .enable_push(true)
        .initial_window_size(32 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake(tls)
        .await?;
    tokio::spawn(conn);
    Ok(send.ready().await?)
}

/// Time to response HEADERS and to the end of the body.
async fn timed_get(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let req = http::Request::get(format!("https://localhost{path}")).body(())?;
    let start = Instant::now();
    let (response, _) = send.send_request(req, true)?;
    let response = response.await?;
    let ttfb = start.elapsed();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok((ttfb, start.elapsed()))
}

async fn one_run(
    front: std::net::SocketAddr,
    cert: &std::path::Path,
    push_bytes: usize,
) -> anyhow::Result<Sample> {
    // Idle connection: the HTML alone.
    let mut idle = connect(front, cert).await?;
    let (idle_ttfb, _) = timed_get(&mut idle, "/index.html").await?;

    // Loaded connection: start the big push, wait until 1 MB of it has
    // arrived (the link is full and queues have built up), then ask.
    let mut send = connect(front, cert).await?;
    let req = http::Request::get("https://localhost/start.html").body(())?;
    let (mut response, _) = send.send_request(req, true)?;
    let mut promises = response.push_promises();
    let promise = promises
        .push_promise()
        .await
        .context("no push promised")??;
    let (_, pushed) = promise.into_parts();
    let mut pushed = pushed.await?.into_body();
    let (one_mb_tx, one_mb_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        let mut signal = Some(one_mb_tx);
        while let Some(Ok(chunk)) = pushed.data().await {
            got += chunk.len();
            let _ = pushed.flow_control().release_capacity(chunk.len());
            if got >= (1 << 20).min(push_bytes / 2)
                && let Some(tx) = signal.take()
            {
                let _ = tx.send(());
            }
        }
        got
    });
    tokio::time::timeout(Duration::from_secs(60), one_mb_rx)
        .await
        .context("push did not start")??;
    let (loaded_ttfb, loaded_complete) = timed_get(&mut send, "/index.html").await?;
    let _ = response.await;
    let _ = tokio::time::timeout(Duration::from_secs(120), reader).await;
    Ok(Sample {
        idle_ttfb,
        loaded_ttfb,
        loaded_complete,
    })
}

/// Median of a list of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Run both configurations and print a Markdown report.
pub async fn report(opts: &Options) -> anyhow::Result<String> {
    let off = measure(opts, 0).await?;
    let on = measure(opts, opts.lowat).await?;
    let idle = median(off.iter().chain(&on).map(|s| s.idle_ttfb).collect());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let row = |name: &str, s: &[Sample]| {
        let ttfb = median(s.iter().map(|x| x.loaded_ttfb).collect());
        let done = median(s.iter().map(|x| x.loaded_complete).collect());
        format!(
            "| {name} | {:.1} ms | {:.2} | {:.1} ms | {:+.1} RTT |\n",
            ms(ttfb),
            ms(ttfb) / ms(idle),
            ms(done),
            (ms(ttfb) - ms(idle)) / ms(opts.rtt)
        )
    };
    let mut out = format!(
        "RTT {:.0} ms, {:.0} Mbit/s down, {:.1} MB push at u=7, {} runs per row (medians)\n\n",
        ms(opts.rtt),
        opts.mbit,
        opts.push_bytes as f64 / 1e6,
        opts.runs
    );
    out.push_str("| HTML while the push is in flight | TTFB | × idle TTFB | complete | TTFB − idle |\n|---|---|---|---|---|\n");
    out.push_str(&format!(
        "| idle connection (baseline) | {:.1} ms | 1.00 | | |\n",
        ms(idle)
    ));
    out.push_str(&row("TCP_NOTSENT_LOWAT off", &off));
    out.push_str(&row(&format!("TCP_NOTSENT_LOWAT {}", opts.lowat), &on));
    Ok(out)
}
