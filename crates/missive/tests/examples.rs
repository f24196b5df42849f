//! Every example that ends by itself runs here: each example's file is included as a module and
//! its `run` is called, so the test needs no second build of the examples.

#[cfg(all(feature = "queue", feature = "tls"))]
#[allow(dead_code)]
#[path = "../examples/queue_echo.rs"]
mod queue_echo;

#[cfg(all(feature = "rpc", feature = "prost", feature = "tcp"))]
#[allow(dead_code)]
#[path = "../examples/rpc_service.rs"]
mod rpc_service;

#[cfg(feature = "cbor")]
#[allow(dead_code)]
#[path = "../examples/file_sharing.rs"]
mod file_sharing;

#[cfg(feature = "p2p")]
#[allow(dead_code)]
#[path = "../examples/stream_echo.rs"]
mod stream_echo;

#[cfg(all(feature = "queue", feature = "tls"))]
#[tokio::test]
async fn example_queue_echo_runs_over_tcp_and_tls_and_ends() {
    queue_echo::run().await.expect("queue_echo");
}

#[cfg(all(feature = "rpc", feature = "prost", feature = "tcp"))]
#[tokio::test]
async fn example_rpc_service_runs_unary_streaming_and_cancellation_and_ends() {
    rpc_service::run().await.expect("rpc_service");
}

#[cfg(feature = "cbor")]
#[tokio::test]
async fn example_file_sharing_fetches_every_blob_and_ends() {
    file_sharing::run().await.expect("file_sharing");
}

#[cfg(feature = "p2p")]
#[tokio::test]
async fn example_stream_echo_runs_both_sides_on_loopback_and_ends() {
    stream_echo::run(None).await.expect("stream_echo");
}

/// The example's other mode: given a peer's address, it dials that peer and echoes with it.
#[cfg(feature = "p2p")]
#[tokio::test]
async fn example_stream_echo_dials_the_peer_at_its_address_argument() {
    use futures_util::StreamExt;
    use missive::p2p::{Keypair, Node, NodeConfig, Protocol};
    use missive::stream::StreamProtocol;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let peer = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let mut incoming = peer
        .stream_control()
        .accept(StreamProtocol::new("/echo"))
        .expect("accept");
    let served = tokio::spawn(async move {
        let mut streams = 0;
        while let Some((_, mut stream)) = incoming.next().await {
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await.expect("read");
            stream.write_all(&buf).await.expect("write");
            stream.shutdown().await.expect("shutdown");
            streams += 1;
            if streams == 3 {
                break;
            }
        }
        streams
    });
    let addr = peer
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .await
        .expect("listen")
        .with(Protocol::P2p(peer.peer_id()));
    stream_echo::run(Some(addr)).await.expect("stream_echo");
    assert_eq!(served.await.expect("served"), 3);
    peer.shutdown().await;
}
