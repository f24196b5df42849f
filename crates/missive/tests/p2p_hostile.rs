//! Hostile and broken peers: the node refuses them with a clear reason and keeps serving others.
#![cfg(feature = "p2p")]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::noise::{HandshakePayload, NoiseError, encode_payload};
use missive::p2p::{
    Events, IncomingError, Keypair, Multiaddr, Node, NodeConfig, NodeEvent, StreamRefusal,
    UpgradeError,
};
use missive::stream::StreamProtocol;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const DEADLINE: Duration = Duration::from_secs(20);

async fn listening(config: NodeConfig) -> (Node, Multiaddr, std::net::SocketAddr) {
    let n = Node::new(Keypair::generate(), config).await.expect("node");
    let addr = n
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
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
            missive::p2p::Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(*v)),
            missive::p2p::Protocol::Tcp(v) => port = Some(*v),
            _ => {}
        }
    }
    std::net::SocketAddr::new(ip.expect("ip"), port.expect("port"))
}

async fn client() -> Node {
    Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node")
}

/// The next inbound connection error.
async fn next_incoming_error(events: &mut Events) -> Arc<IncomingError> {
    loop {
        match events.next().await.expect("events") {
            NodeEvent::IncomingConnectionError { error, .. } => return error,
            _ => continue,
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

/// Writes the multistream header and a `/noise` proposal and reads the listener's answer.
async fn select_noise(tcp: &mut TcpStream) {
    let mut out = Vec::new();
    missive::p2p::negotiate::encode_message(&mut out, b"/multistream/1.0.0");
    missive::p2p::negotiate::encode_message(&mut out, b"/noise");
    tcp.write_all(&out).await.expect("write");
    let mut answer = vec![0u8; out.len()];
    tcp.read_exact(&mut answer).await.expect("answer");
    assert_eq!(answer, out, "listener accepts /noise");
}

async fn still_serves(addr: &Multiaddr) {
    let c = client().await;
    let peer = c.dial(addr.clone()).await.expect("another peer is served");
    c.ping(peer).await.expect("and answered");
}

#[tokio::test]
async fn p2p_garbage_instead_of_multistream_is_refused_and_listener_goes_on() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(*err, IncomingError::Upgrade(UpgradeError::Negotiation(_))),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_noise_payload_with_bad_signature_is_refused() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        select_noise(&mut tcp).await;
        let mut hs = initiator_past_msg2(&mut tcp, [7u8; 32]).await;
        let mut msg = vec![0u8; 65_535];
        // Sign something other than our static key.
        let identity = Keypair::generate();
        let bad = encode_payload(&HandshakePayload {
            identity_key: identity.public().to_protobuf_encoding().to_vec(),
            identity_sig: identity
                .sign(b"noise-libp2p-static-key:not the key")
                .to_vec(),
            ..HandshakePayload::default()
        });
        let n3 = hs.write_message(&bad, &mut msg).expect("msg3");
        send_frame(&mut tcp, &msg[..n3]).await;
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(
                *err,
                IncomingError::Upgrade(UpgradeError::Noise(NoiseError::BadSignature))
            ),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

/// A Noise XX initiator with static key `key` that has sent message 1 and read a valid message 2
/// over `tcp`; the next message it writes is message 3 (`s, se` and the payload).
async fn initiator_past_msg2(tcp: &mut TcpStream, key: [u8; 32]) -> snow::HandshakeState {
    let mut hs = snow::Builder::new("Noise_XX_25519_ChaChaPoly_SHA256".parse().expect("params"))
        .local_private_key(&key)
        .expect("key")
        .build_initiator()
        .expect("initiator");
    let mut msg = vec![0u8; 65_535];
    let n1 = hs.write_message(&[], &mut msg).expect("msg1");
    send_frame(tcp, &msg[..n1]).await;
    let len = tcp.read_u16().await.expect("msg2 length");
    let mut msg2 = vec![0u8; usize::from(len)];
    tcp.read_exact(&mut msg2).await.expect("msg2");
    let mut payload = vec![0u8; 65_535];
    hs.read_message(&msg2, &mut payload).expect("valid msg2");
    hs
}

async fn send_frame(tcp: &mut TcpStream, msg: &[u8]) {
    let len = u16::try_from(msg.len()).expect("fits");
    tcp.write_all(&len.to_be_bytes()).await.expect("len");
    tcp.write_all(msg).await.expect("msg");
}

#[tokio::test]
async fn p2p_oversized_garbage_noise_frame_is_refused_without_panic() {
    tokio::time::timeout(DEADLINE, async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut events = n.events();
        let mut tcp = TcpStream::connect(sock).await.expect("connect");
        select_noise(&mut tcp).await;
        let _hs = initiator_past_msg2(&mut tcp, [9u8; 32]).await;
        // The largest frame the length prefix allows, full of junk instead of `s, se`.
        let junk = vec![0xA5u8; 65_535];
        send_frame(&mut tcp, &junk).await;
        closed_by_peer(&mut tcp).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(
                *err,
                IncomingError::Upgrade(UpgradeError::Noise(NoiseError::InvalidMessage(_)))
            ),
            "{err}"
        );
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_stalled_handshake_is_cut_at_deadline_while_others_are_served() {
    tokio::time::timeout(DEADLINE, async {
        let config =
            NodeConfig::default().with_connection_setup_timeout(Duration::from_millis(500));
        let (n, addr, sock) = listening(config).await;
        let mut events = n.events();
        let mut silent = TcpStream::connect(sock).await.expect("connect");
        // A slowloris: the header, one byte at a time, then nothing.
        silent.write_all(&[0x13, b'/']).await.expect("write");
        still_serves(&addr).await;
        closed_by_peer(&mut silent).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(*err, IncomingError::Upgrade(UpgradeError::Timeout)),
            "{err}"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_full_pending_table_evicts_the_oldest_silent_connection_for_a_newcomer() {
    tokio::time::timeout(DEADLINE, async {
        let config = NodeConfig::default().with_max_pending_incoming(2);
        let (n, _addr, sock) = listening(config).await;
        let mut events = n.events();
        let mut a = TcpStream::connect(sock).await.expect("connect");
        let mut b = TcpStream::connect(sock).await.expect("connect");
        // `b` has started its handshake: it is more advanced than `a`, which has sent nothing.
        b.write_all(&[0x13, b'/']).await.expect("write");
        // Time for the node to see those bytes before the next connection arrives.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut c = TcpStream::connect(sock).await.expect("connect");
        closed_by_peer(&mut a).await;
        let err = next_incoming_error(&mut events).await;
        assert!(
            matches!(*err, IncomingError::TooManyPendingHandshakes),
            "{err}"
        );
        // The newcomer `c` was not closed: it still has its slot and can complete.
        select_noise(&mut c).await;
        // Now both pending connections have sent bytes: the older one, `b`, yields to `d`.
        let mut d = TcpStream::connect(sock).await.expect("connect");
        closed_by_peer(&mut b).await;
        select_noise(&mut d).await;
    })
    .await
    .expect("in time");
}

/// Binds a client socket to `ip` (any address of 127.0.0.0/8 is loopback on Linux) and
/// connects it to `to`.
async fn connect_from(ip: std::net::Ipv4Addr, to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::new(ip.into(), 0))
        .expect("bind");
    socket.connect(to).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_hundreds_of_silent_connections_do_not_lock_out_an_honest_peer() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (n, addr, sock) = listening(NodeConfig::default()).await;
        let mut silent = Vec::new();
        for round in 0..5u8 {
            // The attacker renews its flood before each honest dial: 300 sockets that never
            // speak, half from the honest peer's own address, half from 30 others.
            silent.clear();
            for i in 0..300u16 {
                let ip = if i % 2 == 0 {
                    std::net::Ipv4Addr::LOCALHOST
                } else {
                    std::net::Ipv4Addr::new(127, 0, round + 1, 2 + (i % 30) as u8)
                };
                silent.push(connect_from(ip, sock).await);
            }
            let honest = client().await;
            let started = std::time::Instant::now();
            let peer = tokio::time::timeout(Duration::from_secs(1), honest.dial(addr.clone()))
                .await
                .unwrap_or_else(|_| panic!("round {round}: no handshake within 1 s"))
                .unwrap_or_else(|e| panic!("round {round}: dial failed: {e}"));
            assert_eq!(peer, n.peer_id());
            eprintln!("round {round}: handshake in {:?}", started.elapsed());
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_a_connection_that_sends_nothing_is_closed_at_the_first_bytes_deadline() {
    tokio::time::timeout(DEADLINE, async {
        let config = NodeConfig::default().with_first_bytes_timeout(Duration::from_millis(300));
        let (n, addr, sock) = listening(config).await;
        let mut events = n.events();
        let started = std::time::Instant::now();
        let mut silent = TcpStream::connect(sock).await.expect("connect");
        closed_by_peer(&mut silent).await;
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "closed only after {waited:?}"
        );
        let err = next_incoming_error(&mut events).await;
        assert!(matches!(*err, IncomingError::FirstBytesTimeout), "{err}");
        still_serves(&addr).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_one_address_cannot_hold_more_than_its_share_of_pending_handshakes() {
    tokio::time::timeout(DEADLINE, async {
        let config = NodeConfig::default().with_max_pending_incoming_per_ip(2);
        let (_n, _addr, sock) = listening(config).await;
        let attacker = std::net::Ipv4Addr::new(127, 0, 9, 9);
        let mut other = connect_from(std::net::Ipv4Addr::new(127, 0, 9, 10), sock).await;
        let mut first = connect_from(attacker, sock).await;
        let _second = connect_from(attacker, sock).await;
        let _third = connect_from(attacker, sock).await;
        // The attacker's oldest connection yields to its newest, within its own share.
        closed_by_peer(&mut first).await;
        // The connection from another address keeps its slot.
        select_noise(&mut other).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_stream_flood_beyond_limit_is_refused_and_connection_keeps_working() {
    tokio::time::timeout(DEADLINE, async {
        let config = NodeConfig::default().with_max_streams_per_connection(4);
        let (n, addr, _) = listening(config).await;
        let mut events = n.events();
        let mut incoming = n.stream_control().accept(ECHO).expect("register");
        let c = client().await;
        let peer = c.dial(addr).await.expect("dial");
        // Four streams fill the listener's limit (ping is not used, so nothing else is open).
        let mut open = Vec::new();
        for _ in 0..4 {
            open.push(
                c.stream_control()
                    .open_stream(peer, ECHO)
                    .await
                    .expect("within limit"),
            );
        }
        let mut served = Vec::new();
        for _ in 0..4 {
            served.push(incoming.next().await.expect("stream").1);
        }
        // Extra streams are reset by the listener: the opener sees an error, not a hang.
        for _ in 0..3 {
            let extra = c.stream_control().open_stream(peer, ECHO).await;
            assert!(extra.is_err(), "stream beyond the limit refused");
        }
        loop {
            if let Some(NodeEvent::InboundStreamRefused { reason, .. }) = events.next().await {
                assert_eq!(reason, StreamRefusal::TooManyStreams);
                break;
            }
        }
        // The open streams still carry data both ways.
        for (mine, theirs) in open.iter_mut().zip(served.iter_mut()) {
            mine.write_all(b"x").await.expect("write");
            mine.flush().await.expect("flush");
            let mut b = [0u8; 1];
            theirs.read_exact(&mut b).await.expect("read");
            theirs.write_all(&b).await.expect("echo");
            theirs.flush().await.expect("flush");
            mine.read_exact(&mut b).await.expect("read back");
        }
        // Closing them frees room for new streams.
        drop(open);
        drop(served);
        let mut again = None;
        for _ in 0..50 {
            if let Ok(s) = c.stream_control().open_stream(peer, ECHO).await {
                again = Some(s);
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(again.is_some(), "room after streams closed");
        assert!(c.is_connected(&peer), "connection survived the flood");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn p2p_backlog_overflow_resets_extra_streams_and_counts_them() {
    tokio::time::timeout(DEADLINE, async {
        let config = NodeConfig::default().with_inbound_backlog(2);
        let (n, addr, _) = listening(config).await;
        let mut events = n.events();
        let incoming = n.stream_control().accept(ECHO).expect("register");
        let c = client().await;
        let peer = c.dial(addr).await.expect("dial");
        let mut streams = Vec::new();
        for _ in 0..5 {
            // The application never takes them: two wait in the backlog, three are reset.
            if let Ok(s) = c.stream_control().open_stream(peer, ECHO).await {
                streams.push(s);
            }
        }
        let mut refused = 0;
        while refused < 3 {
            if let Some(NodeEvent::InboundStreamRefused {
                reason: StreamRefusal::BacklogFull(p),
                ..
            }) = events.next().await
            {
                assert_eq!(p, "/echo/1.0.0");
                refused += 1;
            }
        }
        assert_eq!(incoming.overflowed(), 3);
        c.ping(peer).await.expect("connection still works");
    })
    .await
    .expect("in time");
}

#[test]
fn p2p_peer_killed_mid_stream_gives_error_and_nothing_hangs() {
    let victim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (victim_addr, victim_peer) = victim_rt.block_on(async {
        let (n, addr, _) = listening(NodeConfig::default()).await;
        let mut incoming = n.stream_control().accept(ECHO).expect("register");
        let peer = n.peer_id();
        tokio::spawn(async move {
            let _keep = n;
            // Take streams and hold them without answering.
            let mut held = Vec::new();
            while let Some((_, s)) = incoming.next().await {
                held.push(s);
            }
        });
        (addr, peer)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            let c = client().await;
            let mut events = c.events();
            let peer = c.dial(victim_addr).await.expect("dial");
            assert_eq!(peer, victim_peer);
            let mut s = c
                .stream_control()
                .open_stream(peer, ECHO)
                .await
                .expect("open");
            s.write_all(b"waiting for an answer").await.expect("write");
            s.flush().await.expect("flush");
            // The victim's process dies: its tasks stop and the kernel closes its sockets.
            victim_rt.shutdown_background();
            let mut buf = [0u8; 16];
            let r = s.read(&mut buf).await;
            assert!(matches!(r, Err(_) | Ok(0)), "read ends: {r:?}");
            loop {
                if let Some(NodeEvent::ConnectionClosed { peer: p, .. }) = events.next().await {
                    assert_eq!(p, peer);
                    break;
                }
            }
            let again = c.stream_control().open_stream(peer, ECHO).await;
            assert!(again.is_err(), "no peer to talk to");
        })
        .await
        .expect("in time");
    });
}

/// A hand-made client: TCP, `/noise`, the real Noise handshake, `/yamux/1.0.0`, then raw yamux,
/// so that the test controls what each stream sends.
async fn raw_yamux_client(
    sock: std::net::SocketAddr,
) -> yamux::Connection<
    tokio_util::compat::Compat<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>,
> {
    use tokio_util::compat::TokioAsyncReadCompatExt as _;
    let mut tcp = TcpStream::connect(sock).await.expect("connect");
    select_noise(&mut tcp).await;
    let noise = missive::p2p::noise::NoiseConfig::new(&Keypair::generate()).expect("noise");
    let (mut secured, _) = noise.handshake(tcp, true, None).await.expect("handshake");
    let mut out = Vec::new();
    missive::p2p::negotiate::encode_message(&mut out, b"/multistream/1.0.0");
    missive::p2p::negotiate::encode_message(&mut out, b"/yamux/1.0.0");
    secured.write_all(&out).await.expect("write");
    secured.flush().await.expect("flush");
    let mut answer = vec![0u8; out.len()];
    secured.read_exact(&mut answer).await.expect("answer");
    assert_eq!(answer, out, "listener accepts yamux");
    yamux::Connection::new(
        secured.compat(),
        yamux::Config::default(),
        yamux::Mode::Client,
    )
}

#[tokio::test]
async fn p2p_streams_stuck_in_negotiation_are_limited_and_timed_out() {
    use futures_util::AsyncWriteExt as _;
    tokio::time::timeout(DEADLINE, async {
        let config = NodeConfig::default()
            .with_max_negotiating_inbound_streams(2)
            .with_negotiation_timeout(Duration::from_millis(300));
        let (n, _addr, sock) = listening(config).await;
        let mut events = n.events();
        let mut conn = raw_yamux_client(sock).await;
        let mut streams = Vec::new();
        for _ in 0..4 {
            let mut s = std::future::poll_fn(|cx| conn.poll_new_outbound(cx))
                .await
                .expect("open");
            // The first byte of the multistream header, and then nothing.
            s.write_all(&[0x13]).await.expect("write");
            s.flush().await.expect("flush");
            streams.push(s);
        }
        // Drive the client connection in the background.
        tokio::spawn(async move {
            while let Some(Ok(_)) = std::future::poll_fn(|cx| conn.poll_next_inbound(cx)).await {}
        });
        let mut refused = 0;
        while refused < 2 {
            if let Some(NodeEvent::InboundStreamRefused { reason, .. }) = events.next().await {
                assert_eq!(reason, StreamRefusal::TooManyNegotiating);
                refused += 1;
            }
        }
        // Every stalled stream ends: two refused at once, two reset at the negotiation deadline.
        for mut s in streams {
            let mut buf = [0u8; 64];
            let r = futures_util::AsyncReadExt::read(&mut s, &mut buf).await;
            assert!(matches!(r, Ok(0) | Err(_)), "stream ended: {r:?}");
        }
    })
    .await
    .expect("in time");
}
