//! The admin listener: `/metrics` in the Prometheus text format, and
//! `/healthz`. Plain HTTP/1.1 through hyper, on its own address (loopback by
//! convention), optionally behind a bearer token.
//!
//! Invariant: read-only. Nothing here changes how requests are served.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
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
                async move { Ok::<_, Infallible>(respond(&shared, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn respond(
    shared: &Shared,
    req: &http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        http::Response::builder()
            .status(status)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if let Some(token) = &shared.config.admin.token {
        let expected = format!("Bearer {token}");
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if given != Some(expected.as_bytes()) {
            return reply(401, "missing or wrong bearer token\n".into());
        }
    }
    match req.uri().path() {
        "/metrics" => reply(200, shared.render_metrics()),
        "/healthz" => reply(200, "ok\n".into()),
        _ => reply(404, "not found: try /metrics or /healthz\n".into()),
    }
}
