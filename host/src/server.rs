//! Listeners: accept TCP, complete TLS (or not, for h2c), hand the connection
//! to `conn`. Also start-up (config → shared state) and graceful shutdown.
//!
//! Invariant: a failing connection never affects the listener or another
//! connection; accept errors back off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::metrics::{BurstLog, Metrics};
use crate::origin::StaticOrigin;
use crate::planner::OnInvalid;
use crate::policy::registry::{Candidate, Registry};
use crate::policy::{Limits, PolicyEngine};

/// What every connection of the process shares.
pub struct Shared {
    pub config: Config,
    pub origin: Arc<StaticOrigin>,
    /// The live policies; `None` when no policy is configured.
    pub registry: Option<Arc<Registry>>,
    /// Counters of requests served without a policy, and of connections.
    pub metrics: Arc<Metrics>,
    pub failure_log: BurstLog,
    pub invalid_log: BurstLog,
    /// Flooding clients, logged once per burst.
    pub flood_log: BurstLog,
    /// Upstream failures (502/504), logged once per burst.
    pub upstream_log: BurstLog,
    /// `[[proxy]]` routes and their pooled clients.
    pub proxy: Arc<crate::proxy::Proxy>,
    /// Current ETags, for the cache digest.
    pub versions: Arc<crate::client_cache::Versions>,
    /// `[push.cache_digest]`'s signing key, when the digest is on.
    pub digest_key: Option<Arc<crate::digest::DigestKey>>,
    pub on_invalid: OnInvalid,
    /// `push.copy_headers`, parsed once (validated at config load).
    pub copy_headers: Vec<http::HeaderName>,
    /// The TLS certificates, once bound (for the per-connection 421 check).
    pub certs: Option<Arc<crate::tls::Certs>>,
}

impl Shared {
    /// Whether `authority` (`host` or `host:port`) is one this server serves
    /// on a connection whose TLS handshake named `sni`.
    pub fn serves(&self, authority: &str, sni: Option<&str>) -> bool {
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Some(certs) = &self.certs
            && !certs.covers(sni, host)
        {
            return false;
        }
        let hosts = &self.config.origin.hosts;
        hosts.is_empty() || hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The `/metrics` page: one series per policy version.
    pub fn render_metrics(&self) -> String {
        let mut sets: Vec<(String, Arc<Metrics>)> = vec![(
            "policy=\"\",version=\"\",variant=\"\"".to_string(),
            self.metrics.clone(),
        )];
        if let Some(registry) = &self.registry {
            for v in registry.versions_for_metrics() {
                sets.push((
                    format!(
                        "policy=\"{}\",version=\"{}\",variant=\"{}\"",
                        escape_label(v.policy.name()),
                        v.policy.version(),
                        escape_label(&v.variant)
                    ),
                    v.metrics.clone(),
                ));
            }
        }
        Metrics::render_all(&sets)
    }

    /// Build everything from a validated config: origin, engine, policy.
    pub async fn from_config(config: Config) -> anyhow::Result<Shared> {
        let root = config
            .origin
            .root
            .clone()
            .context("origin.root is not set")?;
        let origin = StaticOrigin::new(&root, &config.origin.cache_control, &config.origin.index)
            .with_context(|| format!("origin.root: cannot open {}", root.display()))?;
        let registry = match (&config.policy.path, &config.experiment) {
            (_, Some(experiment)) => {
                let engine = PolicyEngine::new(
                    Limits::from_config(&config.policy),
                    config.policy.effective_cache_dir(),
                )?;
                let registry = Registry::empty(Arc::new(engine));
                if let Some(path) = &config.policy.path {
                    let first = Candidate::from_file(
                        path,
                        config.policy.config.clone(),
                        config.policy.isolation,
                    )
                    .map_err(|e| anyhow::anyhow!("policy.path: {e}"))?;
                    let name = first.slot.clone();
                    registry
                        .update(first)
                        .await
                        .map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))?;
                    registry
                        .activate(&name)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                registry
                    .set_experiment(experiment, &config.policy.config, config.policy.isolation)
                    .await
                    .map_err(|e| anyhow::anyhow!("experiment {}: {e}", experiment.name))?;
                Some(Arc::new(registry))
            }
            (Some(path), None) => {
                let engine = PolicyEngine::new(
                    Limits::from_config(&config.policy),
                    config.policy.effective_cache_dir(),
                )?;
                let first = Candidate::from_file(
                    path,
                    config.policy.config.clone(),
                    config.policy.isolation,
                )
                .map_err(|e| anyhow::anyhow!("policy.path: {e}"))?;
                let registry = Registry::start(Arc::new(engine), first)
                    .await
                    .map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))?;
                if let Some(v) = registry.snapshot().active() {
                    tracing::info!(
                        policy = v.policy.name(),
                        version = v.policy.version(),
                        "policy loaded"
                    );
                }
                Some(Arc::new(registry))
            }
            (None, None) => {
                tracing::info!("no policy configured: serving files without hints");
                None
            }
        };
        let origin = Arc::new(origin);
        let proxy = Arc::new(crate::proxy::Proxy::new(&config.proxy));
        let d = &config.push.cache_digest;
        let digest_key = if d.enabled {
            let secret = match &d.key_file {
                Some(path) => std::fs::read(path).with_context(|| {
                    format!("push.cache_digest.key_file: cannot read {}", path.display())
                })?,
                None => crate::digest::DigestKey::random_secret().to_vec(),
            };
            Some(Arc::new(crate::digest::DigestKey::new(
                &secret,
                d.max_entries,
                d.fp_bits,
            )))
        } else {
            None
        };
        Ok(Shared {
            versions: Arc::new(crate::client_cache::Versions {
                origin: origin.clone(),
                proxy: proxy.clone(),
                upstream_etags: crate::client_cache::EtagBook::new(4096),
            }),
            digest_key,
            proxy,
            origin,
            registry,
            metrics: Arc::new(Metrics::default()),
            failure_log: BurstLog::new(Duration::from_secs(10)),
            invalid_log: BurstLog::new(Duration::from_secs(10)),
            flood_log: BurstLog::new(Duration::from_secs(10)),
            upstream_log: BurstLog::new(Duration::from_secs(10)),
            on_invalid: OnInvalid::default(),
            certs: None,
            copy_headers: config
                .push
                .copy_headers
                .iter()
                .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            config,
        })
    }
}

/// Apply a re-read configuration (SIGHUP). Policy changes go through the
/// registry like any update; everything else needs a restart, and says so.
pub async fn reload(shared: &Shared, config: Config) {
    let old = &shared.config;
    let mut restart = Vec::new();
    for (key, same) in [
        ("server", old.server == config.server),
        ("tls", old.tls == config.tls),
        ("origin", old.origin == config.origin),
        ("push", old.push == config.push),
        ("h2", old.h2 == config.h2),
        ("admin", old.admin == config.admin),
        ("proxy", old.proxy == config.proxy),
    ] {
        if !same {
            restart.push(key);
        }
    }
    let p = &config.policy;
    let limits_changed = (
        p.deadline_ms,
        p.memory_mib,
        p.max_concurrent_calls,
        p.max_hints,
        p.max_hint_bytes,
        p.reuse_max_calls,
        p.reuse_idle,
        p.max_instructions,
    ) != (
        old.policy.deadline_ms,
        old.policy.memory_mib,
        old.policy.max_concurrent_calls,
        old.policy.max_hints,
        old.policy.max_hint_bytes,
        old.policy.reuse_max_calls,
        old.policy.reuse_idle,
        old.policy.max_instructions,
    );
    if limits_changed {
        restart.push("policy limits");
    }
    // What a policy is shown, and its cache key, are the engine's: a
    // reload must not claim to hide a header it still shows.
    if (&p.request_headers, &p.request_cookies, &p.cache)
        != (
            &old.policy.request_headers,
            &old.policy.request_cookies,
            &old.policy.cache,
        )
    {
        restart.push("policy.request_headers, policy.request_cookies and policy.cache");
    }
    if !restart.is_empty() {
        tracing::warn!(
            "changes to {} take effect after a restart; ignored for now",
            restart.join(", ")
        );
    }
    if let (Some(registry), Some(experiment)) = (&shared.registry, &config.experiment) {
        match registry
            .set_experiment(experiment, &p.config, p.isolation)
            .await
        {
            Ok(()) => tracing::info!(experiment = %experiment.name, "reload applied"),
            Err(e) => tracing::warn!(
                "reload: experiment {}: {e}; the current one stays in force",
                experiment.name
            ),
        }
        if p.path.is_none() {
            return;
        }
    }
    match (&shared.registry, &p.path) {
        (Some(registry), Some(path)) => {
            match Candidate::from_file(path, p.config.clone(), p.isolation) {
                Ok(candidate) => {
                    let name = candidate.slot.clone();
                    if registry.update(candidate).await.is_ok()
                        && registry.activate(&name).await.is_ok()
                    {
                        tracing::info!(policy = %name, "reload applied");
                    }
                }
                Err(e) => {
                    tracing::warn!("reload: policy.path: {e}; the current policy keeps serving")
                }
            }
        }
        (None, Some(_)) | (Some(_), None) => {
            tracing::warn!(
                "adding or removing the policy takes effect after a restart; ignored for now"
            )
        }
        (None, None) => {}
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    tls: Vec<TcpListener>,
    h2c: Vec<TcpListener>,
    admin: Option<TcpListener>,
    acceptor: Option<TlsAcceptor>,
}

impl Server {
    /// Bind every listener. Fails with the address in the message.
    pub async fn bind(mut shared: Shared) -> anyhow::Result<Server> {
        let acceptor = if shared.config.server.listen.is_empty() {
            None
        } else {
            let (config, certs) = crate::tls::server_config(&shared.config.tls)?;
            shared.certs = Some(certs);
            Some(TlsAcceptor::from(config))
        };
        let mut tls = Vec::new();
        for addr in &shared.config.server.listen {
            tls.push(
                bind(*addr)
                    .await
                    .with_context(|| format!("server.listen: cannot listen on {addr}"))?,
            );
        }
        let mut h2c = Vec::new();
        for addr in &shared.config.server.listen_h2c {
            h2c.push(
                bind(*addr)
                    .await
                    .with_context(|| format!("server.listen_h2c: cannot listen on {addr}"))?,
            );
        }
        let admin = match shared.config.admin.listen {
            Some(addr) => Some(
                bind(addr)
                    .await
                    .with_context(|| format!("admin.listen: cannot listen on {addr}"))?,
            ),
            None => None,
        };
        Ok(Server {
            shared: Arc::new(shared),
            tls,
            h2c,
            admin,
            acceptor,
        })
    }

    /// The bound addresses: (scheme, address), TLS first.
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        let tls = self
            .tls
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| ("https", a));
        let h2c = self
            .h2c
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| ("http", a));
        tls.chain(h2c).collect()
    }

    /// The admin listener's address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serve until `shutdown` turns true, then let connections drain for at
    /// most `grace`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in self.tls {
            let (shared, acceptor, rx) =
                (self.shared.clone(), self.acceptor.clone(), shutdown.clone());
            tasks.spawn(accept_loop(listener, shared, acceptor, rx));
        }
        for listener in self.h2c {
            tasks.spawn(accept_loop(
                listener,
                self.shared.clone(),
                None,
                shutdown.clone(),
            ));
        }
        if let Some(listener) = self.admin {
            tasks.spawn(crate::admin::serve(
                listener,
                self.shared.clone(),
                shutdown.clone(),
            ));
        }
        let interval = self.shared.config.policy.watch_interval_ms;
        if let (Some(registry), true) = (self.shared.registry.clone(), interval > 0) {
            tasks.spawn(crate::policy::registry::watch(
                registry,
                Duration::from_millis(interval),
                shutdown.clone(),
            ));
        }
        let _ = shutdown.wait_for(|&stop| stop).await;
        tracing::info!(
            "shutting down: no new connections, draining for up to {} ms",
            grace.as_millis()
        );
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("grace period over: closing remaining connections");
        }
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|&s| s) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: wait and retry rather than spin or exit.
                tracing::warn!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        set_notsent_lowat(&tcp, shared.config.server.tcp_notsent_lowat);
        shared.metrics.inc(|c| &c.connections);
        let id = crate::conn::next_id();
        tracing::debug!(conn = id, %addr, "accepted");
        let (shared, acceptor, rx) = (shared.clone(), acceptor.clone(), shutdown.clone());
        connections.spawn(connection(tcp, shared, acceptor, id, rx));
    }
    // Drain: connections got the shutdown signal and send GOAWAY themselves.
    while connections.join_next().await.is_some() {}
}

/// Bytes gathered before they must be written (one TLS record is at most
/// about 16 KiB; a flush of several frames fits).
const WRITE_COALESCE: usize = 64 * 1024;

async fn connection(
    tcp: TcpStream,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    id: u64,
    rx: watch::Receiver<bool>,
) {
    let client = tcp.peer_addr().ok().map(|a| a.ip());
    let timeout = Duration::from_millis(shared.config.server.handshake_timeout_ms);
    // Writes are gathered until the protocol layer flushes: h2 writes a
    // flush's frames in several pieces and rustls turns each into records,
    // and without this each piece was its own `writev` (about 1.7 a request
    // under load; `BENCHMARKS.md`, throughput). Every flush still reaches
    // the socket at once, so nothing waits in this buffer; it is no larger
    // than the queue TCP_NOTSENT_LOWAT allows, so it adds no head-of-line
    // delay beyond that.
    let capacity = match shared.config.server.tcp_notsent_lowat as usize {
        0 => WRITE_COALESCE,
        lowat => lowat.clamp(16 * 1024, WRITE_COALESCE),
    };
    let coalesced = |tcp| crate::conn::flush::WriteBuffer::new(tcp, capacity);
    match acceptor {
        None => {
            // Cleartext: HTTP/2 with prior knowledge starts with the preface
            // ("PRI * HTTP/2.0..."); anything else is HTTP/1.1.
            let mut head = [0u8; 3];
            let h2 = match tokio::time::timeout(timeout, peek_exact(&tcp, &mut head)).await {
                Ok(Ok(())) => &head == b"PRI",
                _ => {
                    tracing::debug!(conn = id, "no request within {} ms", timeout.as_millis());
                    return;
                }
            };
            if h2 {
                crate::conn::serve(coalesced(tcp), shared, id, "http", client, None, rx).await
            } else {
                crate::h1::serve(tcp, shared, id, "http", client, None, rx).await
            }
        }
        Some(acceptor) => {
            let mut tls = match tokio::time::timeout(timeout, acceptor.accept(coalesced(tcp))).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(conn = id, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(
                        conn = id,
                        "TLS handshake not completed within {} ms",
                        timeout.as_millis()
                    );
                    return;
                }
            };
            // rustls buffers encrypted records before the socket takes them;
            // keep that queue as short as the kernel's (TCP_NOTSENT_LOWAT) so
            // what the scheduler sends next is what leaves next.
            let lowat = shared.config.server.tcp_notsent_lowat as usize;
            if lowat > 0 {
                tls.get_mut().1.set_buffer_limit(Some(lowat.max(16 * 1024)));
            }
            let sni: Option<Arc<str>> = tls.get_ref().1.server_name().map(Arc::from);
            match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => crate::conn::serve(tls, shared, id, "https", client, sni, rx).await,
                // ALPN http/1.1, or a client that offered no ALPN at all.
                _ => crate::h1::serve(tls, shared, id, "https", client, sni, rx).await,
            }
        }
    }
}

/// Wait until `buf.len()` bytes can be peeked (without consuming them).
async fn peek_exact(tcp: &TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    loop {
        let n = tcp.peek(buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if n >= buf.len() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Bound the unsent bytes the kernel holds for this socket (Linux
/// TCP_NOTSENT_LOWAT), so what the scheduler decides is what leaves next.
pub fn set_notsent_lowat(tcp: &TcpStream, bytes: u32) {
    #[cfg(target_os = "linux")]
    if bytes > 0 {
        use std::os::fd::AsRawFd;
        let value = bytes as libc::c_int;
        // SAFETY: a valid socket descriptor and a pointer to a c_int that
        // outlives the call, with its exact size.
        let rc = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(
                "TCP_NOTSENT_LOWAT not set: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (tcp, bytes);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    #[cfg(target_os = "linux")]
    async fn notsent_lowat_is_applied() {
        use std::os::fd::AsRawFd;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        super::set_notsent_lowat(&client, 12_345);
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid descriptor, pointers to live locals of the right size.
        let rc = unsafe {
            libc::getsockopt(
                client.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(value, 12_345);
    }
}
