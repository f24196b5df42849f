//! Node behaviour on loopback: connections, streams, ping, limits, shutdown.
#![cfg(feature = "p2p")]

use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::{
    CloseCause, DialError, Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId,
};
use missive::stream::{OpenStreamError, StreamProtocol};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const TEST_DEADLINE: Duration = Duration::from_secs(20);

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

async fn echo_once(client: &Node, peer: PeerId, msg: &[u8]) -> Result<Vec<u8>, OpenStreamError> {
    let mut s = client.stream_control().open_stream(peer, ECHO).await?;
    s.write_all(msg).await.map_err(OpenStreamError::Io)?;
    s.shutdown().await.map_err(OpenStreamError::Io)?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .await
        .map_err(OpenStreamError::Io)?;
    Ok(back)
}

#[tokio::test]
async fn p2p_listen_on_port_zero_reports_actual_address() {
    let (n, addr) = listening(NodeConfig::default()).await;
    assert!(!addr.to_string().ends_with("/tcp/0"), "{addr}");
    assert_eq!(n.listen_addrs(), vec![addr]);
}

#[tokio::test]
async fn p2p_dial_returns_remote_peer_id_and_both_see_connection() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default()).await;
        let mut a_events = a.events();
        let peer = b.dial(addr).await.expect("dial");
        assert_eq!(peer, a.peer_id());
        loop {
            if let Some(NodeEvent::ConnectionEstablished { peer, .. }) = a_events.next().await {
                assert_eq!(peer, b.peer_id());
                break;
            }
        }
        assert!(b.is_connected(&a.peer_id()));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_echo_on_stream_with_half_close() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let msg = vec![42u8; 300_000];
        assert_eq!(echo_once(&b, peer, &msg).await.expect("echo"), msg);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_open_stream_dials_known_address_and_reuses_connection() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let mut events = b.events();
        b.add_address(a.peer_id(), addr);
        // Simultaneous opens share one dial and one connection.
        let (r1, r2, r3) = tokio::join!(
            echo_once(&b, a.peer_id(), b"1"),
            echo_once(&b, a.peer_id(), b"2"),
            echo_once(&b, a.peer_id(), b"3"),
        );
        assert_eq!(
            (r1.expect("1"), r2.expect("2"), r3.expect("3")),
            (b"1".to_vec(), b"2".to_vec(), b"3".to_vec())
        );
        let mut established = 0;
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await
        {
            if matches!(e, NodeEvent::ConnectionEstablished { .. }) {
                established += 1;
            }
        }
        assert_eq!(established, 1);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_open_stream_with_addrs_dials_given_address() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let mut s = b
            .stream_control()
            .open_stream_with_addrs(a.peer_id(), vec![addr], ECHO)
            .await
            .expect("open");
        s.write_all(b"hi").await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"hi");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_open_stream_to_unknown_peer_fails_without_hanging() {
    let b = node(NodeConfig::default()).await;
    let err = b
        .stream_control()
        .open_stream(PeerId::random(), ECHO)
        .await
        .expect_err("no address");
    assert!(
        matches!(err, OpenStreamError::Dial(DialError::NoAddresses(_))),
        "{err}"
    );
}

#[tokio::test]
async fn p2p_unsupported_protocol_is_reported_and_connection_survives() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
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
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_dropping_incoming_streams_deregisters_protocol() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let incoming = a.stream_control().accept(ECHO).expect("register");
        assert!(
            a.stream_control().accept(ECHO).is_err(),
            "second registration refused"
        );
        drop(incoming);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let err = b
            .stream_control()
            .open_stream(peer, ECHO)
            .await
            .expect_err("gone");
        assert!(
            matches!(err, OpenStreamError::UnsupportedProtocol(_)),
            "{err}"
        );
        assert!(
            a.stream_control().accept(ECHO).is_ok(),
            "can register again"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_ping_measures_round_trip_both_ways() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        b.ping(peer).await.expect("b pings a");
        a.ping(b.peer_id())
            .await
            .expect("a pings b over the same connection");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_perf_is_served_only_when_enabled() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default().with_perf(true)).await;
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let r = missive::protocols::perf::run(&b.stream_control(), peer, 100_000, 200_000)
            .await
            .expect("perf");
        assert_eq!((r.uploaded, r.downloaded), (100_000, 200_000));
        let refused = missive::protocols::perf::run(&a.stream_control(), b.peer_id(), 1, 1).await;
        assert!(refused.is_err(), "b does not serve perf");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_dial_with_wrong_peer_id_is_refused_with_that_reason() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default()).await;
        let wrong = PeerId::random();
        let err = b
            .dial(addr.with(missive::p2p::Protocol::P2p(wrong)))
            .await
            .expect_err("mismatch");
        match err {
            DialError::WrongPeer { expected, actual } => {
                assert_eq!((expected, actual), (wrong, a.peer_id()));
            }
            other => panic!("expected WrongPeer, got {other}"),
        }
        assert!(err.to_string().contains("mismatch"), "{err}");
        // The address proved to be another peer's: it is no longer one of `wrong`'s.
        assert!(b.addresses_of(&wrong).is_empty());
        let again = b.dial_peer(wrong).await.expect_err("no address left");
        assert!(
            matches!(again, DialError::NoAddresses(p) if p == wrong),
            "{again}"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_idle_connection_closes_after_idle_timeout() {
    // A short real timer: the paused clock would also fire the setup deadline during real I/O.
    let config = NodeConfig::default().with_idle_timeout(Duration::from_millis(300));
    let (a, addr) = listening(config.clone()).await;
    let b = node(config).await;
    let mut events = b.events();
    let peer = b.dial(addr).await.expect("dial");
    assert_eq!(peer, a.peer_id());
    let cause = loop {
        match events.next().await {
            Some(NodeEvent::ConnectionClosed { cause, .. }) => break cause,
            Some(_) => {}
            None => panic!("events ended"),
        }
    };
    assert!(
        matches!(cause, CloseCause::IdleTimeout | CloseCause::RemoteClosed),
        "{cause:?}"
    );
    assert!(!b.is_connected(&peer));
}

#[tokio::test]
async fn p2p_shutdown_closes_connections_and_remote_sees_it() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default()).await;
        let mut a_events = a.events();
        b.dial(addr).await.expect("dial");
        b.shutdown().await;
        loop {
            if let Some(NodeEvent::ConnectionClosed { peer, .. }) = a_events.next().await {
                assert_eq!(peer, b.peer_id());
                break;
            }
        }
        let err = b.dial_peer(a.peer_id()).await.expect_err("shut down");
        assert!(matches!(err, DialError::ShuttingDown), "{err}");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_dialing_own_address_is_refused() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let err = a.dial(addr).await.expect_err("self dial");
        assert!(matches!(err, DialError::LocalPeer), "{err}");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_dropping_last_handle_stops_the_node() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default()).await;
        let mut b_events = b.events();
        let peer = b.dial(addr.clone()).await.expect("dial");
        drop(a);
        loop {
            if let Some(NodeEvent::ConnectionClosed { peer: p, .. }) = b_events.next().await {
                assert_eq!(p, peer);
                break;
            }
        }
        let c = node(NodeConfig::default()).await;
        assert!(c.dial(addr).await.is_err(), "the listener is gone");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_connections_per_peer_limit_refuses_extra_connection() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let b = node(NodeConfig::default().with_max_connections_per_peer(1)).await;
        // Dials by bare address are not merged, so the second one makes a second connection.
        assert_eq!(b.dial(addr.clone()).await.expect("first"), a.peer_id());
        let err = b.dial(addr).await.expect_err("second over the limit");
        assert!(
            matches!(err, DialError::ConnectionLimit(p) if p == a.peer_id()),
            "{err}"
        );
        b.ping(a.peer_id())
            .await
            .expect("first connection still works");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_open_stream_with_protocol_list_picks_first_supported() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let (mut s, chosen) = b
            .stream_control()
            .open_stream_with(
                peer,
                &[],
                &[StreamProtocol::new("/echo/2.0.0"), ECHO],
                missive::p2p::negotiate::Version::V1,
            )
            .await
            .expect("open");
        assert_eq!(chosen, ECHO);
        assert_eq!(s.protocol(), &ECHO);
        s.write_all(b"v1").await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"v1");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_lazy_open_sends_data_at_once_and_reports_refusal_on_read() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr).await.expect("dial");
        let lazy = missive::p2p::negotiate::Version::V1Lazy;
        let (mut s, _) = b
            .stream_control()
            .open_stream_with(peer, &[], &[ECHO], lazy)
            .await
            .expect("open");
        s.write_all(b"0-rtt").await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"0-rtt");

        let (mut refused, _) = b
            .stream_control()
            .open_stream_with(peer, &[], &[StreamProtocol::new("/nope/1.0.0")], lazy)
            .await
            .expect("optimistic open");
        let _ = refused.write_all(b"lost").await;
        let err = refused.read(&mut [0u8; 8]).await.expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_identify_tells_each_side_the_address_it_is_seen_at() {
    use missive::protocols::identify;
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        let mut a_events = a.events();
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr.clone()).await.expect("dial");
        let mut seen_at = None;
        for _ in 0..16 {
            if let Some(NodeEvent::ConnectionEstablished { remote_addr, .. }) =
                a_events.next().await
            {
                seen_at = Some(remote_addr);
                break;
            }
        }
        let seen_at = seen_at.expect("a saw the connection");
        // The listener tells the dialer the address its connection comes from.
        let info = identify::request(&b.stream_control(), peer)
            .await
            .expect("b identifies a");
        assert_eq!(info.observed_addr, Some(seen_at));
        // The dialer tells the listener the address it dialed (without the /p2p part).
        let info = identify::request(&a.stream_control(), b.peer_id())
            .await
            .expect("a identifies b");
        assert_eq!(info.observed_addr, Some(addr));
        assert!(info.listen_addrs.is_empty(), "b listens nowhere");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_identify_reports_the_key_agent_listen_addresses_and_protocols() {
    use missive::protocols::identify;
    tokio::time::timeout(TEST_DEADLINE, async {
        let (a, addr) = listening(NodeConfig::default()).await;
        serve_echo(&a);
        let b = node(NodeConfig::default()).await;
        let peer = b.dial(addr.clone()).await.expect("dial");
        let info = identify::request(&b.stream_control(), peer)
            .await
            .expect("identify");
        assert_eq!(info.peer_id(), a.peer_id());
        assert_eq!(info.agent_version, identify::AGENT_VERSION);
        assert_eq!(info.protocol_version, identify::PROTOCOL_VERSION);
        assert_eq!(info.listen_addrs, vec![addr]);
        let names: Vec<&str> = info.protocols.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["/echo/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"]);
        // The list follows the registrations: a protocol dropped is no longer announced.
        let extra = a
            .stream_control()
            .accept(StreamProtocol::new("/extra/1.0.0"))
            .expect("register");
        let info = identify::request(&b.stream_control(), peer)
            .await
            .expect("identify again");
        assert!(info.protocols.iter().any(|p| p.as_str() == "/extra/1.0.0"));
        drop(extra);
        let info = identify::request(&b.stream_control(), peer)
            .await
            .expect("identify a third time");
        assert!(!info.protocols.iter().any(|p| p.as_str() == "/extra/1.0.0"));
    })
    .await
    .expect("in time");
}
