//! A tiny, language-neutral syntax for hint lists in policy configuration.

use crate::{CorsMode, Delivery, Destination, Hint};

/// Why an asset spec could not be parsed; the message names the asset and
/// the attribute.
///
/// ```
/// let e = herald_sdk::parse_asset_spec("/a.css u=9").unwrap_err();
/// assert_eq!(e.to_string(), "asset `/a.css`: bad attribute `u=9`");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetSpecError(pub String);

impl std::fmt::Display for AssetSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AssetSpecError {}

/// Parse one asset spec: a path, then optional space-separated attributes.
///
/// | attribute | meaning |
/// |---|---|
/// | `as=style` | destination (otherwise guessed from the extension) |
/// | `u=0`..`u=7` | urgency |
/// | `i` | incremental |
/// | `w=1`..`w=256` | weight |
/// | `push` / `hint` | push only / early hint only |
/// | `crossorigin`, `crossorigin=use-credentials` | CORS mode |
///
/// The example policies in every language accept this same syntax, so one
/// configuration drives all of them.
///
/// ```
/// use herald_sdk::{parse_asset_spec, Destination};
///
/// let hint = parse_asset_spec("/img/hero.jpg u=5 i w=64").unwrap();
/// assert_eq!(hint.path(), "/img/hero.jpg");
/// assert_eq!(hint.get_urgency(), 5);
/// assert!(hint.is_incremental());
/// assert_eq!(hint.destination(), Destination::Image);
/// assert!(parse_asset_spec("/x u=9").is_err());
/// ```
pub fn parse_asset_spec(spec: &str) -> Result<Hint, AssetSpecError> {
    // ASCII whitespace and vertical tab, as the C reference policy splits.
    let mut words = spec
        .split(|c: char| c.is_ascii_whitespace() || c == '\x0b')
        .filter(|w| !w.is_empty());
    let path = words
        .next()
        .ok_or_else(|| AssetSpecError("empty asset spec".into()))?;
    let mut hint = Hint::new(path);
    for word in words {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let bad = || AssetSpecError(format!("asset `{path}`: bad attribute `{word}`"));
        hint = match (key, value) {
            ("as", Some(v)) => hint.destination_is(Destination::parse(v).ok_or_else(bad)?),
            ("u", Some(v)) => match v.parse::<u8>() {
                Ok(u) if u <= 7 => hint.urgency(u),
                _ => return Err(bad()),
            },
            ("w", Some(v)) => match v.parse::<u16>() {
                Ok(w) if (1..=256).contains(&w) => hint.weight(w),
                _ => return Err(bad()),
            },
            ("i", None) => hint.incremental(true),
            ("push", None) => hint.delivery_is(Delivery::PushOnly),
            ("hint", None) => hint.delivery_is(Delivery::HintOnly),
            ("crossorigin", None) | ("crossorigin", Some("anonymous")) => {
                hint.crossorigin(CorsMode::Anonymous)
            }
            ("crossorigin", Some("use-credentials")) => hint.crossorigin(CorsMode::UseCredentials),
            _ => return Err(bad()),
        };
    }
    Ok(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_split_on_ascii_whitespace_as_in_every_language() {
        for spec in ["/a.css u=3 i", "  /a.css\tu=3\x0bi\r\n", "/a.css\x0cu=3  i"] {
            let hint = parse_asset_spec(spec).unwrap();
            assert_eq!(hint.path(), "/a.css", "{spec:?}");
            assert_eq!(hint.get_urgency(), 3, "{spec:?}");
            assert!(hint.is_incremental(), "{spec:?}");
        }
        assert!(parse_asset_spec(" \t ").is_err(), "no path");
    }
}
