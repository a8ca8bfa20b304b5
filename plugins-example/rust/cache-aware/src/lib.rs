//! (b) Page → assets, minus what this client already has.
//!
//! The site records what a browser has cached in a cookie (by default
//! `herald-have`, a `|`-separated list of asset paths; the name is set with the
//! `cookie` key). Assets listed there are not hinted again: re-pushing cached
//! files to returning visitors is why many sites turned push off.
//!
//! ```toml
//! [policy.config]
//! cookie = "herald-have"
//! "/" = ["/css/site.css u=0", "/js/app.js u=1"]
//! ```

use herald_sdk::{Config, Decision, Policy, Request};

pub struct CacheAware;

/// The cookie name used when `cookie` is not configured.
pub const DEFAULT_COOKIE: &str = "herald-have";

impl Policy for CacheAware {
    fn decide(req: &Request, config: &Config) -> Decision {
        if req.method() != "GET" {
            return Ok(Vec::new());
        }
        let cookie = config
            .first("cookie")
            .unwrap_or_else(|| DEFAULT_COOKIE.to_string());
        let have = req.cookie_paths(&cookie);
        let hints = config.hints_for(req.path())?;
        Ok(hints
            .into_iter()
            .filter(|h| !have.contains(&h.path()))
            .collect())
    }
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
    fn cookie_name_is_configurable() {
        let req = Request::get("/").with_cookie("seen", "/js/app.js");
        let config = config().with("cookie", ["seen"]);
        assert_eq!(
            testing::paths::<CacheAware>(&req, &config),
            ["/css/site.css", "/font/inter.woff2"]
        );
    }
}
