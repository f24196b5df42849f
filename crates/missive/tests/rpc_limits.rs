//! Limits and deadlines of rpc connections: bounded stream buffers with backpressure, bounded
//! read buffers, connect and handshake deadlines, the shutdown grace period and idle shedding.
#![cfg(all(feature = "rpc", feature = "prost"))]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use missive::rpc::echo::{self, Request, Response};
use missive::rpc::{
    CallContext, Client, ClientConfig, Reply, RequestStream, Server, ServerConfig, Service, Status,
};
use tokio::sync::mpsc;

type EchoClient = Client<Request, Response>;
type BoxFut = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

/// Items a stream test pushes through one call.
const ITEMS: usize = 1_000_000;

/// Waits until every task of this (paused-clock, current-thread) runtime is idle: the paused
/// clock only moves when no task can run, so the sleep ends once the drivers have gone as far
/// as they can.
async fn until_idle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Takes every item a stream holds right now, without letting any other task run.
fn take_buffered<S: futures_core::Stream + Unpin>(stream: &mut S) -> usize {
    let mut n = 0;
    while n <= ITEMS {
        match stream.next().now_or_never() {
            Some(Some(_)) => n += 1,
            _ => break,
        }
    }
    n
}

/// Streams `ITEMS` small responses to every rpc, counting what it produced.
struct Firehose(Arc<AtomicUsize>);

impl Service for Firehose {
    type Request = Request;
    type Response = Response;
    type Unary = BoxFut;
    type Stream = BoxStream<'static, Result<Response, Status>>;
    fn call(&mut self, _: Request, _: &mut CallContext<Request>) -> Reply<BoxFut, Self::Stream> {
        let produced = self.0.clone();
        Reply::Stream(
            futures_util::stream::iter(0..ITEMS)
                .map(move |_| {
                    produced.fetch_add(1, Ordering::Relaxed);
                    Ok(Response {
                        body: Bytes::from_static(b"x"),
                        ..Response::default()
                    })
                })
                .boxed(),
        )
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rpc_response_stream_nobody_polls_stays_bounded_and_pauses_the_server() {
    let produced = Arc::new(AtomicUsize::new(0));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::new(ServerConfig::default().with_send_budget(64 * 1024));
    tokio::spawn(server.connection(b, echo::ServerCodec::default(), Firehose(produced.clone())));
    let config = ClientConfig::default().with_stream_buffer(16);
    let client: EchoClient = Client::spawn(a, echo::ClientCodec::default(), config);
    let mut stream = client
        .server_stream(Request::unary("go"))
        .await
        .expect("stream");
    until_idle().await;
    let at_rest = produced.load(Ordering::Relaxed);
    let buffered = take_buffered(&mut stream);
    // The stream's buffer, its sender's own slot, and the one item the connection holds back.
    assert!(
        buffered <= 16 + 2,
        "{buffered} responses buffered for the consumer"
    );
    // Paused by backpressure: the pipe (64 KiB), the send budget (64 KiB) and the client's read
    // buffer hold a few thousand frames of a few bytes each, far from a million.
    assert!(
        at_rest < ITEMS / 20,
        "the server produced {at_rest} responses"
    );
    until_idle().await;
    assert!(
        produced.load(Ordering::Relaxed) < ITEMS / 20,
        "taking a few items must release only a few more"
    );
    // Reading resumes the stream and loses nothing.
    let mut total = buffered;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream goes on")
    {
        item.expect("item");
        total += 1;
    }
    assert_eq!(total, ITEMS);
}

/// Hands each rpc's request stream to the test, which does not read it; the rpc never answers.
struct Hoard(mpsc::UnboundedSender<RequestStream<Request>>);

impl Service for Hoard {
    type Request = Request;
    type Response = Response;
    type Unary = BoxFut;
    type Stream = BoxStream<'static, Result<Response, Status>>;
    fn call(&mut self, r: Request, c: &mut CallContext<Request>) -> Reply<BoxFut, Self::Stream> {
        if &r.body[..] != b"hoard" {
            return Reply::Unary(Box::pin(async move {
                Ok(Response {
                    body: r.body,
                    ..Response::default()
                })
            }));
        }
        let _ = self.0.send(c.requests());
        Reply::Unary(Box::pin(std::future::pending()))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rpc_request_stream_nobody_reads_stays_bounded_and_pauses_the_client() {
    let (tx, mut streams) = mpsc::unbounded_channel();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::new(ServerConfig::default().with_request_stream_buffer(16));
    tokio::spawn(server.connection(b, echo::ServerCodec::default(), Hoard(tx)));
    let client: EchoClient = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default()
            .with_deadline(None)
            .with_send_budget(64 * 1024),
    );
    let (mut sink, _response) = client
        .client_stream(Request::unary("hoard"))
        .await
        .expect("call");
    let mut requests = streams.recv().await.expect("the rpc started");
    let sent = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn({
        let sent = sent.clone();
        async move {
            for _ in 0..ITEMS {
                if sink.send(Request::unary("x")).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            sink
        }
    });
    until_idle().await;
    let at_rest = sent.load(Ordering::Relaxed);
    let buffered = take_buffered(&mut requests);
    assert!(
        buffered <= 16 + 2,
        "{buffered} requests buffered for the handler"
    );
    // Paused by backpressure: the client's send budget (64 KiB), the pipe (64 KiB) and the
    // server's read buffer hold a few thousand frames of a few bytes each, far from a million.
    assert!(at_rest < ITEMS / 20, "the client sent {at_rest} requests");
    // Reading resumes the sender and loses nothing.
    let mut total = buffered;
    while total < ITEMS {
        let item = tokio::time::timeout(Duration::from_secs(5), requests.next())
            .await
            .expect("the requests go on");
        assert!(item.is_some(), "the request stream ended after {total}");
        total += 1;
    }
    let sink = sending.await.expect("join");
    assert_eq!(sent.load(Ordering::Relaxed), ITEMS);
    drop(sink);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rpc_dropping_a_stalled_response_stream_resumes_the_connection() {
    let produced = Arc::new(AtomicUsize::new(0));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::new(ServerConfig::default().with_send_budget(64 * 1024));
    tokio::spawn(server.connection(b, echo::ServerCodec::default(), Firehose(produced.clone())));
    let config = ClientConfig::default().with_stream_buffer(4);
    let client: EchoClient = Client::spawn(a, echo::ClientCodec::default(), config);
    let stream = client
        .server_stream(Request::unary("go"))
        .await
        .expect("stream");
    until_idle().await;
    // The connection holds back reads for the stalled stream; a second stream waits behind it.
    let mut second = client
        .server_stream(Request::unary("again"))
        .await
        .expect("second stream");
    until_idle().await;
    assert!(second.next().now_or_never().is_none());
    // Dropping the stalled stream cancels it on the server and frees the connection.
    drop(stream);
    let first = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .expect("the connection reads again");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rpc_dropping_a_stalled_request_stream_resumes_the_connection() {
    let (tx, mut streams) = mpsc::unbounded_channel();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::new(ServerConfig::default().with_request_stream_buffer(4));
    tokio::spawn(server.connection(b, echo::ServerCodec::default(), Hoard(tx)));
    let client: EchoClient = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default().with_deadline(None),
    );
    let (mut sink, _response) = client
        .client_stream(Request::unary("hoard"))
        .await
        .expect("call");
    let requests = streams.recv().await.expect("the rpc started");
    let sending = tokio::spawn(async move {
        for _ in 0..ITEMS {
            if sink.send(Request::unary("x")).await.is_err() {
                break;
            }
        }
    });
    until_idle().await;
    // The handler drops its request stream: the held-back request is discarded and the
    // connection reads again, so a new call gets through.
    drop(requests);
    let r = tokio::time::timeout(Duration::from_secs(5), client.call(Request::unary("hi")))
        .await
        .expect("the connection reads again")
        .expect("call");
    assert_eq!(&r.body[..], b"hi");
    sending.abort();
}

/// Decodes nothing, ever: a custom decoder that waits for a frame that never completes.
#[derive(Default)]
struct NeverComplete(echo::ServerCodec);

impl missive::rpc::Encoder for NeverComplete {
    type Message = Response;
    type Serialized = <echo::ServerCodec as missive::rpc::Encoder>::Serialized;
    fn encode(&mut self, message: Response) -> Result<Self::Serialized, missive::rpc::EncodeError> {
        self.0.encode(message)
    }
}

impl missive::rpc::Decoder for NeverComplete {
    type Message = Request;
    fn decode(
        &mut self,
        _: &mut bytes::BytesMut,
    ) -> Result<Option<Request>, missive::rpc::DecodeError> {
        Ok(None)
    }
}

#[tokio::test]
async fn rpc_read_buffer_is_capped_at_the_max_message_size_whatever_the_decoder() {
    use tokio::io::AsyncWriteExt;
    let (mut peer, b) = tokio::io::duplex(64 * 1024);
    let task =
        tokio::spawn(Server::default().connection(b, NeverComplete::default(), echo::EchoService));
    // Twice the 4 MiB limit, in pieces; the server ends the connection on the way.
    let piece = vec![0u8; 64 * 1024];
    for _ in 0..128 {
        if peer.write_all(&piece).await.is_err() {
            break;
        }
    }
    let r = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server ends the connection")
        .expect("join");
    let cap = missive::rpc::codec::DEFAULT_MAX_MESSAGE_SIZE + missive::rpc::codec::MAX_PREFIX_LEN;
    match r {
        Err(missive::rpc::server::ServeError::Decode(missive::rpc::DecodeError::Unframed {
            buffered,
            max,
        })) => {
            assert_eq!(max, cap);
            // Stopped at the first read past the cap.
            assert!(buffered > cap && buffered <= cap + 64 * 1024, "{buffered}");
        }
        other => panic!("{other:?}"),
    }
}

/// The client's side of [`NeverComplete`].
#[derive(Default)]
struct NeverCompleteClient(echo::ClientCodec);

impl missive::rpc::Encoder for NeverCompleteClient {
    type Message = Request;
    type Serialized = <echo::ClientCodec as missive::rpc::Encoder>::Serialized;
    fn encode(&mut self, message: Request) -> Result<Self::Serialized, missive::rpc::EncodeError> {
        self.0.encode(message)
    }
}

impl missive::rpc::Decoder for NeverCompleteClient {
    type Message = Response;
    fn decode(
        &mut self,
        _: &mut bytes::BytesMut,
    ) -> Result<Option<Response>, missive::rpc::DecodeError> {
        Ok(None)
    }
    fn max_message_size(&self) -> usize {
        1 << 20
    }
}

#[tokio::test]
async fn rpc_client_read_buffer_is_capped_at_its_decoders_max_message_size() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, mut peer) = tokio::io::duplex(64 * 1024);
    let (client, driver): (EchoClient, _) =
        Client::new(a, NeverCompleteClient::default(), ClientConfig::default());
    let driver = tokio::spawn(driver);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(Request::unary("x")).await }
    });
    let mut buf = [0u8; 64];
    assert!(peer.read(&mut buf).await.expect("read request") > 0);
    let piece = vec![0u8; 64 * 1024];
    for _ in 0..64 {
        if peer.write_all(&piece).await.is_err() {
            break;
        }
    }
    let d = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the client ends the connection")
        .expect("join");
    let cap = (1 << 20) + missive::rpc::codec::MAX_PREFIX_LEN;
    assert!(
        matches!(
            d,
            Err(missive::rpc::client::ConnectionError::Decode(
                missive::rpc::DecodeError::Unframed { max, .. }
            )) if max == cap
        ),
        "{d:?}"
    );
    assert!(call.await.expect("join").is_err());
}

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
async fn rpc_connect_to_a_full_backlog_ends_at_the_default_deadline() {
    let (_listener, _queued, addr) = full_backlog();
    let started = tokio::time::Instant::now();
    let r: std::io::Result<EchoClient> = tokio::time::timeout(
        Duration::from_secs(60),
        Client::connect_tcp(addr, echo::ClientCodec::default(), ClientConfig::default()),
    )
    .await
    .expect("connecting ends at its own deadline");
    let e = r.expect_err("connected to a full backlog");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn rpc_tls_handshake_with_a_silent_server_ends_at_the_default_deadline() {
    // Accepted by the kernel, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let cert = missive::transport::tls::SelfSigned::generate(&["localhost"]).expect("cert");
    let started = tokio::time::Instant::now();
    let r: Result<EchoClient, _> = tokio::time::timeout(
        Duration::from_secs(60),
        Client::connect_tls(
            addr,
            "localhost",
            cert.client_config().expect("cfg"),
            echo::ClientCodec::default(),
            ClientConfig::default(),
        ),
    )
    .await
    .expect("the handshake ends at its own deadline");
    assert!(
        matches!(r, Err(missive::transport::tls::TlsError::HandshakeTimeout(d)) if d == Duration::from_secs(10)),
        "{r:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn rpc_connect_and_handshake_deadlines_are_settable() {
    use missive::transport::tls::{SelfSigned, TlsError};
    let (_listener, _queued, addr) = full_backlog();
    let config = ClientConfig::default()
        .with_connect_timeout(Duration::from_secs(3))
        .with_handshake_timeout(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let r: std::io::Result<EchoClient> = tokio::time::timeout(
        Duration::from_secs(60),
        Client::connect_tcp(addr, echo::ClientCodec::default(), config.clone()),
    )
    .await
    .expect("ends");
    assert_eq!(
        r.expect_err("connected").kind(),
        std::io::ErrorKind::TimedOut
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(started.elapsed() < Duration::from_secs(10));
    let cert = SelfSigned::generate(&["localhost"]).expect("cert");
    let tls = cert.client_config().expect("cfg");
    let r: Result<EchoClient, _> = tokio::time::timeout(
        Duration::from_secs(60),
        Client::connect_tls(
            addr,
            "localhost",
            tls.clone(),
            echo::ClientCodec::default(),
            config.clone(),
        ),
    )
    .await
    .expect("ends");
    assert!(
        matches!(r, Err(TlsError::ConnectTimeout(d)) if d == Duration::from_secs(3)),
        "{r:?}"
    );
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let r: Result<EchoClient, _> = tokio::time::timeout(
        Duration::from_secs(60),
        Client::connect_tls(
            silent_addr,
            "localhost",
            tls,
            echo::ClientCodec::default(),
            config,
        ),
    )
    .await
    .expect("ends");
    assert!(
        matches!(r, Err(TlsError::HandshakeTimeout(d)) if d == Duration::from_secs(2)),
        "{r:?}"
    );
}

/// One dial of a test pool.
type Dial = Pin<Box<dyn Future<Output = std::io::Result<EchoClient>> + Send>>;

/// A pool whose dials hang while `hang` is set, and otherwise connect to an echo server over a
/// pipe. Counts the dials.
fn hanging_pool(
    hang: Arc<std::sync::atomic::AtomicBool>,
    dials: Arc<AtomicUsize>,
) -> missive::rpc::pool::Pool<Request, Response, impl Fn() -> Dial> {
    missive::rpc::pool::Pool::new(2, move || {
        dials.fetch_add(1, Ordering::SeqCst);
        let hang = hang.load(Ordering::SeqCst);
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            let (a, b) = tokio::io::duplex(64 * 1024);
            tokio::spawn(Server::default().connection(
                b,
                echo::ServerCodec::default(),
                echo::EchoService,
            ));
            Ok(Client::spawn(
                a,
                echo::ClientCodec::default(),
                ClientConfig::default(),
            ))
        }) as Dial
    })
}

#[tokio::test(start_paused = true)]
async fn rpc_pool_hung_dial_fails_every_waiting_caller_at_one_deadline() {
    use missive::rpc::pool::PoolError;
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let dials = Arc::new(AtomicUsize::new(0));
    let pool = Arc::new(hanging_pool(hang.clone(), dials.clone()));
    let started = tokio::time::Instant::now();
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.client_at(0).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dials.load(Ordering::SeqCst), 1);
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { (pool.client_at(0).await.map(|_| ()), started.elapsed()) }
    });
    let first = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the hung dial ends at the pool's deadline")
        .expect("join");
    assert!(
        matches!(first, Err(PoolError::ConnectTimeout(_))),
        "{first:?}"
    );
    let (second, at) = tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("the waiting caller is not stuck behind the dial")
        .expect("join");
    // It shared the first dial and its deadline, rather than dialing again after it.
    assert!(
        matches!(second, Err(PoolError::ConnectTimeout(_))),
        "{second:?}"
    );
    assert!(
        at <= Duration::from_secs(11),
        "the second caller waited {at:?}"
    );
    assert_eq!(dials.load(Ordering::SeqCst), 1);
    // The next caller dials again, and gets through.
    hang.store(false, Ordering::SeqCst);
    let client = tokio::time::timeout(Duration::from_secs(60), pool.client_at(0))
        .await
        .expect("dial")
        .expect("client");
    let r = client.call(Request::unary("hi")).await.expect("call");
    assert_eq!(&r.body[..], b"hi");
}

#[tokio::test(start_paused = true)]
async fn rpc_pool_caller_that_gives_up_on_a_dial_hands_it_to_the_next() {
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let dials = Arc::new(AtomicUsize::new(0));
    let pool = Arc::new(hanging_pool(hang.clone(), dials.clone()));
    // The first caller gives up after a second, its dial still hanging.
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { tokio::time::timeout(Duration::from_secs(1), pool.client_at(0)).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(dials.load(Ordering::SeqCst), 1);
    // Later dials connect.
    hang.store(false, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.client_at(0).await.map(|_| ()) }
    });
    assert!(first.await.expect("join").is_err(), "the first dial hangs");
    // The waiting caller takes the dial over when the first one gives up, not at the deadline.
    let second = tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("the waiting caller is not stuck")
        .expect("join");
    assert!(second.is_ok(), "{second:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(dials.load(Ordering::SeqCst), 2);
}

/// Streams one response a second, forever; a unary request "hang" never finishes.
struct Endless;

impl Service for Endless {
    type Request = Request;
    type Response = Response;
    type Unary = BoxFut;
    type Stream = BoxStream<'static, Result<Response, Status>>;
    fn call(&mut self, r: Request, _: &mut CallContext<Request>) -> Reply<BoxFut, Self::Stream> {
        if &r.body[..] == b"hang" {
            return Reply::Unary(Box::pin(std::future::pending()));
        }
        Reply::Stream(
            futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok(Response::default()), ()))
            })
            .boxed(),
        )
    }
}

#[tokio::test(start_paused = true)]
async fn rpc_shutdown_fails_an_endless_stream_after_the_default_grace() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::default();
    let connection = tokio::spawn(server.connection(b, echo::ServerCodec::default(), Endless));
    let client: EchoClient =
        Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
    let mut stream = client
        .server_stream(Request::unary("go"))
        .await
        .expect("stream");
    let reading = tokio::spawn(async move {
        let mut items = 0;
        loop {
            match stream.next().await {
                Some(Ok(_)) => items += 1,
                other => return (items, other),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), server.shutdown())
        .await
        .expect("shutdown ends after its grace period");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
    // The stream went on during the grace period, then was failed with a status.
    let (items, end) = reading.await.expect("join");
    assert!(items >= 10, "{items} items");
    match end {
        Some(Err(missive::rpc::CallError::Failed(status))) => {
            assert_eq!(status.code(), missive::rpc::StatusCode::Unavailable);
        }
        other => panic!("{other:?}"),
    }
    let served = connection.await.expect("join");
    assert!(served.is_ok(), "{served:?}");
}

#[tokio::test(start_paused = true)]
async fn rpc_shutdown_grace_is_settable_and_fails_open_unary_calls() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::new(ServerConfig::default().with_shutdown_grace(Duration::from_secs(2)));
    tokio::spawn(server.connection(b, echo::ServerCodec::default(), Endless));
    let client: EchoClient = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default().with_deadline(None),
    );
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(Request::unary("hang")).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), server.shutdown())
        .await
        .expect("shutdown ends after its grace period");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let r = call.await.expect("join");
    assert!(
        matches!(&r, Err(missive::rpc::CallError::Failed(s)) if s.code() == missive::rpc::StatusCode::Unavailable),
        "{r:?}"
    );
    // The connection is closed: new calls fail.
    let r = tokio::time::timeout(Duration::from_secs(5), client.call(Request::unary("x")))
        .await
        .expect("ends");
    assert!(r.is_err(), "{r:?}");
}

/// Serves TLS with `config` and an acceptor whose handshake deadline is `deadline`; reports the
/// time of each accepted TCP connection.
async fn serve_tls(
    config: ServerConfig,
    deadline: Duration,
) -> (
    Server,
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<std::time::Instant>,
    missive::transport::tls::SelfSigned,
) {
    let cert = missive::transport::tls::SelfSigned::generate(&["localhost"]).expect("cert");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = missive::transport::tls::Acceptor::new(cert.server_config().expect("cfg"))
        .with_handshake_timeout(deadline);
    let server = Server::new(config);
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve_tls(listener, acceptor, move |_| {
                    let _ = tx.send(std::time::Instant::now());
                    (echo::ServerCodec::default(), echo::EchoService)
                })
                .await
        }
    });
    (server, addr, accepted, cert)
}

async fn next_accept(
    accepted: &mut mpsc::UnboundedReceiver<std::time::Instant>,
) -> std::time::Instant {
    tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .expect("accepted in time")
        .expect("serving")
}

#[tokio::test]
async fn rpc_tls_handshakes_over_the_cap_make_silent_ones_yield_to_honest_clients() {
    use tokio::io::AsyncReadExt;
    let config = ServerConfig::default().with_max_pending_handshakes(2);
    let (_server, addr, mut accepted, cert) = serve_tls(config, Duration::from_secs(10)).await;
    // Clients that never start their handshake fill the two slots, and more keep coming.
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    for _ in 0..6 {
        next_accept(&mut accepted).await;
    }
    // The oldest silent ones were closed to make room, long before their 10 s deadline.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), silent[0].read(&mut buf))
        .await
        .expect("the oldest silent connection was closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // An honest client gets through at once.
    let client: EchoClient = tokio::time::timeout(
        Duration::from_secs(1),
        Client::connect_tls(
            addr,
            "localhost",
            cert.client_config().expect("cfg"),
            echo::ClientCodec::default(),
            ClientConfig::default(),
        ),
    )
    .await
    .expect("handshake within 1 s")
    .expect("connect");
    let r = client.call(Request::unary("hi")).await.expect("call");
    assert_eq!(&r.body[..], b"hi");
}

#[tokio::test]
async fn rpc_shutdown_ends_tls_handshakes_in_progress() {
    use tokio::io::AsyncReadExt;
    let (server, addr, mut accepted, _cert) =
        serve_tls(ServerConfig::default(), Duration::from_secs(10)).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    next_accept(&mut accepted).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown");
    // The handshake was ended with the shutdown, not left to its 10 s deadline.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut buf))
        .await
        .expect("the server closed the handshaking connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
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

/// Serves plain TCP with `config`; reports each accepted peer's address.
async fn serve_tcp(
    config: ServerConfig,
) -> (
    Server,
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<std::net::SocketAddr>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::new(config);
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve_tcp(listener, move |peer| {
                    let _ = tx.send(peer);
                    (echo::ServerCodec::default(), echo::EchoService)
                })
                .await
        }
    });
    (server, addr, accepted)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn rpc_server_sets_tcp_keepalive_on_accepted_connections() {
    for (keepalive, armed) in [
        (Some(Duration::from_secs(30)), true),
        (Some(Duration::from_secs(7)), true),
        (None, false),
    ] {
        let config = ServerConfig::default().with_tcp_keepalive(keepalive);
        let (_server, addr, mut accepted) = serve_tcp(config).await;
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let peer = tokio::time::timeout(Duration::from_secs(5), accepted.recv())
            .await
            .expect("accepted")
            .expect("serving");
        assert_eq!(peer, client.local_addr().expect("addr"));
        // The server's side of the connection: local = the listener, remote = the client.
        let (timer, when) = tcp_timer(addr, peer);
        match keepalive {
            Some(idle) if armed => {
                assert_eq!(timer, 2, "no keepalive timer on the server's socket");
                let idle = idle.as_secs_f64();
                assert!(when <= idle && when > idle - 5.0, "fires in {when} s");
            }
            _ => assert_eq!(timer, 0, "a timer is armed: {timer}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rpc_server_sheds_a_connection_idle_past_its_timeout() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let idle = Duration::from_secs(5);
    let server = Server::new(ServerConfig::default().with_idle_timeout(Some(idle)));
    let connection =
        tokio::spawn(server.connection(b, echo::ServerCodec::default(), echo::EchoService));
    let client: EchoClient =
        Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
    // A call every 3 s keeps the connection.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        client.call(Request::unary("x")).await.expect("call");
    }
    let started = tokio::time::Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("the idle connection is shed")
        .expect("join");
    assert!(served.is_ok(), "{served:?}");
    let took = started.elapsed();
    assert!(
        took >= idle && took < idle + Duration::from_secs(1),
        "{took:?}"
    );
    let r = client.call(Request::unary("late")).await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn rpc_server_never_sheds_a_connection_with_an_rpc_in_flight_or_by_default() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server =
        Server::new(ServerConfig::default().with_idle_timeout(Some(Duration::from_secs(5))));
    let mut connection = tokio::spawn(server.connection(b, echo::ServerCodec::default(), Endless));
    let client: EchoClient = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default().with_deadline(None),
    );
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(Request::unary("hang")).await }
    });
    // An hour (on the paused clock) with the rpc running: not idle.
    let r = tokio::time::timeout(Duration::from_secs(3600), &mut connection).await;
    assert!(r.is_err(), "shed with an rpc in flight: {r:?}");
    assert!(!call.is_finished());
    // Off by default: an hour of silence ends nothing.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let default = tokio::spawn(Server::default().connection(
        b,
        echo::ServerCodec::default(),
        echo::EchoService,
    ));
    let _client: EchoClient =
        Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
    let r = tokio::time::timeout(Duration::from_secs(3600), default).await;
    assert!(r.is_err(), "{r:?}");
}
