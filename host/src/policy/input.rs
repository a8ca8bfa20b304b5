//! Building the policy's view of a request from an HTTP request.

use super::{Header, Request};

/// Parse every `cookie` header into (name, value) pairs, in order. Pairs
/// without `=` or with an empty name are skipped; quotes around a value are
/// removed (RFC 6265 §4.1.1).
pub fn parse_cookies<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Vec<super::bindings::herald::policy::types::Cookie> {
    values
        .flat_map(cookie_pairs)
        .map(
            |(name, value)| super::bindings::herald::policy::types::Cookie {
                name: name.to_string(),
                value: value.to_string(),
            },
        )
        .collect()
}

/// The (name, value) pairs of one `cookie` header value.
fn cookie_pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        (!name.is_empty()).then(|| (name, value.trim().trim_matches('"')))
    })
}

/// Every (name, value) cookie pair of a request's headers, in order, as
/// `parse_cookies` finds them, without copying.
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
        .map(|(_, v)| v.to_string())
}

/// What the policy is told about a request besides its HTTP parts.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub push_enabled: bool,
    pub variant: &'a str,
}

/// The policy request for an HTTP request, as `view` describes it.
pub fn build(parts: &http::request::Parts, view: &View<'_>) -> Request {
    let headers: Vec<Header> = parts
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    let cookies = parse_cookies(
        parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
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
    fn request_splits_path_and_query() {
        let req = http::Request::get("https://example.com/shop?page=2")
            .header("cookie", "k=v")
            .header("sec-fetch-dest", "document")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let view = View {
            scheme: "https",
            authority: "example.com",
            push_enabled: true,
            variant: "default",
        };
        let r = build(&parts, &view);
        assert_eq!(r.path, "/shop");
        assert_eq!(r.query.as_deref(), Some("page=2"));
        assert_eq!(r.cookies[0].name, "k");
        assert_eq!(r.headers.len(), 2);
    }
}
