//! Benchmarks that need a live server and a network: `herald bench ...`.
//! Timings are reported, never asserted (see BENCHMARKS.md).

pub mod decide;
pub mod hol;
pub mod instructions;
pub mod pageload;
pub mod proxy;
pub mod swap;

use std::time::Duration;

use crate::policy::input::View;

/// The demo site's page map (as in `host/demo/herald.toml`): the
/// configuration the decision benchmarks give every policy.
pub const DEMO_MAP: &str = r#"[policy.config]
"/" = ["/css/site.css u=0", "/js/app.js u=1", "/fonts/dejavu-light.woff u=3", "/img/logo.svg u=4", "/img/hero.svg u=5 i"]
"#;

/// How the decision benchmarks' request is seen: the demo's host over TLS,
/// from a client that accepts push.
pub const DEMO_VIEW: View<'static> = View {
    scheme: "https",
    authority: "shop.example",
    push_enabled: true,
    variant: "default",
};

/// What the reference policy's answer depends on: its `[policy.cache]`
/// key, and all a least-privilege deployment shows it
/// (`request_headers`, `request_cookies`).
pub fn reference_reads() -> crate::policy::cache::CacheSpec {
    crate::policy::cache::CacheSpec {
        headers: ["sec-fetch-dest", "sec-fetch-mode", "accept"]
            .map(String::from)
            .to_vec(),
        cookies: vec!["herald-have".into()],
        entries: 1024,
    }
}

/// [`reference_reads`] as what a policy is shown.
pub fn shown_as_read() -> crate::policy::input::Shown {
    let reads = reference_reads();
    crate::policy::input::Shown {
        headers: Some(reads.headers),
        cookies: Some(reads.cookies),
    }
}

/// The `p` quantile (0 to 1) of `v`, nearest rank; zero for an empty list.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut sorted = v.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n - 1) as f64 * p).round() as usize],
    }
}
