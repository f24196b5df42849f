//! TLS over TCP with rustls (the `ring` provider, so no C toolchain beyond `cc` is needed).
//!
//! - [`connect`] dials and completes the client handshake.
//! - [`Acceptor`] completes server handshakes under a deadline, so a client that never finishes its
//!   handshake costs a listener nothing but a timer.
//! - [`load_certs`] / [`load_private_key`] read PEM files; [`server_config`], [`client_config`] and
//!   their `_with_client_auth` variants build the rustls configurations from them.
//! - [`SelfSigned`] makes a fresh certificate for tests and demos.
//!
//! The server configurations built here send no TLS 1.3 session tickets: a client that only writes
//! would never read them, and a socket closed with unread data is reset by the kernel, which can make
//! the server lose the client's last datagrams. Bring your own `ServerConfig` to change that.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::transport::tls::{self, Acceptor, SelfSigned};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let cert = SelfSigned::generate(&["localhost"])?;
//! let listener = missive::transport::tcp::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let acceptor = Acceptor::new(cert.server_config()?);
//! tokio::spawn(async move {
//!     let (socket, _) = listener.accept().await?;
//!     let mut stream = acceptor.accept(socket).await?;
//!     stream.write_all(b"hello over TLS").await?;
//!     stream.shutdown().await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//! let mut stream = tls::connect(addr, "localhost", cert.client_config()?).await?;
//! let mut text = String::new();
//! stream.read_to_string(&mut text).await?;
//! assert_eq!(text, "hello over TLS");
//! # Ok(())
//! # }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use tokio_rustls::client::TlsStream as ClientTlsStream;
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

/// How long a server waits for a client to complete its TLS handshake, and a client for the
/// server, by default: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS configuration could not be built or a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read PEM from {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A PEM file held no item of the kind asked for.
    #[error("{path} holds no {kind}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        kind: &'static str,
    },
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    /// rustls refused the configuration (for example a key that does not match its certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the given roots.
    #[error("client verifier rejected: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A certificate could not be generated.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] super::CertificateError),
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The TCP connection was not made within the connect deadline.
    #[error("connect did not complete within {0:?}")]
    ConnectTimeout(Duration),
    /// The handshake failed: a bad certificate, a protocol error from the peer, or the connection
    /// closed during the handshake.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The peer did not finish its handshake within the deadline.
    #[error("TLS handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
}

/// Dials `addr` over TCP (with `TCP_NODELAY`) and completes a TLS handshake for `server_name`,
/// each under its default deadline of 10 s ([`super::DEFAULT_CONNECT_TIMEOUT`],
/// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
pub async fn connect(
    addr: impl ToSocketAddrs,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<ClientTlsStream<TcpStream>, TlsError> {
    connect_within(
        addr,
        server_name,
        config,
        super::DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_HANDSHAKE_TIMEOUT,
    )
    .await
}

/// As [`connect`], with these deadlines: [`TlsError::ConnectTimeout`] when the TCP connection is
/// not made within `connect_timeout`, [`TlsError::HandshakeTimeout`] when the server has not
/// finished the handshake within `handshake_timeout` after that.
pub async fn connect_within(
    addr: impl ToSocketAddrs,
    server_name: &str,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<ClientTlsStream<TcpStream>, TlsError> {
    let options = super::tcp::SocketOptions::default();
    connect_with(
        addr,
        server_name,
        config,
        (connect_timeout, handshake_timeout),
        &options,
    )
    .await
}

/// As [`connect_within`], with the TCP socket made with `options`; `deadlines` are the connect
/// and the handshake timeouts.
pub async fn connect_with(
    addr: impl ToSocketAddrs,
    server_name: &str,
    config: Arc<ClientConfig>,
    deadlines: (Duration, Duration),
    options: &super::tcp::SocketOptions,
) -> Result<ClientTlsStream<TcpStream>, TlsError> {
    let (connect_timeout, handshake_timeout) = deadlines;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| TlsError::InvalidServerName(server_name.to_owned()))?;
    let dial = super::tcp::connect_with_options(addr, options);
    let tcp = match tokio::time::timeout(connect_timeout, dial).await {
        Ok(tcp) => tcp.map_err(TlsError::Connect)?,
        Err(_) => return Err(TlsError::ConnectTimeout(connect_timeout)),
    };
    let handshake = TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(stream) => stream.map_err(TlsError::Handshake),
        Err(_) => Err(TlsError::HandshakeTimeout(handshake_timeout)),
    }
}

/// Completes server-side TLS handshakes under a deadline.
#[derive(Clone)]
pub struct Acceptor {
    inner: TlsAcceptor,
    timeout: Duration,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// An acceptor for `config` with the default handshake deadline of 10 s.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Acceptor {
            inner: TlsAcceptor::from(config),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets the handshake deadline (default 10 s). A client that has not finished its handshake by
    /// then is disconnected with [`TlsError::HandshakeTimeout`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the server handshake on an accepted TCP stream.
    pub async fn accept<IO>(&self, io: IO) -> Result<ServerTlsStream<IO>, TlsError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.timeout, self.inner.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(TlsError::Handshake(e)),
            Err(_) => Err(TlsError::HandshakeTimeout(self.timeout)),
        }
    }
}

/// Reads every certificate from a PEM file.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            path: path.to_owned(),
            kind: "private key",
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// A server configuration presenting `certs` (leaf first) signed by `key`, without client
/// authentication. It sends no TLS 1.3 session tickets (see the module docs).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(without_tickets(config))
}

/// A server configuration that requires every client to present a certificate issued by one of
/// `client_roots`.
pub fn server_config_with_client_auth(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let roots = root_store(client_roots)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    Ok(without_tickets(config))
}

/// A client configuration that trusts exactly `roots`.
pub fn client_config(roots: Vec<CertificateDer<'static>>) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that trusts `roots` and authenticates with `certs` and `key`.
pub fn client_config_with_client_auth(
    roots: Vec<CertificateDer<'static>>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(roots)?)
        .with_client_auth_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A freshly generated self-signed certificate and its key, for tests and demos.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate, DER-encoded.
    pub cert: CertificateDer<'static>,
    /// Its private key, PKCS#8 DER.
    pub key: PrivateKeyDer<'static>,
    /// The certificate in PEM.
    pub cert_pem: String,
    /// The key in PEM.
    pub key_pem: String,
}

impl SelfSigned {
    /// Generates an ECDSA P-256 certificate valid for `names` (DNS names or IP addresses),
    /// from a day ago for ten years.
    pub fn generate(names: &[&str]) -> Result<Self, TlsError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let key = super::EcdsaKey::generate()?;
        let cert = key.self_signed(&super::CertificateParams {
            names,
            not_before: now - 86_400,
            not_after: now + 10 * 365 * 86_400,
            extensions: &[],
        })?;
        let key = key.private_key();
        Ok(SelfSigned {
            cert_pem: super::certificate::pem("CERTIFICATE", &cert),
            key_pem: super::certificate::pem("PRIVATE KEY", key.secret_der()),
            cert,
            key,
        })
    }

    /// A server configuration presenting this certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(vec![self.cert.clone()], self.key.clone_key())
    }

    /// A client configuration that trusts only this certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        client_config(vec![self.cert.clone()])
    }
}

/// Turns off TLS 1.3 session tickets. A server sends them right after the handshake; a client that
/// only writes never reads them, and closing a socket with unread data makes the kernel send a reset,
/// which can discard the client's last messages before the server has read them. missive connections
/// are long-lived, so resumption buys little.
fn without_tickets(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(roots: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert)?;
    }
    Ok(store)
}
