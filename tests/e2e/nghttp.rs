//! The same page through `nghttp` (Debian's nghttp2-client), a push-capable
//! client written independently of the `h2` crate.

use std::process::Command;

use crate::support::*;

fn nghttp(args: &[&str]) -> (bool, String) {
    let out = Command::new("nghttp")
        .args(args)
        .output()
        .expect("nghttp is installed by scripts/setup (Debian package nghttp2-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn nghttp_sees_the_promises_and_completes_without_protocol_errors() {
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ));
    let url = format!("https://127.0.0.1:{}/", herald.https.port());
    let (ok, out) = nghttp(&["-nv", &url]);
    assert!(ok, "nghttp failed:\n{out}");
    assert_eq!(out.matches("recv PUSH_PROMISE frame").count(), 5, "{out}");
    for path in DEMO_PUSHES {
        assert!(
            out.contains(&format!(":path: {path}")),
            "{path} not promised:\n{out}"
        );
    }
    assert!(!out.contains("recv GOAWAY"), "server sent GOAWAY:\n{out}");
    assert!(
        !out.contains("recv RST_STREAM"),
        "server reset a stream:\n{out}"
    );
    // Every pushed stream completed: its last DATA carries END_STREAM.
    let (ok, stats) = nghttp(&["-ns", &url]);
    assert!(ok, "{stats}");
    for path in DEMO_PUSHES {
        let line = stats
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{stats}"));
        assert!(line.contains(" 200 "), "{line}");
        assert!(line.contains('*'), "{path} was not pushed: {line}");
    }
}

#[test]
fn nghttp_with_push_disabled_gets_103_early_hints() {
    let herald = Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ));
    let url = format!("https://127.0.0.1:{}/", herald.https.port());
    let (ok, out) = nghttp(&["-nv", "--no-push", &url]);
    assert!(ok, "{out}");
    assert!(!out.contains("PUSH_PROMISE"), "{out}");
    let early = out.find(":status: 103").expect("a 103");
    let final_status = out.find(":status: 200").expect("a 200");
    assert!(early < final_status, "103 before the final response");
    assert!(
        out.contains("link: </css/site.css>; rel=preload; as=style"),
        "{out}"
    );
}
