//! Helpers for native unit tests of a policy.
//!
//! ```
//! use herald_sdk::{testing, Config, Decision, Hint, Policy, Request};
//!
//! struct P;
//! impl Policy for P {
//!     fn decide(req: &Request, _: &Config) -> Decision {
//!         Ok(if req.path() == "/" { vec![Hint::new("/a.css"), Hint::new("/b.js")] } else { vec![] })
//!     }
//! }
//!
//! assert_eq!(testing::paths::<P>(&Request::get("/"), &Config::empty()), ["/a.css", "/b.js"]);
//! testing::assert_no_hints::<P>(&Request::get("/b.js"), &Config::empty());
//! ```

use crate::{Config, Policy, Request};

/// Run the policy and return the hinted paths, in order. Panics if the
/// policy returns an error.
pub fn paths<P: Policy>(req: &Request, config: &Config) -> Vec<String> {
    match P::decide(req, config) {
        Ok(hints) => hints.into_iter().map(|h| h.path().to_string()).collect(),
        Err(e) => panic!(
            "policy returned an error for {} {}: {e}",
            req.method(),
            req.path()
        ),
    }
}

/// Assert that the policy returns no hints for this request.
pub fn assert_no_hints<P: Policy>(req: &Request, config: &Config) {
    let got = paths::<P>(req, config);
    assert!(
        got.is_empty(),
        "expected no hints for {} {}, got {got:?}",
        req.method(),
        req.path()
    );
}

/// A navigation request as a current browser sends it.
pub fn browser_navigation(path: &str) -> Request {
    Request::get(path)
        .with_header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .with_header("sec-fetch-mode", "navigate")
        .with_header("sec-fetch-dest", "document")
        .with_push_enabled(false)
}

/// A subresource request as a current browser sends it (`dest` is e.g. `script`).
pub fn browser_subresource(path: &str, dest: &str) -> Request {
    Request::get(path)
        .with_header("accept", "*/*")
        .with_header("sec-fetch-mode", "no-cors")
        .with_header("sec-fetch-dest", dest)
        .with_push_enabled(false)
}
