//! QUIC between two healthy nodes through a loopback UDP relay that loses, duplicates and
//! reorders datagrams, or black-holes them: streams deliver every byte in order, requests
//! complete or fail at their deadline, nothing hangs.
#![cfg(feature = "cbor")]

#[path = "support/udp_relay.rs"]
#[allow(dead_code)]
mod udp_relay;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::{DialError, Keypair, Multiaddr, Node, NodeConfig, PeerId, Protocol};
use missive::request_response::{Behaviour, Config, OutboundFailure, ProtocolSupport, cbor};
use missive::stream::StreamProtocol;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;
use udp_relay::{Counters, Dir, Faults, UdpRelay};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
const DEADLINE: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

type Cbor = cbor::Codec<String, String>;

/// 5% loss, 2% duplication and 5% reordering in each direction.
fn lossy() -> Faults {
    Faults {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        black_hole: false,
    }
}

async fn node(config: NodeConfig) -> Node {
    Node::new(Keypair::generate(), config).await.expect("node")
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

/// A listening node `a`, a relay in front of its QUIC port, and a node `b` that knows `a` by
/// the relay's address only.
struct Relayed {
    a: Node,
    b: Node,
    relay: UdpRelay,
}

async fn relayed(seed: u64, config: NodeConfig) -> Relayed {
    let a = node(config.clone()).await;
    let addr = a.listen(QUIC.parse().expect("addr")).await.expect("listen");
    let relay = UdpRelay::start(socket_addr(&addr), seed)
        .await
        .expect("relay");
    let b = node(config).await;
    let via: Multiaddr = format!("/ip4/127.0.0.1/udp/{}/quic-v1", relay.addr().port())
        .parse()
        .expect("addr");
    b.add_address(a.peer_id(), via);
    Relayed { a, b, relay }
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

async fn echo(client: &Node, peer: PeerId, msg: &[u8]) -> Vec<u8> {
    let mut s = client
        .stream_control()
        .open_stream(peer, ECHO)
        .await
        .expect("open");
    let (mut r, mut w) = tokio::io::split(&mut s);
    let write = async {
        w.write_all(msg).await.expect("write");
        w.shutdown().await.expect("finish");
    };
    let mut back = Vec::with_capacity(msg.len());
    let read = async {
        r.read_to_end(&mut back).await.expect("read to a clean end");
    };
    tokio::join!(write, read);
    back
}

fn assert_faults_happened(relay: &UdpRelay) {
    for dir in [Dir::ToServer, Dir::ToClient] {
        let c = relay.counters(dir);
        let (received, dropped, duplicated, reordered) = (
            Counters::get(&c.received),
            Counters::get(&c.dropped),
            Counters::get(&c.duplicated),
            Counters::get(&c.reordered),
        );
        assert!(received > 50, "{dir:?}: only {received} datagrams");
        assert!(
            dropped > 0 && duplicated > 0 && reordered > 0,
            "{dir:?}: {received} received, {dropped} dropped, {duplicated} duplicated, {reordered} reordered"
        );
    }
}

#[tokio::test]
async fn quic_through_loss_duplication_and_reordering_a_mebibyte_echo_arrives_whole_and_in_order() {
    tokio::time::timeout(DEADLINE, async {
        let Relayed { a, b, relay } = relayed(0x0051_eed0_0001, NodeConfig::default()).await;
        serve_echo(&a);
        relay.set(lossy());
        b.dial_peer(a.peer_id())
            .await
            .expect("dial through the faults");
        let body: Vec<u8> = (0..MIB as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let start = Instant::now();
        let back = echo(&b, a.peer_id(), &body).await;
        assert_eq!(back.len(), body.len());
        let first_difference = back.iter().zip(&body).position(|(x, y)| x != y);
        assert_eq!(first_difference, None, "bytes differ");
        // Several streams at once through the same faults.
        let at_once = (0..4u8).map(|i| {
            let b = &b;
            let peer = a.peer_id();
            async move {
                let msg = vec![i; 128 * 1024];
                assert!(echo(b, peer, &msg).await == msg, "stream {i} differs");
            }
        });
        futures_util::future::join_all(at_once).await;
        eprintln!("1.5 MiB echoed through the faults in {:?}", start.elapsed());
        assert_faults_happened(&relay);
        assert_eq!(relay.strangers(), 0);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_through_loss_duplication_and_reordering_requests_complete_or_fail_at_their_deadline()
{
    tokio::time::timeout(DEADLINE, async {
        let Relayed { a, b, relay } = relayed(0x0051_eed0_0002, NodeConfig::default()).await;
        let protocols = [("/greet/1".to_owned(), ProtocolSupport::Full)];
        let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
        server
            .serve(|_, r: String| async move { format!("hello {r}") })
            .expect("serve");
        let timeout = Duration::from_secs(5);
        let client = Behaviour::<Cbor>::new(
            &b,
            protocols,
            Config::default().with_request_timeout(timeout),
        )
        .expect("rr");
        relay.set(lossy());
        let start = Instant::now();
        let calls = (0..200).map(|i| {
            let client = client.clone();
            let peer = a.peer_id();
            async move {
                let asked = Instant::now();
                // A few requests large enough to span many datagrams.
                let body = if i % 20 == 0 {
                    "y".repeat(64 * 1024)
                } else {
                    format!("{i}")
                };
                let r = client.request(peer, body.clone()).await;
                (body, r, asked.elapsed())
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let mut answered = 0;
        for (body, r, took) in results {
            match r {
                Ok(answer) => {
                    assert_eq!(answer, format!("hello {body}"));
                    answered += 1;
                }
                Err(OutboundFailure::Timeout) => {
                    assert!(took < timeout + Duration::from_secs(1), "{took:?}");
                }
                Err(other) => panic!("neither an answer nor the deadline: {other}"),
            }
        }
        eprintln!("{answered}/200 answered in {:?}", start.elapsed());
        assert!(answered >= 190, "only {answered} of 200 answered");
        assert_faults_happened(&relay);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_black_hole_fails_requests_at_their_timeout_and_the_connection_recovers() {
    tokio::time::timeout(DEADLINE, async {
        let Relayed { a, b, relay } = relayed(0x0051_eed0_0003, NodeConfig::default()).await;
        let protocols = [("/greet/1".to_owned(), ProtocolSupport::Full)];
        let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
        server
            .serve(|_, r: String| async move { format!("hello {r}") })
            .expect("serve");
        let timeout = Duration::from_secs(1);
        let client = Behaviour::<Cbor>::new(
            &b,
            protocols,
            Config::default().with_request_timeout(timeout),
        )
        .expect("rr");
        let answer = client
            .request(a.peer_id(), "before".to_owned())
            .await
            .expect("answered before the black hole");
        assert_eq!(answer, "hello before");

        relay.set(Faults::black_hole());
        let start = Instant::now();
        let calls = (0..20).map(|i| client.request(a.peer_id(), format!("{i}")));
        let results = futures_util::future::join_all(calls).await;
        let took = start.elapsed();
        for r in &results {
            assert!(matches!(r, Err(OutboundFailure::Timeout)), "{r:?}");
        }
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(500),
            "{took:?}"
        );
        assert!(
            b.is_connected(&a.peer_id()),
            "a short outage keeps the connection"
        );

        // The outage ends: the same connection carries requests again.
        relay.set(Faults::none());
        let healed = Instant::now();
        let mut answer = None;
        for _ in 0..10 {
            match client.request(a.peer_id(), "after".to_owned()).await {
                Ok(a) => {
                    answer = Some(a);
                    break;
                }
                Err(OutboundFailure::Timeout) => continue,
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(
            answer.as_deref(),
            Some("hello after"),
            "no answer after healing"
        );
        eprintln!("answered again {:?} after healing", healed.elapsed());
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_dial_into_a_black_hole_fails_at_the_setup_deadline() {
    tokio::time::timeout(DEADLINE, async {
        let setup = Duration::from_millis(800);
        let Relayed { a, b, relay } = relayed(
            0x0051_eed0_0004,
            NodeConfig::default().with_connection_setup_timeout(setup),
        )
        .await;
        relay.set(Faults::black_hole());
        let start = Instant::now();
        let err = b.dial_peer(a.peer_id()).await.expect_err("nothing answers");
        let took = start.elapsed();
        assert!(
            matches!(err, DialError::Timeout { .. } | DialError::Upgrade { .. }),
            "{err}"
        );
        assert!(took >= setup && took < setup * 2, "{took:?}");
        assert!(Counters::get(&relay.counters(Dir::ToServer).dropped) > 0);
        assert!(!b.is_connected(&a.peer_id()));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_one_way_black_hole_toward_the_server_fails_requests_at_their_timeout() {
    tokio::time::timeout(DEADLINE, async {
        let Relayed { a, b, relay } = relayed(0x0051_eed0_0005, NodeConfig::default()).await;
        serve_echo(&a);
        let protocols = [("/greet/1".to_owned(), ProtocolSupport::Full)];
        let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
        server
            .serve(|_, r: String| async move { r })
            .expect("serve");
        let timeout = Duration::from_millis(700);
        let client = Behaviour::<Cbor>::new(
            &b,
            protocols,
            Config::default().with_request_timeout(timeout),
        )
        .expect("rr");
        assert_eq!(echo(&b, a.peer_id(), b"up").await, b"up");
        relay.set_dir(Dir::ToServer, Faults::black_hole());
        let start = Instant::now();
        let r = client.request(a.peer_id(), "lost".to_owned()).await;
        assert!(matches!(r, Err(OutboundFailure::Timeout)), "{r:?}");
        let took = start.elapsed();
        assert!(took >= timeout && took < timeout * 2, "{took:?}");
    })
    .await
    .expect("in time");
}

/// The relay itself: between two plain UDP sockets, its faults come at about the rates set,
/// reordered datagrams do arrive later, and a black hole passes nothing.
#[tokio::test]
async fn udp_relay_loses_duplicates_and_reorders_at_about_the_rates_set() {
    tokio::time::timeout(DEADLINE, async {
        const N: u32 = 2000;
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let relay = UdpRelay::start(server.local_addr().expect("addr"), 7)
            .await
            .expect("relay");
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        client.connect(relay.addr()).await.expect("connect");
        relay.set_dir(Dir::ToServer, lossy());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), server.recv(&mut buf)).await
            {
                got.push(u32::from_be_bytes(buf[..n].try_into().expect("4 bytes")));
            }
            (server, got)
        });
        for i in 0..N {
            client.send(&i.to_be_bytes()).await.expect("send");
            // Paced, so that no socket buffer overflows.
            if i % 32 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let (server, got) = reader.await.expect("reader");
        let mut buf = [0u8; 64];
        let c = relay.counters(Dir::ToServer);
        let dropped = Counters::get(&c.dropped);
        let duplicated = Counters::get(&c.duplicated);
        assert_eq!(Counters::get(&c.received), u64::from(N));
        assert!((60..=140).contains(&dropped), "{dropped} of {N} dropped");
        assert!(
            (20..=60).contains(&duplicated),
            "{duplicated} of {N} duplicated"
        );
        assert_eq!(got.len() as u64, u64::from(N) - dropped + duplicated);
        let late = got.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(late >= 50, "only {late} datagrams arrived out of order");

        relay.set(Faults::black_hole());
        client.send(b"lost").await.expect("send");
        let r = tokio::time::timeout(Duration::from_millis(100), server.recv(&mut buf)).await;
        assert!(r.is_err(), "a black hole let a datagram through");
    })
    .await
    .expect("in time");
}
