//! HTTP/1.1 clients get the same policy: 103 Early Hints and Link headers.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Send a raw request over TLS with the given ALPN offer; return everything read.
async fn tls_exchange(herald: &Herald, alpn: &[&[u8]], request: &str) -> (Option<Vec<u8>>, String) {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in
        rustls_pki_types::CertificateDer::pem_slice_iter(&std::fs::read(herald.cert_pem()).unwrap())
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(herald.https).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let negotiated = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    (negotiated, String::from_utf8_lossy(&out).into_owned())
}

async fn plain_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

fn assert_early_hints_then_page(out: &str) {
    assert!(out.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{out}");
    let (early, rest) = out.split_once("\r\n\r\n").unwrap();
    assert_eq!(early.matches("link: <").count(), 5, "{early}");
    assert!(early.contains("link: </css/site.css>; rel=preload; as=style"));
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    let (head, body) = rest.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        head.matches("link: <").count(),
        5,
        "final response repeats the links:\n{head}"
    );
    assert_eq!(body.as_bytes(), &demo_file("/index.html")[..]);
}

fn demo() -> Herald {
    Herald::start(&config_for(
        &demo_site(),
        Some(&policy("page_map")),
        DEMO_ASSETS,
    ))
}

#[tokio::test]
async fn alpn_http11_gets_103_and_links() {
    let herald = demo();
    let (alpn, out) = tls_exchange(&herald, &[b"http/1.1"], GET).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_early_hints_then_page(&out);
}

#[tokio::test]
async fn no_alpn_is_http11() {
    let herald = demo();
    let (alpn, out) = tls_exchange(&herald, &[], GET).await;
    assert_eq!(alpn, None);
    assert_early_hints_then_page(&out);
}

#[tokio::test]
async fn cleartext_http11_on_the_h2c_port() {
    let herald = demo();
    assert_early_hints_then_page(&plain_exchange(herald.h2c, GET).await);
}

#[tokio::test]
async fn http10_gets_links_but_never_a_1xx() {
    let herald = demo();
    let out = plain_exchange(herald.h2c, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").await;
    assert!(
        out.starts_with("HTTP/1.0 200 OK\r\n") || out.starts_with("HTTP/1.1 200 OK\r\n"),
        "{out}"
    );
    assert!(!out.contains(" 103 "), "{out}");
    assert_eq!(out.matches("link: <").count(), 5, "{out}");
}

#[tokio::test]
async fn keep_alive_serves_several_requests_with_their_own_hints() {
    let herald = demo();
    let out = plain_exchange(
        herald.h2c,
        "GET /css/site.css HTTP/1.1\r\nHost: l\r\n\r\nGET / HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
    )
    .await;
    // The stylesheet has no hints: no 103 before it; the page has one.
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 103 Early Hints").count(), 1, "{out}");
    let second = out.find("HTTP/1.1 103").unwrap();
    assert!(
        out[..second].contains("body{") || out[..second].contains("@font-face"),
        "CSS first"
    );
}
