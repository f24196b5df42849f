//! The same rpc conversation over every transport: TCP, TLS, Unix sockets and the memory pipe.
#![cfg(all(feature = "rpc", feature = "prost"))]

#[path = "support/deadline.rs"]
mod deadline;
use deadline::within;

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
    within(async {
        let (a, b) = missive::transport::memory::pair(64 * 1024);
        conversation(a, b).await;
    })
    .await;
}

#[cfg(feature = "tcp")]
#[tokio::test]
async fn rpc_runs_over_tcp() {
    within(async {
        let listener = missive::transport::tcp::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (a, b) = tokio::join!(
            missive::transport::tcp::connect(addr),
            missive::transport::tcp::accept(&listener)
        );
        conversation(a.expect("connect"), b.expect("accept")).await;
    })
    .await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rpc_runs_over_tls() {
    within(async {
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
    })
    .await;
}

#[cfg(all(feature = "unix", unix))]
#[tokio::test]
async fn rpc_runs_over_a_unix_socket() {
    within(async {
        let dir = std::env::temp_dir().join(format!("missive-rpc-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rpc.sock");
        let _ = std::fs::remove_file(&path);
        let listener = missive::transport::unix::bind(&path).expect("bind");
        let (a, b) = tokio::join!(missive::transport::unix::connect(&path), listener.accept());
        conversation(a.expect("connect"), b.expect("accept").0).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// A node stream opened with a protocol name carries the rpc like any socket: one stream per
/// rpc connection, multiplexed with the node's other streams.
#[cfg(feature = "p2p")]
#[tokio::test]
async fn rpc_runs_over_a_node_stream() {
    within(async {
        use missive::p2p::{Keypair, Node, NodeConfig};
        use missive::stream::StreamProtocol;
        const RPC: StreamProtocol = StreamProtocol::new("/missive/rpc-echo/1.0.0");

        let server_node = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("server node");
        let addr = server_node
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .await
            .expect("listen");
        let mut incoming = server_node.stream_control().accept(RPC).expect("register");
        let client_node = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("client node");
        let peer = client_node.dial(addr).await.expect("dial");
        let control = client_node.stream_control();
        let (client_io, accepted) = tokio::join!(control.open_stream(peer, RPC), incoming.next());
        let (from, server_io) = accepted.expect("an inbound stream");
        assert_eq!(from, client_node.peer_id());
        conversation(client_io.expect("open stream"), server_io).await;
        // The rpc connection's close ended one stream; the node connection lives on.
        assert!(client_node.is_connected(&peer));
    })
    .await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rpc_tls_constructors_serve_and_a_failed_handshake_harms_no_one() {
    within(async {
        use missive::transport::tls;
        use tokio::io::AsyncWriteExt as _;
        let cert = tls::SelfSigned::generate(&["localhost"]).expect("cert");
        let listener = missive::transport::tcp::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tls::Acceptor::new(cert.server_config().expect("server config"));
        let server = Server::default();
        let s = server.clone();
        let serving = tokio::spawn(async move {
            s.serve_tls(listener, acceptor, |_peer| {
                (echo::ServerCodec::default(), EchoService)
            })
            .await
        });
        // A peer that speaks no TLS at all fails its own handshake only.
        let mut garbage = missive::transport::tcp::connect(addr)
            .await
            .expect("connect");
        garbage
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let client: Client<Request, Response> = Client::connect_tls(
            addr,
            "localhost",
            cert.client_config().expect("client config"),
            echo::ClientCodec::default(),
            ClientConfig::default(),
        )
        .await
        .expect("connect over TLS");
        let r = client.call(Request::unary("over tls")).await.expect("call");
        assert_eq!(r.body, Bytes::from("over tls"));
        // A wrong server name is refused by the client before any rpc.
        let wrong = Client::<Request, Response>::connect_tls(
            addr,
            "not-localhost",
            cert.client_config().expect("client config"),
            echo::ClientCodec::default(),
            ClientConfig::default(),
        )
        .await;
        assert!(
            matches!(wrong, Err(tls::TlsError::Handshake(_))),
            "{wrong:?}"
        );
        server.shutdown().await;
        serving.await.expect("join").expect("serve");
        let r = client.call(Request::unary("late")).await;
        assert!(matches!(r, Err(CallError::ConnectionClosed)), "{r:?}");
    })
    .await;
}

#[cfg(all(feature = "unix", unix))]
#[tokio::test]
async fn rpc_unix_constructors_serve_until_shutdown() {
    within(async {
        let dir =
            std::env::temp_dir().join(format!("missive-rpc-unix-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rpc.sock");
        let _ = std::fs::remove_file(&path);
        let listener = missive::transport::unix::bind(&path).expect("bind");
        let server = Server::default();
        let s = server.clone();
        let serving = tokio::spawn(async move {
            s.serve_unix(listener, || (echo::ServerCodec::default(), EchoService))
                .await
        });
        for i in 0..3u32 {
            let client: Client<Request, Response> =
                Client::connect_unix(&path, echo::ClientCodec::default(), ClientConfig::default())
                    .await
                    .expect("connect");
            let r = client
                .call(Request::unary(i.to_string()))
                .await
                .expect("call");
            assert_eq!(r.body, Bytes::from(i.to_string()));
        }
        server.shutdown().await;
        serving.await.expect("join").expect("serve");
        assert!(
            Client::<Request, Response>::connect_unix(
                &path,
                echo::ClientCodec::default(),
                ClientConfig::default()
            )
            .await
            .is_err(),
            "the listener is closed after shutdown"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
