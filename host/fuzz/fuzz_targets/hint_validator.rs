//! The hint validator against arbitrary policy answers: it must never panic,
//! and whatever it accepts must be safe to put on the wire.
//!
//! Input: fields separated by NUL bytes: path, then header name/value pairs,
//! then copy-header names after a lone `*` field; the first byte picks the
//! numeric fields.

#![no_main]

use herald::planner::{link, validate};
use herald::policy::{CorsMode, Delivery, Destination, Header, Hint};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

const DESTINATIONS: [Destination; 11] = [
    Destination::Style,
    Destination::Script,
    Destination::Font,
    Destination::Image,
    Destination::Fetch,
    Destination::Document,
    Destination::Audio,
    Destination::Video,
    Destination::Track,
    Destination::Worker,
    Destination::Manifest,
];

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\0');
    let path = fields.next().unwrap_or("").to_string();
    let (mut headers, mut copy) = (Vec::new(), None::<Vec<String>>);
    let mut copying = false;
    while let Some(field) = fields.next() {
        if field == "*" {
            copying = true;
            copy.get_or_insert_with(Vec::new);
        } else if copying {
            copy.get_or_insert_with(Vec::new).push(field.to_string());
        } else {
            headers.push(Header {
                name: field.to_string(),
                value: fields.next().unwrap_or("").to_string(),
            });
        }
    }
    let hint = Hint {
        path,
        urgency: knobs & 0x0f,
        incremental: knobs & 0x10 != 0,
        weight: u16::from(knobs) * 2,
        destination: DESTINATIONS[usize::from(knobs) % DESTINATIONS.len()],
        crossorigin: match knobs >> 6 {
            0 => None,
            1 => Some(CorsMode::Anonymous),
            _ => Some(CorsMode::UseCredentials),
        },
        copy_headers: copy,
        headers,
        delivery: [Delivery::Auto, Delivery::PushOnly, Delivery::HintOnly][usize::from(knobs) % 3],
    };
    let Ok(valid) = validate::validate(hint, 4096) else {
        return;
    };
    // Accepted: a same-origin absolute path without dot segments, however
    // encoded, and a Link header value that parses back.
    let pq = valid.path_and_query.as_str();
    assert!(pq.starts_with('/') && !pq.starts_with("//"), "{pq:?}");
    let path = valid.path_and_query.path();
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    assert!(
        !decoded.split('/').any(|s| s == ".." || s == "."),
        "dot segment in {pq:?}"
    );
    assert!(valid.urgency <= 7 && (1..=256).contains(&valid.weight));
    let header = link::preload(&valid, false);
    assert!(header.to_str().is_ok());
    http::Uri::builder()
        .scheme("https")
        .authority("example.com")
        .path_and_query(pq)
        .build()
        .expect("an accepted path makes a valid URI");
});
