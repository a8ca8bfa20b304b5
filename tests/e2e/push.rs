//! Pushes: what is promised, how, and when not.

use crate::support::*;
use herald::http2::frame::frame_type;

fn demo_config() -> String {
    config_for(&demo_site(), Some(&policy("page_map")), DEMO_ASSETS)
}

#[tokio::test]
async fn each_promised_resource_arrives_with_the_right_bytes() {
    let herald = Herald::start(&demo_config());
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(&page.body[..], &demo_file("/index.html")[..]);
    let mut expected: Vec<String> = DEMO_PUSHES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(page.pushed_paths(), expected);
    for push in &page.pushes {
        let uri = push.request.uri();
        // An absolute, same-origin URI: clients drop promises without them.
        assert_eq!(uri.scheme_str(), Some("https"));
        assert_eq!(uri.authority().unwrap().as_str(), client.authority);
        assert_eq!(push.request.method(), http::Method::GET);
        assert_eq!(push.status, 200, "{uri}");
        assert_eq!(&push.body[..], &demo_file(uri.path())[..], "{uri} bytes");
        assert!(push.headers.contains_key(http::header::ETAG));
    }
    let css = page
        .pushes
        .iter()
        .find(|p| p.request.uri().path() == "/css/site.css")
        .unwrap();
    assert_eq!(
        css.headers[http::header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert!(
        page.informational.is_empty(),
        "no 103 when everything was pushed"
    );
    assert_wire_healthy(&client.seen());
}

#[tokio::test]
async fn every_push_promise_precedes_the_parent_headers_on_the_wire() {
    let herald = Herald::start(&demo_config());
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    let frames = client.seen();
    let on_parent: Vec<u8> = frames
        .iter()
        .filter(|f| {
            f.stream == page.stream
                && matches!(f.kind, frame_type::PUSH_PROMISE | frame_type::HEADERS)
        })
        .map(|f| f.kind)
        .collect();
    assert_eq!(
        on_parent,
        [vec![frame_type::PUSH_PROMISE; 5], vec![frame_type::HEADERS]].concat(),
        "frames on the parent stream: promises, then the response HEADERS"
    );
    assert_wire_healthy(&frames);
}

#[tokio::test]
async fn promises_carry_the_headers_the_response_may_vary_on() {
    let herald = Herald::start(&demo_config());
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let request = client
        .request("GET", "/")
        .header("accept-encoding", "gzip, br")
        .header("accept-language", "fr-CH")
        .header("user-agent", "herald-test/1")
        .header("cookie", "session=abc")
        .header("x-not-copied", "1")
        .body(())
        .unwrap();
    let page = client.fetch(request).await;
    assert_eq!(page.pushes.len(), 5);
    for push in &page.pushes {
        let h = push.request.headers();
        assert_eq!(h["accept-encoding"], "gzip, br");
        assert_eq!(h["accept-language"], "fr-CH");
        assert_eq!(h["user-agent"], "herald-test/1");
        assert_eq!(h["cookie"], "session=abc");
        assert!(!h.contains_key("x-not-copied"));
    }
}

#[tokio::test]
async fn enable_push_0_gets_no_promise_but_early_hints_and_links() {
    let herald = Herald::start(&demo_config());
    let client = Client::tls(&herald, ClientOptions::browser()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(&page.body[..], &demo_file("/index.html")[..]);
    assert!(page.pushes.is_empty());
    assert!(
        !client
            .seen()
            .iter()
            .any(|f| f.kind == frame_type::PUSH_PROMISE)
    );
    assert_eq!(page.informational.len(), 1, "one 103 Early Hints");
    let early = &page.informational[0];
    assert_eq!(early.status(), 103);
    let links = page.early_links(0);
    let links: Vec<&str> = links.iter().map(String::as_str).collect();
    assert_eq!(links.len(), 5);
    assert!(
        links.contains(&"</css/site.css>; rel=preload; as=style"),
        "{links:?}"
    );
    assert!(
        links.contains(&"</fonts/dejavu-light.woff>; rel=preload; as=font; crossorigin"),
        "{links:?}"
    );
    assert_eq!(page.links(), links, "the final response repeats the links");
}

#[tokio::test]
async fn no_push_for_head_or_post_parents_but_responses_are_served() {
    let herald = Herald::start(&demo_config());
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let head = client
        .fetch(client.request("HEAD", "/").body(()).unwrap())
        .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.pushes.is_empty() && head.informational.is_empty());
    let post = client
        .fetch(client.request("POST", "/").body(()).unwrap())
        .await;
    assert_eq!(post.status, 405);
    assert!(post.pushes.is_empty());
    assert!(
        !client
            .seen()
            .iter()
            .any(|f| f.kind == frame_type::PUSH_PROMISE)
    );
}

#[tokio::test]
async fn never_the_same_path_twice_on_a_connection_nor_the_parents_own_path() {
    let assets = r#""/" = ["/", "/index.html?x=1", "/css/site.css", "/js/app.js"]
"/index.html" = ["/css/site.css", "/js/app.js", "/img/logo.svg"]"#;
    let herald = Herald::start(&config_for(&demo_site(), Some(&policy("page_map")), assets));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let first = client.get("/").await;
    assert_eq!(
        first.pushed_paths(),
        ["/css/site.css", "/index.html", "/js/app.js"]
    );
    let second = client.get("/index.html").await;
    assert_eq!(
        second.pushed_paths(),
        ["/img/logo.svg"],
        "already pushed on this connection: not again"
    );
    assert!(
        second.informational.is_empty(),
        "and not hinted either: the client has it"
    );
    // A new connection starts with a clean memo.
    let other = Client::tls(&herald, ClientOptions::default()).await;
    assert_eq!(other.get("/index.html").await.pushes.len(), 3);
    assert_wire_healthy(&client.seen());
}

#[tokio::test]
async fn pushed_streams_never_trigger_pushes_of_their_own() {
    // The CSS has hints of its own: they must not be pushed from the pushed stream.
    let assets = r#""/" = ["/css/site.css"]
"/css/site.css" = ["/fonts/dejavu-light.woff"]"#;
    let herald = Herald::start(&config_for(&demo_site(), Some(&policy("page_map")), assets));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.pushed_paths(), ["/css/site.css"]);
    let promises: Vec<_> = client
        .seen()
        .into_iter()
        .filter(|f| f.kind == frame_type::PUSH_PROMISE)
        .collect();
    assert_eq!(promises.len(), 1);
    assert_eq!(
        promises[0].stream, page.stream,
        "promised on the client's stream only"
    );
}

#[tokio::test]
async fn concurrent_pages_on_one_connection_keep_the_wire_valid() {
    // 24 pages, each pushing 3 assets of its own, all requested at once on one
    // connection: h2 alone would interleave their promises out of order.
    let site = tempfile::tempdir().unwrap();
    let mut assets = String::new();
    for p in 0..24 {
        std::fs::write(
            site.path().join(format!("p{p}.html")),
            format!("<p>page {p}</p>"),
        )
        .unwrap();
        let mut list = Vec::new();
        for a in 0..3 {
            let name = format!("a{p}_{a}.js");
            std::fs::write(
                site.path().join(&name),
                format!("console.log({p}, {a});").repeat(200),
            )
            .unwrap();
            list.push(format!("\"/{name}\""));
        }
        assets.push_str(&format!("\"/p{p}.html\" = [{}]\n", list.join(", ")));
    }
    let herald = Herald::start(&config_for(site.path(), Some(&policy("page_map")), &assets));
    let client = std::sync::Arc::new(Client::tls(&herald, ClientOptions::default()).await);
    for round in 0..2 {
        let mut tasks = Vec::new();
        for p in 0..24 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                (p, client.get(&format!("/p{p}.html")).await)
            }));
        }
        for t in tasks {
            let (p, page) = t.await.unwrap();
            assert_eq!(page.status, 200);
            let expected = if round == 0 { 3 } else { 0 };
            assert_eq!(page.pushes.len(), expected, "page {p} round {round}");
            for push in &page.pushes {
                assert_eq!(
                    push.body.len(),
                    std::fs::metadata(site.path().join(&push.request.uri().path()[1..]))
                        .unwrap()
                        .len() as usize
                );
            }
        }
    }
    assert!(client.is_open(), "connection still up");
    let frames = client.seen();
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.kind == frame_type::PUSH_PROMISE)
            .count(),
        72
    );
    assert_wire_healthy(&frames);
}

#[tokio::test]
async fn h2c_prior_knowledge_serves_and_pushes_with_the_http_scheme() {
    let herald = Herald::start(&demo_config());
    let client = Client::h2c(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.pushes.len(), 5);
    assert!(
        page.pushes
            .iter()
            .all(|p| p.request.uri().scheme_str() == Some("http"))
    );
}

#[tokio::test]
async fn without_a_policy_files_are_served_and_nothing_is_pushed() {
    let herald = Herald::start(&config_for(&demo_site(), None, ""));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.pushes.is_empty() && page.informational.is_empty());
}

#[tokio::test]
async fn hint_only_and_push_only_deliveries_are_respected() {
    let assets = r#""/" = ["/css/site.css push", "/js/app.js hint", "/img/logo.svg"]"#;
    let herald = Herald::start(&config_for(&demo_site(), Some(&policy("page_map")), assets));
    let pushing = Client::tls(&herald, ClientOptions::default()).await;
    let page = pushing.get("/").await;
    assert_eq!(page.pushed_paths(), ["/css/site.css", "/img/logo.svg"]);
    assert_eq!(
        page.early_links(0),
        ["</js/app.js>; rel=preload; as=script; nopush"]
    );
    let browser = Client::tls(&herald, ClientOptions::browser()).await;
    let page = browser.get("/").await;
    assert_eq!(
        page.early_links(0),
        [
            "</js/app.js>; rel=preload; as=script",
            "</img/logo.svg>; rel=preload; as=image"
        ],
        "push-only is not hinted"
    );
}

#[tokio::test]
async fn the_cache_aware_policy_skips_what_the_cookie_lists() {
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("cache_aware")),
        DEMO_ASSETS,
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let request = client
        .request("GET", "/")
        .header("cookie", "herald-have=/css/site.css|/img/hero.svg")
        .body(())
        .unwrap();
    let page = client.fetch(request).await;
    assert_eq!(
        page.pushed_paths(),
        ["/fonts/dejavu-light.woff", "/img/logo.svg", "/js/app.js"]
    );
}

#[tokio::test]
async fn the_navigation_only_policy_ignores_subresource_requests() {
    let assets = r#""/" = ["/css/site.css"]
"/js/app.js" = ["/img/logo.svg"]"#;
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("navigation_only")),
        assets,
    ));
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let script = client
        .request("GET", "/js/app.js")
        .header("sec-fetch-dest", "script")
        .header("sec-fetch-mode", "no-cors")
        .body(())
        .unwrap();
    let page = client.fetch(script).await;
    assert_eq!(page.status, 200);
    assert!(page.pushes.is_empty());
    let nav = client
        .request("GET", "/")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-mode", "navigate")
        .body(())
        .unwrap();
    assert_eq!(client.fetch(nav).await.pushed_paths(), ["/css/site.css"]);
}

#[test]
fn the_pageload_bench_accepts_pushes_and_counts_none_wasted_on_the_demo() {
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "bench",
            "pageload",
            "--pages",
            "6",
            "--concurrency",
            "2",
            "--addr",
        ])
        .arg(herald.https.to_string())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.starts_with("6 page loads of https://localhost/"),
        "{report}"
    );
    // The row: pages/s | HTML p50 | critical p50 | critical p99 | pushes/page
    // | used | wasted | errors. All five demo pushes are used by the page
    // (the font through its stylesheet), none wasted, no errors.
    let row: Vec<&str> = report
        .lines()
        .find(|l| l.starts_with("| ") && !l.starts_with("| pages/s"))
        .unwrap_or_else(|| panic!("{report}"))
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(row[5], "5.0", "{report}");
    assert_ne!(row[6], "0 KiB", "{report}");
    assert_eq!(row[7], "0 KiB", "{report}");
    assert_eq!(row[8], "0", "{report}");
}
