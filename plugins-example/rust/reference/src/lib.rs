//! The reference policy, the one written in every language Herald supports
//! (Rust here; Python, JavaScript and C beside it in `plugins-example/`):
//! page → assets from the configuration, minus the assets the client's cookie
//! says it already has, and nothing for requests that are not page loads.
//!
//! ```toml
//! [policy.config]
//! cookie = "herald-have"                      # optional, this is the default
//! "/" = ["/css/site.css u=0", "/js/app.js u=1", "/img/hero.jpg u=5 i"]
//! ```
//!
//! `plugins-example/conformance.toml` is the behaviour all four must show,
//! row by row; the test suite builds each from source and checks it.

use herald_sdk::{Config, Decision, Policy, Reads, Request};

pub struct Reference;

/// The cookie read when `cookie` is not configured.
pub const DEFAULT_COOKIE: &str = "herald-have";

/// The cookie listing what the client has: `cookie` in the configuration.
fn have_cookie(config: &Config) -> String {
    config
        .first("cookie")
        .unwrap_or_else(|| DEFAULT_COOKIE.to_string())
}

impl Policy for Reference {
    fn decide(req: &Request, config: &Config) -> Decision {
        if !req.is_navigation() {
            return Ok(Vec::new());
        }
        let hints = config.hints_for(req.path())?;
        let have = req.cookie_paths(&have_cookie(config));
        Ok(hints
            .into_iter()
            .filter(|h| !have.contains(&h.path()))
            .collect())
    }

    /// Herald shows it only these: the navigation headers and the cookie.
    fn reads(config: &Config) -> Option<Reads> {
        Some(Reads::navigation().cookie(&have_cookie(config)))
    }
}

herald_sdk::export_policy!(Reference);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing;

    fn config() -> Config {
        Config::empty().with("/", ["/css/site.css u=0", "/js/app.js", "/img/a.png"])
    }

    #[test]
    fn a_first_navigation_gets_every_asset() {
        assert_eq!(
            testing::paths::<Reference>(&testing::browser_navigation("/"), &config()),
            ["/css/site.css", "/js/app.js", "/img/a.png"]
        );
    }

    #[test]
    fn assets_the_cookie_lists_are_skipped() {
        let req = testing::browser_navigation("/").with_cookie("herald-have", "/js/app.js|/x");
        assert_eq!(
            testing::paths::<Reference>(&req, &config()),
            ["/css/site.css", "/img/a.png"]
        );
    }

    #[test]
    fn the_cookie_it_reads_is_the_configured_one() {
        let config = config().with("cookie", ["seen"]);
        let req = testing::browser_navigation("/")
            .with_cookie("seen", "/js/app.js")
            .with_cookie("herald-have", "/css/site.css");
        assert_eq!(
            testing::paths::<Reference>(&req, &config),
            ["/css/site.css", "/img/a.png"]
        );
    }

    #[test]
    fn subresources_get_nothing() {
        testing::assert_no_hints::<Reference>(
            &testing::browser_subresource("/js/app.js", "script"),
            &config(),
        );
    }
}
