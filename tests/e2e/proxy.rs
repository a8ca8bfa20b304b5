//! Herald in front of an application: `[[proxy]]` routes, push during the
//! upstream's think-time, the upstream's `Link` preloads and `103`s, and
//! upstream failures. The upstreams are real HTTP servers on loopback
//! (hyper for HTTP/1.1 and h2c, and a hand-written HTTP/1.1 one that sends a
//! `103`, which hyper's server cannot).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// `/app/hang` requests dropped before their answer (the upstream saw its
/// client go away).
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// `/app/hang` requests the application received.
static HANG_ARRIVED: AtomicUsize = AtomicUsize::new(0);

/// How long the test application "thinks" before answering a page.
const THINK: Duration = Duration::from_millis(500);
const ASSET_JS: &str = "console.log('served by the application');\n";

type AppBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> AppBody {
    http_body_util::Full::new(body.into()).boxed_unsync()
}

/// The test application.
async fn app(req: http::Request<Incoming>) -> Result<http::Response<AppBody>, Infallible> {
    let seen = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut out = http::Response::builder();
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "via",
        "host",
        "x-secret",
        "keep-alive",
    ] {
        out = out.header(format!("x-seen-{name}"), seen(name));
    }
    out = out.header(
        "x-seen-authority",
        req.uri().authority().map_or("", |a| a.as_str()).to_string(),
    );
    let path = req.uri().path().to_string();
    let response = match path.as_str() {
        "/app/page" => {
            tokio::time::sleep(THINK).await;
            out.header("content-type", "text/html")
                .header(
                    "link",
                    "</app/late.js>; rel=preload; as=script, </img/logo.svg>; rel=preload; as=image; nopush",
                )
                .body(full("<!doctype html><title>app</title>"))
        }
        "/app/product" => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            out.header("content-type", "text/html")
                .header("x-page-kind", "product")
                .header(
                    "link",
                    "</app/late.js>; rel=preload; as=script, </app/asset.js>; rel=preload; as=script",
                )
                .body(full("<!doctype html><title>product</title>"))
        }
        "/app/asset.js" | "/app/late.js" => out
            .header("content-type", "text/javascript")
            .header("etag", "\"app-1\"")
            .body(full(ASSET_JS)),
        "/app/echo" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            out.header("content-type", "application/octet-stream")
                .body(full(body))
        }
        "/app/stream" => {
            // Five chunks 20 ms apart, no content-length.
            let chunks = futures_util::stream::unfold(0u8, |i| async move {
                if i == 5 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let frame = http_body::Frame::data(Bytes::from(vec![b'a' + i; 10_000]));
                Some((Ok::<_, Infallible>(frame), i + 1))
            });
            out.header("connection", "x-internal")
                .header("x-internal", "1")
                .body(http_body_util::StreamBody::new(chunks).boxed_unsync())
        }
        "/app/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            out.body(full("late"))
        }
        "/app/hang" => {
            HANG_ARRIVED.fetch_add(1, Ordering::SeqCst);
            // Counts the requests abandoned before their answer.
            struct Abandoned;
            impl Drop for Abandoned {
                fn drop(&mut self) {
                    if std::thread::panicking() {
                        return;
                    }
                    ABANDONED.fetch_add(1, Ordering::SeqCst);
                }
            }
            let guard = Abandoned;
            tokio::time::sleep(Duration::from_secs(5)).await;
            std::mem::forget(guard);
            out.body(full("late"))
        }
        _ => out.status(404).body(full("no such page\n")),
    };
    Ok(response.unwrap())
}

/// Start the test application speaking HTTP/1.1 or h2c.
async fn start_app(h2c: bool) -> SocketAddr {
    start_counted_app(h2c).await.0
}

/// The same, with a count of the connections Herald opened to it.
async fn start_counted_app(h2c: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let io = TokioIo::new(tcp);
                let service = hyper::service::service_fn(app);
                let _ = if h2c {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                };
            });
        }
    });
    (addr, accepted)
}

/// An HTTP/1.1 application that answers every request with a `103` naming
/// `/css/site.css`, then, `think` later, the page (with no think-time, in
/// the same write as the `103`).
async fn start_app_with_103(think: Duration) -> SocketAddr {
    start_app_with_103s(1, think).await
}

/// [`start_app_with_103`], with `count` `103`s in a row.
async fn start_app_with_103s(count: usize, think: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let early = "HTTP/1.1 103 Early Hints\r\nlink: </css/site.css>; rel=preload; as=style\r\n\r\n"
                            .repeat(count);
                        let body = "<!doctype html><title>early</title>";
                        let page = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let sent = if think.is_zero() {
                            tcp.write_all(format!("{early}{page}").as_bytes()).await
                        } else {
                            match tcp.write_all(early.as_bytes()).await {
                                Ok(()) => {
                                    tokio::time::sleep(think).await;
                                    tcp.write_all(page.as_bytes()).await
                                }
                                Err(e) => Err(e),
                            }
                        };
                        if sent.is_err() {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn proxied(route: &str, policy_config: &str) -> String {
    format!(
        "{}\n{route}\n",
        config_for(&demo_site(), Some(&policy("page_map")), policy_config)
    )
}

const THINK_POLICY: &str = r#""/app/page" = ["/css/site.css", "/app/asset.js as=script"]"#;

/// The index of the first frame matching `f`.
fn first(frames: &[Seen], f: impl Fn(&Seen) -> bool) -> usize {
    frames.iter().position(f).expect("frame present")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_complete_during_the_upstreams_think_time() {
    let app = start_app(false).await;
    let herald = Herald::start(&proxied(
        &format!(
            "[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\"\nexcept = [\"/app/static/\"]"
        ),
        THINK_POLICY,
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let started = Instant::now();
    let page = client.get("/app/page").await;
    assert!(started.elapsed() >= THINK, "the application was asked");
    assert_eq!(page.status, 200);
    assert_eq!(&page.body[..], b"<!doctype html><title>app</title>");
    // The policy's two hints (one from the static root, one from the
    // application), then the application's own preload; `nopush` is not pushed.
    assert_eq!(
        page.pushed_paths(),
        ["/app/asset.js", "/app/late.js", "/css/site.css"]
    );
    for p in &page.pushes {
        assert_eq!(p.status, 200);
        let want = match p.request.uri().path() {
            "/css/site.css" => demo_file("css/site.css"),
            _ => ASSET_JS.as_bytes().to_vec(),
        };
        assert_eq!(p.body, want, "{}", p.request.uri());
    }
    let links: Vec<_> = page.headers.get_all("link").iter().collect();
    assert!(
        links
            .iter()
            .any(|l| l.to_str().unwrap().contains("</img/logo.svg>")),
        "the application's Link header is forwarded: {links:?}"
    );

    // On the wire: both of the policy's pushes were complete before the
    // page's first byte (its HEADERS), which waited for the application.
    let frames = client.seen();
    let html_head = first(&frames, |f| f.kind == 1 && f.stream == page.stream);
    for path in ["/css/site.css", "/app/asset.js"] {
        let id = page
            .pushes
            .iter()
            .find(|p| p.request.uri().path() == path)
            .unwrap()
            .stream;
        let done = first(&frames, |f| f.stream == id && f.flags & 0x1 != 0);
        assert!(
            done < html_head,
            "{path} (stream {id}) ended at frame {done}, after the HTML's HEADERS at {html_head}"
        );
    }
    // No promise after the page's HEADERS.
    assert!(
        frames[html_head..]
            .iter()
            .all(|f| !(f.kind == 5 && f.stream == page.stream)),
        "{frames:?}"
    );
    assert_wire_healthy(&frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upstream_gets_the_body_streamed_and_forwarding_headers() {
    let (app, connections) = start_counted_app(true).await;
    let herald = Herald::start(&proxied(
        &format!("[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\"\nprotocol = \"h2c\""),
        "",
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let upload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut send = client.sender().ready().await.unwrap();
    let request = client.request("POST", "/app/echo").body(()).unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    // Sent in pieces, as a client streaming an upload would.
    for piece in upload.chunks(64 * 1024) {
        body.reserve_capacity(piece.len());
        let mut offered = 0;
        while offered < piece.len() {
            let n = std::future::poll_fn(|cx| body.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let n = n.min(piece.len() - offered);
            body.send_data(Bytes::copy_from_slice(&piece[offered..offered + n]), false)
                .unwrap();
            offered += n;
        }
    }
    body.send_data(Bytes::new(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    let echoed = read_body(response.into_body()).await;
    assert_eq!(echoed.len(), upload.len());
    assert!(echoed[..] == upload[..], "the body came back unchanged");
    let seen = |n: &str| {
        h.get(format!("x-seen-{n}"))
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(seen("x-forwarded-for"), "127.0.0.1");
    assert_eq!(seen("x-forwarded-proto"), "https");
    assert_eq!(seen("x-forwarded-host"), client.authority);
    assert_eq!(
        seen("authority"),
        client.authority,
        "the client's authority"
    );
    assert_eq!(seen("via"), "2 herald");
    assert!(
        h.get_all("via").iter().any(|v| v == "2 herald"),
        "the response says it passed Herald: {h:?}"
    );
    // Ten pages at once from two client connections share one h2c
    // connection to the upstream.
    let other = Client::tls(&herald, ClientOptions::default()).await;
    let pages = (0..10).map(|i| {
        let c = if i % 2 == 0 { &client } else { &other };
        c.get("/app/asset.js")
    });
    for page in futures_util::future::join_all(pages).await {
        assert_eq!(page.status, 200);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_through_an_http1_upstream_loses_hop_by_hop_headers() {
    let app = start_app(false).await;
    let herald = Herald::start(&proxied(
        &format!("[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\""),
        "",
    ));
    let mut tcp = tokio::net::TcpStream::connect(herald.h2c).await.unwrap();
    let request = "GET /app/stream HTTP/1.1\r\nhost: shop.test\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\nkeep-alive: timeout=5\r\nx-forwarded-for: 10.0.0.1\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 65536];
    // Chunked: the response ends with the zero-length chunk.
    while !raw.ends_with(b"\r\n0\r\n\r\n") && Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("x-seen-x-secret: \r\n"),
        "x-secret was named by connection: {head}"
    );
    assert!(head.contains("x-seen-keep-alive: \r\n"), "{head}");
    assert!(
        head.contains("x-seen-x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("x-seen-x-forwarded-proto: http\r\n"),
        "{head}"
    );
    assert!(head.contains("x-seen-host: shop.test\r\n"), "{head}");
    assert!(head.contains("x-seen-via: 1.1 herald\r\n"), "{head}");
    assert!(
        !head.contains("x-internal"),
        "the upstream's hop-by-hop header leaked: {head}"
    );
    // Five chunks of 10,000 bytes, streamed through.
    for c in b'a'..=b'e' {
        assert_eq!(
            body.bytes().filter(|&b| b == c).count(),
            10_000,
            "chunk {}",
            c as char
        );
    }

    // The same stream over HTTP/2: a body of unknown length ends cleanly.
    let client = Client::h2c(&herald, ClientOptions::default()).await;
    let page = client.get("/app/stream").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.len(), 50_000);
    assert!(page.headers.get("x-internal").is_none());
    assert_wire_healthy(&client.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_and_504_with_one_log_line_each() {
    let (app, connections) = start_counted_app(false).await;
    let down = closed_port();
    let herald = Herald::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[proxy]]\nprefix = \"/down/\"\nupstream = \"http://{down}\"\n\
         [[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\"\nresponse_timeout_ms = 300\n",
        config_for(&demo_site(), None, "")
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/down/page").await;
    assert_eq!(page.status, 502);
    assert_eq!(&page.body[..], b"bad gateway\n");
    assert!(
        eventually(Duration::from_secs(5), || herald.logs().lines().any(|l| l
            .contains(&format!("upstream http://{down}: connect failed"))
            && l.contains("answered 502")))
        .await,
        "{}",
        herald.logs()
    );
    // Past the log burst window the next failure is logged too; within it,
    // counted. Either way the metric counts both.
    let page = client.get("/app/slow").await;
    assert_eq!(page.status, 504);
    assert_eq!(herald.metric("herald_upstream_errors_total"), 2.0);
    // The connection and the rest of the site are unaffected.
    let page = client.get("/css/site.css").await;
    assert_eq!(page.status, 200);
    // Keep-alive: requests one after another reuse the pooled connection
    // (the one the timed-out request was on is dropped, hence at most 2).
    for _ in 0..5 {
        assert_eq!(client.get("/app/asset.js").await.status, 200);
    }
    assert!(connections.load(Ordering::SeqCst) <= 2, "{connections:?}");
    assert!(client.is_open());
    assert_wire_healthy(&client.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_103_is_pushed_or_forwarded() {
    let app = start_app_with_103(Duration::from_millis(100)).await;
    let herald = Herald::start(&proxied(
        &format!("[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\""),
        "",
    ));
    // A client that accepts push gets the 103's preload pushed.
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/app/early").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.pushed_paths(), ["/css/site.css"]);
    assert!(page.informational.is_empty(), "{:?}", page.informational);
    assert_wire_healthy(&client.seen());

    // One that does not gets the 103 itself.
    let options = ClientOptions::browser();
    let client = Client::tls(&herald, options).await;
    let page = client.get("/app/early").await;
    assert_eq!(page.status, 200);
    assert!(page.pushes.is_empty());
    assert_eq!(page.informational.len(), 1);
    assert_eq!(page.informational[0].status(), 103);
    assert_eq!(
        page.informational[0].headers()["link"],
        "</css/site.css>; rel=preload; as=style"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_103_that_arrives_with_the_page_is_not_lost() {
    // The 103 and the page in one write: both are waiting when the page's
    // handler next looks, and the 103 must still go first, every time.
    let app = start_app_with_103(Duration::ZERO).await;
    let herald = Herald::start(&proxied(
        &format!("[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\""),
        "",
    ));
    let hinted = Client::tls(&herald, ClientOptions::browser()).await;
    for round in 0..8 {
        // A connection each round: a path is pushed once per connection.
        let pusher = Client::tls(&herald, ClientOptions::default()).await;
        let page = pusher.get(&format!("/app/early{round}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.pushed_paths(), ["/css/site.css"], "round {round}");
        let page = hinted.get(&format!("/app/early{round}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.informational.len(), 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_sending_too_many_103s_has_the_rest_dropped_with_one_line() {
    let app = start_app_with_103s(40, Duration::from_millis(50)).await;
    let herald = Herald::start(&proxied(
        &format!("[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\""),
        "",
    ));
    let client = Client::tls(&herald, ClientOptions::browser()).await;
    for round in 0..2 {
        let page = client.get(&format!("/app/chatty{round}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.informational.len(), 8, "round {round}");
    }
    // Both pages are past their 103s: the second's breach is in the first's
    // log burst.
    let line = format!("upstream http://{app}: more than 8 103 responses");
    let logged = || herald.logs().lines().filter(|l| l.contains(&line)).count();
    assert!(
        eventually(Duration::from_secs(5), || logged() >= 1).await,
        "{}",
        herald.logs()
    );
    assert_eq!(logged(), 1, "{}", herald.logs());
    assert!(client.is_open());
    assert_wire_healthy(&client.seen());
}

#[test]
fn a_bad_proxy_route_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[origin]\nroot = {:?}\n[[proxy]]\nprefix = \"/app/\"\nupstream = \"https://app.internal\"\n",
            demo_site().display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("proxy[0].upstream: `https://app.internal` must be http://host:port"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policys_on_response_drops_and_adds_hints_from_the_response_head() {
    let app = start_app(false).await;
    let config = format!(
        "{}\n[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\"\n",
        config_for(
            &demo_site(),
            Some(&policy("app_links")),
            r#""/app/product" = ["/css/site.css"]
skip = ["/app/asset"]
"kind:product" = ["/img/hero.svg u=5 i"]"#,
        )
    );
    let herald = Herald::start(&config);
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/app/product").await;
    assert_eq!(page.status, 200);
    // decide's asset, the application's kept link, and the asset added for
    // the page kind its response named; the skipped link is not pushed.
    assert_eq!(
        page.pushed_paths(),
        ["/app/late.js", "/css/site.css", "/img/hero.svg"]
    );
    assert_wire_healthy(&client.seen());

    // Without push, what the policy added is a Link of the final response.
    let options = ClientOptions::browser();
    let client = Client::tls(&herald, options).await;
    let page = client.get("/app/product").await;
    let links = page.links();
    assert!(
        links
            .iter()
            .any(|l| l.starts_with("</img/hero.svg>; rel=preload; as=image")),
        "{links:?}"
    );
    assert!(herald.logs().lines().all(|l| !l.contains("policy trapped")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_reset_during_think_time_cancels_its_upstream_request() {
    let app = start_app(false).await;
    let herald = Herald::start(&proxied(
        &format!("[[proxy]]\nprefix = \"/app/\"\nupstream = \"http://{app}\""),
        "",
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let before = ABANDONED.load(Ordering::SeqCst);
    let arrived = HANG_ARRIVED.load(Ordering::SeqCst);
    let mut send = client.sender().ready().await.unwrap();
    let request = client.request("GET", "/app/hang").body(()).unwrap();
    let (response, mut stream) = send.send_request(request, true).unwrap();
    drop(response);
    // Reset once the application is thinking (before, there is no upstream
    // request to cancel yet).
    assert!(
        eventually(Duration::from_secs(5), || HANG_ARRIVED
            .load(Ordering::SeqCst)
            > arrived)
        .await,
        "the request never reached the application"
    );
    stream.send_reset(h2::Reason::CANCEL);
    // The application sees its request go away well before its 5 s answer.
    assert!(
        eventually(Duration::from_secs(3), || ABANDONED.load(Ordering::SeqCst)
            > before)
        .await,
        "the upstream request outlived the page"
    );
    // The connection serves on.
    assert_eq!(client.get("/app/asset.js").await.status, 200);
}
