//! TLS: rustls with ALPN `h2`, from PEM files or a generated self-signed
//! certificate, with a certificate per server name (SNI) where configured.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::TlsConfig;

/// The ALPN protocols we accept, in preference order.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The certificates Herald presents: the default one (`tls.cert`, or a
/// generated self-signed one) for clients that send no server name or one no
/// `[[tls.sni]]` entry lists, and each `[[tls.sni]]` certificate for its names
/// (exact, or `*.example.com` for one label under it).
#[derive(Debug)]
pub struct Certs {
    default: Arc<CertifiedKey>,
    /// Lowercase name → index into `sni`.
    exact: HashMap<String, usize>,
    /// `.example.com` (from `*.example.com`) → index into `sni`.
    wildcard: Vec<(String, usize)>,
    sni: Vec<Arc<CertifiedKey>>,
}

impl Certs {
    /// Which `[[tls.sni]]` certificate serves `name`; `None`: the default.
    fn index(&self, name: Option<&str>) -> Option<usize> {
        let name = name?.trim_end_matches('.').to_ascii_lowercase();
        if let Some(i) = self.exact.get(&name) {
            return Some(*i);
        }
        self.wildcard.iter().find_map(|(suffix, i)| {
            let label = name.strip_suffix(suffix.as_str())?;
            (!label.is_empty() && !label.contains('.')).then_some(*i)
        })
    }

    /// Whether a connection whose TLS handshake named `sni` may serve a
    /// request for `host`: only if both select the same certificate.
    /// Otherwise the client reused a connection for an origin whose
    /// certificate it never saw, and gets `421 Misdirected Request`.
    pub fn covers(&self, sni: Option<&str>, host: &str) -> bool {
        self.sni.is_empty() || self.index(sni) == self.index(Some(host))
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.index(hello.server_name()) {
            Some(i) => self.sni[i].clone(),
            None => self.default.clone(),
        })
    }
}

/// Build the rustls server configuration, and the certificate set it
/// resolves from (for the `421` check).
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<(Arc<ServerConfig>, Arc<Certs>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => load_pem(cert, key, "tls")?,
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
    let default = Arc::new(
        CertifiedKey::from_der(certs, key, &provider)
            .context("tls.cert and tls.key do not form a usable certificate")?,
    );
    let mut set = Certs {
        default,
        exact: HashMap::new(),
        wildcard: Vec::new(),
        sni: Vec::new(),
    };
    for (i, entry) in tls.sni.iter().enumerate() {
        let what = format!("tls.sni[{i}]");
        let (certs, key) = load_pem(&entry.cert, &entry.key, &what)?;
        let key = CertifiedKey::from_der(certs, key, &provider)
            .with_context(|| format!("{what}: cert and key do not form a usable certificate"))?;
        set.sni.push(Arc::new(key));
        for name in &entry.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix('*') {
                Some(suffix) => set.wildcard.push((suffix.to_string(), i)),
                None => {
                    set.exact.insert(name, i);
                }
            }
        }
    }
    let set = Arc::new(set);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(set.clone());
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(config), set))
}

/// Read a PEM chain and key; errors name `what` (`tls`, `tls.sni[0]`).
fn load_pem(
    cert: &Path,
    key: &Path,
    what: &str,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{what}.cert: cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "{what}.cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("{what}.cert: {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{what}.key: {} holds no usable private key", key.display()))?;
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
