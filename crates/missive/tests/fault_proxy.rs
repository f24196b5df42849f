//! Every layer through a fault-injecting proxy (tests/support/fault_proxy.rs): added delay, a
//! bandwidth limit, a cut in the middle of a frame, one corrupted byte, and a black hole.
//!
//! Each test states the guarantee it checks, one of:
//! - **nothing accepted is silently lost**: every datagram, call or request the sender was told
//!   is accepted is delivered, or the sender (or the receiver, for the queue, whose wire has no
//!   acknowledgements) gets an error; the counts are compared;
//! - **every wait ends at its deadline**: deadlines are short (2 s) and each wait is checked to
//!   end within the deadline plus a margin, and not long before it;
//! - **memory stays bounded**: a black-holed receiver makes the sender wait once a stated amount
//!   is accepted, instead of buffering without limit;
//! - **corruption is an error, never wrong data**: checked over TLS and Noise. Plain TCP has no
//!   integrity check of its own beyond the kernel's checksum, which the proxy bypasses, so a byte
//!   flipped inside a plain-TCP payload is delivered as sent by the proxy: that is the wire's
//!   nature (connect's and protosocket's frames carry no checksum), not tested here.
#![cfg(all(feature = "queue", feature = "rpc", feature = "json", feature = "tls"))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, PeerId};
use missive::queue::{Connection, Datagram, Listener, QueueConfig, RecvError};
use missive::request_response::{Behaviour, Config, Event, OutboundFailure, ProtocolSupport, json};
use missive::rpc::{CallError, Client, ClientConfig, Reply, Server, Service, Status};
use missive::stream::{OpenStreamError, StreamProtocol};
use missive::transport::tls::{self, SelfSigned};
use serde_json::{Value, json};
use support::fault_proxy::{CHUNK, CHUNKS, Dir, FaultProxy, Faults, SOCKET_BUFFER};
use support::rpc_wire::{Msg, WireCodec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{Instant, timeout};

/// The deadline configured wherever a layer has one.
const DEADLINE: Duration = Duration::from_secs(2);
/// How late a wait may end after its deadline on a loaded two-core machine.
const MARGIN: Duration = Duration::from_millis(1500);
/// How soon a failure caused by a closed connection must be reported.
const PROMPTLY: Duration = Duration::from_millis(1500);
/// An outer bound for any test step that should succeed.
const STEP: Duration = Duration::from_secs(15);

/// Waits for `f`, failing the test if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {limit:?}"))
}

/// Checks that a wait that started at `start` ended at its deadline: not early, not late.
fn ended_at_deadline(start: Instant, what: &str) {
    let took = start.elapsed();
    assert!(
        took >= DEADLINE - Duration::from_millis(100) && took <= DEADLINE + MARGIN,
        "{what} ended after {took:?}; the deadline is {DEADLINE:?}"
    );
}

/// Polls `count` every 100 ms until it has not changed for 500 ms (at most 10 s); returns it.
async fn settled(count: &AtomicU64) -> u64 {
    let mut last = count.load(Ordering::SeqCst);
    let mut stable = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count.load(Ordering::SeqCst);
        if now == last {
            stable += 1;
            if stable == 5 {
                return now;
            }
        } else {
            stable = 0;
            last = now;
        }
    }
    panic!("the count kept growing for 10 s: {last}");
}

/// What the proxy and the kernel may hold for one black-holed direction: the proxy's chunks and
/// its socket's fixed receive buffer (doubled by the kernel).
fn proxy_holds() -> u64 {
    (CHUNK * CHUNKS) as u64 + 2 * u64::from(SOCKET_BUFFER)
}

// ---------------------------------------------------------------------------------------------
// queue
// ---------------------------------------------------------------------------------------------

const QUEUE_PAYLOAD: usize = 1000;
/// Header (size, version, tag) plus payload.
const QUEUE_FRAME: u64 = 8 + QUEUE_PAYLOAD as u64;

/// The i-th datagram: its tag and first bytes say `i`, the rest is a pattern of `i`.
fn nth(i: u32) -> Datagram {
    let mut payload = i.to_be_bytes().to_vec();
    payload.resize(QUEUE_PAYLOAD, (i % 251) as u8);
    Datagram::new((i % 65_536) as u16, payload)
}

/// A TCP queue listener, a proxy in front of it, and a client connected through the proxy with
/// `client_send_buffer` as its kernel send buffer (`None`: the kernel's default).
async fn queue_through_proxy(
    config: QueueConfig,
    client_send_buffer: Option<u32>,
) -> (Connection, Connection, FaultProxy) {
    let mut listener = Listener::bind_tcp("127.0.0.1:0").await.expect("bind");
    let target = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let proxy = FaultProxy::start(target).await.expect("proxy");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(bytes) = client_send_buffer {
        socket.set_send_buffer_size(bytes).expect("SO_SNDBUF");
    }
    let (client, server) = tokio::join!(socket.connect(proxy.addr()), listener.accept());
    let client = Connection::from_tcp(client.expect("connect"), config).expect("client");
    (client, server.expect("accept"), proxy)
}

/// Guarantee: with 20 ms of delay each way and a 500 kB/s limit towards the server, every
/// datagram sent is echoed back whole and in order, and the clean end comes only after the last.
#[tokio::test]
async fn queue_delay_and_bandwidth_limit_deliver_every_datagram_in_order() {
    const COUNT: u32 = 300;
    let (client, server, proxy) = queue_through_proxy(QueueConfig::default(), None).await;
    proxy.set(
        Dir::ToServer,
        Faults::none()
            .delay(Duration::from_millis(20))
            .bytes_per_sec(500_000),
    );
    proxy.set(
        Dir::ToClient,
        Faults::none().delay(Duration::from_millis(20)),
    );
    let echo = tokio::spawn(async move {
        let (mut reader, mut writer) = server.split();
        while let Some(d) = reader.next().await {
            writer.send(d.expect("datagram")).await.expect("echo");
        }
        writer.close().await.expect("close");
    });
    let (mut reader, mut writer) = client.split();
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            writer.send(nth(i)).await.expect("send");
        }
        writer.close().await.expect("close");
    });
    within(STEP, "echoes", async {
        for i in 0..COUNT {
            let got = reader.next().await.expect("an echo").expect("datagram");
            assert_eq!(got, nth(i), "echo {i}");
        }
        assert!(reader.next().await.is_none(), "clean end after the last");
    })
    .await;
    sender.await.expect("sender");
    echo.await.expect("echo");
}

/// Guarantee: a connection cut in the middle of a frame delivers an in-order prefix with no gap,
/// then ends the reader with `Truncated` (never a clean end that would hide the loss), and the
/// sender's writes fail soon after instead of succeeding forever.
#[tokio::test]
async fn queue_cut_in_the_middle_of_a_frame_is_truncated_on_the_reader_and_fails_the_writer() {
    const WHOLE: u64 = 10;
    const PART: u64 = 500;
    let (client, mut server, proxy) = queue_through_proxy(QueueConfig::default(), None).await;
    proxy.set(
        Dir::ToServer,
        Faults::none().cut_after(WHOLE * QUEUE_FRAME + PART),
    );
    let (_, mut writer) = client.split();
    let sender = tokio::spawn(async move {
        for i in 0..20_000u32 {
            if let Err(e) = writer.send(nth(i)).await {
                return (i, e);
            }
            if i % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        panic!("every send succeeded although the connection was cut");
    });
    within(STEP, "the reader's end", async {
        for i in 0..WHOLE as u32 {
            let got = server.reader().next().await.expect("a datagram");
            assert_eq!(got.expect("datagram"), nth(i), "datagram {i}");
        }
        match server.reader().next().await {
            Some(Err(RecvError::Truncated { buffered })) => assert_eq!(buffered as u64, PART),
            other => panic!("expected Truncated after the cut, got {other:?}"),
        }
        assert!(server.reader().next().await.is_none());
    })
    .await;
    let (sent_ok, error) = within(Duration::from_secs(5), "the writer's error", sender)
        .await
        .expect("sender");
    assert!(
        matches!(error, missive::queue::SendError::Io(_)),
        "{error:?}"
    );
    assert!(
        u64::from(sent_ok) > WHOLE,
        "sent {sent_ok} before the error"
    );
    assert_eq!(proxy.stats().cuts, 1);
}

/// Guarantee: one corrupted byte in a TLS connection is an error on the reader; every datagram
/// delivered before it is exactly what was sent.
#[tokio::test]
async fn queue_corrupted_byte_over_tls_is_an_error_never_wrong_data() {
    const COUNT: u32 = 50;
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let mut listener = Listener::bind_tls("127.0.0.1:0", cert.server_config().expect("cfg"))
        .await
        .expect("bind");
    let target = listener
        .local_addr()
        .expect("addr")
        .as_socket_addr()
        .expect("tcp");
    let proxy = FaultProxy::start(target).await.expect("proxy");
    let (client, server) = tokio::join!(
        Connection::tls_client(
            proxy.addr(),
            "localhost",
            cert.client_config().expect("cfg")
        ),
        listener.accept()
    );
    let (mut client, mut server) = (client.expect("client"), server.expect("server"));
    // The handshake is over: the byte hit is application data, in the 6th datagram or so.
    proxy.set(
        Dir::ToServer,
        Faults::none().corrupt_at(5 * QUEUE_FRAME + 300),
    );
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            if client.writer().send(nth(i)).await.is_err() {
                break;
            }
        }
        client
    });
    let delivered = within(STEP, "the reader's end", async {
        let mut delivered = 0u32;
        loop {
            match server.reader().next().await {
                Some(Ok(d)) => {
                    assert_eq!(d, nth(delivered), "datagram {delivered} delivered wrong");
                    delivered += 1;
                }
                Some(Err(RecvError::Io(e))) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
                    break delivered;
                }
                other => panic!("expected a TLS error, got {other:?} after {delivered}"),
            }
        }
    })
    .await;
    assert!(
        delivered < COUNT,
        "all {delivered} delivered despite corruption"
    );
    assert_eq!(proxy.stats().corruptions, 1);
    drop(within(STEP, "sender", sender).await);
}

/// Guarantee: with the path to the receiver black-holed, the sender waits once about its send
/// buffer, its kernel buffer and the proxy's bounded buffers are full (stated below), rather than
/// accepting everything; when the path heals, every datagram accepted is delivered in order.
#[tokio::test]
async fn queue_black_holed_receiver_makes_the_sender_wait_then_loses_nothing() {
    const COUNT: u32 = 8_000; // 8 MB, far more than the bound
    const SEND_BUFFER: usize = 64 * 1024;
    const KERNEL_SEND_BUFFER: u32 = 64 * 1024;
    let config = QueueConfig::default().with_send_buffer(SEND_BUFFER);
    let (client, mut server, proxy) = queue_through_proxy(config, Some(KERNEL_SEND_BUFFER)).await;
    proxy.set(Dir::ToServer, Faults::none().black_hole());
    let accepted = Arc::new(AtomicU64::new(0));
    let (_, mut writer) = client.split();
    let counter = accepted.clone();
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            writer.feed(nth(i)).await.expect("feed");
            counter.fetch_add(1, Ordering::SeqCst);
        }
        writer.close().await.expect("close");
    });
    let waiting_at = settled(&accepted).await;
    let bound =
        (SEND_BUFFER as u64 + 2 * u64::from(KERNEL_SEND_BUFFER) + proxy_holds() + 4 * QUEUE_FRAME)
            / QUEUE_FRAME;
    println!("queue: the sender waits after {waiting_at} datagrams (bound {bound})");
    assert!(!sender.is_finished(), "the sender never waited");
    assert!(
        waiting_at <= bound,
        "{waiting_at} datagrams accepted while black-holed, bound {bound}"
    );
    proxy.heal();
    within(STEP, "delivery after healing", async {
        for i in 0..COUNT {
            let got = server.reader().next().await.expect("a datagram");
            assert_eq!(got.expect("datagram"), nth(i), "datagram {i}");
        }
        assert!(server.reader().next().await.is_none());
    })
    .await;
    within(STEP, "sender", sender).await.expect("sender");
}

// ---------------------------------------------------------------------------------------------
// rpc, with the small wire of tests/support/rpc_wire.rs, so that these tests need no optional
// codec feature
// ---------------------------------------------------------------------------------------------

const RPC_ITEM: usize = 1024;

/// The i-th item of a response stream: `i` in its first bytes, then a pattern.
fn item(i: u64) -> Bytes {
    let mut body = i.to_be_bytes().to_vec();
    body.resize(RPC_ITEM, (i % 253) as u8);
    Bytes::from(body)
}

/// Echoes a unary request's body; a body `stream:N` gets the stream `item(0..N)`, counted in
/// `produced` as the server takes each item.
#[derive(Debug, Clone, Default)]
struct WireService {
    produced: Arc<AtomicU64>,
}

impl Service for WireService {
    type Request = Msg;
    type Response = Msg;
    type Unary = std::future::Ready<Result<Msg, Status>>;
    type Stream = BoxStream<'static, Result<Msg, Status>>;

    fn call(
        &mut self,
        request: Msg,
        _context: &mut missive::rpc::CallContext<Msg>,
    ) -> Reply<Self::Unary, Self::Stream> {
        if let Some(count) = request.body.strip_prefix(b"stream:") {
            let count: u64 = std::str::from_utf8(count)
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let produced = self.produced.clone();
            Reply::Stream(
                futures_util::stream::iter(0..count)
                    .map(move |i| {
                        produced.fetch_add(1, Ordering::SeqCst);
                        Ok(Msg::body(item(i)))
                    })
                    .boxed(),
            )
        } else {
            Reply::Unary(std::future::ready(Ok(Msg::body(request.body))))
        }
    }
}

type RpcClient = Client<Msg, Msg>;

/// A body of `len` bytes that says `i`.
fn body(i: u32, len: usize) -> Bytes {
    let mut b = i.to_be_bytes().to_vec();
    b.resize(len.max(4), (i % 247) as u8);
    Bytes::from(b)
}

/// An rpc server on a TCP listener, a proxy in front of it, and a client through the proxy. The
/// server connection's task is returned, to check that it ends.
async fn rpc_through_proxy(
    config: ClientConfig,
    service: WireService,
) -> (
    RpcClient,
    FaultProxy,
    tokio::task::JoinHandle<Result<(), missive::rpc::server::ServeError>>,
) {
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = FaultProxy::start(listener.local_addr().expect("addr"))
        .await
        .expect("proxy");
    let (client_io, server_io) = tokio::join!(
        missive::transport::tcp::connect(proxy.addr()),
        missive::transport::tcp::accept(&listener)
    );
    let server = Server::default();
    let serving = tokio::spawn(server.connection(server_io.expect("accept"), WireCodec, service));
    let client = Client::spawn(client_io.expect("connect"), WireCodec, config);
    let r = within(STEP, "first call", client.call(Msg::body("hello")))
        .await
        .expect("a healthy first call");
    assert_eq!(&r.body[..], b"hello");
    (client, proxy, serving)
}

/// Runs `count` unary calls at once, with bodies of `len` bytes; each ends in `Ok` with its own
/// body or an error. Returns (the number of `Ok`, the errors).
async fn rpc_calls(client: &RpcClient, count: u32, len: usize) -> (u32, Vec<CallError>) {
    let calls = (0..count).map(|i| async move {
        let sent = body(i, len);
        match client.call(Msg::body(sent.clone())).await {
            Ok(r) => {
                assert_eq!(r.body, sent, "call {i} got someone else's or wrong data");
                Ok(())
            }
            Err(e) => Err(e),
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count() as u32;
    (ok, results.into_iter().filter_map(Result::err).collect())
}

/// Guarantee: with 20 ms of delay each way and a 1 MB/s limit towards the server, 64 pipelined
/// calls all complete, each with its own body.
#[tokio::test]
async fn rpc_calls_through_delay_and_bandwidth_limit_all_complete_intact() {
    let (client, proxy, _serving) =
        rpc_through_proxy(ClientConfig::default(), WireService::default()).await;
    proxy.set(
        Dir::ToServer,
        Faults::none()
            .delay(Duration::from_millis(20))
            .bytes_per_sec(1_000_000),
    );
    proxy.set(
        Dir::ToClient,
        Faults::none().delay(Duration::from_millis(20)),
    );
    let (ok, errors) = within(STEP, "64 calls", rpc_calls(&client, 64, 4096)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ok, 64);
}

/// Guarantee: with the server black-holed both ways, every call ends with `DeadlineExceeded` at
/// its 2 s deadline; once the path heals, the connection serves calls again.
#[tokio::test]
async fn rpc_black_holed_server_fails_every_call_at_its_deadline() {
    let config = ClientConfig::default().with_deadline(Some(DEADLINE));
    let (client, proxy, _serving) = rpc_through_proxy(config, WireService::default()).await;
    proxy.set_both(Faults::none().black_hole());
    let start = Instant::now();
    let (ok, errors) = within(DEADLINE + MARGIN, "16 calls", rpc_calls(&client, 16, 100)).await;
    ended_at_deadline(start, "the black-holed calls");
    assert_eq!(ok, 0);
    assert_eq!(errors.len(), 16);
    for e in &errors {
        assert!(matches!(e, CallError::DeadlineExceeded), "{e:?}");
    }
    proxy.heal();
    let (ok, errors) = within(STEP, "calls after healing", rpc_calls(&client, 4, 100)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ok, 4);
}

/// Guarantee: a connection cut in the middle of a response frame fails every call in flight with
/// `ConnectionClosed` promptly (long before the deadline); every call that succeeded has its own
/// body, and the counts add up; the server's connection task ends too.
#[tokio::test]
async fn rpc_cut_in_the_middle_of_a_response_fails_the_calls_in_flight_promptly() {
    const CALLS: u32 = 8;
    let config = ClientConfig::default().with_deadline(Some(Duration::from_secs(10)));
    let (client, proxy, serving) = rpc_through_proxy(config, WireService::default()).await;
    // Each response is 64 KiB + 13: the cut falls inside the second one.
    proxy.set(Dir::ToClient, Faults::none().cut_after(100_000));
    let start = Instant::now();
    let (ok, errors) = within(PROMPTLY, "calls across the cut", async {
        rpc_calls(&client, CALLS, 64 * 1024).await
    })
    .await;
    println!(
        "rpc: {ok} calls completed before the cut, {} failed after {:?}",
        errors.len(),
        start.elapsed()
    );
    assert_eq!(ok as usize + errors.len(), CALLS as usize);
    assert!(ok < CALLS, "every call succeeded through a cut connection");
    for e in &errors {
        assert!(matches!(e, CallError::ConnectionClosed), "{e:?}");
    }
    let after = within(
        PROMPTLY,
        "a call after the cut",
        client.call(Msg::body("x")),
    )
    .await;
    assert!(
        matches!(after, Err(CallError::ConnectionClosed)),
        "{after:?}"
    );
    within(PROMPTLY, "the server connection's end", serving)
        .await
        .expect("join")
        .ok();
}

/// Guarantee: one corrupted byte in a TLS connection fails the calls in flight with
/// `ConnectionClosed`; no call returns wrong data (each `Ok` has its own body).
#[tokio::test]
async fn rpc_corrupted_byte_over_tls_fails_calls_instead_of_returning_wrong_data() {
    const CALLS: u32 = 8;
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = FaultProxy::start(listener.local_addr().expect("addr"))
        .await
        .expect("proxy");
    let acceptor = tls::Acceptor::new(cert.server_config().expect("server config"));
    let (client_io, server_io) = tokio::join!(
        tls::connect(
            proxy.addr(),
            "localhost",
            cert.client_config().expect("cfg")
        ),
        async {
            let tcp = missive::transport::tcp::accept(&listener)
                .await
                .expect("accept");
            acceptor.accept(tcp).await
        }
    );
    let server = Server::default();
    tokio::spawn(server.connection(
        server_io.expect("handshake"),
        WireCodec,
        WireService::default(),
    ));
    let client: RpcClient = Client::spawn(
        client_io.expect("connect"),
        WireCodec,
        ClientConfig::default().with_deadline(Some(Duration::from_secs(10))),
    );
    let (ok, errors) = within(STEP, "healthy calls", rpc_calls(&client, 2, 100)).await;
    assert_eq!((ok, errors.len()), (2, 0), "{errors:?}");
    proxy.set(Dir::ToClient, Faults::none().corrupt_at(20_000));
    let (ok, errors) = within(PROMPTLY, "calls across the corruption", async {
        rpc_calls(&client, CALLS, 8 * 1024).await
    })
    .await;
    assert_eq!(proxy.stats().corruptions, 1);
    assert_eq!(ok as usize + errors.len(), CALLS as usize);
    assert!(ok < CALLS, "every call succeeded despite the corruption");
    for e in &errors {
        assert!(matches!(e, CallError::ConnectionClosed), "{e:?}");
    }
}

/// Guarantee: a server streaming to a client whose path is black-holed stops taking items from
/// its stream once its send budget (1 MiB) and the bounded buffers on the way are full; when the
/// path heals, the stream goes on in order from where it was, and the connection still serves.
#[tokio::test]
async fn rpc_black_holed_client_pauses_a_streaming_server_with_bounded_memory() {
    const ITEMS: u64 = 100_000; // 100 MiB if nothing held the server back
    let service = WireService::default();
    let produced = service.produced.clone();
    let (client, proxy, _serving) = rpc_through_proxy(ClientConfig::default(), service).await;
    proxy.set(Dir::ToClient, Faults::none().black_hole());
    let mut stream = within(
        STEP,
        "the stream's start",
        client.server_stream(Msg::body(format!("stream:{ITEMS}"))),
    )
    .await
    .expect("stream");
    let paused_at = settled(&produced).await;
    // The send budget, the server's kernel send buffer (4 MiB at most here, net.ipv4.tcp_wmem)
    // and what the proxy holds, in items, with a few items of slack.
    let kernel = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(4 << 20);
    let bound = ((1 << 20) + kernel + proxy_holds()) / (RPC_ITEM as u64 + 13) + 64;
    println!("rpc: the server paused after {paused_at} items (bound {bound})");
    assert!(
        paused_at <= bound,
        "{paused_at} items taken while black-holed, bound {bound}"
    );
    proxy.heal();
    within(STEP, "the stream after healing", async {
        for i in 0..2_000u64 {
            let r = stream.next().await.expect("an item").expect("ok");
            assert_eq!(r.body, item(i), "item {i}");
        }
    })
    .await;
    drop(stream);
    let (ok, errors) = within(STEP, "a call after the stream", rpc_calls(&client, 1, 10)).await;
    assert_eq!((ok, errors.len()), (1, 0), "{errors:?}");
}

// ---------------------------------------------------------------------------------------------
// request-response and stream: two nodes, the client dialing the server through the proxy
// ---------------------------------------------------------------------------------------------

type JsonCodec = json::Codec<Value, Value>;
const RR: &str = "/fault/rr/1";
const ECHO: StreamProtocol = StreamProtocol::new("/fault/echo/1");

/// A listening server node, a proxy in front of it, and a client node that knows the server
/// only by the proxy's address.
async fn nodes_through_proxy(server: NodeConfig, client: NodeConfig) -> (Node, Node, FaultProxy) {
    let a = Node::new(Keypair::generate(), server).await.expect("node");
    let b = Node::new(Keypair::generate(), client).await.expect("node");
    let addr = a
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    let port: u16 = addr
        .to_string()
        .rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a tcp port");
    let proxy = FaultProxy::start(([127, 0, 0, 1], port).into())
        .await
        .expect("proxy");
    let via: Multiaddr = proxy.multiaddr().parse().expect("addr");
    b.add_address(a.peer_id(), via);
    (a, b, proxy)
}

/// What the request-response server saw.
#[derive(Debug, Default)]
struct Seen {
    requests: AtomicU64,
    wrong: AtomicU64,
}

/// A request: its number and `pad` bytes of 'x'; it asks for a response padded to `reply`.
fn rr_request(i: u64, pad: usize, reply: usize) -> Value {
    json!({ "i": i, "pad": "x".repeat(pad), "reply": reply })
}

/// Serves `RR` on `a`: answers `{i, pad: 'y' × reply}`, counting requests and malformed ones.
fn serve_rr(a: &Node, config: Config) -> (Behaviour<JsonCodec>, Arc<Seen>) {
    let server = Behaviour::<JsonCodec>::new(a, [(RR.to_owned(), ProtocolSupport::Full)], config)
        .expect("rr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    server
        .serve(move |_peer, request: Value| {
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let well_formed = request["pad"]
                .as_str()
                .is_some_and(|p| p.bytes().all(|b| b == b'x'));
            if !well_formed {
                counts.wrong.fetch_add(1, Ordering::SeqCst);
            }
            let reply = request["reply"].as_u64().unwrap_or(0) as usize;
            let i = request["i"].clone();
            async move { json!({ "i": i, "pad": "y".repeat(reply) }) }
        })
        .expect("serve");
    (server, seen)
}

/// Checks a response to `rr_request(i, _, reply)`.
fn check_response(i: u64, reply: usize, response: &Value) {
    assert_eq!(response["i"], json!(i), "response to request {i}");
    let pad = response["pad"].as_str().expect("pad");
    assert_eq!(pad.len(), reply, "response {i} length");
    assert!(pad.bytes().all(|b| b == b'y'), "response {i} content");
}

fn rr_client(b: &Node, config: Config) -> Behaviour<JsonCodec> {
    Behaviour::<JsonCodec>::new(b, [(RR.to_owned(), ProtocolSupport::Full)], config).expect("rr")
}

/// A first request, so that the connection through the proxy is up.
async fn rr_warm_up(client: &Behaviour<JsonCodec>, peer: PeerId) {
    let r = within(
        STEP,
        "first request",
        client.request(peer, rr_request(0, 1, 1)),
    )
    .await
    .expect("a healthy first request");
    check_response(0, 1, &r);
}

/// Guarantee: with 30 ms of delay each way and a 300 kB/s limit both ways, 16 concurrent
/// requests are all answered, each with its own response, and the server saw each once.
#[tokio::test]
async fn rr_requests_through_delay_and_bandwidth_limit_are_all_answered() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let (_server, seen) = serve_rr(&a, Config::default());
    let client = rr_client(&b, Config::default());
    proxy.set_both(
        Faults::none()
            .delay(Duration::from_millis(30))
            .bytes_per_sec(300_000),
    );
    let peer = a.peer_id();
    let requests = (1..=16u64).map(|i| {
        let client = client.clone();
        async move {
            let r = client.request(peer, rr_request(i, 2000, 2000)).await;
            check_response(i, 2000, &r.expect("answered"));
        }
    });
    within(
        STEP,
        "16 requests",
        futures_util::future::join_all(requests),
    )
    .await;
    assert_eq!(seen.requests.load(Ordering::SeqCst), 16);
    assert_eq!(seen.wrong.load(Ordering::SeqCst), 0);
}

/// Guarantee: with the peer black-holed both ways, every request ends with `Timeout` at its 2 s
/// deadline, by `request()` or as exactly one `OutboundFailure` event per `send_request`; once
/// the path heals, requests are answered again.
#[tokio::test]
async fn rr_black_holed_peer_fails_each_request_at_the_request_timeout() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let (_server, _seen) = serve_rr(&a, Config::default());
    let client = rr_client(&b, Config::default().with_request_timeout(DEADLINE));
    let mut events = client.events().expect("events");
    let peer = a.peer_id();
    rr_warm_up(&client, peer).await;
    proxy.set_both(Faults::none().black_hole());
    let start = Instant::now();
    let mut ids: Vec<_> = (1..=8u64)
        .map(|i| client.send_request(peer, rr_request(i, 10, 10)))
        .collect();
    let awaited = (9..=16u64).map(|i| {
        let client = client.clone();
        async move { client.request(peer, rr_request(i, 10, 10)).await }
    });
    let results = within(
        DEADLINE + MARGIN,
        "8 awaited requests",
        futures_util::future::join_all(awaited),
    )
    .await;
    ended_at_deadline(start, "the awaited requests");
    for r in &results {
        assert!(matches!(r, Err(OutboundFailure::Timeout)), "{r:?}");
    }
    within(MARGIN, "one failure event per sent request", async {
        while !ids.is_empty() {
            match events.next().await.expect("events open") {
                Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    assert!(matches!(error, OutboundFailure::Timeout), "{error:?}");
                    let at = ids.iter().position(|id| *id == request_id);
                    ids.remove(at.expect("one event per request, for a request of ours"));
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    })
    .await;
    proxy.heal();
    let r = within(STEP, "a request after healing", async {
        client.request(peer, rr_request(99, 10, 10)).await
    })
    .await;
    check_response(99, 10, &r.expect("answered after healing"));
}

/// Guarantee: a connection cut in the middle of a response fails the request with
/// `ConnectionClosed` promptly (long before its 10 s timeout); the next request is answered over
/// a new connection.
#[tokio::test]
async fn rr_cut_in_the_middle_of_a_response_fails_the_request_with_connection_closed() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let (_server, seen) = serve_rr(&a, Config::default());
    let client = rr_client(&b, Config::default());
    let peer = a.peer_id();
    rr_warm_up(&client, peer).await;
    proxy.set(Dir::ToClient, Faults::none().cut_after(50_000));
    let r = within(PROMPTLY, "the request across the cut", async {
        client.request(peer, rr_request(1, 10, 200_000)).await
    })
    .await;
    assert!(matches!(r, Err(OutboundFailure::ConnectionClosed)), "{r:?}");
    assert_eq!(proxy.stats().cuts, 1);
    let r = within(STEP, "a request after the cut", async {
        client.request(peer, rr_request(2, 10, 10)).await
    })
    .await;
    check_response(2, 10, &r.expect("answered over a new connection"));
    assert_eq!(proxy.stats().connections, 2);
    assert_eq!(seen.wrong.load(Ordering::SeqCst), 0);
}

/// Guarantee: one corrupted byte in a Noise connection fails the request (the server's Noise
/// check refuses the frame and the connection closes) instead of delivering a wrong request; the
/// next request is answered over a new connection.
#[tokio::test]
async fn rr_corrupted_byte_fails_the_request_and_never_delivers_wrong_data() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let (_server, seen) = serve_rr(&a, Config::default());
    let client = rr_client(&b, Config::default());
    let peer = a.peer_id();
    rr_warm_up(&client, peer).await;
    let before = seen.requests.load(Ordering::SeqCst);
    proxy.set(Dir::ToServer, Faults::none().corrupt_at(3000));
    let r = within(PROMPTLY, "the corrupted request", async {
        client.request(peer, rr_request(1, 20_000, 10)).await
    })
    .await;
    assert_eq!(proxy.stats().corruptions, 1);
    assert!(matches!(r, Err(OutboundFailure::ConnectionClosed)), "{r:?}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), before, "delivered");
    let r = within(STEP, "a request after the corruption", async {
        client.request(peer, rr_request(2, 20_000, 10)).await
    })
    .await;
    check_response(2, 10, &r.expect("answered over a new connection"));
    assert_eq!(seen.wrong.load(Ordering::SeqCst), 0);
}

/// Guarantee: dialing through a black hole (the server's handshake answers never arrive) fails
/// the request with `DialFailure` at the 2 s connection setup deadline, not at the request
/// timeout and not never.
#[tokio::test]
async fn rr_dial_into_a_black_hole_fails_at_the_connection_setup_deadline() {
    let client_config = NodeConfig::default().with_connection_setup_timeout(DEADLINE);
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), client_config).await;
    let (_server, _seen) = serve_rr(&a, Config::default());
    let client = rr_client(&b, Config::default());
    proxy.set(Dir::ToClient, Faults::none().black_hole());
    let start = Instant::now();
    let r = within(DEADLINE + MARGIN, "the dial", async {
        client.request(a.peer_id(), rr_request(1, 10, 10)).await
    })
    .await;
    ended_at_deadline(start, "the dial");
    assert!(matches!(r, Err(OutboundFailure::DialFailure(_))), "{r:?}");
}

/// What the stream echo server saw: the length of each stream it read to a clean end, and how
/// many of them had wrong bytes.
#[derive(Debug, Default)]
struct EchoSeen {
    lengths: std::sync::Mutex<Vec<usize>>,
    wrong: AtomicU64,
}

impl EchoSeen {
    fn lengths(&self) -> Vec<usize> {
        self.lengths.lock().expect("lock").clone()
    }
}

/// The byte at `offset` of a test stream.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// Serves `ECHO` on `a`: reads to the end, checks the bytes against `pattern`, writes them back.
fn serve_echo(a: &Node) -> Arc<EchoSeen> {
    let mut incoming = a.stream_control().accept(ECHO).expect("register");
    let seen = Arc::new(EchoSeen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    counts.lengths.lock().expect("lock").push(buf.len());
                    if buf.iter().enumerate().any(|(i, b)| *b != pattern(i)) {
                        counts.wrong.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = s.write_all(&buf).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    seen
}

/// Writes `msg` on a new echo stream, half-closes, and reads the echo to the end.
async fn echo(client: &Node, peer: PeerId, msg: &[u8]) -> Result<Vec<u8>, OpenStreamError> {
    let mut s = client.stream_control().open_stream(peer, ECHO).await?;
    s.write_all(msg).await.map_err(OpenStreamError::Io)?;
    s.shutdown().await.map_err(OpenStreamError::Io)?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .await
        .map_err(OpenStreamError::Io)?;
    Ok(back)
}

/// Guarantee: with 20 ms of delay each way and a 1 MB/s limit both ways, a 200 kB echo comes
/// back whole and unchanged.
#[tokio::test]
async fn stream_echo_through_delay_and_bandwidth_limit_is_intact() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let seen = serve_echo(&a);
    proxy.set_both(
        Faults::none()
            .delay(Duration::from_millis(20))
            .bytes_per_sec(1_000_000),
    );
    let msg = payload(200_000);
    let back = within(STEP, "the echo", echo(&b, a.peer_id(), &msg)).await;
    assert!(back.expect("echo") == msg, "the echo differs");
    assert_eq!(seen.wrong.load(Ordering::SeqCst), 0);
}

/// Guarantee: with the path to the peer black-holed, a stream writer waits once the stream's
/// flow-control window (yamux: 256 KiB) is used, instead of buffering what the application
/// writes; when the path heals, everything written arrives and is echoed unchanged.
#[tokio::test]
async fn stream_black_holed_peer_makes_the_writer_wait_then_loses_nothing() {
    const TOTAL: usize = 2 << 20;
    const WRITE: usize = 16 * 1024;
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let seen = serve_echo(&a);
    let peer = a.peer_id();
    let warm = within(STEP, "a first echo", echo(&b, peer, &payload(10))).await;
    assert_eq!(warm.expect("echo"), payload(10));
    let mut s = within(STEP, "open", b.stream_control().open_stream(peer, ECHO))
        .await
        .expect("open");
    proxy.set(Dir::ToServer, Faults::none().black_hole());
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    let writer = tokio::spawn(async move {
        let msg = payload(TOTAL);
        for piece in msg.chunks(WRITE) {
            s.write_all(piece).await.expect("write");
            counter.fetch_add(piece.len() as u64, Ordering::SeqCst);
        }
        s.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read the echo");
        back
    });
    let waiting_at = settled(&accepted).await;
    // The stream window, one write of slack; the muxer writes nothing past the window.
    let bound = (256 * 1024 + WRITE) as u64;
    println!("stream: the writer waits after {waiting_at} bytes (bound {bound})");
    assert!(!writer.is_finished(), "the writer never waited");
    assert!(
        waiting_at <= bound,
        "{waiting_at} bytes accepted while black-holed, bound {bound}"
    );
    proxy.heal();
    let back = within(STEP, "the echo after healing", writer)
        .await
        .expect("writer");
    assert!(back == payload(TOTAL), "the echo differs");
    assert_eq!(seen.wrong.load(Ordering::SeqCst), 0);
}

/// Guarantee: opening a stream on a connection that is black-holed both ways fails with
/// `Timeout` at the 2 s negotiation deadline.
#[tokio::test]
async fn stream_open_through_a_black_hole_fails_at_the_negotiation_deadline() {
    let config = NodeConfig::default().with_negotiation_timeout(DEADLINE);
    let (a, b, proxy) = nodes_through_proxy(config.clone(), config).await;
    let _seen = serve_echo(&a);
    let peer = a.peer_id();
    let warm = within(STEP, "a first echo", echo(&b, peer, b"hi")).await;
    assert_eq!(warm.expect("echo"), b"hi");
    proxy.set_both(Faults::none().black_hole());
    let start = Instant::now();
    let r = within(
        DEADLINE + MARGIN,
        "open_stream",
        b.stream_control().open_stream(peer, ECHO),
    )
    .await;
    ended_at_deadline(start, "open_stream");
    assert!(matches!(r, Err(OpenStreamError::Timeout)), "{r:?}");
}

/// Guarantee: a connection cut in the middle of a frame makes the stream's reader fail promptly,
/// never end cleanly with part of the data (which would be a silent loss).
#[tokio::test]
async fn stream_cut_in_the_middle_of_a_frame_is_an_error_never_a_clean_end() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let _seen = serve_echo(&a);
    let peer = a.peer_id();
    let warm = within(STEP, "a first echo", echo(&b, peer, b"hi")).await;
    assert_eq!(warm.expect("echo"), b"hi");
    proxy.set(Dir::ToClient, Faults::none().cut_after(100_000));
    let msg = payload(300_000);
    let r = within(STEP, "the echo across the cut", async {
        let mut s = b
            .stream_control()
            .open_stream(peer, ECHO)
            .await
            .expect("open");
        s.write_all(&msg).await.expect("write");
        s.shutdown().await.expect("shutdown");
        // From here on, the cut must show within PROMPTLY.
        let mut back = Vec::new();
        let read = timeout(PROMPTLY + Duration::from_secs(2), s.read_to_end(&mut back)).await;
        (read, back.len())
    })
    .await;
    assert_eq!(proxy.stats().cuts, 1);
    match r {
        (Ok(Err(_)), _) => {}
        (Ok(Ok(n)), _) => panic!("the stream ended cleanly after {n} of {} bytes", msg.len()),
        (Err(_), got) => panic!("the reader still waits after the cut ({got} bytes read)"),
    }
}

/// Guarantee: one corrupted byte in a Noise connection fails the stream instead of delivering a
/// changed byte or a part of the data: the server never reads wrong data, nor a clean end after
/// part of it (which would be a silent loss), and the client gets an error.
#[tokio::test]
async fn stream_corrupted_byte_is_an_error_never_wrong_bytes() {
    let (a, b, proxy) = nodes_through_proxy(NodeConfig::default(), NodeConfig::default()).await;
    let seen = serve_echo(&a);
    let peer = a.peer_id();
    let warm = within(STEP, "a first echo", echo(&b, peer, &payload(10))).await;
    assert_eq!(warm.expect("echo"), payload(10));
    proxy.set(Dir::ToServer, Faults::none().corrupt_at(50_000));
    let msg = payload(300_000);
    let r = within(STEP, "the corrupted echo", echo(&b, peer, &msg)).await;
    assert_eq!(proxy.stats().corruptions, 1);
    assert!(r.is_err(), "the echo succeeded through a corrupted byte");
    assert_eq!(
        seen.wrong.load(Ordering::SeqCst),
        0,
        "wrong bytes delivered"
    );
    // Give the server's reader time to see the connection's end, then check that it did not
    // take it for the end of the stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lengths = seen.lengths();
    assert!(
        lengths.iter().all(|n| *n == 10 || *n == msg.len()),
        "the server read a stream to a clean end with part of the data: lengths {lengths:?}"
    );
}
