//! TLS: rustls with ALPN `h2`, from PEM files or a generated self-signed certificate.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::TlsConfig;

/// The ALPN protocols we accept, in preference order.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Build the rustls server configuration.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<ServerConfig>> {
    let (certs, key) = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => load_pem(cert, key)?,
        _ => {
            let (certs, key, pem) = self_signed()?;
            if let Some(out) = &tls.self_signed_out {
                std::fs::write(out, pem).with_context(|| {
                    format!("tls.self_signed_out: cannot write {}", out.display())
                })?;
            }
            tracing::info!(
                "no tls.cert/tls.key configured: using a self-signed certificate for localhost and 127.0.0.1"
            );
            (certs, key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert and tls.key do not form a usable certificate")?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn load_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls.cert: cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "tls.cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert: {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls.key: {} holds no usable private key", key.display()))?;
    Ok((certs, key))
}

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`; also
/// returns it as PEM.
pub fn self_signed()
-> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String)> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("cannot generate a self-signed certificate")?;
    let pem = generated.cert.pem();
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    Ok((vec![cert], key, pem))
}
