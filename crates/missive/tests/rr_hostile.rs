//! Request-response under abuse and misuse: floods nobody reads the events of, handlers that
//! panic, codecs that fail oddly, several connections to one peer, dials to dead addresses, and
//! calls from outside the runtime.
#![cfg(feature = "cbor")]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig};
use missive::request_response::{
    Behaviour, Codec, Config, Event, InboundFailure, Message, OutboundFailure, ProtocolSupport,
    cbor,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Notify;
use tokio::time::Instant;

type Cbor = cbor::Codec<String, String>;

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const DEADLINE: Duration = Duration::from_secs(30);

fn full(name: &str) -> [(String, ProtocolSupport); 1] {
    [(name.to_owned(), ProtocolSupport::Full)]
}

/// A listening node and a second node that knows its address.
async fn pair() -> (Node, Node, Multiaddr) {
    let a = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let b = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let addr = a
        .listen(LOOPBACK.parse().expect("addr"))
        .await
        .expect("listen");
    b.add_address(a.peer_id(), addr.clone());
    (a, b, addr)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// 10,000 inbound requests refused by the stream limit while the application never reads the
/// behaviour's events: no task waits on the event buffer, the buffer keeps its bound and counts
/// what it dropped, and the node and the behaviour go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rr_refused_requests_park_no_task_while_nobody_reads_events() {
    const FLOOD: usize = 10_000;
    const CAPACITY: usize = 64;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (a, b, _) = pair().await;
        let server = Behaviour::<Cbor>::new(
            &a,
            full("/flood/1"),
            Config::default()
                .with_max_concurrent_streams(1)
                .with_event_capacity(CAPACITY),
        )
        .expect("rr");
        let client = Behaviour::<Cbor>::new(&b, full("/flood/1"), Config::default()).expect("rr");
        // A stream that negotiates the protocol and never sends its request holds the server's
        // only stream slot, with no event, until the request timeout.
        let held = b
            .stream_control()
            .open_stream(
                a.peer_id(),
                missive::stream::StreamProtocol::new("/flood/1"),
            )
            .await
            .expect("stream");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = alive_tasks();
        let refused = futures_util::stream::iter(0..FLOOD)
            .map(|i| {
                let client = client.clone();
                let peer = a.peer_id();
                async move { client.request(peer, format!("flood {i}")).await }
            })
            .buffer_unordered(32)
            .filter(|r| std::future::ready(r.is_err()))
            .count()
            .await;
        assert_eq!(refused, FLOOD, "every flooding request is refused");
        let parked = alive_tasks().saturating_sub(before);
        assert!(parked < 64, "{parked} tasks are left behind by the flood");

        // The events are bounded; what did not fit is counted, oldest first.
        let mut events = server.events().expect("events");
        let dropped = events.dropped();
        assert_eq!(dropped as usize, FLOOD - CAPACITY);
        let mut kept = 0;
        while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
            assert!(
                matches!(
                    e,
                    Event::InboundFailure {
                        error: InboundFailure::TooManyStreams,
                        ..
                    }
                ),
                "{e:?}"
            );
            kept += 1;
        }
        assert_eq!(kept, CAPACITY);
        // Resetting the held stream fails its request and frees the slot.
        drop(held);
        match tokio::time::timeout(DEADLINE, events.next()).await {
            Ok(Some(Event::InboundFailure { error, .. })) => {
                assert!(
                    !matches!(error, InboundFailure::TooManyStreams),
                    "{error:?}"
                );
            }
            other => panic!("{other:?}"),
        }

        // And the behaviour serves new requests, answered through the events.
        let responder = server.clone();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if let Event::Message {
                    message:
                        Message::Request {
                            request, channel, ..
                        },
                    ..
                } = e
                {
                    let _ = responder.send_response(channel, request);
                }
            }
        });
        let answer = client
            .request(a.peer_id(), "after".to_owned())
            .await
            .expect("served after the flood");
        assert_eq!(answer, "after");
    })
    .await
    .expect("in time");
}

/// A behaviour that serves with a handler still delivers the outcomes of `send_request` on its
/// event stream.
#[tokio::test]
async fn rr_a_served_behaviour_still_reports_its_own_requests_outcomes() {
    tokio::time::timeout(DEADLINE, async {
        let (a, b, _) = pair().await;
        let server = Behaviour::<Cbor>::new(&a, full("/both/1"), Config::default()).expect("rr");
        server
            .serve(|_, r: String| async move { format!("a:{r}") })
            .expect("serve");
        let peer = Behaviour::<Cbor>::new(&b, full("/both/1"), Config::default()).expect("rr");
        peer.serve(|_, r: String| async move { format!("b:{r}") })
            .expect("serve");
        let mut events = peer.events().expect("events stay with the application");
        let id = peer.send_request(a.peer_id(), "hi".to_owned());
        loop {
            match events.next().await.expect("events") {
                Event::Message {
                    message:
                        Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } => {
                    assert_eq!(request_id, id);
                    assert_eq!(response, "a:hi");
                    break;
                }
                Event::ResponseSent { .. } => continue,
                other => panic!("{other:?}"),
            }
        }
        // And the server's handler answers requests of its own peer too.
        let back = server
            .request(b.peer_id(), "yo".to_owned())
            .await
            .expect("answered");
        assert_eq!(back, "b:yo");
    })
    .await
    .expect("in time");
}

/// A handler that panics before it returns its future fails only its request, with an event.
#[tokio::test]
async fn rr_a_handler_panicking_before_its_future_fails_only_its_request() {
    tokio::time::timeout(DEADLINE, async {
        let (a, b, _) = pair().await;
        let server =
            Behaviour::<Cbor>::new(&a, full("/sync-panic/1"), Config::default()).expect("rr");
        server
            .serve(|_, r: String| {
                assert_ne!(r, "boom", "a handler bug in its synchronous part");
                async move { r }
            })
            .expect("serve");
        let mut events = server.events().expect("events");
        let client =
            Behaviour::<Cbor>::new(&b, full("/sync-panic/1"), Config::default()).expect("rr");
        let failed = client.request(a.peer_id(), "boom".to_owned()).await;
        assert!(failed.is_err(), "{failed:?}");
        match events.next().await.expect("events") {
            Event::InboundFailure {
                error: InboundFailure::ResponseOmission,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        let ok = client
            .request(a.peer_id(), "fine".to_owned())
            .await
            .expect("served");
        assert_eq!(ok, "fine");
    })
    .await
    .expect("in time");
}

/// A codec whose response reader fails with `Unsupported`: a codec error, not a protocol
/// refusal.
#[derive(Debug, Clone, Default)]
struct UnsupportedResponses;

impl Codec for UnsupportedResponses {
    type Protocol = String;
    type Request = String;
    type Response = String;

    async fn read_request<T>(&mut self, _: &String, io: &mut T) -> io::Result<String>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut s = String::new();
        io.read_to_string(&mut s).await?;
        Ok(s)
    }

    async fn read_response<T>(&mut self, _: &String, io: &mut T) -> io::Result<String>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut s = String::new();
        io.read_to_string(&mut s).await?;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this codec cannot read {s:?}"),
        ))
    }

    async fn write_request<T>(&mut self, _: &String, io: &mut T, r: String) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(r.as_bytes()).await
    }

    async fn write_response<T>(&mut self, _: &String, io: &mut T, r: String) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(r.as_bytes()).await
    }
}

#[tokio::test]
async fn rr_a_codec_error_of_kind_unsupported_is_an_io_failure() {
    tokio::time::timeout(DEADLINE, async {
        let (a, b, _) = pair().await;
        let server = Behaviour::<UnsupportedResponses>::new(&a, full("/odd/1"), Config::default())
            .expect("rr");
        server.serve(|_, r| async move { r }).expect("serve");
        let client = Behaviour::<UnsupportedResponses>::new(&b, full("/odd/1"), Config::default())
            .expect("rr");
        let err = client
            .request(a.peer_id(), "x".to_owned())
            .await
            .expect_err("the codec fails");
        match err {
            OutboundFailure::Io(e) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
            other => panic!("expected the codec's error, got {other:?}"),
        }
    })
    .await
    .expect("in time");
}

/// With two connections to a peer and the stream limit reached on one, a request goes on the
/// other.
#[tokio::test]
async fn rr_a_request_uses_another_connection_when_one_is_at_its_stream_limit() {
    tokio::time::timeout(DEADLINE, async {
        let (a, b, addr) = pair().await;
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let server = Behaviour::<Cbor>::new(&a, full("/two/1"), Config::default()).expect("rr");
        let (e, r) = (entered.clone(), release.clone());
        server
            .serve(move |_, req: String| {
                let (e, r) = (e.clone(), r.clone());
                async move {
                    if req == "hold" {
                        e.notify_one();
                        r.notified().await;
                    }
                    req
                }
            })
            .expect("serve");
        // Two connections: dials without a PeerId are not shared.
        b.dial(addr.clone()).await.expect("first connection");
        b.dial(addr).await.expect("second connection");
        let client = Behaviour::<Cbor>::new(
            &b,
            full("/two/1"),
            Config::default().with_max_concurrent_streams(1),
        )
        .expect("rr");
        let held = tokio::spawn({
            let client = client.clone();
            let peer = a.peer_id();
            async move { client.request(peer, "hold".to_owned()).await }
        });
        entered.notified().await;
        let second = client
            .request(a.peer_id(), "next".to_owned())
            .await
            .expect("sent on the other connection");
        assert_eq!(second, "next");
        release.notify_one();
        assert_eq!(held.await.expect("task").expect("answered"), "hold");
    })
    .await
    .expect("in time");
}

/// A TCP listener that never accepts: connections to it complete in the kernel and then
/// stall, like a peer that died behind a black hole.
fn stalling_address() -> (std::net::TcpListener, Multiaddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = Multiaddr::from_socket_addr(l.local_addr().expect("addr"));
    (l, addr)
}

/// An address nobody listens on: connections to it are refused.
fn refused_address() -> Multiaddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = Multiaddr::from_socket_addr(l.local_addr().expect("addr"));
    drop(l);
    addr
}

#[tokio::test]
async fn rr_dials_try_addresses_concurrently_and_forget_the_ones_that_failed() {
    tokio::time::timeout(DEADLINE, async {
        let a = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let good = a
            .listen(LOOPBACK.parse().expect("addr"))
            .await
            .expect("listen");
        let setup = Duration::from_secs(3);
        let b = Node::new(
            Keypair::generate(),
            NodeConfig::default().with_connection_setup_timeout(setup),
        )
        .await
        .expect("node");
        let (_s1, stall1) = stalling_address();
        let (_s2, stall2) = stalling_address();
        let refused = refused_address();
        for addr in [&stall1, &refused, &stall2, &good] {
            b.add_address(a.peer_id(), addr.clone());
        }
        let started = Instant::now();
        b.dial_peer(a.peer_id())
            .await
            .expect("the good address wins");
        let took = started.elapsed();
        assert!(took < setup, "dialed one address after another: {took:?}");
        let known = b.addresses_of(&a.peer_id());
        assert!(
            !known.contains(&refused),
            "a refused address is kept: {known:?}"
        );
        assert!(known.contains(&good), "{known:?}");

        // A peer with only dead addresses: one deadline for the whole dial, not one per address.
        let c = Keypair::generate().peer_id();
        let (_s3, stall3) = stalling_address();
        let (_s4, stall4) = stalling_address();
        let (_s5, stall5) = stalling_address();
        for addr in [&stall3, &stall4, &stall5] {
            b.add_address(c, addr.clone());
        }
        let started = Instant::now();
        b.dial_peer(c).await.expect_err("no address answers");
        let took = started.elapsed();
        assert!(took < setup * 2, "the dial took {took:?}");
        assert!(b.addresses_of(&c).is_empty(), "{:?}", b.addresses_of(&c));
    })
    .await
    .expect("in time");
}

/// `send_request` called from a thread outside the runtime runs the request on the node's
/// runtime instead of panicking.
#[test]
fn rr_send_request_from_outside_the_runtime_works() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (a, b, server, client, mut events) = rt.block_on(async {
        let (a, b, _) = pair().await;
        let server = Behaviour::<Cbor>::new(&a, full("/outside/1"), Config::default()).expect("rr");
        server
            .serve(|_, r: String| async move { r })
            .expect("serve");
        let client = Behaviour::<Cbor>::new(&b, full("/outside/1"), Config::default()).expect("rr");
        let events = client.events().expect("events");
        (a, b, server, client, events)
    });
    let peer = a.peer_id();
    let id = std::thread::scope(|s| {
        s.spawn(|| client.send_request(peer, "from a plain thread".to_owned()))
            .join()
            .expect("no panic outside the runtime")
    });
    rt.block_on(async {
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("in time")
            .expect("event");
        match event {
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                assert_eq!(request_id, id);
                assert_eq!(response, "from a plain thread");
            }
            other => panic!("{other:?}"),
        }
        drop((a, b, server));
    });
}
