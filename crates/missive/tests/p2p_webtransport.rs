//! The node's WebTransport listener seen by an independent client: wtransport (its own
//! HTTP/3 and WebTransport code, the certificate checked by hash as a browser does) with the
//! libp2p Noise handshake on the first stream, then multistream-select per stream. The checks
//! of the conformance suite (ping, identify, stream echo, request-response, rpc over a node
//! stream) run through it, then the hostile cases: wrong path or type, a client that never
//! finishes Noise, a certhash the server does not list, many sessions at once.
#![cfg(all(feature = "webtransport", feature = "json", feature = "cbor"))]

use std::io;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use missive::p2p::negotiate::{
    DialerProgress, DialerSelect, ListenerProgress, ListenerSelect, Version,
};
use missive::p2p::noise::NoiseConfig;
use missive::p2p::{
    IncomingError, Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId, Protocol, UpgradeError,
};
use missive::request_response::{Behaviour, Config, ProtocolSupport, cbor, json};
use missive::stream::StreamProtocol;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const DEADLINE: Duration = Duration::from_secs(20);

async fn in_time<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("the check finished in time")
}

/// A node listening on WebTransport on loopback, and its address.
async fn listener(config: NodeConfig) -> (Node, Multiaddr) {
    let node = Node::new(Keypair::generate(), config).await.expect("node");
    let addr = node
        .listen(
            "/ip4/127.0.0.1/udp/0/quic-v1/webtransport"
                .parse()
                .expect("addr"),
        )
        .await
        .expect("listen");
    (node, addr)
}

fn certhashes(addr: &Multiaddr) -> Vec<Vec<u8>> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::Certhash(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

fn port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Udp(p) => Some(*p),
            _ => None,
        })
        .expect("a udp port")
}

/// A wtransport endpoint that accepts only certificates of `hashes` (SHA-256 multihashes),
/// as a browser given `serverCertificateHashes`.
fn endpoint(
    hashes: &[Vec<u8>],
) -> wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client> {
    let digests = hashes.iter().map(|h| {
        assert_eq!(h[..2], [0x12, 0x20], "a sha2-256 multihash");
        let d: [u8; 32] = h[2..].try_into().expect("32 bytes");
        wtransport::tls::Sha256Digest::new(d)
    });
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes(digests)
        .build();
    wtransport::Endpoint::client(config).expect("client endpoint")
}

type Io = tokio::io::Join<wtransport::RecvStream, wtransport::SendStream>;

/// A WebTransport client with a libp2p identity.
struct Client {
    conn: wtransport::Connection,
    key: Keypair,
    _endpoint: wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>,
}

/// Opens a session to `addr` on `path` and runs Noise as initiator on its first stream,
/// expecting `peer` and `expected` among the server's certhashes.
async fn connect_with(
    addr: &Multiaddr,
    peer: PeerId,
    path: &str,
    expected: &[Vec<u8>],
) -> Result<Client, String> {
    let endpoint = endpoint(&certhashes(addr));
    let url = format!("https://127.0.0.1:{}{path}", port(addr));
    let conn = endpoint.connect(url).await.map_err(|e| e.to_string())?;
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let key = Keypair::generate();
    let noise = NoiseConfig::new(&key).expect("noise");
    let mut io = tokio::io::join(recv, send);
    let proven = noise
        .handshake_webtransport(&mut io, true, Some(peer), expected)
        .await
        .map_err(|e| format!("noise: {e}"))?;
    assert_eq!(proven, peer);
    Ok(Client {
        conn,
        key,
        _endpoint: endpoint,
    })
}

async fn connect(addr: &Multiaddr, peer: PeerId) -> Client {
    connect_with(
        addr,
        peer,
        "/.well-known/libp2p-webtransport?type=noise",
        &certhashes(addr),
    )
    .await
    .expect("a WebTransport session")
}

/// Reads what arrived into `sel` until it decides.
async fn dialer_negotiate<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    protocol: &str,
) -> io::Result<Vec<u8>> {
    let mut sel = DialerSelect::new([protocol], Version::V1).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(out) = sel.take_transmit() {
            io.write_all(&out).await?;
            io.flush().await?;
        }
        match sel.poll().map_err(io::Error::other)? {
            DialerProgress::Selected { remaining, .. } => return Ok(remaining),
            DialerProgress::NeedInput => {
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                sel.input(&buf[..n]);
            }
            other => return Err(io::Error::other(format!("{other:?}"))),
        }
    }
}

impl Client {
    fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// Opens a stream negotiated to `protocol`; bytes that came with the confirmation first.
    async fn open(&self, protocol: &str) -> io::Result<(Vec<u8>, Io)> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(io::Error::other)?
            .await
            .map_err(io::Error::other)?;
        let mut io = tokio::io::join(recv, send);
        let early = dialer_negotiate(&mut io, protocol).await?;
        Ok((early, io))
    }

    /// Accepts a stream the node opens and answers its proposal of `protocol`.
    async fn accept(&self, protocol: &str) -> io::Result<Io> {
        let (send, recv) = self.conn.accept_bi().await.map_err(io::Error::other)?;
        let mut io = tokio::io::join(recv, send);
        let mut sel = ListenerSelect::new();
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(out) = sel.take_transmit() {
                io.write_all(&out).await?;
            }
            match sel.poll().map_err(io::Error::other)? {
                ListenerProgress::NeedInput => {
                    let n = io.read(&mut buf).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    sel.input(&buf[..n]);
                }
                ListenerProgress::Proposed(p) if p == protocol => {
                    let (_, remaining) = sel.accept().map_err(io::Error::other)?;
                    assert!(remaining.is_empty(), "the node waits for the confirmation");
                    if let Some(out) = sel.take_transmit() {
                        io.write_all(&out).await?;
                    }
                    return Ok(io);
                }
                ListenerProgress::Proposed(_) => sel.reject().map_err(io::Error::other)?,
                other => return Err(io::Error::other(format!("{other:?}"))),
            }
        }
    }

    /// Sends `msg` on a new stream of `protocol`, closes, and reads the answer to its end.
    async fn exchange(&self, protocol: &str, msg: &[u8]) -> io::Result<Vec<u8>> {
        let (mut back, io) = self.open(protocol).await?;
        let (mut r, mut w) = tokio::io::split(io);
        let write = async {
            w.write_all(msg).await?;
            w.shutdown().await
        };
        let (written, read) = tokio::join!(write, r.read_to_end(&mut back));
        written?;
        read?;
        Ok(back)
    }
}

/// Serves echo (read to the end, write it back, close) on `n`.
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

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn the_listen_address_names_two_fresh_certificates_and_the_quic_port() {
    let node = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let quic = node
        .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"))
        .await
        .expect("quic");
    let wt: Multiaddr = format!("/ip4/127.0.0.1/udp/{}/quic-v1/webtransport", port(&quic))
        .parse()
        .expect("addr");
    let addr = node
        .listen(wt)
        .await
        .expect("webtransport on the QUIC socket");
    assert_eq!(port(&addr), port(&quic));
    let text = addr.to_string();
    assert!(
        text.contains("/quic-v1/webtransport/certhash/uEi"),
        "{text}"
    );
    let hashes = certhashes(&addr);
    assert_eq!(hashes.len(), 2, "current and next");
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(node.listen_addrs(), vec![quic.clone(), addr.clone()]);
    // Both transports answer on the one socket: a QUIC node and a WebTransport client.
    let other = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let peer = in_time(other.dial(quic)).await.expect("QUIC dial");
    assert_eq!(peer, node.peer_id());
    let client = in_time(connect(&addr, node.peer_id())).await;
    let (_, _) = in_time(client.open("/ipfs/ping/1.0.0"))
        .await
        .expect("a stream");
}

#[tokio::test]
async fn ping_identify_and_echo_over_webtransport() {
    let (node, addr) = listener(NodeConfig::default()).await;
    serve_echo(&node);
    in_time(async {
        let client = connect(&addr, node.peer_id()).await;
        // ping: 32 bytes echoed, three times on one stream.
        let (early, mut s) = client.open("/ipfs/ping/1.0.0").await.expect("ping stream");
        assert!(early.is_empty());
        for i in 0..3u8 {
            let payload = [i; 32];
            s.write_all(&payload).await.expect("send");
            let mut back = [0u8; 32];
            s.read_exact(&mut back).await.expect("pong");
            assert_eq!(back, payload);
        }
        // identify: the node's key, its WebTransport address, what it serves.
        let mut info = client
            .exchange("/ipfs/id/1.0.0", b"")
            .await
            .expect("identify");
        let (len, prefix) = uvarint(&info);
        info.drain(..prefix);
        assert_eq!(info.len(), len);
        let info = missive::protocols::identify::Info::decode(&info).expect("identify info");
        assert_eq!(info.peer_id(), node.peer_id());
        assert_eq!(info.listen_addrs, vec![addr.clone()]);
        let names: Vec<&str> = info.protocols.iter().map(|p| p.as_str()).collect();
        for expected in ["/echo/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
            assert!(names.contains(&expected), "{names:?}");
        }
        // echo: 10 B, 1 KiB, 100 KiB, 1 MiB, then eight at once.
        for len in [10, 1024, 100 * 1024, 1024 * 1024] {
            let body = pattern(len);
            let back = client.exchange("/echo/1.0.0", &body).await.expect("echo");
            assert!(back == body, "the {len}-byte echo differs");
        }
        let at_once = (0..8u8).map(|i| {
            let client = &client;
            async move {
                let msg = vec![i; 64 * 1024 + usize::from(i)];
                assert_eq!(
                    client.exchange("/echo/1.0.0", &msg).await.expect("echo"),
                    msg
                );
            }
        });
        futures_util::future::join_all(at_once).await;
        // A protocol the node does not serve is refused; the session lives on.
        let refused = client.open("/nope/1.0.0").await;
        assert!(refused.is_err());
        assert_eq!(
            client
                .exchange("/echo/1.0.0", b"still")
                .await
                .expect("echo"),
            b"still"
        );
        // The node opens a stream to the client, over the same session.
        let served = async {
            let mut s = client.accept("/echo/1.0.0").await.expect("inbound stream");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            s.write_all(&buf).await.expect("write");
            s.shutdown().await.expect("finish");
        };
        let asked = async {
            let mut s = node
                .stream_control()
                .open_stream(client.peer_id(), ECHO)
                .await
                .expect("the node opens a stream to its WebTransport peer");
            s.write_all(b"from the node").await.expect("write");
            s.shutdown().await.expect("finish");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("read");
            back
        };
        let ((), back) = tokio::join!(served, asked);
        assert_eq!(back, b"from the node");
        assert_eq!(node.connected_peers(), vec![client.peer_id()]);
    })
    .await;
}

fn uvarint(b: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, byte) in b.iter().enumerate().take(9) {
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("no varint")
}

#[tokio::test]
async fn request_response_over_webtransport_in_json_and_cbor() {
    type Json = json::Codec<serde_json::Value, serde_json::Value>;
    type Cbor = cbor::Codec<String, String>;
    let (node, addr) = listener(NodeConfig::default()).await;
    let full = |p: &str| [(p.to_owned(), ProtocolSupport::Full)];
    let j = Behaviour::<Json>::new(&node, full("/json/1"), Config::default()).expect("rr");
    j.serve(|_, v: serde_json::Value| async move { serde_json::json!({ "echo": v }) })
        .expect("serve");
    let c = Behaviour::<Cbor>::new(&node, full("/cbor/1"), Config::default()).expect("rr");
    c.serve(|_, s: String| async move { format!("hello {s}") })
        .expect("serve");
    in_time(async {
        let client = connect(&addr, node.peer_id()).await;
        // The wire of rust-libp2p's codecs: the encoded value, then the end of the stream.
        for n in 0..5 {
            let request = serde_json::json!({ "n": n });
            let back = client
                .exchange("/json/1", &serde_json::to_vec(&request).expect("json"))
                .await
                .expect("answer");
            let answer: serde_json::Value = serde_json::from_slice(&back).expect("json answer");
            assert_eq!(answer, serde_json::json!({ "echo": request }));
        }
        let mut request = Vec::new();
        cbor4ii::serde::to_writer(&mut request, &"web".to_owned()).expect("cbor");
        let back = client.exchange("/cbor/1", &request).await.expect("answer");
        let answer: String = cbor4ii::serde::from_slice(&back).expect("cbor answer");
        assert_eq!(answer, "hello web");
    })
    .await;
}

#[cfg(feature = "prost")]
#[tokio::test]
async fn rpc_over_a_webtransport_stream() {
    use bytes::Bytes;
    use missive::rpc::echo::{self, EchoService, Request, Response};
    use missive::rpc::{Client as RpcClient, ClientConfig, Server};
    const RPC: StreamProtocol = StreamProtocol::new("/missive/rpc-echo/1.0.0");
    let (node, addr) = listener(NodeConfig::default()).await;
    let mut incoming = node.stream_control().accept(RPC).expect("register");
    in_time(async {
        let client = connect(&addr, node.peer_id()).await;
        let ((early, io), accepted) = tokio::join!(
            async { client.open(RPC.as_str()).await.expect("rpc stream") },
            incoming.next()
        );
        assert!(early.is_empty());
        let (from, server_io) = accepted.expect("an inbound stream");
        assert_eq!(from, client.peer_id());
        let server = Server::default();
        let serving =
            tokio::spawn(server.connection(server_io, echo::ServerCodec::default(), EchoService));
        let rpc: RpcClient<Request, Response> =
            RpcClient::spawn(io, echo::ClientCodec::default(), ClientConfig::default());
        let calls = (0..64u32).map(|i| {
            let rpc = rpc.clone();
            async move {
                let r = rpc.call(Request::unary(i.to_string())).await.expect("call");
                assert_eq!(r.body, Bytes::from(i.to_string()));
            }
        });
        futures_util::future::join_all(calls).await;
        let items: Vec<_> = rpc
            .server_stream(Request::stream("s", 50))
            .await
            .expect("stream")
            .collect()
            .await;
        assert_eq!(items.len(), 50);
        server.shutdown().await;
        serving.await.expect("join").expect("clean close");
    })
    .await;
}

#[tokio::test]
async fn wrong_paths_and_types_are_refused_and_the_listener_serves_on() {
    let (node, addr) = listener(NodeConfig::default()).await;
    in_time(async {
        for path in [
            "/",
            "/other?type=noise",
            "/.well-known/libp2p-webtransport",
            "/.well-known/libp2p-webtransport?type=tls",
            "/.well-known/libp2p-webtransport?type=noise&type=noise",
        ] {
            let refused = connect_with(&addr, node.peer_id(), path, &[]).await;
            let err = refused
                .err()
                .unwrap_or_else(|| panic!("{path} was accepted"));
            assert!(err.contains("rejected"), "{path}: {err}");
        }
        let client = connect(&addr, node.peer_id()).await;
        client
            .open("/ipfs/ping/1.0.0")
            .await
            .expect("the listener still serves");
    })
    .await;
}

#[tokio::test]
async fn a_certhash_the_server_does_not_list_fails_the_clients_handshake() {
    let (node, addr) = listener(NodeConfig::default()).await;
    let mut expected = certhashes(&addr);
    let mut forged = expected[0].clone();
    forged[5] ^= 0xff;
    expected.push(forged.clone());
    let err = in_time(connect_with(
        &addr,
        node.peer_id(),
        "/.well-known/libp2p-webtransport?type=noise",
        &expected,
    ))
    .await
    .err()
    .expect("the client refuses the server");
    assert!(err.contains("lack the certificate hash"), "{err}");
    // And a certificate hash that is not the server's fails TLS itself, as in a browser.
    let endpoint = endpoint(&[forged]);
    let url = format!(
        "https://127.0.0.1:{}/.well-known/libp2p-webtransport?type=noise",
        port(&addr)
    );
    assert!(in_time(endpoint.connect(url)).await.is_err());
}

#[tokio::test]
async fn a_client_that_never_finishes_noise_is_closed_at_the_deadline() {
    let setup = Duration::from_secs(1);
    let (node, addr) = listener(NodeConfig::default().with_connection_setup_timeout(setup)).await;
    let mut events = node.events();
    let endpoint = endpoint(&certhashes(&addr));
    let url = format!(
        "https://127.0.0.1:{}/.well-known/libp2p-webtransport?type=noise",
        port(&addr)
    );
    let conn = in_time(endpoint.connect(url)).await.expect("session");
    let (mut send, _recv) = conn.open_bi().await.expect("open").await.expect("opened");
    send.write_all(&[0, 32])
        .await
        .expect("half a first message");
    let started = Instant::now();
    in_time(conn.closed()).await;
    let waited = started.elapsed();
    assert!(waited < setup * 4, "closed after {waited:?}");
    let mut timed_out = false;
    for _ in 0..16 {
        if let Some(NodeEvent::IncomingConnectionError { error, .. }) = in_time(events.next()).await
        {
            timed_out = matches!(*error, IncomingError::Upgrade(UpgradeError::Timeout));
            break;
        }
    }
    assert!(timed_out, "the node reports the deadline");
    // Someone else is served meanwhile and after.
    let client = in_time(connect(&addr, node.peer_id())).await;
    in_time(client.open("/ipfs/ping/1.0.0"))
        .await
        .expect("served");
}

#[tokio::test]
async fn many_stalled_sessions_cannot_lock_an_honest_client_out() {
    let (node, addr) = listener(NodeConfig::default().with_max_pending_incoming(4)).await;
    let mut events = node.events();
    let url = format!(
        "https://127.0.0.1:{}/.well-known/libp2p-webtransport?type=noise",
        port(&addr)
    );
    let mut stalled = Vec::new();
    for _ in 0..12 {
        let endpoint = endpoint(&certhashes(&addr));
        // Sessions that open and then say nothing: each holds a place until it yields.
        if let Ok(conn) = in_time(endpoint.connect(url.clone())).await {
            stalled.push((endpoint, conn));
        }
    }
    let client = in_time(connect(&addr, node.peer_id())).await;
    in_time(client.open("/ipfs/ping/1.0.0"))
        .await
        .expect("the honest client is served");
    let mut evicted = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
        if let NodeEvent::IncomingConnectionError { error, .. } = e
            && matches!(*error, IncomingError::TooManyPendingHandshakes)
        {
            evicted += 1;
        }
    }
    assert!(evicted >= 8, "{evicted} stalled sessions yielded");
    drop(stalled);
}

/// Accepts any server certificate: the raw client below only needs a QUIC handshake.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client certificates are optional on a socket that serves WebTransport (browsers have
/// none), so a `libp2p` QUIC client without one completes TLS; the node must still refuse
/// it, and serve real QUIC peers on the same socket.
#[tokio::test]
async fn a_quic_client_without_a_certificate_is_refused_on_a_webtransport_socket() {
    use std::sync::Arc;
    let (node, addr) = listener(NodeConfig::default()).await;
    let mut events = node.events();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls 1.3")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"libp2p".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).expect("quic");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port(&addr)));
    let conn = in_time(
        endpoint
            .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), to, "l")
            .expect("connect"),
    )
    .await
    .expect("TLS completes without a client certificate");
    in_time(conn.closed()).await;
    let error = in_time(async {
        loop {
            match events.next().await.expect("events") {
                NodeEvent::IncomingConnectionError { error, .. } => break error,
                NodeEvent::ConnectionEstablished { .. } => panic!("a peer without a certificate"),
                _ => {}
            }
        }
    })
    .await;
    assert!(error.to_string().contains("no certificate"), "{error}");
    // A node dials the QUIC address of the same socket.
    let quic: Multiaddr = format!("/ip4/127.0.0.1/udp/{}/quic-v1", port(&addr))
        .parse()
        .expect("addr");
    let other = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let peer = in_time(other.dial(quic))
        .await
        .expect("a QUIC peer is served");
    in_time(other.ping(peer)).await.expect("and answered");
}

/// The node's stream limit counts libp2p streams only: the session's CONNECT and Noise
/// streams, open for its whole life, do not take one of them.
#[tokio::test]
async fn the_stream_limit_counts_libp2p_streams_not_the_sessions_own() {
    let (node, addr) = listener(NodeConfig::default().with_max_streams_per_connection(2)).await;
    serve_echo(&node);
    in_time(async {
        let client = connect(&addr, node.peer_id()).await;
        // Two streams open at once, each echoing before either closes.
        let (_, mut first) = client.open("/echo/1.0.0").await.expect("first stream");
        let (_, mut second) = client.open("/echo/1.0.0").await.expect("second stream");
        for s in [&mut first, &mut second] {
            s.write_all(b"open").await.expect("write");
            s.shutdown().await.expect("finish");
        }
        for s in [&mut first, &mut second] {
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("echo");
            assert_eq!(back, b"open");
        }
    })
    .await;
}
