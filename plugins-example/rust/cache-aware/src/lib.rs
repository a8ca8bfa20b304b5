//! (b) Page → assets, minus what this client already has.
//!
//! Two sources say what the client has: Herald's own signed cache digest
//! (`[push.cache_digest]`, asked through `Request::likely_cached`, which knows
//! each asset's ETag, so a changed asset is sent again), and a cookie the
//! site's pages may set themselves (by default `herald-have`, a `|`-separated
//! list of asset paths; the name is set with the `cookie` key). Assets either
//! lists are not hinted again: re-pushing cached files to returning visitors
//! is why many sites turned push off.
//!
//! ```toml
//! [policy.config]
//! cookie = "herald-have"
//! "/" = ["/css/site.css u=0", "/js/app.js u=1"]
//! ```

use herald_sdk::{Config, Decision, Policy, Reads, Request};

pub struct CacheAware;

/// The cookie name used when `cookie` is not configured.
pub const DEFAULT_COOKIE: &str = "herald-have";

impl Policy for CacheAware {
    fn decide(req: &Request, config: &Config) -> Decision {
        if req.method() != "GET" {
            return Ok(Vec::new());
        }
        let have = req.cookie_paths(&have_cookie(config));
        let hints = config.hints_for(req.path())?;
        Ok(hints
            .into_iter()
            .filter(|h| !have.contains(&h.path()) && !req.likely_cached(h.path()))
            .collect())
    }

    /// The configured cookie, and no header.
    fn reads(config: &Config) -> Option<Reads> {
        Some(Reads::nothing().cookie(&have_cookie(config)))
    }
}

/// The cookie listing what the client has: `cookie` in the configuration.
fn have_cookie(config: &Config) -> String {
    config
        .first("cookie")
        .unwrap_or_else(|| DEFAULT_COOKIE.to_string())
}

herald_sdk::export_policy!(CacheAware);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing;

    fn config() -> Config {
        Config::empty().with("/", ["/css/site.css", "/js/app.js", "/font/inter.woff2"])
    }

    #[test]
    fn first_visit_gets_everything() {
        assert_eq!(
            testing::paths::<CacheAware>(&Request::get("/"), &config()).len(),
            3
        );
    }

    #[test]
    fn cached_assets_are_skipped() {
        let req = Request::get("/").with_cookie("herald-have", "/css/site.css|/font/inter.woff2");
        assert_eq!(
            testing::paths::<CacheAware>(&req, &config()),
            ["/js/app.js"]
        );
    }

    #[test]
    fn what_heralds_digest_says_is_cached_is_skipped() {
        let req = Request::get("/").with_likely_cached("/js/app.js");
        assert_eq!(
            testing::paths::<CacheAware>(&req, &config()),
            ["/css/site.css", "/font/inter.woff2"]
        );
    }

    #[test]
    fn cookie_name_is_configurable() {
        let req = Request::get("/").with_cookie("seen", "/js/app.js");
        let config = config().with("cookie", ["seen"]);
        assert_eq!(
            testing::paths::<CacheAware>(&req, &config),
            ["/css/site.css", "/font/inter.woff2"]
        );
    }
}
