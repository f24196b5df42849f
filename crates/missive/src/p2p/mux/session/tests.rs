//! The session's semantics, without i/o: frames recorded as they leave, fed to a second session
//! as bytes.

use std::task::Waker;

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

/// Frames in the order they were sent, and their bytes.
#[derive(Default)]
struct Recorded {
    frames: Vec<(Header, Vec<u8>)>,
    bytes: Vec<u8>,
}

impl Output for Recorded {
    fn frame(&mut self, header: &Header, body: &[u8]) {
        self.frames.push((*header, body.to_vec()));
        self.bytes.extend_from_slice(&header.encode());
        self.bytes.extend_from_slice(body);
    }
}

impl Recorded {
    fn take(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.bytes.clear();
        std::mem::take(&mut self.frames)
    }
}

fn waker() -> Waker {
    Waker::noop().clone()
}

fn bytes_of(frames: &[(Header, &[u8])]) -> BytesMut {
    let mut b = BytesMut::new();
    for (h, body) in frames {
        b.extend_from_slice(&h.encode());
        b.extend_from_slice(body);
    }
    b
}

/// A client and a server session and what each has sent but the other not received.
struct Pair {
    client: Session,
    server: Session,
    to_server: Recorded,
    to_client: Recorded,
}

impl Pair {
    fn new(config: Config) -> Self {
        Self {
            client: Session::new(Mode::Client, config),
            server: Session::new(Mode::Server, config),
            to_server: Recorded::default(),
            to_client: Recorded::default(),
        }
    }

    /// Delivers everything in flight, both ways, until nothing more is sent.
    fn deliver(&mut self) -> Result<(), ProtocolError> {
        for _ in 0..16 {
            if self.to_server.bytes.is_empty() && self.to_client.bytes.is_empty() {
                return Ok(());
            }
            let mut input = BytesMut::from(&self.to_server.bytes[..]);
            self.to_server.take();
            self.server.receive(&mut input, &mut self.to_client)?;
            assert!(input.is_empty(), "whole frames were delivered");
            let mut input = BytesMut::from(&self.to_client.bytes[..]);
            self.to_client.take();
            self.client.receive(&mut input, &mut self.to_server)?;
            assert!(input.is_empty());
        }
        panic!("the sessions kept answering each other");
    }
}

#[test]
fn an_outbound_stream_announces_itself_with_its_first_frame_only() {
    let mut s = Session::new(Mode::Client, Config::default());
    let mut out = Recorded::default();
    let a = s.open().expect("step succeeds");
    let b = s.open().expect("step succeeds");
    assert_eq!((a, b), (1, 3), "the dialer opens odd ids");
    assert!(
        out.frames.is_empty(),
        "nothing is sent before the first write"
    );
    assert_eq!(s.write(a, b"hi", &waker(), &mut out), Write::Written(2));
    assert_eq!(s.write(a, b"!", &waker(), &mut out), Write::Written(1));
    assert_eq!(s.finish(a, &mut out), Write::Written(0));
    let frames = out.take();
    assert_eq!(frames[0].0, Header::data(1, flags::SYN, 2));
    assert_eq!(frames[0].1, b"hi");
    assert_eq!(frames[1].0, Header::data(1, 0, 1));
    assert_eq!(frames[2].0, Header::data(1, flags::FIN, 0));
    let mut server = Session::new(Mode::Server, Config::default());
    assert_eq!(
        server.open().expect("step succeeds"),
        2,
        "the listener opens even ids"
    );
}

#[test]
fn an_inbound_stream_is_acknowledged_by_the_first_frame_sent_on_it() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().expect("step succeeds");
    p.client.write(id, b"ping", &waker(), &mut p.to_server);
    p.deliver().expect("step succeeds");
    assert_eq!(p.server.take_inbound(), Some(id));
    let mut buf = [0u8; 16];
    assert_eq!(
        p.server.read(id, &mut buf, &waker(), &mut p.to_client),
        Read::Data(4)
    );
    assert_eq!(&buf[..4], b"ping");
    p.server.write(id, b"pong", &waker(), &mut p.to_client);
    assert_eq!(p.to_client.frames[0].0, Header::data(id, flags::ACK, 4));
    assert_eq!(p.client.unacknowledged, 1);
    p.deliver().expect("step succeeds");
    assert_eq!(p.client.unacknowledged, 0, "the ACK was seen");
    assert_eq!(
        p.client.read(id, &mut buf, &waker(), &mut p.to_server),
        Read::Data(4)
    );
}

#[test]
fn a_sender_stops_at_the_window_and_reading_half_of_it_grants_more() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().expect("step succeeds");
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    loop {
        match p.client.write(id, &chunk, &waker(), &mut p.to_server) {
            Write::Written(n) => sent += n,
            Write::Pending => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        sent, INITIAL_WINDOW as usize,
        "a stream's first window is 256 KiB"
    );
    p.deliver().expect("step succeeds");
    assert_eq!(p.server.take_inbound(), Some(id));
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    while read < INITIAL_WINDOW as usize / 2 {
        assert!(
            p.to_client.frames.is_empty(),
            "no credit before half is read"
        );
        let Read::Data(n) = p.server.read(id, &mut buf, &waker(), &mut p.to_client) else {
            panic!("data is buffered");
        };
        read += n;
    }
    assert_eq!(
        p.to_client.frames[0].0,
        Header::window_update(id, flags::ACK, INITIAL_WINDOW / 2)
    );
    p.deliver().expect("step succeeds");
    assert_eq!(
        p.client.write(id, &chunk, &waker(), &mut p.to_server),
        Write::Written(64 * 1024)
    );
}

#[test]
fn a_window_the_reader_outruns_doubles_up_to_its_maximum_and_the_budget() {
    let config = Config {
        max_receive_window: 1024 * 1024,
        window_budget: 1024 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(config);
    let mut windows = Vec::new();
    let a = p.client.open().expect("open");
    let mut buf = vec![0u8; 64 * 1024];
    let chunk = vec![1u8; 64 * 1024];
    for _ in 0..12 {
        // The sender fills the window; the reader empties it each time.
        while let Write::Written(_) = p.client.write(a, &chunk, &waker(), &mut p.to_server) {}
        p.deliver().expect("deliver");
        while let Read::Data(_) = p.server.read(a, &mut buf, &waker(), &mut p.to_client) {}
        windows.push(p.server.streams[&a].window);
        p.deliver().expect("deliver");
    }
    assert_eq!(windows[..3], [512 * 1024, 1024 * 1024, 1024 * 1024]);
    assert_eq!(p.server.window_growth, 768 * 1024);
    // A second stream gets what is left of the budget, and no more.
    let b = p.client.open().expect("open");
    for _ in 0..12 {
        while let Write::Written(_) = p.client.write(b, &chunk, &waker(), &mut p.to_server) {}
        p.deliver().expect("deliver");
        while let Read::Data(_) = p.server.read(b, &mut buf, &waker(), &mut p.to_client) {}
        p.deliver().expect("deliver");
    }
    assert_eq!(p.server.streams[&b].window, 512 * 1024);
    assert_eq!(p.server.window_growth, 1024 * 1024);
    // A dropped stream gives its growth back.
    p.server.drop_stream(a, &mut p.to_client);
    assert_eq!(p.server.window_growth, 256 * 1024);
}

#[test]
fn a_window_whose_reader_lags_does_not_grow() {
    let mut p = Pair::new(Config::default());
    let a = p.client.open().expect("open");
    let chunk = vec![1u8; 64 * 1024];
    while let Write::Written(_) = p.client.write(a, &chunk, &waker(), &mut p.to_server) {}
    p.deliver().expect("deliver");
    // Half the window read, the rest still buffered: credit for what was read, no growth.
    let mut buf = vec![0u8; INITIAL_WINDOW as usize / 2];
    assert_eq!(
        p.server.read(a, &mut buf, &waker(), &mut p.to_client),
        Read::Data(buf.len())
    );
    assert_eq!(
        p.to_client.frames[0].0,
        Header::window_update(a, flags::ACK, INITIAL_WINDOW / 2)
    );
    assert_eq!(p.server.streams[&a].window, INITIAL_WINDOW);
}

#[test]
fn data_past_the_window_is_a_protocol_error() {
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let full = vec![0u8; INITIAL_WINDOW as usize];
    let mut input = bytes_of(&[
        (Header::data(1, flags::SYN, INITIAL_WINDOW), &full),
        (Header::data(1, 0, 1), b"x"),
    ]);
    assert_eq!(
        s.receive(&mut input, &mut out),
        Err(ProtocolError::WindowExceeded(1))
    );
}

#[test]
fn an_oversized_data_frame_is_refused_before_its_body_arrives() {
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let mut input = bytes_of(&[(Header::data(1, flags::SYN, u32::MAX), b"")]);
    assert_eq!(
        s.receive(&mut input, &mut out),
        Err(ProtocolError::FrameTooLarge(u32::MAX))
    );
}

#[test]
fn a_partial_frame_waits_for_the_rest() {
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let whole = bytes_of(&[(Header::data(1, flags::SYN, 5), b"hello")]);
    let mut input = BytesMut::from(&whole[..9]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(input.len(), 9, "an incomplete header stays");
    input.extend_from_slice(&whole[9..14]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(input.len(), 14, "an incomplete body stays");
    assert_eq!(s.take_inbound(), None);
    input.extend_from_slice(&whole[14..]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert!(input.is_empty());
    assert_eq!(s.take_inbound(), Some(1));
}

#[test]
fn streams_the_peer_may_not_open_are_protocol_errors() {
    let mut out = Recorded::default();
    let mut server = Session::new(Mode::Server, Config::default());
    let mut even = bytes_of(&[(Header::window_update(2, flags::SYN, 0), b"")]);
    assert_eq!(
        server.receive(&mut even, &mut out),
        Err(ProtocolError::InvalidStreamId(2))
    );
    let mut client = Session::new(Mode::Client, Config::default());
    let mut zero = bytes_of(&[(Header::window_update(0, flags::SYN, 0), b"")]);
    assert_eq!(
        client.receive(&mut zero, &mut out),
        Err(ProtocolError::InvalidStreamId(0))
    );
    let mut server = Session::new(Mode::Server, Config::default());
    let mut twice = bytes_of(&[
        (Header::window_update(1, flags::SYN, 0), b""),
        (Header::window_update(1, flags::SYN, 0), b""),
    ]);
    assert_eq!(
        server.receive(&mut twice, &mut out),
        Err(ProtocolError::DuplicateStream(1))
    );
}

#[test]
fn a_window_update_past_two_to_the_32_is_a_protocol_error() {
    let mut p = Pair::new(Config::default());
    let id = p.client.open().expect("step succeeds");
    p.client.write(id, b"x", &waker(), &mut p.to_server);
    p.deliver().expect("step succeeds");
    let mut input = bytes_of(&[(Header::window_update(id, 0, u32::MAX), b"")]);
    assert_eq!(
        p.client.receive(&mut input, &mut p.to_server),
        Err(ProtocolError::WindowOverflow(id))
    );
}

#[test]
fn streams_past_the_cap_are_reset_without_being_kept() {
    let config = Config {
        max_inbound_streams: 2,
        ..Config::default()
    };
    let mut s = Session::new(Mode::Server, config);
    let mut out = Recorded::default();
    let mut input = bytes_of(&[
        (Header::window_update(1, flags::SYN, 0), b""),
        (Header::window_update(3, flags::SYN, 0), b""),
        (Header::data(5, flags::SYN, 3), b"abc"),
    ]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(s.streams(), 2);
    assert_eq!(out.take()[0].0, Header::window_update(5, flags::RST, 0));
    // The connection goes on: a stream dropped makes room for the next.
    s.drop_stream(1, &mut out);
    let mut input = bytes_of(&[(Header::window_update(7, flags::SYN, 0), b"")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(s.streams(), 2);
}

#[test]
fn a_ping_is_answered_with_its_value() {
    let mut s = Session::new(Mode::Client, Config::default());
    let mut out = Recorded::default();
    let mut input = bytes_of(&[
        (
            Header {
                kind: Kind::Ping,
                flags: flags::SYN,
                stream: 0,
                length: 0xdead_beef,
            },
            b"",
        ),
        (Header::pong(7), b""),
    ]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(out.take(), vec![(Header::pong(0xdead_beef), Vec::new())]);
}

#[test]
fn a_reset_ends_reads_after_the_buffered_data_and_fails_writes() {
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let mut input = bytes_of(&[
        (Header::data(1, flags::SYN, 3), b"abc"),
        (Header::window_update(1, flags::RST, 0), b""),
    ]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    let mut buf = [0u8; 8];
    assert_eq!(s.read(1, &mut buf, &waker(), &mut out), Read::Data(3));
    assert_eq!(s.read(1, &mut buf, &waker(), &mut out), Read::Reset);
    assert_eq!(s.write(1, b"x", &waker(), &mut out), Write::Reset);
    s.drop_stream(1, &mut out);
    assert!(out.frames.is_empty(), "a reset stream is not answered");
}

#[test]
fn a_fin_ends_reads_and_leaves_the_other_direction_open() {
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let mut input = bytes_of(&[(Header::data(1, flags::SYN | flags::FIN, 3), b"abc")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    let mut buf = [0u8; 8];
    assert_eq!(s.read(1, &mut buf, &waker(), &mut out), Read::Data(3));
    assert_eq!(s.read(1, &mut buf, &waker(), &mut out), Read::Finished);
    assert_eq!(s.write(1, b"answer", &waker(), &mut out), Write::Written(6));
    assert_eq!(s.finish(1, &mut out), Write::Written(0));
    assert_eq!(
        s.write(1, b"more", &waker(), &mut out),
        Write::Finished,
        "nothing after our FIN"
    );
}

#[test]
fn a_dropped_stream_is_reset_finished_or_not_mentioned_by_its_state() {
    let mut out = Recorded::default();
    let mut s = Session::new(Mode::Server, Config::default());
    let mut input = bytes_of(&[
        (Header::window_update(1, flags::SYN, 0), b""),
        (Header::window_update(3, flags::SYN | flags::FIN, 0), b""),
        (Header::window_update(5, flags::SYN, 0), b""),
    ]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    s.drop_stream(1, &mut out);
    s.drop_stream(3, &mut out);
    s.finish(5, &mut out);
    s.drop_stream(5, &mut out);
    let frames: Vec<Header> = out.take().into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        frames,
        vec![
            Header::data(1, flags::ACK | flags::RST, 0),
            Header::data(3, flags::ACK | flags::FIN, 0),
            Header::data(5, flags::ACK | flags::FIN, 0),
        ]
    );
    let mut c = Session::new(Mode::Client, Config::default());
    let id = c.open().expect("step succeeds");
    c.drop_stream(id, &mut out);
    assert!(
        out.frames.is_empty(),
        "a stream never announced is not reset"
    );
    assert_eq!(c.unacknowledged, 0);
}

#[test]
fn late_frames_for_a_dropped_stream_are_ignored() {
    let mut out = Recorded::default();
    let mut s = Session::new(Mode::Server, Config::default());
    let mut input = bytes_of(&[(Header::window_update(1, flags::SYN, 0), b"")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    s.drop_stream(1, &mut out);
    let mut input = bytes_of(&[
        (Header::data(1, 0, 3), b"abc"),
        (Header::window_update(1, 0, 100), b""),
        (Header::data(1, flags::FIN, 0), b""),
    ]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(s.streams(), 0);
}

#[test]
fn opens_wait_for_acknowledgements_and_end_with_a_go_away() {
    let config = Config {
        max_unacknowledged: 2,
        ..Config::default()
    };
    let mut p = Pair::new(config);
    let a = p.client.open().expect("step succeeds");
    let _b = p.client.open().expect("step succeeds");
    assert_eq!(p.client.open(), Err(OpenError::Backlog));
    p.client.write(a, b"x", &waker(), &mut p.to_server);
    p.deliver().expect("step succeeds");
    let mut buf = [0u8; 1];
    p.server.read(a, &mut buf, &waker(), &mut p.to_client);
    p.server.write(a, b"y", &waker(), &mut p.to_client);
    p.deliver().expect("step succeeds");
    assert!(p.client.open().is_ok(), "an ACK makes room");
    p.server.go_away(go_away::NORMAL, &mut p.to_client);
    p.deliver().expect("step succeeds");
    assert_eq!(p.client.open(), Err(OpenError::Closed));
}

#[test]
fn a_lost_connection_fails_reads_and_writes_but_not_buffered_data() {
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let mut input = bytes_of(&[(Header::data(1, flags::SYN, 2), b"ab")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    s.connection_lost();
    let mut buf = [0u8; 8];
    assert_eq!(s.read(1, &mut buf, &waker(), &mut out), Read::Data(2));
    assert_eq!(s.read(1, &mut buf, &waker(), &mut out), Read::Lost);
    assert_eq!(s.write(1, b"x", &waker(), &mut out), Write::Lost);
    assert_eq!(s.open(), Err(OpenError::Closed));
}

#[test]
fn a_waiting_reader_is_woken_by_data_and_by_the_end() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Count(AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let w = Waker::from(count.clone());
    let mut s = Session::new(Mode::Server, Config::default());
    let mut out = Recorded::default();
    let mut input = bytes_of(&[(Header::window_update(1, flags::SYN, 0), b"")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    let mut buf = [0u8; 8];
    assert_eq!(s.read(1, &mut buf, &w, &mut out), Read::Pending);
    let mut input = bytes_of(&[(Header::data(1, 0, 1), b"a")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(count.0.load(Ordering::Relaxed), 1);
    assert_eq!(s.read(1, &mut buf, &w, &mut out), Read::Data(1));
    assert_eq!(s.read(1, &mut buf, &w, &mut out), Read::Pending);
    let mut input = bytes_of(&[(Header::data(1, flags::FIN, 0), b"")]);
    s.receive(&mut input, &mut out).expect("step succeeds");
    assert_eq!(count.0.load(Ordering::Relaxed), 2);
    assert_eq!(s.read(1, &mut buf, &w, &mut out), Read::Finished);
}

/// One step of a random exchange between a client and a server.
#[derive(Debug, Clone)]
enum Op {
    Open,
    Write { stream: usize, len: usize },
    Read { stream: usize, len: usize },
    Finish { stream: usize },
    Deliver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Open),
        4 => (0usize..4, 1usize..100_000).prop_map(|(stream, len)| Op::Write { stream, len }),
        4 => (0usize..4, 1usize..100_000).prop_map(|(stream, len)| Op::Read { stream, len }),
        1 => (0usize..4).prop_map(|stream| Op::Finish { stream }),
        3 => Just(Op::Deliver),
    ]
}

proptest! {
    /// Whatever the order of writes, reads and deliveries, every stream's bytes arrive
    /// intact and in order, no side buffers more than its windows, and no step breaks the
    /// protocol.
    #[test]
    fn random_exchanges_keep_every_byte_and_every_window(ops in proptest::collection::vec(op(), 1..60)) {
        let mut p = Pair::new(Config::default());
        // Per stream: (id, bytes sent, bytes received, finished).
        let mut streams: Vec<(u32, u64, u64, bool)> = Vec::new();
        let mut buf = vec![0u8; 100_000];
        let pattern = |i: u64| (i % 251) as u8;
        for op in ops {
            match op {
                Op::Open => {
                    if let Ok(id) = p.client.open() {
                        streams.push((id, 0, 0, false));
                    }
                }
                Op::Write { stream, len } => {
                    let Some(s) = streams.get_mut(stream) else { continue };
                    if s.3 { continue; }
                    let data: Vec<u8> = (s.1..s.1 + len as u64).map(pattern).collect();
                    if let Write::Written(n) = p.client.write(s.0, &data, &waker(), &mut p.to_server) {
                        s.1 += n as u64;
                    }
                }
                Op::Read { stream, len } => {
                    let Some(s) = streams.get_mut(stream) else { continue };
                    match p.server.read(s.0, &mut buf[..len], &waker(), &mut p.to_client) {
                        Read::Data(n) => {
                            for (k, b) in buf[..n].iter().enumerate() {
                                prop_assert_eq!(*b, pattern(s.2 + k as u64));
                            }
                            s.2 += n as u64;
                        }
                        Read::Finished => prop_assert!(s.3 && s.2 == s.1),
                        Read::Pending | Read::Lost => {}
                        Read::Reset => prop_assert!(false, "nothing resets"),
                    }
                }
                Op::Finish { stream } => {
                    let Some(s) = streams.get_mut(stream) else { continue };
                    p.client.finish(s.0, &mut p.to_server);
                    s.3 = true;
                }
                Op::Deliver => {
                    p.deliver().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    while p.server.take_inbound().is_some() {}
                }
            }
            for s in &streams {
                let window = p.server.streams.get(&s.0).map_or(INITIAL_WINDOW, |st| st.window);
                prop_assert!(s.1 - s.2 <= u64::from(window), "in flight within the window");
            }
        }
    }

    /// Arbitrary input never panics the session, and how it is cut into reads changes
    /// nothing: the same frames, the same error.
    #[test]
    fn input_cut_anywhere_gives_the_same_outcome(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        piece in 1usize..40,
    ) {
        let whole = {
            let mut s = Session::new(Mode::Server, Config::default());
            let mut out = Recorded::default();
            let mut input = BytesMut::from(&data[..]);
            let r = s.receive(&mut input, &mut out);
            (r, out.bytes, s.streams())
        };
        let cut = {
            let mut s = Session::new(Mode::Server, Config::default());
            let mut out = Recorded::default();
            let mut input = BytesMut::new();
            let mut r = Ok(());
            for chunk in data.chunks(piece) {
                input.extend_from_slice(chunk);
                r = s.receive(&mut input, &mut out);
                if r.is_err() { break; }
            }
            (r, out.bytes, s.streams())
        };
        prop_assert_eq!(whole, cut);
    }
}

proptest! {
    /// The fuzz target's entry point gives the same outcome however its input is cut.
    #[test]
    fn the_fuzzing_entry_point_does_not_depend_on_cuts(
        frames in proptest::collection::vec((0u8..4, any::<u16>(), 0u32..8, 0u32..64), 0..12),
        piece in 1usize..30,
    ) {
        // Mostly well-formed frames (small ids and lengths), so that streams open and carry data.
        let mut input = Vec::new();
        for (kind, flags, stream, length) in frames {
            let mut h = [0u8; HEADER_LEN];
            h[1] = kind;
            h[2..4].copy_from_slice(&(flags & 0xf).to_be_bytes());
            h[4..8].copy_from_slice(&stream.to_be_bytes());
            h[8..12].copy_from_slice(&length.to_be_bytes());
            input.extend_from_slice(&h);
            if kind == 0 {
                input.extend((0..length).map(|i| i as u8));
            }
        }
        prop_assert_eq!(
            session_for_fuzzing(&input, piece),
            session_for_fuzzing(&input, usize::MAX)
        );
    }
}
