//! The static origin over the wire.

use std::path::PathBuf;

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

/// A self-signed certificate for `names`, written as `stem.pem` / `stem.key`.
fn certificate(dir: &std::path::Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let (cert, key) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test]
async fn each_host_gets_its_own_certificate_and_a_reused_connection_gets_421() {
    let certs = tempfile::tempdir().unwrap();
    let (default_cert, default_key) = certificate(certs.path(), "default", &["localhost"]);
    let (shop_cert, shop_key) = certificate(certs.path(), "shop", &["shop.test"]);
    let (blog_cert, blog_key) = certificate(certs.path(), "blog", &["*.blog.test"]);
    let herald = Herald::start(&format!(
        "{}\n[tls]\ncert = {:?}\nkey = {:?}\n\n[[tls.sni]]\nnames = [\"shop.test\"]\ncert = {:?}\nkey = {:?}\n\n[[tls.sni]]\nnames = [\"*.blog.test\"]\ncert = {:?}\nkey = {:?}\n",
        config_for(&demo_site(), None, ""),
        default_cert,
        default_key,
        shop_cert,
        shop_key,
        blog_cert,
        blog_key
    ));
    let roots = [default_cert, shop_cert, blog_cert.clone()];
    // Each name gets the certificate valid for it (the client verifies it
    // against the name, so a wrong one fails the handshake).
    let shop = Client::tls_named(herald.https, "shop.test", &roots, ClientOptions::default())
        .await
        .expect("shop.test gets its certificate");
    assert_eq!(shop.get("/css/site.css").await.status, 200);
    let blog = Client::tls_named(
        herald.https,
        "a.blog.test",
        &roots,
        ClientOptions::default(),
    )
    .await
    .expect("a.blog.test gets the wildcard certificate");
    assert_eq!(blog.get("/css/site.css").await.status, 200);
    let local = Client::tls_named(herald.https, "localhost", &roots, ClientOptions::default())
        .await
        .expect("localhost gets the default certificate");
    assert_eq!(local.get("/").await.status, 200);
    // A wildcard covers one label, not two: x.y.blog.test gets the default
    // certificate, which is not valid for it.
    assert!(
        Client::tls_named(
            herald.https,
            "x.y.blog.test",
            std::slice::from_ref(&blog_cert),
            ClientOptions::default()
        )
        .await
        .is_err()
    );
    // The shop connection reused for the blog: its certificate does not
    // cover that host, so 421 and the client retries elsewhere.
    let misdirected = shop
        .fetch(
            http::Request::get(format!(
                "https://a.blog.test:{}/css/site.css",
                herald.https.port()
            ))
            .body(())
            .unwrap(),
        )
        .await;
    assert_eq!(misdirected.status, 421);
    // The same connection still serves its own host.
    assert_eq!(shop.get("/css/site.css").await.status, 200);
}

#[test]
fn a_bad_sni_entry_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    for (entry, expect) in [
        (
            "names = []\ncert = \"a.pem\"\nkey = \"a.key\"",
            "tls.sni[0].names: list at least one host name",
        ),
        (
            "names = [\"shop test\"]\ncert = \"a.pem\"\nkey = \"a.key\"",
            "tls.sni[0].names: `shop test` is not a host name",
        ),
        (
            "names = [\"shop.test\"]\ncert = \"missing.pem\"\nkey = \"a.key\"",
            "tls.sni[0].cert: cannot read",
        ),
    ] {
        std::fs::write(
            &config,
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\n[origin]\nroot = {:?}\n[[tls.sni]]\n{entry}\n", demo_site()),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("herald: ")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(expect), "{err}");
    }
}
