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

use crate::{Config, Decision, Policy, Request};

/// Run the policy as Herald would: shown only what its
/// [`reads`](Policy::reads) declares (everything when it declares nothing).
/// A policy that reads a header it did not declare sees it absent, here as
/// in production.
pub fn decide<P: Policy>(req: &Request, config: &Config) -> Decision {
    match P::reads(config) {
        Some(reads) => P::decide(&req.as_shown(&reads), config),
        None => P::decide(req, config),
    }
}

/// Run the policy (as [`decide`] does) and return the hinted paths, in
/// order. Panics if the policy returns an error.
pub fn paths<P: Policy>(req: &Request, config: &Config) -> Vec<String> {
    match decide::<P>(req, config) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hint, Reads};

    /// Reads `sec-fetch-dest` but declares only `accept`.
    struct Undeclared;
    impl Policy for Undeclared {
        fn decide(req: &Request, _: &Config) -> Decision {
            let dest = req.header("sec-fetch-dest").unwrap_or("none");
            Ok(vec![Hint::new(format!("/dest/{dest}"))])
        }
        fn reads(_: &Config) -> Option<Reads> {
            Some(Reads::nothing().header("accept"))
        }
    }

    #[test]
    fn a_policy_is_tested_as_it_is_shown_requests() {
        let req = browser_navigation("/");
        assert_eq!(paths::<Undeclared>(&req, &Config::empty()), ["/dest/none"]);
        // Called directly, it sees everything: what the helpers guard against.
        let direct = Undeclared::decide(&req, &Config::empty()).unwrap();
        assert_eq!(direct[0].path(), "/dest/document");
    }
}
