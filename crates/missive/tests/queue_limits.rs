//! Deadlines and connection upkeep of the queue: connect and TLS-handshake deadlines on the
//! client, TCP keepalive and the idle timeout on the listener's connections.
#![cfg(all(feature = "queue", feature = "tls"))]

use std::time::Duration;

use missive::queue::{ConnectError, Connection, QueueConfig};
use missive::transport::tls::{SelfSigned, TlsError};

/// A loopback listener whose accept queue is full: a new connection's SYN is dropped, so
/// connecting hangs until a deadline ends it. Keep the returned values alive.
fn full_backlog() -> (
    socket2::Socket,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    // Never accepted: each one that completes takes a place in the queue, until one hangs.
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    assert!(queued.len() < 8, "the accept queue never filled");
    (socket, queued, addr)
}

#[tokio::test(start_paused = true)]
async fn queue_connect_to_a_full_backlog_ends_at_the_default_deadline() {
    let (_listener, _queued, addr) = full_backlog();
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), Connection::tcp_client(addr))
        .await
        .expect("connecting ends at its own deadline");
    assert!(
        matches!(r, Err(ConnectError::Timeout(d)) if d == Duration::from_secs(10)),
        "{r:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn queue_tls_handshake_with_a_silent_server_ends_at_the_default_deadline() {
    // Accepted by the kernel, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        Connection::tls_client(addr, "localhost", cert.client_config().expect("cfg")),
    )
    .await
    .expect("the handshake ends at its own deadline");
    assert!(
        matches!(r, Err(ConnectError::Tls(TlsError::HandshakeTimeout(d))) if d == Duration::from_secs(10)),
        "{r:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn queue_connect_and_handshake_deadlines_are_settable() {
    let (_listener, _queued, addr) = full_backlog();
    let config = QueueConfig::default()
        .with_connect_timeout(Duration::from_secs(3))
        .with_handshake_timeout(Duration::from_secs(2));
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        Connection::tcp_client_with(addr, config.clone()),
    )
    .await
    .expect("ends");
    assert!(
        matches!(r, Err(ConnectError::Timeout(d)) if d == Duration::from_secs(3)),
        "{r:?}"
    );
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let tls = cert.client_config().expect("cfg");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        Connection::tls_client_with(addr, "localhost", tls.clone(), config.clone()),
    )
    .await
    .expect("ends");
    assert!(
        matches!(r, Err(ConnectError::Tls(TlsError::ConnectTimeout(d))) if d == Duration::from_secs(3)),
        "{r:?}"
    );
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        Connection::tls_client_with(silent_addr, "localhost", tls, config),
    )
    .await
    .expect("ends");
    assert!(
        matches!(r, Err(ConnectError::Tls(TlsError::HandshakeTimeout(d))) if d == Duration::from_secs(2)),
        "{r:?}"
    );
}

/// The kernel's timer on the TCP socket from `local` to `remote` (`/proc/net/tcp`): which timer
/// is armed (0 none, 1 retransmit, 2 keepalive) and when it fires, in seconds from now. The
/// servers set socket options before they hand a connection on, so they show at once.
#[cfg(target_os = "linux")]
fn tcp_timer(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> (u8, f64) {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[1] == local && f[2] == remote)
        .map(|f| {
            let (tr, when) = f[5].split_once(':').expect("tr:when");
            let tr = u8::from_str_radix(tr, 16).expect("tr");
            let when = u64::from_str_radix(when, 16).expect("when") as f64 / 100.0;
            (tr, when)
        })
        .expect("the socket is in /proc/net/tcp")
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn queue_listener_sets_tcp_keepalive_on_accepted_connections() {
    for keepalive in [
        Some(Duration::from_secs(30)),
        Some(Duration::from_secs(7)),
        None,
    ] {
        let config = QueueConfig::default().with_tcp_keepalive(keepalive);
        let mut listener = missive::queue::Listener::bind_tcp("127.0.0.1:0")
            .await
            .expect("bind")
            .with_config(config);
        let addr = listener
            .local_addr()
            .expect("addr")
            .as_socket_addr()
            .expect("tcp");
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let client = client.expect("connect");
        let server = server.expect("accept");
        let peer = client.local_addr().expect("addr");
        assert_eq!(server.peer_addr().as_socket_addr(), Some(peer));
        let (timer, when) = tcp_timer(addr, peer);
        match keepalive {
            Some(idle) => {
                assert_eq!(timer, 2, "no keepalive timer on the server's socket");
                let idle = idle.as_secs_f64();
                assert!(when <= idle && when > idle - 5.0, "fires in {when} s");
            }
            None => assert_eq!(timer, 0, "a timer is armed: {timer}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn queue_reader_sheds_a_connection_idle_past_its_timeout() {
    use missive::queue::{Datagram, RecvError};
    let (a, b) = missive::transport::memory::pair(64 * 1024);
    let mut peer = Connection::new(a, QueueConfig::default());
    let idle = Duration::from_secs(5);
    let mut server = Connection::new(b, QueueConfig::default().with_idle_timeout(Some(idle)));
    // Traffic every 3 s keeps the connection.
    for i in 0..4u16 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        peer.writer()
            .send(Datagram::new(i, &b"ping"[..]))
            .await
            .expect("send");
        let got = tokio::time::timeout(Duration::from_secs(60), server.reader().recv())
            .await
            .expect("received")
            .expect("open")
            .expect("datagram");
        assert_eq!(got.tag(), i);
    }
    // Then silence: shed at the timeout.
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), server.reader().recv())
        .await
        .expect("the idle connection is shed");
    assert!(
        matches!(r, Some(Err(RecvError::Idle(d))) if d == idle),
        "{r:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= idle && took < idle + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(server.reader().recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn queue_reader_without_idle_timeout_waits_as_long_as_it_takes() {
    let (_a, b) = missive::transport::memory::pair(64 * 1024);
    let mut server = Connection::new(b, QueueConfig::default());
    // Off by default: an hour of silence (on the paused clock) ends nothing.
    let r = tokio::time::timeout(Duration::from_secs(3600), server.reader().recv()).await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn queue_frame_limit_raised_to_connects_100_mb_carries_a_100_mb_datagram() {
    use futures_util::StreamExt;
    use missive::queue::{Datagram, Listener, SendError};

    let config = QueueConfig::default().with_max_frame_len(QueueConfig::CONNECT_MAX_FRAME_LEN);
    let mut listener = Listener::bind_tcp("127.0.0.1:0")
        .await
        .expect("bind")
        .with_config(config.clone());
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let server = tokio::spawn(async move {
        let mut conn = listener.accept().await.expect("accept");
        let datagram = conn.reader().next().await.expect("one").expect("datagram");
        (datagram.tag(), datagram.payload().len())
    });
    let mut client = Connection::tcp_client_with(addr, config)
        .await
        .expect("connect");
    // The largest payload connect 0.2.4 allows, and one byte more.
    let too_large = client
        .writer()
        .send(Datagram::new(1, vec![7u8; 100_000_001]))
        .await;
    assert!(
        matches!(
            too_large,
            Err(SendError::TooLarge {
                limit: 100_000_000,
                ..
            })
        ),
        "{too_large:?}"
    );
    client
        .writer()
        .send(Datagram::new(2, vec![7u8; 100_000_000]))
        .await
        .expect("send");
    let received = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("within 20 s")
        .expect("server");
    assert_eq!(received, (2, 100_000_000));
}

#[test]
fn queue_frame_limit_is_kept_within_what_the_size_field_can_say() {
    assert_eq!(
        QueueConfig::default()
            .with_max_frame_len(usize::MAX)
            .max_frame_len(),
        u32::MAX as usize
    );
    assert_eq!(
        QueueConfig::default().with_max_frame_len(0).max_frame_len(),
        4
    );
    assert_eq!(QueueConfig::default().max_frame_len(), 8 * 1024 * 1024);
}
