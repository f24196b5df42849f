//! The node over QUIC (`/udp/<port>/quic-v1`): listen and dial on loopback, ping, identify,
//! stream echo, request-response, stream ends, limits, and a dial to a peer known by a TCP and
//! a QUIC address.
#![cfg(feature = "cbor")]

use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::{DialError, Keypair, Multiaddr, Node, NodeConfig, Protocol};
use missive::request_response::{Behaviour, Config, ProtocolSupport, cbor};
use missive::stream::StreamProtocol;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const DEADLINE: Duration = Duration::from_secs(20);
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

async fn node(config: NodeConfig) -> Node {
    Node::new(Keypair::generate(), config).await.expect("node")
}

async fn quic_listener() -> (Node, Multiaddr) {
    let n = node(NodeConfig::default()).await;
    let addr = n.listen(QUIC.parse().expect("addr")).await.expect("listen");
    (n, addr)
}

fn serve_echo(n: &Node) {
    let mut incoming = n.stream_control().accept(ECHO).expect("accept");
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

#[tokio::test]
async fn quic_listen_reports_the_real_port_and_a_dial_proves_the_peer() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = quic_listener().await;
        let port = addr.iter().find_map(|p| match p {
            Protocol::Udp(port) => Some(*port),
            _ => None,
        });
        assert!(port.is_some_and(|p| p != 0), "{addr}");
        assert!(addr.to_string().ends_with("/quic-v1"), "{addr}");
        assert!(a.listen_addrs().contains(&addr));
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr.clone()).await.expect("dial");
        assert_eq!(peer, a.peer_id());
        let rtt = b.ping(peer).await.expect("ping");
        assert!(rtt < DEADLINE);
        // A dial naming another peer is refused with that reason.
        let wrong = Keypair::generate().peer_id();
        let c = node(NodeConfig::default()).await;
        match c.dial(addr.with(Protocol::P2p(wrong))).await {
            Err(DialError::WrongPeer { expected, actual }) => {
                assert_eq!((expected, actual), (wrong, a.peer_id()));
            }
            other => panic!("expected WrongPeer, got {other:?}"),
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_stream_echo_of_a_megabyte_and_identify_work() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = quic_listener().await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr.clone()).await.expect("dial");
        let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = b
            .stream_control()
            .open_stream(peer, ECHO)
            .await
            .expect("open");
        s.write_all(&body).await.expect("write");
        s.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read to a clean end");
        assert!(back == body, "the echo differs");
        let info = missive::protocols::identify::request(&b.stream_control(), peer)
            .await
            .expect("identify");
        assert_eq!(info.peer_id(), a.peer_id());
        assert!(info.listen_addrs.contains(&addr), "{:?}", info.listen_addrs);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_request_response_is_answered() {
    type Cbor = cbor::Codec<String, String>;
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = quic_listener().await;
        let protocols = [("/greet/1".to_owned(), ProtocolSupport::Full)];
        let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
        server
            .serve(|_, r: String| async move { format!("hello {r}") })
            .expect("serve");
        let b = node(NodeConfig::default()).await;
        let client = Behaviour::<Cbor>::new(&b, protocols, Config::default()).expect("rr");
        for i in 0..20 {
            let answer = client
                .request_with_addresses(a.peer_id(), format!("{i}"), std::slice::from_ref(&addr))
                .await
                .expect("answered");
            assert_eq!(answer, format!("hello {i}"));
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_closed_connection_is_an_error_on_its_streams_never_a_clean_end() {
    tokio::time::timeout(DEADLINE, async {
        let (a, addr) = quic_listener().await;
        let mut incoming = a.stream_control().accept(ECHO).expect("accept");
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let mut s = b
            .stream_control()
            .open_stream(peer, ECHO)
            .await
            .expect("open");
        s.write_all(b"half of a message").await.expect("write");
        s.flush().await.expect("flush");
        let (_, mut theirs) = incoming.next().await.expect("inbound");
        let mut first = [0u8; 4];
        theirs.read_exact(&mut first).await.expect("first bytes");
        // The dialer's whole connection goes away without finishing the stream.
        b.close_peer(&a.peer_id());
        let mut rest = Vec::new();
        let end = theirs.read_to_end(&mut rest).await;
        assert!(
            end.is_err(),
            "read {} more bytes, then a clean end",
            rest.len()
        );
    })
    .await
    .expect("in time");
}

/// QUIC gives the peer stream credit up to the node's limit: a dialer past it waits for a
/// stream to close instead of being refused, and the listener never holds more than the limit.
#[tokio::test]
async fn quic_streams_past_the_limit_wait_for_credit_and_never_exceed_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    tokio::time::timeout(DEADLINE, async {
        let a = node(NodeConfig::default().with_max_streams_per_connection(2)).await;
        let addr = a.listen(QUIC.parse().expect("addr")).await.expect("listen");
        let mut incoming = a.stream_control().accept(ECHO).expect("accept");
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), max.clone());
        tokio::spawn(async move {
            while let Some((_, mut s)) = incoming.next().await {
                let (n, m) = (n.clone(), m.clone());
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
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let control = b.stream_control();
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = control.open_stream(peer, ECHO).await.expect("open");
            s.write_all(b"x").await.expect("write");
            s.flush().await.expect("flush");
            held.push(s);
        }
        let third = tokio::spawn({
            let control = control.clone();
            async move {
                let mut s = control
                    .open_stream(peer, ECHO)
                    .await
                    .expect("open when credit comes");
                s.write_all(b"third").await.expect("write");
                s.shutdown().await.expect("shutdown");
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.expect("echo");
                back
            }
        });
        // Finishing the held streams gives the credit back.
        for mut s in held {
            s.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("echo");
        }
        assert_eq!(third.await.expect("task"), b"third");
        assert!(
            max.load(Ordering::SeqCst) <= 2,
            "{} at once",
            max.load(Ordering::SeqCst)
        );
        b.ping(peer).await.expect("the connection still works");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_peer_known_by_tcp_and_quic_addresses_is_reached() {
    tokio::time::timeout(DEADLINE, async {
        let a = node(NodeConfig::default()).await;
        let tcp = a
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("tcp");
        let quic = a.listen(QUIC.parse().expect("addr")).await.expect("quic");
        let b = node(NodeConfig::default()).await;
        b.add_address(a.peer_id(), quic);
        b.add_address(a.peer_id(), tcp);
        b.dial_peer(a.peer_id()).await.expect("one of them");
        b.ping(a.peer_id()).await.expect("ping");
    })
    .await
    .expect("in time");
}

/// js-libp2p 3 pings with one stream per ping and closes its write side after the 32 bytes;
/// the answer must still arrive whole and end cleanly, not be discarded by a reset of the
/// stream when the node sees the end. The pause before reading lets a reset arrive first.
#[tokio::test]
async fn quic_a_ping_whose_sender_closes_its_side_gets_its_answer_and_a_clean_end() {
    tokio::time::timeout(DEADLINE, async {
        let (listener, addr) = quic_listener().await;
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        for round in 0..3u8 {
            let mut s = b
                .stream_control()
                .open_stream(peer, missive::protocols::ping::PROTOCOL)
                .await
                .expect("open");
            let sent = [round.wrapping_mul(7).wrapping_add(1); 32];
            s.write_all(&sent).await.expect("write");
            s.shutdown().await.expect("close the write side");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut back = Vec::new();
            s.read_to_end(&mut back)
                .await
                .expect("the answer and a clean end, not a reset");
            assert_eq!(back, sent, "round {round}");
        }
        listener.shutdown().await;
    })
    .await
    .expect("in time");
}
