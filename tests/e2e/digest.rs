//! The signed cache-digest cookie (`[push.cache_digest]`): what a client was
//! sent, remembered across connections and restarts, asked by the
//! `cache-aware` policy through `likely-cached`, versioned by ETag.

use std::path::Path;

use crate::support::*;

const POLICY: &str = r#""/" = ["/css/site.css", "/js/app.js"]"#;

/// A copy of the demo site we may change.
fn site_copy(dir: &Path) -> std::path::PathBuf {
    let site = dir.join("site");
    for sub in ["css", "js"] {
        std::fs::create_dir_all(site.join(sub)).unwrap();
    }
    for file in ["index.html", "css/site.css", "js/app.js"] {
        std::fs::write(site.join(file), demo_file(file)).unwrap();
    }
    site
}

fn start(site: &Path, key: &Path) -> Herald {
    Herald::start(&format!(
        "{}\n[push.cache_digest]\nenabled = true\nkey_file = {:?}\n",
        config_for(site, Some(&policy("cache_aware")), POLICY),
        key.display().to_string()
    ))
}

/// The `herald-cd=...` pair of a response's Set-Cookie, if any.
fn digest_cookie(page: &Page) -> Option<String> {
    page.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("herald-cd="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

async fn visit(herald: &Herald, push: bool, cookie: Option<&str>) -> Page {
    let options = ClientOptions {
        enable_push: push,
        ..ClientOptions::default()
    };
    let client = Client::tls(herald, options).await;
    let mut request = client.request("GET", "/");
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    let page = client.fetch(request.body(()).unwrap()).await;
    assert_eq!(page.status, 200);
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_is_not_sent_what_it_has_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_copy(dir.path());
    let key = dir.path().join("digest.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let herald = start(&site, &key);

    // First visit: everything pushed, and the digest cookie set (signed,
    // HttpOnly, Secure on https).
    let first = visit(&herald, true, None).await;
    assert_eq!(first.pushed_paths(), ["/css/site.css", "/js/app.js"]);
    let set = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("herald-cd="))
        .expect("digest cookie set");
    assert!(
        set.contains("HttpOnly") && set.contains("Secure") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = digest_cookie(&first).unwrap();

    // A new connection with the cookie: nothing pushed, nothing to update.
    let again = visit(&herald, true, Some(&cookie)).await;
    assert!(again.pushes.is_empty(), "{:?}", again.pushed_paths());
    assert!(digest_cookie(&again).is_none());

    // The same holds for a client without push: no 103 for what it has.
    let hints = visit(&herald, false, Some(&cookie)).await;
    assert!(hints.informational.is_empty(), "{:?}", hints.informational);

    // A forged or damaged cookie counts as no cookie.
    let mut forged = cookie.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let tampered = visit(&herald, true, Some(&forged)).await;
    assert_eq!(tampered.pushed_paths(), ["/css/site.css", "/js/app.js"]);

    // A changed asset has a new ETag: it alone is pushed again, and the
    // cookie updated to include its new version.
    std::fs::write(
        site.join("js/app.js"),
        b"console.log('v2, a different length');\n",
    )
    .unwrap();
    let changed = visit(&herald, true, Some(&cookie)).await;
    assert_eq!(changed.pushed_paths(), ["/js/app.js"]);
    assert_eq!(
        &changed.pushes[0].body[..],
        b"console.log('v2, a different length');\n"
    );
    let updated = digest_cookie(&changed).expect("digest updated");
    assert!(visit(&herald, true, Some(&updated)).await.pushes.is_empty());

    // Another instance with the same key (a fleet, or a restart) honours it.
    drop(herald);
    let other = start(&site, &key);
    let elsewhere = visit(&other, true, Some(&updated)).await;
    assert!(
        elsewhere.pushes.is_empty(),
        "{:?}",
        elsewhere.pushed_paths()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hinted_resources_are_recorded_for_clients_without_push() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_copy(dir.path());
    let key = dir.path().join("digest.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let herald = start(&site, &key);
    // A browser: hints as a 103, and the digest records them.
    let first = visit(&herald, false, None).await;
    assert_eq!(first.informational.len(), 1);
    let cookie = digest_cookie(&first).expect("hinted resources recorded");
    let again = visit(&herald, false, Some(&cookie)).await;
    assert!(again.informational.is_empty());
    assert!(again.headers.get("link").is_none());
}
