//! Write [Herald](https://example.invalid/herald) push policies in Rust.
//!
//! A policy is a function from a [`Request`] to a list of [`Hint`]s: the
//! resources the page will need. Herald calls it for every request, inside a
//! WebAssembly sandbox, and delivers each hint the best way the client allows
//! (a PUSH_PROMISE, or a `103 Early Hints` and `Link: rel=preload`).
//!
//! ```
//! use herald_sdk::{Config, Decision, Hint, Policy, Request};
//!
//! struct Home;
//!
//! impl Policy for Home {
//!     fn decide(req: &Request, _config: &Config) -> Decision {
//!         if req.path() != "/" || !req.is_navigation() {
//!             return Ok(vec![]);
//!         }
//!         Ok(vec![
//!             Hint::new("/css/site.css").urgency(1),
//!             Hint::new("/js/app.js"),
//!         ])
//!     }
//! }
//!
//! // In the policy crate: `herald_sdk::export_policy!(Home);` makes it a component
//! // when built with `cargo build --target wasm32-wasip2`.
//!
//! // Natively, the same code is unit-tested without any WebAssembly:
//! let hints = Home::decide(&Request::get("/"), &Config::empty()).unwrap();
//! assert_eq!(hints[0].path(), "/css/site.css");
//! assert_eq!(hints[0].destination(), herald_sdk::Destination::Style);
//! ```
//!
//! Everything in this crate compiles natively, so a policy's tests run with a
//! plain `cargo test`; [`testing`] has helpers for them.
//!
//! In a guest, the crate also installs the instance's allocator: a bump
//! arena for what a call allocates, which starts over once the call's
//! blocks are freed, with the system allocator past 256 KiB. It makes a
//! call's allocations a few instructions each (a warm call about a tenth
//! cheaper, `BENCHMARKS.md`). To bring your own `#[global_allocator]`,
//! depend on `herald-sdk` with `default-features = false`.

// Only the guest's global allocator uses it; native builds test it.
#[cfg_attr(
    not(all(
        target_arch = "wasm32",
        feature = "arena",
        not(target_feature = "atomics")
    )),
    allow(dead_code)
)]
mod arena;
mod asset;
mod config;
mod hint;
mod reads;
mod request;
pub mod testing;

pub use asset::{AssetSpecError, parse_asset_spec};
pub use config::Config;
pub use hint::{CorsMode, Delivery, Destination, Hint};
pub use reads::Reads;
pub use request::Request;

/// What a policy returns: the hints, or an error message that Herald logs
/// (first 200 characters) before serving the request without hints.
///
/// ```
/// use herald_sdk::{Decision, Hint};
/// let hints: Decision = Ok(vec![Hint::new("/css/site.css")]);
/// let nothing: Decision = Ok(Vec::new());
/// let failed: Decision = Err("no page map configured".into());
/// # let _ = (hints, nothing, failed);
/// ```
pub type Decision = Result<Vec<Hint>, String>;

/// A push policy. Implement it on a unit struct and export it with
/// [`export_policy!`].
///
/// ```
/// use herald_sdk::{Config, Decision, Hint, Policy, Request};
///
/// /// Pushes whatever `[policy.config]` lists for the requested path.
/// struct FromConfig;
///
/// impl Policy for FromConfig {
///     fn decide(req: &Request, config: &Config) -> Decision {
///         Ok(config.get(req.path()).iter().map(|path| Hint::new(path)).collect())
///     }
/// }
///
/// let config = Config::empty().with("/", ["/app.js"]);
/// let hints = FromConfig::decide(&Request::get("/"), &config).unwrap();
/// assert_eq!(hints.len(), 1);
/// ```
pub trait Policy {
    /// Decide the hints for one request. Called once per request on a fresh
    /// instance by default: keep no state between calls.
    fn decide(req: &Request, config: &Config) -> Decision;

    /// The headers and cookies [`decide`](Self::decide) reads (see
    /// [`Reads`]): Herald then shows it only those, and caches its answers
    /// by them. Asked once per policy version, with its configuration.
    /// `None`, the default, means every one.
    ///
    /// ```
    /// use herald_sdk::{Config, Decision, Policy, Reads, Request};
    ///
    /// struct Pages;
    /// impl Policy for Pages {
    ///     fn decide(req: &Request, config: &Config) -> Decision {
    ///         if !req.is_navigation() {
    ///             return Ok(vec![]);
    ///         }
    ///         config.hints_for(req.path())
    ///     }
    ///     fn reads(_: &Config) -> Option<Reads> {
    ///         Some(Reads::navigation())
    ///     }
    /// }
    /// # let _ = Pages::reads(&Config::empty());
    /// ```
    fn reads(config: &Config) -> Option<Reads> {
        let _ = config;
        None
    }
}

/// The bindings generated from `wit/` (WebAssembly targets only).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "push-policy-reads",
        pub_export_macro: true,
        export_macro_name: "__herald_export_world",
        default_bindings_module: "herald_sdk::bindings",
    });
}

/// The `proxy-policy-reads` world's bindings (the types are those of [`bindings`]).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod proxy_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "proxy-policy-reads",
        pub_export_macro: true,
        export_macro_name: "__herald_export_proxy_world",
        default_bindings_module: "herald_sdk::proxy_bindings",
        with: {
            "herald:policy/types@0.1.2": crate::bindings::herald::policy::types,
            "herald:policy/config@0.1.2": crate::bindings::herald::policy::config,
            "herald:policy/client-cache@0.1.2": crate::bindings::herald::policy::client_cache,
        },
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    use crate::bindings::herald::policy::types as wit;

    pub type WitHints = Vec<wit::Hint>;

    /// Runs `P` on a request coming from the host and converts the answer.
    pub fn run<P: crate::Policy>(req: wit::Request) -> Result<Vec<wit::Hint>, String> {
        let req = crate::Request::from_wit(req);
        let config = crate::Config::host();
        P::decide(&req, &config).map(|hints| hints.into_iter().map(crate::Hint::into_wit).collect())
    }

    /// What `P` declares it reads, as the host is told it.
    pub fn run_reads<P: crate::Policy>() -> Option<wit::ReadSet> {
        P::reads(&crate::Config::host()).map(|reads| wit::ReadSet {
            headers: reads.headers().to_vec(),
            cookies: reads.cookies().to_vec(),
        })
    }

    /// Runs `P::on_response` on what the host sends and converts the answer.
    pub fn run_on_response<P: crate::ResponsePolicy>(
        req: wit::Request,
        response: wit::UpstreamResponse,
        hints: Vec<wit::Hint>,
    ) -> Result<Vec<wit::Hint>, String> {
        let req = crate::Request::from_wit(req);
        let response = crate::UpstreamResponse::from_wit(response);
        let hints = hints.into_iter().map(crate::Hint::from_wit).collect();
        let config = crate::Config::host();
        P::on_response(&req, &response, hints, &config)
            .map(|hints| hints.into_iter().map(crate::Hint::into_wit).collect())
    }
}

/// Export a [`Policy`] as the component's `decide` function.
///
/// Put it once in the policy crate's `lib.rs`. It expands to nothing on native
/// targets, so the same crate can hold native unit tests.
///
/// ```ignore
/// struct MyPolicy;
/// impl herald_sdk::Policy for MyPolicy { /* ... */ }
/// herald_sdk::export_policy!(MyPolicy);
/// ```
///
/// The component is of the `push-policy-reads` world: it also exports
/// `reads`, what [`Policy::reads`] answers. A policy that also implements
/// [`ResponsePolicy`] is exported with `export_policy!(MyPolicy,
/// on_response)`: the component is then of the `proxy-policy-reads` world
/// and Herald calls it again when an upstream's response head arrives.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct HeraldExport;
            impl $crate::bindings::Guest for HeraldExport {
                fn decide(
                    req: $crate::bindings::herald::policy::types::Request,
                ) -> ::core::result::Result<$crate::__private::WitHints, ::std::string::String>
                {
                    $crate::__private::run::<$policy>(req)
                }
                fn reads() -> ::core::option::Option<$crate::bindings::herald::policy::types::ReadSet> {
                    $crate::__private::run_reads::<$policy>()
                }
            }
    $crate::bindings::__herald_export_world!(HeraldExport with_types_in $crate::bindings);
        };
    };
    ($policy:ty, on_response) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct HeraldExport;
            impl $crate::proxy_bindings::Guest for HeraldExport {
                fn decide(
                    req: $crate::bindings::herald::policy::types::Request,
                ) -> ::core::result::Result<$crate::__private::WitHints, ::std::string::String>
                {
                    $crate::__private::run::<$policy>(req)
                }
                fn on_response(
                    req: $crate::bindings::herald::policy::types::Request,
                    response: $crate::bindings::herald::policy::types::UpstreamResponse,
                    hints: $crate::__private::WitHints,
                ) -> ::core::result::Result<$crate::__private::WitHints, ::std::string::String>
                {
                    $crate::__private::run_on_response::<$policy>(req, response, hints)
                }
                fn reads() -> ::core::option::Option<$crate::bindings::herald::policy::types::ReadSet> {
                    $crate::__private::run_reads::<$policy>()
                }
            }
    $crate::proxy_bindings::__herald_export_proxy_world!(HeraldExport with_types_in $crate::proxy_bindings);
        };
    };
}

/// The head of an upstream application's response, as `on_response` sees it.
///
/// ```
/// use herald_sdk::UpstreamResponse;
/// let head = UpstreamResponse::new(200).with_header("cache-control", "no-store");
/// assert_eq!(head.header("cache-control"), Some("no-store"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    status: u16,
    headers: Vec<(String, String)>,
}

impl UpstreamResponse {
    /// A response head with `status` and no headers (for native tests).
    pub fn new(status: u16) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: Vec::new(),
        }
    }

    /// Add a header (name lowercased, as Herald passes them).
    pub fn with_header(mut self, name: &str, value: &str) -> UpstreamResponse {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header as (name, value).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_wit(
        r: crate::bindings::herald::policy::types::UpstreamResponse,
    ) -> UpstreamResponse {
        UpstreamResponse {
            status: r.status,
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        }
    }
}

/// A policy that also decides on a proxied page's response head
/// (`[[proxy]]` routes): export it with `export_policy!(P, on_response)`.
///
/// `hints` are those Herald read from the application's
/// `Link: rel=preload` headers; return the hints to deliver before the page:
/// the same, fewer, or more.
///
/// ```
/// use herald_sdk::{Config, Decision, Hint, Policy, Request, ResponsePolicy, UpstreamResponse};
///
/// /// Pushes what the application names, never its tracking script.
/// struct Filter;
/// impl Policy for Filter {
///     fn decide(_req: &Request, _config: &Config) -> Decision {
///         Ok(vec![])
///     }
/// }
/// impl ResponsePolicy for Filter {
///     fn on_response(_req: &Request, _head: &UpstreamResponse, hints: Vec<Hint>, _config: &Config) -> Decision {
///         Ok(hints.into_iter().filter(|h| h.path() != "/js/track.js").collect())
///     }
/// }
///
/// let hints = vec![Hint::new("/css/a.css"), Hint::new("/js/track.js")];
/// let kept = Filter::on_response(&Request::get("/"), &UpstreamResponse::new(200), hints, &Config::empty()).unwrap();
/// assert_eq!(kept.len(), 1);
/// ```
pub trait ResponsePolicy: Policy {
    fn on_response(
        req: &Request,
        response: &UpstreamResponse,
        hints: Vec<Hint>,
        config: &Config,
    ) -> Decision;
}
