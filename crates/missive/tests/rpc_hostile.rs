//! Hostile and broken peers: each test plays the peer by hand over an in-memory pipe.
#![cfg(all(feature = "rpc", feature = "prost"))]

#[path = "support/deadline.rs"]
mod deadline;
use deadline::within;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use missive::rpc::codec::write_varint;
use missive::rpc::echo::{self, EchoService, Request, Response};
use missive::rpc::server::ServeError;
use missive::rpc::{
    CallContext, CallError, Client, ClientConfig, ControlCode, DecodeError, Decoder, Encoder,
    Message, Reply, Server, ServerConfig, Service, Status,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Reads responses as a protosocket client would.
struct RawPeer {
    io: DuplexStream,
    codec: echo::ClientCodec,
    buf: BytesMut,
}

impl RawPeer {
    async fn send(&mut self, request: Request) {
        let mut frame = self.codec.encode(request).expect("encode");
        self.io.write_all_buf(&mut frame).await.expect("write");
    }

    async fn recv(&mut self) -> Option<Response> {
        loop {
            if let Some(r) = self.codec.decode(&mut self.buf).expect("decode") {
                return Some(r);
            }
            if self.io.read_buf(&mut self.buf).await.expect("read") == 0 {
                return None;
            }
        }
    }
}

fn serve<S>(
    service: S,
    config: ServerConfig,
    pipe: usize,
) -> (RawPeer, tokio::task::JoinHandle<Result<(), ServeError>>)
where
    S: Service<Request = Request, Response = Response> + Send + 'static,
    S::Unary: Send,
    S::Stream: Send,
{
    let (a, b) = tokio::io::duplex(pipe);
    let conn = Server::new(config).connection(b, echo::ServerCodec::default(), service);
    let task = tokio::spawn(conn);
    (
        RawPeer {
            io: a,
            codec: echo::ClientCodec::default(),
            buf: BytesMut::new(),
        },
        task,
    )
}

fn request(id: u64, code: u32, body: &'static str) -> Request {
    Request {
        request_id: id,
        code,
        body: Bytes::from_static(body.as_bytes()),
        stream_count: 0,
    }
}

#[tokio::test]
async fn rpc_length_prefix_over_the_limit_disconnects_before_allocating() {
    within(async {
    let (mut peer, task) = serve(EchoService, ServerConfig::default(), 4096);
    let mut prefix = BytesMut::new();
    write_varint(4 << 30, &mut prefix);
    peer.io.write_all(&prefix).await.expect("write");
    let r = task.await.expect("join");
    assert!(
        matches!(r, Err(ServeError::Decode(DecodeError::TooLarge { size, .. })) if size == 4 << 30),
        "{r:?}"
    );
    assert!(peer.recv().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn rpc_undecodable_message_disconnects_with_a_typed_error() {
    within(async {
        let (mut peer, task) = serve(EchoService, ServerConfig::default(), 4096);
        peer.io
            .write_all(&[3, 0xff, 0xff, 0xff])
            .await
            .expect("write");
        let r = task.await.expect("join");
        assert!(
            matches!(r, Err(ServeError::Decode(DecodeError::Malformed(_)))),
            "{r:?}"
        );
    })
    .await;
}

/// Starts rpcs that never finish; reports their ids when dropped.
struct Hang(mpsc::UnboundedSender<u64>);
struct Dropped(u64, mpsc::UnboundedSender<u64>);
impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}
type BoxFut = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;
impl Service for Hang {
    type Request = Request;
    type Response = Response;
    type Unary = BoxFut;
    type Stream = BoxStream<'static, Result<Response, Status>>;
    fn call(&mut self, r: Request, c: &mut CallContext<Request>) -> Reply<BoxFut, Self::Stream> {
        let guard = Dropped(c.id(), self.0.clone());
        if &r.body[..] == b"hang" {
            Reply::Unary(Box::pin(async move {
                let _g = guard;
                std::future::pending().await
            }))
        } else {
            Reply::Unary(Box::pin(async move {
                Ok(Response {
                    body: r.body,
                    ..Response::default()
                })
            }))
        }
    }
}

#[tokio::test]
async fn rpc_unknown_control_code_is_treated_as_cancel() {
    within(async {
        let (tx, mut dropped) = mpsc::unbounded_channel();
        let (mut peer, _task) = serve(Hang(tx), ServerConfig::default(), 4096);
        peer.send(request(5, 0, "hang")).await;
        peer.send(request(5, 9, "")).await;
        assert_eq!(dropped.recv().await, Some(5));
        let r = peer.recv().await.expect("answer");
        assert_eq!(r.request_id, 5);
        assert_eq!(r.control_code(), ControlCode::Cancel);
    })
    .await;
}

#[tokio::test]
async fn rpc_cancel_for_an_unknown_id_is_ignored() {
    within(async {
        let (tx, _dropped) = mpsc::unbounded_channel();
        let (mut peer, _task) = serve(Hang(tx), ServerConfig::default(), 4096);
        peer.send(request(99, 1, "")).await;
        peer.send(request(1, 0, "hi")).await;
        // The only answer is the echo: nothing was sent for the unknown id.
        let r = peer.recv().await.expect("answer");
        assert_eq!((r.request_id, r.code, &r.body[..]), (1, 0, &b"hi"[..]));
    })
    .await;
}

#[tokio::test]
async fn rpc_end_and_duplicate_normal_for_a_running_unary_rpc_are_ignored() {
    within(async {
        let (tx, mut dropped) = mpsc::unbounded_channel();
        let (mut peer, _task) = serve(Hang(tx), ServerConfig::default(), 4096);
        peer.send(request(3, 0, "hang")).await;
        peer.send(request(3, 0, "again")).await;
        peer.send(request(3, 2, "")).await;
        peer.send(request(4, 0, "next")).await;
        let r = peer.recv().await.expect("answer");
        assert_eq!(r.request_id, 4);
        // Rpc 3 still runs (only the finished rpc 4 dropped its work).
        while let Ok(id) = dropped.try_recv() {
            assert_ne!(id, 3);
        }
    })
    .await;
}

#[tokio::test]
async fn rpc_peer_that_stops_reading_leaves_memory_bounded() {
    within(async {
        struct Flood(Arc<AtomicUsize>);
        impl Service for Flood {
            type Request = Request;
            type Response = Response;
            type Unary = BoxFut;
            type Stream = BoxStream<'static, Result<Response, Status>>;
            fn call(
                &mut self,
                _: Request,
                _: &mut CallContext<Request>,
            ) -> Reply<BoxFut, Self::Stream> {
                let produced = self.0.clone();
                Reply::Stream(
                    futures_util::stream::repeat_with(move || {
                        produced.fetch_add(1, Ordering::SeqCst);
                        Ok(Response {
                            body: Bytes::from(vec![0u8; 1024]),
                            ..Response::default()
                        })
                    })
                    .boxed(),
                )
            }
        }
        let produced = Arc::new(AtomicUsize::new(0));
        let config = ServerConfig::default().with_send_budget(16 * 1024);
        let (mut peer, _task) = serve(Flood(produced.clone()), config, 16 * 1024);
        peer.send(request(1, 0, "go")).await;
        // Never read. Let the server run until it cannot write any more.
        let mut last = usize::MAX;
        for _ in 0..50 {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            let now = produced.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        let stalled = produced.load(Ordering::SeqCst);
        // Pipe (16 KiB) + send budget (16 KiB) + one response over: about 33 responses of ~1 KiB.
        assert!(stalled > 0 && stalled <= 40, "produced {stalled}");
        for _ in 0..200 {
            tokio::task::yield_now().await;
        }
        assert_eq!(produced.load(Ordering::SeqCst), stalled);
        // Reading resumes the stream.
        for _ in 0..100 {
            assert!(peer.recv().await.is_some());
        }
        assert!(produced.load(Ordering::SeqCst) > stalled);
    })
    .await;
}

#[tokio::test]
async fn rpc_client_disconnects_from_a_server_announcing_an_oversized_response() {
    within(async {
        let (a, mut b) = tokio::io::duplex(4096);
        let (client, driver): (Client<Request, Response>, _) =
            Client::new(a, echo::ClientCodec::default(), ClientConfig::default());
        let driver = tokio::spawn(driver);
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.call(Request::unary("x")).await }
        });
        let mut buf = [0u8; 64];
        let n = b.read(&mut buf).await.expect("read request");
        assert!(n > 0);
        let mut prefix = BytesMut::new();
        write_varint(u64::MAX >> 1, &mut prefix);
        b.write_all(&prefix).await.expect("write");
        let r = call.await.expect("join");
        assert!(matches!(r, Err(CallError::ConnectionClosed)), "{r:?}");
        let d = driver.await.expect("join");
        assert!(
            matches!(
                d,
                Err(missive::rpc::client::ConnectionError::Decode(
                    DecodeError::TooLarge { .. }
                ))
            ),
            "{d:?}"
        );
        assert!(!client.is_alive());
    })
    .await;
}

#[tokio::test]
async fn rpc_client_fails_calls_when_the_connection_ends_mid_response() {
    within(async {
        let (a, mut b) = tokio::io::duplex(4096);
        let client: Client<Request, Response> =
            Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.call(Request::unary("x")).await }
        });
        let mut buf = [0u8; 64];
        let _ = b.read(&mut buf).await.expect("read request");
        // Half a frame, then gone.
        b.write_all(&[10, 8]).await.expect("write");
        drop(b);
        let r = call.await.expect("join");
        assert!(matches!(r, Err(CallError::ConnectionClosed)), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn rpc_flood_beyond_max_rpcs_is_refused_and_the_connection_goes_on() {
    within(async {
        struct Counting(mpsc::UnboundedSender<u64>, mpsc::UnboundedSender<u64>);
        impl Service for Counting {
            type Request = Request;
            type Response = Response;
            type Unary = BoxFut;
            type Stream = BoxStream<'static, Result<Response, Status>>;
            fn call(
                &mut self,
                _: Request,
                c: &mut CallContext<Request>,
            ) -> Reply<BoxFut, Self::Stream> {
                let _ = self.0.send(c.id());
                let guard = Dropped(c.id(), self.1.clone());
                Reply::Unary(Box::pin(async move {
                    let _g = guard;
                    std::future::pending().await
                }))
            }
        }
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        let config = ServerConfig::default().with_max_rpcs(2);
        let (mut peer, _task) = serve(Counting(started_tx, dropped_tx), config, 64 * 1024);
        for id in 1..=5 {
            peer.send(request(id, 0, "hang")).await;
        }
        // 3, 4 and 5 are refused with a status; 1 and 2 run.
        for id in 3..=5 {
            let r = peer.recv().await.expect("refusal");
            assert_eq!((r.request_id, r.control_code()), (id, ControlCode::Cancel));
            assert_eq!(
                r.status().map(|s| s.code()),
                Some(missive::rpc::StatusCode::ResourceExhausted)
            );
        }
        assert_eq!(started.recv().await, Some(1));
        assert_eq!(started.recv().await, Some(2));
        assert!(started.try_recv().is_err());
        // Cancel still reaches a running rpc, and its slot serves a new one.
        peer.send(request(1, 1, "")).await;
        assert_eq!(dropped.recv().await, Some(1));
        let r = peer.recv().await.expect("cancel answer");
        assert_eq!((r.request_id, r.control_code()), (1, ControlCode::Cancel));
        peer.send(request(6, 0, "hang")).await;
        assert_eq!(started.recv().await, Some(6));
    })
    .await;
}
