//! missive's rpc against protosocket-rpc 2.0.2 with protosocket-prost framing, both directions:
//! unary, server streaming and cancellation.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use missive::rpc::prost::ProstCodec;
use missive::rpc::{
    CallContext, CallError, CallOptions, Client, ClientConfig, ControlCode, Reply, Server, Status,
};
use protosocket_rpc::ProtosocketControlCode;
use tokio::sync::mpsc;

/// The prost convention of protosocket's examples: `Request { 1: request_id, 2: code, 3: body }`.
#[derive(Clone, PartialEq, prost::Message)]
struct Request {
    #[prost(uint64, tag = "1")]
    request_id: u64,
    #[prost(uint32, tag = "2")]
    code: u32,
    #[prost(string, tag = "3")]
    body: String,
    /// 0: unary; n: a stream of n responses; `u32::MAX`: a response that never comes.
    #[prost(uint32, tag = "4")]
    count: u32,
}

/// `Response { 1: request_id, 2: code, oneof { 3: echo, 4: item } }`.
#[derive(Clone, PartialEq, prost::Message)]
struct Response {
    #[prost(uint64, tag = "1")]
    request_id: u64,
    #[prost(uint32, tag = "2")]
    code: u32,
    #[prost(oneof = "Kind", tags = "3, 4")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(string, tag = "3")]
    Echo(String),
    #[prost(uint64, tag = "4")]
    Item(u64),
}

const HANG: u32 = u32::MAX;
/// A stream whose first item never comes.
const HANG_STREAM: u32 = u32::MAX - 1;

fn request(id: u64, body: &str, count: u32) -> Request {
    Request {
        request_id: id,
        code: 0,
        body: body.to_owned(),
        count,
    }
}

macro_rules! both_message_traits {
    ($t:ty, $make:expr) => {
        impl missive::rpc::Message for $t {
            fn message_id(&self) -> u64 {
                self.request_id
            }
            fn control_code(&self) -> ControlCode {
                ControlCode::from_u32(self.code)
            }
            fn set_message_id(&mut self, id: u64) {
                self.request_id = id;
            }
            fn cancelled(id: u64) -> Self {
                $make(id, ControlCode::Cancel as u32)
            }
            fn ended(id: u64) -> Self {
                $make(id, ControlCode::End as u32)
            }
        }
        impl protosocket_rpc::Message for $t {
            fn message_id(&self) -> u64 {
                self.request_id
            }
            fn control_code(&self) -> ProtosocketControlCode {
                ProtosocketControlCode::from_u8(self.code as u8)
            }
            fn set_message_id(&mut self, id: u64) {
                self.request_id = id;
            }
            fn cancelled(id: u64) -> Self {
                $make(id, ProtosocketControlCode::Cancel as u32)
            }
            fn ended(id: u64) -> Self {
                $make(id, ProtosocketControlCode::End as u32)
            }
        }
    };
}

both_message_traits!(Request, |id, code| Request {
    request_id: id,
    code,
    ..Request::default()
});
both_message_traits!(Response, |id, code| Response {
    request_id: id,
    code,
    kind: None,
});

/// Reports the id of an rpc whose work was dropped.
struct DropSignal(u64, mpsc::UnboundedSender<u64>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

fn echo(id: u64, body: String) -> Response {
    Response {
        request_id: id,
        code: 0,
        kind: Some(Kind::Echo(body)),
    }
}

fn item(id: u64, i: u64) -> Response {
    Response {
        request_id: id,
        code: 0,
        kind: Some(Kind::Item(i)),
    }
}

// ---------------------------------------------------------------------------------------------
// protosocket-rpc client → missive server

type BoxFut = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

struct MissiveService {
    started: mpsc::UnboundedSender<u64>,
    dropped: mpsc::UnboundedSender<u64>,
}

impl missive::rpc::Service for MissiveService {
    type Request = Request;
    type Response = Response;
    type Unary = BoxFut;
    type Stream = BoxStream<'static, Result<Response, Status>>;

    fn call(&mut self, r: Request, c: &mut CallContext<Request>) -> Reply<BoxFut, Self::Stream> {
        let id = c.id();
        let _ = self.started.send(id);
        let guard = DropSignal(id, self.dropped.clone());
        match r.count {
            0 => Reply::Unary(Box::pin(async move { Ok(echo(0, r.body)) })),
            HANG => Reply::Unary(Box::pin(async move {
                let _guard = guard;
                std::future::pending().await
            })),
            HANG_STREAM => Reply::Stream(
                futures_util::stream::unfold(guard, |g| async move {
                    std::future::pending::<()>().await;
                    Some((Ok(item(0, 0)), g))
                })
                .boxed(),
            ),
            n => Reply::Stream(
                futures_util::stream::iter((0..u64::from(n)).map(|i| Ok(item(0, i)))).boxed(),
            ),
        }
    }
}

async fn missive_server() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<u64>,
    mpsc::UnboundedReceiver<u64>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (started, started_rx) = mpsc::unbounded_channel();
    let (dropped, dropped_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let server = Server::default();
        while let Ok((sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            let service = MissiveService {
                started: started.clone(),
                dropped: dropped.clone(),
            };
            tokio::spawn(server.connection(
                sock,
                ProstCodec::<Response, Request>::default(),
                service,
            ));
        }
    });
    (addr, started_rx, dropped_rx)
}

type TheirCodec = (
    protosocket::PooledEncoder<protosocket_prost::ProstSerializer<Request>>,
    protosocket_prost::ProstDecoder<Response>,
);

async fn their_client(addr: SocketAddr) -> protosocket_rpc::client::RpcClient<Request, Response> {
    let configuration =
        protosocket_rpc::client::Configuration::new(protosocket_rpc::client::TcpStreamConnector);
    let (client, connection) =
        protosocket_rpc::client::connect::<TheirCodec, _>(addr, &configuration)
            .await
            .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn protosocket_client_unary_calls_to_missive_server() {
    let (addr, _started, _dropped) = missive_server().await;
    let client = their_client(addr).await;
    for id in 1..=20u64 {
        let r = client
            .send_unary(request(id, &format!("hello {id}"), 0))
            .expect("send")
            .await
            .expect("response");
        assert_eq!(r.request_id, id);
        assert_eq!(r.kind, Some(Kind::Echo(format!("hello {id}"))));
    }
}

#[tokio::test]
async fn protosocket_client_server_stream_from_missive_server() {
    let (addr, _started, _dropped) = missive_server().await;
    let client = their_client(addr).await;
    let stream = client.send_streaming(request(7, "", 25)).expect("send");
    let mut items: Vec<_> = stream.collect().await;
    // protosocket-rpc reports our End as a final `Err(Finished)`.
    assert!(matches!(
        items.pop(),
        Some(Err(protosocket_rpc::Error::Finished))
    ));
    assert_eq!(items.len(), 25);
    for (i, r) in items.into_iter().enumerate() {
        let r = r.expect("item");
        assert_eq!(r.request_id, 7);
        assert_eq!(r.kind, Some(Kind::Item(i as u64)));
    }
}

#[tokio::test]
async fn protosocket_client_cancel_reaches_missive_server() {
    let (addr, mut started, mut dropped) = missive_server().await;
    let client = their_client(addr).await;
    let completion = client.send_unary(request(11, "", HANG)).expect("send");
    assert_eq!(started.recv().await, Some(11));
    drop(completion);
    assert_eq!(dropped.recv().await, Some(11));
    // The connection keeps working.
    let r = client
        .send_unary(request(12, "after", 0))
        .expect("send")
        .await
        .expect("response");
    assert_eq!(r.kind, Some(Kind::Echo("after".into())));
}

// ---------------------------------------------------------------------------------------------
// missive client → protosocket-rpc server

struct TheirSocketService {
    started: mpsc::UnboundedSender<u64>,
    dropped: mpsc::UnboundedSender<u64>,
}

struct TheirConnectionService {
    started: mpsc::UnboundedSender<u64>,
    dropped: mpsc::UnboundedSender<u64>,
}

impl protosocket_rpc::server::SocketService for TheirSocketService {
    type ConnectionService = TheirConnectionService;
    type SocketListener = protosocket::TcpSocketListener;

    fn codec(
        &mut self,
    ) -> <TheirConnectionService as protosocket_rpc::server::ConnectionService>::Codec {
        (
            protosocket::PooledEncoder::new_with_pool_size(16, Default::default()),
            protosocket_prost::ProstDecoder::default(),
        )
    }

    fn new_stream_service(
        &mut self,
        _stream: &<Self::SocketListener as protosocket::SocketListener>::Stream,
    ) -> TheirConnectionService {
        TheirConnectionService {
            started: self.started.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl protosocket_rpc::server::ConnectionService for TheirConnectionService {
    type Codec = (
        protosocket::PooledEncoder<protosocket_prost::ProstSerializer<Response>>,
        protosocket_prost::ProstDecoder<Request>,
    );
    type Request = Request;
    type Response = Response;
    type UnaryFutureType = Pin<Box<dyn Future<Output = Response> + Send>>;
    type StreamType = BoxStream<'static, Response>;

    fn new_rpc(
        &mut self,
        r: Request,
    ) -> protosocket_rpc::server::RpcKind<Self::UnaryFutureType, Self::StreamType> {
        let id = r.request_id;
        let _ = self.started.send(id);
        let guard = DropSignal(id, self.dropped.clone());
        match r.count {
            0 => protosocket_rpc::server::RpcKind::Unary(Box::pin(async move { echo(id, r.body) })),
            HANG => protosocket_rpc::server::RpcKind::Unary(Box::pin(async move {
                let _guard = guard;
                std::future::pending().await
            })),
            HANG_STREAM => protosocket_rpc::server::RpcKind::Streaming(
                futures_util::stream::unfold(guard, move |g| async move {
                    std::future::pending::<()>().await;
                    Some((item(id, 0), g))
                })
                .boxed(),
            ),
            n => protosocket_rpc::server::RpcKind::Streaming(
                futures_util::stream::iter((0..u64::from(n)).map(move |i| item(id, i))).boxed(),
            ),
        }
    }
}

async fn their_server() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<u64>,
    mpsc::UnboundedReceiver<u64>,
) {
    // Bind a free port first, then let protosocket's listener take it.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let listener = protosocket::TcpSocketListener::listen(addr, 64, None).expect("listen");
    let (started, started_rx) = mpsc::unbounded_channel();
    let (dropped, dropped_rx) = mpsc::unbounded_channel();
    let server = protosocket_rpc::server::SocketRpcServer::new(
        listener,
        TheirSocketService { started, dropped },
        4 << 20,
        64 << 10,
        256,
    )
    .expect("server");
    tokio::spawn(server);
    (addr, started_rx, dropped_rx)
}

async fn missive_client(addr: SocketAddr) -> Client<Request, Response> {
    let sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    Client::spawn(
        sock,
        ProstCodec::<Request, Response>::default(),
        ClientConfig::default(),
    )
}

#[tokio::test]
async fn missive_client_unary_calls_to_protosocket_server() {
    let (addr, _started, _dropped) = their_server().await;
    let client = missive_client(addr).await;
    let calls = (0..50u32).map(|i| {
        let client = client.clone();
        async move {
            let r = client
                .call(request(0, &format!("m{i}"), 0))
                .await
                .expect("call");
            assert_eq!(r.kind, Some(Kind::Echo(format!("m{i}"))));
        }
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn missive_client_server_stream_from_protosocket_server() {
    let (addr, _started, _dropped) = their_server().await;
    let client = missive_client(addr).await;
    let stream = client
        .server_stream(request(0, "", 30))
        .await
        .expect("stream");
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 30);
    for (i, r) in items.into_iter().enumerate() {
        assert_eq!(r.expect("item").kind, Some(Kind::Item(i as u64)));
    }
}

#[tokio::test]
async fn missive_client_cancel_reaches_protosocket_server() {
    let (addr, mut started, mut dropped) = their_server().await;
    let client = missive_client(addr).await;
    let call = client.call_with(
        request(0, "", HANG),
        CallOptions::default().with_deadline(None),
    );
    let id = tokio::select! {
        r = call => panic!("must hang: {r:?}"),
        id = started.recv() => id.expect("started"),
    };
    // The call future is dropped: Cancel goes out and the server drops the work.
    assert_eq!(dropped.recv().await, Some(id));
    let r = client.call(request(0, "after", 0)).await.expect("call");
    assert_eq!(r.kind, Some(Kind::Echo("after".into())));
}

#[tokio::test]
async fn missive_client_deadline_cancels_on_protosocket_server() {
    let (addr, _started, mut dropped) = their_server().await;
    let client = missive_client(addr).await;
    let r = client
        .call_with(
            request(0, "", HANG),
            CallOptions::default().with_deadline(Some(Duration::from_millis(50))),
        )
        .await;
    assert!(matches!(r, Err(CallError::DeadlineExceeded)), "{r:?}");
    assert!(dropped.recv().await.is_some());
}

#[tokio::test]
async fn missive_client_caller_chosen_ids_reach_protosocket_server_as_is() {
    let (addr, mut started, _dropped) = their_server().await;
    let client = missive_client(addr).await;
    let r = client
        .call_with(
            request(4242, "mine", 0),
            CallOptions::default().with_caller_id(true),
        )
        .await
        .expect("call");
    assert_eq!(r.request_id, 4242);
    assert_eq!(started.recv().await, Some(4242));
}

#[tokio::test]
async fn protosocket_client_stream_cancel_reaches_missive_server() {
    let (addr, mut started, mut dropped) = missive_server().await;
    let client = their_client(addr).await;
    let stream = client
        .send_streaming(request(21, "", HANG_STREAM))
        .expect("send");
    assert_eq!(started.recv().await, Some(21));
    drop(stream);
    assert_eq!(dropped.recv().await, Some(21));
}

#[tokio::test]
async fn missive_client_stream_cancel_reaches_protosocket_server() {
    let (addr, mut started, mut dropped) = their_server().await;
    let client = missive_client(addr).await;
    let stream = client
        .server_stream(request(0, "", HANG_STREAM))
        .await
        .expect("stream");
    let id = started.recv().await.expect("started");
    drop(stream);
    assert_eq!(dropped.recv().await, Some(id));
}
