//! `herald.toml`: every setting, its default, and why.
//!
//! Parsing is strict: an unknown key or a value of the wrong type is an error
//! that names the file, the line and the key, on one line. Semantic checks
//! (a port in range, a file that exists) run after parsing and name the key too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration problem, already phrased for the user: one line that names
/// the culprit (`herald.toml:12: policy.deadline_ms: ...`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub origin: OriginConfig,
    pub policy: PolicyConfig,
    pub push: PushConfig,
    pub h2: H2Config,
    pub admin: AdminConfig,
    /// `[[proxy]]`: path prefixes served by an upstream application instead
    /// of the static root. Longest prefix wins.
    pub proxy: Vec<ProxyRoute>,
    /// An A/B experiment: requests are split between variants (policies).
    pub experiment: Option<crate::experiment::ExperimentConfig>,
}

/// `[admin]`: the operator's listener (`/metrics`), off the public port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Plain HTTP/1.1 listener for `/metrics` (Prometheus text format).
    /// Default: none. Keep it on loopback or a private network.
    pub listen: Option<SocketAddr>,
    /// If set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// `[server]`: listeners and logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// TLS listeners (ALPN `h2`). Default `127.0.0.1:8443`.
    pub listen: Vec<SocketAddr>,
    /// Cleartext HTTP/2 listeners with prior knowledge (h2c), for use behind a
    /// TLS terminator and for tests. Default: none.
    pub listen_h2c: Vec<SocketAddr>,
    /// Print every HTTP/2 frame sent and received, per connection.
    pub trace_frames: bool,
    /// Tokio worker threads; 0 means one per core.
    pub workers: usize,
    /// A client that has not finished the TLS handshake and the HTTP/2 preface
    /// in this time is dropped (slowloris). Default 10 s.
    pub handshake_timeout_ms: u64,
    /// How long a connection's writes may stand still, output waiting and
    /// none of it taken (a client that stopped reading), before it stops
    /// pushing; its pages are then hinted instead. A slow client whose
    /// writes still move is not stalled. Default 2 s.
    pub promise_flush_timeout_ms: u64,
    /// TCP_NOTSENT_LOWAT on accepted sockets (Linux): the kernel keeps at most
    /// this many unsent bytes per socket, so a more urgent response overtakes a
    /// large push within about one round trip instead of waiting behind
    /// everything already queued. 0 leaves the kernel default. Default 16384.
    pub tcp_notsent_lowat: u32,
    /// One info line per request (method, path, status, bytes, hints and how
    /// they were delivered). Default true.
    pub access_log: bool,
    /// On SIGTERM/SIGINT: stop accepting, send GOAWAY, let in-flight streams
    /// (pushes included) finish for at most this long, then exit. Default 10 s.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:8443".parse().unwrap()],
            listen_h2c: Vec::new(),
            trace_frames: false,
            workers: 0,
            handshake_timeout_ms: 10_000,
            promise_flush_timeout_ms: 2_000,
            tcp_notsent_lowat: 16_384,
            access_log: true,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[tls]`: certificate and key. Without both, Herald generates a self-signed
/// certificate for `localhost` and `127.0.0.1` at start-up (for demos and tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Where to write the generated self-signed certificate (PEM), so a client
    /// can be told to trust it. Only used when `cert`/`key` are absent.
    pub self_signed_out: Option<PathBuf>,
    /// More certificates, each for its server names (SNI). A client naming
    /// none of them gets the certificate above. A request on a connection
    /// whose certificate does not cover the request's host gets `421`.
    pub sni: Vec<SniCert>,
}

/// `[[tls.sni]]`: a certificate and the server names it is presented for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Host names, exact (`shop.example.com`) or one-label wildcards
    /// (`*.example.com`).
    pub names: Vec<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[origin]`: the static files Herald serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// The document root. Required (here or with `--root`).
    pub root: Option<PathBuf>,
    /// `Cache-Control` for every file response. Default `max-age=60`: a
    /// resource preloaded from a 103 or pushed is reused by the page only if
    /// it is fresh; with `no-cache` the browser asks again (measured in
    /// Chromium: every hinted file fetched twice). Assets are at most a minute
    /// stale; sites with fingerprinted asset names should use
    /// `public, max-age=31536000, immutable`.
    pub cache_control: String,
    /// File served for a path ending in `/`.
    pub index: String,
    /// The host names served (ports ignored, case-insensitive). A request for
    /// any other authority gets `421 Misdirected Request`, as RFC 9110 §15.5.20
    /// prescribes for a connection reused across origins. Empty: any host.
    pub hosts: Vec<String>,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            root: None,
            cache_control: "max-age=60".into(),
            index: "index.html".into(),
            hosts: Vec::new(),
        }
    }
}

/// The protocol Herald speaks to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, pooled keep-alive connections.
    #[default]
    Http1,
    /// Cleartext HTTP/2 with prior knowledge (h2c): one multiplexed connection.
    H2c,
}

/// `[[proxy]]`: requests whose path starts with `prefix` go to `upstream`.
/// A push of a path is fetched where a request for it would go, so pushed
/// resources come from the upstream or from the static root by the same rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRoute {
    /// Path prefix, starting with `/`: `/app/`, or `/` for everything.
    pub prefix: String,
    /// `http://host:port`: where these requests go. The request's path and
    /// query are forwarded unchanged.
    pub upstream: String,
    /// `http1` (default) or `h2c`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Prefixes under `prefix` served from the static root after all, e.g.
    /// `["/assets/"]` with `prefix = "/"`.
    #[serde(default)]
    pub except: Vec<String>,
    /// Time to open a connection to the upstream. Default 2000 ms; past it
    /// the client gets `504`.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time from sending the request to the upstream's response head.
    /// Default 30000 ms; past it the client gets `504`.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Time the upstream may leave a response body without a byte before
    /// the response is cut off. Default 30000 ms.
    #[serde(default = "default_response_timeout_ms")]
    pub body_idle_timeout_ms: u64,
    /// Idle pooled connections kept per upstream. Default 32.
    #[serde(default = "default_pool_idle")]
    pub pool_idle: usize,
    /// Read the upstream's `Link: rel=preload` headers (in its `103`s and its
    /// final response) as hints: pushed where the client accepts push and the
    /// link has no `nopush`, early hints otherwise. Default true.
    #[serde(default = "default_true")]
    pub link_hints: bool,
}

fn default_connect_timeout_ms() -> u64 {
    2000
}

fn default_response_timeout_ms() -> u64 {
    30_000
}

fn default_pool_idle() -> usize {
    32
}

fn default_true() -> bool {
    true
}

/// How a policy's calls get their Wasm instance (`policy.isolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A new instance for every call.
    #[default]
    Fresh,
    /// Warm instances reused for a bounded number of calls.
    Reuse,
}

/// `[policy.cache]`: a policy whose answer depends only on the method,
/// scheme, authority, path, query, push support, A/B variant and the headers
/// and cookies listed here or declared by the policy (its `reads` export),
/// and on its configuration (fixed per version), may
/// have its answers cached: a request with the same values gets the same hints
/// without a call. Each policy version has its own cache, so a swap starts
/// afresh; failures are never cached. The policy is shown only the headers
/// and cookies of the key, listed here or declared (unless
/// `request_headers`/`request_cookies` narrow that further), so its answer
/// cannot depend on what the key leaves out: list everything it reads (or
/// have it declare that), or it decides without it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyCacheConfig {
    /// Answers kept (per policy version). 0, the default, turns caching off.
    /// (Each worker thread also keeps its last 64 hits in front of them,
    /// found without a lock.)
    pub entries: usize,
    /// Request headers the answer depends on, lowercase.
    pub headers: Vec<String>,
    /// Cookies the answer depends on.
    pub cookies: Vec<String>,
}

/// `[policy]`: the Wasm policy and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The policy component (`.wasm`). Without one, Herald serves files and
    /// pushes nothing.
    pub path: Option<PathBuf>,
    /// The policy's own configuration, readable through the `config` import.
    pub config: toml::Table,
    /// Wall-clock deadline per call. Default 20 ms: a compiled policy decides in
    /// microseconds and an interpreted one in about a millisecond; anything
    /// slower is a bug, and the page must not wait for it.
    pub deadline_ms: u64,
    /// Linear memory cap per instance. Default 64 MiB: room for a Python or
    /// JavaScript guest's heap, small enough that 128 concurrent calls fit.
    pub memory_mib: u64,
    /// Calls that may run at once (pooling allocator slots). Default 128.
    /// Requests beyond that wait for a slot within their deadline.
    pub max_concurrent_calls: u32,
    /// Instructions a call may execute (wasmtime fuel, about one per Wasm
    /// instruction; on a fresh instance its start-up counts too). 0, the
    /// default, means no budget: counting costs 30 to 70% on interpreted
    /// guests, and the wall-clock deadline already bounds every call. Set it
    /// where a deterministic bound matters more than that cost, e.g. for
    /// policies from tenants you do not trust; a call over budget traps.
    pub max_instructions: u64,
    /// `[policy.cache]`: cache answers by the request parts the policy's
    /// answer depends on. Off by default.
    pub cache: PolicyCacheConfig,
    /// The request headers a policy is shown (lowercase names); absent,
    /// the default, shows those the policy declares it reads, or every one
    /// when it does not; with `[policy.cache]` on, exactly those its
    /// answers are keyed by ([`PolicyConfig::shown`]). Least
    /// privilege, and speed: every string passed is an allocation in the
    /// guest, and a browser sends about twenty headers.
    pub request_headers: Option<Vec<String>>,
    /// The cookies a policy is shown, by name; absent, the default, shows
    /// those the policy declares it reads, or every one when it does not
    /// (with `[policy.cache]` on, those it keys by). When set, the `cookie`
    /// header itself is hidden too.
    pub request_cookies: Option<Vec<String>>,
    /// How each call gets its instance: `fresh` (the default) instantiates
    /// the component anew for every request, so no state survives a call;
    /// right for Rust and C policies, which instantiate in microseconds.
    /// (Each instance serves one call; up to two are instantiated ahead,
    /// after the previous call, while more than half the slots are free.)
    /// `reuse` keeps warm instances and calls each up to
    /// `reuse_max_calls` times, recycling it at once after a trap or a
    /// timeout; for Python and JavaScript policies, whose instantiation
    /// costs about a millisecond. A reused instance keeps its globals between
    /// requests: a policy must not rely on them, and must not store anything
    /// about one request that another should not see.
    pub isolation: Isolation,
    /// In `reuse` isolation, calls per instance before it is replaced.
    /// Default 1000: bounds what a slow leak in the guest can accumulate.
    pub reuse_max_calls: u32,
    /// In `reuse` isolation, warm instances kept per policy version between
    /// calls (each holds one of `max_concurrent_calls`). Default 8.
    pub reuse_idle: u32,
    /// Hints beyond this many are dropped (counted). Default 64.
    pub max_hints: usize,
    /// A hint whose path and headers exceed this many bytes is dropped. Default 4096.
    pub max_hint_bytes: usize,
    /// Bytes of stdout+stderr kept per call (logged at debug level); the rest
    /// is discarded. Default 4096.
    pub max_output_bytes: usize,
    /// Reload the policy file when it changes (checked every this many ms; a
    /// new version goes live only after it compiles and passes its samples).
    /// 0 turns watching off. Default 250.
    pub watch_interval_ms: u64,
    /// Compiled policies are kept here, so a restart or a swap does not
    /// recompile (seconds for Python or JavaScript guests). Default: the
    /// `herald` folder of the user's cache directory. `""` turns it off.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            path: None,
            config: toml::Table::new(),
            deadline_ms: 20,
            memory_mib: 64,
            max_concurrent_calls: 128,
            max_instructions: 0,
            cache: PolicyCacheConfig::default(),
            request_headers: None,
            request_cookies: None,
            isolation: Isolation::Fresh,
            reuse_max_calls: 1000,
            reuse_idle: 8,
            max_hints: 64,
            max_hint_bytes: 4096,
            max_output_bytes: 4096,
            watch_interval_ms: 250,
            cache_dir: None,
        }
    }
}

impl PolicyConfig {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The request headers and cookies a policy is shown, in effect
    /// (`None`: every one). With `[policy.cache]` on, what is not set is
    /// what the answers are keyed by: a policy never sees a part of a
    /// request that could make its answer wrong for another request
    /// sharing the key. [`Config::validate`] refuses lists that show more.
    pub fn shown(&self) -> (Option<Vec<String>>, Option<Vec<String>>) {
        let key =
            (self.cache.entries > 0).then_some((&self.cache.headers[..], &self.cache.cookies[..]));
        shown_for(
            self.request_headers.as_deref(),
            self.request_cookies.as_deref(),
            key,
        )
    }

    /// The first header or cookie [`shown`](Self::shown) lets a policy see
    /// that its cached answers are not keyed by, as a config error.
    pub fn shown_beyond_key(&self) -> Result<(), ConfigError> {
        let cache = &self.cache;
        if cache.entries == 0 {
            return Ok(());
        }
        let (headers, cookies) = self.shown();
        let keyed = |name: &str| cache.headers.iter().any(|h| h == name);
        for name in headers.iter().flatten() {
            // `cookie` is hidden when cookies are named (and shown by name).
            let shown = name != "cookie" || cookies.is_none();
            if shown && !keyed(name) {
                return Err(err(format!(
                    "policy.request_headers: `{name}` is shown to the policy but policy.cache.headers does not key on it, so a cached answer could reach a request that differs in it (add it to policy.cache.headers, or stop showing it)"
                )));
            }
        }
        if !keyed("cookie") {
            for name in cookies.iter().flatten() {
                if !cache.cookies.contains(name) {
                    return Err(err(format!(
                        "policy.request_cookies: `{name}` is shown to the policy but policy.cache.cookies does not key on it, so a cached answer could reach a request that differs in it (add it to policy.cache.cookies, or stop showing it)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The precompiled cache directory in effect.
    pub fn effective_cache_dir(&self) -> Option<PathBuf> {
        match &self.cache_dir {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))
                    })?;
                Some(base.join("herald/precompiled"))
            }
        }
    }
}

/// `[push]`: what the host allows, whatever a policy asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Turn PUSH_PROMISE off entirely (hints then always go out as early hints).
    pub enabled: bool,
    /// Send `103 Early Hints` for hints that are not pushed.
    pub early_hints: bool,
    /// Pushes per parent request. Default 16.
    pub max_per_request: usize,
    /// Pushes per connection over its lifetime. Default 256.
    pub max_per_connection: usize,
    /// Bytes pushed per page, by the origin's size estimate (the file length).
    /// Push fills the time the client would otherwise wait for the page; a
    /// megabyte is about 0.4 s at 20 Mbit/s. Beyond it hints become early hints.
    /// Default 1 MiB.
    pub max_bytes_per_request: u64,
    /// Bytes pushed per connection over its lifetime. Default 16 MiB.
    pub max_bytes_per_connection: u64,
    /// Paths remembered per connection so none is pushed twice. Default 1024
    /// (the size H2O chose); older entries are forgotten first.
    pub memo_size: usize,
    /// Request headers copied from the parent into each PUSH_PROMISE when the
    /// hint does not say: the headers a response commonly varies on.
    pub copy_headers: Vec<String>,
    /// `[push.cache_digest]`: remember across connections what each client
    /// was sent, in a signed cookie. Off by default.
    pub cache_digest: CacheDigestConfig,
}

/// `[push.cache_digest]`: a signed cookie recording, as a Golomb-Rice coded
/// set of (path, ETag) hashes, every resource Herald pushed or hinted to
/// this client (in the spirit of H2O's CASPer). Policies ask it through the
/// `client-cache` import (`likely-cached`) and skip what the client has; a
/// changed ETag is a different entry, so a changed asset is sent again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheDigestConfig {
    pub enabled: bool,
    /// The cookie's name. Default `herald-cd`.
    pub cookie: String,
    /// A file holding the signing secret (at least 16 bytes; e.g.
    /// `head -c 32 /dev/urandom > digest.key`). Every instance of a fleet
    /// needs the same one. Default: a random secret per process, so cookies
    /// do not survive a restart.
    pub key_file: Option<PathBuf>,
    /// Entries kept per client, a power of two. Default 128 (a cookie of
    /// about 230 characters when full); when full, the digest starts again
    /// from what this response sent.
    pub max_entries: u32,
    /// False positives: about one lookup in 2^`fp_bits` for a full digest.
    /// Default 7 (1 in 128), the rate H2O's CASPer uses.
    pub fp_bits: u8,
    /// The cookie's `Max-Age`. Default 7 days.
    pub max_age_s: u64,
}

impl Default for CacheDigestConfig {
    fn default() -> Self {
        CacheDigestConfig {
            enabled: false,
            cookie: "herald-cd".into(),
            key_file: None,
            max_entries: 128,
            fp_bits: 7,
            max_age_s: 7 * 86_400,
        }
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: true,
            early_hints: true,
            max_per_request: 16,
            max_per_connection: 256,
            max_bytes_per_request: 1 << 20,
            max_bytes_per_connection: 16 << 20,
            memo_size: 1024,
            copy_headers: ["accept-encoding", "accept-language", "user-agent", "cookie"]
                .map(String::from)
                .to_vec(),
            cache_digest: CacheDigestConfig::default(),
        }
    }
}

/// `[h2]`: HTTP/2 settings, each chosen on purpose (see `docs/h2-settings.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H2Config {
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: how much a client may send
    /// on one stream before we read it. Requests are small; 256 KiB lets
    /// uploads proceed without stalls. Default 262144.
    pub initial_window_size: u32,
    /// The connection-level receive window. Default 1 MiB.
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS we advertise. Default 128 (browsers open
    /// fewer than 100 at once; it bounds per-connection work).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the largest request header block.
    /// Default 64 KiB (long cookies fit; abuse does not).
    pub max_header_list_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE for frames we receive. Default 16384 (the minimum).
    pub max_frame_size: u32,
    /// DATA bytes the connection frames ahead of the socket. Kept small
    /// (16 KiB) so the scheduler decides what leaves next as late as
    /// possible, not a queue. Default 16384.
    pub max_send_buffer_size: usize,
    /// Client resets of streams Herald had not answered yet, in a burst
    /// (refilled at the same number per second); past this the connection
    /// is closed with ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
    /// Resets of streams already answered (a cancelled download, a push
    /// the client has) do not count. Default 100.
    pub max_pending_accept_reset_streams: usize,
    /// Streams we reset for protocol errors before we give up on a client.
    /// Default 256.
    pub max_local_error_reset_streams: usize,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            initial_window_size: 256 * 1024,
            initial_connection_window_size: 1024 * 1024,
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            max_frame_size: 16_384,
            max_send_buffer_size: 16 * 1024,
            max_pending_accept_reset_streams: 100,
            max_local_error_reset_streams: 256,
        }
    }
}

impl Config {
    /// Parse a config file's text. `name` is used in messages.
    pub fn parse(name: &str, text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| describe_toml_error(name, text, &e))?;
        Ok(config)
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("config {}: cannot read: {e}", path.display())))?;
        let mut config = Config::parse(&path.display().to_string(), &text)?;
        // Relative paths in a config file are relative to the file, like nginx's.
        let base = path.parent().unwrap_or(Path::new("."));
        config.rebase(base);
        Ok(config)
    }

    fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        };
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.tls.self_signed_out);
        fix(&mut self.origin.root);
        fix(&mut self.policy.path);
        fix(&mut self.push.cache_digest.key_file);
        if let Some(e) = &mut self.experiment {
            for v in &mut e.variants {
                if v.policy.is_relative() {
                    v.policy = base.join(&v.policy);
                }
            }
        }
        if let Some(p) = &mut self.policy.cache_dir
            && !p.as_os_str().is_empty()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// Checks that need more than types: one message per problem, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        if c.server.listen.is_empty() && c.server.listen_h2c.is_empty() {
            return Err(err(
                "server.listen and server.listen_h2c: at least one listener is needed",
            ));
        }
        if c.admin
            .token
            .as_deref()
            .is_some_and(|t| t.is_empty() || http::HeaderValue::from_str(t).is_err())
        {
            return Err(err("admin.token: must be a non-empty header-safe string"));
        }
        if c.tls.cert.is_some() != c.tls.key.is_some() {
            return Err(err("tls.cert and tls.key: set both or neither"));
        }
        for (key, path) in [
            ("tls.cert", &c.tls.cert),
            ("tls.key", &c.tls.key),
            ("policy.path", &c.policy.path),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(err(format!(
                    "{key}: {} is not a readable file",
                    p.display()
                )));
            }
        }
        match &c.origin.root {
            None => {
                return Err(err(
                    "origin.root: no document root (set it in the config or pass --root DIR)",
                ));
            }
            Some(root) if !root.is_dir() => {
                return Err(err(format!(
                    "origin.root: {} is not a directory",
                    root.display()
                )));
            }
            _ => {}
        }
        for (i, entry) in c.tls.sni.iter().enumerate() {
            if entry.names.is_empty() {
                return Err(err(format!(
                    "tls.sni[{i}].names: list at least one host name"
                )));
            }
            for name in &entry.names {
                let bare = name.strip_prefix("*.").unwrap_or(name);
                let valid = !bare.is_empty()
                    && bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    && !bare.starts_with('.')
                    && !bare.contains("..");
                if !valid {
                    return Err(err(format!(
                        "tls.sni[{i}].names: `{name}` is not a host name (or `*.` and a host name)"
                    )));
                }
            }
        }
        for (i, route) in c.proxy.iter().enumerate() {
            route.check().map_err(|e| err(format!("proxy[{i}].{e}")))?;
            if c.proxy[..i].iter().any(|r| r.prefix == route.prefix) {
                return Err(err(format!(
                    "proxy[{i}].prefix: `{}` is already routed by an earlier [[proxy]]",
                    route.prefix
                )));
            }
        }
        if c.origin.index.is_empty() || c.origin.index.contains('/') {
            return Err(err(
                "origin.index: must be a plain file name such as index.html",
            ));
        }
        if http::HeaderValue::from_str(&c.origin.cache_control).is_err() {
            return Err(err("origin.cache_control: not a valid header value"));
        }
        if let Some(e) = &c.experiment {
            e.validate().map_err(err)?;
        }
        let p = &c.policy;
        range("policy.deadline_ms", p.deadline_ms, 1, 10_000)?;
        range("policy.memory_mib", p.memory_mib, 1, 4096)?;
        range(
            "policy.max_concurrent_calls",
            p.max_concurrent_calls.into(),
            1,
            10_000,
        )?;
        range("policy.max_hints", p.max_hints as u64, 0, 10_000)?;
        range(
            "policy.reuse_max_calls",
            p.reuse_max_calls.into(),
            1,
            1 << 30,
        )?;
        range("policy.cache.entries", p.cache.entries as u64, 0, 1 << 22)?;
        header_names("policy.cache.headers", &p.cache.headers)?;
        cookie_names("policy.cache.cookies", &p.cache.cookies)?;
        header_names("policy.request_headers", p.request_headers.iter().flatten())?;
        cookie_names("policy.request_cookies", p.request_cookies.iter().flatten())?;
        p.shown_beyond_key()?;
        range(
            "policy.reuse_idle",
            p.reuse_idle.into(),
            0,
            p.max_concurrent_calls.into(),
        )?;
        range(
            "policy.max_hint_bytes",
            p.max_hint_bytes as u64,
            64,
            1 << 20,
        )?;
        range(
            "policy.max_output_bytes",
            p.max_output_bytes as u64,
            0,
            1 << 20,
        )?;
        range("push.memo_size", c.push.memo_size as u64, 1, 1 << 20)?;
        let d = &c.push.cache_digest;
        if !d.max_entries.is_power_of_two() || d.max_entries > 4096 {
            return Err(err(format!(
                "push.cache_digest.max_entries: {} must be a power of two from 1 to 4096",
                d.max_entries
            )));
        }
        range("push.cache_digest.fp_bits", d.fp_bits.into(), 1, 16)?;
        cookie_names("push.cache_digest.cookie", [&d.cookie])?;
        if let Some(p) = &d.key_file {
            match std::fs::metadata(p) {
                Ok(m) if m.is_file() && m.len() >= 16 => {}
                _ => {
                    return Err(err(format!(
                        "push.cache_digest.key_file: {} is not a readable file of at least 16 bytes",
                        p.display()
                    )));
                }
            }
        }
        header_names("push.copy_headers", &c.push.copy_headers)?;
        let h = &c.h2;
        range(
            "h2.initial_window_size",
            h.initial_window_size.into(),
            65_535,
            (1 << 31) - 1,
        )?;
        range(
            "h2.initial_connection_window_size",
            h.initial_connection_window_size.into(),
            65_535,
            (1 << 31) - 1,
        )?;
        range(
            "h2.max_concurrent_streams",
            h.max_concurrent_streams.into(),
            1,
            10_000,
        )?;
        range(
            "h2.max_header_list_size",
            h.max_header_list_size.into(),
            4096,
            16 << 20,
        )?;
        range(
            "h2.max_frame_size",
            h.max_frame_size.into(),
            16_384,
            (1 << 24) - 1,
        )?;
        range(
            "h2.max_send_buffer_size",
            h.max_send_buffer_size as u64,
            1024,
            64 << 20,
        )?;
        range(
            "server.handshake_timeout_ms",
            c.server.handshake_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "server.shutdown_grace_ms",
            c.server.shutdown_grace_ms,
            0,
            3_600_000,
        )?;
        range(
            "server.promise_flush_timeout_ms",
            c.server.promise_flush_timeout_ms,
            10,
            600_000,
        )?;
        Ok(())
    }
}

impl ProxyRoute {
    /// The route's own checks; the message starts with the key.
    fn check(&self) -> Result<(), String> {
        let prefix_ok = |p: &str| {
            p.starts_with('/')
                && !p.contains("/../")
                && !p.contains("/./")
                && p.bytes().all(|b| b.is_ascii_graphic())
        };
        if !prefix_ok(&self.prefix) {
            return Err(format!(
                "prefix: `{}` must be a path starting with `/`",
                self.prefix
            ));
        }
        for e in &self.except {
            if !prefix_ok(e) || !e.starts_with(&self.prefix) {
                return Err(format!(
                    "except: `{e}` must be a path prefix under `{}`",
                    self.prefix
                ));
            }
        }
        let uri: http::Uri = self
            .upstream
            .parse()
            .map_err(|_| format!("upstream: `{}` is not a URL", self.upstream))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "upstream: `{}` must be http://host:port (TLS to upstreams is not supported)",
                self.upstream
            ));
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            return Err(format!(
                "upstream: `{}` must not have a path: the request's path is forwarded as is",
                self.upstream
            ));
        }
        for (key, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("response_timeout_ms", self.response_timeout_ms),
            ("body_idle_timeout_ms", self.body_idle_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&v) {
                return Err(format!("{key}: {v} is out of range (1 to 3600000)"));
            }
        }
        Ok(())
    }
}

/// Every name is a lowercase HTTP field name.
pub(crate) fn header_names<'a>(
    key: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    for name in names {
        if name.is_empty()
            || name.bytes().any(|b| b.is_ascii_uppercase())
            || http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(err(format!(
                "{key}: `{}` is not a lowercase header name",
                quoted(name)
            )));
        }
    }
    Ok(())
}

/// The headers and cookies a policy is shown (`None`: every one): those
/// `request_headers` and `request_cookies` name, and where they are not set,
/// those of `key` (what its answers are keyed by, or what it declares it
/// reads), when there is one. Listed headers decide the cookies when none
/// are named (they follow `cookie`); a `cookie` header in `key` holds
/// every cookie.
pub fn shown_for(
    request_headers: Option<&[String]>,
    request_cookies: Option<&[String]>,
    key: Option<(&[String], &[String])>,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let Some((key_headers, key_cookies)) = key else {
        return (
            request_headers.map(<[_]>::to_vec),
            request_cookies.map(<[_]>::to_vec),
        );
    };
    let headers = request_headers.unwrap_or(key_headers).to_vec();
    let cookies = request_cookies.map(<[_]>::to_vec).or_else(|| {
        (request_headers.is_none() && !key_headers.iter().any(|h| h == "cookie"))
            .then(|| key_cookies.to_vec())
    });
    (Some(headers), cookies)
}

/// `name` as an error line quotes it: escaped (a newline stays on the
/// line), and cut after 64 characters (a policy's declaration is echoed).
fn quoted(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    match escaped.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &escaped[..end]),
        None => escaped,
    }
}

/// Every name is a cookie name (an HTTP token, RFC 6265 §4.1.1).
pub(crate) fn cookie_names<'a>(
    key: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    for name in names {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(err(format!(
                "{key}: `{}` is not a cookie name",
                quoted(name)
            )));
        }
    }
    Ok(())
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(err(format!(
            "{key}: {value} is out of range ({min} to {max})"
        )));
    }
    Ok(())
}

/// Strings stay strings, arrays become lists (their items written out),
/// numbers and booleans become strings; nested tables are left to `json()`.
pub fn flatten_policy_config(table: &toml::Table) -> BTreeMap<String, Vec<String>> {
    fn scalar(v: &toml::Value) -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Datetime(d) => Some(d.to_string()),
            _ => None,
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let values = match v {
            toml::Value::Array(items) => items.iter().filter_map(scalar).collect(),
            toml::Value::Table(_) => Vec::new(),
            other => scalar(other).into_iter().collect(),
        };
        out.insert(k.clone(), values);
    }
    out
}

/// Turn toml's multi-line report into `file:line: key: message`.
fn describe_toml_error(name: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return err(format!("config {name}: {message}"));
    };
    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let key = key_path_at(text, span.start);
    match key {
        Some(key) => err(format!("config {name}:{line_no}: {key}: {message}")),
        None => err(format!("config {name}:{line_no}: {message}")),
    }
}

/// The dotted key at a byte offset: the nearest `[table]` header above plus the
/// key on that line, e.g. `policy.deadline_ms`.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(text.len());
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())?;
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_empty_file() {
        let c = Config::parse("t.toml", "").unwrap();
        assert_eq!(c.policy.deadline_ms, 20);
        assert_eq!(c.push.copy_headers.len(), 4);
    }

    #[test]
    fn unknown_key_names_table_key_and_line() {
        let e = Config::parse(
            "t.toml",
            "[server]\ntrace_frames = true\nlisen = [\"1.2.3.4:1\"]\n",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("config t.toml:3: server.lisen: unknown field `lisen`"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn bad_value_names_key() {
        let e = Config::parse("t.toml", "[policy]\ndeadline_ms = \"soon\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config t.toml:2: policy.deadline_ms: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn unknown_table_is_named() {
        let e = Config::parse("t.toml", "[pusher]\nx = 1\n").unwrap_err();
        assert!(e.to_string().contains("pusher"), "{e}");
    }

    #[test]
    fn validate_names_out_of_range_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::parse("t.toml", "[policy]\ndeadline_ms = 0\n").unwrap();
        c.origin.root = Some(dir.path().to_path_buf());
        let e = c.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "policy.deadline_ms: 0 is out of range (1 to 10000)"
        );
    }

    /// A policy config parsed and validated (with a root, which it needs).
    fn validated(policy: &str) -> Result<PolicyConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::parse("t.toml", &format!("[policy]\n{policy}")).unwrap();
        c.origin.root = Some(dir.path().to_path_buf());
        c.validate().map_err(|e| e.to_string())?;
        Ok(c.policy)
    }

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_cached_policy_is_shown_what_its_answers_are_keyed_by() {
        let keyed = "[policy.cache]\nentries = 8\nheaders = [\"accept\"]\ncookies = [\"have\"]\n";
        let p = validated(keyed).unwrap();
        assert_eq!(p.shown(), (names(&["accept"]), names(&["have"])));
        // Narrowed by the lists, which may name only what is keyed.
        let p = validated(&format!("request_headers = []\n{keyed}")).unwrap();
        assert_eq!(p.shown(), (names(&[]), None));
        let p = validated(&format!("request_cookies = []\n{keyed}")).unwrap();
        assert_eq!(p.shown(), (names(&["accept"]), names(&[])));
        // A keyed `cookie` header holds every cookie: all shown.
        let p = validated("[policy.cache]\nentries = 8\nheaders = [\"cookie\"]\n").unwrap();
        assert_eq!(p.shown(), (names(&["cookie"]), None));
        // No cache: everything, or the lists as they are.
        assert_eq!(validated("").unwrap().shown(), (None, None));
        let p = validated("request_cookies = [\"x\"]\n[policy.cache]\nentries = 0\n").unwrap();
        assert_eq!(p.shown(), (None, names(&["x"])));
    }

    #[test]
    fn showing_a_cached_policy_more_than_its_key_is_refused_by_name() {
        let keyed = "[policy.cache]\nentries = 8\nheaders = [\"accept\"]\ncookies = [\"have\"]\n";
        let e = validated(&format!(
            "request_headers = [\"accept\", \"user-agent\"]\n{keyed}"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("policy.request_headers: `user-agent` is shown to the policy but policy.cache.headers does not key on it"),
            "{e}"
        );
        let e = validated(&format!(
            "request_cookies = [\"have\", \"session\"]\n{keyed}"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("policy.request_cookies: `session` is shown"),
            "{e}"
        );
        // The whole `cookie` header shown, but only `have` keyed.
        let e = validated(&format!("request_headers = [\"cookie\"]\n{keyed}")).unwrap_err();
        assert!(
            e.starts_with("policy.request_headers: `cookie` is shown"),
            "{e}"
        );
        // ... which is fine once the cookies are named (the header is hidden).
        let p = validated(&format!(
            "request_headers = [\"cookie\"]\nrequest_cookies = [\"have\"]\n{keyed}"
        ))
        .unwrap();
        assert_eq!(p.shown(), (names(&["cookie"]), names(&["have"])));
        assert!(!e.contains('\n'));
    }

    #[test]
    fn validate_requires_root() {
        let c = Config::parse("t.toml", "").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("origin.root:")
        );
    }

    /// `docs/herald.example.toml` must list every key with its real default.
    #[test]
    fn example_lists_every_default() {
        let text = include_str!("../../docs/herald.example.toml");
        let example = Config::parse("herald.example.toml", text).unwrap();
        assert_eq!(
            example,
            Config::default(),
            "a documented value differs from the default"
        );
        let documented: toml::Table = toml::from_str(text).unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        // An empty array of tables (`[[tls.sni]]`) is documented by a
        // commented-out example of one entry.
        fn missing(
            prefix: &str,
            defaults: &toml::Table,
            documented: &toml::Table,
            text: &str,
            out: &mut Vec<String>,
        ) {
            for (k, v) in defaults {
                let key = format!("{prefix}{k}");
                match (v, documented.get(k)) {
                    (toml::Value::Table(d), Some(toml::Value::Table(e))) => {
                        missing(&format!("{key}."), d, e, text, out)
                    }
                    (toml::Value::Array(a), None)
                        if a.is_empty() && text.contains(&format!("# [[{key}]]")) => {}
                    (_, None) => out.push(key),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        missing("", &defaults, &documented, text, &mut out);
        assert!(
            out.is_empty(),
            "keys missing from docs/herald.example.toml: {out:?}"
        );
    }

    #[test]
    fn policy_config_flattens() {
        let c = Config::parse(
            "t.toml",
            "[policy.config]\n\"/\" = [\"/a.css\", \"/b.js\"]\nmode = \"x\"\nn = 3\nnested = { a = 1 }\n",
        )
        .unwrap();
        let v = flatten_policy_config(&c.policy.config);
        assert_eq!(v["/"], ["/a.css", "/b.js"]);
        assert_eq!(v["mode"], ["x"]);
        assert_eq!(v["n"], ["3"]);
        assert!(v["nested"].is_empty());
    }
}
