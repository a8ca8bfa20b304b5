//! The hint builder.

/// What the page will use a resource as: the `as=` of a preload link.
///
/// ```
/// use herald_sdk::{Destination, Hint};
/// // Guessed from the extension, or set explicitly:
/// assert_eq!(Hint::new("/app.js").destination(), Destination::Script);
/// let feed = Hint::new("/feed").destination_is(Destination::Fetch);
/// assert_eq!(feed.destination().as_str(), "fetch");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    Style,
    Script,
    Font,
    Image,
    Fetch,
    Document,
    Audio,
    Video,
    Track,
    Worker,
    Manifest,
}

impl Destination {
    /// Guess from a path's extension: `.css` is a style, `.woff2` a font, and so on;
    /// anything unknown is `Fetch`.
    ///
    /// ```
    /// use herald_sdk::Destination;
    /// assert_eq!(Destination::from_path("/a/b.mjs?v=2"), Destination::Script);
    /// assert_eq!(Destination::from_path("/logo.SVG"), Destination::Image);
    /// assert_eq!(Destination::from_path("/data"), Destination::Fetch);
    /// ```
    pub fn from_path(path: &str) -> Destination {
        // Byte scans and a match on the lowercased extension: no
        // allocation, as this runs for every hint built with `Hint::new`.
        let bytes = path.as_bytes();
        let end = bytes
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(bytes.len());
        let path = &bytes[..end];
        let file = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => &path[slash + 1..],
            None => path,
        };
        let Some(dot) = file.iter().rposition(|&b| b == b'.') else {
            return Destination::Fetch;
        };
        // Lowercased into a buffer as long as the longest known extension,
        // then one `match`: a handful of comparisons, where a table scan
        // was the costliest guest function of a warm call.
        let ext = &file[dot + 1..];
        let mut lower = [0u8; 11];
        let Some(lower) = lower.get_mut(..ext.len()) else {
            return Destination::Fetch;
        };
        for (to, from) in lower.iter_mut().zip(ext) {
            *to = from.to_ascii_lowercase();
        }
        match &*lower {
            b"css" => Destination::Style,
            b"js" | b"mjs" => Destination::Script,
            b"woff2" | b"woff" | b"ttf" | b"otf" => Destination::Font,
            b"png" | b"jpg" | b"jpeg" | b"gif" | b"webp" | b"avif" | b"svg" | b"ico" => {
                Destination::Image
            }
            b"html" | b"htm" => Destination::Document,
            b"mp3" | b"ogg" | b"wav" | b"flac" => Destination::Audio,
            b"mp4" | b"webm" => Destination::Video,
            b"vtt" => Destination::Track,
            b"webmanifest" => Destination::Manifest,
            _ => Destination::Fetch,
        }
    }

    /// The name used in `as=`.
    pub fn as_str(self) -> &'static str {
        match self {
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

    /// The inverse of [`Destination::as_str`].
    pub fn parse(name: &str) -> Option<Destination> {
        const ALL: [Destination; 11] = [
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
        ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// The CORS mode a page fetches a resource with (`crossorigin=`). A preload
/// is only reused by a fetch in the same mode.
///
/// ```
/// use herald_sdk::{CorsMode, Hint};
/// let api = Hint::new("/api/me").fetch().crossorigin(CorsMode::UseCredentials);
/// assert_eq!(api.cors_mode(), Some(CorsMode::UseCredentials));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorsMode {
    Anonymous,
    UseCredentials,
}

/// How a hint should be delivered.
///
/// ```
/// use herald_sdk::{Delivery, Hint};
/// assert_eq!(Hint::new("/a.css").delivery(), Delivery::Auto);
/// assert_eq!(Hint::new("/a.css").push_only().delivery(), Delivery::PushOnly);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Push where the client accepts it, otherwise an early hint.
    #[default]
    Auto,
    /// Push or nothing.
    PushOnly,
    /// Early hint and `Link` only.
    HintOnly,
}

/// A resource the page will need, built fluently.
///
/// Defaults: urgency 3 (the RFC 9218 default, same as the page), not
/// incremental, weight 16, destination guessed from the extension, Herald's
/// default set of headers copied into a push, delivery [`Delivery::Auto`].
///
/// ```
/// use herald_sdk::{Delivery, Destination, Hint};
///
/// let hint = Hint::new("/img/hero.avif").urgency(5).incremental(true).weight(64);
/// assert_eq!(hint.destination(), Destination::Image);
/// assert_eq!(hint.get_urgency(), 5);
///
/// let api = Hint::new("/api/me").fetch().header("accept", "application/json").hint_only();
/// assert_eq!(api.delivery(), Delivery::HintOnly);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    path: String,
    urgency: u8,
    incremental: bool,
    weight: u16,
    destination: Destination,
    crossorigin: Option<CorsMode>,
    copy_headers: Option<Vec<String>>,
    headers: Vec<(String, String)>,
    delivery: Delivery,
}

impl Hint {
    /// A hint for a same-origin path such as `/css/site.css`.
    pub fn new(path: impl Into<String>) -> Hint {
        let path = path.into();
        let destination = Destination::from_path(&path);
        Hint {
            path,
            urgency: 3,
            incremental: false,
            weight: 16,
            destination,
            crossorigin: None,
            copy_headers: None,
            headers: Vec::new(),
            delivery: Delivery::Auto,
        }
    }

    /// RFC 9218 urgency, 0 (first) to 7 (last). Values above 7 are clamped to 7.
    pub fn urgency(mut self, urgency: u8) -> Hint {
        self.urgency = urgency.min(7);
        self
    }

    /// Whether the resource is useful in pieces and may be interleaved.
    pub fn incremental(mut self, incremental: bool) -> Hint {
        self.incremental = incremental;
        self
    }

    /// Bandwidth share among streams of the same urgency, clamped to 1..=256.
    pub fn weight(mut self, weight: u16) -> Hint {
        self.weight = weight.clamp(1, 256);
        self
    }

    /// Set the destination explicitly.
    pub fn destination_is(mut self, destination: Destination) -> Hint {
        self.destination = destination;
        self
    }

    /// Shorthand for `destination_is(Destination::Style)`.
    pub fn style(self) -> Hint {
        self.destination_is(Destination::Style)
    }

    /// Shorthand for `destination_is(Destination::Script)`.
    pub fn script(self) -> Hint {
        self.destination_is(Destination::Script)
    }

    /// Shorthand for `destination_is(Destination::Font)`.
    pub fn font(self) -> Hint {
        self.destination_is(Destination::Font)
    }

    /// Shorthand for `destination_is(Destination::Image)`.
    pub fn image(self) -> Hint {
        self.destination_is(Destination::Image)
    }

    /// Shorthand for `destination_is(Destination::Fetch)`.
    pub fn fetch(self) -> Hint {
        self.destination_is(Destination::Fetch)
    }

    /// The CORS mode (`crossorigin=`) the page fetches it with.
    pub fn crossorigin(mut self, mode: CorsMode) -> Hint {
        self.crossorigin = Some(mode);
        self
    }

    /// Copy exactly these request headers of the page into the push
    /// (replacing Herald's default set).
    ///
    /// ```
    /// let hint = herald_sdk::Hint::new("/app.js").copy_headers(["cookie", "accept-encoding"]);
    /// assert_eq!(hint.copied_headers(), Some(&["cookie".to_string(), "accept-encoding".to_string()][..]));
    /// ```
    pub fn copy_headers<I, S>(mut self, names: I) -> Hint
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.copy_headers = Some(
            names
                .into_iter()
                .map(|n| n.into().to_ascii_lowercase())
                .collect(),
        );
        self
    }

    /// Add a request header to the push, e.g. `accept: text/css`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Hint {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// Deliver as a push or not at all.
    pub fn push_only(mut self) -> Hint {
        self.delivery = Delivery::PushOnly;
        self
    }

    /// Deliver as an early hint and `Link` only.
    pub fn hint_only(mut self) -> Hint {
        self.delivery = Delivery::HintOnly;
        self
    }

    /// Set the delivery explicitly.
    pub fn delivery_is(mut self, delivery: Delivery) -> Hint {
        self.delivery = delivery;
        self
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The urgency, 0 to 7.
    pub fn get_urgency(&self) -> u8 {
        self.urgency
    }

    /// Whether the hint is incremental.
    pub fn is_incremental(&self) -> bool {
        self.incremental
    }

    /// The weight, 1 to 256.
    pub fn get_weight(&self) -> u16 {
        self.weight
    }

    /// The destination.
    pub fn destination(&self) -> Destination {
        self.destination
    }

    /// The CORS mode, if set.
    pub fn cors_mode(&self) -> Option<CorsMode> {
        self.crossorigin
    }

    /// The header names to copy, if the default set was replaced.
    pub fn copied_headers(&self) -> Option<&[String]> {
        self.copy_headers.as_deref()
    }

    /// The extra request headers.
    pub fn extra_headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The delivery.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_wit(h: crate::bindings::herald::policy::types::Hint) -> Hint {
        use crate::bindings::herald::policy::types as wit;
        Hint {
            path: h.path,
            urgency: h.urgency,
            incremental: h.incremental,
            weight: h.weight,
            destination: match h.destination {
                wit::Destination::Style => Destination::Style,
                wit::Destination::Script => Destination::Script,
                wit::Destination::Font => Destination::Font,
                wit::Destination::Image => Destination::Image,
                wit::Destination::Fetch => Destination::Fetch,
                wit::Destination::Document => Destination::Document,
                wit::Destination::Audio => Destination::Audio,
                wit::Destination::Video => Destination::Video,
                wit::Destination::Track => Destination::Track,
                wit::Destination::Worker => Destination::Worker,
                wit::Destination::Manifest => Destination::Manifest,
            },
            crossorigin: h.crossorigin.map(|m| match m {
                wit::CorsMode::Anonymous => CorsMode::Anonymous,
                wit::CorsMode::UseCredentials => CorsMode::UseCredentials,
            }),
            copy_headers: h.copy_headers,
            headers: h.headers.into_iter().map(|x| (x.name, x.value)).collect(),
            delivery: match h.delivery {
                wit::Delivery::Auto => Delivery::Auto,
                wit::Delivery::PushOnly => Delivery::PushOnly,
                wit::Delivery::HintOnly => Delivery::HintOnly,
            },
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn into_wit(self) -> crate::bindings::herald::policy::types::Hint {
        use crate::bindings::herald::policy::types as wit;
        wit::Hint {
            path: self.path,
            urgency: self.urgency,
            incremental: self.incremental,
            weight: self.weight,
            destination: match self.destination {
                Destination::Style => wit::Destination::Style,
                Destination::Script => wit::Destination::Script,
                Destination::Font => wit::Destination::Font,
                Destination::Image => wit::Destination::Image,
                Destination::Fetch => wit::Destination::Fetch,
                Destination::Document => wit::Destination::Document,
                Destination::Audio => wit::Destination::Audio,
                Destination::Video => wit::Destination::Video,
                Destination::Track => wit::Destination::Track,
                Destination::Worker => wit::Destination::Worker,
                Destination::Manifest => wit::Destination::Manifest,
            },
            crossorigin: self.crossorigin.map(|m| match m {
                CorsMode::Anonymous => wit::CorsMode::Anonymous,
                CorsMode::UseCredentials => wit::CorsMode::UseCredentials,
            }),
            copy_headers: self.copy_headers,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| wit::Header { name, value })
                .collect(),
            delivery: match self.delivery {
                Delivery::Auto => wit::Delivery::Auto,
                Delivery::PushOnly => wit::Delivery::PushOnly,
                Delivery::HintOnly => wit::Delivery::HintOnly,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Destination;

    #[test]
    fn destination_from_the_last_segment_extension_any_case() {
        for (path, want) in [
            ("/css/site.css", Destination::Style),
            ("/a/b.MJS?v=2#top", Destination::Script),
            ("/fonts/x.Woff2", Destination::Font),
            ("/img/a.b.jpeg", Destination::Image),
            ("/site.webmanifest", Destination::Manifest),
            ("/v1.2/data", Destination::Fetch),
            ("/data?file=a.css", Destination::Fetch),
            ("/archive.tar", Destination::Fetch),
            ("/dot.", Destination::Fetch),
            ("/x.webmanifests", Destination::Fetch),
            ("/x.SVGZ", Destination::Fetch),
            ("", Destination::Fetch),
        ] {
            assert_eq!(Destination::from_path(path), want, "{path}");
        }
    }
}
