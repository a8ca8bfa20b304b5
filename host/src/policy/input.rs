//! Building the policy's view of a request from an HTTP request.

use std::borrow::Cow;

use super::{Header, Request, UpstreamResponse};

/// Parse every `cookie` header into (name, value) pairs, in order. Pairs
/// without `=` or with an empty name are skipped; quotes around a value are
/// removed (RFC 6265 §4.1.1).
pub fn parse_cookies<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Vec<super::bindings::herald::policy::types::Cookie> {
    parse_shown_cookies(values, &Shown::default())
}

/// [`parse_cookies`], keeping the cookies `shown` lets the policy see.
fn parse_shown_cookies<'a>(
    values: impl Iterator<Item = &'a str>,
    shown: &Shown,
) -> Vec<super::bindings::herald::policy::types::Cookie> {
    values
        .flat_map(cookie_pairs)
        .filter(|(name, _)| shown.cookie(name))
        .map(
            |(name, raw)| super::bindings::herald::policy::types::Cookie {
                name: name.to_string(),
                value: cookie_value(raw).to_string(),
            },
        )
        .collect()
}

/// The (name, raw value) pairs of one `cookie` header value, in order: a
/// value is trimmed by [`cookie_value`] only once its name is wanted (most
/// of a browser's cookies are not).
fn cookie_pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(';').filter_map(|pair| {
        let (name, raw) = pair.split_once('=')?;
        let name = name.trim();
        (!name.is_empty()).then_some((name, raw))
    })
}

/// A cookie's value as the policy sees it: trimmed, and without the quotes
/// around it (RFC 6265 §4.1.1).
pub fn cookie_value(raw: &str) -> &str {
    raw.trim().trim_matches('"')
}

/// Every (name, raw value) cookie pair of a request's headers, in order, as
/// `parse_cookies` finds them, without copying; [`cookie_value`] gives the
/// value the policy sees.
pub fn cookies_in(headers: &http::HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie_pairs)
}

/// The value of the first cookie named `name` in a request's headers,
/// without parsing the others into a list.
pub fn find_cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    cookies_in(headers)
        .find(|(n, _)| *n == name)
        .map(|(_, raw)| cookie_value(raw).to_string())
}

/// What the policy is told about a request besides its HTTP parts.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub push_enabled: bool,
    pub variant: &'a str,
}

/// The request headers and cookies a policy is shown (`[policy]
/// request_headers` and `request_cookies`); `None` shows every one.
///
/// Least privilege (a policy need not see `authorization`), and speed: each
/// string handed to a policy is one allocation inside its instance, so a
/// browser's twenty headers and a site's tracking cookies cost more to pass
/// than most policies spend deciding. Cookies follow the `cookie` header:
/// headers listed without it hide them all, unless `request_cookies` names
/// some; cookies listed hide the `cookie` header itself, since it would
/// show the others, and an upstream's `set-cookie` (`on-response`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    pub headers: Option<Vec<String>>,
    pub cookies: Option<Vec<String>>,
}

impl Shown {
    /// Whether the request header `name` (lowercase) is shown.
    pub fn header(&self, name: &str) -> bool {
        if name == "cookie" && self.cookies.is_some() {
            return false;
        }
        self.headers
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == name))
    }

    /// Whether the cookie `name` is shown.
    pub fn cookie(&self, name: &str) -> bool {
        match &self.cookies {
            Some(list) => list.iter().any(|n| n == name),
            None => self.header("cookie"),
        }
    }

    /// Whether the upstream response header `name` is shown: all but
    /// `set-cookie` where the request's cookies are not all shown.
    pub fn response_header(&self, name: &str) -> bool {
        name != "set-cookie" || (self.cookies.is_none() && self.header("cookie"))
    }

    /// `req` as a policy is shown it: borrowed when nothing in it is hidden.
    pub fn apply<'r>(&self, req: &'r Request) -> Cow<'r, Request> {
        if req.headers.iter().all(|h| self.header(&h.name))
            && req.cookies.iter().all(|c| self.cookie(&c.name))
        {
            return Cow::Borrowed(req);
        }
        let mut shown = req.clone();
        shown.headers.retain(|h| self.header(&h.name));
        shown.cookies.retain(|c| self.cookie(&c.name));
        Cow::Owned(shown)
    }
}

/// One HTTP field as the policy sees it (a value that is not UTF-8 made so).
fn header_of((name, value): (&http::HeaderName, &http::HeaderValue)) -> Header {
    Header {
        name: name.as_str().to_string(),
        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

/// An upstream's response head as the policy is shown it (`on-response`):
/// every header but those `shown` hides (`set-cookie`, with the cookies).
pub fn build_response(status: u16, headers: &http::HeaderMap, shown: &Shown) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: headers
            .iter()
            .filter(|(name, _)| shown.response_header(name.as_str()))
            .map(header_of)
            .collect(),
    }
}

/// A `header` or a `cookie` as it is lowered into a guest, borrowed (the two
/// WIT records have the same shape, and records are typed by shape).
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct FieldRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// The WIT `request` as it is lowered into a guest, borrowed from the HTTP
/// request (or from a built [`Request`]): the host copies no string before
/// the guest's own copy, where building a `Request` made two allocations
/// per header and cookie and freed them after the call.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct RequestRef<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [FieldRef<'a>],
    pub cookies: &'a [FieldRef<'a>],
    #[component(name = "push-enabled")]
    pub push_enabled: bool,
    #[component(name = "variant-name")]
    pub variant_name: &'a str,
}

/// A request's headers and cookies, borrowed for a [`RequestRef`].
pub type Fields<'a> = (Vec<FieldRef<'a>>, Vec<FieldRef<'a>>);

/// The headers and cookies of `headers` that `shown` lets a policy see, as
/// [`build`] would give them, borrowed. `None` when a shown header's value
/// is not UTF-8: `build` replaces its bad bytes, which needs a copy.
pub fn fields_of<'a>(headers: &'a http::HeaderMap, shown: &Shown) -> Option<Fields<'a>> {
    let mut shown_headers = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if shown.header(name.as_str()) {
            shown_headers.push(FieldRef {
                name: name.as_str(),
                value: std::str::from_utf8(value.as_bytes()).ok()?,
            });
        }
    }
    let cookies = cookies_in(headers)
        .filter(|(name, _)| shown.cookie(name))
        .map(|(name, raw)| FieldRef {
            name,
            value: cookie_value(raw),
        })
        .collect();
    Some((shown_headers, cookies))
}

/// A built request's headers and cookies, borrowed for a [`RequestRef`].
pub fn fields_of_request(req: &Request) -> Fields<'_> {
    (
        req.headers
            .iter()
            .map(|h| FieldRef {
                name: &h.name,
                value: &h.value,
            })
            .collect(),
        req.cookies
            .iter()
            .map(|c| FieldRef {
                name: &c.name,
                value: &c.value,
            })
            .collect(),
    )
}

/// A built request as it is lowered, with `fields` from [`fields_of_request`].
pub fn request_ref<'a>(req: &'a Request, fields: &'a Fields<'a>) -> RequestRef<'a> {
    RequestRef {
        method: &req.method,
        scheme: &req.scheme,
        authority: &req.authority,
        path: &req.path,
        query: req.query.as_deref(),
        headers: &fields.0,
        cookies: &fields.1,
        push_enabled: req.push_enabled,
        variant_name: &req.variant_name,
    }
}

/// The request [`build`] would make, as it is lowered, with `fields` from
/// [`fields_of`].
pub fn request_ref_of_parts<'a>(
    parts: &'a http::request::Parts,
    view: &View<'a>,
    fields: &'a Fields<'a>,
) -> RequestRef<'a> {
    RequestRef {
        method: parts.method.as_str(),
        scheme: view.scheme,
        authority: view.authority,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &fields.0,
        cookies: &fields.1,
        push_enabled: view.push_enabled,
        variant_name: view.variant,
    }
}

/// The policy request for an HTTP request, as `view` describes it, with
/// the headers and cookies `shown` lets the policy see.
pub fn build(parts: &http::request::Parts, view: &View<'_>, shown: &Shown) -> Request {
    let headers: Vec<Header> = parts
        .headers
        .iter()
        .filter(|(name, _)| shown.header(name.as_str()))
        .map(header_of)
        .collect();
    let cookies = parse_shown_cookies(
        parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        shown,
    );
    Request {
        method: parts.method.as_str().to_string(),
        scheme: view.scheme.to_string(),
        authority: view.authority.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        cookies,
        push_enabled: view.push_enabled,
        variant_name: view.variant.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: View<'static> = View {
        scheme: "https",
        authority: "example.com",
        push_enabled: true,
        variant: "default",
    };

    #[test]
    fn cookies_from_several_headers() {
        let c = parse_cookies(["a=1; b=\"two\"", "junk; =x; c=3=3"].into_iter());
        let pairs: Vec<(&str, &str)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "1"), ("b", "two"), ("c", "3=3")]);
    }

    #[test]
    fn cookie_edge_cases_parse_as_rfc_6265_splitting_says() {
        let cases = [
            ("", vec![]),
            (";;", vec![]),
            ("a=1;", vec![("a", "1")]),
            (" a = 1 ;b=;=c; d", vec![("a", "1"), ("b", "")]),
            (
                "x=\"q\"; y=\"\"; z= \"sp ace\" ",
                vec![("x", "q"), ("y", ""), ("z", "sp ace")],
            ),
            ("\tt=\t1\t;u==", vec![("t", "1"), ("u", "=")]),
            ("é=ü; ñ = \u{a0}v\u{a0}", vec![("é", "ü"), ("ñ", "v")]),
        ];
        for (header, expect) in cases {
            let got: Vec<(String, String)> = parse_cookies(std::iter::once(header))
                .into_iter()
                .map(|c| (c.name, c.value))
                .collect();
            let expect: Vec<(String, String)> = expect
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, expect, "{header:?}");
        }
    }

    #[test]
    fn request_splits_path_and_query() {
        let req = http::Request::get("https://example.com/shop?page=2")
            .header("cookie", "k=v")
            .header("sec-fetch-dest", "document")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let r = build(&parts, &VIEW, &Shown::default());
        assert_eq!(r.path, "/shop");
        assert_eq!(r.query.as_deref(), Some("page=2"));
        assert_eq!(r.cookies[0].name, "k");
        assert_eq!(r.headers.len(), 2);
    }

    #[test]
    fn shown_lists_hide_the_rest_and_the_cookie_header() {
        let req = http::Request::get("https://example.com/")
            .header("cookie", "session=secret; ab=b")
            .header("authorization", "Bearer x")
            .header("sec-fetch-dest", "document")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let view = VIEW;
        let names = |r: &Request| -> Vec<String> {
            let h = r.headers.iter().map(|h| h.name.clone());
            h.chain(r.cookies.iter().map(|c| format!("cookie {}", c.name)))
                .collect()
        };
        let all = build(&parts, &view, &Shown::default());
        assert_eq!(all.headers.len(), 3);
        assert_eq!(all.cookies.len(), 2);

        let only_dest = Shown {
            headers: Some(vec!["sec-fetch-dest".into()]),
            cookies: Some(vec!["ab".into()]),
        };
        let r = build(&parts, &view, &only_dest);
        assert_eq!(names(&r), ["sec-fetch-dest", "cookie ab"]);
        // The same from a request built with everything (samples, tools).
        assert_eq!(names(&only_dest.apply(&all)), names(&r));
        assert!(matches!(only_dest.apply(&r), Cow::Borrowed(_)));

        // Cookies listed, headers not: every header but `cookie`.
        let cookies_only = Shown {
            headers: None,
            cookies: Some(vec![]),
        };
        let r = build(&parts, &view, &cookies_only);
        assert_eq!(names(&r), ["authorization", "sec-fetch-dest"]);
        assert!(!cookies_only.response_header("set-cookie"));
        assert!(cookies_only.response_header("cache-control"));
        let mut head = http::HeaderMap::new();
        head.insert("set-cookie", "session=new".parse().unwrap());
        head.insert("cache-control", "no-store".parse().unwrap());
        let shown_head = build_response(200, &head, &cookies_only);
        let head_names: Vec<&str> = shown_head.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(head_names, ["cache-control"]);
        assert_eq!(
            build_response(200, &head, &Shown::default()).headers.len(),
            2
        );

        // Headers listed without `cookie`: no cookies either.
        let headers_only = Shown {
            headers: Some(vec!["sec-fetch-dest".into()]),
            cookies: None,
        };
        let r = build(&parts, &view, &headers_only);
        assert_eq!(names(&r), ["sec-fetch-dest"]);
        assert!(!headers_only.response_header("set-cookie"));
        // ...and with it, all of them, as by default.
        let with_cookie = Shown {
            headers: Some(vec!["cookie".into()]),
            cookies: None,
        };
        let r = build(&parts, &view, &with_cookie);
        assert_eq!(names(&r), ["cookie", "cookie session", "cookie ab"]);
        assert!(with_cookie.response_header("set-cookie"));
        assert!(Shown::default().response_header("set-cookie"));
    }

    /// The borrowed view lowered into a guest is the request `build` makes,
    /// field for field, for every `Shown`; a value that is not UTF-8 has
    /// no borrowed view (the caller builds the request, bytes replaced).
    #[test]
    fn the_borrowed_view_is_the_built_request() {
        let req = http::Request::get("https://example.com/shop?page=2")
            .header("accept", "text/html")
            .header("cookie", "session=secret; ab=b")
            .header("cookie", "theme=dark")
            .header("x-name", "Zoë")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let lists = [
            Shown::default(),
            Shown {
                headers: Some(vec!["accept".into()]),
                cookies: Some(vec!["ab".into()]),
            },
            Shown {
                headers: Some(vec!["cookie".into(), "x-name".into()]),
                cookies: None,
            },
        ];
        for shown in &lists {
            let built = build(&parts, &VIEW, shown);
            let fields = fields_of(&parts.headers, shown).expect("all UTF-8");
            let view = request_ref_of_parts(&parts, &VIEW, &fields);
            let from_built = fields_of_request(&built);
            let expected = request_ref(&built, &from_built);
            assert_eq!(format!("{view:?}"), format!("{expected:?}"), "{shown:?}");
        }

        let mut bad = parts.headers.clone();
        bad.insert(
            "x-bytes",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert!(fields_of(&bad, &Shown::default()).is_none());
        // Hidden, it does not matter.
        let hidden = Shown {
            headers: Some(vec!["accept".into()]),
            cookies: None,
        };
        assert!(fields_of(&bad, &hidden).is_some());
    }
}
