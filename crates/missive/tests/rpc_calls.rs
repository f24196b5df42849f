//! Client and server behaviour over in-memory and TCP byte streams.
#![cfg(all(feature = "rpc", feature = "prost"))]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use missive::rpc::echo::{self, EchoService, Request, Response};
use missive::rpc::{
    CallContext, CallError, CallOptions, Client, ClientConfig, InFlightPolicy, Message, Reply,
    Server, Service, Status, StatusCode,
};
use tokio::sync::{mpsc, oneshot};

type EchoClient = Client<Request, Response>;

/// A client and a served connection over an in-memory pipe, both drivers spawned.
fn connect<S>(service: S) -> (EchoClient, Server)
where
    S: Service<Request = Request, Response = Response> + Send + 'static,
    S::Unary: Send,
    S::Stream: Send,
{
    connect_with(service, ClientConfig::default())
}

fn connect_with<S>(service: S, config: ClientConfig) -> (EchoClient, Server)
where
    S: Service<Request = Request, Response = Response> + Send + 'static,
    S::Unary: Send,
    S::Stream: Send,
{
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = Server::default();
    let conn = server.connection(b, echo::ServerCodec::default(), service);
    tokio::spawn(conn);
    let client = Client::spawn(a, echo::ClientCodec::default(), config);
    (client, server)
}

/// A service whose behaviour is chosen by the request body, for tests.
#[derive(Clone)]
struct TestService {
    started: mpsc::UnboundedSender<u64>,
    dropped: mpsc::UnboundedSender<u64>,
}

/// Sends its id when dropped: shows that the server dropped an rpc's work.
struct DropSignal(u64, mpsc::UnboundedSender<u64>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

impl Service for TestService {
    type Request = Request;
    type Response = Response;
    type Unary = BoxFut;
    type Stream = BoxStream<'static, Result<Response, Status>>;

    fn call(
        &mut self,
        request: Request,
        context: &mut CallContext<Request>,
    ) -> Reply<BoxFut, Self::Stream> {
        let id = context.id();
        let _ = self.started.send(id);
        let guard = DropSignal(id, self.dropped.clone());
        match &request.body[..] {
            b"hang" => Reply::Unary(Box::pin(async move {
                let _guard = guard;
                std::future::pending().await
            })),
            b"hang-stream" => Reply::Stream(
                futures_util::stream::unfold(guard, |g| async move {
                    std::future::pending::<()>().await;
                    Some((Ok(Response::default()), g))
                })
                .boxed(),
            ),
            b"panic" => Reply::Unary(Box::pin(async { panic!("handler bug") })),
            b"panic-now" => panic!("handler bug while starting"),
            b"reject" => Reply::Reject(Status::new(StatusCode::Rejected, "no")),
            b"fail" => Reply::Unary(Box::pin(async {
                Err(Status::new(StatusCode::Internal, "it broke"))
            })),
            b"sum" => {
                // Client streaming: answer with the total body length of all requests.
                let mut requests = context.requests();
                Reply::Unary(Box::pin(async move {
                    let mut total = request.body.len();
                    while let Some(r) = requests.next().await {
                        total += r.body.len();
                    }
                    Ok(Response {
                        body: Bytes::from(total.to_string()),
                        ..Response::default()
                    })
                }))
            }
            b"echo-each" => {
                // Bidirectional: answer each further request with its body.
                let requests = context.requests();
                Reply::Stream(
                    requests
                        .map(|r| {
                            Ok(Response {
                                body: r.body,
                                ..Response::default()
                            })
                        })
                        .boxed(),
                )
            }
            _ => {
                let n = request.stream_count;
                let body = request.body;
                if n == 0 {
                    Reply::Unary(Box::pin(async move {
                        Ok(Response {
                            body,
                            ..Response::default()
                        })
                    }))
                } else {
                    Reply::Stream(
                        futures_util::stream::iter((0..n).map(move |i| {
                            Ok(Response {
                                body: Bytes::from(format!("{i}")),
                                ..Response::default()
                            })
                        }))
                        .boxed(),
                    )
                }
            }
        }
    }
}

fn test_service() -> (
    TestService,
    mpsc::UnboundedReceiver<u64>,
    mpsc::UnboundedReceiver<u64>,
) {
    let (started, started_rx) = mpsc::unbounded_channel();
    let (dropped, dropped_rx) = mpsc::unbounded_channel();
    (TestService { started, dropped }, started_rx, dropped_rx)
}

#[tokio::test]
async fn rpc_unary_call_returns_the_response() {
    let (client, _server) = connect(EchoService);
    let r = client.call(Request::unary("hello")).await.expect("call");
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(r.code, 0);
}

#[tokio::test]
async fn rpc_many_pipelined_calls_all_complete_with_their_own_answer() {
    let (client, _server) = connect(EchoService);
    let calls = (0..500u32).map(|i| {
        let client = client.clone();
        async move {
            let r = client
                .call(Request::unary(i.to_string()))
                .await
                .expect("call");
            assert_eq!(r.body, Bytes::from(i.to_string()));
        }
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn rpc_server_stream_yields_every_item_then_ends() {
    let (client, _server) = connect(EchoService);
    let stream = client
        .server_stream(Request::stream("x", 100))
        .await
        .expect("stream");
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 100);
    assert!(
        items
            .iter()
            .all(|r| matches!(r, Ok(r) if &r.body[..] == b"x"))
    );
}

#[tokio::test]
async fn rpc_dropped_call_cancels_on_server() {
    let (svc, mut started, mut dropped) = test_service();
    let (client, _server) = connect(svc);
    let call = client.call(Request::unary("hang"));
    tokio::select! {
        _ = call => panic!("the call must hang"),
        id = started.recv() => assert!(id.is_some()),
    }
    // The call future is dropped here: the server drops the work.
    let id = dropped.recv().await.expect("server dropped the rpc");
    assert!(id > 0);
    // The connection still works.
    assert!(client.call(Request::unary("ok")).await.is_ok());
}

#[tokio::test]
async fn rpc_dropped_stream_cancels_on_server() {
    let (svc, mut started, mut dropped) = test_service();
    let (client, _server) = connect(svc);
    let stream = client
        .server_stream(Request::unary("hang-stream"))
        .await
        .expect("stream");
    let id = started.recv().await.expect("started");
    drop(stream);
    assert_eq!(dropped.recv().await, Some(id));
}

#[tokio::test(start_paused = true)]
async fn rpc_call_past_its_deadline_fails_and_cancels_on_server() {
    let (svc, _started, mut dropped) = test_service();
    let (client, _server) = connect(svc);
    let r = client
        .call_with(
            Request::unary("hang"),
            CallOptions::default().with_deadline(Some(Duration::from_secs(2))),
        )
        .await;
    assert!(matches!(r, Err(CallError::DeadlineExceeded)), "{r:?}");
    assert!(dropped.recv().await.is_some());
}

#[tokio::test]
async fn rpc_duplicate_caller_id_in_flight_is_an_error_to_the_caller() {
    let (svc, mut started, _dropped) = test_service();
    let (client, _server) = connect(svc);
    let opts = CallOptions::default().with_caller_id(true);
    let mut first = Request::unary("hang");
    first.set_message_id(77);
    let c2 = client.clone();
    let o2 = opts.clone();
    let hanging = tokio::spawn(async move { c2.call_with(first, o2).await });
    assert_eq!(started.recv().await, Some(77));
    let mut second = Request::unary("x");
    second.set_message_id(77);
    let r = client.call_with(second, opts.clone()).await;
    assert!(matches!(r, Err(CallError::DuplicateId(77))), "{r:?}");
    // A library-chosen id never collides, even with 77 in flight.
    for _ in 0..100 {
        client.call(Request::unary("y")).await.expect("call");
    }
    hanging.abort();
}

#[tokio::test]
async fn rpc_fail_fast_policy_refuses_calls_over_the_in_flight_limit() {
    let (svc, mut started, _dropped) = test_service();
    let config = ClientConfig::default()
        .with_max_in_flight(2)
        .with_in_flight_policy(InFlightPolicy::FailFast);
    let (client, _server) = connect_with(svc, config);
    let mut hanging = Vec::new();
    for _ in 0..2 {
        let c = client.clone();
        hanging.push(tokio::spawn(
            async move { c.call(Request::unary("hang")).await },
        ));
        started.recv().await.expect("started");
    }
    let r = client.call(Request::unary("x")).await;
    assert!(matches!(r, Err(CallError::TooManyInFlight)), "{r:?}");
    for h in &hanging {
        h.abort();
    }
    for h in hanging {
        let _ = h.await;
    }
    // The permits come back when the calls are cancelled.
    let mut ok = false;
    for _ in 0..1000 {
        if client.call(Request::unary("x")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok);
}

#[tokio::test]
async fn rpc_wait_policy_waits_for_a_free_slot() {
    let (svc, mut started, _dropped) = test_service();
    let config = ClientConfig::default().with_max_in_flight(1);
    let (client, _server) = connect_with(svc, config);
    let c = client.clone();
    let hanging = tokio::spawn(async move { c.call(Request::unary("hang")).await });
    started.recv().await.expect("started");
    let c = client.clone();
    let (tx, rx) = oneshot::channel();
    let waiting = tokio::spawn(async move {
        let _ = tx.send(());
        c.call(Request::unary("after")).await
    });
    rx.await.expect("waiting call started");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    hanging.abort();
    let r = waiting.await.expect("join").expect("call");
    assert_eq!(&r.body[..], b"after");
}

#[tokio::test]
async fn rpc_handler_panic_fails_that_call_only() {
    let (svc, _started, _dropped) = test_service();
    let (client, _server) = connect(svc);
    for body in ["panic", "panic-now"] {
        let r = client.call(Request::unary(body)).await;
        match r {
            Err(CallError::Failed(s)) => assert_eq!(s.code(), StatusCode::Internal),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(client.call(Request::unary("ok")).await.is_ok());
}

#[tokio::test]
async fn rpc_rejection_and_handler_error_reach_the_caller_as_status() {
    let (svc, _started, _dropped) = test_service();
    let (client, _server) = connect(svc);
    match client.call(Request::unary("reject")).await {
        Err(CallError::Failed(s)) => assert_eq!(s.code(), StatusCode::Rejected),
        other => panic!("unexpected {other:?}"),
    }
    match client.call(Request::unary("fail")).await {
        Err(CallError::Failed(s)) => {
            assert_eq!(s.code(), StatusCode::Internal);
            assert_eq!(s.message(), "it broke");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn rpc_client_stream_sends_many_requests_and_gets_one_answer() {
    let (svc, _started, _dropped) = test_service();
    let (client, _server) = connect(svc);
    let (mut sink, response) = client
        .client_stream(Request::unary("sum"))
        .await
        .expect("open");
    for _ in 0..10 {
        sink.send(Request::unary("abcd")).await.expect("send");
    }
    sink.finish();
    let r = response.await.expect("response");
    assert_eq!(&r.body[..], b"43");
}

#[tokio::test]
async fn rpc_bidi_stream_answers_each_request() {
    let (svc, _started, _dropped) = test_service();
    let (client, _server) = connect(svc);
    let (mut sink, mut responses) = client
        .bidi_stream(Request::unary("echo-each"))
        .await
        .expect("open");
    for i in 0..5 {
        sink.send(Request::unary(format!("m{i}")))
            .await
            .expect("send");
        let r = responses.next().await.expect("item").expect("ok");
        assert_eq!(r.body, Bytes::from(format!("m{i}")));
    }
    sink.finish();
    assert!(responses.next().await.is_none());
}

#[tokio::test]
async fn rpc_client_is_not_alive_after_the_server_goes_away() {
    let (a, b) = tokio::io::duplex(1024);
    let client: EchoClient =
        Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
    assert!(client.is_alive());
    drop(b);
    let r = client.call(Request::unary("x")).await;
    assert!(matches!(r, Err(CallError::ConnectionClosed)), "{r:?}");
    let mut alive = true;
    for _ in 0..100 {
        alive = client.is_alive();
        if !alive {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!alive);
}

#[tokio::test]
async fn rpc_graceful_shutdown_drains_calls_in_flight() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    #[derive(Clone)]
    struct Slow(tokio::sync::watch::Receiver<bool>, Arc<AtomicUsize>);
    impl Service for Slow {
        type Request = Request;
        type Response = Response;
        type Unary = BoxFut;
        type Stream = futures_util::stream::Empty<Result<Response, Status>>;
        fn call(
            &mut self,
            r: Request,
            _: &mut CallContext<Request>,
        ) -> Reply<BoxFut, Self::Stream> {
            let mut rx = self.0.clone();
            self.1.fetch_add(1, Ordering::SeqCst);
            Reply::Unary(Box::pin(async move {
                let _ = rx.wait_for(|v| *v).await;
                Ok(Response {
                    body: r.body,
                    ..Response::default()
                })
            }))
        }
    }
    let started = Arc::new(AtomicUsize::new(0));
    let (client, server) = connect(Slow(release_rx, started.clone()));
    let c = client.clone();
    let call = tokio::spawn(async move { c.call(Request::unary("late")).await });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let s = server.clone();
    let shutdown = tokio::spawn(async move { s.shutdown().await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    // New calls are refused while the old one drains.
    match client.call(Request::unary("new")).await {
        Err(CallError::Failed(s)) => assert_eq!(s.code(), StatusCode::Unavailable),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!shutdown.is_finished());
    release_tx.send(true).expect("release");
    let r = call.await.expect("join").expect("drained call");
    assert_eq!(&r.body[..], b"late");
    shutdown.await.expect("shutdown completes");
}

#[test]
fn rpc_not_send_service_runs_on_a_local_set() {
    use std::rc::Rc;
    struct Local(Rc<std::cell::Cell<u32>>);
    impl Service for Local {
        type Request = Request;
        type Response = Response;
        type Unary = Pin<Box<dyn Future<Output = Result<Response, Status>>>>;
        type Stream = futures_util::stream::Empty<Result<Response, Status>>;
        fn call(
            &mut self,
            r: Request,
            _: &mut CallContext<Request>,
        ) -> Reply<Self::Unary, Self::Stream> {
            let count = self.0.clone();
            Reply::Unary(Box::pin(async move {
                count.set(count.get() + 1);
                Ok(Response {
                    body: r.body,
                    ..Response::default()
                })
            }))
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let count = Rc::new(std::cell::Cell::new(0));
        let (a, b) = tokio::io::duplex(4096);
        let server = Server::default();
        tokio::task::spawn_local(server.connection(
            b,
            echo::ServerCodec::default(),
            Local(count.clone()),
        ));
        let (client, driver): (EchoClient, _) =
            Client::new(a, echo::ClientCodec::default(), ClientConfig::default());
        tokio::task::spawn_local(driver);
        for i in 0..10 {
            let r = client
                .call(Request::unary(format!("{i}")))
                .await
                .expect("call");
            assert_eq!(r.body, Bytes::from(format!("{i}")));
        }
        assert_eq!(count.get(), 10);
    });
}

#[test]
fn rpc_send_service_runs_on_a_multi_thread_runtime_over_tcp() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Server::default();
        let s = server.clone();
        let serving = tokio::spawn(async move {
            s.serve_tcp(listener, |_peer| {
                (echo::ServerCodec::default(), EchoService)
            })
            .await
        });
        let client: EchoClient =
            Client::connect_tcp(addr, echo::ClientCodec::default(), ClientConfig::default())
                .await
                .expect("connect");
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100u32 {
                    let body = Bytes::from(format!("{t}-{i}"));
                    let r = c.call(Request::unary(body.clone())).await.expect("call");
                    assert_eq!(r.body, body);
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
        // A large message crosses in one piece.
        let big = Bytes::from(vec![7u8; 1024 * 1024]);
        let r = client.call(Request::unary(big.clone())).await.expect("big");
        assert_eq!(r.body, big);
        // Shutdown stops the listener and closes the idle connection.
        server.shutdown().await;
        serving.await.expect("join").expect("serve");
        let r = client.call(Request::unary("late")).await;
        assert!(r.is_err(), "{r:?}");
    });
}

#[cfg(feature = "msgpack")]
#[tokio::test]
async fn rpc_envelope_over_messagepack_carries_bodies_and_status() {
    use missive::rpc::msgpack::{Envelope, MessagePackCodec};
    type Req = Envelope<(String, u32)>;
    type Resp = Envelope<String>;
    struct Greeter;
    impl Service for Greeter {
        type Request = Req;
        type Response = Resp;
        type Unary = std::future::Ready<Result<Resp, Status>>;
        type Stream = futures_util::stream::Empty<Result<Resp, Status>>;
        fn call(&mut self, r: Req, _: &mut CallContext<Req>) -> Reply<Self::Unary, Self::Stream> {
            match r.into_body() {
                Some((name, n)) if n > 0 => Reply::Unary(std::future::ready(Ok(Envelope::new(
                    format!("hello {name} x{n}"),
                )))),
                _ => Reply::Reject(Status::new(StatusCode::Rejected, "n must be positive")),
            }
        }
    }
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(Server::default().connection(
        b,
        MessagePackCodec::<Resp, Req>::default(),
        Greeter,
    ));
    let client: Client<Req, Resp> = Client::spawn(
        a,
        MessagePackCodec::<Req, Resp>::default(),
        ClientConfig::default(),
    );
    let r = client
        .call(Envelope::new(("ada".to_owned(), 2)))
        .await
        .expect("call");
    assert_eq!(r.into_body().as_deref(), Some("hello ada x2"));
    match client.call(Envelope::new(("bob".to_owned(), 0))).await {
        Err(CallError::Failed(s)) => {
            assert_eq!(s.code(), StatusCode::Rejected);
            assert_eq!(s.message(), "n must be positive");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn rpc_pool_reconnects_a_dead_connection_and_keys_pick_stable_slots() {
    use missive::rpc::pool::Pool;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (kill_tx, _) = tokio::sync::broadcast::channel::<()>(4);
    let kill = kill_tx.clone();
    tokio::spawn(async move {
        let server = Server::default();
        while let Ok((sock, _)) = listener.accept().await {
            let conn = server.connection(sock, echo::ServerCodec::default(), EchoService);
            let mut killed = kill.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn => {}
                    _ = killed.recv() => {}
                }
            });
        }
    });
    let connects = Arc::new(AtomicUsize::new(0));
    let counter = connects.clone();
    let pool = Pool::new(2, move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let sock = tokio::net::TcpStream::connect(addr).await?;
            Ok(Client::spawn(
                sock,
                echo::ClientCodec::default(),
                ClientConfig::default(),
            ))
        }
    });
    let a = pool.client(&"user-1").await.expect("client");
    let again = pool.client(&"user-1").await.expect("client");
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    drop(again);
    let r = pool
        .call(&"user-1", Request::unary("x"))
        .await
        .expect("call");
    assert_eq!(&r.body[..], b"x");
    // Kill every server connection: the pool's next call reconnects.
    kill_tx.send(()).expect("kill");
    let mut dead = false;
    for _ in 0..1000 {
        if !a.is_alive() {
            dead = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(dead);
    let r = pool
        .call(&"user-1", Request::unary("y"))
        .await
        .expect("call after reconnect");
    assert_eq!(&r.body[..], b"y");
    assert_eq!(connects.load(Ordering::SeqCst), 2);
}

#[test]
fn rpc_large_pipelined_calls_complete_when_the_send_budget_is_exceeded() {
    // Server and client on their own threads over TCP, as in production: the server's
    // responses outgrow its send budget, so it stops reading until it has written them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let server = Server::default();
    let s = server.clone();
    let serving = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            s.serve_tcp(listener, |_| (echo::ServerCodec::default(), EchoService))
                .await
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client: EchoClient =
            Client::connect_tcp(addr, echo::ClientCodec::default(), ClientConfig::default())
                .await
                .expect("connect");
        let calls = (0..8u8).map(|i| {
            let client = client.clone();
            async move {
                let body = Bytes::from(vec![i; 1024 * 1024]);
                for _ in 0..4 {
                    let r = client
                        .call(Request::unary(body.clone()))
                        .await
                        .expect("call");
                    assert_eq!(r.body, body);
                }
            }
        });
        // A bound on the test only: the calls finish in milliseconds unless a driver stalls.
        tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::future::join_all(calls),
        )
        .await
        .expect("no stall");
        server.shutdown().await;
    });
    serving.join().expect("join").expect("serve");
}

#[tokio::test(start_paused = true)]
async fn rpc_stream_past_its_deadline_fails_and_cancels_on_server() {
    let (svc, _started, mut dropped) = test_service();
    let (client, _server) = connect(svc);
    let mut stream = client
        .server_stream_with(
            Request::unary("hang-stream"),
            CallOptions::default().with_deadline(Some(Duration::from_secs(3))),
        )
        .await
        .expect("stream");
    let r = stream.next().await;
    assert!(matches!(r, Some(Err(CallError::DeadlineExceeded))), "{r:?}");
    assert!(stream.next().await.is_none());
    assert!(dropped.recv().await.is_some());
}

#[tokio::test(start_paused = true)]
async fn rpc_client_stream_past_its_own_deadline_fails_and_cancels_on_server() {
    let (svc, _started, mut dropped) = test_service();
    let (client, _server) = connect(svc);
    // "sum" answers only after the client's End, which never comes.
    let (_sink, response) = client
        .client_stream_with(
            Request::unary("sum"),
            CallOptions::default().with_deadline(Some(Duration::from_secs(2))),
        )
        .await
        .expect("open");
    let r = response.await;
    assert!(matches!(r, Err(CallError::DeadlineExceeded)), "{r:?}");
    assert!(dropped.recv().await.is_some());
}

#[tokio::test(start_paused = true)]
async fn rpc_client_stream_without_a_deadline_outlives_the_client_default() {
    let (svc, _started, _dropped) = test_service();
    let config = ClientConfig::default().with_deadline(Some(Duration::from_secs(1)));
    let (client, _server) = connect_with(svc, config);
    let (mut sink, response) = client
        .client_stream_with(
            Request::unary("sum"),
            CallOptions::default().with_deadline(None),
        )
        .await
        .expect("open");
    tokio::time::sleep(Duration::from_secs(5)).await;
    sink.send(Request::unary("ab")).await.expect("send");
    sink.finish();
    let r = response.await.expect("response");
    assert_eq!(&r.body[..], b"5");
}

#[tokio::test]
async fn rpc_client_stream_with_caller_id_uses_that_id_on_the_wire() {
    let (svc, mut started, _dropped) = test_service();
    let (client, _server) = connect(svc);
    let mut first = Request::unary("sum");
    first.request_id = 777;
    let (sink, response) = client
        .client_stream_with(first, CallOptions::default().with_caller_id(true))
        .await
        .expect("open");
    assert_eq!(sink.id(), 777);
    assert_eq!(started.recv().await, Some(777));
    sink.finish();
    assert_eq!(&response.await.expect("response").body[..], b"3");
}

#[tokio::test(start_paused = true)]
async fn rpc_bidi_stream_past_its_own_deadline_fails_and_cancels_on_server() {
    let (svc, _started, mut dropped) = test_service();
    let (client, _server) = connect(svc);
    let (_sink, mut responses) = client
        .bidi_stream_with(
            Request::unary("echo-each"),
            CallOptions::default().with_deadline(Some(Duration::from_secs(2))),
        )
        .await
        .expect("open");
    let r = responses.next().await;
    assert!(matches!(r, Some(Err(CallError::DeadlineExceeded))), "{r:?}");
    assert!(responses.next().await.is_none());
    assert!(dropped.recv().await.is_some());
}

#[tokio::test]
async fn rpc_unary_work_is_dropped_when_it_completes() {
    // The server keeps the allocations of finished unary futures for the next rpcs: the
    // futures themselves (and what they hold) must still go when they complete.
    struct Holding(Arc<()>);
    /// A future that holds its share of the count until it is dropped, finished or not.
    struct Guarded {
        _held: Arc<()>,
        inner: Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>,
    }
    impl Future for Guarded {
        type Output = Result<Response, Status>;
        fn poll(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            self.get_mut().inner.as_mut().poll(cx)
        }
    }
    impl Service for Holding {
        type Request = Request;
        type Response = Response;
        type Unary = Guarded;
        type Stream = BoxStream<'static, Result<Response, Status>>;
        fn call(
            &mut self,
            request: Request,
            _: &mut CallContext<Request>,
        ) -> Reply<Self::Unary, Self::Stream> {
            Reply::Unary(Guarded {
                _held: self.0.clone(),
                inner: Box::pin(async move {
                    // Every other rpc waits a little, so boxes are taken and given back in
                    // another order than the rpcs started.
                    if request.body.first().is_some_and(|b| b % 2 == 1) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Ok(Response {
                        body: request.body,
                        ..Response::default()
                    })
                }),
            })
        }
    }
    let guard = Arc::new(());
    let (client, _server) = connect(Holding(guard.clone()));
    for i in 0..20u8 {
        let response = client.call(Request::unary(vec![i])).await.expect("call");
        assert_eq!(&response.body[..], [i]);
        // This test and the service hold it; the finished rpc does not.
        assert_eq!(Arc::strong_count(&guard), 2, "call {i}: its work was kept");
    }
    let calls = (0..40u8).map(|i| client.call(Request::unary(vec![i])));
    for (i, response) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(&response.expect("call").body[..], [i as u8]);
    }
    assert_eq!(Arc::strong_count(&guard), 2);
}
