//! missive's MessagePack codec against protosocket-rpc 2.0.2 with protosocket-messagepack framing
//! (0xCE ‖ u32 length ‖ rmp-serde), both directions: unary and server streaming.

use std::net::SocketAddr;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use missive::rpc::msgpack::MessagePackCodec;
use missive::rpc::{CallContext, Client, ClientConfig, ControlCode, Reply, Server, Status};
use protosocket_rpc::ProtosocketControlCode;
use serde::{Deserialize, Serialize};

/// One message type for both directions, ids and codes in the user's own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Msg {
    request_id: u64,
    code: u32,
    body: String,
    /// Requests: 0 for a unary answer, n for a stream of n answers.
    count: u32,
}

fn msg(id: u64, code: u32) -> Msg {
    Msg {
        request_id: id,
        code,
        ..Msg::default()
    }
}

impl missive::rpc::Message for Msg {
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
        msg(id, ControlCode::Cancel as u32)
    }
    fn ended(id: u64) -> Self {
        msg(id, ControlCode::End as u32)
    }
}

impl protosocket_rpc::Message for Msg {
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
        msg(id, ProtosocketControlCode::Cancel as u32)
    }
    fn ended(id: u64) -> Self {
        msg(id, ProtosocketControlCode::End as u32)
    }
}

fn answers(id: u64, request: &Msg) -> Vec<Msg> {
    (0..request.count.max(1))
        .map(|i| Msg {
            request_id: id,
            code: 0,
            body: format!("{}#{i}", request.body),
            count: 0,
        })
        .collect()
}

// missive server, protosocket-rpc client

struct Echo;
impl missive::rpc::Service for Echo {
    type Request = Msg;
    type Response = Msg;
    type Unary = std::future::Ready<Result<Msg, Status>>;
    type Stream = BoxStream<'static, Result<Msg, Status>>;
    fn call(&mut self, r: Msg, c: &mut CallContext<Msg>) -> Reply<Self::Unary, Self::Stream> {
        let mut all = answers(c.id(), &r);
        if r.count == 0 {
            Reply::Unary(std::future::ready(Ok(all.remove(0))))
        } else {
            Reply::Stream(futures_util::stream::iter(all.into_iter().map(Ok)).boxed())
        }
    }
}

async fn missive_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = Server::default()
            .serve_tcp(listener, |_| {
                (MessagePackCodec::<Msg, Msg>::default(), Echo)
            })
            .await;
    });
    addr
}

type TheirCodec = (
    protosocket::PooledEncoder<protosocket_messagepack::MessagePackSerializer<Msg>>,
    protosocket_messagepack::MessagePackDecoder<Msg>,
);

#[tokio::test]
async fn protosocket_messagepack_client_calls_missive_server() {
    let addr = missive_server().await;
    let configuration =
        protosocket_rpc::client::Configuration::new(protosocket_rpc::client::TcpStreamConnector);
    let (client, connection) =
        protosocket_rpc::client::connect::<TheirCodec, _>(addr, &configuration)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let mut request = msg(1, 0);
    request.body = "hi".into();
    let r = client
        .send_unary(request.clone())
        .expect("send")
        .await
        .expect("unary");
    assert_eq!((r.request_id, r.body.as_str()), (1, "hi#0"));
    request.request_id = 2;
    request.count = 3;
    let items: Vec<_> = client
        .send_streaming(request)
        .expect("send")
        .take(3)
        .collect()
        .await;
    let bodies: Vec<String> = items.into_iter().map(|r| r.expect("item").body).collect();
    assert_eq!(bodies, ["hi#0", "hi#1", "hi#2"]);
}

// protosocket-rpc server, missive client

struct TheirSocketService;
struct TheirConnectionService;

impl protosocket_rpc::server::SocketService for TheirSocketService {
    type ConnectionService = TheirConnectionService;
    type SocketListener = protosocket::TcpSocketListener;
    fn codec(
        &mut self,
    ) -> <TheirConnectionService as protosocket_rpc::server::ConnectionService>::Codec {
        (
            protosocket::PooledEncoder::new_with_pool_size(16, Default::default()),
            protosocket_messagepack::MessagePackDecoder::default(),
        )
    }
    fn new_stream_service(
        &mut self,
        _: &<Self::SocketListener as protosocket::SocketListener>::Stream,
    ) -> TheirConnectionService {
        TheirConnectionService
    }
}

impl protosocket_rpc::server::ConnectionService for TheirConnectionService {
    type Codec = (
        protosocket::PooledEncoder<protosocket_messagepack::MessagePackSerializer<Msg>>,
        protosocket_messagepack::MessagePackDecoder<Msg>,
    );
    type Request = Msg;
    type Response = Msg;
    type UnaryFutureType = std::future::Ready<Msg>;
    type StreamType = BoxStream<'static, Msg>;
    fn new_rpc(
        &mut self,
        r: Msg,
    ) -> protosocket_rpc::server::RpcKind<Self::UnaryFutureType, Self::StreamType> {
        let mut all = answers(r.request_id, &r);
        if r.count == 0 {
            protosocket_rpc::server::RpcKind::Unary(std::future::ready(all.remove(0)))
        } else {
            protosocket_rpc::server::RpcKind::Streaming(futures_util::stream::iter(all).boxed())
        }
    }
}

#[tokio::test]
async fn missive_messagepack_client_calls_protosocket_server() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let listener = protosocket::TcpSocketListener::listen(addr, 64, None).expect("listen");
    let server = protosocket_rpc::server::SocketRpcServer::new(
        listener,
        TheirSocketService,
        4 << 20,
        64 << 10,
        256,
    )
    .expect("server");
    tokio::spawn(server);
    let client: Client<Msg, Msg> =
        Client::connect_tcp(addr, MessagePackCodec::default(), ClientConfig::default())
            .await
            .expect("connect");
    let mut request = msg(0, 0);
    request.body = "yo".into();
    let r = client.call(request.clone()).await.expect("unary");
    assert_eq!(r.body, "yo#0");
    request.count = 4;
    let items: Vec<_> = client
        .server_stream(request)
        .await
        .expect("stream")
        .collect()
        .await;
    let bodies: Vec<String> = items.into_iter().map(|r| r.expect("item").body).collect();
    assert_eq!(bodies, ["yo#0", "yo#1", "yo#2", "yo#3"]);
}
