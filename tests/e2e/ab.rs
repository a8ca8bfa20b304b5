//! A/B experiments: sticky, fleet-consistent assignment, an override for
//! testing, the variant name reaching the policy, and metrics per variant.

use crate::support::*;

const SALT: &str = "2026-11-test";

fn experiment(weights: (u32, u32)) -> String {
    let p = policy("misbehave").display().to_string();
    format!(
        r#"[origin]
root = {root:?}
[policy]
deadline_ms = 1000
[policy.config]
mode = "variant"
[admin]
listen = "127.0.0.1:0"
[experiment]
name = "hero"
salt = "{SALT}"
sticky = "cookie"
override_header = "x-herald-variant"
[[experiment.variant]]
name = "control"
policy = {p:?}
weight_bp = {a}
[[experiment.variant]]
name = "bold"
policy = {p:?}
weight_bp = {b}
"#,
        root = demo_site().display().to_string(),
        a = weights.0,
        b = weights.1
    )
}

/// (variant that answered, Set-Cookie if any) for one request.
async fn visit(
    client: &Client,
    cookie: Option<&str>,
    force: Option<&str>,
) -> (String, Option<String>) {
    let mut req = client.request("GET", "/");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("herald-ab={c}"));
    }
    if let Some(v) = force {
        req = req.header("x-herald-variant", v);
    }
    let page = client.fetch(req.body(()).unwrap()).await;
    assert_eq!(page.status, 200);
    let link = page
        .headers
        .get("link")
        .expect("a hint")
        .to_str()
        .unwrap()
        .to_string();
    let variant = link
        .trim_start_matches("</variant/")
        .split(".css")
        .next()
        .unwrap()
        .to_string();
    let set = page
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (variant, set)
}

#[tokio::test]
async fn users_get_a_sticky_key_and_keep_their_variant() {
    let herald = Herald::start(&experiment((5000, 5000)));
    let client = Client::h2c(&herald, ClientOptions::browser()).await;
    let (first, set) = visit(&client, None, None).await;
    let set = set.expect("a user without a key gets one");
    assert!(
        set.starts_with("herald-ab=") && set.contains("Path=/") && set.contains("HttpOnly"),
        "{set}"
    );
    let key = set
        .trim_start_matches("herald-ab=")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // The same answer every time, and the one any instance would compute:
    // assignment is a pure function of the salt and the key.
    let expected = if herald::experiment::bucket(SALT, &key) < 5000 {
        "control"
    } else {
        "bold"
    };
    assert_eq!(first, expected);
    for _ in 0..10 {
        let (v, set) = visit(&client, Some(&key), None).await;
        assert_eq!(v, expected);
        assert!(set.is_none(), "no new cookie for a user who has one");
    }
}

#[tokio::test]
async fn the_split_follows_the_weights_and_the_override_forces_a_variant() {
    let herald = Herald::start(&experiment((2000, 8000)));
    let client = Client::h2c(&herald, ClientOptions::browser()).await;
    let mut bold = 0;
    for i in 0..300 {
        let (v, _) = visit(&client, Some(&format!("user-{i}")), None).await;
        if v == "bold" {
            bold += 1;
        }
    }
    assert!(
        (200..=280).contains(&bold),
        "{bold} of 300 in an 80% variant"
    );
    // From loopback, the override header wins (and sets no cookie).
    assert_eq!(
        visit(&client, Some("user-1"), Some("control")).await,
        ("control".into(), None)
    );
    assert_eq!(
        visit(&client, None, Some("bold")).await,
        ("bold".into(), None)
    );
}

#[tokio::test]
async fn metrics_and_the_report_are_per_variant() {
    let herald = Herald::start(&experiment((5000, 5000)));
    let client = Client::h2c(&herald, ClientOptions::browser()).await;
    for _ in 0..3 {
        visit(&client, None, Some("control")).await;
    }
    visit(&client, None, Some("bold")).await;
    let text = herald.metrics_text();
    let requests = |variant: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with("herald_requests_total")
                    && l.contains(&format!("variant=\"{variant}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {variant} series:\n{text}"))
    };
    assert_eq!((requests("control"), requests("bold")), (3, 1));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "ab",
            "report",
            "--admin",
            &format!("http://{}", herald.admin.unwrap()),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Experiment `hero`"), "{report}");
    assert!(
        report.contains("| control | misbehave@") && report.contains("| bold | misbehave@"),
        "{report}"
    );
    assert!(report.contains("(control)"), "{report}");
}

#[tokio::test]
async fn new_weights_apply_on_sighup_without_a_restart() {
    let herald = Herald::start(&experiment((5000, 5000)));
    let config = herald.dir.path().join("herald.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replacen("weight_bp = 5000", "weight_bp = 0", 1)
        .replacen("weight_bp = 5000", "weight_bp = 10000", 1);
    std::fs::write(&config, text).unwrap();
    herald.signal("HUP");
    assert!(
        eventually(std::time::Duration::from_secs(5), || herald
            .logs()
            .contains("variants=control=0bp,bold=10000bp"))
        .await,
        "{}",
        herald.logs()
    );
    let client = Client::h2c(&herald, ClientOptions::browser()).await;
    for i in 0..20 {
        assert_eq!(visit(&client, Some(&format!("u{i}")), None).await.0, "bold");
    }
}
