//! The `tonic` entry of the rpc scenarios: tonic 0.14 unary gRPC over HTTP/2 (hyper, h2) with
//! prost messages, one `Channel` (one HTTP/2 connection) per client, default configurations.
//!
//! The service and client are what tonic's code generator would write, written out by hand so
//! that building needs no `protoc`: the client is `tonic::client::Grpc` over a `Channel` with
//! `tonic_prost::ProstCodec`, the server a tower `Service` routing the method's path to
//! `tonic::server::Grpc::unary`, served by `tonic::transport::Server`. Calls in flight share the
//! connection as concurrent HTTP/2 streams (tonic's server sets no stream limit by default, and a
//! `Channel` queues up to 1024 calls before its connection).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::body::Body as HttpBody;
use tonic::server::UnaryService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Status, client::Grpc};
use tonic_prost::ProstCodec;

use super::rpc::{Body, Shape, drive, in_task, server_limit};
use super::{SETUP_TIMEOUT, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// The one method of the service.
const ECHO_PATH: &str = "/missive.bench.Echo/Echo";

/// Request and response alike: the body to echo.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoMessage {
    #[prost(bytes = "bytes", tag = "1")]
    body: Bytes,
}

/// The method: answers with the request's body.
#[derive(Debug, Clone, Copy)]
struct EchoMethod;

impl UnaryService<EchoMessage> for EchoMethod {
    type Response = EchoMessage;
    type Future = Ready<Result<tonic::Response<EchoMessage>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoMessage>) -> Self::Future {
        ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

/// The service: routes the method's path to [`EchoMethod`], refuses every other path.
#[derive(Debug, Clone, Copy)]
struct EchoService;

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<HttpBody>, Infallible>> + Send>>;

impl tower_service::Service<http::Request<HttpBody>> for EchoService {
    type Response = http::Response<HttpBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<HttpBody>) -> ResponseFuture {
        if request.uri().path() == ECHO_PATH {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(EchoMethod, request).await)
            })
        } else {
            Box::pin(ready(Ok(
                Status::unimplemented("no such method").into_http()
            )))
        }
    }
}

pub(super) fn round(params: &RoundParams, shape: Shape) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    // Told by the client when it has closed its connections (or given up).
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), calls) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                let server = Server::builder().serve_with_incoming_shutdown(
                    EchoService,
                    incoming,
                    async move {
                        // A dropped sender means the same as a sent signal.
                        let _ = done_rx.await;
                    },
                );
                tokio::time::timeout(server_limit(duration), server)
                    .await
                    .context("the connections did not end in time")??;
                anyhow::Ok(())
            })
        },
        |addr| {
            let calls = tokio_runtime()?.block_on(async move {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
                let mut clients = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let channel = tokio::time::timeout(SETUP_TIMEOUT, endpoint.connect())
                        .await
                        .context("connecting timed out")??;
                    clients.push(Grpc::new(channel));
                }
                let body = Body::new(shape);
                let calls = in_task(async move {
                    let calls = drive(shape, limit, |conn, seq| {
                        let mut client: Grpc<Channel> = clients[conn].clone();
                        let body = &body;
                        async move {
                            client.ready().await?;
                            let response: tonic::Response<EchoMessage> = client
                                .unary(
                                    tonic::Request::new(EchoMessage {
                                        body: body.make(seq),
                                    }),
                                    PathAndQuery::from_static(ECHO_PATH),
                                    ProstCodec::default(),
                                )
                                .await?;
                            body.check(seq, &response.get_ref().body)?;
                            Ok(conn)
                        }
                    })
                    .await?;
                    drop(clients);
                    anyhow::Ok(calls)
                })
                .await?;
                anyhow::Ok(calls)
            });
            // Whatever happened, the server may stop now.
            let _ = done_tx.send(());
            calls
        },
    )?;
    shape.sample(calls)
}
