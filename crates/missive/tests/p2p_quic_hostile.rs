//! Hostile input on the node's QUIC port: garbage datagrams, truncated Initial packets, an
//! unknown QUIC version, certificates without (or with a forged) libp2p extension, an ALPN
//! other than `libp2p`, a dial naming another peer, a flood of handshakes that never finish and
//! stream floods past the limit. Each ends in a typed error or a bounded outcome, and the node
//! serves an honest peer afterwards (or meanwhile).
#![cfg(feature = "p2p")]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::tls::{CertificateError, TlsError};
use missive::p2p::{
    DialError, Events, IncomingError, Keypair, Multiaddr, Node, NodeConfig, NodeEvent, Protocol,
    UpgradeError,
};
use missive::stream::StreamProtocol;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
const DEADLINE: Duration = Duration::from_secs(20);
/// The libp2p ALPN.
const LIBP2P: &[u8] = b"libp2p";

async fn node(config: NodeConfig) -> Node {
    Node::new(Keypair::generate(), config).await.expect("node")
}

async fn quic_listener(config: NodeConfig) -> (Node, Multiaddr) {
    let n = node(config).await;
    let addr = n.listen(QUIC.parse().expect("addr")).await.expect("listen");
    (n, addr)
}

fn socket_addr(a: &Multiaddr) -> SocketAddr {
    let (mut ip, mut port) = (None, None);
    for p in a.iter() {
        match p {
            Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(*v)),
            Protocol::Udp(v) => port = Some(*v),
            _ => {}
        }
    }
    SocketAddr::new(ip.expect("ip"), port.expect("port"))
}

/// A fresh node dials `addr` and pings: the listener still serves. Returns the dial's time.
async fn still_serves(addr: &Multiaddr) -> Duration {
    let c = node(NodeConfig::default()).await;
    let start = Instant::now();
    let peer = c
        .dial(addr.clone())
        .await
        .expect("an honest peer is served");
    let took = start.elapsed();
    c.ping(peer).await.expect("and answered");
    took
}

/// The next inbound connection error within `within`.
async fn next_incoming_error(events: &mut Events, within: Duration) -> Arc<IncomingError> {
    tokio::time::timeout(within, async {
        loop {
            if let NodeEvent::IncomingConnectionError { error, .. } =
                events.next().await.expect("events")
            {
                return error;
            }
        }
    })
    .await
    .expect("an inbound connection error in time")
}

/// Waits `quiet`, then checks the events so far: no connection was established, and every
/// handshake that started failed with a QUIC error. Returns how many failed.
async fn only_failed_handshakes(events: &mut Events, quiet: Duration) -> usize {
    tokio::time::sleep(quiet).await;
    let mut failed = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await {
        match e {
            NodeEvent::ConnectionEstablished { .. } => panic!("{e:?}"),
            NodeEvent::IncomingConnectionError { error, .. } => {
                assert!(
                    matches!(*error, IncomingError::Upgrade(UpgradeError::Quic(_))),
                    "{error}"
                );
                failed += 1;
            }
            _ => {}
        }
    }
    failed
}

/// A tiny deterministic generator for garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// --- certificates and raw quinn peers ----------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate without the libp2p extension, and its key.
fn plain_certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::default()
        .self_signed(&key)
        .expect("cert");
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (cert.der().clone(), key)
}

fn der(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
}

/// A libp2p-tls certificate (libp2p spec): a P-256 certificate key and the libp2p Public Key
/// Extension carrying `announced`'s public key and `signer`'s signature over
/// `libp2p-tls-handshake:` ‖ the certificate's SubjectPublicKeyInfo. With `signer` =
/// `announced` the certificate is valid; with another key the extension is forged.
fn libp2p_certificate(
    announced: &Keypair,
    signer: &Keypair,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    use rcgen::PublicKeyData as _;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut signed = b"libp2p-tls-handshake:".to_vec();
    signed.extend_from_slice(&key.subject_public_key_info());
    let mut fields = Vec::new();
    der(
        &mut fields,
        0x04,
        &announced.public().to_protobuf_encoding(),
    );
    der(&mut fields, 0x04, &signer.sign(&signed));
    let mut value = Vec::new();
    der(&mut value, 0x30, &fields);
    let mut ext = rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 53594, 1, 1], value);
    // Not critical: rustls refuses to load a client certificate with an unknown critical
    // extension (the node accepts both forms).
    ext.set_criticality(false);
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions.push(ext);
    let cert = params.self_signed(&key).expect("cert");
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (cert.der().clone(), key)
}

/// A quinn client configuration presenting `cert`, offering `alpn`, accepting any server.
fn raw_client_config(
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
    alpn: &[u8],
) -> quinn::ClientConfig {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_client_auth_cert(vec![cert], key)
        .expect("client cert");
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).expect("quic");
    quinn::ClientConfig::new(Arc::new(crypto))
}

fn raw_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint")
}

/// How a raw client's connection attempt ended: the handshake's error, or (the TLS 1.3
/// client finishes before the server has judged its certificate) the close that followed.
async fn raw_connect(config: quinn::ClientConfig, to: SocketAddr) -> quinn::ConnectionError {
    let endpoint = raw_endpoint();
    let connecting = endpoint.connect_with(config, to, "l").expect("connect");
    let outcome = tokio::time::timeout(Duration::from_secs(5), async move {
        match connecting.await {
            Err(e) => e,
            Ok(conn) => conn.closed().await,
        }
    })
    .await
    .expect("the refused connection ended in time");
    endpoint.close(0u32.into(), b"");
    outcome
}

/// The text of a QUIC upgrade error (an inbound one, or a dial's).
fn quic_upgrade_text(error: &IncomingError) -> String {
    match error {
        IncomingError::Upgrade(UpgradeError::Quic(e)) => e.to_string(),
        other => panic!("expected a QUIC handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn quic_a_raw_client_with_a_valid_libp2p_certificate_is_accepted() {
    // The control for the certificate tests below: the same raw client, nothing wrong.
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = quic_listener(NodeConfig::default()).await;
        let mut events = n.events();
        let id = Keypair::generate();
        let endpoint = raw_endpoint();
        let conn = endpoint
            .connect_with(
                raw_client_config(libp2p_certificate(&id, &id), LIBP2P),
                socket_addr(&addr),
                "l",
            )
            .expect("connect")
            .await
            .expect("handshake");
        let peer = loop {
            if let NodeEvent::ConnectionEstablished { peer, .. } =
                events.next().await.expect("events")
            {
                break peer;
            }
        };
        assert_eq!(peer, id.peer_id());
        conn.close(0u32.into(), b"");
        endpoint.wait_idle().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_client_certificate_without_the_libp2p_extension_is_refused() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = quic_listener(NodeConfig::default()).await;
        let mut events = n.events();
        let closed = raw_connect(
            raw_client_config(plain_certificate(), LIBP2P),
            socket_addr(&addr),
        )
        .await;
        assert!(
            matches!(closed, quinn::ConnectionError::ConnectionClosed(_)),
            "the node closed it: {closed}"
        );
        let error = next_incoming_error(&mut events, Duration::from_secs(5)).await;
        let text = quic_upgrade_text(&error);
        assert!(text.contains("MissingExtension"), "{text}");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_client_certificate_whose_extension_another_key_signed_is_refused() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = quic_listener(NodeConfig::default()).await;
        let mut events = n.events();
        let forged = libp2p_certificate(&Keypair::generate(), &Keypair::generate());
        let closed = raw_connect(raw_client_config(forged, LIBP2P), socket_addr(&addr)).await;
        assert!(
            matches!(closed, quinn::ConnectionError::ConnectionClosed(_)),
            "the node closed it: {closed}"
        );
        let error = next_incoming_error(&mut events, Duration::from_secs(5)).await;
        let text = quic_upgrade_text(&error);
        assert!(text.contains("BadExtensionSignature"), "{text}");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_an_alpn_other_than_libp2p_is_refused() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = quic_listener(NodeConfig::default()).await;
        let mut events = n.events();
        let id = Keypair::generate();
        let closed = raw_connect(
            raw_client_config(libp2p_certificate(&id, &id), b"h3"),
            socket_addr(&addr),
        )
        .await;
        // TLS alert 120 (no_application_protocol) is QUIC crypto error 0x178.
        match &closed {
            quinn::ConnectionError::ConnectionClosed(close) => {
                assert_eq!(u64::from(close.error_code), 0x178, "{close}");
            }
            other => panic!("expected the node to close the connection, got {other}"),
        }
        let error = next_incoming_error(&mut events, Duration::from_secs(5)).await;
        let text = quic_upgrade_text(&error);
        assert!(text.to_lowercase().contains("protocol"), "{text}");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

/// A quinn server presenting `cert` with ALPN `libp2p` that accepts any client; it accepts
/// connections until dropped.
fn raw_server(
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> (quinn::Endpoint, SocketAddr) {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .with_client_cert_verifier(Arc::new(AcceptAnything))
        .with_single_cert(vec![cert], key)
        .expect("server cert");
    tls.alpn_protocols = vec![LIBP2P.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).expect("quic");
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("server");
    let addr = endpoint.local_addr().expect("addr");
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    let _ = conn.closed().await;
                }
            });
        }
    });
    (endpoint, addr)
}

#[tokio::test]
async fn quic_a_listener_certificate_without_the_libp2p_extension_is_refused_by_the_dialer() {
    tokio::time::timeout(DEADLINE, async {
        for (cert, what) in [
            (plain_certificate(), CertificateError::MissingExtension),
            (
                libp2p_certificate(&Keypair::generate(), &Keypair::generate()),
                CertificateError::BadExtensionSignature,
            ),
        ] {
            let (server, at) = raw_server(cert);
            let b = node(NodeConfig::default()).await;
            let addr: Multiaddr = format!("/ip4/127.0.0.1/udp/{}/quic-v1", at.port())
                .parse()
                .expect("addr");
            match b.dial(addr).await {
                // The dialer's own verifier refused: the exact reason, typed, as on TCP.
                Err(DialError::Upgrade { error, .. }) => match &*error {
                    UpgradeError::Tls(TlsError::Certificate(e)) => assert_eq!(*e, what),
                    other => panic!("expected a refused certificate, got {other:?}"),
                },
                other => panic!("expected a refused certificate, got {other:?}"),
            }
            server.close(0u32.into(), b"");
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_dial_naming_another_peer_is_wrong_peer_and_the_listener_serves_on() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = quic_listener(NodeConfig::default()).await;
        let b = node(NodeConfig::default()).await;
        let wrong = Keypair::generate().peer_id();
        match b.dial(addr.clone().with(Protocol::P2p(wrong))).await {
            Err(DialError::WrongPeer { expected, actual }) => {
                assert_eq!((expected, actual), (wrong, a.peer_id()));
            }
            other => panic!("expected WrongPeer, got {other:?}"),
        }
        assert!(
            !b.is_connected(&a.peer_id()),
            "the wrong connection is closed"
        );
        assert!(b.addresses_of(&wrong).is_empty());
        // The same node then reaches the listener under its real id.
        let peer = b
            .dial(addr.clone().with(Protocol::P2p(a.peer_id())))
            .await
            .expect("the right id");
        b.ping(peer).await.expect("ping");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

// --- garbage and truncated packets ---------------------------------------------------------------

/// Datagrams of every shape that are not QUIC: tiny, random, long and short headers with
/// random contents, version 1 "Initials" whose protection cannot be removed.
fn garbage(rng: &mut XorShift) -> Vec<Vec<u8>> {
    let mut out = vec![
        vec![],
        vec![0],
        vec![0xff; 1],
        vec![0xc0; 7],
        vec![0u8; 1200],
    ];
    for i in 0..200 {
        let len = [1, 5, 20, 64, 1200, 1252, 1350, 1500][i % 8];
        let mut d = rng.bytes(len);
        match i % 4 {
            // A long header of version 1 (an Initial, a 0-RTT, a Handshake or a Retry).
            0 if len >= 6 => {
                d[0] = 0xc0 | (d[0] & 0x3f);
                d[1..5].copy_from_slice(&[0, 0, 0, 1]);
                d[5] = 8;
            }
            // A short header.
            1 => d[0] = 0x40 | (d[0] & 0x3f),
            _ => {}
        }
        out.push(d);
    }
    out
}

#[tokio::test]
async fn quic_garbage_datagrams_are_dropped_and_the_node_serves_on() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr) = quic_listener(NodeConfig::default()).await;
        let mut events = n.events();
        let to = socket_addr(&addr);
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut rng = XorShift(0x5eed_1234_abcd_0001);
        for round in 0..3 {
            for d in garbage(&mut rng) {
                sock.send_to(&d, to).await.expect("send");
            }
            // Between rounds and after them, an honest peer is served.
            let took = still_serves(&addr).await;
            assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
        }
        // Garbage made no connection and no handshake.
        let mut established = 0;
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await
        {
            match e {
                NodeEvent::ConnectionEstablished { .. } => established += 1,
                NodeEvent::IncomingConnectionError { error, .. } => {
                    panic!("garbage started a handshake: {error}")
                }
                _ => {}
            }
        }
        assert_eq!(established, 3, "only the honest peers connected");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_an_unknown_version_is_answered_with_version_negotiation_for_v1() {
    tokio::time::timeout(DEADLINE, async {
        let (_n, addr) = quic_listener(NodeConfig::default()).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        // A long header with a reserved version (RFC 9000 15), padded to the Initial size.
        let mut d = vec![0u8; 1200];
        d[0] = 0xc0;
        d[1..5].copy_from_slice(&[0x1a, 0x2a, 0x3a, 0x4a]);
        d[5] = 8;
        d[6..14].copy_from_slice(b"dcid-vn!");
        d[14] = 8;
        d[15..23].copy_from_slice(b"scid-vn!");
        sock.send_to(&d, socket_addr(&addr)).await.expect("send");
        let mut buf = [0u8; 1500];
        let (len, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv");
        let vn = &buf[..len];
        assert!(vn[0] & 0x80 != 0, "a long header");
        assert_eq!(&vn[1..5], &[0, 0, 0, 0], "version negotiation");
        // The answer swaps the connection ids and lists the supported versions.
        assert_eq!(&vn[6..14], b"scid-vn!");
        assert_eq!(&vn[15..23], b"dcid-vn!");
        let versions: Vec<&[u8]> = vn[23..].chunks(4).collect();
        assert!(versions.contains(&&[0u8, 0, 0, 1][..]), "{versions:?}");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

/// The destination connection id of a long-header packet.
fn dcid(d: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*d.get(5)?);
    d.get(6..6 + len)
}

/// Real client Initial packets (each the first datagram of a new quinn connection attempt,
/// each with its own connection id), caught on a socket that never answers.
async fn capture_initials(n: usize) -> Vec<Vec<u8>> {
    let sink = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let to = sink.local_addr().expect("addr");
    let endpoint = raw_endpoint();
    let id = Keypair::generate();
    let config = raw_client_config(libp2p_certificate(&id, &id), LIBP2P);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 2048];
    let mut attempts = Vec::with_capacity(n);
    for _ in 0..n {
        attempts.push(
            endpoint
                .connect_with(config.clone(), to, "l")
                .expect("connect"),
        );
        // Bounded: a new attempt's Initial comes at once; retransmissions repeat known ids.
        for _ in 0..8 {
            let (len, _) = tokio::time::timeout(Duration::from_secs(2), sink.recv_from(&mut buf))
                .await
                .expect("an Initial in time")
                .expect("recv");
            let d = &buf[..len];
            if let Some(id) = dcid(d)
                && d[0] & 0xf0 == 0xc0
                && seen.insert(id.to_vec())
            {
                out.push(d.to_vec());
                break;
            }
        }
    }
    assert_eq!(out.len(), n, "every attempt sent its Initial");
    drop(attempts);
    endpoint.close(0u32.into(), b"");
    out
}

#[tokio::test]
async fn quic_truncated_initial_packets_are_dropped_and_a_silent_handshake_ends_at_the_deadline() {
    tokio::time::timeout(DEADLINE, async {
        let setup = Duration::from_millis(800);
        let (n, addr) =
            quic_listener(NodeConfig::default().with_connection_setup_timeout(setup)).await;
        let mut events = n.events();
        let to = socket_addr(&addr);
        let initial = capture_initials(1).await.remove(0);
        assert!(initial.len() >= 1200, "{}", initial.len());
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut truncated = Vec::new();
        for cut in [1, 5, 6, 20, 100, 600, 1000, 1199, initial.len() - 1] {
            // Cut short, and cut short then padded back to a valid datagram size (so that
            // the size rule does not hide the broken packet).
            truncated.push(initial[..cut].to_vec());
            let mut padded = initial[..cut].to_vec();
            padded.resize(initial.len(), 0);
            truncated.push(padded);
        }
        // The payload cut by one byte inside an otherwise whole datagram.
        let mut flipped = initial.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        truncated.push(flipped);
        let mut buf = [0u8; 2048];
        for d in &truncated {
            sock.send_to(d, to).await.expect("send");
            // At most a short close (quinn closes an Initial whose connection id is too short
            // for a server to route), never the server's handshake flight.
            if let Ok(r) =
                tokio::time::timeout(Duration::from_millis(50), sock.recv_from(&mut buf)).await
            {
                let (len, _) = r.expect("recv");
                assert!(len < 200, "a {len}-byte answer to a broken Initial");
            }
        }
        // An Initial whose header is whole but whose protection fails is taken as a
        // connection attempt that fails at once ("authentication failed"); none is accepted.
        let failed = only_failed_handshakes(&mut events, Duration::from_millis(200)).await;
        assert!(failed <= truncated.len(), "{failed}");

        // The whole Initial is answered, and its handshake, which the sender never goes on
        // with, ends at the setup deadline with a typed error.
        let sent = Instant::now();
        sock.send_to(&initial, to).await.expect("send");
        let (len, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv");
        assert!(buf[0] & 0x80 != 0 && len >= 1200, "a server Initial");
        let error = next_incoming_error(&mut events, Duration::from_secs(5)).await;
        let took = sent.elapsed();
        assert!(
            matches!(*error, IncomingError::Upgrade(UpgradeError::Timeout)),
            "{error}"
        );
        assert!(took >= setup && took < setup * 3, "{took:?}");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_flood_of_handshakes_that_never_finish_leaves_room_for_an_honest_peer() {
    tokio::time::timeout(DEADLINE, async {
        let setup = Duration::from_secs(2);
        let (n, addr) =
            quic_listener(NodeConfig::default().with_connection_setup_timeout(setup)).await;
        let mut events = n.events();
        let to = socket_addr(&addr);
        let initials = capture_initials(240).await;
        let (burst, trickle) = initials.split_at(160);
        // Four sockets send a burst of Initials and never go on with their handshakes.
        let mut socks = Vec::new();
        for _ in 0..4 {
            socks.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        }
        for (i, d) in burst.iter().enumerate() {
            socks[i % 4].send_to(d, to).await.expect("send");
        }
        // ... and keep sending new ones while the honest peer dials.
        let trickle = trickle.to_vec();
        let flooding = tokio::spawn(async move {
            for (i, d) in trickle.iter().enumerate() {
                let _ = socks[i % 4].send_to(d, to).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            socks
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            let took = still_serves(&addr).await;
            assert!(
                took < Duration::from_secs(1),
                "the honest dial took {took:?}"
            );
        }
        let _socks = flooding.await.expect("flood");
        let flood_ended = Instant::now();
        // Every flood handshake ends: it yields its place to a newer one, or its deadline
        // passes. Only as many as the table holds (32 per address, the honest peers' address
        // too) ever wait for the deadline.
        let (mut yielded, mut timed_out) = (0, 0);
        while let Ok(Some(e)) =
            tokio::time::timeout(setup + Duration::from_millis(500), events.next()).await
        {
            if let NodeEvent::IncomingConnectionError { error, .. } = e {
                match *error {
                    IncomingError::TooManyPendingHandshakes => yielded += 1,
                    IncomingError::Upgrade(UpgradeError::Timeout) => timed_out += 1,
                    ref other => panic!("{other}"),
                }
            }
        }
        eprintln!(
            "{yielded} yielded, {timed_out} timed out, the last {:?} after the flood",
            flood_ended.elapsed()
        );
        assert!(
            timed_out <= 32,
            "{timed_out} handshakes held a place to the deadline"
        );
        assert!(yielded > 0, "the table never filled");
        // The socket may drop some of a burst; most Initials made a handshake.
        assert!(yielded + timed_out >= 120, "{yielded} + {timed_out}");
    })
    .await
    .expect("in time");
}

/// With every place of the table taken, an Initial from an address that has not proven it
/// receives our packets is answered with a Retry instead of taking a place: forged source
/// addresses cannot push honest handshakes out. An honest client follows the Retry and connects.
#[tokio::test]
async fn quic_a_full_table_answers_unproven_initials_with_retry_and_honest_peers_still_connect() {
    tokio::time::timeout(DEADLINE, async {
        let (_n, addr) = quic_listener(
            NodeConfig::default()
                .with_max_pending_incoming(4)
                .with_connection_setup_timeout(Duration::from_secs(5)),
        )
        .await;
        let to = socket_addr(&addr);
        let initials = capture_initials(12).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        for d in &initials {
            sock.send_to(d, to).await.expect("send");
        }
        // Long header (0x80), QUIC v1 Retry type (0x30).
        let mut retries = 0;
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
        {
            if n > 5 && buf[0] & 0xb0 == 0xb0 && buf[1..5] == [0, 0, 0, 1] {
                retries += 1;
            }
        }
        assert!(retries > 0, "no Retry came back while the table was full");
        let took = still_serves(&addr).await;
        assert!(
            took < Duration::from_secs(1),
            "the honest dial took {took:?}"
        );
    })
    .await
    .expect("in time");
}

// --- stream floods -------------------------------------------------------------------------------

/// Serves echo on `n`, counting the streams open at once.
fn serve_counted_echo(n: &Node) -> Arc<AtomicUsize> {
    let mut incoming = n.stream_control().accept(ECHO).expect("accept");
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let m = max.clone();
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            let (n, m) = (now.clone(), m.clone());
            tokio::spawn(async move {
                let open = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(open, Ordering::SeqCst);
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                    let _ = s.shutdown().await;
                }
                n.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    max
}

#[tokio::test]
async fn quic_a_stream_flood_past_the_limit_waits_for_credit_and_never_exceeds_it() {
    tokio::time::timeout(DEADLINE, async {
        const LIMIT: usize = 4;
        let (a, addr) =
            quic_listener(NodeConfig::default().with_max_streams_per_connection(LIMIT)).await;
        let mut a_events = a.events();
        let max = serve_counted_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let flood = (0..64u32).map(|i| {
            let control = b.stream_control();
            async move {
                let mut s = control.open_stream(peer, ECHO).await.expect("open");
                let msg = i.to_be_bytes().repeat(1024);
                s.write_all(&msg).await.expect("write");
                s.shutdown().await.expect("finish");
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.expect("echo");
                assert_eq!(back, msg);
            }
        });
        futures_util::future::join_all(flood).await;
        let max = max.load(Ordering::SeqCst);
        assert!((1..=LIMIT).contains(&max), "{max} streams at once");
        b.ping(peer).await.expect("the connection works");
        // Nothing was refused: the peer never had the credit to pass the limit.
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(1), a_events.next()).await
        {
            assert!(
                !matches!(e, NodeEvent::InboundStreamRefused { .. }),
                "{e:?}"
            );
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_inbound_streams_past_a_limit_shared_with_own_streams_are_refused_visibly() {
    tokio::time::timeout(DEADLINE, async {
        const LIMIT: usize = 3;
        let (a, addr) =
            quic_listener(NodeConfig::default().with_max_streams_per_connection(LIMIT)).await;
        let mut a_events = a.events();
        let mut held_by_b = b_accepts(&a, &addr).await;
        let b = held_by_b.node.clone();
        // `a` holds two streams of its own to `b`: one place is left for `b`'s streams,
        // although QUIC gave `b` credit for three.
        let control = a.stream_control();
        let mut own = Vec::new();
        for _ in 0..2 {
            let mut s = control.open_stream(b.peer_id(), ECHO).await.expect("open");
            s.write_all(b"held").await.expect("write");
            s.flush().await.expect("flush");
            own.push(s);
            held_by_b.next().await;
        }
        let _max = serve_counted_echo(&a);
        let a_peer = a.peer_id();
        let opens = (0..3).map(|_| {
            let control = b.stream_control();
            async move {
                let mut s = control.open_stream(a_peer, ECHO).await?;
                s.write_all(b"x")
                    .await
                    .map_err(missive::stream::OpenStreamError::Io)?;
                s.shutdown()
                    .await
                    .map_err(missive::stream::OpenStreamError::Io)?;
                let mut back = Vec::new();
                s.read_to_end(&mut back)
                    .await
                    .map_err(missive::stream::OpenStreamError::Io)?;
                Ok::<_, missive::stream::OpenStreamError>(back)
            }
        });
        let results = futures_util::future::join_all(opens).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let refused = results.len() - ok;
        assert!(ok >= 1, "{results:?}");
        assert!(refused >= 1, "{results:?}");
        let mut refusals = 0;
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(100), a_events.next()).await
        {
            if let NodeEvent::InboundStreamRefused { reason, .. } = e {
                assert_eq!(reason, missive::p2p::StreamRefusal::TooManyStreams);
                refusals += 1;
            }
        }
        assert_eq!(refusals, refused, "each refusal is reported");
        drop(own);
        b.ping(a.peer_id()).await.expect("the connection lives");
    })
    .await
    .expect("in time");
}

/// A node `b` dialed to `a`'s `addr` that accepts (and holds) `a`'s echo streams.
struct Holder {
    node: Node,
    incoming: missive::stream::IncomingStreams,
    held: Vec<missive::stream::Stream>,
}

impl Holder {
    async fn next(&mut self) {
        let (_, mut s) = self.incoming.next().await.expect("a stream from a");
        let mut first = [0u8; 4];
        s.read_exact(&mut first).await.expect("first bytes");
        self.held.push(s);
    }
}

async fn b_accepts(a: &Node, addr: &Multiaddr) -> Holder {
    let node = node(NodeConfig::default()).await;
    let incoming = node.stream_control().accept(ECHO).expect("accept");
    let peer = node.dial(addr.clone()).await.expect("dial");
    assert_eq!(peer, a.peer_id());
    // The dialer's QUIC handshake ends before the listener's: wait for `a` to see it.
    for _ in 0..200 {
        if a.is_connected(&node.peer_id()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(a.is_connected(&node.peer_id()));
    Holder {
        node,
        incoming,
        held: Vec::new(),
    }
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
