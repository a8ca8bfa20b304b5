//! (d) In front of an application: push during its think-time, then refine
//! with its response head (`[[proxy]]` routes; the `proxy-policy` world).
//!
//! `decide` hints what `[policy.config]` lists for the page, pushed while the
//! application computes. `on_response` sees the application's answer: its
//! `Link: rel=preload` hints, minus any under a `skip` prefix, plus the
//! assets listed for the page kind the application names in `x-page-kind`.
//!
//! ```toml
//! [policy.config]
//! "/app/page" = ["/css/site.css", "/js/app.js"]
//! skip = ["/js/track"]
//! "kind:product" = ["/img/hero.svg u=5 i"]
//! ```

use herald_sdk::{Config, Decision, Policy, Reads, Request, ResponsePolicy, UpstreamResponse};

pub struct AppLinks;

impl Policy for AppLinks {
    fn decide(req: &Request, config: &Config) -> Decision {
        if req.method() != "GET" {
            return Ok(Vec::new());
        }
        config.hints_for(req.path())
    }

    /// The method and path only (the upstream's response head is shown
    /// whole to `on_response`, but its `set-cookie`).
    fn reads(_: &Config) -> Option<Reads> {
        Some(Reads::nothing())
    }
}

impl ResponsePolicy for AppLinks {
    fn on_response(
        _req: &Request,
        response: &UpstreamResponse,
        hints: Vec<herald_sdk::Hint>,
        config: &Config,
    ) -> Decision {
        let skip = config.get("skip");
        let mut out: Vec<_> = hints
            .into_iter()
            .filter(|h| !skip.iter().any(|p| h.path().starts_with(p.as_str())))
            .collect();
        if let Some(kind) = response.header("x-page-kind") {
            out.extend(config.hints_for(&format!("kind:{kind}"))?);
        }
        Ok(out)
    }
}

herald_sdk::export_policy!(AppLinks, on_response);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::Hint;

    fn config() -> Config {
        Config::empty()
            .with("/app/page", ["/css/site.css"])
            .with("skip", ["/js/track"])
            .with("kind:product", ["/img/hero.svg u=5 i"])
    }

    #[test]
    fn decides_the_page_assets_before_the_application_answers() {
        let hints = AppLinks::decide(&Request::get("/app/page"), &config()).unwrap();
        assert_eq!(hints[0].path(), "/css/site.css");
    }

    #[test]
    fn drops_skipped_links_and_adds_the_page_kinds_assets() {
        let head = UpstreamResponse::new(200).with_header("x-page-kind", "product");
        let links = vec![Hint::new("/app/late.js"), Hint::new("/js/track.js")];
        let out =
            AppLinks::on_response(&Request::get("/app/page"), &head, links, &config()).unwrap();
        let paths: Vec<&str> = out.iter().map(|h| h.path()).collect();
        assert_eq!(paths, ["/app/late.js", "/img/hero.svg"]);
        assert!(out[1].is_incremental());
    }

    #[test]
    fn without_a_page_kind_the_links_pass_through() {
        let links = vec![Hint::new("/app/late.js")];
        let out = AppLinks::on_response(
            &Request::get("/app/page"),
            &UpstreamResponse::new(200),
            links,
            &config(),
        )
        .unwrap();
        assert_eq!(out.len(), 1);
    }
}
