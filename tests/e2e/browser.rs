//! A real browser: headless Chromium (which, like every browser today, sends
//! SETTINGS_ENABLE_PUSH=0) loads the demo page over HTTP/2 from Herald, with
//! Herald's certificate trusted through an NSS database (Chromium ignores
//! early hints from an untrusted origin; `--ignore-certificate-errors` is not
//! enough). It must receive the 103 and use every preload: each hinted
//! resource fetched exactly once, and reported as preloaded.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (scripts/setup installs chromium and libnss3-tools)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Load `url` headless; return (DOM after load, net log JSON).
fn chromium(url: &str, cert: &std::path::Path) -> (String, serde_json::Value) {
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    run(Command::new("certutil").args(["-d", &db, "-N", "--empty-password"]));
    run(Command::new("certutil")
        .args(["-d", &db, "-A", "-t", "C,,", "-n", "herald-test", "-i"])
        .arg(cert));
    let netlog = home.path().join("net.json");
    let mut child = Command::new("chromium")
        .env("HOME", home.path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (scripts/setup installs it)");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dom = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut dom)
        .unwrap();
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&netlog).unwrap()).expect("net log is JSON");
    (dom, log)
}

/// The events of a net log whose type is `name`.
fn events<'a>(log: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    let Some(id) = log["constants"]["logEventTypes"][name].as_u64() else {
        return vec![];
    };
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(id))
        .collect()
}

#[test]
fn chromium_receives_the_103_and_uses_every_preload_once() {
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ));
    let url = format!("https://localhost:{}/", herald.https.port());
    let (dom, log) = chromium(&url, &herald.cert_pem());

    // The page itself: loaded over h2, a 1xx seen before the response.
    let start = dom
        .find("<pre id=\"resources\">")
        .unwrap_or_else(|| panic!("page did not load (certificate?):\n{dom}"));
    let json = &dom[start + "<pre id=\"resources\">".len()..];
    let json = json[..json.find("</pre>").unwrap()]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["navigation"]["protocol"], "h2", "{report}");
    assert!(
        report["navigation"]["firstInterimResponseStart"]
            .as_f64()
            .unwrap()
            > 0.0,
        "no 1xx seen: {report}"
    );
    for path in DEMO_PUSHES {
        let entry = report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == path)
            .unwrap_or_else(|| panic!("{path} not loaded: {report}"));
        // "early-hints": preloaded from the 103. Herald sends the 103 and the
        // page microseconds apart (a static page has no think-time), so
        // Chromium may instead start the same preload from the page's Link
        // header ("link"). Either way it is fetched once (checked below).
        let initiator = entry["initiator"].as_str().unwrap_or("");
        assert!(
            initiator == "early-hints" || initiator == "link",
            "{path} not preloaded: {entry}"
        );
    }
    assert!(
        report["fonts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "Demo Light:loaded"),
        "{report}"
    );

    // The wire, from Chromium's own net log: one 103 with the five links...
    // The transaction-level event is the clearest; the HTTP/2 session's own
    // HEADERS event for `:status: 103` is the same fact one layer down (under
    // load Chromium sometimes records only the latter).
    let header_lists: Vec<Vec<&str>> =
        events(&log, "HTTP_TRANSACTION_READ_EARLY_HINTS_RESPONSE_HEADERS")
            .into_iter()
            .chain(events(&log, "HTTP2_SESSION_RECV_HEADERS"))
            .filter_map(|e| e["params"]["headers"].as_array())
            .map(|h| h.iter().filter_map(|v| v.as_str()).collect::<Vec<&str>>())
            .filter(|h| {
                h.iter()
                    .any(|l| *l == ":status: 103" || *l == "HTTP/1.1 103")
            })
            .collect();
    assert!(!header_lists.is_empty(), "no 103 in Chromium's net log");
    // The session-level event joins repeated fields with NUL
    // (`link: <a>...\0<b>...`); the transaction-level one lists each; and
    // Herald's HTTP/2 responses put all their links in one field.
    let lines: Vec<String> = header_lists[0]
        .iter()
        .flat_map(|l| match l.strip_prefix("link: ") {
            Some(v) => v.split('\0').flat_map(split_links).collect(),
            None => vec![l.to_string()],
        })
        .collect();
    assert_eq!(
        lines.iter().filter(|h| h.starts_with('<')).count(),
        5,
        "{lines:?}"
    );
    // ...and every hinted path requested exactly once (the favicon may come too).
    let mut requested: HashMap<String, usize> = HashMap::new();
    for e in events(&log, "HTTP2_SESSION_SEND_HEADERS") {
        for h in e["params"]["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str())
        {
            if let Some(path) = h.strip_prefix(":path: ") {
                *requested.entry(path.to_string()).or_default() += 1;
            }
        }
    }
    requested.remove("/favicon.ico");
    let mut expected: HashMap<String, usize> =
        DEMO_PUSHES.iter().map(|p| (p.to_string(), 1)).collect();
    expected.insert("/".into(), 1);
    assert_eq!(requested, expected, "each resource fetched once");
    // The server agrees: one access-log line per resource.
    for path in DEMO_PUSHES {
        let needle = format!("path={path} ");
        assert_eq!(
            herald
                .logs()
                .lines()
                .filter(|l| l.contains(&needle))
                .count(),
            1,
            "{path}:\n{}",
            herald.logs()
        );
    }
}
