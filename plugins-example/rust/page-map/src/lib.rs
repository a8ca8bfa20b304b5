//! (a) Page → assets: hint what `[policy.config]` lists for the requested path.
//!
//! ```toml
//! [policy.config]
//! "/" = ["/css/site.css u=0", "/js/app.js u=1", "/img/hero.jpg u=5 i"]
//! ```
//!
//! Each value is an asset spec: a path, then optional attributes (`as=`, `u=`,
//! `i`, `w=`, `push`, `hint`, `crossorigin`); see `herald_sdk::parse_asset_spec`.

use herald_sdk::{Config, Decision, Policy, Reads, Request};

pub struct PageMap;

impl Policy for PageMap {
    fn decide(req: &Request, config: &Config) -> Decision {
        if req.method() != "GET" {
            return Ok(Vec::new());
        }
        config.hints_for(req.path())
    }

    /// The method and path only: it is shown no header and no cookie.
    fn reads(_: &Config) -> Option<Reads> {
        Some(Reads::nothing())
    }
}

herald_sdk::export_policy!(PageMap);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::{Destination, testing};

    fn config() -> Config {
        Config::empty().with(
            "/",
            ["/css/site.css u=0", "/js/app.js", "/img/hero.jpg u=5 i"],
        )
    }

    #[test]
    fn hints_the_configured_assets_in_order() {
        let hints = PageMap::decide(&Request::get("/"), &config()).unwrap();
        let paths: Vec<&str> = hints.iter().map(|h| h.path()).collect();
        assert_eq!(paths, ["/css/site.css", "/js/app.js", "/img/hero.jpg"]);
        assert_eq!(hints[0].get_urgency(), 0);
        assert_eq!(hints[2].destination(), Destination::Image);
        assert!(hints[2].is_incremental());
    }

    #[test]
    fn nothing_for_unlisted_paths_or_other_methods() {
        testing::assert_no_hints::<PageMap>(&Request::get("/about"), &config());
        testing::assert_no_hints::<PageMap>(&Request::new("POST", "/"), &config());
    }

    #[test]
    fn a_bad_spec_is_an_error_not_a_panic() {
        let bad = Config::empty().with("/", ["/a.css u=12"]);
        assert!(PageMap::decide(&Request::get("/"), &bad).is_err());
    }
}
