//! `Link: <...>; rel=preload` values for early hints and final responses.

use super::ValidHint;
use crate::policy::{CorsMode, Destination};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Delivery, Hint};

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
}
