//! The policy's own configuration (`[policy.config]` in Herald's config file).

use std::collections::BTreeMap;

/// Read access to the policy's configuration.
///
/// Inside Herald this reads the `[policy.config]` table through the host; in a
/// native test, build one with [`Config::empty`] and [`Config::with`]:
///
/// ```
/// use herald_sdk::Config;
///
/// let config = Config::empty()
///     .with("/", ["/css/site.css", "/js/app.js"])
///     .with("mode", ["strict"]);
/// assert_eq!(config.get("/").len(), 2);
/// assert_eq!(config.first("mode").as_deref(), Some("strict"));
/// assert!(config.get("/missing").is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    #[cfg(target_arch = "wasm32")]
    Host,
    Local(BTreeMap<String, Vec<String>>, Option<String>),
}

impl Config {
    /// A configuration with no keys.
    pub fn empty() -> Config {
        Config {
            source: Source::Local(BTreeMap::new(), None),
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn host() -> Config {
        Config {
            source: Source::Host,
        }
    }

    /// Add (or replace) a key, for tests.
    pub fn with<I, S>(mut self, key: &str, values: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        #[allow(irrefutable_let_patterns)] // `Source::Host` exists on wasm32 only
        if let Source::Local(map, _) = &mut self.source {
            map.insert(
                key.to_string(),
                values.into_iter().map(Into::into).collect(),
            );
        }
        self
    }

    /// Set what [`Config::json`] returns, for tests of policies that read JSON.
    pub fn with_json(mut self, json: &str) -> Config {
        #[allow(irrefutable_let_patterns)] // `Source::Host` exists on wasm32 only
        if let Source::Local(_, j) = &mut self.source {
            *j = Some(json.to_string());
        }
        self
    }

    /// The values of `key`; empty when absent.
    pub fn get(&self, key: &str) -> Vec<String> {
        match &self.source {
            #[cfg(target_arch = "wasm32")]
            Source::Host => crate::bindings::herald::policy::config::get(key),
            Source::Local(map, _) => map.get(key).cloned().unwrap_or_default(),
        }
    }

    /// The first value of `key`, if any.
    pub fn first(&self, key: &str) -> Option<String> {
        self.get(key).into_iter().next()
    }

    /// The hints configured for `key`, each value parsed as an asset spec
    /// (see [`parse_asset_spec`](crate::parse_asset_spec)). This is the whole
    /// of a "page → assets" policy:
    ///
    /// ```
    /// use herald_sdk::Config;
    ///
    /// let config = Config::empty().with("/", ["/css/site.css u=0", "/img/hero.jpg u=5 i"]);
    /// let hints = config.hints_for("/").unwrap();
    /// assert_eq!(hints[1].get_urgency(), 5);
    /// assert!(config.hints_for("/other").unwrap().is_empty());
    /// ```
    pub fn hints_for(&self, key: &str) -> Result<Vec<crate::Hint>, String> {
        self.get(key)
            .iter()
            .map(|spec| crate::parse_asset_spec(spec).map_err(|e| e.to_string()))
            .collect()
    }

    /// Every top-level key, sorted.
    pub fn keys(&self) -> Vec<String> {
        match &self.source {
            #[cfg(target_arch = "wasm32")]
            Source::Host => crate::bindings::herald::policy::config::keys(),
            Source::Local(map, _) => map.keys().cloned().collect(),
        }
    }

    /// The whole table as JSON.
    pub fn json(&self) -> String {
        match &self.source {
            #[cfg(target_arch = "wasm32")]
            Source::Host => crate::bindings::herald::policy::config::json(),
            Source::Local(map, json) => json.clone().unwrap_or_else(|| local_json(map)),
        }
    }
}

fn local_json(map: &BTreeMap<String, Vec<String>>) -> String {
    fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let values: Vec<String> = v.iter().map(|s| quote(s)).collect();
            format!("{}:[{}]", quote(k), values.join(","))
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}
