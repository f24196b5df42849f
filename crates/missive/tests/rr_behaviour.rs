//! Request-response on two loopback nodes: requests, events, protocol support, one-way
//! protocols, timeouts, limits and hostile input.
#![cfg(all(feature = "cbor", feature = "json"))]

use std::io;
use std::time::Duration;

use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId};
use missive::request_response::{
    Behaviour, Codec, Config, Event, Events, InboundFailure, Message, MessageKind, MessageTooLarge,
    OnPeerLimit, OutboundFailure, ProtocolSupport, ResponseChannel, cbor, json,
};
use missive::stream::StreamProtocol;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

type Json = json::Codec<serde_json::Value, serde_json::Value>;
type Cbor = cbor::Codec<String, String>;
type CborEvent = Event<String, String>;

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const DEADLINE: Duration = Duration::from_secs(20);

fn full(name: &str) -> [(String, ProtocolSupport); 1] {
    [(name.to_owned(), ProtocolSupport::Full)]
}

/// A listening node and a second node that knows its address.
async fn pair(server: NodeConfig, client: NodeConfig) -> (Node, Node, Multiaddr) {
    let a = Node::new(Keypair::generate(), server).await.expect("node");
    let b = Node::new(Keypair::generate(), client).await.expect("node");
    let addr = a
        .listen(LOOPBACK.parse().expect("addr"))
        .await
        .expect("listen");
    b.add_address(a.peer_id(), addr.clone());
    (a, b, addr)
}

async fn next<Req, Resp>(events: &mut Events<Req, Resp>) -> Event<Req, Resp> {
    tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

/// Two nodes with the CBOR protocol `/greet/1` and default settings on both.
struct Greet {
    a: Node,
    b: Node,
    server: Behaviour<Cbor>,
    server_events: Events<String, String>,
    client: Behaviour<Cbor>,
}

async fn greet() -> Greet {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    let server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    Greet {
        a,
        b,
        server,
        server_events,
        client,
    }
}

/// Sends `request` to `peer` on its own task, so the test can watch the server meanwhile.
fn spawn_request(
    client: &Behaviour<Cbor>,
    peer: PeerId,
    request: String,
) -> tokio::task::JoinHandle<Result<String, OutboundFailure>> {
    let client = client.clone();
    tokio::spawn(async move { client.request(peer, request).await })
}

/// The next inbound request and its channel.
async fn next_request<Req: std::fmt::Debug, Resp: std::fmt::Debug>(
    events: &mut Events<Req, Resp>,
) -> (Req, ResponseChannel<Resp>) {
    // Bounded: skips at most a few `ResponseSent` events of earlier requests.
    for _ in 0..16 {
        match next(events).await {
            Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => return (request, channel),
            Event::ResponseSent { .. } => continue,
            other => panic!("expected a request, got {other:?}"),
        }
    }
    panic!("no request among the events")
}

/// Asserts that a request failed because the responder reset or closed its stream without a
/// response (a refusal, an omission), and for no other reason.
fn assert_stream_reset(err: &OutboundFailure) {
    match err {
        OutboundFailure::Io(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::WriteZero
            ),
            "not a reset stream: {e:?}"
        ),
        other => panic!("expected a reset stream, got {other:?}"),
    }
}

/// [`assert_stream_reset`] for a failure event, which must name the connection.
fn assert_reset_event(e: &CborEvent) {
    match e {
        Event::OutboundFailure {
            error,
            connection_id: Some(_),
            ..
        } => assert_stream_reset(error),
        other => panic!("expected an outbound failure on a connection, got {other:?}"),
    }
}

#[tokio::test]
async fn rr_request_await_returns_the_handlers_response() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Json>::new(&a, full("/echo/1"), Config::default()).expect("rr");
    server
        .serve(|_, req| async move { serde_json::json!({ "echo": req }) })
        .expect("serve");
    let client = Behaviour::<Json>::new(&b, full("/echo/1"), Config::default()).expect("rr");
    for i in 0..3 {
        let resp = client
            .request(a.peer_id(), serde_json::json!(i))
            .await
            .expect("response");
        assert_eq!(resp, serde_json::json!({ "echo": i }));
    }
    assert!(client.is_connected(&a.peer_id()));
    // Serving leaves the event stream to the application, once.
    let events = server.events();
    assert!(events.is_ok());
    assert_eq!(
        server.events().err(),
        Some(missive::request_response::EventsTaken)
    );
}

#[tokio::test]
async fn rr_send_request_gives_events_on_both_sides() {
    let Greet {
        a,
        b,
        server,
        mut server_events,
        client,
    } = greet().await;
    let mut client_events = client.events().expect("events");

    let id = client.send_request(a.peer_id(), "ada".to_owned());
    assert!(client.is_pending_outbound(&a.peer_id(), &id));
    let (in_id, request, channel, conn) = match next(&mut server_events).await {
        Event::Message {
            peer,
            connection_id,
            message:
                Message::Request {
                    request_id,
                    request,
                    channel,
                },
        } => {
            assert_eq!(peer, b.peer_id());
            (request_id, request, channel, connection_id)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(request, "ada");
    assert!(server.is_pending_inbound(&b.peer_id(), &in_id));
    server
        .send_response(channel, format!("hello {request}"))
        .expect("channel open");
    match next(&mut server_events).await {
        Event::ResponseSent {
            request_id,
            connection_id,
            ..
        } => {
            assert_eq!(request_id, in_id);
            assert_eq!(connection_id, conn);
        }
        other => panic!("{other:?}"),
    }
    assert!(!server.is_pending_inbound(&b.peer_id(), &in_id));
    match next(&mut client_events).await {
        Event::Message {
            peer,
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            assert_eq!(peer, a.peer_id());
            assert_eq!(request_id, id);
            assert_eq!(response, "hello ada");
        }
        other => panic!("{other:?}"),
    }
    assert!(!client.is_pending_outbound(&a.peer_id(), &id));
}

#[tokio::test]
async fn rr_send_response_gives_the_response_back_when_the_channel_is_closed() {
    let (a, b, addr) = pair(NodeConfig::default(), NodeConfig::default()).await;
    // Connected first, so that the request timeout covers the request only, not the dial.
    b.dial(addr).await.expect("dial");
    // A requester that gives up after writing its request is noticed when the response is
    // written or at the request timeout, whichever comes first.
    let server = Behaviour::<Cbor>::new(
        &a,
        full("/greet/1"),
        Config::default().with_request_timeout(Duration::from_secs(1)),
    )
    .expect("rr");
    let mut events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(
        &b,
        full("/greet/1"),
        Config::default().with_request_timeout(Duration::from_secs(1)),
    )
    .expect("rr");
    let call = tokio::spawn(async move { client.request(a.peer_id(), "x".to_owned()).await });
    let (_, channel) = next_request(&mut events).await;
    // Abort the requester: its stream is reset, the server's request fails.
    call.abort();
    // The server waits for its application's response, not on the stream: it learns of the
    // requester's end at the request timeout.
    let failure = next(&mut events).await;
    assert!(
        matches!(
            failure,
            Event::InboundFailure {
                error: InboundFailure::Timeout,
                ..
            }
        ),
        "{failure:?}"
    );
    assert!(!channel.is_open());
    assert_eq!(
        server.send_response(channel, "late".to_owned()),
        Err("late".to_owned())
    );
}

#[tokio::test]
async fn rr_request_with_addresses_dials_an_unknown_peer() {
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
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    server
        .serve(|_, r| async move { r.to_uppercase() })
        .expect("serve");
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    let err = client
        .request(a.peer_id(), "x".to_owned())
        .await
        .expect_err("no address known");
    assert!(matches!(err, OutboundFailure::DialFailure(_)), "{err:?}");
    let resp = client
        .request_with_addresses(a.peer_id(), "x".to_owned(), &[addr])
        .await
        .expect("dialed");
    assert_eq!(resp, "X");
}

#[tokio::test]
async fn rr_protocol_family_dialer_proposes_outbound_protocols_in_order() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(
        &a,
        [
            ("/v2".to_owned(), ProtocolSupport::Inbound),
            ("/v3".to_owned(), ProtocolSupport::Inbound),
        ],
        Config::default(),
    )
    .expect("rr");
    server.serve(|_, r| async move { r }).expect("serve");
    let client = Behaviour::<ProtoCodec>::new(
        &b,
        [
            ("/v1".to_owned(), ProtocolSupport::Outbound),
            ("/v3".to_owned(), ProtocolSupport::Outbound),
            ("/v2".to_owned(), ProtocolSupport::Outbound),
        ],
        Config::default(),
    )
    .expect("rr");
    let resp = client
        .request(a.peer_id(), "hi".to_owned())
        .await
        .expect("answered");
    // The first proposal the server supports wins.
    assert_eq!(resp, "/v3 hi");
}

#[tokio::test]
async fn rr_a_protocol_is_only_used_in_its_supported_directions() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    // The server only sends on /out: it answers `na` to requests for it.
    let server = Behaviour::<Cbor>::new(
        &a,
        [("/out".to_owned(), ProtocolSupport::Outbound)],
        Config::default(),
    )
    .expect("rr");
    server.serve(|_, r| async move { r }).expect("serve");
    let client = Behaviour::<Cbor>::new(&b, full("/out"), Config::default()).expect("rr");
    let err = client
        .request(a.peer_id(), "x".to_owned())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, OutboundFailure::UnsupportedProtocols),
        "{err:?}"
    );

    // An inbound-only protocol is never proposed: nothing to send with.
    let inbound_only = Behaviour::<Cbor>::new(
        &b,
        [("/in".to_owned(), ProtocolSupport::Inbound)],
        Config::default(),
    )
    .expect("rr");
    let err = inbound_only
        .request(a.peer_id(), "x".to_owned())
        .await
        .expect_err("nothing to propose");
    assert!(
        matches!(err, OutboundFailure::UnsupportedProtocols),
        "{err:?}"
    );
    // ... but it is served.
    let other = Behaviour::<Cbor>::new(&a, full("/in"), Config::default()).expect("rr");
    let mut events = inbound_only.events().expect("events");
    let call = tokio::spawn(async move { other.request(b.peer_id(), "in".to_owned()).await });
    let (req, channel) = next_request(&mut events).await;
    assert_eq!(req, "in");
    inbound_only
        .send_response(channel, "ok".to_owned())
        .expect("open");
    assert_eq!(call.await.expect("task").expect("response"), "ok");
}

#[tokio::test]
async fn rr_one_way_protocol_completes_after_the_request_is_written() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<OneWay>::new(&a, full("/notify/1"), Config::default()).expect("rr");
    let mut events = server.events().expect("events");
    let client = Behaviour::<OneWay>::new(&b, full("/notify/1"), Config::default()).expect("rr");
    // `request_response::OneWay` wraps any codec the same way.
    let wrapped = Behaviour::<missive::request_response::OneWay<Cbor>>::new(
        &b,
        [("/notify/2".to_owned(), ProtocolSupport::Outbound)],
        Config::default(),
    )
    .expect("rr");
    let serve_wrapped = Behaviour::<missive::request_response::OneWay<Cbor>>::new(
        &a,
        [("/notify/2".to_owned(), ProtocolSupport::Inbound)],
        Config::default(),
    )
    .expect("rr");
    let mut wrapped_events = serve_wrapped.events().expect("events");
    let () = wrapped
        .request(a.peer_id(), "cbor note".to_owned())
        .await
        .expect("written");
    let (req, channel) = next_request(&mut wrapped_events).await;
    assert_eq!(req, "cbor note");
    drop(channel);
    // The server has not even taken the request yet: the call is done once it is written.
    client
        .request(a.peer_id(), b"note".to_vec())
        .await
        .expect("written");
    let (req, channel) = next_request(&mut events).await;
    assert_eq!(req, b"note");
    drop(channel); // a one-way responder may drop the channel
}

#[tokio::test]
async fn rr_connection_stays_open_while_a_request_is_pending() {
    let idle = Duration::from_millis(200);
    let (a, b, _) = pair(
        NodeConfig::default().with_idle_timeout(idle),
        NodeConfig::default().with_idle_timeout(idle),
    )
    .await;
    let server = Behaviour::<Cbor>::new(&a, full("/slow/1"), Config::default()).expect("rr");
    server
        .serve(move |_, r| async move {
            // A slow handler: three idle timeouts pass while the request is pending.
            tokio::time::sleep(idle * 3).await;
            r
        })
        .expect("serve");
    let client = Behaviour::<Cbor>::new(&b, full("/slow/1"), Config::default()).expect("rr");
    let mut node_events = b.events();
    let resp = client
        .request(a.peer_id(), "patience".to_owned())
        .await
        .expect("answered on the same connection");
    assert_eq!(resp, "patience");
    // One connection was made and none closed while the request was pending.
    let mut established = 0;
    while let Ok(Some(e)) = tokio::time::timeout(
        Duration::from_millis(1),
        futures_util::StreamExt::next(&mut node_events),
    )
    .await
    {
        match e {
            NodeEvent::ConnectionEstablished { .. } => established += 1,
            NodeEvent::ConnectionClosed { .. } => panic!("closed while pending"),
            _ => {}
        }
    }
    assert_eq!(established, 1);
}

#[tokio::test]
async fn rr_unanswered_request_times_out_at_the_configured_time() {
    let timeout = Duration::from_secs(1);
    let (a, b, addr) = pair(NodeConfig::default(), NodeConfig::default()).await;
    // Connected first, so that the timeout covers the request only, not the dial.
    b.dial(addr).await.expect("dial");
    let server = Behaviour::<Cbor>::new(
        &a,
        full("/never/1"),
        Config::default().with_request_timeout(timeout),
    )
    .expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(
        &b,
        full("/never/1"),
        Config::default().with_request_timeout(timeout),
    )
    .expect("rr");
    let started = Instant::now();
    let call = spawn_request(&client, a.peer_id(), "hello?".to_owned());
    let (_, _held_channel) = next_request(&mut server_events).await;
    let err = call.await.expect("task").expect_err("no answer");
    let elapsed = started.elapsed();
    assert!(matches!(err, OutboundFailure::Timeout), "{err:?}");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout * 10, "{elapsed:?}");
    match next(&mut server_events).await {
        Event::InboundFailure {
            error: InboundFailure::Timeout,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rr_dropped_channel_is_response_omission() {
    let Greet {
        a,
        b: _b,
        server: _server,
        server_events: mut events,
        client,
    } = greet().await;
    let call = tokio::spawn(async move { client.request(a.peer_id(), "x".to_owned()).await });
    let (_, channel) = next_request(&mut events).await;
    drop(channel);
    match next(&mut events).await {
        Event::InboundFailure {
            error: InboundFailure::ResponseOmission,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    let err = call.await.expect("task").expect_err("no response");
    assert_stream_reset(&err);
}

#[tokio::test]
async fn rr_malformed_cbor_request_is_an_io_failure_and_the_connection_carries_on() {
    let Greet {
        a,
        b,
        server,
        server_events: mut events,
        client,
    } = greet().await;

    // A request pending on the connection while the bad one arrives.
    let pending = spawn_request(&client, a.peer_id(), "good".to_owned());
    let (req, channel) = next_request(&mut events).await;
    assert_eq!(req, "good");

    let mut raw = b
        .stream_control()
        .open_stream(a.peer_id(), StreamProtocol::new("/greet/1"))
        .await
        .expect("stream");
    raw.write_all(&[0xff, 0x00, 0x13, 0x37])
        .await
        .expect("write");
    raw.shutdown().await.expect("close");
    match next(&mut events).await {
        Event::InboundFailure {
            peer,
            error: InboundFailure::Io(e),
            ..
        } => {
            assert_eq!(peer, b.peer_id());
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest).await;
    assert!(rest.is_empty());

    server
        .send_response(channel, "fine".to_owned())
        .expect("open");
    assert_eq!(pending.await.expect("task").expect("response"), "fine");
    assert!(client.is_connected(&a.peer_id()));
    let next_call = tokio::spawn({
        let peer = a.peer_id();
        async move { client.request(peer, "again".to_owned()).await }
    });
    let (req, channel) = next_request(&mut events).await;
    server.send_response(channel, req).expect("open");
    assert_eq!(next_call.await.expect("task").expect("response"), "again");
}

#[tokio::test]
async fn rr_oversized_request_is_message_too_large_on_both_sides() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::with_codec(
        &a,
        Cbor::default().with_request_limit(1000),
        full("/big/1"),
        Config::default(),
    )
    .expect("rr");
    let mut events = server.events().expect("events");
    let client = Behaviour::with_codec(
        &b,
        Cbor::default().with_request_limit(1500),
        full("/big/1"),
        Config::default(),
    )
    .expect("rr");

    // Over our own limit: refused before anything is written.
    let err = client
        .request(a.peer_id(), "x".repeat(2000))
        .await
        .expect_err("too large to send");
    let OutboundFailure::Io(e) = &err else {
        panic!("{err:?}")
    };
    let too_large = MessageTooLarge::find(e).expect("typed");
    assert_eq!(too_large.kind, MessageKind::Request);
    assert_eq!(too_large.limit, 1500);

    // Within ours, over the server's: the server says so.
    let err = client
        .request(a.peer_id(), "x".repeat(1200))
        .await
        .expect_err("refused by the server");
    assert_stream_reset(&err);
    // The server saw one failed request, the one over its limit: the first never reached it,
    // as the client refused it before writing (its protocol proposal goes out with the request).
    let limits = match next(&mut events).await {
        Event::InboundFailure {
            error: InboundFailure::Io(e),
            ..
        } => MessageTooLarge::find(&e)
            .cloned()
            .into_iter()
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits[0].kind, MessageKind::Request);
    assert_eq!(limits[0].limit, 1000);
}

#[tokio::test]
async fn rr_oversized_response_is_message_too_large_for_the_requester() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(&a, full("/big/1"), Config::default()).expect("rr");
    server
        .serve(|_, _| async move { "y".repeat(5000) })
        .expect("serve");
    let client = Behaviour::with_codec(
        &b,
        Cbor::default().with_response_limit(4096),
        full("/big/1"),
        Config::default(),
    )
    .expect("rr");
    let err = client
        .request(a.peer_id(), "give".to_owned())
        .await
        .expect_err("too large");
    let OutboundFailure::Io(e) = &err else {
        panic!("{err:?}")
    };
    let too_large = MessageTooLarge::find(e).expect("typed");
    assert_eq!(too_large.kind, MessageKind::Response);
    assert_eq!(too_large.limit, 4096);
}

/// Sends `n` requests with `send_request` and collects the outcome of each.
async fn outcomes(
    client: &Behaviour<Cbor>,
    events: &mut Events<String, String>,
    peer: PeerId,
    n: usize,
) -> Vec<CborEvent> {
    for i in 0..n {
        client.send_request(peer, format!("r{i}"));
    }
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(events).await);
    }
    out
}

#[tokio::test]
async fn rr_outbound_requests_over_the_stream_limit_fail_visibly() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(
        &b,
        full("/greet/1"),
        Config::default().with_max_concurrent_streams(2),
    )
    .expect("rr");
    let mut client_events = client.events().expect("events");
    b.dial_peer(a.peer_id()).await.expect("connected");
    // Two requests held by the server fill the client's limit.
    client.send_request(a.peer_id(), "held-1".to_owned());
    client.send_request(a.peer_id(), "held-2".to_owned());
    let held = [
        next_request(&mut server_events).await,
        next_request(&mut server_events).await,
    ];
    let failed = outcomes(&client, &mut client_events, a.peer_id(), 3).await;
    for e in &failed {
        assert!(
            matches!(
                e,
                Event::OutboundFailure {
                    error: OutboundFailure::TooManyStreams,
                    connection_id: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // The held ones still complete.
    for (req, channel) in held {
        server.send_response(channel, req).expect("open");
    }
    for _ in 0..2 {
        let e = next(&mut client_events).await;
        assert!(
            matches!(
                e,
                Event::Message {
                    message: Message::Response { .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // The refused requests never reached the server: its next events are the two
    // responses sent and then the next request.
    client.send_request(a.peer_id(), "after".to_owned());
    for _ in 0..3 {
        match next(&mut server_events).await {
            Event::ResponseSent { .. } => {}
            Event::Message {
                message: Message::Request { request, .. },
                ..
            } => {
                assert_eq!(request, "after");
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("the request after the refused ones did not arrive");
}

#[tokio::test]
async fn rr_inbound_streams_over_the_stream_limit_are_refused_with_an_event() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(
        &a,
        full("/greet/1"),
        Config::default().with_max_concurrent_streams(2),
    )
    .expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    let mut client_events = client.events().expect("events");
    client.send_request(a.peer_id(), "held-1".to_owned());
    client.send_request(a.peer_id(), "held-2".to_owned());
    let _held = [
        next_request(&mut server_events).await,
        next_request(&mut server_events).await,
    ];
    let failed = outcomes(&client, &mut client_events, a.peer_id(), 3).await;
    for e in &failed {
        assert_reset_event(e);
    }
    for _ in 0..3 {
        let e = next(&mut server_events).await;
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
    }
}

#[tokio::test]
async fn rr_peer_limit_fail_mode_refuses_at_once() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(
        &b,
        full("/greet/1"),
        Config::default()
            .with_peer_limit(a.peer_id(), 1)
            .with_on_peer_limit(OnPeerLimit::Fail),
    )
    .expect("rr");
    let first = spawn_request(&client, a.peer_id(), "one".to_owned());
    let (req, channel) = next_request(&mut server_events).await;
    let err = client
        .request(a.peer_id(), "two".to_owned())
        .await
        .expect_err("over the peer limit");
    assert!(matches!(err, OutboundFailure::PeerLimit), "{err:?}");
    server.send_response(channel, req).expect("open");
    assert_eq!(first.await.expect("task").expect("response"), "one");
    // The slot came back, and a raised override at run time admits two at once.
    client.set_peer_limit(a.peer_id(), Some(2));
    let calls: Vec<_> = ["three", "four"]
        .into_iter()
        .map(|r| spawn_request(&client, a.peer_id(), r.to_owned()))
        .collect();
    let held = [
        next_request(&mut server_events).await,
        next_request(&mut server_events).await,
    ];
    let err = client
        .request(a.peer_id(), "five".to_owned())
        .await
        .expect_err("over the new limit");
    assert!(matches!(err, OutboundFailure::PeerLimit), "{err:?}");
    for (req, channel) in held {
        server.send_response(channel, req).expect("open");
    }
    for call in calls {
        call.await.expect("task").expect("response");
    }
}

#[tokio::test]
async fn rr_peer_limit_wait_mode_waits_for_a_slot() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(
        &b,
        full("/greet/1"),
        Config::default().with_max_requests_per_peer(1),
    )
    .expect("rr");
    let mut client_events = client.events().expect("events");
    let first = client.send_request(a.peer_id(), "one".to_owned());
    let (req, channel) = next_request(&mut server_events).await;
    let second = client.send_request(a.peer_id(), "two".to_owned());
    // The second waits: the server sees nothing until the first is answered. A ping on the
    // same connection, sent after it, comes back before anything of a request sent at once
    // could be missing at the server.
    b.ping(a.peer_id()).await.expect("ping");
    assert!(
        tokio::time::timeout(Duration::ZERO, server_events.next())
            .await
            .is_err(),
        "the second request reached the server while the first was in flight"
    );
    assert!(client.is_pending_outbound(&a.peer_id(), &second));
    server.send_response(channel, req).expect("open");
    let (req2, channel2) = next_request(&mut server_events).await;
    assert_eq!(req2, "two");
    server.send_response(channel2, req2).expect("open");
    let mut done = Vec::new();
    for _ in 0..2 {
        if let Event::Message {
            message: Message::Response { request_id, .. },
            ..
        } = next(&mut client_events).await
        {
            done.push(request_id);
        }
    }
    assert_eq!(done, vec![first, second]);
}

#[tokio::test]
async fn rr_inbound_requests_over_the_peer_limit_are_refused_with_an_event() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(
        &a,
        full("/greet/1"),
        Config::default().with_peer_limit(b.peer_id(), 1),
    )
    .expect("rr");
    let mut server_events = server.events().expect("events");
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    let mut client_events = client.events().expect("events");
    client.send_request(a.peer_id(), "held".to_owned());
    let (_req, _channel) = next_request(&mut server_events).await;
    client.send_request(a.peer_id(), "extra".to_owned());
    match next(&mut server_events).await {
        Event::InboundFailure {
            peer,
            error: InboundFailure::PeerLimit,
            ..
        } => assert_eq!(peer, b.peer_id()),
        other => panic!("{other:?}"),
    }
    let e = next(&mut client_events).await;
    assert_reset_event(&e);
}

#[tokio::test]
async fn rr_peer_killed_mid_request_is_connection_closed_promptly() {
    let Greet {
        a,
        b: _b,
        server: _server,
        server_events: mut events,
        client,
    } = greet().await;
    let call = spawn_request(&client, a.peer_id(), "x".to_owned());
    let (_req, _channel) = next_request(&mut events).await;
    let started = Instant::now();
    a.shutdown().await;
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("prompt")
        .expect("task")
        .expect_err("peer gone");
    assert!(matches!(err, OutboundFailure::ConnectionClosed), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn rr_inbound_protocol_already_served_is_a_construction_error() {
    let a = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let _first = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    let err = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect_err("taken");
    assert!(err.to_string().contains("already registered"), "{err}");
    let err = Behaviour::<Cbor>::new(&a, full("no-slash"), Config::default()).expect_err("bad");
    assert!(err.to_string().contains("invalid protocol"), "{err}");
}

#[tokio::test]
async fn rr_dropping_the_behaviour_stops_serving_and_frees_its_protocols() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let client = Behaviour::<Cbor>::new(&b, full("/greet/1"), Config::default()).expect("rr");
    let ask = || {
        let client = client.clone();
        let peer = a.peer_id();
        async move {
            tokio::time::timeout(DEADLINE, client.request(peer, "x".to_owned()))
                .await
                .expect("an answer in time")
        }
    };
    let first = Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("rr");
    first
        .serve(|_, r| async move { format!("first {r}") })
        .expect("serve");
    assert_eq!(ask().await.expect("served"), "first x");

    drop(first);
    let err = ask().await.expect_err("no longer served");
    assert!(
        matches!(err, OutboundFailure::UnsupportedProtocols),
        "{err:?}"
    );

    let second =
        Behaviour::<Cbor>::new(&a, full("/greet/1"), Config::default()).expect("protocol free");
    second
        .serve(|_, r| async move { format!("second {r}") })
        .expect("serve");
    assert_eq!(ask().await.expect("served again"), "second x");
}

#[tokio::test]
async fn rr_json_value_requests_work_for_a_command_line_peer() {
    // What `missive rr serve` / `missive rr call` do: a JSON protocol of serde_json::Value.
    let (a, b, addr) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server =
        Behaviour::<Json>::new(&a, full("/missive/rr/json/1"), Config::default()).expect("rr");
    server
        .serve(
            |peer, req| async move { serde_json::json!({ "from": peer.to_string(), "got": req }) },
        )
        .expect("serve");
    let client =
        Behaviour::<Json>::new(&b, full("/missive/rr/json/1"), Config::default()).expect("rr");
    let resp = client
        .request_with_addresses(a.peer_id(), serde_json::json!([1, "two"]), &[addr])
        .await
        .expect("response");
    assert_eq!(resp["got"], serde_json::json!([1, "two"]));
    assert_eq!(resp["from"], serde_json::json!(b.peer_id().to_string()));
}

/// A codec whose responses name the protocol the stream was negotiated for.
#[derive(Debug, Clone, Default)]
struct ProtoCodec(Cbor);

impl Codec for ProtoCodec {
    type Protocol = String;
    type Request = String;
    type Response = String;

    async fn read_request<T>(&mut self, p: &String, io: &mut T) -> io::Result<String>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.0.read_request(p, io).await
    }

    async fn read_response<T>(&mut self, p: &String, io: &mut T) -> io::Result<String>
    where
        T: AsyncRead + Unpin + Send,
    {
        let r = self.0.read_response(p, io).await?;
        Ok(format!("{p} {r}"))
    }

    async fn write_request<T>(&mut self, p: &String, io: &mut T, r: String) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.0.write_request(p, io, r).await
    }

    async fn write_response<T>(&mut self, p: &String, io: &mut T, r: String) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.0.write_response(p, io, r).await
    }
}

/// A one-way protocol: raw bytes as the request, `()` as the response.
#[derive(Debug, Clone, Default)]
struct OneWay;

impl Codec for OneWay {
    type Protocol = String;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &String, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        missive::request_response::read_to_end_limited(io, 1024, MessageKind::Request).await
    }

    async fn read_response<T>(&mut self, _: &String, _: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(&mut self, _: &String, io: &mut T, r: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&r).await
    }

    async fn write_response<T>(&mut self, _: &String, _: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

#[tokio::test]
async fn rr_requester_killed_mid_request_is_connection_closed_for_the_responder() {
    let Greet {
        a,
        b,
        server: _server,
        server_events: mut events,
        client,
    } = greet().await;
    let _call = spawn_request(&client, a.peer_id(), "x".to_owned());
    let (_req, channel) = next_request(&mut events).await;
    b.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("prompt")
        .expect("events")
    {
        Event::InboundFailure {
            error: InboundFailure::ConnectionClosed,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(!channel.is_open());
}

#[tokio::test]
async fn rr_a_burst_of_requests_within_the_limit_is_served_without_refusals() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let server = Behaviour::<Cbor>::new(&a, full("/burst/1"), Config::default()).expect("rr");
    server.serve(|_, r| async move { r }).expect("serve");
    let client = Behaviour::<Cbor>::new(&b, full("/burst/1"), Config::default()).expect("rr");
    client
        .request(a.peer_id(), "warm".to_owned())
        .await
        .expect("connected");
    let mut node_events = a.events();
    // 90 at once: under the limit of 100 streams per connection, over the node's default
    // backlog of 16 streams per protocol.
    let calls: Vec<_> = (0..90)
        .map(|i| spawn_request(&client, a.peer_id(), format!("r{i}")))
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let resp = call.await.expect("task").expect("served");
        assert_eq!(resp, format!("r{i}"));
    }
    // No stream was refused along the way.
    while let Ok(Some(e)) = tokio::time::timeout(
        Duration::from_millis(1),
        futures_util::StreamExt::next(&mut node_events),
    )
    .await
    {
        assert!(
            !matches!(e, NodeEvent::InboundStreamRefused { .. }),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn rr_one_way_request_with_v1_learns_that_the_peer_refuses_the_protocol() {
    let (a, b, _) = pair(NodeConfig::default(), NodeConfig::default()).await;
    let client = Behaviour::<OneWay>::new(
        &b,
        full("/absent/1"),
        Config::default().with_version(missive::p2p::negotiate::Version::V1),
    )
    .expect("rr");
    let err = tokio::time::timeout(DEADLINE, client.request(a.peer_id(), b"note".to_vec()))
        .await
        .expect("an outcome in time")
        .expect_err("the peer refuses the protocol");
    assert!(
        matches!(err, OutboundFailure::UnsupportedProtocols),
        "{err:?}"
    );
}
