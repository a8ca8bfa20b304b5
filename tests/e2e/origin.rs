//! The static origin over the wire.

use crate::support::*;

#[tokio::test]
async fn conditional_head_404_and_traversal_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "<p>home</p>").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    let herald = Herald::start(&config_for(&root, None, ""));
    let client = Client::h2c(&herald, ClientOptions::default()).await;

    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "max-age=60");
    let etag = page.headers["etag"].to_str().unwrap().to_string();
    let lm = page.headers["last-modified"].to_str().unwrap().to_string();

    let cond = client
        .fetch(
            client
                .request("GET", "/")
                .header("if-none-match", &etag)
                .body(())
                .unwrap(),
        )
        .await;
    assert_eq!(cond.status, 304);
    assert!(cond.body.is_empty());
    let cond = client
        .fetch(
            client
                .request("GET", "/index.html")
                .header("if-modified-since", &lm)
                .body(())
                .unwrap(),
        )
        .await;
    assert_eq!(cond.status, 304);

    let head = client
        .fetch(client.request("HEAD", "/index.html").body(()).unwrap())
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], "11");
    assert!(head.body.is_empty());

    assert_eq!(client.get("/nope.html").await.status, 404);
    for path in [
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/x/..%2f..%2fsecret.txt",
        "/link.txt",
        "/up/secret.txt",
    ] {
        let r = client.get(path).await;
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("TOP SECRET"),
            "{path} leaked"
        );
    }
}

#[tokio::test]
async fn cache_control_comes_from_config() {
    let config = format!(
        "{}cache_control = \"public, max-age=600\"\n",
        config_for(&demo_site(), None, "")
    );
    let herald = Herald::start(&config);
    let client = Client::h2c(&herald, ClientOptions::default()).await;
    assert_eq!(
        client.get("/css/site.css").await.headers["cache-control"],
        "public, max-age=600"
    );
}

#[tokio::test]
async fn other_authorities_get_421_misdirected_request() {
    let config = format!(
        "[origin]\nroot = {:?}\nhosts = [\"localhost\", \"www.example.test\"]\n[policy]\npath = {:?}\ndeadline_ms = 1000\n[policy.config]\n{DEMO_ASSETS}\n",
        demo_site().display().to_string(),
        policy("page_map").display().to_string()
    );
    let herald = Herald::start(&config);
    let client = Client::tls(&herald, ClientOptions::default()).await;
    let ok = client.get("/").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.pushes.len(), 5);
    let other = client
        .fetch(
            http::Request::get(format!("https://evil.example:{}/", herald.https.port()))
                .body(())
                .unwrap(),
        )
        .await;
    assert_eq!(other.status, 421);
    assert!(other.pushes.is_empty() && other.informational.is_empty());
    let www = client
        .fetch(
            http::Request::get("https://WWW.example.test/css/site.css")
                .body(())
                .unwrap(),
        )
        .await;
    assert_eq!(
        www.status, 200,
        "host names compare case-insensitively, ports ignored"
    );
}
