//! The RPC section of `missive demo`: pipelined unary calls, a server stream, and a cancellation
//! that the server is seen to honour.

use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use missive::rpc::echo::{ClientCodec, Request, Response, ServerCodec};
use missive::rpc::{
    CallContext, Client, ClientConfig, Reply, Server, ServerConfig, Service, Status,
};

use crate::demo::Outcome;

/// Calls in flight at once.
const IN_FLIGHT: usize = 64;
/// Answers of the streaming call that must arrive whole.
const STREAMED: u32 = 1000;

pub(crate) async fn unary_stream_and_cancel(calls: u32) -> anyhow::Result<Outcome> {
    let listener = missive::transport::tcp::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cancelled = Arc::new(AtomicU64::new(0));
    let server = Server::new(ServerConfig::default());
    let serving = {
        let server = server.clone();
        let cancelled = cancelled.clone();
        tokio::spawn(async move {
            server
                .serve_tcp(listener, move |_| {
                    let service = WatchedEcho {
                        cancelled: cancelled.clone(),
                    };
                    (ServerCodec::default(), service)
                })
                .await
        })
    };
    let client: Client<Request, Response> =
        Client::connect_tcp(addr, ClientCodec::default(), ClientConfig::default()).await?;

    let (answered_right, elapsed) = pipelined_unary_calls(&client, calls).await;

    // A server stream: every answer, then End.
    let mut stream = client.server_stream(Request::stream("s", STREAMED)).await?;
    let mut streamed = 0u32;
    while let Some(answer) = stream.next().await {
        answer?;
        streamed += 1;
    }

    // Cancellation: drop an endless stream after a few answers; the server drops its work.
    let mut endless = client.server_stream(Request::stream("c", u32::MAX)).await?;
    for _ in 0..10 {
        endless.next().await.transpose()?;
    }
    drop(endless);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cancelled.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cancel_seen = cancelled.load(Ordering::Relaxed) == 1;
    let still_serving = client.call(Request::unary("after")).await.is_ok();

    server.shutdown().await;
    serving.await??;

    let all_answered = answered_right == calls as usize;
    Ok(Outcome {
        layer: "rpc",
        transport: "tcp",
        exchanged: u64::from(calls),
        unit: "calls",
        elapsed,
        passed: all_answered && streamed == STREAMED && cancel_seen && still_serving,
        check: format!(
            "{answered_right}/{calls} unary answers right, stream {streamed}/{STREAMED} then End, \
             cancel {} by the server",
            if cancel_seen { "honoured" } else { "NOT SEEN" }
        ),
    })
}

/// Makes `calls` unary calls, [`IN_FLIGHT`] at a time; counts the answers that carry their own
/// request's body, and times the whole.
async fn pipelined_unary_calls(
    client: &Client<Request, Response>,
    calls: u32,
) -> (usize, Duration) {
    let started = Instant::now();
    let answered_right = futures_util::stream::iter(0..calls)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = i.to_be_bytes().to_vec();
                let response = client.call(Request::unary(body.clone())).await;
                response.is_ok_and(|r| r.body.as_ref() == body.as_slice())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|ok| ready(*ok))
        .count()
        .await;
    (answered_right, started.elapsed())
}

/// The echo service, with streams that count how often the server dropped one unfinished.
#[derive(Debug, Clone)]
struct WatchedEcho {
    cancelled: Arc<AtomicU64>,
}

impl Service for WatchedEcho {
    type Request = Request;
    type Response = Response;
    type Unary = Ready<Result<Response, Status>>;
    type Stream = Answers;

    fn call(
        &mut self,
        request: Request,
        _context: &mut CallContext<Request>,
    ) -> Reply<Self::Unary, Self::Stream> {
        let response = Response {
            body: request.body,
            ..Response::default()
        };
        match request.stream_count {
            0 => Reply::Unary(ready(Ok(response))),
            n => Reply::Stream(Answers {
                remaining: n,
                response,
                cancelled: self.cancelled.clone(),
            }),
        }
    }
}

/// `remaining` copies of one response; counts itself as cancelled when dropped early.
#[derive(Debug)]
struct Answers {
    remaining: u32,
    response: Response,
    cancelled: Arc<AtomicU64>,
}

impl Stream for Answers {
    type Item = Result<Response, Status>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.remaining -= 1;
        Poll::Ready(Some(Ok(self.response.clone())))
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        if self.remaining > 0 {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The protocol name the demo's rpc runs under on a node stream.
const RPC_PROTOCOL: missive::stream::StreamProtocol =
    missive::stream::StreamProtocol::new("/missive/rpc-echo/1.0.0");

/// The same rpc client and server over one node stream (Noise, yamux) opened by protocol name.
pub(crate) async fn over_a_node_stream(calls: u32) -> anyhow::Result<Outcome> {
    use missive::p2p::{Keypair, Node, NodeConfig};

    let server_node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let addr = server_node.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
    let mut incoming = server_node.stream_control().accept(RPC_PROTOCOL)?;
    let server = Server::new(ServerConfig::default());
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            // Each inbound stream of the protocol is one rpc connection.
            while let Some((_peer, stream)) = incoming.next().await {
                let service = WatchedEcho {
                    cancelled: Arc::default(),
                };
                tokio::spawn(server.connection(stream, ServerCodec::default(), service));
            }
        })
    };

    let client_node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let peer = client_node.dial(addr).await?;
    let stream = client_node
        .stream_control()
        .open_stream(peer, RPC_PROTOCOL)
        .await?;
    let client: Client<Request, Response> =
        Client::spawn(stream, ClientCodec::default(), ClientConfig::default());

    let (answered_right, elapsed) = pipelined_unary_calls(&client, calls).await;

    server.shutdown().await;
    client_node.shutdown().await;
    server_node.shutdown().await;
    serving.abort();

    Ok(Outcome {
        layer: "rpc",
        transport: "node stream",
        exchanged: u64::from(calls),
        unit: "calls",
        elapsed,
        passed: answered_right == calls as usize,
        check: format!("{answered_right}/{calls} unary answers right, on {RPC_PROTOCOL}"),
    })
}
