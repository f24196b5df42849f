//! The async layer over in-memory pipes: against itself, against rust-libp2p's yamux crate in
//! both roles, and against hand-written frames.

use std::time::Duration;

use futures_util::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::mpsc;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

use super::frame::{Header, Kind, flags};
use super::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Runs a connection's task; its inbound streams arrive on the channel, its end as the
/// channel's close (with the error, if any, in the join handle).
fn drive(
    mut conn: Connection<DuplexStream>,
) -> (
    mpsc::UnboundedReceiver<Stream<DuplexStream>>,
    Control<DuplexStream>,
    tokio::task::JoinHandle<Option<MuxError>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let control = conn.control();
    let task = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_next_inbound(cx)).await {
                Some(Ok(s)) => {
                    let _ = tx.send(s);
                }
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    });
    (rx, control, task)
}

fn pair(capacity: usize) -> (Connection<DuplexStream>, Connection<DuplexStream>) {
    let (a, b) = tokio::io::duplex(capacity);
    (
        Connection::new(a, Mode::Client, Config::default()),
        Connection::new(b, Mode::Server, Config::default()),
    )
}

/// Echoes every inbound stream: reads it to its FIN, writes it back, finishes.
fn serve_echo(mut inbound: mpsc::UnboundedReceiver<Stream<DuplexStream>>) {
    tokio::spawn(async move {
        while let Some(mut s) = inbound.recv().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("read");
                s.write_all(&got).await.expect("echo");
                s.shutdown().await.expect("FIN");
            });
        }
    });
}

/// Writes `data` and the FIN while reading the stream to its end; returns what came back.
async fn echo_through(mut s: Stream<DuplexStream>, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(&mut s);
    let send = async {
        w.write_all(data).await.expect("write");
        w.shutdown().await.expect("FIN");
    };
    let mut back = Vec::new();
    let ((), n) = tokio::join!(send, r.read_to_end(&mut back));
    n.expect("read the echo");
    back
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

#[tokio::test]
async fn streams_carry_more_than_a_window_both_ways_with_half_close() {
    tokio::time::timeout(DEADLINE, async {
        let (client, server) = pair(64 * 1024);
        let (_, control, _c) = drive(client);
        let (mut inbound, _, _s) = drive(server);
        let data = pattern(1024 * 1024 + 17);
        let echo = tokio::spawn(async move {
            let mut s = inbound.recv().await.expect("inbound stream");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read to FIN");
            s.write_all(&got).await.expect("echo");
            s.shutdown().await.expect("FIN");
            got.len()
        });
        let s = control.open().await.expect("open");
        assert_eq!(echo_through(s, &data).await, data);
        assert_eq!(echo.await.expect("step succeeds"), data.len());
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn many_streams_interleave_on_one_connection() {
    tokio::time::timeout(DEADLINE, async {
        let (client, server) = pair(16 * 1024);
        let (_, control, _c) = drive(client);
        let (inbound, _, _s) = drive(server);
        serve_echo(inbound);
        let mut tasks = Vec::new();
        for i in 0..50usize {
            let control = control.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = control.open().await.expect("open");
                let data = pattern(1000 + i * 997);
                s.write_all(&data).await.expect("write");
                s.shutdown().await.expect("FIN");
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.expect("read");
                assert_eq!(back, data);
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
    })
    .await
    .expect("in time");
}

/// rust-libp2p's yamux as the listener, ours dialing.
#[tokio::test]
async fn our_streams_work_against_the_yamux_crate_as_listener() {
    tokio::time::timeout(DEADLINE, async {
        let (a, b) = tokio::io::duplex(32 * 1024);
        let (_, control, _c) = drive(Connection::new(a, Mode::Client, Config::default()));
        let mut theirs =
            yamux::Connection::new(b.compat(), yamux::Config::default(), yamux::Mode::Server);
        tokio::spawn(async move {
            while let Some(Ok(mut s)) =
                std::future::poll_fn(|cx| theirs.poll_next_inbound(cx)).await
            {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.expect("their read");
                    s.write_all(&got).await.expect("their echo");
                    s.close().await.expect("their FIN");
                });
            }
        });
        for len in [0usize, 1, 300_000, 700_001] {
            let s = control.open().await.expect("open");
            let data = pattern(len);
            let back = echo_through(s, &data).await;
            assert_eq!(back.len(), data.len());
            assert!(back == data);
        }
    })
    .await
    .expect("in time");
}

/// rust-libp2p's yamux dialing, ours listening.
#[tokio::test]
async fn the_yamux_crate_as_dialer_reaches_our_streams() {
    tokio::time::timeout(DEADLINE, async {
        let (a, b) = tokio::io::duplex(32 * 1024);
        let (inbound, _, _s) = drive(Connection::new(b, Mode::Server, Config::default()));
        serve_echo(inbound);
        let theirs =
            yamux::Connection::new(a.compat(), yamux::Config::default(), yamux::Mode::Client);
        let (opener, mut opened) = mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<_>>();
        tokio::spawn(async move {
            let mut theirs = theirs;
            std::future::poll_fn(|cx| {
                while let std::task::Poll::Ready(Some(tx)) = opened.poll_recv(cx) {
                    match theirs.poll_new_outbound(cx) {
                        std::task::Poll::Ready(s) => {
                            let _ = tx.send(s);
                        }
                        std::task::Poll::Pending => panic!("opens at once"),
                    }
                }
                match theirs.poll_next_inbound(cx) {
                    std::task::Poll::Ready(_) => std::task::Poll::Ready(()),
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            })
            .await;
        });
        for len in [1usize, 65_536, 600_000] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            opener.send(tx).expect("step succeeds");
            let mut s = rx.await.expect("step succeeds").expect("their open");
            let data = pattern(len);
            s.write_all(&data).await.expect("their write");
            s.close().await.expect("their FIN");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("their read");
            assert!(back == data, "{len} bytes echoed");
        }
    })
    .await
    .expect("in time");
}

/// Reads one frame (header and body) from a raw peer.
async fn read_frame(io: &mut DuplexStream) -> (Header, Vec<u8>) {
    let mut h = [0u8; frame::HEADER_LEN];
    io.read_exact(&mut h).await.expect("header");
    let h = Header::decode(&h).expect("yamux");
    let mut body = vec![
        0u8;
        if h.kind == Kind::Data {
            h.length as usize
        } else {
            0
        }
    ];
    io.read_exact(&mut body).await.expect("body");
    (h, body)
}

#[tokio::test]
async fn a_reset_and_a_lost_connection_read_as_errors_a_fin_as_the_end() {
    tokio::time::timeout(DEADLINE, async {
        let (mut raw, b) = tokio::io::duplex(64 * 1024);
        let (mut inbound, _, task) = drive(Connection::new(b, Mode::Server, Config::default()));
        let mut frames = Vec::new();
        frames.extend_from_slice(&Header::data(1, flags::SYN | flags::FIN, 2).encode());
        frames.extend_from_slice(b"ok");
        frames.extend_from_slice(&Header::data(3, flags::SYN, 1).encode());
        frames.extend_from_slice(b"x");
        frames.extend_from_slice(&Header::window_update(3, flags::RST, 0).encode());
        frames.extend_from_slice(&Header::data(5, flags::SYN, 3).encode());
        frames.extend_from_slice(b"abc");
        raw.write_all(&frames).await.expect("step succeeds");
        let mut finished = inbound.recv().await.expect("step succeeds");
        let mut reset = inbound.recv().await.expect("step succeeds");
        let mut cut = inbound.recv().await.expect("step succeeds");
        let mut got = Vec::new();
        finished
            .read_to_end(&mut got)
            .await
            .expect("a FIN is a clean end");
        assert_eq!(got, b"ok");
        let mut buf = [0u8; 8];
        assert_eq!(
            reset.read(&mut buf).await.expect("step succeeds"),
            1,
            "data before the RST"
        );
        let e = reset.read(&mut buf).await.expect_err("an error");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(cut.read(&mut buf).await.expect("step succeeds"), 3);
        drop(raw);
        let e = cut.read(&mut buf).await.expect_err("an error");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        assert!(is_connection_lost(&e), "{e}");
        assert!(
            task.await.expect("step succeeds").is_none(),
            "a hang-up between frames is a clean end"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_protocol_error_is_answered_with_a_go_away_and_ends_the_connection() {
    tokio::time::timeout(DEADLINE, async {
        let (mut raw, b) = tokio::io::duplex(64 * 1024);
        let (_, _, task) = drive(Connection::new(b, Mode::Server, Config::default()));
        // Stream 2 is the listener's to open.
        raw.write_all(&Header::window_update(2, flags::SYN, 0).encode())
            .await
            .expect("step succeeds");
        let (h, _) = read_frame(&mut raw).await;
        assert_eq!(h, Header::go_away(frame::go_away::PROTOCOL_ERROR));
        let e = task.await.expect("step succeeds").expect("an error");
        assert!(
            matches!(e, MuxError::Protocol(ProtocolError::InvalidStreamId(2))),
            "{e}"
        );
    })
    .await
    .expect("in time");
}

/// A peer that sends pings and never reads: the answers wait in the output, which stops
/// growing at its limit because the connection stops reading.
#[tokio::test]
async fn a_peer_that_does_not_read_cannot_grow_the_output_past_its_limit() {
    tokio::time::timeout(DEADLINE, async {
        let (mut raw, b) = tokio::io::duplex(4 * 1024);
        let conn = Connection::new(b, Mode::Server, Config::default());
        let shared = conn.shared.clone();
        let (_, _, _task) = drive(conn);
        let ping = Header {
            kind: Kind::Ping,
            flags: flags::SYN,
            stream: 0,
            length: 1,
        }
        .encode();
        let burst: Vec<u8> = ping.iter().copied().cycle().take(12 * 4096).collect();
        let mut sent = 0usize;
        // Write until the connection stops taking pings (it reads no more once its output is
        // full), or far past what the limit allows.
        while sent < 8 * READ_STOP {
            match tokio::time::timeout(Duration::from_millis(500), raw.write_all(&burst)).await {
                Ok(r) => r.expect("step succeeds"),
                Err(_) => break,
            }
            sent += burst.len();
        }
        assert!(sent < 8 * READ_STOP, "the connection stopped reading");
        let pending = lock(&shared).pending.len();
        // The answers to one read's pings may go past the stop.
        assert!(
            pending <= READ_STOP + 4 * READ_CHUNK,
            "{pending} bytes of answers held"
        );
    })
    .await
    .expect("in time");
}

/// A writer faster than the wire: it waits for the output to drain instead of queueing
/// without bound.
#[tokio::test]
async fn a_fast_writer_waits_for_the_wire() {
    tokio::time::timeout(DEADLINE, async {
        let (raw, b) = tokio::io::duplex(4 * 1024);
        let conn = Connection::new(b, Mode::Client, Config::default());
        let shared = conn.shared.clone();
        let (_, control, _task) = drive(conn);
        let mut s = control.open().await.expect("step succeeds");
        // The peer's window is all the output can hold at first: 256 KiB; the raw side then
        // grants a large window and reads slowly.
        let (mut rd, mut wr) = tokio::io::split(raw);
        wr.write_all(&Header::window_update(1, flags::ACK, 64 * 1024 * 1024).encode())
            .await
            .expect("step succeeds");
        let writer = tokio::spawn(async move {
            let chunk = vec![1u8; 64 * 1024];
            for _ in 0..128 {
                s.write_all(&chunk).await.expect("step succeeds");
            }
        });
        let mut max_pending = 0;
        let mut buf = vec![0u8; 1024];
        let mut read = 0usize;
        while read < 128 * 64 * 1024 {
            let n = rd.read(&mut buf).await.expect("step succeeds");
            assert!(n > 0);
            read += n;
            max_pending = max_pending.max(lock(&shared).pending.len());
        }
        writer.await.expect("step succeeds");
        // One frame may go past the limit: a writer is stopped only before a write.
        assert!(
            max_pending <= OUTPUT_LIMIT + 64 * 1024 + frame::HEADER_LEN,
            "{max_pending}"
        );
    })
    .await
    .expect("in time");
}

/// A stream's reader reads the socket itself when nothing is buffered; if that read is then
/// cancelled, the connection's task must still be woken by the socket, or nothing would read
/// the connection again: here the peer's next stream would never be accepted.
#[tokio::test]
async fn a_cancelled_read_leaves_the_connection_reading() {
    tokio::time::timeout(DEADLINE, async {
        let (client, server) = pair(64 * 1024);
        let (mut client_inbound, client_control, _c) = drive(client);
        let (mut server_inbound, server_control, _s) = drive(server);
        let mut a = client_control.open().await.expect("open");
        a.write_all(b"a").await.expect("announce");
        let _a_on_server = server_inbound.recv().await.expect("inbound");
        // The read finds nothing buffered and nothing on the socket, registers, and is dropped.
        let mut buf = [0u8; 8];
        let cancelled = tokio::time::timeout(Duration::from_millis(50), a.read(&mut buf)).await;
        assert!(cancelled.is_err(), "nothing to read yet");
        let mut s = server_control.open().await.expect("open");
        s.write_all(b"hello").await.expect("write");
        let mut accepted = client_inbound
            .recv()
            .await
            .expect("the client's task read on");
        let mut got = [0u8; 5];
        accepted.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
    })
    .await
    .expect("in time");
}
