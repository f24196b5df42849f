//! The node over TCP + libp2p-tls (`/tls/1.0.0`) + yamux: streams, ping and request-response
//! between two nodes, the fallback from Noise, and peers that break the TLS rules.
#![cfg(all(feature = "p2p", feature = "cbor"))]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::negotiate::{ListenerProgress, ListenerSelect, encode_message};
use missive::p2p::noise::NoiseError;
use missive::p2p::tls::{CertificateError, TlsError};
use missive::p2p::{
    DialError, Events, IncomingError, Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId,
    Protocol, Security, UpgradeError,
};
use missive::request_response::{Behaviour, Config, ProtocolSupport, cbor};
use missive::stream::StreamProtocol;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const DEADLINE: Duration = Duration::from_secs(20);

fn tls_only() -> NodeConfig {
    NodeConfig::default().with_security(&[Security::Tls])
}

async fn node(config: NodeConfig) -> Node {
    Node::new(Keypair::generate(), config).await.expect("node")
}

async fn listening(config: NodeConfig) -> (Node, Multiaddr) {
    let n = node(config).await;
    let addr = n
        .listen(LOOPBACK.parse().expect("addr"))
        .await
        .expect("listen");
    (n, addr)
}

fn socket_addr(a: &Multiaddr) -> std::net::SocketAddr {
    let (mut ip, mut port) = (None, None);
    for p in a.iter() {
        match p {
            Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(*v)),
            Protocol::Tcp(v) => port = Some(*v),
            _ => {}
        }
    }
    std::net::SocketAddr::new(ip.expect("ip"), port.expect("port"))
}

/// Serves echo (read to end, write back, close) on `n`.
fn serve_echo(n: &Node) {
    let mut incoming = n.stream_control().accept(ECHO).expect("register");
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
}

async fn echo_once(client: &Node, peer: PeerId, msg: &[u8]) -> Vec<u8> {
    let mut s = client
        .stream_control()
        .open_stream(peer, ECHO)
        .await
        .expect("open");
    s.write_all(msg).await.expect("write");
    s.shutdown().await.expect("close");
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.expect("read");
    back
}

/// Ping, a stream echo of 300 KiB (many TLS records and yamux windows) and a CBOR request.
async fn exercise(a: &Node, b: &Node, addr: Multiaddr) {
    serve_echo(a);
    let server = Behaviour::<cbor::Codec<String, String>>::new(
        a,
        [("/greet/1".to_owned(), ProtocolSupport::Full)],
        Config::default(),
    )
    .expect("rr");
    server
        .serve(|_, req: String| async move { format!("hello {req}") })
        .expect("serve");
    let client = Behaviour::<cbor::Codec<String, String>>::new(
        b,
        [("/greet/1".to_owned(), ProtocolSupport::Full)],
        Config::default(),
    )
    .expect("rr");

    let peer = b.dial(addr).await.expect("dial");
    assert_eq!(peer, a.peer_id());
    b.ping(peer).await.expect("ping");
    let msg: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_once(b, peer, &msg).await, msg);
    assert_eq!(echo_once(b, peer, b"again").await, b"again");
    let answer = client.request(peer, "tls".to_owned()).await.expect("rr");
    assert_eq!(answer, "hello tls");
}

#[tokio::test]
async fn p2p_tls_nodes_ping_echo_and_request_over_tls() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = listening(tls_only()).await;
        let b = node(tls_only()).await;
        exercise(&a, &b, addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_tls_dialer_falls_back_from_noise_to_a_tls_only_listener() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = listening(tls_only()).await;
        let b = node(NodeConfig::default()).await;
        exercise(&a, &b, addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_tls_default_listener_accepts_a_tls_first_dialer() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default().with_security(&[Security::Tls, Security::Noise])).await;
        exercise(&a, &b, addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_tls_dial_to_a_wrong_peer_id_is_refused_as_wrong_peer() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = listening(tls_only()).await;
        let b = node(tls_only()).await;
        let other = PeerId::random();
        let err = b
            .dial(addr.with(Protocol::P2p(other)))
            .await
            .expect_err("a different peer answers");
        match err {
            DialError::WrongPeer { expected, actual } => {
                assert_eq!((expected, actual), (other, a.peer_id()));
            }
            other => panic!("expected WrongPeer, got {other}"),
        }
        assert!(!b.is_connected(&a.peer_id()));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_tls_noise_only_dialer_cannot_reach_a_tls_only_listener() {
    tokio::time::timeout(DEADLINE, async {
        let (_a, addr) = listening(tls_only()).await;
        let b = node(NodeConfig::default().with_security(&[Security::Noise])).await;
        let err = b.dial(addr).await.expect_err("no common security protocol");
        match err {
            // A lone proposal is lazy: its refusal shows when the Noise handshake reads.
            DialError::Upgrade { error, .. } => assert!(
                matches!(
                    *error,
                    UpgradeError::Negotiation(_) | UpgradeError::Noise(NoiseError::Io(_))
                ),
                "{error}"
            ),
            other => panic!("expected a negotiation failure, got {other}"),
        }
    })
    .await
    .expect("in time");
}

/// The next inbound connection error.
async fn next_incoming_error(events: &mut Events) -> Arc<IncomingError> {
    loop {
        if let NodeEvent::IncomingConnectionError { error, .. } =
            events.next().await.expect("events")
        {
            return error;
        }
    }
}

/// Waits until the peer closes `tcp` (EOF or error).
async fn closed_by_peer(tcp: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    for _ in 0..1000 {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    panic!("peer kept sending");
}

/// Writes the multistream header and a `/tls/1.0.0` proposal and reads the listener's answer.
async fn select_tls(tcp: &mut TcpStream) {
    let mut out = Vec::new();
    encode_message(&mut out, b"/multistream/1.0.0");
    encode_message(&mut out, b"/tls/1.0.0");
    tcp.write_all(&out).await.expect("write");
    let mut answer = vec![0u8; out.len()];
    tcp.read_exact(&mut answer).await.expect("answer");
    assert_eq!(answer, out, "listener accepts /tls/1.0.0");
}

async fn still_serves(addr: &Multiaddr) {
    let c = node(tls_only()).await;
    let peer = c.dial(addr.clone()).await.expect("another peer is served");
    c.ping(peer).await.expect("and answered");
}

#[tokio::test]
async fn p2p_tls_garbage_after_tls_selection_is_refused_and_listener_goes_on() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        let mut tcp = TcpStream::connect(socket_addr(&addr))
            .await
            .expect("connect");
        select_tls(&mut tcp).await;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(
                *err,
                IncomingError::Upgrade(UpgradeError::Tls(TlsError::Protocol(_)))
            ),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

/// A certificate without the libp2p extension, and its key.
fn plain_certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::default()
        .self_signed(&key)
        .expect("cert");
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (cert.der().clone(), key)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::test]
async fn p2p_tls_dialer_with_a_certificate_without_extension_is_refused() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        let mut tcp = TcpStream::connect(socket_addr(&addr))
            .await
            .expect("connect");
        select_tls(&mut tcp).await;
        let (cert, key) = plain_certificate();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything))
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert");
        config.alpn_protocols = vec![b"libp2p".to_vec()];
        let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
        // TLS 1.3: the client's handshake ends before the server has judged its certificate;
        // the refusal arrives as an alert, or the connection just closes.
        if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            let mut buf = [0u8; 64];
            let _ = tls.read(&mut buf).await;
        }
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(
                *err,
                IncomingError::Upgrade(UpgradeError::Tls(TlsError::Certificate(
                    CertificateError::MissingExtension
                )))
            ),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

/// Answers multistream-select as a listener that refuses `/noise` and accepts `/tls/1.0.0`: a
/// dialer proposes one protocol per connection, so the refused proposal ends its connection
/// and the next one comes on a new one. Returns the connection that chose TLS, with the bytes
/// the dialer sent after its proposal (its TLS client hello, sent with it) put back in front.
async fn accept_tls_refusing_noise(
    listener: &TcpListener,
) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {
    let mut buf = [0u8; 1024];
    for _ in 0..4 {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut m = ListenerSelect::new();
        'negotiation: for _ in 0..16 {
            match m.poll() {
                Ok(ListenerProgress::Proposed(p)) if p == "/tls/1.0.0" => {
                    let (_, rest) = m.accept().expect("accept");
                    let out = m.take_transmit().expect("answer");
                    tcp.write_all(&out).await.expect("write");
                    let (read, write) = tcp.into_split();
                    return tokio::io::join(std::io::Cursor::new(rest).chain(read), write);
                }
                Ok(ListenerProgress::Proposed(_)) => {
                    m.reject().expect("reject");
                    // The lazy dialer's handshake bytes follow; the refusal ends this one.
                    let out = m.take_transmit().expect("na");
                    let _ = tcp.write_all(&out).await;
                    break 'negotiation;
                }
                Ok(ListenerProgress::NeedInput) => {
                    if let Some(out) = m.take_transmit() {
                        tcp.write_all(&out).await.expect("write");
                    }
                    let n = tcp.read(&mut buf).await.expect("read");
                    assert!(n > 0, "dialer closed during negotiation");
                    m.input(&buf[..n]);
                }
                other => panic!("unexpected negotiation progress: {other:?}"),
            }
        }
    }
    panic!("the dialer never proposed /tls/1.0.0");
}

#[tokio::test]
async fn p2p_tls_listener_with_a_certificate_without_extension_is_refused_by_the_dialer() {
    tokio::time::timeout(DEADLINE, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let tcp = accept_tls_refusing_noise(&listener).await;
            let (cert, key) = plain_certificate();
            let mut config = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls 1.3")
                .with_client_cert_verifier(Arc::new(AcceptAnything))
                .with_single_cert(vec![cert], key)
                .expect("server cert");
            config.alpn_protocols = vec![b"libp2p".to_vec()];
            let _ = tokio_rustls::TlsAcceptor::from(Arc::new(config))
                .accept(tcp)
                .await;
        });
        let b = node(NodeConfig::default()).await;
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
        let err = b.dial(addr).await.expect_err("the certificate is refused");
        match err {
            DialError::Upgrade { error, .. } => assert!(
                matches!(
                    *error,
                    UpgradeError::Tls(TlsError::Certificate(CertificateError::MissingExtension))
                ),
                "{error}"
            ),
            other => panic!("expected a refused certificate, got {other}"),
        }
        server.await.expect("hostile listener");
    })
    .await
    .expect("in time");
}

/// A verifier that accepts every certificate and signature: the hostile peer's side.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for AcceptAnything {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
