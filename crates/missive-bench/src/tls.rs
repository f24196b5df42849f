//! One self-signed certificate for `localhost`, as configurations for both rustls generations:
//! the current one (missive, tokio-rustls) and 0.19 (connect 0.2.4 through async-tls).

use std::sync::Arc;

use anyhow::Context as _;
use connect::tls::rustls as rustls019;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name the certificate is issued for and clients verify.
pub(crate) const SERVER_NAME: &str = "localhost";

/// A fresh certificate and the four configurations that use it.
#[derive(Clone)]
pub(crate) struct Certs {
    /// Server configuration for the current rustls.
    pub(crate) server: Arc<rustls::ServerConfig>,
    /// Client configuration for the current rustls, trusting only the certificate.
    pub(crate) client: Arc<rustls::ClientConfig>,
    /// Server configuration for rustls 0.19.
    pub(crate) server019: Arc<rustls019::ServerConfig>,
    /// Client configuration for rustls 0.19, trusting only the certificate.
    pub(crate) client019: Arc<rustls019::ClientConfig>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").finish_non_exhaustive()
    }
}

impl Certs {
    /// Generates a certificate for [`SERVER_NAME`] and builds the configurations.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .context("generating a certificate")?;
        let cert_der = certified.cert.der().to_vec();
        let key_der = certified.signing_key.serialize_der();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone())),
            )?;
        // One-way senders never read, so tickets would sit unread in their sockets.
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(cert_der.clone()))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        // rustls 0.19 prefers ChaCha20; put AES-256-GCM first as the current rustls does, so that
        // both generations use the same cipher and the comparison is about the libraries.
        let suites = preferred_suites019();
        let mut server019 = rustls019::ServerConfig::new(rustls019::NoClientAuth::new());
        server019
            .set_single_cert(
                vec![rustls019::Certificate(cert_der.clone())],
                rustls019::PrivateKey(key_der),
            )
            .map_err(|e| anyhow::anyhow!("rustls 0.19 refused the certificate: {e}"))?;
        server019.ciphersuites = suites.clone();
        server019.session_storage = Arc::new(rustls019::NoServerSessionStorage {});
        let mut client019 = rustls019::ClientConfig::new();
        client019
            .root_store
            .add(&rustls019::Certificate(cert_der))
            .map_err(|e| anyhow::anyhow!("rustls 0.19 refused the root: {e:?}"))?;
        client019.ciphersuites = suites;

        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            server019: Arc::new(server019),
            client019: Arc::new(client019),
        })
    }
}

fn preferred_suites019() -> Vec<&'static rustls019::SupportedCipherSuite> {
    let first = &rustls019::ciphersuite::TLS13_AES_256_GCM_SHA384;
    let mut suites = vec![first];
    suites.extend(
        rustls019::ALL_CIPHERSUITES
            .iter()
            .copied()
            .filter(|s| s.suite != first.suite),
    );
    suites
}
