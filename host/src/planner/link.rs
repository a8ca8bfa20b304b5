//! `Link: <...>; rel=preload` values for early hints and final responses.

use super::ValidHint;
use crate::policy::{CorsMode, Delivery, Destination, Hint};

/// The `as=` token of a destination.
pub fn destination_name(d: Destination) -> &'static str {
    match d {
        Destination::Style => "style",
        Destination::Script => "script",
        Destination::Font => "font",
        Destination::Image => "image",
        Destination::Fetch => "fetch",
        Destination::Document => "document",
        Destination::Audio => "audio",
        Destination::Video => "video",
        Destination::Track => "track",
        Destination::Worker => "worker",
        Destination::Manifest => "manifest",
    }
}

/// One preload link. Fonts and `fetch` are always fetched in CORS mode, so
/// they get `crossorigin` even when the policy did not say (a preload without
/// it would be fetched twice). `nopush` tells a push-capable proxy in front of
/// Herald not to turn the link into a push.
pub fn preload(hint: &ValidHint, nopush: bool) -> http::HeaderValue {
    let mut v = format!(
        "<{}>; rel=preload; as={}",
        hint.path_and_query,
        destination_name(hint.destination)
    );
    let cors = match (hint.crossorigin, hint.destination) {
        (Some(mode), _) => Some(mode),
        (None, Destination::Font | Destination::Fetch) => Some(CorsMode::Anonymous),
        (None, _) => None,
    };
    match cors {
        Some(CorsMode::Anonymous) => v.push_str("; crossorigin"),
        Some(CorsMode::UseCredentials) => v.push_str("; crossorigin=use-credentials"),
        None => {}
    }
    if nopush {
        v.push_str("; nopush");
    }
    // The path was validated (visible ASCII only), so this cannot fail.
    http::HeaderValue::from_str(&v).expect("validated hint path is a valid header value")
}

/// `values` as one `Link` field, comma-separated (RFC 8288 §3), as the
/// HTTP/2 paths send them: one field is one HPACK table entry, a byte on
/// every response once indexed, where five fields are five entries (and
/// five lookups) each time.
pub fn join<V: std::borrow::Borrow<http::HeaderValue>>(
    values: impl IntoIterator<Item = V>,
) -> Option<http::HeaderValue> {
    let mut values = values.into_iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first.borrow().clone());
    };
    let mut joined = Vec::with_capacity(512);
    for (i, v) in [first, second].into_iter().chain(values).enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v.borrow().as_bytes());
    }
    // Each part is a valid value, and ", " is too.
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).ok()
}

/// `hints` as one `Link` field (see [`join`]), each value formatted once
/// per hint.
pub fn field<'a>(
    hints: impl IntoIterator<Item = &'a ValidHint>,
    nopush: bool,
) -> Option<http::HeaderValue> {
    join(hints.into_iter().map(|h| h.link(nopush)))
}

/// Whether a `Link` header in `headers` already names `path_and_query`.
pub fn names(headers: &http::HeaderMap, path_and_query: &str) -> bool {
    let target = format!("<{path_and_query}>");
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(&target))
}

/// The destination an `as=` token names, if any.
fn destination_of(token: &str) -> Option<Destination> {
    Some(match token.to_ascii_lowercase().as_str() {
        "style" => Destination::Style,
        "script" => Destination::Script,
        "font" => Destination::Font,
        "image" => Destination::Image,
        "fetch" => Destination::Fetch,
        "document" => Destination::Document,
        "audio" => Destination::Audio,
        "video" => Destination::Video,
        "track" => Destination::Track,
        "worker" => Destination::Worker,
        "manifest" => Destination::Manifest,
        _ => return None,
    })
}

/// Split `text` at `sep` outside `<...>` and quoted strings.
fn split_outside(text: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut angle, mut quoted, mut escaped) =
        (Vec::new(), 0, false, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            c if c == sep && !angle && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The hints an application's `Link: rel=preload` values ask for (RFC 8288
/// syntax): same-origin targets only (a path, or an absolute URL on
/// `authority`), with a known `as=`. `nopush` makes a hint early-hint only.
/// Styles, scripts and fonts get the page's urgency (3, after the page in
/// order); media is less urgent and incremental.
pub fn preload_hints<'a>(
    values: impl IntoIterator<Item = &'a http::HeaderValue>,
    authority: &str,
) -> Vec<Hint> {
    let mut hints = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for link in split_outside(text, ',') {
            let mut params = split_outside(link, ';').into_iter();
            let Some(target) = params
                .next()
                .map(str::trim)
                .and_then(|t| t.strip_prefix('<'))
                .and_then(|t| t.strip_suffix('>'))
            else {
                continue;
            };
            let (mut preload, mut nopush, mut dest, mut cors) = (false, false, None, None);
            for param in params {
                let (key, val) = match param.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                    None => (param.trim(), None),
                };
                match key.to_ascii_lowercase().as_str() {
                    "rel" => {
                        preload = val.is_some_and(|v| {
                            v.split_ascii_whitespace()
                                .any(|r| r.eq_ignore_ascii_case("preload"))
                        });
                    }
                    "as" => dest = val.and_then(destination_of),
                    "nopush" => nopush = true,
                    "crossorigin" => {
                        cors = Some(match val {
                            Some(v) if v.eq_ignore_ascii_case("use-credentials") => {
                                CorsMode::UseCredentials
                            }
                            _ => CorsMode::Anonymous,
                        });
                    }
                    _ => {}
                }
            }
            let path = if target.starts_with('/') && !target.starts_with("//") {
                Some(target)
            } else {
                ["https://", "http://"].iter().find_map(|scheme| {
                    let rest = target.strip_prefix(scheme)?;
                    let slash = rest.find('/')?;
                    rest[..slash]
                        .eq_ignore_ascii_case(authority)
                        .then_some(&rest[slash..])
                })
            };
            let (Some(path), Some(destination), true) = (path, dest, preload) else {
                continue;
            };
            let media = matches!(
                destination,
                Destination::Image | Destination::Audio | Destination::Video | Destination::Track
            );
            hints.push(Hint {
                path: path.to_string(),
                urgency: if media { 5 } else { 3 },
                incremental: media,
                weight: 16,
                destination,
                crossorigin: cors,
                copy_headers: None,
                headers: vec![],
                delivery: if nopush {
                    Delivery::HintOnly
                } else {
                    Delivery::Auto
                },
            });
        }
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_links_are_one_field_that_parses_back() {
        let values = [
            valid("/a.css", Destination::Style).link(false),
            valid("/b,c.js", Destination::Script).link(true),
        ];
        assert_eq!(join(&[]), None);
        assert_eq!(join(&values[..1]).unwrap(), values[0]);
        let joined = join(&values).unwrap();
        assert_eq!(
            joined,
            "</a.css>; rel=preload; as=style, </b,c.js>; rel=preload; as=script; nopush"
        );
        let back = preload_hints([&joined], "example.com");
        let paths: Vec<&str> = back.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(paths, ["/a.css", "/b,c.js"]);
        assert_eq!(back[1].delivery, Delivery::HintOnly, "nopush is kept");
    }

    #[test]
    fn a_hint_formats_its_link_once_for_each_push_setting() {
        let hint = valid("/f.woff", Destination::Font);
        assert_eq!(
            hint.link(false),
            "</f.woff>; rel=preload; as=font; crossorigin"
        );
        let copy = hint.clone();
        assert_eq!(copy.link(false), hint.link(false));
        assert_eq!(
            copy.link(true),
            "</f.woff>; rel=preload; as=font; crossorigin; nopush"
        );
    }

    fn valid(path: &str, destination: Destination) -> ValidHint {
        super::super::validate::validate(
            Hint {
                path: path.into(),
                urgency: 3,
                incremental: false,
                weight: 16,
                destination,
                crossorigin: None,
                copy_headers: None,
                headers: vec![],
                delivery: Delivery::Auto,
            },
            4096,
        )
        .unwrap()
    }

    #[test]
    fn formats_links() {
        assert_eq!(
            preload(&valid("/a.css", Destination::Style), false),
            "</a.css>; rel=preload; as=style"
        );
        assert_eq!(
            preload(&valid("/f.woff2", Destination::Font), true),
            "</f.woff2>; rel=preload; as=font; crossorigin; nopush"
        );
    }

    #[test]
    fn reads_an_applications_preload_links() {
        let values = [
            http::HeaderValue::from_static(
                "</a.css>; rel=preload; as=style, <https://shop.test/b.js>; rel=\"preload modulepreload\"; as=script",
            ),
            http::HeaderValue::from_static(
                "</f.woff2>; rel=preload; as=font; crossorigin; nopush, </img.png>; as=image; rel=preload",
            ),
            // Not ours or not a preload: skipped.
            http::HeaderValue::from_static(
                "<https://cdn.test/x.js>; rel=preload; as=script, </next>; rel=prefetch, </c.css>; rel=preload, </q;a,b.css>; rel=preload; as=style",
            ),
        ];
        let hints = preload_hints(&values, "shop.test");
        let got: Vec<(&str, Destination, Delivery, u8)> = hints
            .iter()
            .map(|h| (h.path.as_str(), h.destination, h.delivery, h.urgency))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a.css", Destination::Style, Delivery::Auto, 3),
                ("/b.js", Destination::Script, Delivery::Auto, 3),
                ("/f.woff2", Destination::Font, Delivery::HintOnly, 3),
                ("/img.png", Destination::Image, Delivery::Auto, 5),
                ("/q;a,b.css", Destination::Style, Delivery::Auto, 3),
            ]
        );
        assert_eq!(hints[2].crossorigin, Some(CorsMode::Anonymous));
        assert!(hints[3].incremental);
    }
}
