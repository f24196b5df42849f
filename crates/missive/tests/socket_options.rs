//! TCP socket options (`transport::tcp::SocketOptions`), read back from the sockets with
//! getsockopt, and seen through the kernel's timers on the queue's and rpc's own sockets; UDP
//! socket options (`transport::udp::UdpSocketOptions`) likewise, and through `ss` on the
//! node's QUIC endpoint.
#![cfg(all(feature = "tcp", feature = "queue", feature = "rpc", feature = "prost"))]

use std::net::SocketAddr;
use std::time::Duration;

use missive::queue::{Connection, Listener, QueueConfig};
use missive::rpc::echo;
use missive::rpc::{Client, ClientConfig};
use missive::transport::tcp::{self, SocketOptions};

const DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn default_socket_options_are_nodelay_keepalive_30s_and_reuseaddr() {
    let options = SocketOptions::default();
    let listener = tcp::bind_with("127.0.0.1:0", &options).await.expect("bind");
    let l = socket2::SockRef::from(&listener);
    assert!(l.reuse_address().expect("SO_REUSEADDR"));
    let client = tcp::connect_with(listener.local_addr().expect("addr"), &options, DEADLINE)
        .await
        .expect("connect");
    let c = socket2::SockRef::from(&client);
    assert!(c.tcp_nodelay().expect("TCP_NODELAY"));
    assert!(c.keepalive().expect("SO_KEEPALIVE"));
    assert_eq!(
        c.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
        Duration::from_secs(30)
    );
    let (accepted, _) = listener.accept().await.expect("accept");
    options.apply(&accepted).expect("apply");
    let a = socket2::SockRef::from(&accepted);
    assert!(a.tcp_nodelay().expect("TCP_NODELAY"));
    assert_eq!(
        a.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
        Duration::from_secs(30)
    );
}

#[tokio::test]
async fn chosen_socket_options_are_set_on_listeners_dialed_and_accepted_sockets() {
    let options = SocketOptions::default()
        .with_nodelay(false)
        .with_keepalive(Some(Duration::from_secs(11)))
        .with_reuse_address(false)
        .with_send_buffer_size(Some(96 * 1024))
        .with_recv_buffer_size(Some(80 * 1024));
    let listener = tcp::bind_with("127.0.0.1:0", &options).await.expect("bind");
    let l = socket2::SockRef::from(&listener);
    assert!(!l.reuse_address().expect("SO_REUSEADDR"));
    // Linux doubles what is asked for its bookkeeping; other systems keep it.
    let doubled = |asked: usize, got: usize| got == asked || got == 2 * asked;
    assert!(doubled(80 * 1024, l.recv_buffer_size().expect("SO_RCVBUF")));
    assert!(doubled(96 * 1024, l.send_buffer_size().expect("SO_SNDBUF")));

    let client = tcp::connect_with(listener.local_addr().expect("addr"), &options, DEADLINE)
        .await
        .expect("connect");
    let c = socket2::SockRef::from(&client);
    assert!(!c.tcp_nodelay().expect("TCP_NODELAY"));
    assert_eq!(
        c.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
        Duration::from_secs(11)
    );
    assert!(doubled(80 * 1024, c.recv_buffer_size().expect("SO_RCVBUF")));
    assert!(doubled(96 * 1024, c.send_buffer_size().expect("SO_SNDBUF")));

    let (accepted, _) = listener.accept().await.expect("accept");
    options.apply(&accepted).expect("apply");
    let a = socket2::SockRef::from(&accepted);
    assert!(!a.tcp_nodelay().expect("TCP_NODELAY"));
    assert!(doubled(80 * 1024, a.recv_buffer_size().expect("SO_RCVBUF")));

    let off = SocketOptions::default().with_keepalive(None);
    off.apply(&accepted).expect("apply");
    assert!(!a.keepalive().expect("SO_KEEPALIVE"));
}

#[tokio::test]
async fn a_listen_backlog_of_one_holds_back_further_handshakes() {
    let small = tcp::bind_with("127.0.0.1:0", &SocketOptions::default().with_backlog(1))
        .await
        .expect("bind");
    let addr = small.local_addr().expect("addr");
    // Nothing accepts: the kernel completes backlog + 1 handshakes, then drops further SYNs.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..4 {
        match tcp::connect_with(addr, &SocketOptions::default(), Duration::from_millis(300)).await {
            Ok(stream) => held.push(stream),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        held.len() <= 2 && refused >= 2,
        "held {}, refused {refused}",
        held.len()
    );

    let large = tcp::bind_with("127.0.0.1:0", &SocketOptions::default())
        .await
        .expect("bind");
    let addr = large.local_addr().expect("addr");
    for _ in 0..4 {
        tcp::connect_with(addr, &SocketOptions::default(), Duration::from_secs(2))
            .await
            .expect("the default backlog holds four");
    }
}

/// The kernel's keepalive timer of the socket from `local` to `remote` (`/proc/net/tcp`), in
/// seconds from now, if one is armed.
#[cfg(target_os = "linux")]
fn keepalive_timer(local: SocketAddr, remote: SocketAddr) -> Option<f64> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let fields = table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|f| f.len() > 5 && f[1] == local && f[2] == remote)
        .expect("the socket is in /proc/net/tcp");
    let (timer, when) = fields[5].split_once(':').expect("tr:when");
    (timer == "02").then(|| u64::from_str_radix(when, 16).expect("when") as f64 / 100.0)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn queue_listener_and_client_make_their_sockets_with_the_configured_options() {
    let server_options = SocketOptions::default().with_keepalive(Some(Duration::from_secs(13)));
    let client_options = SocketOptions::default().with_keepalive(Some(Duration::from_secs(17)));
    let mut listener = Listener::bind_tcp_with(
        "127.0.0.1:0",
        QueueConfig::default().with_socket_options(server_options),
    )
    .await
    .expect("bind");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let client_config = QueueConfig::default().with_socket_options(client_options);
    let (client, server) = tokio::join!(
        Connection::tcp_client_with(addr, client_config),
        listener.accept()
    );
    let (client, server) = (client.expect("connect"), server.expect("accept"));
    let client_addr = client.local_addr().as_socket_addr().expect("tcp");
    assert_eq!(server.peer_addr().as_socket_addr(), Some(client_addr));
    let on_server = keepalive_timer(addr, client_addr).expect("keepalive on the accepted socket");
    assert!(
        on_server <= 13.0 && on_server > 8.0,
        "fires in {on_server} s"
    );
    let on_client = keepalive_timer(client_addr, addr).expect("keepalive on the client's socket");
    assert!(
        on_client <= 17.0 && on_client > 12.0,
        "fires in {on_client} s"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn rpc_server_and_client_make_their_sockets_with_the_configured_options() {
    use missive::rpc::{Server, ServerConfig};
    let listener = tcp::bind_with("127.0.0.1:0", &SocketOptions::default())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = ServerConfig::default().with_socket_options(
        SocketOptions::default().with_keepalive(Some(Duration::from_secs(19))),
    );
    let server = Server::new(config);
    let (peers_tx, mut peers) = tokio::sync::mpsc::channel(4);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_tcp(listener, move |peer| {
                    let _ = peers_tx.try_send(peer);
                    (echo::ServerCodec::default(), echo::EchoService)
                })
                .await
        })
    };
    let client_config = ClientConfig::default().with_socket_options(
        SocketOptions::default().with_keepalive(Some(Duration::from_secs(23))),
    );
    let client = Client::connect_tcp(addr, echo::ClientCodec::default(), client_config)
        .await
        .expect("connect");
    client.call(echo::Request::unary("x")).await.expect("call");
    let client_addr = peers.recv().await.expect("a connection");
    let on_server = keepalive_timer(addr, client_addr).expect("keepalive on the accepted socket");
    assert!(
        on_server <= 19.0 && on_server > 14.0,
        "fires in {on_server} s"
    );
    let on_client = keepalive_timer(client_addr, addr).expect("keepalive on the client's socket");
    assert!(
        on_client <= 23.0 && on_client > 18.0,
        "fires in {on_client} s"
    );
    drop(client);
    server.shutdown().await;
    serving.await.expect("task").expect("served");
}

#[cfg(all(target_os = "linux", feature = "p2p"))]
#[tokio::test]
async fn node_listens_dials_and_accepts_with_the_configured_options() {
    use futures_util::StreamExt;
    use missive::p2p::{Keypair, Node, NodeConfig, NodeEvent, Protocol};
    let config = |idle| {
        NodeConfig::default().with_socket_options(
            SocketOptions::default().with_keepalive(Some(Duration::from_secs(idle))),
        )
    };
    let a = Node::new(Keypair::generate(), config(29))
        .await
        .expect("node");
    let b = Node::new(Keypair::generate(), config(37))
        .await
        .expect("node");
    let mut events = a.events();
    let listen = a
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    b.dial(listen.clone()).await.expect("dial");
    let socket = |addr: &missive::p2p::Multiaddr| {
        let port = addr.iter().find_map(|p| match p {
            Protocol::Tcp(port) => Some(*port),
            _ => None,
        });
        SocketAddr::from(([127, 0, 0, 1], port.expect("a TCP port")))
    };
    let dialer = loop {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("in time")
            .expect("open");
        if let NodeEvent::ConnectionEstablished { remote_addr, .. } = event {
            break socket(&remote_addr);
        }
    };
    let listener = socket(&listen);
    // Right after the handshake a retransmit timer may still be armed (data not yet acked): it
    // gives way to the keepalive timer within a few milliseconds on loopback.
    let settled = |local, remote| async move {
        for _ in 0..100 {
            if let Some(when) = keepalive_timer(local, remote) {
                return Some(when);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    };
    let on_a = settled(listener, dialer)
        .await
        .expect("keepalive on the accepted socket");
    assert!(on_a <= 29.0 && on_a > 24.0, "fires in {on_a} s");
    let on_b = settled(dialer, listener)
        .await
        .expect("keepalive on the dialed socket");
    assert!(on_b <= 37.0 && on_b > 32.0, "fires in {on_b} s");
    b.shutdown().await;
    a.shutdown().await;
}

#[cfg(feature = "p2p")]
#[test]
fn udp_sockets_are_bound_with_the_configured_options() {
    use missive::transport::udp::{self, UdpSocketOptions};
    let default = udp::bind_with(
        "127.0.0.1:0".parse().expect("addr"),
        &UdpSocketOptions::default(),
    )
    .expect("bind");
    let default = socket2::SockRef::from(&default);
    assert!(!default.reuse_address().expect("getsockopt"));
    let options = UdpSocketOptions::default()
        .with_reuse_address(true)
        .with_send_buffer_size(Some(300_000))
        .with_recv_buffer_size(Some(400_000));
    let chosen = udp::bind_with("127.0.0.1:0".parse().expect("addr"), &options).expect("bind");
    let chosen = socket2::SockRef::from(&chosen);
    assert!(chosen.reuse_address().expect("getsockopt"));
    // Linux doubles what it is given (the other half is its bookkeeping); others keep it.
    assert!(chosen.send_buffer_size().expect("getsockopt") >= 300_000);
    assert!(chosen.recv_buffer_size().expect("getsockopt") >= 400_000);
}

/// The receive buffer of the UDP socket bound to `port` on 127.0.0.1, as the kernel reports it
/// (`ss`'s `rb`, which is what getsockopt(SO_RCVBUF) returns).
#[cfg(target_os = "linux")]
fn udp_receive_buffer(port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-uanmH", "src", &format!("127.0.0.1:{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let rb = text
        .split(|c: char| c == ',' || c == '(' || c.is_whitespace())
        .find_map(|field| field.strip_prefix("rb")?.parse().ok());
    rb.unwrap_or_else(|| panic!("no rb in ss's output: {text}"))
}

#[cfg(all(target_os = "linux", feature = "p2p"))]
#[tokio::test]
async fn node_quic_endpoints_use_the_configured_udp_options() {
    use missive::p2p::{Keypair, Node, NodeConfig, Protocol};
    use missive::transport::udp::UdpSocketOptions;
    let bytes = 1 << 20;
    let config = NodeConfig::default()
        .with_udp_socket_options(UdpSocketOptions::default().with_recv_buffer_size(Some(bytes)));
    let a = Node::new(Keypair::generate(), config).await.expect("node");
    let b = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let listen = a
        .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"))
        .await
        .expect("listen");
    let port = listen
        .iter()
        .find_map(|p| match p {
            Protocol::Udp(port) => Some(*port),
            _ => None,
        })
        .expect("a UDP port");
    // Linux doubles the size asked for, within net.core.rmem_max (4 MiB here and by default
    // on most systems; at least 208 KiB everywhere).
    let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    let expected = 2 * (bytes as u64).min(max);
    assert_eq!(udp_receive_buffer(port), expected);
    // The endpoint works with them: a QUIC dial to it succeeds.
    b.dial(listen).await.expect("a QUIC dial");
    b.shutdown().await;
    a.shutdown().await;
}
