//! The `tarpc` entry of the rpc scenarios: tarpc 0.38 over its serde transport (a 4-byte length
//! prefix, then bincode) on one TCP connection per client. The service is a plain
//! `tarpc::server::serve` function rather than the `#[tarpc::service]` macro: the macro adds an
//! enum around the request, which an echo does not need. The server spawns every response as
//! tarpc's examples do; the client's in-flight bound is raised to the shape's when it is above
//! tarpc's default of 1000, so that the shape holds.

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tarpc::server::{BaseChannel, Channel as _, serve};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};

use super::rpc::{Body, Shape, drive, in_task, server_limit};
use super::{SETUP_TIMEOUT, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// The request: the body to echo.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EchoRequest {
    body: Bytes,
}

/// The response: the body echoed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EchoResponse {
    body: Bytes,
}

impl tarpc::RequestName for EchoRequest {
    fn name(&self) -> &str {
        "echo"
    }
}

pub(super) fn round(params: &RoundParams, shape: Shape) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let ((), calls) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                let mut connections = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let (tcp, _) = tokio::time::timeout(SETUP_TIMEOUT, listener.accept())
                        .await
                        .context("no client came")??;
                    tcp.set_nodelay(true)?;
                    let transport = serde_transport::Transport::from((tcp, Bincode::default()));
                    let requests = BaseChannel::with_defaults(transport)
                        .execute(serve(|_, request: EchoRequest| async move {
                            Ok(EchoResponse { body: request.body })
                        }))
                        .for_each(|response| async move {
                            tokio::spawn(response);
                        });
                    connections.push(tokio::spawn(requests));
                }
                // Each stream of requests ends when its client closes the connection.
                tokio::time::timeout(server_limit(duration), async {
                    for connection in connections {
                        connection.await?;
                    }
                    anyhow::Ok(())
                })
                .await
                .context("the connections did not end in time")?
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let mut config = client::Config::default();
                config.max_in_flight_requests = config.max_in_flight_requests.max(shape.in_flight);
                let mut clients = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let tcp = tokio::time::timeout(SETUP_TIMEOUT, TcpStream::connect(addr))
                        .await
                        .context("connecting timed out")??;
                    tcp.set_nodelay(true)?;
                    let transport = serde_transport::Transport::from((tcp, Bincode::default()));
                    clients.push(client::new(config.clone(), transport).spawn());
                }
                let body = Body::new(shape);
                let calls = in_task(async move {
                    let calls = drive(shape, limit, |conn, seq| {
                        let client = &clients[conn];
                        let body = &body;
                        async move {
                            let response: EchoResponse = client
                                .call(
                                    context::current(),
                                    EchoRequest {
                                        body: body.make(seq),
                                    },
                                )
                                .await?;
                            body.check(seq, &response.body)?;
                            Ok(conn)
                        }
                    })
                    .await?;
                    // The dispatch tasks see every channel gone, finish and close the sockets.
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
