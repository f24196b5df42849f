//! The `protosocket-rpc` entry of the rpc scenarios: protosocket-rpc 2.0.2 with
//! protosocket-prost framing, carrying messages with the same fields (and so the same bytes) as
//! missive's echo protocol. protosocket-rpc wants ids chosen by the caller: call `seq` uses id
//! `seq + 1`.

use std::future::{Ready, ready};
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use protosocket::{PooledEncoder, TcpSocketListener};
use protosocket_prost::{ProstDecoder, ProstSerializer};
use protosocket_rpc::ProtosocketControlCode;
use protosocket_rpc::client::{Configuration, TcpStreamConnector};
use protosocket_rpc::server::{ConnectionService, RpcKind, SocketRpcServer, SocketService};
use tokio::sync::mpsc;

use super::rpc::{Body, Shape, drive, in_task, server_limit};
use super::{SETUP_TIMEOUT, free_port, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// Attempts at binding protosocket's listener to a port found free a moment before.
const BIND_ATTEMPTS: usize = 5;
/// protosocket's default bound on a connection's buffer; it asks for at least four messages.
const MIN_BUFFER: usize = 4 << 20;
/// protosocket's client default for growing a buffer.
const BUFFER_INCREMENT: usize = 1 << 20;
/// protosocket's client default for messages serialized per send.
const QUEUED_OUTBOUND: usize = 256;

/// The request: missive's `echo::Request` field for field.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(uint64, tag = "1")]
    request_id: u64,
    #[prost(uint32, tag = "2")]
    code: u32,
    #[prost(bytes = "bytes", tag = "3")]
    body: Bytes,
    #[prost(uint32, tag = "4")]
    stream_count: u32,
}

/// The response: missive's `echo::Response` field for field.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoResponse {
    #[prost(uint64, tag = "1")]
    request_id: u64,
    #[prost(uint32, tag = "2")]
    code: u32,
    #[prost(bytes = "bytes", tag = "3")]
    body: Bytes,
    #[prost(uint32, tag = "4")]
    status_code: u32,
    #[prost(string, tag = "5")]
    status_message: String,
}

macro_rules! protosocket_message {
    ($t:ty) => {
        impl protosocket_rpc::Message for $t {
            fn message_id(&self) -> u64 {
                self.request_id
            }
            fn control_code(&self) -> ProtosocketControlCode {
                ProtosocketControlCode::from_u8(u8::try_from(self.code).unwrap_or(u8::MAX))
            }
            fn set_message_id(&mut self, message_id: u64) {
                self.request_id = message_id;
            }
            fn cancelled(message_id: u64) -> Self {
                Self {
                    request_id: message_id,
                    code: ProtosocketControlCode::Cancel as u32,
                    ..Self::default()
                }
            }
            fn ended(message_id: u64) -> Self {
                Self {
                    request_id: message_id,
                    code: ProtosocketControlCode::End as u32,
                    ..Self::default()
                }
            }
        }
    };
}

protosocket_message!(EchoRequest);
protosocket_message!(EchoResponse);

type ClientCodec = (
    PooledEncoder<ProstSerializer<EchoRequest>>,
    ProstDecoder<EchoResponse>,
);
type ServerCodec = (
    PooledEncoder<ProstSerializer<EchoResponse>>,
    ProstDecoder<EchoRequest>,
);

/// The listener's service: one [`EchoConnection`] per connection.
struct Echo {
    /// Told once per connection that ended.
    ended: mpsc::UnboundedSender<()>,
}

/// Answers every request with its body; reports its end when protosocket drops it.
struct EchoConnection {
    ended: mpsc::UnboundedSender<()>,
}

impl Drop for EchoConnection {
    fn drop(&mut self) {
        // The server side may have given up waiting already.
        let _ = self.ended.send(());
    }
}

impl SocketService for Echo {
    type ConnectionService = EchoConnection;
    type SocketListener = TcpSocketListener;

    fn codec(&mut self) -> ServerCodec {
        ServerCodec::default()
    }

    fn new_stream_service(
        &mut self,
        _stream: &<TcpSocketListener as protosocket::SocketListener>::Stream,
    ) -> EchoConnection {
        EchoConnection {
            ended: self.ended.clone(),
        }
    }
}

impl ConnectionService for EchoConnection {
    type Codec = ServerCodec;
    type Request = EchoRequest;
    type Response = EchoResponse;
    type UnaryFutureType = Ready<EchoResponse>;
    type StreamType = futures_util::stream::Empty<EchoResponse>;

    fn new_rpc(
        &mut self,
        request: EchoRequest,
    ) -> RpcKind<Self::UnaryFutureType, Self::StreamType> {
        RpcKind::Unary(ready(EchoResponse {
            request_id: request.request_id,
            body: request.body,
            ..EchoResponse::default()
        }))
    }
}

/// The buffer bound of both sides: protosocket's default, or four messages if more.
fn buffer_limit(shape: Shape) -> usize {
    MIN_BUFFER.max(4 * (shape.message_len() + 10))
}

/// protosocket's listener does not report its address: bind to a port that was free a moment
/// ago.
fn listen() -> anyhow::Result<(TcpSocketListener, SocketAddr)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let addr = free_port()?;
        match TcpSocketListener::listen(addr, 1024, None) {
            Ok(listener) => return Ok((listener, addr)),
            Err(e) if attempt >= BIND_ATTEMPTS => {
                return Err(anyhow::Error::new(e).context("binding protosocket's listener"));
            }
            Err(_) => {}
        }
    }
}

pub(super) fn round(params: &RoundParams, shape: Shape) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let ((), calls) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let (ended, mut ended_rx) = mpsc::unbounded_channel();
                let (listener, addr) = listen()?;
                let server = SocketRpcServer::new(
                    listener,
                    Echo { ended },
                    buffer_limit(shape),
                    BUFFER_INCREMENT,
                    QUEUED_OUTBOUND,
                )?;
                let server = tokio::spawn(server);
                addr_tx.send(addr)?;
                let ended = tokio::time::timeout(server_limit(duration), async {
                    for _ in 0..shape.conns {
                        ended_rx.recv().await.context("the server stopped")?;
                    }
                    anyhow::Ok(())
                })
                .await;
                server.abort();
                ended.context("the connections did not end in time")?
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let mut config = Configuration::new(TcpStreamConnector);
                config.max_buffer_length(buffer_limit(shape));
                let mut clients = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let (client, connection) = tokio::time::timeout(
                        SETUP_TIMEOUT,
                        protosocket_rpc::client::connect::<ClientCodec, _>(addr, &config),
                    )
                    .await
                    .context("connecting timed out")??;
                    tokio::spawn(connection);
                    clients.push(client);
                }
                let body = Body::new(shape);
                let calls = in_task(async move {
                    let calls = drive(shape, limit, |conn, seq| {
                        let client = &clients[conn];
                        let body = &body;
                        async move {
                            let id = seq + 1;
                            let response = client
                                .send_unary(EchoRequest {
                                    request_id: id,
                                    body: body.make(seq),
                                    ..EchoRequest::default()
                                })?
                                .await?;
                            if response.request_id != id {
                                bail!("call {id} was answered as {}", response.request_id);
                            }
                            body.check(seq, &response.body)?;
                            Ok(conn)
                        }
                    })
                    .await?;
                    drop(clients);
                    anyhow::Ok(calls)
                })
                .await?;
                anyhow::Ok(calls)
            })
        },
    )?;
    shape.sample(calls)
}
