//! What a policy is shown of a request: every header and cookie by default,
//! only those `[policy] request_headers` and `request_cookies` name otherwise.

use crate::support::*;

/// The headers and cookies the `seen` policy reported, from its hints.
async fn seen_by_policy(herald: &Herald) -> Vec<String> {
    let client = Client::h2c(herald, ClientOptions::browser()).await;
    let req = client
        .request("GET", "/?misbehave=seen")
        .header("accept", "text/html")
        .header("sec-fetch-dest", "document")
        .header("authorization", "Bearer secret")
        .header("cookie", "session=secret; herald-have=css")
        .body(())
        .unwrap();
    let page = client.fetch(req).await;
    assert_eq!(page.status, 200);
    let mut seen: Vec<String> = page
        .headers
        .get_all("link")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .filter_map(|link| link.trim().strip_prefix("</seen/"))
        .filter_map(|rest| rest.split_once('>'))
        .map(|(seen, _)| seen.to_string())
        .collect();
    seen.sort();
    seen
}

fn config(shown: &str) -> String {
    format!(
        "[origin]\nroot = {:?}\n[policy]\npath = {:?}\ndeadline_ms = 1000\n{shown}\n",
        demo_site().display().to_string(),
        policy("misbehave").display().to_string()
    )
}

#[tokio::test]
async fn a_policy_sees_every_header_and_cookie_by_default() {
    let herald = Herald::start(&config(""));
    let seen = seen_by_policy(&herald).await;
    for expected in [
        "cookie/herald-have",
        "cookie/session",
        "header/accept",
        "header/authorization",
        "header/cookie",
        "header/sec-fetch-dest",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} in {seen:?}");
    }
}

#[tokio::test]
async fn a_policy_sees_only_the_listed_headers_and_cookies() {
    let herald = Herald::start(&config(
        "request_headers = [\"sec-fetch-dest\", \"accept\", \"cookie\"]\nrequest_cookies = [\"herald-have\"]",
    ));
    // `cookie` is listed, yet hidden: it would show the session cookie.
    assert_eq!(
        seen_by_policy(&herald).await,
        [
            "cookie/herald-have",
            "header/accept",
            "header/sec-fetch-dest"
        ]
    );
}

#[tokio::test]
async fn headers_listed_without_cookie_hide_the_cookies_too() {
    let herald = Herald::start(&config("request_headers = [\"accept\"]"));
    assert_eq!(seen_by_policy(&herald).await, ["header/accept"]);
}
