//! A page-load client that accepts pushes, as a first-visit browser would:
//! `herald bench pageload`. Works against any HTTPS HTTP/2 server (Herald,
//! nghttpd, H2O), so they can be compared with one client in one run.
//!
//! Each page load opens its own connection (a first visit: nothing cached,
//! nothing pushed yet), fetches the page, accepts every push, reads the HTML
//! for the assets it references, and fetches on the same connection those
//! that were neither pushed nor hinted (a `Link: rel=preload` in a `103 Early
//! Hints` is fetched the moment it arrives, as browsers do). Critical assets
//! are stylesheets and scripts; the load is timed from the end of the TLS
//! handshake to the last critical asset complete. Pushed bytes the page
//! references count as used, the rest as wasted. Optionally through the
//! delaying proxy (`--rtt-ms`, `--mbit`); then the last column is the rig's
//! own round trip beyond the RTT, pinged through a second proxy while the
//! loads run.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;

use super::proxy::{self, Link};

/// Options of `herald bench pageload`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server (`127.0.0.1:8443`) and the page's path.
    pub addr: SocketAddr,
    pub path: String,
    /// SNI and `:authority`.
    pub host: String,
    /// Page loads in all, and how many run at once.
    pub pages: usize,
    pub concurrency: usize,
    /// 0 for a direct connection.
    pub rtt: Duration,
    pub mbit: f64,
}

/// One page load.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub html_complete: Duration,
    pub critical_complete: Duration,
    pub pushed_used: u64,
    pub pushed_wasted: u64,
    pub pushes: usize,
}

/// The totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    pub loads: Vec<Load>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub wall: Duration,
    /// Through the proxy: what its own round trips took beyond the RTT,
    /// pinged while the loads ran (see [`rig_overhead`]).
    pub rig: Vec<Duration>,
}

/// Accepts any certificate: the peers measured here use self-signed ones.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The `href`/`src` values of the tags in `html`, split into critical
/// (stylesheets, scripts) and all referenced paths.
pub fn references(html: &str) -> (Vec<String>, HashSet<String>) {
    let mut critical = Vec::new();
    let mut all = HashSet::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let name = tag
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let attr = |key: &str| {
            let at = tag.find(&format!("{key}=\""))? + key.len() + 2;
            Some(tag[at..].split('"').next()?.to_string())
        };
        let (value, is_critical) = match name.as_str() {
            "link" => (
                attr("href"),
                tag.contains("rel=\"stylesheet\"") || tag.contains("rel=stylesheet"),
            ),
            "script" => (attr("src"), true),
            "img" | "source" | "audio" | "video" => (attr("src"), false),
            _ => (None, false),
        };
        if let Some(v) = value.filter(|v| v.starts_with('/') && !v.starts_with("//")) {
            if is_critical && !critical.contains(&v) {
                critical.push(v.clone());
            }
            all.insert(v);
        }
    }
    (critical, all)
}

/// The same-origin absolute paths in a stylesheet's `url(...)`s.
pub fn css_urls(css: &str) -> Vec<String> {
    css.split("url(")
        .skip(1)
        .filter_map(|rest| {
            let inner = rest.split(')').next()?.trim().trim_matches(['"', '\'']);
            (inner.starts_with('/') && !inner.starts_with("//")).then(|| inner.to_string())
        })
        .collect()
}

async fn read_body(mut body: h2::RecvStream) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// GET `uri` on the connection; when it completed (since `start`), and its body.
async fn fetch(
    send: h2::client::SendRequest<Bytes>,
    uri: String,
    start: Instant,
) -> anyhow::Result<(Duration, Bytes)> {
    let mut send = send.ready().await?;
    let (r, _) = send.send_request(http::Request::get(uri).body(())?, true)?;
    let r = r.await?;
    anyhow::ensure!(r.status() == 200, "asset answered {}", r.status());
    let body = read_body(r.into_body()).await?;
    Ok((start.elapsed(), body))
}

/// The same-origin paths of `Link: <...>; rel=preload` headers.
pub fn preload_links(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|link| link.contains("rel=preload"))
        .filter_map(|link| {
            let path = link.trim().strip_prefix('<')?.split('>').next()?;
            (path.starts_with('/') && !path.starts_with("//")).then(|| path.to_string())
        })
        .collect()
}

async fn one_load(
    front: SocketAddr,
    opts: &Options,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Load> {
    let tcp = proxy::connect(front).await?;
    let name = rustls_pki_types::ServerName::try_from(opts.host.clone())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (send, conn) = h2::client::Builder::new()
        .enable_push(true)
        .initial_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(stream)
        .await?;
    let driver = tokio::spawn(conn);
    let start = Instant::now();
    let mut send = send.ready().await?;
    let uri = |path: &str| format!("https://{}{path}", opts.host);
    let (mut response, _) =
        send.send_request(http::Request::get(uri(&opts.path)).body(())?, true)?;
    // Pushed responses: their bodies are read as they arrive. The promises
    // come before the page's HEADERS; the stream of them does not end on its
    // own, so it is polled alongside the page and drained after it.
    let mut promises = response.push_promises();
    type Arrival = tokio::sync::watch::Receiver<Option<(Duration, Bytes)>>;
    let mut pushed: HashMap<String, Arrival> = HashMap::new();
    let accept = |promise: h2::client::PushPromise, pushed: &mut HashMap<String, Arrival>| {
        let (request, response) = promise.into_parts();
        let (tx, rx) = tokio::sync::watch::channel(None);
        pushed.insert(request.uri().path().to_string(), rx);
        tokio::spawn(async move {
            if let Ok(r) = response.await
                && let Ok(body) = read_body(r.into_body()).await
            {
                let _ = tx.send(Some((start.elapsed(), body)));
            }
        });
    };
    // Wait for the page, acting on `103 Early Hints` as a browser does:
    // every `Link: rel=preload` is fetched at once.
    let mut early: HashMap<String, tokio::task::JoinHandle<anyhow::Result<(Duration, Bytes)>>> =
        HashMap::new();
    enum Step {
        Push(h2::client::PushPromise),
        Info(http::Response<()>),
        Done(Result<http::Response<h2::RecvStream>, h2::Error>),
    }
    use std::task::Poll;
    let response = loop {
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(Ok(p))) = promises.poll_push_promise(cx) {
                return Poll::Ready(Step::Push(p));
            }
            if let Poll::Ready(Some(Ok(info))) = response.poll_informational(cx) {
                return Poll::Ready(Step::Info(info));
            }
            std::pin::Pin::new(&mut response).poll(cx).map(Step::Done)
        })
        .await;
        match step {
            Step::Push(p) => accept(p, &mut pushed),
            Step::Info(info) => {
                for path in preload_links(info.headers()) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = early.entry(path) {
                        let task = tokio::spawn(fetch(send.clone(), uri(slot.key()), start));
                        slot.insert(task);
                    }
                }
            }
            Step::Done(r) => break r?,
        }
    };
    anyhow::ensure!(
        response.status() == 200,
        "page answered {}",
        response.status()
    );
    let html = read_body(response.into_body()).await?;
    let html_complete = start.elapsed();
    while let Some(p) = std::future::poll_fn(|cx| {
        Poll::Ready(match promises.poll_push_promise(cx) {
            Poll::Ready(Some(Ok(p))) => Some(p),
            _ => None,
        })
    })
    .await
    {
        accept(p, &mut pushed);
    }
    let (critical, referenced) = references(&String::from_utf8_lossy(&html));
    let referenced: HashSet<String> = referenced;
    let mut waits = Vec::new();
    for path in &critical {
        let promised = pushed.get(path).cloned();
        if promised.is_none()
            && let Some(task) = early.remove(path)
        {
            waits.push(tokio::spawn(async move { task.await? }));
            continue;
        }
        match promised {
            Some(mut rx) => waits.push(tokio::spawn(async move {
                let got = rx.wait_for(Option::is_some).await.map(|v| v.clone());
                got.ok()
                    .flatten()
                    .context("a pushed critical asset never completed")
            })),
            None => waits.push(tokio::spawn(fetch(send.clone(), uri(path), start))),
        }
    }
    let mut critical_complete = html_complete;
    let mut referenced = referenced;
    for w in waits {
        let (done, body) = w.await??;
        critical_complete = critical_complete.max(done);
        // Fonts and images a stylesheet references are used too.
        referenced.extend(css_urls(&String::from_utf8_lossy(&body)));
    }
    let mut load = Load {
        html_complete,
        critical_complete,
        ..Load::default()
    };
    // Give pushes still in flight a moment to finish before counting them.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (path, rx) in &pushed {
        load.pushes += 1;
        let bytes = rx.borrow().as_ref().map_or(0, |(_, b)| b.len() as u64);
        if referenced.contains(path) {
            load.pushed_used += bytes;
        } else {
            load.pushed_wasted += bytes;
        }
    }
    driver.abort();
    Ok(load)
}

/// A page load that takes longer is counted as an error.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The rig's own latency: one byte echoed through a second proxy with the
/// same link, every 20 ms until `done`, each round trip's time beyond the
/// RTT. The proxy's hops (a read, a timer, a write, in each direction) and
/// the machine's wake-ups are paid by every page load and by every server
/// alike, and no server can win them back: reported beside the loads, on
/// the same loaded machine, so a row can be read against the physical
/// limit with them and without.
async fn rig_overhead(link: Link, done: Arc<AtomicBool>) -> anyhow::Result<Vec<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = echo.accept().await?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).await.is_ok() {
            s.write_all(&b).await?;
        }
        anyhow::Ok(())
    });
    let mut c = proxy::connect(proxy::start(echo_addr, link).await?).await?;
    let mut over = Vec::new();
    let mut b = [0u8; 1];
    while !done.load(Ordering::Relaxed) {
        let sent = Instant::now();
        c.write_all(b"x").await?;
        c.read_exact(&mut b).await?;
        over.push(sent.elapsed().saturating_sub(link.rtt));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.abort();
    Ok(over)
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Run the loads and collect them.
pub async fn run(opts: &Options) -> anyhow::Result<Summary> {
    let link = Link {
        rtt: opts.rtt,
        down_bytes_per_sec: (opts.mbit * 1e6 / 8.0) as u64,
    };
    let direct = opts.rtt.is_zero() && opts.mbit == 0.0;
    let front = if direct {
        opts.addr
    } else {
        proxy::start(opts.addr, link).await?
    };
    let loads_done = Arc::new(AtomicBool::new(false));
    // However this returns, the pinger stops within its 20 ms.
    let _stop = StopOnDrop(loads_done.clone());
    let rig = (!direct).then(|| tokio::spawn(rig_overhead(link, loads_done.clone())));
    let tls = tls_config()?;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (opts, tls, next) = (opts.clone(), tls.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut loads = Vec::new();
            let mut errors = (0u64, None::<String>);
            while next.fetch_add(1, Ordering::Relaxed) < opts.pages as u64 {
                let load = tokio::time::timeout(LOAD_TIMEOUT, one_load(front, &opts, tls.clone()));
                match load
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("page load timed out")))
                {
                    Ok(load) => loads.push(load),
                    Err(e) => {
                        errors.0 += 1;
                        errors.1.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (loads, errors)
        }));
    }
    let mut summary = Summary::default();
    for w in workers {
        let (loads, (errors, first)) = w.await?;
        summary.loads.extend(loads);
        summary.errors += errors;
        if summary.first_error.is_none() {
            summary.first_error = first;
        }
    }
    summary.wall = start.elapsed();
    loads_done.store(true, Ordering::Relaxed);
    if let Some(rig) = rig {
        // The loads stand without it: say why the column is empty.
        match rig.await {
            Ok(Ok(rig)) => summary.rig = rig,
            Ok(Err(e)) => eprintln!("pageload: the rig's own round trip was not measured: {e:#}"),
            Err(e) => eprintln!("pageload: the rig's own round trip was not measured: {e}"),
        }
    }
    Ok(summary)
}

fn ms(v: &[Duration], p: f64) -> f64 {
    super::percentile(v, p).as_secs_f64() * 1e3
}

/// Run and print one Markdown row (with a header).
pub async fn report(opts: &Options) -> anyhow::Result<String> {
    let s = run(opts).await?;
    let n = s.loads.len();
    let critical: Vec<Duration> = s.loads.iter().map(|l| l.critical_complete).collect();
    let html: Vec<Duration> = s.loads.iter().map(|l| l.html_complete).collect();
    let used: u64 = s.loads.iter().map(|l| l.pushed_used).sum();
    let wasted: u64 = s.loads.iter().map(|l| l.pushed_wasted).sum();
    let pushes: usize = s.loads.iter().map(|l| l.pushes).sum();
    let mut out = format!(
        "{} page loads of https://{}{} ({} at once{}), {:.1} s\n\n",
        n,
        opts.host,
        opts.path,
        opts.concurrency,
        if opts.rtt.is_zero() && opts.mbit == 0.0 {
            String::new()
        } else {
            format!(
                ", through {} ms RTT / {} Mbit/s",
                opts.rtt.as_millis(),
                opts.mbit
            )
        },
        s.wall.as_secs_f64()
    );
    out.push_str("| pages/s | HTML p50 | critical p50 | critical p99 | pushes/page | pushed used | pushed wasted | errors | rig round trip p50 |\n|---|---|---|---|---|---|---|---|---|\n");
    let rig = if s.rig.is_empty() {
        "-".to_string()
    } else {
        format!("+{:.2} ms", ms(&s.rig, 0.5))
    };
    out.push_str(&format!(
        "| {:.1} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} | {} KiB | {} KiB | {} | {rig} |\n",
        n as f64 / s.wall.as_secs_f64(),
        ms(&html, 0.5),
        ms(&critical, 0.5),
        ms(&critical, 0.99),
        pushes as f64 / n.max(1) as f64,
        used / 1024,
        wasted / 1024,
        s.errors
    ));
    if let Some(e) = s.first_error {
        out.push_str(&format!("\nfirst error: {e}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_critical_and_other_references() {
        let html = r#"<!doctype html><link rel="stylesheet" href="/css/site.css">
            <link rel="preload" href="/fonts/a.woff2" as="font">
            <script src="/js/app.js" defer></script><img src="/img/hero.svg" alt="">
            <a href="/about">x</a><script src="https://cdn.example/x.js"></script>"#;
        let (critical, all) = references(html);
        assert_eq!(critical, ["/css/site.css", "/js/app.js"]);
        for p in [
            "/css/site.css",
            "/fonts/a.woff2",
            "/js/app.js",
            "/img/hero.svg",
        ] {
            assert!(all.contains(p), "{p}");
        }
        assert!(!all.contains("/about") && all.len() == 4);
        assert_eq!(
            css_urls(
                "@font-face{src:url(\"/fonts/a.woff2\") format(\"woff2\"),url(//cdn/x)} b{background:url( /img/b.png )}"
            ),
            ["/fonts/a.woff2", "/img/b.png"]
        );
    }
}
