//! One conformance suite, every transport: each check runs over TCP + Noise + yamux, TCP +
//! libp2p-tls + yamux, QUIC, and WebSocket (`ws` and `wss`, each with Noise and libp2p-tls), with
//! the same code. A check is an `async fn(Transport)`; the [`on_every_transport!`] macro makes one
//! test per transport of it (`tcp_noise_<check>`, `tcp_tls_<check>`, `quic_<check>`), and
//! [`on_websocket!`] the WebSocket ones (`ws_noise_<check>`, `ws_tls_<check>`,
//! `wss_noise_<check>`, `wss_tls_<check>`).
#![cfg(all(feature = "cbor", feature = "json"))]

use std::io;
use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId, Protocol, Security};
use missive::protocols::{identify, perf};
use missive::request_response::{
    Behaviour, Config, Event, Events, InboundFailure, Message, OneWay, OutboundFailure,
    ProtocolSupport, ResponseChannel, cbor, json,
};
use missive::stream::{OpenStreamError, StreamProtocol};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const DEADLINE: Duration = Duration::from_secs(20);
const MIB: usize = 1024 * 1024;

type Cbor = cbor::Codec<String, String>;
type Json = json::Codec<serde_json::Value, serde_json::Value>;

/// The transports of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `/tcp` with `/noise` and `/yamux/1.0.0`.
    TcpNoise,
    /// `/tcp` with `/tls/1.0.0` and `/yamux/1.0.0`.
    TcpTls,
    /// `/udp/<port>/quic-v1`.
    Quic,
    /// `/tcp/<port>/ws` with the given security protocol.
    Ws(Security),
    /// `/tcp/<port>/tls/ws` (TLS under the WebSocket) with the given security protocol.
    Wss(Security),
}

/// The `wss` certificate both ends of a test use (the dialer trusts it).
fn wss_certificate() -> &'static missive::transport::tls::SelfSigned {
    static CERT: std::sync::OnceLock<missive::transport::tls::SelfSigned> =
        std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        missive::transport::tls::SelfSigned::generate(&["localhost", "127.0.0.1"])
            .expect("certificate")
    })
}

impl Transport {
    /// The configuration of a node on this transport (both ends use it).
    fn config(self) -> NodeConfig {
        match self {
            Transport::TcpNoise => NodeConfig::default().with_security(&[Security::Noise]),
            Transport::TcpTls => NodeConfig::default().with_security(&[Security::Tls]),
            Transport::Quic => NodeConfig::default(),
            Transport::Ws(security) => NodeConfig::default().with_security(&[security]),
            Transport::Wss(security) => {
                let cert = wss_certificate();
                NodeConfig::default()
                    .with_security(&[security])
                    .with_websocket_tls_server(cert.server_config().expect("server config"))
                    .with_websocket_tls_client(cert.client_config().expect("client config"))
            }
        }
    }

    /// The loopback address to listen on (port 0).
    fn listen_addr(self) -> Multiaddr {
        match self {
            Transport::TcpNoise | Transport::TcpTls => "/ip4/127.0.0.1/tcp/0",
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
            Transport::Ws(_) => "/ip4/127.0.0.1/tcp/0/ws",
            Transport::Wss(_) => "/ip4/127.0.0.1/tcp/0/tls/ws",
        }
        .parse()
        .expect("multiaddr")
    }

    /// Whether `addr` is an address of this transport.
    fn is_own(self, addr: &Multiaddr) -> bool {
        let quic = addr.iter().any(|p| matches!(p, Protocol::QuicV1));
        let tcp = addr.iter().any(|p| matches!(p, Protocol::Tcp(_)));
        let ws = addr
            .iter()
            .any(|p| matches!(p, Protocol::Ws | Protocol::Wss));
        let tls = addr
            .iter()
            .any(|p| matches!(p, Protocol::Tls | Protocol::Wss));
        match self {
            Transport::TcpNoise | Transport::TcpTls => tcp && !quic && !ws,
            Transport::Quic => quic && !tcp,
            Transport::Ws(_) => tcp && ws && !tls,
            Transport::Wss(_) => tcp && ws && tls,
        }
    }
}

/// Makes one test per transport of each `check`: `check => (tcp_noise_name, tcp_tls_name,
/// quic_name)`, with attributes for all three before `check` and for one before its name.
/// Each runs within [`DEADLINE`].
macro_rules! on_every_transport {
    ($(
        $(#[$attr:meta])*
        $check:ident => (
            $(#[$noise_attr:meta])* $noise:ident,
            $(#[$tls_attr:meta])* $tls:ident,
            $(#[$quic_attr:meta])* $quic:ident $(,)?
        );
    )+) => {$(
        $(#[$attr])*
        $(#[$noise_attr])*
        #[tokio::test]
        async fn $noise() {
            in_time($check(Transport::TcpNoise)).await;
        }
        $(#[$attr])*
        $(#[$tls_attr])*
        #[tokio::test]
        async fn $tls() {
            in_time($check(Transport::TcpTls)).await;
        }
        $(#[$attr])*
        $(#[$quic_attr])*
        #[tokio::test]
        async fn $quic() {
            in_time($check(Transport::Quic)).await;
        }
    )+};
}

on_every_transport! {
    ping => (tcp_noise_ping, tcp_tls_ping, quic_ping);
    identify => (tcp_noise_identify, tcp_tls_identify, quic_identify);
    perf => (tcp_noise_perf, tcp_tls_perf, quic_perf);
    stream_echo => (tcp_noise_stream_echo, tcp_tls_stream_echo, quic_stream_echo);
    rr_cbor => (tcp_noise_rr_cbor, tcp_tls_rr_cbor, quic_rr_cbor);
    rr_json => (tcp_noise_rr_json, tcp_tls_rr_json, quic_rr_json);
    rr_one_way => (
        tcp_noise_rr_one_way,
        tcp_tls_rr_one_way,
        quic_rr_one_way
    );
    rr_one_way_confirmed => (
        tcp_noise_rr_one_way_confirmed,
        tcp_tls_rr_one_way_confirmed,
        quic_rr_one_way_confirmed
    );
    rr_outbound_stream_limit => (
        tcp_noise_rr_outbound_stream_limit,
        tcp_tls_rr_outbound_stream_limit,
        quic_rr_outbound_stream_limit
    );
    rr_inbound_stream_limit => (
        tcp_noise_rr_inbound_stream_limit,
        tcp_tls_rr_inbound_stream_limit,
        quic_rr_inbound_stream_limit
    );
    #[cfg(feature = "prost")]
    rpc_over_a_node_stream => (
        tcp_noise_rpc_over_a_node_stream,
        tcp_tls_rpc_over_a_node_stream,
        quic_rpc_over_a_node_stream
    );
}

/// Makes the WebSocket tests of each `check`: `check => (ws_noise_name, ws_tls_name,
/// wss_noise_name, wss_tls_name)`, with attributes for all four before `check`.
macro_rules! on_websocket {
    ($(
        $(#[$attr:meta])*
        $check:ident => ($ws_noise:ident, $ws_tls:ident, $wss_noise:ident, $wss_tls:ident $(,)?);
    )+) => {$(
        $(#[$attr])*
        #[tokio::test]
        async fn $ws_noise() {
            in_time($check(Transport::Ws(Security::Noise))).await;
        }
        $(#[$attr])*
        #[tokio::test]
        async fn $ws_tls() {
            in_time($check(Transport::Ws(Security::Tls))).await;
        }
        $(#[$attr])*
        #[tokio::test]
        async fn $wss_noise() {
            in_time($check(Transport::Wss(Security::Noise))).await;
        }
        $(#[$attr])*
        #[tokio::test]
        async fn $wss_tls() {
            in_time($check(Transport::Wss(Security::Tls))).await;
        }
    )+};
}

#[cfg(feature = "websocket")]
mod websocket {
    use super::*;

    on_websocket! {
        ping => (ws_noise_ping, ws_tls_ping, wss_noise_ping, wss_tls_ping);
        identify => (ws_noise_identify, ws_tls_identify, wss_noise_identify, wss_tls_identify);
        perf => (ws_noise_perf, ws_tls_perf, wss_noise_perf, wss_tls_perf);
        stream_echo => (
            ws_noise_stream_echo,
            ws_tls_stream_echo,
            wss_noise_stream_echo,
            wss_tls_stream_echo
        );
        rr_cbor => (ws_noise_rr_cbor, ws_tls_rr_cbor, wss_noise_rr_cbor, wss_tls_rr_cbor);
        rr_json => (ws_noise_rr_json, ws_tls_rr_json, wss_noise_rr_json, wss_tls_rr_json);
        rr_one_way => (
            ws_noise_rr_one_way,
            ws_tls_rr_one_way,
            wss_noise_rr_one_way,
            wss_tls_rr_one_way
        );
        rr_one_way_confirmed => (
            ws_noise_rr_one_way_confirmed,
            ws_tls_rr_one_way_confirmed,
            wss_noise_rr_one_way_confirmed,
            wss_tls_rr_one_way_confirmed
        );
        rr_outbound_stream_limit => (
            ws_noise_rr_outbound_stream_limit,
            ws_tls_rr_outbound_stream_limit,
            wss_noise_rr_outbound_stream_limit,
            wss_tls_rr_outbound_stream_limit
        );
        rr_inbound_stream_limit => (
            ws_noise_rr_inbound_stream_limit,
            ws_tls_rr_inbound_stream_limit,
            wss_noise_rr_inbound_stream_limit,
            wss_tls_rr_inbound_stream_limit
        );
        #[cfg(feature = "prost")]
        rpc_over_a_node_stream => (
            ws_noise_rpc_over_a_node_stream,
            ws_tls_rpc_over_a_node_stream,
            wss_noise_rpc_over_a_node_stream,
            wss_tls_rpc_over_a_node_stream
        );
    }
}

async fn in_time(check: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(DEADLINE, check)
        .await
        .expect("the check finished in time");
}

async fn node(config: NodeConfig) -> Node {
    Node::new(Keypair::generate(), config).await.expect("node")
}

/// A listening node `a`, and a node `b` on the same transport that knows `a`'s address.
struct Pair {
    a: Node,
    b: Node,
    addr: Multiaddr,
}

async fn pair(t: Transport) -> Pair {
    pair_with(t, t.config(), t.config()).await
}

async fn pair_with(t: Transport, a: NodeConfig, b: NodeConfig) -> Pair {
    let a = node(a).await;
    let addr = a.listen(t.listen_addr()).await.expect("listen");
    assert!(t.is_own(&addr), "{t:?} listens on {addr}");
    let b = node(b).await;
    b.add_address(a.peer_id(), addr.clone());
    Pair { a, b, addr }
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

async fn echo_once(client: &Node, peer: PeerId, msg: &[u8]) -> Result<Vec<u8>, OpenStreamError> {
    let mut s = client.stream_control().open_stream(peer, ECHO).await?;
    // Write and read at once: a message larger than the windows must not deadlock.
    let (mut r, mut w) = tokio::io::split(&mut s);
    let write = async {
        w.write_all(msg).await?;
        w.shutdown().await
    };
    let mut back = Vec::with_capacity(msg.len());
    let read = r.read_to_end(&mut back);
    let (written, read) = tokio::join!(write, read);
    written.map_err(OpenStreamError::Io)?;
    read.map_err(OpenStreamError::Io)?;
    Ok(back)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// --- ping -----------------------------------------------------------------------------------

/// The dialer pings the listener, and the listener pings back over the same connection.
async fn ping(t: Transport) {
    let Pair { a, b, addr } = pair(t).await;
    let peer = b.dial(addr).await.expect("dial");
    assert_eq!(peer, a.peer_id());
    for _ in 0..3 {
        let rtt = b.ping(peer).await.expect("b pings a");
        assert!(rtt < DEADLINE, "{rtt:?}");
    }
    a.ping(b.peer_id()).await.expect("a pings b");
    assert_eq!(b.connected_peers(), vec![a.peer_id()]);
}

// --- identify -------------------------------------------------------------------------------

/// Identify tells the dialer the listener's key, protocols and listen addresses (on this
/// transport) and the address the listener sees the dialer at; and tells the listener the
/// address the dialer dialed.
async fn identify(t: Transport) {
    let Pair { a, b, addr } = pair(t).await;
    serve_echo(&a);
    let mut a_events = a.events();
    let peer = b.dial(addr.clone()).await.expect("dial");
    let mut seen_at = None;
    for _ in 0..16 {
        if let Some(NodeEvent::ConnectionEstablished { remote_addr, .. }) = a_events.next().await {
            seen_at = Some(remote_addr);
            break;
        }
    }
    let seen_at = seen_at.expect("a saw the connection");
    assert!(t.is_own(&seen_at), "{seen_at}");

    let info = identify::request(&b.stream_control(), peer)
        .await
        .expect("b identifies a");
    assert_eq!(info.peer_id(), a.peer_id());
    assert_eq!(info.agent_version, identify::AGENT_VERSION);
    assert_eq!(info.listen_addrs, vec![addr.clone()]);
    assert_eq!(info.unsupported_addrs, 0);
    assert_eq!(info.observed_addr, Some(seen_at));
    let names: Vec<&str> = info.protocols.iter().map(|p| p.as_str()).collect();
    for expected in ["/echo/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
        assert!(names.contains(&expected), "{names:?}");
    }

    let info = identify::request(&a.stream_control(), b.peer_id())
        .await
        .expect("a identifies b");
    assert_eq!(info.peer_id(), b.peer_id());
    assert_eq!(info.observed_addr, Some(addr), "the address b dialed");
    assert!(info.listen_addrs.is_empty(), "b listens nowhere");
}

// --- perf -----------------------------------------------------------------------------------

/// `/perf/1.0.0` moves the sizes asked for in both directions where it is enabled, and is
/// refused where it is not.
async fn perf(t: Transport) {
    let Pair { a, b, addr } = pair_with(t, t.config().with_perf(true), t.config()).await;
    let peer = b.dial(addr).await.expect("dial");
    let r = perf::run(&b.stream_control(), peer, 300_000, MIB as u64)
        .await
        .expect("perf");
    assert_eq!((r.uploaded, r.downloaded), (300_000, MIB as u64));
    let r = perf::run(&b.stream_control(), peer, 0, 0)
        .await
        .expect("an empty run");
    assert_eq!((r.uploaded, r.downloaded), (0, 0));
    let refused = perf::run(&a.stream_control(), b.peer_id(), 1, 1).await;
    assert!(
        matches!(
            refused,
            Err(perf::PerfError::Open(OpenStreamError::UnsupportedProtocol(
                _
            )))
        ),
        "b does not serve perf: {refused:?}"
    );
    b.ping(peer).await.expect("the connection lives on");
}

// --- stream::Control ------------------------------------------------------------------------

/// A 1 MiB echo each way (dialer to listener, listener to dialer), several echoes at once on
/// one connection, and an unsupported protocol refused without harm to the connection.
async fn stream_echo(t: Transport) {
    let Pair { a, b, addr } = pair(t).await;
    serve_echo(&a);
    serve_echo(&b);
    let mut a_events = a.events();
    let peer = b.dial(addr).await.expect("dial");
    let body = pattern(MIB);
    assert!(
        echo_once(&b, peer, &body).await.expect("echo") == body,
        "the echo from a differs"
    );
    assert!(
        echo_once(&a, b.peer_id(), &body).await.expect("echo") == body,
        "the echo from b differs"
    );
    let at_once = (0..8u8).map(|i| {
        let b = &b;
        async move {
            let msg = vec![i; 64 * 1024 + usize::from(i)];
            assert_eq!(echo_once(b, peer, &msg).await.expect("echo"), msg);
        }
    });
    futures_util::future::join_all(at_once).await;
    let err = b
        .stream_control()
        .open_stream(peer, StreamProtocol::new("/nope/1.0.0"))
        .await
        .expect_err("unsupported");
    assert!(
        matches!(err, OpenStreamError::UnsupportedProtocol(_)),
        "{err}"
    );
    assert_eq!(echo_once(&b, peer, b"still").await.expect("echo"), b"still");
    // One connection carried all of it.
    let mut established = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), a_events.next()).await {
        if matches!(e, NodeEvent::ConnectionEstablished { .. }) {
            established += 1;
        }
    }
    assert_eq!(established, 1);
}

// --- request-response -----------------------------------------------------------------------

fn full(name: &str) -> [(String, ProtocolSupport); 1] {
    [(name.to_owned(), ProtocolSupport::Full)]
}

async fn next<Req, Resp>(events: &mut Events<Req, Resp>) -> Event<Req, Resp> {
    tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

/// The next inbound request and its channel, skipping other events (bounded).
async fn next_request<Req: std::fmt::Debug, Resp: std::fmt::Debug>(
    events: &mut Events<Req, Resp>,
) -> (Req, ResponseChannel<Resp>) {
    for _ in 0..16 {
        match next(events).await {
            Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => return (request, channel),
            // Earlier requests answered, or (one-way) their channels dropped.
            Event::ResponseSent { .. }
            | Event::InboundFailure {
                error: InboundFailure::ResponseOmission,
                ..
            } => continue,
            other => panic!("expected a request, got {other:?}"),
        }
    }
    panic!("no request among the events")
}

/// CBOR requests one after another and at once, one of them 512 KiB.
async fn rr_cbor(t: Transport) {
    let Pair { a, b, .. } = pair(t).await;
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    server
        .serve(|_, r: String| async move { format!("hello {r}") })
        .expect("serve");
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    for i in 0..10 {
        let answer = client
            .request(a.peer_id(), format!("{i}"))
            .await
            .expect("answered");
        assert_eq!(answer, format!("hello {i}"));
    }
    let at_once = (0..32).map(|i| client.request(a.peer_id(), format!("c{i}")));
    for (i, answer) in futures_util::future::join_all(at_once)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(answer.expect("answered"), format!("hello c{i}"));
    }
    let big = "x".repeat(512 * 1024);
    let answer = client
        .request(a.peer_id(), big.clone())
        .await
        .expect("answered");
    assert_eq!(answer.len(), big.len() + "hello ".len());
}

/// JSON requests, answered through the event stream.
async fn rr_json(t: Transport) {
    let Pair { a, b, .. } = pair(t).await;
    let server = Behaviour::<Json>::new(&a, full("/json/1"), Config::default()).expect("rr");
    let mut events = server.events().expect("events");
    let answering = tokio::spawn({
        let server = server.clone();
        async move {
            for _ in 0..5 {
                let (req, channel) = next_request(&mut events).await;
                let answer =
                    serde_json::json!({ "echo": req, "n": req["n"].as_u64().map(|n| n * 2) });
                server.send_response(channel, answer).expect("channel open");
            }
        }
    });
    let client = Behaviour::<Json>::new(&b, full("/json/1"), Config::default()).expect("rr");
    for n in 0..5u64 {
        let req = serde_json::json!({ "n": n, "text": "ünïcode ✓" });
        let answer = client
            .request(a.peer_id(), req.clone())
            .await
            .expect("answered");
        assert_eq!(answer, serde_json::json!({ "echo": req, "n": n * 2 }));
    }
    answering.await.expect("server task");
}

/// A one-way protocol (`OneWay<cbor>`): the requester is done once its request is written, the
/// responder gets every request, in order.
async fn rr_one_way(t: Transport) {
    let Pair { a, b, .. } = pair(t).await;
    let server = Behaviour::<OneWay<Cbor>>::new(
        &a,
        [("/notify/1".to_owned(), ProtocolSupport::Inbound)],
        Config::default(),
    )
    .expect("rr");
    let mut events = server.events().expect("events");
    let client = Behaviour::<OneWay<Cbor>>::new(
        &b,
        [("/notify/1".to_owned(), ProtocolSupport::Outbound)],
        Config::default(),
    )
    .expect("rr");
    for i in 0..10 {
        let () = client
            .request(a.peer_id(), format!("note {i}"))
            .await
            .expect("written");
    }
    for i in 0..10 {
        let (req, channel) = next_request(&mut events).await;
        assert_eq!(req, format!("note {i}"));
        drop(channel); // a one-way responder drops the channel
    }
}

/// A one-way protocol with `Version::V1`: the requester waits for the listener to accept the
/// protocol before it writes, learns of a refusal, and the responder gets every request.
async fn rr_one_way_confirmed(t: Transport) {
    let Pair { a, b, .. } = pair(t).await;
    let server = Behaviour::<OneWay<Cbor>>::new(
        &a,
        [("/notify/1".to_owned(), ProtocolSupport::Inbound)],
        Config::default(),
    )
    .expect("rr");
    let mut events = server.events().expect("events");
    let config = Config::default().with_version(missive::p2p::negotiate::Version::V1);
    let client = Behaviour::<OneWay<Cbor>>::new(
        &b,
        [("/notify/1".to_owned(), ProtocolSupport::Outbound)],
        config.clone(),
    )
    .expect("rr");
    for i in 0..10 {
        let () = client
            .request(a.peer_id(), format!("note {i}"))
            .await
            .expect("written");
    }
    for i in 0..10 {
        let (req, channel) = next_request(&mut events).await;
        assert_eq!(req, format!("note {i}"));
        drop(channel);
    }
    let refused = Behaviour::<OneWay<Cbor>>::new(
        &b,
        [("/nobody/1".to_owned(), ProtocolSupport::Outbound)],
        config,
    )
    .expect("rr");
    let r = refused.request(a.peer_id(), "lost".to_owned()).await;
    assert!(
        matches!(r, Err(OutboundFailure::UnsupportedProtocols)),
        "{r:?}"
    );
}

/// Sends `n` requests with `send_request` and collects the event of each.
async fn outcomes(
    client: &Behaviour<Cbor>,
    events: &mut Events<String, String>,
    peer: PeerId,
    n: usize,
) -> Vec<Event<String, String>> {
    for i in 0..n {
        client.send_request(peer, format!("r{i}"));
    }
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(events).await);
    }
    out
}

fn is_response(e: &Event<String, String>) -> bool {
    matches!(
        e,
        Event::Message {
            message: Message::Response { .. },
            ..
        }
    )
}

/// The requester's per-connection stream limit: requests past it fail at once with
/// `TooManyStreams`; the held ones still complete, and new ones do afterwards.
async fn rr_outbound_stream_limit(t: Transport) {
    let Pair { a, b, .. } = pair(t).await;
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(
        &b,
        full("/greet/1"),
        Config::default().with_max_concurrent_streams(2),
    )
    .expect("rr");
    let mut client_events = client.events().expect("events");
    b.dial_peer(a.peer_id()).await.expect("connected");
    client.send_request(a.peer_id(), "held-1".to_owned());
    client.send_request(a.peer_id(), "held-2".to_owned());
    let held = [
        next_request(&mut server_events).await,
        next_request(&mut server_events).await,
    ];
    for e in outcomes(&client, &mut client_events, a.peer_id(), 3).await {
        assert!(
            matches!(
                e,
                Event::OutboundFailure {
                    error: OutboundFailure::TooManyStreams,
                    connection_id: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }
    for (req, channel) in held {
        server.send_response(channel, req).expect("open");
    }
    for _ in 0..2 {
        let e = next(&mut client_events).await;
        assert!(is_response(&e), "{e:?}");
    }
    // The slots are free again.
    client.send_request(a.peer_id(), "after".to_owned());
    let (req, channel) = next_request(&mut server_events).await;
    server.send_response(channel, req).expect("open");
    let e = next(&mut client_events).await;
    assert!(is_response(&e), "{e:?}");
}

/// The responder's per-connection stream limit: streams past it are reset, the responder
/// reports `TooManyStreams` for each and the requester sees a reset stream; the connection
/// and the held requests live on.
async fn rr_inbound_stream_limit(t: Transport) {
    let Pair { a, b, .. } = pair(t).await;
    let server = Behaviour::<Cbor>::new(
        &a,
        full("/greet/1"),
        Config::default().with_max_concurrent_streams(2),
    )
    .expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    let mut client_events = client.events().expect("events");
    client.send_request(a.peer_id(), "held-1".to_owned());
    client.send_request(a.peer_id(), "held-2".to_owned());
    let held = [
        next_request(&mut server_events).await,
        next_request(&mut server_events).await,
    ];
    for e in outcomes(&client, &mut client_events, a.peer_id(), 3).await {
        match e {
            Event::OutboundFailure {
                error: OutboundFailure::Io(e),
                connection_id: Some(_),
                ..
            } => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::WriteZero
                ),
                "not a reset stream: {e:?}"
            ),
            other => panic!("expected a reset stream, got {other:?}"),
        }
    }
    for _ in 0..3 {
        let e = next(&mut server_events).await;
        assert!(
            matches!(
                e,
                Event::InboundFailure {
                    error: InboundFailure::TooManyStreams,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    for (req, channel) in held {
        server.send_response(channel, req).expect("open");
    }
    for _ in 0..2 {
        let e = next(&mut client_events).await;
        assert!(is_response(&e), "{e:?}");
    }
    assert!(b.is_connected(&a.peer_id()));
}

// --- rpc over a node stream ------------------------------------------------------------------

/// A node stream carries an rpc connection like any socket: concurrent unary calls, a server
/// stream and a 1 MiB call; the rpc's end closes that stream only.
#[cfg(feature = "prost")]
async fn rpc_over_a_node_stream(t: Transport) {
    use bytes::Bytes;
    use missive::rpc::echo::{self, EchoService, Request, Response};
    use missive::rpc::{CallError, Client, ClientConfig, Server};
    const RPC: StreamProtocol = StreamProtocol::new("/missive/rpc-echo/1.0.0");

    let Pair { a, b, addr } = pair(t).await;
    let mut incoming = a.stream_control().accept(RPC).expect("register");
    let peer = b.dial(addr).await.expect("dial");
    let control = b.stream_control();
    let (client_io, accepted) = tokio::join!(control.open_stream(peer, RPC), incoming.next());
    let (from, server_io) = accepted.expect("an inbound stream");
    assert_eq!(from, b.peer_id());

    let server = Server::default();
    let serving =
        tokio::spawn(server.connection(server_io, echo::ServerCodec::default(), EchoService));
    let client: Client<Request, Response> = Client::spawn(
        client_io.expect("open stream"),
        echo::ClientCodec::default(),
        ClientConfig::default(),
    );
    let calls = (0..64u32).map(|i| {
        let client = client.clone();
        async move {
            let r = client
                .call(Request::unary(i.to_string()))
                .await
                .expect("call");
            assert_eq!(r.body, Bytes::from(i.to_string()));
        }
    });
    futures_util::future::join_all(calls).await;
    let items: Vec<_> = client
        .server_stream(Request::stream("s", 50))
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(items.len(), 50);
    let big = Bytes::from(pattern(MIB));
    let r = client.call(Request::unary(big.clone())).await.expect("big");
    assert!(r.body == big, "the 1 MiB answer differs");
    server.shutdown().await;
    serving.await.expect("join").expect("clean close");
    let r = client.call(Request::unary("after")).await;
    assert!(matches!(r, Err(CallError::ConnectionClosed)), "{r:?}");
    assert!(b.is_connected(&peer), "the node connection lives on");
    b.ping(peer).await.expect("and works");
}
