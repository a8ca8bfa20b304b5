//! (c) Page → assets for page loads only.
//!
//! Browsers label every request with `Sec-Fetch-Dest` and `Sec-Fetch-Mode`. A
//! hint only helps when the browser is about to parse a document, so this
//! policy answers nothing for scripts, images, `fetch()` calls or iframes
//! (`herald_sdk::Request::is_navigation`).

use herald_sdk::{Config, Decision, Policy, Reads, Request};

pub struct NavigationOnly;

impl Policy for NavigationOnly {
    fn decide(req: &Request, config: &Config) -> Decision {
        if !req.is_navigation() {
            return Ok(Vec::new());
        }
        config.hints_for(req.path())
    }

    /// The headers `is_navigation` reads, and no cookie.
    fn reads(_: &Config) -> Option<Reads> {
        Some(Reads::navigation())
    }
}

herald_sdk::export_policy!(NavigationOnly);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing;

    fn config() -> Config {
        Config::empty()
            .with("/", ["/css/site.css", "/js/app.js"])
            .with("/app.js", ["/js/chunk.js"])
    }

    #[test]
    fn navigation_gets_hints() {
        assert_eq!(
            testing::paths::<NavigationOnly>(&testing::browser_navigation("/"), &config()).len(),
            2
        );
    }

    #[test]
    fn subresources_and_fetches_get_nothing() {
        testing::assert_no_hints::<NavigationOnly>(
            &testing::browser_subresource("/app.js", "script"),
            &config(),
        );
        let api = Request::get("/")
            .with_header("sec-fetch-mode", "cors")
            .with_header("sec-fetch-dest", "empty");
        testing::assert_no_hints::<NavigationOnly>(&api, &config());
    }

    #[test]
    fn clients_without_fetch_metadata_count_as_navigation() {
        assert_eq!(
            testing::paths::<NavigationOnly>(&Request::get("/"), &config()).len(),
            2
        );
    }
}
