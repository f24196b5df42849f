//! Bad input and misbehaving peers: each gives a typed error, never a panic, and a listener keeps
//! serving its other clients.

use std::time::Duration;

use futures_util::StreamExt;
use missive::queue::{
    Connection, Datagram, FrameError, Listener, QueueConfig, RecvError, SendError,
};
use missive::transport::tls::SelfSigned;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A queue reader fed the given raw bytes by a peer that then closes its write side.
async fn read_after_raw(bytes: &[u8], config: QueueConfig) -> Vec<Result<Datagram, RecvError>> {
    let (mut raw, pipe) = tokio::io::duplex(1 << 16);
    raw.write_all(bytes).await.expect("write");
    raw.shutdown().await.expect("shutdown");
    let mut conn = Connection::new(pipe, config);
    let mut out = Vec::new();
    for _ in 0..16 {
        match conn.reader().next().await {
            Some(item) => out.push(item),
            None => return out,
        }
    }
    panic!("reader did not end");
}

#[tokio::test]
async fn size_fields_of_zero_to_three_are_typed_errors() {
    for size in 0u8..4 {
        let out = read_after_raw(&[0, 0, 0, size, 0, 1, 0, 1, 9, 9], QueueConfig::default()).await;
        assert_eq!(out.len(), 1, "one error, then the end");
        assert!(
            matches!(&out[0], Err(RecvError::Frame(FrameError::TooShort { size: s })) if *s == u32::from(size)),
            "size {size}: {:?}",
            out[0]
        );
    }
}

#[tokio::test]
async fn a_frame_claiming_4_gib_is_refused_before_allocation() {
    let out = read_after_raw(
        &[0xff, 0xff, 0xff, 0xff, 0, 1, 0, 1],
        QueueConfig::default(),
    )
    .await;
    assert!(
        matches!(&out[..], [Err(RecvError::Frame(FrameError::TooLarge { size: u32::MAX, limit }))] if *limit == 8 << 20),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_receive_limit_is_configurable() {
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4u32 + 100).to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0, 1]);
    frame.extend_from_slice(&[0; 100]);
    let ok = read_after_raw(&frame, QueueConfig::default().with_max_frame_len(104)).await;
    assert!(
        matches!(&ok[..], [Ok(d)] if d.payload().len() == 100),
        "{ok:?}"
    );
    let refused = read_after_raw(&frame, QueueConfig::default().with_max_frame_len(103)).await;
    assert!(
        matches!(
            &refused[..],
            [Err(RecvError::Frame(FrameError::TooLarge {
                size: 104,
                limit: 103
            }))]
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn eof_in_the_middle_of_a_frame_is_distinct_from_a_clean_close() {
    let whole = [0, 0, 0, 9, 0, 1, 0, 1, b'h', b'e', b'l', b'l', b'o'];
    let clean = read_after_raw(&whole, QueueConfig::default()).await;
    assert!(matches!(&clean[..], [Ok(_)]), "{clean:?}");

    let cut = read_after_raw(&whole[..11], QueueConfig::default()).await;
    assert!(
        matches!(&cut[..], [Err(RecvError::Truncated { buffered: 11 })]),
        "{cut:?}"
    );
    let cut_header = read_after_raw(&whole[..3], QueueConfig::default()).await;
    assert!(
        matches!(&cut_header[..], [Err(RecvError::Truncated { buffered: 3 })]),
        "{cut_header:?}"
    );
}

#[tokio::test]
async fn an_unknown_version_is_a_typed_error() {
    let out = read_after_raw(&[0, 0, 0, 5, 0, 2, 0, 1, b'x'], QueueConfig::default()).await;
    assert!(
        matches!(
            &out[..],
            [Err(RecvError::Frame(FrameError::UnsupportedVersion {
                version: 2
            }))]
        ),
        "{out:?}"
    );
    let any = read_after_raw(
        &[0, 0, 0, 5, 0, 2, 0, 1, b'x'],
        QueueConfig::default().with_any_version(true),
    )
    .await;
    assert!(matches!(&any[..], [Ok(d)] if d.version() == 2), "{any:?}");
}

#[tokio::test]
async fn valid_datagrams_before_a_bad_frame_are_all_delivered() {
    let mut bytes = vec![0, 0, 0, 5, 0, 1, 0, 1, b'a', 0, 0, 0, 5, 0, 1, 0, 2, b'b'];
    bytes.extend_from_slice(&[0, 0, 0, 1]);
    let out = read_after_raw(&bytes, QueueConfig::default()).await;
    assert!(
        matches!(&out[..], [Ok(a), Ok(b), Err(RecvError::Frame(FrameError::TooShort { size: 1 }))]
            if a.tag() == 1 && b.tag() == 2),
        "{out:?}"
    );
}

#[tokio::test]
async fn oversized_and_empty_sends_are_refused_without_queueing() {
    let (a, _b) = tokio::io::duplex(1024);
    let mut conn = Connection::new(a, QueueConfig::default().with_max_frame_len(1004));
    let err = conn
        .writer()
        .send(Datagram::new(1, vec![0; 1001]))
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            SendError::TooLarge {
                len: 1001,
                limit: 1000
            }
        ),
        "{err:?}"
    );
    let err = conn
        .writer()
        .send(Datagram::new(1, ""))
        .await
        .expect_err("empty");
    assert!(matches!(err, SendError::EmptyPayload), "{err:?}");
    assert_eq!(conn.writer().queued_bytes(), 0);
    conn.writer()
        .send(Datagram::new(1, vec![0; 1000]))
        .await
        .expect("at the limit");
}

#[tokio::test]
async fn empty_payloads_can_be_enabled() {
    let (a, b) = tokio::io::duplex(1024);
    let mut tx = Connection::new(a, QueueConfig::default().with_empty_payloads(true));
    let mut rx = Connection::new(b, QueueConfig::default());
    tx.writer().send(Datagram::new(3, "")).await.expect("send");
    let got = rx.reader().next().await.expect("some").expect("ok");
    assert_eq!((got.tag(), got.payload().len()), (3, 0));
}

#[tokio::test]
async fn sending_to_a_vanished_peer_is_an_io_error() {
    let (a, b) = tokio::io::duplex(64);
    let mut conn = Connection::new(a, QueueConfig::default());
    drop(b);
    let err = conn
        .writer()
        .send(Datagram::new(1, "x"))
        .await
        .expect_err("gone");
    assert!(matches!(err, SendError::Io(_)), "{err:?}");
}

/// Serves echo on every accepted connection, forever.
fn spawn_echo_server(mut listener: Listener) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        loop {
            let Ok(conn) = listener.accept().await else {
                return listener.failed_handshakes();
            };
            tokio::spawn(async move {
                let (mut reader, mut writer) = conn.split();
                while let Some(Ok(d)) = reader.next().await {
                    if writer.send(d).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// A TLS listener on a free loopback port with a fresh certificate and a short handshake deadline.
async fn tls_listener(handshake_timeout: Duration) -> (Listener, std::net::SocketAddr, SelfSigned) {
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let listener = Listener::bind_tls("127.0.0.1:0", cert.server_config().expect("cfg"))
        .await
        .expect("bind")
        .with_config(QueueConfig::default().with_handshake_timeout(handshake_timeout));
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    (listener, addr, cert)
}

#[tokio::test]
async fn tls_listener_serves_honest_clients_at_once_through_a_flood_of_silent_connections() {
    let (listener, addr, cert) = tls_listener(Duration::from_secs(10)).await;
    let _server = spawn_echo_server(listener);
    let mut silent = Vec::new();
    for round in 0..3u16 {
        // The flood is renewed before each honest client: 150 sockets that never speak.
        silent.clear();
        for _ in 0..150 {
            silent.push(TcpStream::connect(addr).await.expect("silent"));
        }
        let exchange = async {
            let mut good =
                Connection::tls_client(addr, "localhost", cert.client_config().expect("cfg"))
                    .await
                    .expect("honest client");
            good.writer()
                .send(Datagram::new(round, "through the flood"))
                .await
                .expect("send");
            good.reader().next().await.expect("echo").expect("ok")
        };
        let back = tokio::time::timeout(Duration::from_secs(1), exchange)
            .await
            .unwrap_or_else(|_| panic!("round {round}: not served within 1 s"));
        assert_eq!(back.tag(), round);
    }
}

#[tokio::test]
async fn tls_listener_keeps_serving_after_garbage_and_stalled_handshakes() {
    let (listener, addr, cert) = tls_listener(Duration::from_millis(300)).await;
    let server = spawn_echo_server(listener);

    // A client that never says anything, and one that sends garbage.
    let _silent = TcpStream::connect(addr).await.expect("silent");
    let mut garbage = TcpStream::connect(addr).await.expect("garbage");
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    // A client that does not trust the server's certificate.
    let other = SelfSigned::generate(&["localhost"]).expect("other cert");
    let untrusting =
        Connection::tls_client(addr, "localhost", other.client_config().expect("cfg")).await;
    assert!(untrusting.is_err());

    // Meanwhile, a good client is served at once.
    let mut good = Connection::tls_client(addr, "localhost", cert.client_config().expect("cfg"))
        .await
        .expect("good client");
    good.writer()
        .send(Datagram::new(5, "still serving"))
        .await
        .expect("send");
    let back = good.reader().next().await.expect("echo").expect("ok");
    assert_eq!(back.payload(), "still serving");

    // And again after the stalled one has timed out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut late = Connection::tls_client(addr, "localhost", cert.client_config().expect("cfg"))
        .await
        .expect("late client");
    late.writer()
        .send(Datagram::new(6, "after timeout"))
        .await
        .expect("send");
    assert_eq!(
        late.reader().next().await.expect("echo").expect("ok").tag(),
        6
    );
    server.abort();
}

#[tokio::test]
async fn failed_handshakes_are_counted_not_returned() {
    let (mut listener, addr, cert) = tls_listener(Duration::from_millis(200)).await;
    let mut garbage = TcpStream::connect(addr).await.expect("garbage");
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
        .await
        .expect("write");
    let _silent = TcpStream::connect(addr).await.expect("silent");
    let client_cfg = cert.client_config().expect("cfg");
    let client = tokio::spawn(async move {
        // Give the listener the bad ones first; the good client arrives after both failed.
        tokio::time::sleep(Duration::from_millis(700)).await;
        Connection::tls_client(addr, "localhost", client_cfg).await
    });
    let accepted = listener
        .accept()
        .await
        .expect("the good client, not an error");
    assert_eq!(listener.failed_handshakes(), 2);
    assert_eq!(accepted.local_addr().as_socket_addr(), Some(addr));
    client.await.expect("join").expect("client");
}

#[tokio::test]
async fn a_client_that_breaks_the_format_does_not_disturb_the_others() {
    let listener = Listener::bind_tcp("127.0.0.1:0").await.expect("bind");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let server = spawn_echo_server(listener);
    let mut bad = TcpStream::connect(addr).await.expect("bad");
    bad.write_all(&[0, 0, 0, 2, 0xde, 0xad])
        .await
        .expect("write");
    let mut good = Connection::tcp_client(addr).await.expect("good");
    for i in 0..100u16 {
        good.writer()
            .send(Datagram::new(i, "ok"))
            .await
            .expect("send");
        assert_eq!(
            good.reader().next().await.expect("echo").expect("ok").tag(),
            i
        );
    }
    server.abort();
}
