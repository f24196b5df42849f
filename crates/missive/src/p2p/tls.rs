//! libp2p-tls (`/tls/1.0.0`): TLS 1.3 with rustls, where each side proves its PeerId with a
//! self-signed certificate carrying the libp2p Public Key Extension.
//!
//! Over TCP the protocol is chosen with multistream-select next to `/noise` (see
//! [`NodeConfig::with_security`](super::NodeConfig::with_security)); a QUIC transport runs the
//! same configurations inside its own handshake.
//!
//! Crate-internal API, shared by every transport that secures with libp2p-tls:
//!
//! - `TlsConfig::new(&Keypair)` generates a fresh ECDSA P-256 certificate key and the
//!   certificate for the identity, once per node;
//! - `TlsConfig::server_config()` is the `Arc<rustls::ServerConfig>` of the listening side: TLS
//!   1.3 only, ALPN `libp2p`, client certificates mandatory and checked as below, any SNI
//!   ignored, no session tickets;
//! - `TlsConfig::client_config(expected: Option<PeerId>)` is the `Arc<rustls::ClientConfig>`
//!   of one dial: the same rules, no SNI, no resumption, and with `expected`, a server with any
//!   other PeerId is refused during the handshake;
//! - `TlsConfig::handshake(io, dialer, expected)` runs either side over a byte stream and
//!   returns the stream with the peer's PeerId;
//! - [`peer_id_from_certificate`]`(&CertificateDer)` (public) verifies a certificate on its own and returns
//!   the PeerId it proves, with [`TlsError`] saying why not.
//!
//! A peer's certificate is accepted when it is the only one presented, it is within its
//! validity period, its self-signature verifies (ECDSA P-256/SHA-256, P-384/SHA-384, Ed25519,
//! RSA PKCS#1 or PSS with SHA-256/384/512), it carries the libp2p extension exactly once and no
//! other critical extension, and the host key in that extension (verified by
//! [`PublicKey::verify`](super::PublicKey::verify)) signed `libp2p-tls-handshake:` ‖ the
//! certificate's SubjectPublicKeyInfo. The TLS handshake signature must use the scheme TLS 1.3
//! defines for the certificate key.

pub(crate) mod certificate;
pub(crate) mod der;

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsStream;

pub use certificate::CertificateError;
pub use der::DerError;

use super::{Keypair, PeerId};

/// The security protocol's multistream-select name.
pub(crate) const PROTOCOL: &str = "/tls/1.0.0";
/// The ALPN value of libp2p-tls.
pub(crate) const ALPN: &[u8] = b"libp2p";

/// Why a libp2p-tls handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The connection failed or closed during the handshake.
    #[error("i/o during the TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// TLS itself failed: a protocol violation, an alert from the peer (which is how a peer
    /// that refused our certificate says so), no common version, cipher suite or ALPN.
    #[error("TLS handshake failed: {0}")]
    Protocol(#[source] rustls::Error),
    /// The peer's certificate was refused.
    #[error("peer's certificate was refused: {0}")]
    Certificate(#[source] CertificateError),
    /// The peer presented a chain instead of exactly one certificate (or none).
    #[error("peer presented {0} certificates; libp2p-tls takes exactly one")]
    CertificateCount(usize),
    /// The peer is not the one that was dialed.
    #[error("peer id mismatch: expected {expected}, the remote is {actual}")]
    PeerIdMismatch {
        /// The PeerId that was dialed.
        expected: PeerId,
        /// The PeerId the remote proved.
        actual: PeerId,
    },
    /// The local certificate or configuration could not be made (not the peer's fault).
    #[error("local TLS setup failed: {0}")]
    Local(String),
}

/// What our verifiers refuse, carried through rustls inside its `CertificateError::Other`.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Certificate(CertificateError),
    #[error("peer presented {0} certificates; libp2p-tls takes exactly one")]
    Count(usize),
    #[error("peer id mismatch: expected {expected}, the remote is {actual}")]
    WrongPeer { expected: PeerId, actual: PeerId },
}

impl From<Refusal> for rustls::Error {
    /// Every refusal travels as `Other`, so that [`handshake_error`] finds its exact reason
    /// (rustls answers the peer with a `bad_certificate` alert).
    fn from(r: Refusal) -> Self {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(r),
        )))
    }
}

/// A node's libp2p-tls certificate and the rustls configurations built on it.
#[derive(Clone)]
pub(crate) struct TlsConfig {
    server: Arc<ServerConfig>,
    certified: Arc<CertifiedKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Generates the certificate key and certificate for `identity` and the server
    /// configuration that presents them.
    pub(crate) fn new(identity: &Keypair) -> Result<Self, TlsError> {
        let (cert, key) =
            certificate::generate(identity).map_err(|e| TlsError::Local(e.to_string()))?;
        Self::with_certificate(cert, key)
    }

    /// The configurations around a given certificate and its key.
    fn with_certificate(
        cert: CertificateDer<'static>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let local = |e: &dyn std::fmt::Display| TlsError::Local(e.to_string());
        let provider = Arc::new(provider());
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| local(&e))?;
        let certified = Arc::new(CertifiedKey::new(vec![cert], signer));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| local(&e))?
            .with_client_cert_verifier(Arc::new(Verifier {
                expected: None,
                refusal: None,
                client_auth_mandatory: true,
            }))
            .with_cert_resolver(Arc::new(Resolver(certified.clone())));
        server.alpn_protocols = vec![ALPN.to_vec()];
        // Tickets would only serve resumption, which skips the certificate check.
        server.send_tls13_tickets = 0;
        Ok(Self {
            server: Arc::new(server),
            certified,
            provider,
        })
    }

    /// The configuration of the listening side.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The server configuration of a QUIC endpoint that also serves WebTransport: ALPN
    /// `libp2p` then `h3`, the certificate chosen by ALPN, client certificates optional (a
    /// browser has none; a `libp2p` connection without one fails the PeerId check after the
    /// handshake). Presented certificates are still checked as libp2p-tls ones.
    #[cfg(feature = "webtransport")]
    pub(crate) fn server_config_with_webtransport(
        &self,
        certificates: Arc<super::webtransport_certs::Certificates>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let mut server = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Local(e.to_string()))?
            .with_client_cert_verifier(Arc::new(Verifier {
                expected: None,
                refusal: None,
                client_auth_mandatory: false,
            }))
            .with_cert_resolver(Arc::new(super::webtransport_certs::AlpnResolver {
                libp2p: self.certified.clone(),
                webtransport: certificates,
            }));
        server.alpn_protocols = vec![ALPN.to_vec(), super::webtransport_certs::ALPN_H3.to_vec()];
        server.send_tls13_tickets = 0;
        Ok(Arc::new(server))
    }

    /// The configuration of one dial; with `expected`, only that peer is accepted.
    pub(crate) fn client_config(&self, expected: Option<PeerId>) -> Arc<ClientConfig> {
        self.client_config_with(Verifier {
            expected,
            refusal: None,
            client_auth_mandatory: true,
        })
    }

    /// The configuration of one dial whose verifier also records why it refused the peer's
    /// certificate, for a transport that passes on only the text of the error (QUIC).
    pub(crate) fn client_config_recording(
        &self,
        expected: Option<PeerId>,
    ) -> (Arc<ClientConfig>, RefusalSlot) {
        let slot = RefusalSlot::default();
        let config = self.client_config_with(Verifier {
            expected,
            refusal: Some(slot.clone()),
            client_auth_mandatory: true,
        });
        (config, slot)
    }

    fn client_config_with(&self, verifier: Verifier) -> Arc<ClientConfig> {
        let mut client = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the ring provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Resolver(self.certified.clone())));
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_sni = false;
        Arc::new(client)
    }

    /// Runs the handshake on `io` as the client (`dialer`) or the server and returns the
    /// encrypted stream and the peer's proven PeerId. A client finishes before the server has
    /// checked its certificate: a refusal then shows as the connection closing.
    pub(crate) async fn handshake<T>(
        &self,
        io: T,
        dialer: bool,
        expected: Option<PeerId>,
    ) -> Result<(TlsStream<T>, PeerId), TlsError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let stream: TlsStream<T> = if dialer {
            // An IP address is never sent as SNI, which libp2p-tls clients must not send.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            tokio_rustls::TlsConnector::from(self.client_config(expected))
                .connect(name, io)
                .await
                .map_err(handshake_error)?
                .into()
        } else {
            tokio_rustls::TlsAcceptor::from(self.server_config())
                .accept(io)
                .await
                .map_err(handshake_error)?
                .into()
        };
        let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
        let [cert] = certs else {
            return Err(TlsError::CertificateCount(certs.len()));
        };
        // The verifier checked it during the handshake; only the key is read again here.
        let peer = certificate::parse(cert)
            .and_then(|c| c.host_key())
            .map_err(TlsError::Certificate)?
            .to_peer_id();
        Ok((stream, peer))
    }
}

/// Verifies `cert` as a peer's libp2p-tls certificate (at the current time) and returns the
/// PeerId it proves: for a transport that runs the TLS handshake itself, such as QUIC.
pub fn peer_id_from_certificate(cert: &CertificateDer<'_>) -> Result<PeerId, TlsError> {
    certificate::verify(cert, unix_now(UnixTime::now())).map_err(TlsError::Certificate)
}

/// The cryptography of libp2p-tls handshakes: ring, or aws-lc-rs with the `aws-lc` feature
/// (its P-256 signing and verification cost about half of ring's, and a dial does two of
/// each). Key exchange is X25519 or P-256 in both, as in rust-libp2p: a post-quantum hybrid
/// first would cost peers that lack it a HelloRetryRequest round trip.
///
/// AES-128-GCM with SHA-256 is proposed first (both providers default to AES-256 with
/// SHA-384): a QUIC handshake derives some twenty keys with HKDF, and SHA-384's HMAC costs
/// about twice SHA-256's, which was an eighth of a QUIC dial's instructions; AES-128 also
/// seals and opens each packet in 10 rounds instead of 14. Every TLS 1.3 peer must support
/// it (RFC 8446, 9.1), and the other two suites stay on offer.
fn provider() -> rustls::crypto::CryptoProvider {
    #[cfg(not(feature = "aws-lc"))]
    {
        use rustls::crypto::ring::{self, cipher_suite};
        rustls::crypto::CryptoProvider {
            cipher_suites: vec![
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            ..ring::default_provider()
        }
    }
    #[cfg(feature = "aws-lc")]
    {
        use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
        rustls::crypto::CryptoProvider {
            cipher_suites: vec![
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
            ..aws_lc_rs::default_provider()
        }
    }
}

/// Recovers our own refusal (or rustls's error) from the `io::Error` tokio-rustls returns.
fn handshake_error(e: io::Error) -> TlsError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsError::Io(e);
    };
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = tls
        && let Some(refusal) = other.0.downcast_ref::<Refusal>()
    {
        return refusal.to_tls_error();
    }
    TlsError::Protocol(tls.clone())
}

impl Refusal {
    fn to_tls_error(&self) -> TlsError {
        match self {
            Refusal::Certificate(c) => TlsError::Certificate(c.clone()),
            Refusal::Count(n) => TlsError::CertificateCount(*n),
            Refusal::WrongPeer { expected, actual } => TlsError::PeerIdMismatch {
                expected: *expected,
                actual: *actual,
            },
        }
    }
}

/// Where a dial's verifier leaves the reason it refused the peer (the first one).
#[derive(Debug, Default, Clone)]
pub(crate) struct RefusalSlot(Arc<std::sync::Mutex<Option<TlsError>>>);

impl RefusalSlot {
    fn record(&self, refusal: Refusal) -> rustls::Error {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| refusal.to_tls_error());
        refusal.into()
    }

    /// The recorded refusal, if the verifier refused.
    pub(crate) fn take(&self) -> Option<TlsError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn unix_now(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Checks a presented chain: exactly one certificate, valid now, proving a PeerId.
fn verify_presented(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<PeerId, Refusal> {
    if !intermediates.is_empty() {
        return Err(Refusal::Count(1 + intermediates.len()));
    }
    certificate::verify(end_entity, unix_now(now)).map_err(Refusal::Certificate)
}

fn verify_handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Refusal> {
    certificate::parse(cert)
        .and_then(|c| c.verify_tls13_signature(dss.scheme, message, dss.signature()))
        .map_err(Refusal::Certificate)
        .map(|()| HandshakeSignatureValid::assertion())
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("libp2p-tls takes TLS 1.3 only".into())
}

/// The libp2p-tls verifier of both sides; a client's knows the PeerId it dialed.
#[derive(Debug)]
struct Verifier {
    expected: Option<PeerId>,
    /// `false` only on a QUIC endpoint that also serves WebTransport, whose browsers have no
    /// certificate: a `libp2p` connection without one is refused after the handshake.
    client_auth_mandatory: bool,
    refusal: Option<RefusalSlot>,
}

impl Verifier {
    fn refuse(&self, refusal: Refusal) -> rustls::Error {
        match &self.refusal {
            Some(slot) => slot.record(refusal),
            None => refusal.into(),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual =
            verify_presented(end_entity, intermediates, now).map_err(|r| self.refuse(r))?;
        if let Some(expected) = self.expected
            && expected != actual
        {
            return Err(self.refuse(Refusal::WrongPeer { expected, actual }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss).map_err(|r| self.refuse(r))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        certificate::signature_schemes()
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth_mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_presented(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss).map_err(Into::into)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        certificate::signature_schemes()
    }
}

/// Presents the node's one certificate to every peer, whatever it asks (SNI included).
#[derive(Debug)]
struct Resolver(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn run(
        client: &TlsConfig,
        server: &TlsConfig,
        expected: Option<PeerId>,
    ) -> (Result<PeerId, TlsError>, Result<PeerId, TlsError>) {
        let (a, b) = crate::transport::memory::pair(64 * 1024);
        let dial = async {
            let (mut s, peer) = client.handshake(a, true, expected).await?;
            s.write_all(b"ping").await.map_err(TlsError::Io)?;
            s.flush().await.map_err(TlsError::Io)?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(handshake_error)?;
            assert_eq!(&buf, b"pong");
            Ok(peer)
        };
        let accept = async {
            let (mut s, peer) = server.handshake(b, false, None).await?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(TlsError::Io)?;
            s.write_all(b"pong").await.map_err(TlsError::Io)?;
            s.flush().await.map_err(TlsError::Io)?;
            Ok(peer)
        };
        tokio::join!(dial, accept)
    }

    #[tokio::test]
    async fn two_nodes_agree_on_aes_128_gcm_with_sha_256() {
        let (a, b) = crate::transport::memory::pair(64 * 1024);
        let (alice, bob) = (
            TlsConfig::new(&Keypair::generate()).expect("config"),
            TlsConfig::new(&Keypair::generate()).expect("config"),
        );
        let (dialed, accepted) = tokio::join!(
            alice.handshake(a, true, None),
            bob.handshake(b, false, None)
        );
        for stream in [dialed.expect("dialer").0, accepted.expect("listener").0] {
            let suite = stream.get_ref().1.negotiated_cipher_suite().expect("suite");
            assert_eq!(suite.suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        }
    }

    #[tokio::test]
    async fn both_sides_learn_each_others_peer_id() {
        let (alice, bob) = (Keypair::generate(), Keypair::generate());
        let (a, b) = (
            TlsConfig::new(&alice).expect("config"),
            TlsConfig::new(&bob).expect("config"),
        );
        let (dialed, accepted) = run(&a, &b, Some(bob.peer_id())).await;
        assert_eq!(dialed.expect("dialer"), bob.peer_id());
        assert_eq!(accepted.expect("listener"), alice.peer_id());
    }

    #[tokio::test]
    async fn dial_to_the_wrong_peer_id_is_refused() {
        let (alice, bob) = (Keypair::generate(), Keypair::generate());
        let (a, b) = (
            TlsConfig::new(&alice).expect("config"),
            TlsConfig::new(&bob).expect("config"),
        );
        let other = PeerId::random();
        let (dialed, accepted) = run(&a, &b, Some(other)).await;
        match dialed {
            Err(TlsError::PeerIdMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (other, bob.peer_id()));
            }
            other => panic!("expected a peer id mismatch, got {other:?}"),
        }
        assert!(accepted.is_err());
    }

    #[tokio::test]
    async fn certificate_whose_extension_another_key_signed_is_refused_in_the_handshake() {
        let (alice, bob) = (Keypair::generate(), Keypair::generate());
        let (cert, key) = certificate::tests::forged(&alice, &Keypair::generate(), |_| {});
        let forger = TlsConfig::with_certificate(cert.into(), key).expect("config");
        let b = TlsConfig::new(&bob).expect("config");
        // As a server: the dialer refuses it during the handshake.
        let (dialed, _) = run(&b, &forger, Some(alice.peer_id())).await;
        assert!(
            matches!(
                dialed,
                Err(TlsError::Certificate(
                    CertificateError::BadExtensionSignature
                ))
            ),
            "{dialed:?}"
        );
        // As a client: the listener refuses it.
        let (_, accepted) = run(&forger, &b, Some(bob.peer_id())).await;
        assert!(
            matches!(
                accepted,
                Err(TlsError::Certificate(
                    CertificateError::BadExtensionSignature
                ))
            ),
            "{accepted:?}"
        );
    }

    #[test]
    fn own_certificate_proves_own_peer_id() {
        let key = Keypair::generate();
        let config = TlsConfig::new(&key).expect("config");
        assert_eq!(
            peer_id_from_certificate(&config.certified.cert[0]).expect("verify"),
            key.peer_id()
        );
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            peer_id_from_certificate(&garbage),
            Err(TlsError::Certificate(_))
        ));
    }

    #[test]
    fn configurations_are_tls13_only_with_the_libp2p_alpn() {
        let config = TlsConfig::new(&Keypair::generate()).expect("config");
        let server = config.server_config();
        assert_eq!(server.alpn_protocols, vec![b"libp2p".to_vec()]);
        assert_eq!(server.send_tls13_tickets, 0);
        let client = config.client_config(None);
        assert_eq!(client.alpn_protocols, vec![b"libp2p".to_vec()]);
        assert!(!client.enable_sni);
    }
}
