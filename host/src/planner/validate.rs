//! Validation of the hints a policy returns. A policy is untrusted: every field
//! is checked here before anything reaches the wire.

use http::HeaderName;
use percent_encoding::percent_decode_str;

use crate::policy::{CorsMode, Delivery, Destination, Hint};

/// A hint that passed validation: safe to put in a PUSH_PROMISE or a `Link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidHint {
    /// Path and query, e.g. `/css/site.css?v=3`.
    pub path_and_query: http::uri::PathAndQuery,
    pub urgency: u8,
    pub incremental: bool,
    pub weight: u16,
    pub destination: Destination,
    pub crossorigin: Option<CorsMode>,
    pub copy_headers: Option<Vec<HeaderName>>,
    pub headers: Vec<(HeaderName, http::HeaderValue)>,
    pub delivery: Delivery,
    /// Its `Link` value, once formatted (see [`ValidHint::link`]).
    pub link: LinkMemo,
}

/// A formatted `Link` value kept with what it was made from (a hint, a
/// plan): a cached plan formats its values once, not per request. Never
/// part of that thing's identity (equal whatever it holds).
#[derive(Debug, Clone, Default)]
pub struct LinkMemo(std::sync::OnceLock<(bool, http::HeaderValue)>);

impl LinkMemo {
    /// The value kept for `nopush`, if one is.
    pub fn get(&self, nopush: bool) -> Option<&http::HeaderValue> {
        self.0
            .get()
            .and_then(|(memo_nopush, value)| (*memo_nopush == nopush).then_some(value))
    }

    /// The value for `nopush`: kept, or made by `make` (and kept if none
    /// was yet). Borrowed when kept: a request that only reads it copies nothing
    /// (a clone of the value is a reference count, a locked instruction).
    pub fn get_or(
        &self,
        nopush: bool,
        make: impl FnOnce() -> http::HeaderValue,
    ) -> std::borrow::Cow<'_, http::HeaderValue> {
        use std::borrow::Cow;
        if let Some(value) = self.get(nopush) {
            return Cow::Borrowed(value);
        }
        let value = make();
        match self.0.set((nopush, value)) {
            Ok(()) => Cow::Borrowed(&self.0.get().expect("just set").1),
            // Kept for the other `nopush` (or by a racing first caller).
            Err((_, value)) => Cow::Owned(value),
        }
    }
}

impl PartialEq for LinkMemo {
    fn eq(&self, _: &LinkMemo) -> bool {
        true
    }
}

impl Eq for LinkMemo {}

impl ValidHint {
    /// This hint as a `Link: rel=preload` value (`nopush` for a client that
    /// accepts push: the server chose not to push it).
    pub fn link(&self, nopush: bool) -> http::HeaderValue {
        self.link
            .get_or(nopush, || super::link::preload(self, nopush))
            .into_owned()
    }
}

/// Why a hint was dropped; the message names the problem for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidHint(pub String);

fn invalid(msg: impl Into<String>) -> InvalidHint {
    InvalidHint(msg.into())
}

/// Request headers a push may never carry: pseudo-headers are built by the
/// host, and connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2).
const FORBIDDEN: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "host",
    "content-length",
];

/// Check one hint. `max_bytes` bounds its path plus headers.
pub fn validate(hint: Hint, max_bytes: usize) -> Result<ValidHint, InvalidHint> {
    let size = hint.path.len()
        + hint
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum::<usize>()
        + hint
            .copy_headers
            .as_ref()
            .map(|names| names.iter().map(String::len).sum::<usize>())
            .unwrap_or(0);
    if size > max_bytes {
        return Err(invalid(format!(
            "hint is {size} bytes, over the {max_bytes}-byte limit"
        )));
    }
    let path_and_query = validate_path(&hint.path)?;
    if hint.urgency > 7 {
        return Err(invalid(format!(
            "{}: urgency {} is not 0 to 7",
            hint.path, hint.urgency
        )));
    }
    if !(1..=256).contains(&hint.weight) {
        return Err(invalid(format!(
            "{}: weight {} is not 1 to 256",
            hint.path, hint.weight
        )));
    }
    let copy_headers = match hint.copy_headers {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    header_name(n).map_err(|e| invalid(format!("{}: copy-headers: {e}", hint.path)))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let mut headers = Vec::with_capacity(hint.headers.len());
    for h in &hint.headers {
        let name =
            header_name(&h.name).map_err(|e| invalid(format!("{}: header: {e}", hint.path)))?;
        let value = http::HeaderValue::from_str(&h.value).map_err(|_| {
            invalid(format!(
                "{}: header {}: value has forbidden characters",
                hint.path, h.name
            ))
        })?;
        headers.push((name, value));
    }
    Ok(ValidHint {
        path_and_query,
        urgency: hint.urgency,
        incremental: hint.incremental,
        weight: hint.weight,
        destination: hint.destination,
        crossorigin: hint.crossorigin,
        copy_headers,
        headers,
        delivery: hint.delivery,
        link: LinkMemo::default(),
    })
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    if name.is_empty() || name.starts_with(':') {
        return Err(format!("`{}` is a pseudo-header or empty", printable(name)));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("`{}` is not lowercase", printable(name)));
    }
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{}` is not a header name", printable(name)))?;
    if FORBIDDEN.contains(&parsed.as_str()) {
        return Err(format!("`{name}` is connection-specific"));
    }
    Ok(parsed)
}

fn printable(s: &str) -> String {
    s.chars().take(40).flat_map(char::escape_default).collect()
}

/// A hint path must be a same-origin absolute path: `/x`, not `//host/x`,
/// `https://...`, `data:...`; no dot segments, even percent-encoded; no
/// control characters, backslashes or fragments.
pub fn validate_path(path: &str) -> Result<http::uri::PathAndQuery, InvalidHint> {
    // Only an invalid path is shown (printed safely); a valid one, the
    // common case, costs no copy.
    let shown = || printable(path);
    if !path.starts_with('/') {
        return Err(invalid(format!(
            "`{}` is not a same-origin path starting with /",
            shown()
        )));
    }
    if path.starts_with("//") {
        return Err(invalid(format!("`{}` names another authority", shown())));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || b == b'#' || b >= 0x80)
    {
        return Err(invalid(format!(
            "`{}` has characters not allowed in a path",
            shown()
        )));
    }
    let only_path = path.split('?').next().unwrap_or("");
    // Borrowed unless there is something to decode.
    let decoded: std::borrow::Cow<'_, [u8]> = percent_decode_str(only_path).into();
    if decoded
        .iter()
        .any(|&b| b == 0 || b == b'\\' || b.is_ascii_control())
    {
        return Err(invalid(format!(
            "`{}` encodes forbidden characters",
            shown()
        )));
    }
    for segment in decoded.split(|&b| b == b'/') {
        if segment == b"." || segment == b".." {
            return Err(invalid(format!("`{}` has a dot segment", shown())));
        }
    }
    path.parse::<http::uri::PathAndQuery>()
        .map_err(|_| invalid(format!("`{}` is not a valid path", shown())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Header;

    fn hint(path: &str) -> Hint {
        Hint {
            path: path.into(),
            urgency: 3,
            incremental: false,
            weight: 16,
            destination: Destination::Style,
            crossorigin: None,
            copy_headers: None,
            headers: vec![],
            delivery: Delivery::Auto,
        }
    }

    #[test]
    fn accepts_plain_paths_and_queries() {
        assert!(validate(hint("/css/site.css"), 4096).is_ok());
        assert_eq!(
            validate(hint("/a?b=c&d=%20"), 4096)
                .unwrap()
                .path_and_query
                .as_str(),
            "/a?b=c&d=%20"
        );
    }

    #[test]
    fn refuses_other_origins_and_schemes() {
        for bad in [
            "https://evil.example/x.js",
            "//evil.example/x.js",
            "data:text/css,body{}",
            "javascript:alert(1)",
            "x.css",
            "",
        ] {
            assert!(validate(hint(bad), 4096).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn refuses_dot_segments_even_encoded() {
        for bad in [
            "/../etc/passwd",
            "/a/./b",
            "/%2e%2e/secret",
            "/a/%2E%2e%2fb",
            "/a/%2e",
            "/..",
        ] {
            assert!(validate(hint(bad), 4096).is_err(), "{bad} accepted");
        }
        assert!(validate(hint("/a..b/c.d"), 4096).is_ok());
    }

    #[test]
    fn refuses_control_characters() {
        for bad in ["/a\r\nb", "/a\0", "/a%00", "/a b", "/a\\b", "/a#frag", "/é"] {
            assert!(validate(hint(bad), 4096).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refuses_out_of_range_priority() {
        let mut h = hint("/a");
        h.urgency = 8;
        assert!(validate(h, 4096).is_err());
        let mut h = hint("/a");
        h.weight = 0;
        assert!(validate(h, 4096).is_err());
        let mut h = hint("/a");
        h.weight = 257;
        assert!(validate(h, 4096).is_err());
    }

    #[test]
    fn refuses_bad_headers() {
        for (name, value) in [
            ("Accept", "x"),
            (":path", "/x"),
            ("connection", "close"),
            ("te", "trailers"),
            ("x-a", "b\r\nc"),
            ("x-a", "b\0"),
            ("bad name", "x"),
        ] {
            let mut h = hint("/a");
            h.headers.push(Header {
                name: name.into(),
                value: value.into(),
            });
            assert!(validate(h, 4096).is_err(), "{name}: {value:?} accepted");
        }
        let mut h = hint("/a");
        h.headers.push(Header {
            name: "accept".into(),
            value: "text/css".into(),
        });
        assert!(validate(h, 4096).is_ok());
    }

    #[test]
    fn refuses_oversized_hints() {
        let long = format!("/{}", "a".repeat(1 << 20));
        let e = validate(hint(&long), 4096).unwrap_err();
        assert!(e.0.contains("over the 4096-byte limit"), "{e}");
    }
}
