//! The queue's delivery guarantees: order, no loss, backpressure, clean close; over TCP, TLS, Unix
//! and memory.

#[path = "support/deadline.rs"]
mod deadline;
use deadline::within;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use missive::queue::{Connection, Datagram, Listener, QueueConfig, Reader, SendError, Writer};
use missive::transport::tls::SelfSigned;

/// The i-th datagram of a test sequence: its tag and payload both encode `i`.
fn nth(i: u32) -> Datagram {
    let mut payload = i.to_be_bytes().to_vec();
    payload.resize(4 + (i % 61) as usize, (i % 251) as u8);
    Datagram::new((i % 65_536) as u16, payload)
}

async fn expect_sequence(reader: &mut Reader, count: u32) {
    for i in 0..count {
        let got = reader
            .next()
            .await
            .unwrap_or_else(|| panic!("stream ended after {i} of {count} datagrams"))
            .expect("datagram");
        assert_eq!(got, nth(i), "datagram {i} out of order or corrupted");
    }
}

async fn send_sequence(writer: &mut Writer, count: u32, per_flush: u32) {
    for i in 0..count {
        writer.feed(nth(i)).await.expect("feed");
        if (i + 1) % per_flush == 0 {
            writer.flush().await.expect("flush");
        }
    }
    writer.flush().await.expect("flush");
}

async fn tcp_pair() -> (Connection, Connection) {
    let mut listener = Listener::bind_tcp("127.0.0.1:0").await.expect("bind");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let (client, server) = tokio::join!(Connection::tcp_client(addr), listener.accept());
    (client.expect("client"), server.expect("server"))
}

async fn tls_pair() -> (Connection, Connection) {
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let mut listener = Listener::bind_tls("127.0.0.1:0", cert.server_config().expect("server cfg"))
        .await
        .expect("bind");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let client_cfg = cert.client_config().expect("client cfg");
    let (client, server) = tokio::join!(
        Connection::tls_client(addr, "localhost", client_cfg),
        listener.accept()
    );
    (client.expect("client"), server.expect("server"))
}

/// Sends `count` datagrams from `client` to `server`, flushing every `per_flush`, with the receiver
/// starting `delay` after the sender; then closes and checks the clean end.
async fn deliver(pair: (Connection, Connection), count: u32, per_flush: u32, delay: Duration) {
    let (client, mut server) = pair;
    let (_, mut writer) = client.split();
    let sender = tokio::spawn(async move {
        send_sequence(&mut writer, count, per_flush).await;
        writer.close().await.expect("close");
    });
    tokio::time::sleep(delay).await;
    expect_sequence(server.reader(), count).await;
    assert!(
        server.reader().next().await.is_none(),
        "clean end after close"
    );
    sender.await.expect("sender");
}

#[tokio::test]
async fn queue_delivers_100k_in_order_over_tcp() {
    within(async {
        deliver(tcp_pair().await, 100_000, 512, Duration::ZERO).await;
    })
    .await;
}

#[tokio::test]
async fn receiver_starting_one_second_late_gets_all_100k_in_order_over_tcp() {
    within(async {
        deliver(tcp_pair().await, 100_000, 64, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn receiver_starting_one_second_late_gets_all_100k_in_order_over_tls() {
    within(async {
        deliver(tls_pair().await, 100_000, 64, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn burst_of_2048_per_flush_all_arrive_over_tcp() {
    within(async {
        deliver(tcp_pair().await, 20 * 2048, 2048, Duration::ZERO).await;
    })
    .await;
}

#[tokio::test]
async fn burst_of_2048_per_flush_all_arrive_over_tls() {
    within(async {
        deliver(tls_pair().await, 20 * 2048, 2048, Duration::ZERO).await;
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn queue_delivers_in_order_over_unix_socket() {
    within(async {
        let dir = std::env::temp_dir().join(format!("missive-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("q.sock");
        let _ = std::fs::remove_file(&path);
        let mut listener = Listener::bind_unix(&path).expect("bind");
        let (client, server) = tokio::join!(Connection::unix_client(&path), listener.accept());
        let (_, mut writer) = client.expect("client").split();
        let mut server = server.expect("server");
        let sender = tokio::spawn(async move { send_sequence(&mut writer, 10_000, 100).await });
        expect_sequence(server.reader(), 10_000).await;
        sender.await.expect("sender");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    })
    .await;
}

#[tokio::test]
async fn echo_round_trips_keep_tags_over_memory_pipe() {
    within(async {
        let (a, b) = missive::transport::memory::pair(4096);
        let mut client = Connection::new(a, QueueConfig::default());
        let server = Connection::new(b, QueueConfig::default());
        let echo = tokio::spawn(async move {
            let (mut reader, mut writer) = server.split();
            while let Some(d) = reader.next().await {
                writer.send(d.expect("datagram")).await.expect("echo");
            }
            writer.close().await.expect("close");
        });
        for i in 0..500 {
            client.writer().send(nth(i)).await.expect("send");
            let back = client
                .reader()
                .next()
                .await
                .expect("echo")
                .expect("datagram");
            assert_eq!(back, nth(i));
        }
        client.writer().close().await.expect("close");
        assert!(client.reader().next().await.is_none());
        echo.await.expect("echo task");
    })
    .await;
}

#[tokio::test]
async fn large_payloads_arrive_intact_between_small_ones() {
    within(async {
        let (client, mut server) = tcp_pair().await;
        let (_, mut writer) = client.split();
        let big = |i: u8| Datagram::new(u16::from(i), vec![i; 1 << 20]);
        let sender = tokio::spawn(async move {
            for i in 0..8u8 {
                writer.feed(big(i)).await.expect("feed big");
                writer
                    .feed(Datagram::new(1000 + u16::from(i), "small"))
                    .await
                    .expect("feed small");
            }
            writer.close().await.expect("close");
        });
        for i in 0..8u8 {
            assert_eq!(
                server.reader().next().await.expect("big").expect("ok"),
                big(i)
            );
            let small = server.reader().next().await.expect("small").expect("ok");
            assert_eq!(
                (small.tag(), small.payload().as_ref()),
                (1000 + u16::from(i), &b"small"[..])
            );
        }
        assert!(server.reader().next().await.is_none());
        sender.await.expect("sender");
    })
    .await;
}

/// How a test queues its datagrams: owned (`feed`) or from a borrowed payload (`feed_slice`).
#[derive(Debug, Clone, Copy)]
enum Feed {
    Datagram,
    Slice,
}

/// Queues the i-th test datagram the way `how` says.
async fn feed_nth(writer: &mut Writer, how: Feed, i: u32) -> Result<(), SendError> {
    let d = nth(i);
    match how {
        Feed::Datagram => writer.feed(d).await,
        Feed::Slice => writer.feed_slice(d.tag(), d.payload()).await,
    }
}

/// A sender whose peer stops reading waits with at most the send buffer (and one frame)
/// queued, and once the peer reads, everything accepted arrives in order, then what follows.
async fn sender_waits_with_bounded_memory(how: Feed) {
    let send_buffer = 16 * 1024;
    let (a, b) = missive::transport::memory::pair(8 * 1024);
    let config = QueueConfig::default().with_send_buffer(send_buffer);
    let (_, mut writer) = Connection::new(a, config).split();
    let mut server = Connection::new(b, QueueConfig::default());

    let mut queued = 0u32;
    let blocked = loop {
        assert!(queued < 100_000, "the sender never waited");
        match feed_nth(&mut writer, how, queued).now_or_never() {
            Some(result) => result.expect("feed"),
            None => break queued,
        }
        queued += 1;
        assert!(writer.queued_bytes() <= send_buffer + 64 + 8);
    };
    assert!(blocked > 0);
    // Nothing was lost: once the peer reads, everything that was accepted arrives in order, followed
    // by what is sent after the wait.
    let sender = tokio::spawn(async move {
        for i in blocked..blocked + 1000 {
            feed_nth(&mut writer, how, i).await.expect("feed");
        }
        writer.flush().await.expect("flush");
    });
    expect_sequence(server.reader(), blocked + 1000).await;
    sender.await.expect("sender");
}

#[tokio::test]
async fn a_peer_that_stops_reading_makes_the_sender_wait_with_bounded_memory() {
    within(async {
        sender_waits_with_bounded_memory(Feed::Datagram).await;
    })
    .await;
}

#[tokio::test]
async fn split_halves_join_back_into_a_working_connection() {
    within(async {
        let (client, mut server) = tcp_pair().await;
        let (reader, writer) = client.split();
        let mut client = Connection::join(reader, writer);
        client
            .writer()
            .send(Datagram::new(7, "ping"))
            .await
            .expect("send");
        let got = server.reader().next().await.expect("some").expect("ok");
        server.writer().send(got).await.expect("echo");
        let back = client.reader().next().await.expect("some").expect("ok");
        assert_eq!(back, Datagram::new(7, "ping"));
        assert_eq!(client.peer_addr(), server.local_addr());
        assert_eq!(client.local_addr(), server.peer_addr());
    })
    .await;
}

#[tokio::test]
async fn close_flushes_queued_datagrams_before_the_clean_end() {
    within(async {
        let (mut client, mut server) = tcp_pair().await;
        for i in 0..1000 {
            client.writer().feed(nth(i)).await.expect("feed");
        }
        client.close().await.expect("close");
        expect_sequence(server.reader(), 1000).await;
        assert!(server.reader().next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn send_after_close_is_a_closed_error() {
    within(async {
        let (mut client, _server) = tcp_pair().await;
        client.writer().close().await.expect("close");
        let err = client
            .writer()
            .send(Datagram::new(1, "late"))
            .await
            .expect_err("closed");
        assert!(matches!(err, missive::queue::SendError::Closed), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn payload_bytes_are_not_copied_on_receipt() {
    within(async {
        // Both frames are in the pipe before the reader runs, so one read takes them both.
        let (a, b) = missive::transport::memory::pair(64 * 1024);
        let mut client = Connection::new(a, QueueConfig::default());
        let mut server = Connection::new(b, QueueConfig::default());
        for (tag, payload) in [(1, &b"abc"[..]), (2, &b"defgh"[..])] {
            client
                .writer()
                .feed(Datagram::new(tag, Bytes::from_static(payload)))
                .await
                .expect("feed");
        }
        client.writer().flush().await.expect("flush");
        let one = server.reader().next().await.expect("one").expect("ok");
        let two = server.reader().next().await.expect("two").expect("ok");
        assert_eq!(one.payload(), &Bytes::from_static(b"abc"));
        assert_eq!(two.payload(), &Bytes::from_static(b"defgh"));
        // Views of the read buffer: the second payload starts where the first one and the second
        // header end. Copies would live in allocations of their own, never 8 bytes apart.
        let first = one.payload().as_ptr() as usize;
        let second = two.payload().as_ptr() as usize;
        assert_eq!(
            second,
            first + one.payload().len() + missive::queue::datagram::HEADER_LEN,
            "the payloads are not slices of one read buffer"
        );
        // Taking the payload out does not copy it either.
        assert_eq!(one.into_payload().as_ptr() as usize, first);
    })
    .await;
}

#[tokio::test]
async fn close_delivers_everything_to_a_tls_server_that_sends_session_tickets() {
    within(async {
        // Most TLS 1.3 servers send session tickets right after the handshake. A write-only client never
        // reads them; close() must still not end in a reset that loses the client's last datagrams.
        let cert = SelfSigned::generate(&["localhost"]).expect("cert");
        let mut server_config = (*cert.server_config().expect("cfg")).clone();
        server_config.send_tls13_tickets = 2;
        let mut listener = Listener::bind_tls("127.0.0.1:0", std::sync::Arc::new(server_config))
            .await
            .expect("bind");
        let addr = listener
            .local_addr()
            .expect("addr")
            .as_socket_addr()
            .expect("tcp");
        let client_cfg = cert.client_config().expect("client cfg");
        for _ in 0..3 {
            let (client, server) = tokio::join!(
                Connection::tls_client(addr, "localhost", client_cfg.clone()),
                listener.accept()
            );
            let mut client = client.expect("client");
            let mut server = server.expect("server");
            let receiver = tokio::spawn(async move {
                // A slow reader: the client's close arrives while most datagrams are still unread.
                tokio::time::sleep(Duration::from_millis(100)).await;
                expect_sequence(server.reader(), 20_000).await;
                assert!(server.reader().next().await.is_none(), "clean end");
            });
            send_sequence(client.writer(), 20_000, 1000).await;
            let closed = client.close().await.expect("close");
            assert_eq!(closed.discarded, 0);
            assert!(closed.peer_closed);
            receiver.await.expect("every datagram arrived");
        }
    })
    .await;
}

#[tokio::test]
async fn close_counts_datagrams_that_arrive_while_closing() {
    within(async {
        let (a, b) = missive::transport::memory::pair(1 << 16);
        let client = Connection::new(a, QueueConfig::default());
        let mut server = Connection::new(b, QueueConfig::default());
        for i in 0..3 {
            server.writer().send(nth(i)).await.expect("send");
        }
        server.writer().close().await.expect("server close");
        let closed = client.close().await.expect("close");
        assert_eq!(closed.discarded, 3);
        assert!(closed.peer_closed);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn close_gives_up_waiting_for_a_silent_peer_after_the_linger_time() {
    within(async {
        let (a, _b) = missive::transport::memory::pair(1 << 16);
        let config = QueueConfig::default().with_linger(Duration::from_millis(300));
        let client = Connection::new(a, config);
        let started = tokio::time::Instant::now();
        let closed = client.close().await.expect("close");
        assert!(!closed.peer_closed);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    })
    .await;
}

async fn next_datagram(reader: &mut Reader, i: u32) -> Datagram {
    reader
        .next()
        .await
        .unwrap_or_else(|| panic!("ended at {i}"))
        .expect("datagram")
}

#[tokio::test]
async fn feed_slice_and_feed_interleave_in_order_small_and_large() {
    within(async {
        let (mut client, mut server) = tcp_pair().await;
        let sender = tokio::spawn(async move {
            let writer = client.writer();
            for i in 0..3000u32 {
                match i % 4 {
                    0 => writer.feed(nth(i)).await.expect("feed"),
                    1 | 2 => feed_nth(writer, Feed::Slice, i).await.expect("feed_slice"),
                    // A payload past the copy threshold, by slice: it follows what feed queued.
                    _ => {
                        let big = vec![(i % 251) as u8; 10_000 + i as usize];
                        writer.feed_slice(9, &big).await.expect("feed_slice");
                        writer
                            .feed(Datagram::new(10, Bytes::from(big)))
                            .await
                            .expect("feed");
                    }
                }
            }
            writer.flush().await.expect("flush");
            client
        });
        for i in 0..3000u32 {
            if i % 4 == 3 {
                let big = vec![(i % 251) as u8; 10_000 + i as usize];
                let a = next_datagram(server.reader(), i).await;
                let b = next_datagram(server.reader(), i).await;
                assert_eq!((a.tag(), &a.payload()[..]), (9, &big[..]), "slice {i}");
                assert_eq!((b.tag(), &b.payload()[..]), (10, &big[..]), "bytes {i}");
            } else {
                assert_eq!(
                    next_datagram(server.reader(), i).await,
                    nth(i),
                    "datagram {i}"
                );
            }
        }
        drop(sender.await.expect("sender"));
    })
    .await;
}

#[tokio::test]
async fn feed_slice_refuses_what_feed_refuses_and_queues_nothing() {
    within(async {
        let (a, _b) = missive::transport::memory::pair(1 << 16);
        let config = QueueConfig::default().with_max_frame_len(1024);
        let mut conn = Connection::new(a, config);
        let writer = conn.writer();
        let too_large = writer.feed_slice(1, &[0; 1021]).await;
        assert!(
            matches!(
                too_large,
                Err(SendError::TooLarge {
                    len: 1021,
                    limit: 1020
                })
            ),
            "{too_large:?}"
        );
        let empty = writer.feed_slice(1, &[]).await;
        assert!(matches!(empty, Err(SendError::EmptyPayload)), "{empty:?}");
        assert_eq!(writer.queued_bytes(), 0);
        writer
            .feed_slice(1, &[0; 1020])
            .await
            .expect("at the limit");
        assert_eq!(writer.queued_bytes(), 1028);
        writer.close().await.expect("close");
        let closed = writer.feed_slice(1, b"late").await;
        assert!(matches!(closed, Err(SendError::Closed)), "{closed:?}");
    })
    .await;
}

#[tokio::test]
async fn feed_slice_waits_for_a_peer_that_stops_reading_with_bounded_memory() {
    within(async {
        sender_waits_with_bounded_memory(Feed::Slice).await;
    })
    .await;
}
