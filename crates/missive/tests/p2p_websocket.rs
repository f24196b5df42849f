//! The WebSocket listener against hostile raw-TCP clients (garbage, endless and huge upgrade
//! requests, silence, floods of pending handshakes), its configuration errors, and dials of a
//! peer known by TCP, QUIC and WebSocket addresses.
#![cfg(feature = "websocket")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use missive::p2p::{
    DialError, Events, IncomingError, Keypair, ListenError, Multiaddr, Node, NodeConfig, NodeEvent,
    Protocol, UpgradeError, WebSocketError, websocket::MAX_UPGRADE_REQUEST,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

async fn listening(config: NodeConfig) -> (Node, Multiaddr, std::net::SocketAddr) {
    let n = Node::new(Keypair::generate(), config).await.expect("node");
    let addr = n
        .listen("/ip4/127.0.0.1/tcp/0/ws".parse().expect("addr"))
        .await
        .expect("listen");
    let sock = socket_addr(&addr);
    (n, addr, sock)
}

fn socket_addr(a: &Multiaddr) -> std::net::SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in a.iter() {
        match p {
            Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(*v)),
            Protocol::Tcp(v) => port = Some(*v),
            _ => {}
        }
    }
    std::net::SocketAddr::new(ip.expect("ip"), port.expect("port"))
}

async fn next_incoming_error(events: &mut Events) -> Arc<IncomingError> {
    loop {
        match events.next().await.expect("events") {
            NodeEvent::IncomingConnectionError { error, .. } => return error,
            _ => continue,
        }
    }
}

/// Waits until the peer closes `tcp` (EOF or error); what it sent before is returned.
async fn closed_by_peer(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..1000 {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    panic!("peer kept sending");
}

async fn still_serves(addr: &Multiaddr) {
    let c = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let peer = c.dial(addr.clone()).await.expect("another peer is served");
    c.ping(peer).await.expect("and answered");
}

fn websocket_error(e: &IncomingError) -> Option<&WebSocketError> {
    match e {
        IncomingError::Upgrade(UpgradeError::WebSocket(ws)) => Some(ws),
        _ => None,
    }
}

async fn in_time(check: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(DEADLINE, check)
        .await
        .expect("the check finished in time");
}

#[tokio::test]
async fn websocket_garbage_instead_of_an_upgrade_request_is_refused_and_listener_goes_on() {
    in_time(async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        // A libp2p dialer that forgot the WebSocket: multistream-select straight away.
        tcp.write_all(b"\x13/multistream/1.0.0\n\x07/noise\n")
            .await
            .expect("write");
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(websocket_error(&err), Some(WebSocketError::Malformed(_))),
            "{err}"
        );
        // An HTTP request that is no WebSocket upgrade.
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(websocket_error(&err), Some(WebSocketError::Malformed(_))),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await;
}

#[tokio::test]
async fn websocket_endless_header_is_refused_at_the_size_limit_not_the_deadline() {
    in_time(async {
        // The setup deadline is far away: only the size limit can end this one early.
        let config = NodeConfig::default().with_connection_setup_timeout(Duration::from_secs(15));
        let (n, addr, sock) = listening(config).await;
        let mut events = n.events();
        let started = Instant::now();
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            .await
            .expect("write");
        let chunk = vec![b'a'; 1024];
        // Up to 64 KiB, 8 times the limit: the node must hang up long before the end.
        for _ in 0..64 {
            if tcp.write_all(&chunk).await.is_err() {
                break;
            }
        }
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(
                websocket_error(&err),
                Some(WebSocketError::UpgradeRequestTooLarge { limit }) if *limit == MAX_UPGRADE_REQUEST
            ),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        still_serves(&addr).await;
    })
    .await;
}

#[tokio::test]
async fn websocket_valid_but_huge_upgrade_request_is_refused() {
    in_time(async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        // A well-formed upgrade request of ~20 KiB (100 headers of 200 bytes), which the
        // WebSocket library alone would accept.
        let mut request = String::from(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
        for i in 0..100 {
            request.push_str(&format!("X-Pad-{i}: {}\r\n", "p".repeat(200)));
        }
        request.push_str("\r\n");
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        let _ = tcp.write_all(request.as_bytes()).await;
        let answer = closed_by_peer(&mut tcp).await;
        assert!(
            !answer.starts_with(b"HTTP/1.1 101"),
            "upgraded: {:?}",
            String::from_utf8_lossy(&answer)
        );
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(
                websocket_error(&err),
                Some(WebSocketError::UpgradeRequestTooLarge { .. })
            ),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await;
}

#[tokio::test]
async fn websocket_connection_that_sends_nothing_is_closed_at_the_first_bytes_deadline() {
    in_time(async {
        let config = NodeConfig::default().with_first_bytes_timeout(Duration::from_millis(300));
        let (n, addr, sock) = listening(config).await;
        let mut events = n.events();
        let started = Instant::now();
        let mut silent = TcpStream::connect(sock).await.expect("connect");
        closed_by_peer(&mut silent).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let err = next_incoming_error(&mut events).await;
        assert!(matches!(*err, IncomingError::FirstBytesTimeout), "{err}");
        still_serves(&addr).await;
    })
    .await;
}

#[tokio::test]
async fn websocket_stalled_upgrade_is_cut_at_the_setup_deadline_while_others_are_served() {
    in_time(async {
        let config =
            NodeConfig::default().with_connection_setup_timeout(Duration::from_millis(500));
        let (n, addr, sock) = listening(config).await;
        let mut events = n.events();
        let mut slow = TcpStream::connect(sock).await.expect("connect");
        // A slowloris: the start of a request line, then nothing.
        slow.write_all(b"GET / HT").await.expect("write");
        still_serves(&addr).await;
        closed_by_peer(&mut slow).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(*err, IncomingError::Upgrade(UpgradeError::Timeout)),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn websocket_full_pending_table_evicts_the_oldest_silent_connection_for_a_newcomer() {
    in_time(async {
        let config = NodeConfig::default().with_max_pending_incoming(2);
        let (n, addr, sock) = listening(config).await;
        let mut events = n.events();
        let mut a = TcpStream::connect(sock).await.expect("connect");
        let mut b = TcpStream::connect(sock).await.expect("connect");
        // `b` has started its upgrade request: it is more advanced than the silent `a`.
        b.write_all(b"GET / HT").await.expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The newcomer is an honest peer: it gets a place, `a` yields.
        let honest = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let peer = honest
            .dial(addr.clone())
            .await
            .expect("the newcomer is served");
        assert_eq!(peer, n.peer_id());
        closed_by_peer(&mut a).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(*err, IncomingError::TooManyPendingHandshakes),
            "{err}"
        );
        drop(b);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_hundreds_of_silent_connections_do_not_lock_out_an_honest_peer() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut silent = Vec::new();
        for round in 0..3 {
            silent.clear();
            for _ in 0..200 {
                silent.push(TcpStream::connect(sock).await.expect("connect"));
            }
            let honest = Node::new(Keypair::generate(), NodeConfig::default())
                .await
                .expect("node");
            let peer = tokio::time::timeout(Duration::from_secs(2), honest.dial(addr.clone()))
                .await
                .unwrap_or_else(|_| panic!("round {round}: no handshake within 2 s"))
                .unwrap_or_else(|e| panic!("round {round}: dial failed: {e}"));
            assert_eq!(peer, n.peer_id());
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn websocket_wss_needs_a_certificate_to_listen_and_roots_to_dial() {
    in_time(async {
        let n = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        for a in ["/ip4/127.0.0.1/tcp/0/wss", "/ip4/127.0.0.1/tcp/0/tls/ws"] {
            let err = n.listen(a.parse().expect("addr")).await.expect_err("refused");
            assert!(matches!(err, ListenError::NoCertificate(_)), "{err}");
        }
        let cert = missive::transport::tls::SelfSigned::generate(&["localhost"]).expect("cert");
        let config = NodeConfig::default().with_websocket_tls_server(cert.server_config().expect("config"));
        let server = Node::new(Keypair::generate(), config).await.expect("node");
        let addr = server
            .listen("/ip4/127.0.0.1/tcp/0/wss".parse().expect("addr"))
            .await
            .expect("listen");
        assert!(addr.to_string().ends_with("/wss"), "{addr}");
        // No roots: the dial says so.
        let err = n.dial(addr.clone()).await.expect_err("no roots");
        assert!(
            matches!(&err, DialError::Transport { error, .. } if error.to_string().contains("with_websocket_tls_client")),
            "{err}"
        );
        // Roots that do not hold the listener's certificate: the TLS handshake fails.
        let other = missive::transport::tls::SelfSigned::generate(&["localhost"]).expect("cert");
        let wrong = Node::new(
            Keypair::generate(),
            NodeConfig::default().with_websocket_tls_client(other.client_config().expect("config")),
        )
        .await
        .expect("node");
        let err = wrong.dial(addr.clone()).await.expect_err("untrusted");
        assert!(matches!(err, DialError::Transport { .. }), "{err}");
        // With the right roots and the name of the certificate in /sni, it works.
        let right = Node::new(
            Keypair::generate(),
            NodeConfig::default().with_websocket_tls_client(cert.client_config().expect("config")),
        )
        .await
        .expect("node");
        let port = socket_addr(&addr).port();
        let sni: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/tls/sni/localhost/ws")
            .parse()
            .expect("addr");
        assert_eq!(right.dial(sni).await.expect("dial"), server.peer_id());
    })
    .await;
}

#[tokio::test]
async fn websocket_peer_known_by_tcp_quic_and_ws_addresses_is_dialled_and_dead_ones_forgotten() {
    in_time(async {
        let a = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let mut listened = Vec::new();
        for l in [
            "/ip4/127.0.0.1/tcp/0",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "/ip4/127.0.0.1/tcp/0/ws",
        ] {
            listened.push(a.listen(l.parse().expect("addr")).await.expect("listen"));
        }
        assert_eq!(a.listen_addrs(), listened);
        // A dialer that knows all three dials as usual.
        let b = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        for addr in &listened {
            b.add_address(a.peer_id(), addr.clone());
        }
        b.dial_peer(a.peer_id()).await.expect("dial");
        b.ping(a.peer_id()).await.expect("ping");
        // One that knows dead TCP and QUIC addresses and the ws one reaches the peer over ws.
        let dead_tcp = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let c = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let dead: [Multiaddr; 2] = [
            format!("/ip4/127.0.0.1/tcp/{dead_tcp}")
                .parse()
                .expect("addr"),
            format!("/ip4/127.0.0.1/tcp/{dead_tcp}/ws")
                .parse()
                .expect("addr"),
        ];
        for addr in dead.iter().chain([&listened[2]]) {
            c.add_address(a.peer_id(), addr.clone());
        }
        c.dial_peer(a.peer_id()).await.expect("dial over ws");
        c.ping(a.peer_id()).await.expect("ping");
        let known = c.addresses_of(&a.peer_id());
        assert!(known.contains(&listened[2]), "{known:?}");
        for d in &dead {
            assert!(!known.contains(d), "{d} is forgotten: {known:?}");
        }
    })
    .await;
}
