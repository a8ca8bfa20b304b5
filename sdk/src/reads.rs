//! What a policy reads of a request: [`Reads`].

use crate::Request;

/// The headers and cookies a policy reads of a request, besides its method,
/// scheme, authority, path, query, push support and variant (always shown).
///
/// Returned from [`Policy::reads`](crate::Policy::reads). Herald asks once
/// per policy version, as it loads it, and then shows the policy only these
/// headers and cookies (unless its `[policy] request_headers` or
/// `request_cookies` say otherwise): fewer strings passed on every call, and
/// nothing the policy has no use for, such as `authorization` or a session
/// cookie. Its decision cache (`[policy.cache]`) keys answers by them too.
///
/// The helpers in [`testing`](crate::testing) show a policy only what it
/// declares as well, so a header read but not declared fails a unit test
/// rather than going unseen in production.
///
/// ```
/// use herald_sdk::{Reads, Request};
///
/// let reads = Reads::navigation().cookie("tier");
/// let req = Request::get("/")
///     .with_header("accept", "text/html")
///     .with_header("authorization", "Bearer x")
///     .with_cookie("tier", "gold")
///     .with_cookie("session", "secret");
/// let shown = req.as_shown(&reads);
/// assert_eq!(shown.header("accept"), Some("text/html"));
/// assert_eq!(shown.header("authorization"), None);
/// assert_eq!(shown.cookie("tier"), Some("gold"));
/// assert_eq!(shown.cookie("session"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    headers: Vec<String>,
    cookies: Vec<String>,
}

impl Reads {
    /// No header and no cookie: the policy decides on the method, path and
    /// the other parts that are always shown.
    pub fn nothing() -> Reads {
        Reads::default()
    }

    /// The headers [`Request::is_navigation`] reads: `sec-fetch-dest`,
    /// `sec-fetch-mode` and `accept`.
    pub fn navigation() -> Reads {
        Reads::nothing()
            .header("sec-fetch-dest")
            .header("sec-fetch-mode")
            .header("accept")
    }

    /// One more header (the name is lowercased). `cookie` shows the whole
    /// `cookie` header, and so every cookie.
    pub fn header(mut self, name: &str) -> Reads {
        let name = name.to_ascii_lowercase();
        if !self.headers.contains(&name) {
            self.headers.push(name);
        }
        self
    }

    /// One more cookie, by name.
    pub fn cookie(mut self, name: &str) -> Reads {
        if !self.cookies.iter().any(|c| c == name) {
            self.cookies.push(name.to_string());
        }
        self
    }

    /// The header names, lowercase, in the order given.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The cookie names, in the order given.
    pub fn cookies(&self) -> &[String] {
        &self.cookies
    }

    /// Whether the request header `name` (lowercase) is shown.
    pub fn shows_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h == name)
    }

    /// Whether the cookie `name` is shown: named, or the whole `cookie`
    /// header is.
    pub fn shows_cookie(&self, name: &str) -> bool {
        self.shows_header("cookie") || self.cookies.iter().any(|c| c == name)
    }
}

impl Request {
    /// This request as a policy that [`Reads`] `reads` is shown it by
    /// Herald: only those headers and cookies.
    pub fn as_shown(&self, reads: &Reads) -> Request {
        let mut shown = self.clone();
        shown.retain(
            |name| reads.shows_header(name),
            |name| reads.shows_cookie(name),
        );
        shown
    }
}
