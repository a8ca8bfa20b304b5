//! Test support: build the example policies from source, run the real `herald`
//! binary, and talk to it with a real TLS HTTP/2 client (the `h2` crate with
//! push enabled) that records every frame it receives.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herald::http2::frame::{FrameDecoder, frame_type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The demo site shipped with Herald.
pub fn demo_site() -> PathBuf {
    workspace().join("host/demo/site")
}

/// Build every policy component once per test run and return the directory
/// holding the `.wasm` files. Guests get their own target directory: the
/// outer `cargo test` holds the lock on the main one.
pub fn policies() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace();
        let target = root.join("target/guests");
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "--profile",
                "guest",
                "--target",
                "wasm32-wasip2",
            ])
            .args([
                "-p",
                "page-map",
                "-p",
                "cache-aware",
                "-p",
                "navigation-only",
                "-p",
                "reference",
                "-p",
                "misbehave",
                "-p",
                "declares",
                "-p",
                "not-a-policy",
                "-p",
                "policy-0-1-0",
                "-p",
                "app-links",
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("cannot run cargo to build the policies");
        assert!(
            status.success(),
            "building the policies failed (is wasm32-wasip2 installed? run scripts/setup)"
        );
        target.join("wasm32-wasip2/guest")
    })
}

/// The path of a built policy, e.g. `policy("page_map")`.
pub fn policy(name: &str) -> PathBuf {
    let p = policies().join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} was not built", p.display());
    p
}

/// Build the reference policy written in `lang` (`python`, `js`, `c`, or
/// `js-starlingmonkey` for the JavaScript one built with componentize-js)
/// with its own `plugins-example/<lang>/build.sh`, once per test run.
pub fn language_policy(lang: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(l, _)| l == lang) {
        return p.clone();
    }
    let out = workspace().join(format!("target/guests/languages/reference_{lang}.wasm"));
    let (dir, engine) = match lang.split_once('-') {
        Some((dir, engine)) => (dir, Some(engine)),
        None => (lang, None),
    };
    let script = workspace().join(format!("plugins-example/{dir}/build.sh"));
    let result = Command::new(&script)
        .arg(&out)
        .args(engine.map(|e| ["--engine", e]).into_iter().flatten())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        result.status.success() && out.is_file(),
        "building the {lang} reference policy failed (toolchains come from scripts/setup):\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    built.push((lang.to_string(), out.clone()));
    out
}

/// The demo's page → assets map as TOML, for `[policy.config]`.
pub const DEMO_ASSETS: &str = r#"
"/" = ["/css/site.css u=0", "/js/app.js u=1", "/fonts/dejavu-light.woff u=3", "/img/logo.svg u=4", "/img/hero.svg u=5 i"]
"#;

/// The five assets the demo's `/` hints, in order.
pub const DEMO_PUSHES: [&str; 5] = [
    "/css/site.css",
    "/js/app.js",
    "/fonts/dejavu-light.woff",
    "/img/logo.svg",
    "/img/hero.svg",
];

/// A running `herald serve`, killed on drop.
pub struct Herald {
    child: Child,
    pub https: SocketAddr,
    pub h2c: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    /// Reads `stderr` into the string until the process's end.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Herald {
    /// Start Herald with `config` (TOML, written to a temp dir beside a
    /// generated certificate) plus `--listen 127.0.0.1:0 --h2c 127.0.0.1:0`.
    pub fn start(config: &str) -> Herald {
        Self::start_with_args(config, &[])
    }

    pub fn start_with_args(config: &str, args: &[&str]) -> Herald {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("herald.toml");
        let full = format!("{config}\n");
        let full = if full.contains("[tls]") {
            full
        } else {
            format!("{full}\n[tls]\nself_signed_out = \"cert.pem\"\n")
        };
        std::fs::write(&config_path, full).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0", "--h2c", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start herald");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        };
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut https, mut h2c, mut admin) = (None, None, None);
        let wants_admin = config.contains("[admin]");
        while https.is_none() || h2c.is_none() || (wants_admin && admin.is_none()) {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "herald exited before listening:\n{}",
                    stderr.lock().unwrap()
                );
            }
            if let Some(addr) = line
                .trim()
                .strip_prefix("herald admin listening on http://")
            {
                admin = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.trim().strip_prefix("herald listening on https://") {
                https = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.trim().strip_prefix("herald listening on http://") {
                h2c = Some(addr.parse().unwrap());
            }
        }
        std::thread::spawn(move || for _ in stdout.lines() {});
        Herald {
            child,
            https: https.unwrap(),
            h2c: h2c.unwrap(),
            admin,
            dir,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Everything Herald logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET path` on the admin listener: the whole HTTP/1.1 response.
    pub fn admin_get(&self, path: &str, token: Option<&str>) -> String {
        use std::io::{Read, Write};
        let addr = self.admin.expect("config has an [admin] listener");
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nhost: admin\r\n{auth}connection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        text
    }

    /// The whole `/metrics` page from the admin listener.
    pub fn metrics_text(&self) -> String {
        self.admin_get("/metrics", None)
    }

    /// Fetch `/metrics` from the admin listener and return the sum of the
    /// series named `name` over all label sets.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text();
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        assert!(!values.is_empty(), "{name} not in /metrics:\n{text}");
        values.iter().sum()
    }

    /// The certificate Herald generated, for clients to trust.
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Send a signal to the process.
    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Wait for the process to exit (at most `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Its last lines are read before the caller looks at them.
                if let Some(reader) = self.stderr_reader.take() {
                    let start = std::time::Instant::now();
                    while !reader.is_finished() && start.elapsed() < Duration::from_secs(2) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config serving `root` with `policy` and `[policy.config]` entries.
///
/// The policy deadline is 1 s, not the production 20 ms: tests run many
/// servers at once on two cores, and a test about ordering must not turn on
/// CPU headroom. Deadlines themselves are tested with a looping policy.
pub fn config_for(root: &Path, policy: Option<&Path>, policy_config: &str) -> String {
    let mut c = format!("[origin]\nroot = {:?}\n", root.display().to_string());
    if let Some(p) = policy {
        c.push_str(&format!(
            "[policy]\npath = {:?}\ndeadline_ms = 1000\n[policy.config]\n{policy_config}\n",
            p.display().to_string()
        ));
    }
    c
}

/// One frame the client received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub kind: u8,
    pub len: usize,
    pub flags: u8,
    pub stream: u32,
    pub promised: Option<u32>,
    pub error: Option<u32>,
}

impl Seen {
    pub fn of(f: &herald::http2::frame::Frame<'_>) -> Seen {
        Seen {
            kind: f.head.kind,
            len: f.head.len,
            flags: f.head.flags,
            stream: f.head.stream,
            promised: f.promised_id(),
            error: f.error_code(),
        }
    }
}

/// An IO wrapper recording the frames read from the server.
pub struct Recorder<IO> {
    io: IO,
    decoder: FrameDecoder,
    frames: Arc<Mutex<Vec<Seen>>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Recorder<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let frames = &this.frames;
            this.decoder.feed(&buf.filled()[before..], |f| {
                frames.lock().unwrap().push(Seen::of(f))
            });
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Recorder<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Client options.
#[derive(Clone, Copy)]
pub struct ClientOptions {
    pub enable_push: bool,
    pub max_concurrent_streams: Option<u32>,
    /// The client's stream receive window (default 4 MiB).
    pub stream_window: u32,
    /// The client's connection receive window (default 16 MiB).
    pub connection_window: u32,
}

impl ClientOptions {
    /// A client that refuses push (SETTINGS_ENABLE_PUSH=0), as browsers do:
    /// hints reach it as `103` and `Link`.
    pub fn browser() -> ClientOptions {
        ClientOptions {
            enable_push: false,
            ..ClientOptions::default()
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            enable_push: true,
            max_concurrent_streams: None,
            stream_window: 4 << 20,
            connection_window: 16 << 20,
        }
    }
}

/// A real HTTP/2 client connection.
pub struct Client {
    send: h2::client::SendRequest<Bytes>,
    pub frames: Arc<Mutex<Vec<Seen>>>,
    pub authority: String,
    pub scheme: &'static str,
    driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// A pushed response as the client got it.
#[derive(Debug)]
pub struct Pushed {
    pub stream: u32,
    pub request: http::Request<()>,
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A page and everything that came with it.
#[derive(Debug)]
pub struct Page {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub informational: Vec<http::Response<()>>,
    pub pushes: Vec<Pushed>,
    pub stream: u32,
}

/// Every link of the `Link` fields in `headers`, in order, one string each:
/// a field may carry several, comma-separated (Herald's HTTP/2 responses
/// put all of theirs in one). Commas inside `<...>` do not split.
pub fn links(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("link")
        .iter()
        .flat_map(|v| split_links(v.to_str().expect("a Link value is text")))
        .collect()
}

/// The links of one `Link` value.
pub fn split_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim().to_string());
    out
}

impl Page {
    /// The links of the final response's `Link` fields.
    pub fn links(&self) -> Vec<String> {
        links(&self.headers)
    }

    /// The links of the `n`th informational (`103`) response.
    pub fn early_links(&self, n: usize) -> Vec<String> {
        links(self.informational[n].headers())
    }

    pub fn pushed_paths(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .pushes
            .iter()
            .map(|p| p.request.uri().path().to_string())
            .collect();
        p.sort();
        p
    }
}

impl Client {
    /// Connect over TLS (ALPN h2), trusting the certificate Herald wrote.
    pub async fn tls(herald: &Herald, options: ClientOptions) -> Client {
        Self::tls_via(herald, herald.https, options).await
    }

    /// Like `tls`, through another address (e.g. a delaying proxy).
    pub async fn tls_via(herald: &Herald, addr: SocketAddr, options: ClientOptions) -> Client {
        Self::tls_named(addr, "localhost", &[herald.cert_pem()], options)
            .await
            .expect("TLS handshake with herald")
    }

    /// Connect over TLS to `addr` naming `server_name` (SNI), trusting only
    /// the certificates in `roots` (PEM files); the connection's authority is
    /// `server_name:port`. Fails if the handshake does (e.g. the certificate
    /// presented is not valid for `server_name`).
    pub async fn tls_named(
        addr: SocketAddr,
        server_name: &str,
        roots: &[PathBuf],
        options: ClientOptions,
    ) -> Result<Client, std::io::Error> {
        let mut store = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for root in roots {
            let pem = std::fs::read(root).expect("a root certificate file");
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                store.add(cert.unwrap()).unwrap();
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let tls = connector.connect(name, tcp).await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        Ok(Self::handshake(
            tls,
            format!("{server_name}:{}", addr.port()),
            "https",
            options,
        )
        .await)
    }

    /// Connect with cleartext HTTP/2 (prior knowledge).
    pub async fn h2c(herald: &Herald, options: ClientOptions) -> Client {
        let tcp = tokio::net::TcpStream::connect(herald.h2c).await.unwrap();
        Self::handshake(tcp, herald.h2c.to_string(), "http", options).await
    }

    async fn handshake<IO>(
        io: IO,
        authority: String,
        scheme: &'static str,
        options: ClientOptions,
    ) -> Client
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let io = Recorder {
            io,
            decoder: FrameDecoder::new(false),
            frames: frames.clone(),
        };
        let mut builder = h2::client::Builder::new();
        builder
            .enable_push(options.enable_push)
            .initial_window_size(options.stream_window)
            .initial_connection_window_size(options.connection_window);
        if let Some(n) = options.max_concurrent_streams {
            builder.max_concurrent_streams(n);
        }
        let (send, connection) = builder
            .handshake::<_, Bytes>(io)
            .await
            .expect("h2 handshake");
        let driver = tokio::spawn(connection);
        Client {
            send,
            frames,
            authority,
            scheme,
            driver,
        }
    }

    /// A request for `path` on this connection's origin.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(format!("{}://{}{}", self.scheme, self.authority, path))
    }

    /// GET a page, collect its 1xx responses and every push (bodies read
    /// concurrently, as a browser would).
    pub async fn get(&self, path: &str) -> Page {
        self.fetch(self.request("GET", path).body(()).unwrap())
            .await
    }

    pub async fn fetch(&self, request: http::Request<()>) -> Page {
        let mut send = self.send.clone().ready().await.expect("connection ready");
        let (mut fut, _) = send.send_request(request, true).expect("request sent");
        let stream = u32::from(fut.stream_id());
        let mut promises = fut.push_promises();
        // h2 does not wake the promise stream when the parent closes, so the
        // collector is told when the parent's body is complete: every promise
        // precedes the parent's END_STREAM, so whatever is queued then is all.
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let pushes = tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut take = |p: h2::client::PushPromise| {
                let (request, response) = p.into_parts();
                let stream = u32::from(response.stream_id());
                tasks.push(tokio::spawn(async move {
                    let response = response.await.expect("pushed response");
                    let (parts, body) = response.into_parts();
                    Pushed {
                        stream,
                        request,
                        status: parts.status,
                        headers: parts.headers,
                        body: read_body(body).await,
                    }
                }));
            };
            loop {
                tokio::select! {
                    p = promises.push_promise() => match p {
                        Some(Ok(p)) => take(p),
                        _ => break,
                    },
                    _ = &mut done_rx => {
                        while let Poll::Ready(Some(Ok(p))) =
                            std::future::poll_fn(|cx| Poll::Ready(promises.poll_push_promise(cx))).await
                        {
                            take(p);
                        }
                        break;
                    }
                }
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let mut informational = Vec::new();
        // The response is polled only once h2 says the final one is next:
        // its connection runs on another thread, and `poll` skips (drops)
        // any 1xx that lands between a pending `poll_informational` and it.
        let response = std::future::poll_fn(|cx| {
            loop {
                match fut.poll_informational(cx) {
                    Poll::Ready(Some(Ok(info))) => informational.push(info),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => return Pin::new(&mut fut).poll(cx),
                }
            }
        })
        .await
        .expect("response");
        let (parts, body) = response.into_parts();
        let body = read_body(body).await;
        let _ = done_tx.send(());
        let pushes = tokio::time::timeout(Duration::from_secs(20), pushes)
            .await
            .expect("pushes complete")
            .unwrap();
        Page {
            status: parts.status,
            headers: parts.headers,
            body,
            informational,
            pushes,
            stream,
        }
    }

    /// A handle to send requests directly (for tests that drive h2 by hand).
    pub fn sender(&self) -> h2::client::SendRequest<Bytes> {
        self.send.clone()
    }

    /// Frames received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.frames.lock().unwrap().clone()
    }

    /// Whether the connection is still up (the driver has not ended).
    pub fn is_open(&self) -> bool {
        !self.driver.is_finished()
    }
}

use std::future::Future;

/// Read a whole body, releasing flow control as we go.
pub async fn read_body(mut body: h2::RecvStream) -> Bytes {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Bytes::from(out)
}

/// Assert the invariants of a healthy push connection: promised ids strictly
/// increase, every PUSH_PROMISE precedes its parent's first HEADERS, and the
/// server sent no GOAWAY with an error and no RST_STREAM with PROTOCOL_ERROR.
pub fn assert_wire_healthy(frames: &[Seen]) {
    let mut last = 0;
    for f in frames.iter().filter(|f| f.kind == frame_type::PUSH_PROMISE) {
        let id = f.promised.unwrap();
        assert!(
            id > last,
            "promised id {id} after {last}: out of order on the wire"
        );
        last = id;
    }
    for (i, f) in frames.iter().enumerate() {
        if f.kind == frame_type::PUSH_PROMISE {
            let parent_headers_before = frames[..i]
                .iter()
                .any(|g| g.kind == frame_type::HEADERS && g.stream == f.stream);
            assert!(
                !parent_headers_before,
                "PUSH_PROMISE {:?} after its parent's HEADERS",
                f.promised
            );
        }
        if f.kind == frame_type::GOAWAY {
            assert_eq!(
                f.error,
                Some(0),
                "server sent GOAWAY with error {:?}",
                f.error
            );
        }
        if f.kind == frame_type::RST_STREAM {
            assert_ne!(
                f.error,
                Some(1),
                "server reset stream {} with PROTOCOL_ERROR",
                f.stream
            );
        }
    }
}

/// Files under the demo site, for comparing pushed bytes.
pub fn demo_file(path: &str) -> Vec<u8> {
    std::fs::read(demo_site().join(path.trim_start_matches('/'))).unwrap()
}

/// Poll `cond` until true or `timeout`.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
