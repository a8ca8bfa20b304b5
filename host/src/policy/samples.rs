//! Sample requests declared beside a policy, with the hints they must get.
//!
//! `page_map.wasm` is checked against `page_map.samples.toml` before it goes
//! live (hot swap, admin upload, SIGHUP) and by `herald policy test`:
//!
//! ```toml
//! [[sample]]
//! request = "GET /"
//! headers = { "sec-fetch-dest" = "document", cookie = "seen=1" }
//! expect = ["/css/site.css", "/js/app.js"]   # hinted paths, in order
//!
//! [[sample]]
//! request = "GET /js/app.js"
//! expect = []
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Policy, PolicyFailure, Request, input};

/// A samples file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    #[serde(default, rename = "sample")]
    pub samples: Vec<Sample>,
}

/// One sample request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// `METHOD /path?query`.
    pub request: String,
    #[serde(default)]
    pub headers: toml::Table,
    /// Whether the client accepts push (default true).
    #[serde(default = "yes")]
    pub push: bool,
    /// The variant name the policy sees (default `default`).
    #[serde(default)]
    pub variant: Option<String>,
    /// The hinted paths, in order (required in a samples file; `herald
    /// policy run` requests have none).
    #[serde(default)]
    pub expect: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// The samples file of a policy file: `x.wasm` → `x.samples.toml`.
pub fn path_for(policy: &Path) -> PathBuf {
    policy.with_extension("samples.toml")
}

impl Samples {
    /// Read the samples beside `policy`, if there are any.
    pub fn beside(policy: &Path) -> Result<Samples, String> {
        Self::read_beside(policy).map(Option::unwrap_or_default)
    }

    /// Like `beside`, but `None` when there is no samples file.
    pub fn read_beside(policy: &Path) -> Result<Option<Samples>, String> {
        let path = path_for(policy);
        match std::fs::read_to_string(&path) {
            Ok(text) => Samples::parse(&path.display().to_string(), &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn parse(name: &str, text: &str) -> Result<Samples, String> {
        toml::from_str(text).map_err(|e| format!("{name}: {}", e.message().trim()))
    }
}

impl Sample {
    /// The policy request for this sample.
    pub fn to_request(&self) -> Result<Request, String> {
        let parts = self.to_parts()?;
        Ok(input::build(&parts, &self.view(), &input::Shown::default()))
    }

    /// How the sample's request is seen besides its HTTP parts.
    pub fn view(&self) -> input::View<'_> {
        input::View {
            scheme: "https",
            authority: "localhost",
            push_enabled: self.push,
            variant: self.variant.as_deref().unwrap_or("default"),
        }
    }

    /// The sample as the HTTP request a server would get.
    pub fn to_parts(&self) -> Result<http::request::Parts, String> {
        let (method, target) = self
            .request
            .split_once(' ')
            .ok_or_else(|| format!("`{}` is not `METHOD /path`", self.request))?;
        let mut builder = http::Request::builder()
            .method(method.trim())
            .uri(format!("https://localhost{}", target.trim()));
        for (name, value) in &self.headers {
            let value = value
                .as_str()
                .ok_or_else(|| format!("header {name}: not a string"))?;
            builder = builder.header(name.as_str(), value);
        }
        let (parts, ()) = builder
            .body(())
            .map_err(|e| format!("`{}`: {e}", self.request))?
            .into_parts();
        Ok(parts)
    }
}

/// Run every sample; `Err` names the first that failed and how.
pub async fn check(policy: &Policy, samples: &Samples) -> Result<usize, String> {
    for (i, sample) in samples.samples.iter().enumerate() {
        let expect = sample
            .expect
            .as_ref()
            .ok_or_else(|| format!("sample {} ({}): no `expect` list", i + 1, sample.request))?;
        let request = sample.to_request()?;
        let (mut result, _) = policy.decide(&request).await;
        if matches!(result, Err(PolicyFailure::Timeout)) {
            // Once more: a newly loaded policy's first calls fault its code
            // and memory in (tens of ms for an interpreter's image on a
            // loaded machine), which says nothing of its speed once live.
            result = policy.decide(&request).await.0;
        }
        let hints =
            result.map_err(|f| format!("sample {} ({}): the policy {f}", i + 1, sample.request))?;
        let got: Vec<&str> = hints.iter().map(|h| h.path.as_str()).collect();
        if got != *expect {
            return Err(format!(
                "sample {} ({}): expected {:?}, got {:?}",
                i + 1,
                sample.request,
                expect,
                got
            ));
        }
    }
    Ok(samples.samples.len())
}
