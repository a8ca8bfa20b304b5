//! The typed request a policy sees.

/// The request Herald asks a policy about.
///
/// Header names are lowercase. In native tests, build one with
/// [`Request::get`] and the `with_*` methods:
///
/// ```
/// use herald_sdk::Request;
///
/// let req = Request::get("/shop?page=2")
///     .with_header("sec-fetch-mode", "navigate")
///     .with_cookie("seen", "css,js");
/// assert_eq!(req.path(), "/shop");
/// assert_eq!(req.query(), Some("page=2"));
/// assert_eq!(req.cookie("seen"), Some("css,js"));
/// assert!(req.is_navigation());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    push_enabled: bool,
    variant: String,
    /// Native tests: what `likely_cached` answers yes to.
    likely_cached: Vec<String>,
}

impl Request {
    /// A `GET` for `path_and_query` on `https://localhost`, push enabled,
    /// variant `default`, no headers: the starting point of a native test.
    pub fn get(path_and_query: &str) -> Request {
        Request::new("GET", path_and_query)
    }

    /// Like [`Request::get`] with another method.
    pub fn new(method: &str, path_and_query: &str) -> Request {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (path_and_query.to_string(), None),
        };
        Request {
            method: method.to_string(),
            scheme: "https".into(),
            authority: "localhost".into(),
            path,
            query,
            headers: Vec::new(),
            cookies: Vec::new(),
            push_enabled: true,
            variant: "default".into(),
            likely_cached: Vec::new(),
        }
    }

    /// Keep the headers and cookies whose names pass (the others are not
    /// shown).
    pub(crate) fn retain(&mut self, header: impl Fn(&str) -> bool, cookie: impl Fn(&str) -> bool) {
        self.headers.retain(|(name, _)| header(name));
        self.cookies.retain(|(name, _)| cookie(name));
    }

    /// Add a header (the name is lowercased). A `cookie` header is also parsed
    /// into [`Request::cookies`], as Herald does.
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            self.cookies.extend(parse_cookie_header(value));
        }
        self.headers.push((name, value.to_string()));
        self
    }

    /// Add a cookie (and the matching `cookie` header).
    pub fn with_cookie(self, name: &str, value: &str) -> Request {
        self.with_header("cookie", &format!("{name}={value}"))
    }

    /// Set whether the client accepts push.
    pub fn with_push_enabled(mut self, enabled: bool) -> Request {
        self.push_enabled = enabled;
        self
    }

    /// Native tests: make [`Request::likely_cached`] say yes for `path`.
    /// (Served by Herald, the answer comes from the client's digest cookie.)
    pub fn with_likely_cached(mut self, path: &str) -> Request {
        self.likely_cached.push(path.to_string());
        self
    }

    /// Whether Herald sent this client `path` at its current version (ETag)
    /// before, per the client's signed cache-digest cookie
    /// (`[push.cache_digest]`). About 1 in 128 answers is a false "yes";
    /// always `false` when the digest is off or the client has none. A
    /// decision that asks this is never served from Herald's decision cache.
    ///
    /// ```
    /// use herald_sdk::Request;
    /// let req = Request::get("/").with_likely_cached("/app.css");
    /// assert!(req.likely_cached("/app.css"));
    /// assert!(!req.likely_cached("/app.js"));
    /// ```
    pub fn likely_cached(&self, path: &str) -> bool {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = &self.likely_cached;
            crate::bindings::herald::policy::client_cache::likely_cached(path)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.likely_cached.iter().any(|p| p == path)
        }
    }

    /// Set the A/B variant name.
    pub fn with_variant(mut self, variant: &str) -> Request {
        self.variant = variant.to_string();
        self
    }

    /// Set the authority.
    pub fn with_authority(mut self, authority: &str) -> Request {
        self.authority = authority.to_string();
        self
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The authority, e.g. `example.com`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header as (lowercase name, value): every one the client sent,
    /// or those Herald's `[policy] request_headers` lets the policy see.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the first cookie with this name.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The paths a site recorded as cached in the cookie `name`: its value
    /// split on `|` (the format the example policies use). Empty without it.
    ///
    /// ```
    /// use herald_sdk::Request;
    /// let req = Request::get("/").with_cookie("herald-have", "/a.css|/b.js");
    /// assert_eq!(req.cookie_paths("herald-have"), ["/a.css", "/b.js"]);
    /// assert!(req.cookie_paths("other").is_empty());
    /// ```
    pub fn cookie_paths(&self, name: &str) -> Vec<&str> {
        self.cookie(name)
            .map(|v| v.split('|').collect())
            .unwrap_or_default()
    }

    /// Every cookie as (name, value), or those Herald's `[policy]
    /// request_cookies` lets the policy see.
    pub fn cookies(&self) -> &[(String, String)] {
        &self.cookies
    }

    /// Whether the connection accepts push (otherwise hints become early hints).
    pub fn push_enabled(&self) -> bool {
        self.push_enabled
    }

    /// The A/B variant this request belongs to.
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// Whether this is a top-level page load, the only kind of request worth
    /// hinting for in most sites.
    ///
    /// Uses `Sec-Fetch-Mode: navigate` or `Sec-Fetch-Dest: document` when the
    /// client sends them (every current browser does); otherwise falls back to
    /// a `GET` whose `accept` includes `text/html`, or, without `accept`
    /// either, a `GET` (non-browser clients such as `nghttp`).
    ///
    /// ```
    /// use herald_sdk::Request;
    /// assert!(Request::get("/").is_navigation());
    /// assert!(!Request::get("/app.js").with_header("sec-fetch-dest", "script").is_navigation());
    /// assert!(!Request::get("/x").with_header("accept", "image/avif").is_navigation());
    /// ```
    pub fn is_navigation(&self) -> bool {
        if self.method != "GET" {
            return false;
        }
        let mode = self.header("sec-fetch-mode");
        let dest = self.header("sec-fetch-dest");
        if mode.is_some() || dest.is_some() {
            return mode == Some("navigate") || dest == Some("document");
        }
        match self.header("accept") {
            Some(accept) => {
                accept.contains("text/html") || accept.contains("*/*") && !accept.contains(',')
            }
            None => true,
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_wit(req: crate::bindings::herald::policy::types::Request) -> Request {
        Request {
            method: req.method,
            scheme: req.scheme,
            authority: req.authority,
            path: req.path,
            query: req.query,
            headers: req.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            cookies: req.cookies.into_iter().map(|c| (c.name, c.value)).collect(),
            push_enabled: req.push_enabled,
            variant: req.variant_name,
            likely_cached: Vec::new(),
        }
    }
}

/// Split a `cookie` header into (name, value) pairs, as Herald does.
pub(crate) fn parse_cookie_header(value: &str) -> impl Iterator<Item = (String, String)> + '_ {
    value.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let value = value.trim().trim_matches('"');
        Some((name.to_string(), value.to_string()))
    })
}
