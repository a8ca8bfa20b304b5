//! The admin listener, plain HTTP/1.1 through hyper on its own address
//! (loopback by convention), optionally behind a bearer token:
//!
//! | request | does |
//! |---|---|
//! | `GET /metrics` | Prometheus text, one series per policy version |
//! | `GET /healthz` | `ok` |
//! | `GET /policies` | live policies: version, previous, last refused update |
//! | `GET /ab` | the A/B report: variants side by side (`herald ab report`) |
//! | `PUT /policies/NAME` (body: a `.wasm` component) | compile, check, run the samples beside the policy's file, then swap |
//! | `POST /policies/NAME/rollback` | put the previous version back |
//!
//! Mutations need the bearer token when `admin.token` is set, and come from
//! loopback otherwise. Invariant: nothing here touches a connection; changes go
//! through the registry like every other update.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use http_body_util::BodyExt;

use crate::policy::registry::Candidate;
use crate::policy::samples::Samples;
use crate::server::Shared;

/// Serve the admin endpoints until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&shared, req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Largest component accepted by upload.
const MAX_UPLOAD: usize = 256 << 20;

fn reply(status: u16, content_type: &'static str, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn text(status: u16, body: impl Into<String>) -> http::Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; version=0.0.4; charset=utf-8",
        body.into(),
    )
}

fn json(status: u16, value: serde_json::Value) -> http::Response<Full<Bytes>> {
    reply(status, "application/json", format!("{value}\n"))
}

async fn respond(
    shared: &Shared,
    req: http::Request<hyper::body::Incoming>,
    peer: std::net::SocketAddr,
) -> http::Response<Full<Bytes>> {
    let token_ok = match &shared.config.admin.token {
        Some(token) => {
            let expected = format!("Bearer {token}");
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                == Some(expected.as_bytes())
        }
        None => true,
    };
    if !token_ok {
        return text(401, "missing or wrong bearer token\n");
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mutating = req.method() != http::Method::GET && req.method() != http::Method::HEAD;
    if mutating && shared.config.admin.token.is_none() && !peer.ip().is_loopback() {
        return text(403, "changes need admin.token, or a loopback client\n");
    }
    match (req.method().as_str(), segments.as_slice()) {
        ("GET", ["metrics"]) => text(200, shared.render_metrics()),
        ("GET", ["healthz"]) => text(200, "ok\n"),
        ("GET", ["policies"]) => json(200, policies_json(shared)),
        ("GET", ["ab"]) => text(200, ab_report(shared)),
        ("PUT", ["policies", name]) => {
            let name = name.to_string();
            let Some(registry) = &shared.registry else {
                return text(409, "no policy is configured\n");
            };
            let body = match http_body_util::Limited::new(req.into_body(), MAX_UPLOAD)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return text(413, format!("cannot read the upload: {e}\n")),
            };
            // The upload replaces the named policy and keeps its configuration
            // and samples (from the file it was loaded from, if any).
            let current = registry
                .snapshot()
                .slots
                .get(&name)
                .map(|s| s.current.clone());
            let (config, samples, source) = match &current {
                Some(v) => (
                    v.config.clone(),
                    v.source
                        .as_deref()
                        .map(Samples::read_beside)
                        .transpose()
                        .map(Option::flatten),
                    v.source.clone(),
                ),
                None => (toml::Table::new(), Ok(None), None),
            };
            let samples = match samples {
                Ok(s) => s.unwrap_or_default(),
                Err(e) => return text(422, format!("{e}\n")),
            };
            let candidate = Candidate {
                name: current
                    .as_ref()
                    .map_or_else(|| name.clone(), |v| v.policy.name().to_string()),
                slot: name.clone(),
                bytes: body.to_vec(),
                config,
                isolation: current
                    .as_ref()
                    .map_or_else(|| shared.config.policy.isolation, |v| v.policy.isolation()),
                samples,
                source,
                // Uploaded bytes are not the file's: the watcher must not
                // take the upload for a change of the file.
                source_signature: current.as_ref().and_then(|v| v.source_signature),
                variant: current
                    .as_ref()
                    .map_or_else(|| "default".to_string(), |v| v.variant.clone()),
            };
            match registry.update(candidate).await {
                Ok(v) => json(
                    200,
                    serde_json::json!({"policy": name, "version": v.policy.version(), "live": true}),
                ),
                Err(e) => json(
                    422,
                    serde_json::json!({"policy": name, "live": false, "error": e}),
                ),
            }
        }
        ("POST", ["policies", name, "rollback"]) => {
            let Some(registry) = &shared.registry else {
                return text(409, "no policy is configured\n");
            };
            match registry.rollback(name).await {
                Ok(v) => json(
                    200,
                    serde_json::json!({"policy": name, "version": v.policy.version(), "live": true}),
                ),
                Err(e) => json(409, serde_json::json!({"policy": name, "error": e})),
            }
        }
        _ => text(404, "not found: try /metrics, /healthz, /policies, /ab\n"),
    }
}

/// The A/B report of the experiment in force (or of the active policy).
pub fn ab_report(shared: &Shared) -> String {
    let Some(registry) = &shared.registry else {
        return "no policy is configured\n".into();
    };
    let live = registry.snapshot();
    let (name, variants): (String, Vec<String>) = match &live.experiment {
        Some(e) => (
            e.config.name.clone(),
            e.config.variants.iter().map(|v| v.name.clone()).collect(),
        ),
        None => ("(none)".into(), vec!["default".into()]),
    };
    let versions = registry.versions_for_metrics();
    let rows: Vec<crate::report::Row> = variants
        .iter()
        .map(|variant| {
            let mine: Vec<_> = versions.iter().filter(|v| &v.variant == variant).collect();
            crate::report::Row {
                variant: variant.clone(),
                versions: mine
                    .iter()
                    .map(|v| format!("{}@{}", v.policy.name(), v.policy.version()))
                    .collect::<Vec<_>>()
                    .join(" "),
                metrics: mine.iter().map(|v| v.metrics.clone()).collect(),
            }
        })
        .collect();
    crate::report::render(&name, &rows)
}

fn policies_json(shared: &Shared) -> serde_json::Value {
    let Some(registry) = &shared.registry else {
        return serde_json::json!({"active": null, "policies": {}});
    };
    let live = registry.snapshot();
    let describe = |v: &crate::policy::registry::Version| {
        serde_json::json!({
            "version": v.policy.version(),
            "source": v.source.as_ref().map(|p| p.display().to_string()),
            "loaded_at": httpdate::fmt_http_date(v.loaded_at),
        })
    };
    let policies: serde_json::Map<String, serde_json::Value> = live
        .slots
        .iter()
        .map(|(name, slot)| {
            (
                name.clone(),
                serde_json::json!({
                    "current": describe(&slot.current),
                    "previous": slot.previous.as_deref().map(describe),
                    "last_error": slot.last_error,
                }),
            )
        })
        .collect();
    serde_json::json!({"active": live.active, "generation": live.generation, "policies": policies})
}
