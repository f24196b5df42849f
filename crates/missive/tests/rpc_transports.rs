//! The same rpc conversation over every transport: TCP, TLS, Unix sockets and the memory pipe.
#![cfg(all(feature = "rpc", feature = "prost"))]

use bytes::Bytes;
use futures_util::StreamExt;
use missive::rpc::echo::{self, EchoService, Request, Response};
use missive::rpc::{CallError, Client, ClientConfig, Server};
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves `server_io` and runs unary, streaming and large calls over `client_io`.
async fn conversation<A, B>(client_io: A, server_io: B)
where
    A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = Server::default();
    let serving =
        tokio::spawn(server.connection(server_io, echo::ServerCodec::default(), EchoService));
    let client: Client<Request, Response> = Client::spawn(
        client_io,
        echo::ClientCodec::default(),
        ClientConfig::default(),
    );
    let calls = (0..64u32).map(|i| {
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
    let items: Vec<_> = client
        .server_stream(Request::stream("s", 50))
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(items.len(), 50);
    let big = Bytes::from(vec![3u8; 3 * 1024 * 1024]);
    let r = client.call(Request::unary(big.clone())).await.expect("big");
    assert_eq!(r.body, big);
    server.shutdown().await;
    serving.await.expect("join").expect("clean close");
    let r = client.call(Request::unary("after")).await;
    assert!(matches!(r, Err(CallError::ConnectionClosed)), "{r:?}");
}

#[tokio::test]
async fn rpc_runs_over_the_memory_pipe() {
    let (a, b) = missive::transport::memory::pair(64 * 1024);
    conversation(a, b).await;
}

#[cfg(feature = "tcp")]
#[tokio::test]
async fn rpc_runs_over_tcp() {
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (a, b) = tokio::join!(
        missive::transport::tcp::connect(addr),
        missive::transport::tcp::accept(&listener)
    );
    conversation(a.expect("connect"), b.expect("accept")).await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rpc_runs_over_tls() {
    use missive::transport::tls;
    let cert = tls::SelfSigned::generate(&["localhost"]).expect("cert");
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls::Acceptor::new(cert.server_config().expect("server config"));
    let (a, b) = tokio::join!(
        tls::connect(
            addr,
            "localhost",
            cert.client_config().expect("client config")
        ),
        async {
            let tcp = missive::transport::tcp::accept(&listener)
                .await
                .expect("accept");
            acceptor.accept(tcp).await
        }
    );
    conversation(a.expect("connect"), b.expect("handshake")).await;
}

#[cfg(all(feature = "unix", unix))]
#[tokio::test]
async fn rpc_runs_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("missive-rpc-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("rpc.sock");
    let _ = std::fs::remove_file(&path);
    let listener = missive::transport::unix::bind(&path).expect("bind");
    let (a, b) = tokio::join!(missive::transport::unix::connect(&path), listener.accept());
    conversation(a.expect("connect"), b.expect("accept").0).await;
    let _ = std::fs::remove_dir_all(&dir);
}
