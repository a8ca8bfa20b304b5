//! A/B experiments: which variant (policy) a request is served with.
//!
//! Assignment is a pure function of the experiment's salt and the request's
//! sticky key: `bucket = mix(fnv1a(salt ‖ 0 ‖ key)) mod 10000`, and variants
//! own consecutive bucket ranges in the order they are declared, sized by
//! their weight in basis points. Every instance of a fleet running the same
//! config assigns a user the same variant with no shared state, and growing
//! one variant while shrinking the next moves only users of the shrinking one.
//! (Add new variants at the end of the list to keep everyone else in place.)
//!
//! Invariant: no IO, no clock; the only randomness is the fresh key handed to
//! users who have none, which does not influence anyone else's assignment.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// `[experiment]` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// For logs and the report.
    pub name: String,
    /// Changing the salt reshuffles every user: a new experiment.
    pub salt: String,
    /// Where the sticky key comes from: `cookie` (the host sets it when
    /// absent), `header:NAME`, or `client-addr`.
    #[serde(default = "default_sticky")]
    pub sticky: String,
    /// The cookie's name when `sticky = "cookie"`.
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// A request header that forces a variant by name, for testing. Honoured
    /// from loopback clients, or from anyone who also sends
    /// `x-herald-override-secret: <override_secret>`.
    #[serde(default)]
    pub override_header: Option<String>,
    #[serde(default)]
    pub override_secret: Option<String>,
    #[serde(rename = "variant")]
    pub variants: Vec<VariantConfig>,
}

fn default_sticky() -> String {
    "cookie".into()
}

fn default_cookie() -> String {
    "herald-ab".into()
}

/// `[[experiment.variant]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// The name the policy sees and metrics carry.
    pub name: String,
    /// The policy component.
    pub policy: std::path::PathBuf,
    /// Share of users, in basis points (all variants add up to 10000).
    pub weight_bp: u32,
    /// The policy's configuration for this variant (default: `[policy.config]`).
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// `fresh` or `reuse` (default: `policy.isolation`).
    #[serde(default)]
    pub isolation: Option<crate::config::Isolation>,
}

/// Where a request's sticky key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    Cookie(String),
    Header(http::HeaderName),
    ClientAddr,
}

impl ExperimentConfig {
    /// Checks beyond types; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.variants.is_empty() {
            return Err("experiment.variant: at least one variant is needed".into());
        }
        let total: u32 = self.variants.iter().map(|v| v.weight_bp).sum();
        if total != 10_000 {
            return Err(format!(
                "experiment.variant: weight_bp adds up to {total}, not 10000"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for v in &self.variants {
            if v.name.is_empty()
                || !v
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "experiment.variant: name `{}` must be letters, digits, - or _",
                    v.name
                ));
            }
            if !names.insert(&v.name) {
                return Err(format!(
                    "experiment.variant: name `{}` is used twice",
                    v.name
                ));
            }
            if !v.policy.is_file() {
                return Err(format!(
                    "experiment.variant `{}`: policy {} is not a readable file",
                    v.name,
                    v.policy.display()
                ));
            }
        }
        self.sticky()?;
        Ok(())
    }

    pub fn sticky(&self) -> Result<Sticky, String> {
        match self.sticky.as_str() {
            "cookie" => Ok(Sticky::Cookie(self.cookie.clone())),
            "client-addr" => Ok(Sticky::ClientAddr),
            other => match other.strip_prefix("header:") {
                Some(name) => {
                    http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                        .map(Sticky::Header)
                        .map_err(|_| format!("experiment.sticky: `{name}` is not a header name"))
                }
                None => Err(format!(
                    "experiment.sticky: `{other}` is not cookie, header:NAME or client-addr"
                )),
            },
        }
    }
}

/// The bucket (0..10000) of a key under a salt.
pub fn bucket(salt: &str, key: &str) -> u32 {
    let mut h = crate::hash::fnv1a(salt.bytes().chain(std::iter::once(0)).chain(key.bytes()));
    // murmur3's finaliser: FNV alone clusters similar keys.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % 10_000) as u32
}

/// The variant index owning `bucket` for these weights.
pub fn variant_for(weights_bp: &[u32], bucket: u32) -> usize {
    let mut end = 0;
    for (i, w) in weights_bp.iter().enumerate() {
        end += w;
        if bucket < end {
            return i;
        }
    }
    weights_bp.len().saturating_sub(1)
}

/// A fresh sticky key for a user who has none (not secret; just distinct).
pub fn fresh_key(seed: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = bucket_hash(&format!("{nanos}:{n}:{seed}:{}", std::process::id()));
    let b = bucket_hash(&format!("{a}:{n}"));
    format!("{a:016x}{b:016x}")
}

fn bucket_hash(s: &str) -> u64 {
    let h = crate::hash::fnv1a(s.bytes());
    h ^ (h >> 29)
}

/// The outcome of assignment for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub variant: usize,
    /// A `Set-Cookie` value to send (the user had no key yet).
    pub set_cookie: Option<String>,
    /// The variant was forced by the override header.
    pub forced: bool,
}

/// Everything assignment needs from a request.
pub struct Ask<'a> {
    pub headers: &'a http::HeaderMap,
    pub client: Option<IpAddr>,
    pub https: bool,
}

/// Assign a request to a variant.
pub fn assign(cfg: &ExperimentConfig, sticky: &Sticky, ask: &Ask<'_>) -> Assignment {
    if let Some(forced) = forced_variant(cfg, ask) {
        return Assignment {
            variant: forced,
            set_cookie: None,
            forced: true,
        };
    }
    let weights: Vec<u32> = cfg.variants.iter().map(|v| v.weight_bp).collect();
    let (key, set_cookie) = match sticky {
        Sticky::Cookie(name) => match crate::policy::input::find_cookie(ask.headers, name) {
            Some(v) if !v.is_empty() => (v, None),
            _ => {
                let key = fresh_key(
                    ask.client
                        .map(|ip| bucket_hash(&ip.to_string()))
                        .unwrap_or(0),
                );
                let secure = if ask.https { "; Secure" } else { "" };
                let cookie = format!(
                    "{name}={key}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly{secure}"
                );
                (key, Some(cookie))
            }
        },
        Sticky::Header(name) => (
            ask.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            None,
        ),
        Sticky::ClientAddr => (
            ask.client.map(|ip| ip.to_string()).unwrap_or_default(),
            None,
        ),
    };
    Assignment {
        variant: variant_for(&weights, bucket(&cfg.salt, &key)),
        set_cookie,
        forced: false,
    }
}

fn forced_variant(cfg: &ExperimentConfig, ask: &Ask<'_>) -> Option<usize> {
    let header = cfg.override_header.as_deref()?;
    let wanted = ask.headers.get(header)?.to_str().ok()?;
    let trusted = ask.client.is_some_and(|ip| ip.is_loopback())
        || cfg.override_secret.as_deref().is_some_and(|secret| {
            ask.headers
                .get("x-herald-override-secret")
                .map(|v| v.as_bytes())
                == Some(secret.as_bytes())
        });
    if !trusted {
        return None;
    }
    cfg.variants.iter().position(|v| v.name == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("s", "user-1"), bucket("s", "user-1"));
        assert_ne!(
            bucket("s", "user-1"),
            bucket("t", "user-1"),
            "the salt reshuffles"
        );
        let mut counts = [0usize; 4];
        for i in 0..20_000 {
            counts[variant_for(
                &[2500, 2500, 2500, 2500],
                bucket("salt", &format!("user-{i}")),
            )] += 1;
        }
        for c in counts {
            assert!((4600..=5400).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn ramping_moves_only_users_of_the_shrinking_variant() {
        let before = [5000, 5000];
        let after = [3000, 7000];
        for i in 0..10_000 {
            let b = bucket("ramp", &format!("u{i}"));
            let (x, y) = (variant_for(&before, b), variant_for(&after, b));
            assert!(x == y || (x == 0 && y == 1), "user {i} moved {x} -> {y}");
        }
    }

    #[test]
    fn a_known_bucket_never_changes() {
        // Fleet consistency across releases: this value is part of the contract.
        let pinned = bucket("herald", "pinned-user");
        assert_eq!(
            pinned, 6_457,
            "changing the hash reassigns every user of every fleet"
        );
    }

    #[test]
    fn fresh_keys_differ() {
        assert_ne!(fresh_key(1), fresh_key(1));
        assert_eq!(fresh_key(7).len(), 32);
    }
}
