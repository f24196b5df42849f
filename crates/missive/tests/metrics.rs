//! The OpenMetrics of the rpc and queue layers: exact counts for scripted workloads, read back
//! from the text a scrape returns, parsed strictly.
#![cfg(all(
    feature = "metrics",
    feature = "prost",
    feature = "queue",
    feature = "tcp"
))]

use std::collections::BTreeMap;
use std::future::{Pending, Ready, pending, ready};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::Empty;
use missive::metrics::{QueueMetrics, Registry, RpcMetrics, encode};
use missive::queue::{Connection, Datagram, QueueConfig, RecvError};
use missive::rpc::echo::{self, Request, Response};
use missive::rpc::{
    CallContext, CallError, CallOptions, Client, ClientConfig, Reply, Server, ServerConfig,
    Service, Status, StatusCode,
};
use tokio::io::AsyncWriteExt;

/// Every sample of an OpenMetrics text, keyed by `name{labels}` as written. Panics on any line
/// that is not a `# HELP`/`# TYPE`/`# UNIT` comment or a `name{labels} value` sample, and when
/// the text does not end with `# EOF`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut ended = false;
    for line in text.lines() {
        assert!(!ended, "text after # EOF: {line}");
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            name.starts_with("missive_")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad metric name: {line}"
        );
        if name_end < key.len() {
            let labels = &key[name_end..];
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels: {line}"
            );
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(
                    k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "bad label: {line}"
                );
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "bad label: {line}"
                );
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            out.insert(key.to_owned(), value).is_none(),
            "duplicate sample: {line}"
        );
    }
    assert!(ended, "no # EOF at the end");
    out
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

/// Echoes, refuses "refuse", and never answers "hang".
struct Scripted;

impl Service for Scripted {
    type Request = Request;
    type Response = Response;
    type Unary = futures_util::future::Either<
        Ready<Result<Response, Status>>,
        Pending<Result<Response, Status>>,
    >;
    type Stream = Empty<Result<Response, Status>>;

    fn call(
        &mut self,
        request: Request,
        _: &mut CallContext<Request>,
    ) -> Reply<Self::Unary, Self::Stream> {
        use futures_util::future::Either;
        match &request.body[..] {
            b"refuse" => Reply::Reject(Status::new(StatusCode::Rejected, "refused")),
            b"hang" => Reply::Unary(Either::Right(pending())),
            _ => Reply::Unary(Either::Left(ready(Ok(Response {
                body: request.body,
                ..Response::default()
            })))),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rpc_metrics_count_calls_by_status_cancels_bytes_and_in_flight() {
    let mut registry = Registry::default();
    let metrics = RpcMetrics::register(&mut registry);
    let (a, b) = missive::transport::memory::pair(64 * 1024);
    let server = Server::new(ServerConfig::default().with_metrics(metrics.clone()));
    let served = tokio::spawn(server.connection(b, echo::ServerCodec::default(), Scripted));
    let client = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default().with_metrics(metrics),
    );

    for _ in 0..3 {
        client.call(Request::unary("hello")).await.expect("echo");
    }
    let refused = client.call(Request::unary("refuse")).await;
    assert!(
        matches!(refused, Err(CallError::Failed(ref s)) if s.code() == StatusCode::Rejected),
        "{refused:?}"
    );
    let options = CallOptions::default().with_deadline(Some(Duration::from_millis(50)));
    let hung = client.call_with(Request::unary("hang"), options).await;
    assert!(matches!(hung, Err(CallError::DeadlineExceeded)), "{hung:?}");
    // One more call after the Cancel, so the server has read it before the scrape.
    client.call(Request::unary("last")).await.expect("echo");

    let s = samples(&encode(&registry));
    let calls = |side: &str, kind: &str, status: &str| {
        value(
            &s,
            &format!(r#"missive_rpc_calls_total{{side="{side}",kind="{kind}",status="{status}"}}"#),
        )
    };
    assert_eq!(calls("client", "unary", "ok"), 4.0);
    assert_eq!(calls("client", "unary", "rejected"), 1.0);
    assert_eq!(calls("client", "unary", "deadline_exceeded"), 1.0);
    assert_eq!(calls("server", "unary", "ok"), 4.0);
    assert_eq!(calls("server", "unknown", "rejected"), 1.0);
    assert_eq!(calls("server", "unary", "cancelled"), 1.0);
    assert_eq!(
        value(&s, r#"missive_rpc_cancels_total{side="client"}"#),
        1.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_cancels_total{side="server"}"#),
        1.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="client"}"#),
        0.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="server"}"#),
        0.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rpc_call_duration_seconds_count{side="client",kind="unary"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rpc_call_duration_seconds_count{side="server",kind="unary"}"#
        ),
        4.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_connections_total{side="client"}"#),
        1.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_connections_total{side="server"}"#),
        1.0
    );
    let sent = value(&s, r#"missive_rpc_sent_bytes_total{side="client"}"#);
    assert!(sent > 0.0);
    assert_eq!(
        value(&s, r#"missive_rpc_received_bytes_total{side="server"}"#),
        sent
    );
    assert_eq!(
        value(&s, r#"missive_rpc_sent_bytes_total{side="server"}"#),
        value(&s, r#"missive_rpc_received_bytes_total{side="client"}"#)
    );

    drop(client);
    served.await.expect("server task").expect("served");
}

#[tokio::test]
async fn rpc_metrics_show_a_call_in_flight_and_a_disconnected_one() {
    let mut registry = Registry::default();
    let metrics = RpcMetrics::register(&mut registry);
    let (a, b) = missive::transport::memory::pair(64 * 1024);
    let server = Server::new(ServerConfig::default().with_metrics(metrics.clone()));
    let served = tokio::spawn(server.connection(b, echo::ServerCodec::default(), Scripted));
    let client = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default().with_metrics(metrics),
    );
    let hung = {
        let client = client.clone();
        tokio::spawn(async move { client.call(Request::unary("hang")).await })
    };
    client.call(Request::unary("after")).await.expect("echo");
    let s = samples(&encode(&registry));
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="client"}"#),
        1.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="server"}"#),
        1.0
    );

    // The client task ends: the server sees the connection close with the rpc still open.
    hung.abort();
    drop(client);
    // The server may fail writing the answer to the Cancel: the client is gone.
    let _ = served.await.expect("server task");
    let s = samples(&encode(&registry));
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="server"}"#),
        0.0
    );
    // The Cancel of the aborted call may arrive before the connection closes, or not.
    let ended = |status: &str| {
        let key =
            format!(r#"missive_rpc_calls_total{{side="server",kind="unary",status="{status}"}}"#);
        s.get(&key).copied().unwrap_or(0.0)
    };
    assert_eq!(ended("cancelled") + ended("disconnected"), 1.0);
    assert_eq!(
        value(
            &s,
            r#"missive_rpc_calls_total{side="client",kind="unary",status="abandoned"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn rpc_metrics_count_the_clients_streaming_calls_by_kind_and_outcome() {
    let mut registry = Registry::default();
    let metrics = RpcMetrics::register(&mut registry);
    let (a, b) = missive::transport::memory::pair(64 * 1024);
    let server = Server::new(ServerConfig::default().with_metrics(metrics.clone()));
    let served =
        tokio::spawn(server.connection(b, echo::ServerCodec::default(), echo::EchoService));
    let client = Client::spawn(
        a,
        echo::ClientCodec::default(),
        ClientConfig::default().with_metrics(metrics),
    );

    // Read to its end: ok.
    let responses = client
        .server_stream(Request::stream("s", 3))
        .await
        .expect("server stream");
    let items: Vec<_> = responses.collect().await;
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(Result::is_ok));
    // Dropped after its first response, before its end: abandoned.
    let mut responses = client
        .server_stream(Request::stream("t", 1_000))
        .await
        .expect("server stream");
    responses.next().await.expect("a response").expect("ok");
    drop(responses);
    // A client stream answered once: ok.
    let (sink, response) = client
        .client_stream(Request::unary("c"))
        .await
        .expect("client stream");
    sink.finish();
    response.await.expect("answer");
    // A bidirectional call read to its end: ok.
    let (sink, responses) = client
        .bidi_stream(Request::stream("b", 2))
        .await
        .expect("bidi stream");
    sink.finish();
    assert_eq!(responses.collect::<Vec<_>>().await.len(), 2);
    // A unary call after the Cancel, so the server has read it before the scrape.
    client.call(Request::unary("last")).await.expect("echo");

    let s = samples(&encode(&registry));
    let calls = |kind: &str, status: &str| {
        let key =
            format!(r#"missive_rpc_calls_total{{side="client",kind="{kind}",status="{status}"}}"#);
        s.get(&key).copied().unwrap_or(0.0)
    };
    assert_eq!(calls("server_stream", "ok"), 1.0);
    assert_eq!(calls("server_stream", "abandoned"), 1.0);
    assert_eq!(calls("client_stream", "ok"), 1.0);
    assert_eq!(calls("bidi", "ok"), 1.0);
    assert_eq!(calls("unary", "ok"), 1.0);
    for kind in ["server_stream", "client_stream", "bidi"] {
        assert_eq!(
            value(
                &s,
                &format!(
                    r#"missive_rpc_call_duration_seconds_count{{side="client",kind="{kind}"}}"#
                )
            ),
            1.0,
            "{kind}"
        );
    }
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="client"}"#),
        0.0
    );

    drop(client);
    let _ = served.await.expect("server task");
}

#[tokio::test]
async fn queue_metrics_count_datagrams_bytes_connections_and_receive_errors() {
    let mut registry = Registry::default();
    let metrics = QueueMetrics::register(&mut registry);
    let config = QueueConfig::default().with_metrics(metrics);
    let mut listener = missive::queue::Listener::bind_tcp("127.0.0.1:0")
        .await
        .expect("bind")
        .with_config(config.clone());
    let addr = listener.local_addr().expect("address").to_string();
    let echo = tokio::spawn(async move {
        let conn = listener.accept().await.expect("accept");
        let (mut reader, mut writer) = conn.split();
        while let Some(Ok(d)) = reader.next().await {
            writer.send(d).await.expect("echo");
        }
        // The second client cuts its frame short.
        let mut conn = listener.accept().await.expect("accept");
        conn.reader().next().await
    });

    let mut conn = Connection::tcp_client_with(addr.trim_start_matches("tcp://"), config.clone())
        .await
        .expect("connect");
    let payloads = [3usize, 100, 5000];
    for len in payloads {
        conn.writer()
            .send(Datagram::new(1, vec![7u8; len]))
            .await
            .expect("send");
        let back = conn
            .reader()
            .next()
            .await
            .expect("reply")
            .expect("datagram");
        assert_eq!(back.payload().len(), len);
    }
    conn.close().await.expect("close");

    let mut raw = tokio::net::TcpStream::connect(addr.trim_start_matches("tcp://"))
        .await
        .expect("connect");
    raw.write_all(&[0, 0, 0, 20, 0, 1]).await.expect("write");
    drop(raw);
    let cut = echo.await.expect("listener task");
    assert!(
        matches!(cut, Some(Err(RecvError::Truncated { .. }))),
        "{cut:?}"
    );

    let s = samples(&encode(&registry));
    let frame_bytes: usize = payloads.iter().map(|n| n + 8).sum();
    // Each datagram went out and came in twice: to the server and back.
    assert_eq!(
        value(&s, r#"missive_queue_datagrams_total{direction="out"}"#),
        6.0
    );
    assert_eq!(
        value(&s, r#"missive_queue_datagrams_total{direction="in"}"#),
        6.0
    );
    assert_eq!(
        value(&s, r#"missive_queue_bytes_total{direction="out"}"#),
        2.0 * frame_bytes as f64
    );
    assert_eq!(
        value(&s, r#"missive_queue_bytes_total{direction="in"}"#),
        2.0 * frame_bytes as f64
    );
    assert_eq!(
        value(&s, r#"missive_queue_connections_total{side="client"}"#),
        1.0
    );
    assert_eq!(
        value(&s, r#"missive_queue_connections_total{side="server"}"#),
        2.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_queue_receive_errors_total{kind="truncated"}"#
        ),
        1.0
    );
    assert_eq!(value(&s, "missive_queue_connections_open"), 0.0);
}

#[tokio::test]
async fn queue_metrics_count_one_backpressure_wait_per_wait() {
    let mut registry = Registry::default();
    let metrics = QueueMetrics::register(&mut registry);
    let config = QueueConfig::default()
        .with_metrics(metrics)
        .with_send_buffer(1024);
    let (a, b) = missive::transport::memory::pair(256);
    let mut sender = Connection::new(a, config.clone());
    let mut receiver = Connection::new(b, config);
    sender
        .writer()
        .feed(Datagram::new(1, vec![0u8; 4000]))
        .await
        .expect("queued");
    // The buffer is over its bound and the peer reads nothing: the next feed waits.
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        sender.writer().feed(Datagram::new(1, vec![0u8; 10])),
    )
    .await;
    assert!(waited.is_err(), "feed did not wait");
    let s = samples(&encode(&registry));
    assert_eq!(value(&s, "missive_queue_backpressure_waits_total"), 1.0);

    let (sent, received) = tokio::join!(
        sender.writer().send(Datagram::new(2, vec![0u8; 10])),
        async {
            let first = receiver.reader().next().await;
            let second = receiver.reader().next().await;
            (first, second)
        }
    );
    sent.expect("sent");
    assert_eq!(
        received
            .0
            .expect("first")
            .expect("datagram")
            .payload()
            .len(),
        4000
    );
    assert_eq!(received.1.expect("second").expect("datagram").tag(), 2);
    let s = samples(&encode(&registry));
    assert_eq!(
        value(&s, r#"missive_queue_datagrams_total{direction="in"}"#),
        2.0
    );
}

#[cfg(feature = "cbor")]
#[tokio::test]
async fn node_and_request_response_metrics_count_a_dial_streams_and_requests() {
    use missive::metrics::{NodeMetrics, RrMetrics};
    use missive::p2p::{Keypair, Node, NodeConfig};
    use missive::request_response::{Behaviour, Config, Event, ProtocolSupport, cbor};
    type Cbor = cbor::Codec<String, String>;

    let (mut server_registry, mut client_registry) = (Registry::default(), Registry::default());
    let server_node =
        NodeConfig::default().with_metrics(NodeMetrics::register(&mut server_registry));
    let client_node =
        NodeConfig::default().with_metrics(NodeMetrics::register(&mut client_registry));
    let server_rr = Config::default().with_metrics(RrMetrics::register(&mut server_registry));
    let client_rr_metrics = RrMetrics::register(&mut client_registry);
    let client_rr = Config::default().with_metrics(client_rr_metrics.clone());
    let a = Node::new(Keypair::generate(), server_node)
        .await
        .expect("node");
    let b = Node::new(Keypair::generate(), client_node)
        .await
        .expect("node");
    let addr = a
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    b.add_address(a.peer_id(), addr);
    let protocols = [("/greet/1".to_owned(), ProtocolSupport::Full)];
    let server = Behaviour::<Cbor>::new(&a, protocols.clone(), server_rr).expect("rr");
    let mut server_events = server.events().expect("events");
    server
        .serve(|_, name: String| async move { format!("hello {name}") })
        .expect("serve");
    let client = Behaviour::<Cbor>::new(&b, protocols, client_rr).expect("rr");
    for i in 0..3 {
        let answer = client
            .request(a.peer_id(), format!("{i}"))
            .await
            .expect("answer");
        assert_eq!(answer, format!("hello {i}"));
    }
    // The server counts a request when it has sent the response, which its event says.
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(10), server_events.next())
            .await
            .expect("an event in time")
            .expect("events open");
        assert!(matches!(event, Event::ResponseSent { .. }), "{event:?}");
    }

    let s = samples(&encode(&client_registry));
    assert_eq!(
        value(&s, r#"missive_node_handshakes_total{direction="outbound"}"#),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_connections_total{transport="tcp",direction="outbound"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&s, r#"missive_node_connections_open{direction="outbound"}"#),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_streams_total{direction="outbound",protocol="/greet/1"}"#
        ),
        3.0
    );
    assert_eq!(value(&s, "missive_node_dial_duration_seconds_count"), 1.0);
    assert_eq!(
        value(
            &s,
            r#"missive_rr_requests_total{protocol="/greet/1",direction="outbound",outcome="ok"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rr_request_duration_seconds_count{protocol="/greet/1"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rr_requests_in_flight{protocol="/greet/1",direction="outbound"}"#
        ),
        0.0
    );

    let s = samples(&encode(&server_registry));
    assert_eq!(
        value(&s, r#"missive_node_handshakes_total{direction="inbound"}"#),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_connections_total{transport="tcp",direction="inbound"}"#
        ),
        1.0
    );
    assert_eq!(value(&s, "missive_node_pending_handshakes"), 0.0);
    assert_eq!(
        value(
            &s,
            r#"missive_node_streams_total{direction="inbound",protocol="/greet/1"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rr_requests_total{protocol="/greet/1",direction="inbound",outcome="ok"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rr_requests_in_flight{protocol="/greet/1",direction="inbound"}"#
        ),
        0.0
    );

    // A request for a protocol the server does not speak fails, and is counted so, under
    // that behaviour's protocol.
    let other = Behaviour::<Cbor>::new(
        &b,
        [("/other/1".to_owned(), ProtocolSupport::Full)],
        Config::default().with_metrics(client_rr_metrics),
    )
    .expect("rr");
    assert!(other.request(a.peer_id(), "x".to_owned()).await.is_err());
    let s = samples(&encode(&client_registry));
    assert_eq!(
        value(
            &s,
            r#"missive_rr_requests_total{protocol="/other/1",direction="outbound",outcome="unsupported_protocols"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rr_requests_total{protocol="/greet/1",direction="outbound",outcome="ok"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_streams_total{direction="outbound",protocol="/greet/1"}"#
        ),
        3.0
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[cfg(feature = "p2p")]
#[tokio::test]
async fn node_metrics_count_a_failed_inbound_handshake_by_cause() {
    use missive::metrics::NodeMetrics;
    use missive::p2p::{Keypair, Node, NodeConfig};
    let mut registry = Registry::default();
    let config = NodeConfig::default()
        .with_metrics(NodeMetrics::register(&mut registry))
        .with_first_bytes_timeout(Duration::from_millis(100));
    let a = Node::new(Keypair::generate(), config).await.expect("node");
    let addr = a
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    let mut events = a.events();
    let port = addr.iter().find_map(|p| match p {
        missive::p2p::Protocol::Tcp(port) => Some(*port),
        _ => None,
    });
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port.expect("a TCP port")))
        .await
        .expect("connect");
    // The node closes the silent connection after the first-bytes deadline, with an event.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("events open");
        if matches!(
            event,
            missive::p2p::NodeEvent::IncomingConnectionError { .. }
        ) {
            break;
        }
    }
    drop(silent);
    let s = samples(&encode(&registry));
    assert_eq!(
        value(&s, r#"missive_node_handshakes_total{direction="inbound"}"#),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_handshake_failures_total{direction="inbound",cause="first_bytes_timeout"}"#
        ),
        1.0
    );
    a.shutdown().await;
}

/// A 100 kB request over `listen`'s transport: both nodes count its bytes on the wire, under
/// that transport's label, as they pass.
#[cfg(feature = "cbor")]
async fn node_wire_bytes_over(listen: &str, transport: &str) {
    use missive::metrics::NodeMetrics;
    use missive::p2p::{Keypair, Node, NodeConfig};
    use missive::request_response::{Behaviour, Config, ProtocolSupport, cbor};
    type Cbor = cbor::Codec<String, String>;

    let (mut server_registry, mut client_registry) = (Registry::default(), Registry::default());
    let a = Node::new(
        Keypair::generate(),
        NodeConfig::default().with_metrics(NodeMetrics::register(&mut server_registry)),
    )
    .await
    .expect("node");
    let b = Node::new(
        Keypair::generate(),
        NodeConfig::default().with_metrics(NodeMetrics::register(&mut client_registry)),
    )
    .await
    .expect("node");
    let addr = a
        .listen(listen.parse().expect("addr"))
        .await
        .expect("listen");
    b.add_address(a.peer_id(), addr);
    let protocols = [("/size/1".to_owned(), ProtocolSupport::Full)];
    let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
    server
        .serve(|_, body: String| async move { body.len().to_string() })
        .expect("serve");
    let client = Behaviour::<Cbor>::new(&b, protocols, Config::default()).expect("rr");
    let body = "x".repeat(100_000);
    let answer = client.request(a.peer_id(), body).await.expect("answer");
    assert_eq!(answer, "100000");

    let wire = |registry: &Registry, direction: &str| {
        let s = samples(&encode(registry));
        let key = format!(
            r#"missive_node_wire_bytes_total{{transport="{transport}",direction="{direction}"}}"#
        );
        value(&s, &key)
    };
    assert!(wire(&client_registry, "out") > 100_000.0, "client out");
    assert!(wire(&server_registry, "in") > 100_000.0, "server in");
    assert!(wire(&server_registry, "out") > 0.0, "server out");
    assert!(wire(&client_registry, "in") > 0.0, "client in");
    // Nothing counted under another transport.
    let s = samples(&encode(&client_registry));
    assert!(
        s.iter()
            .filter(|(k, _)| k.starts_with("missive_node_wire_bytes_total"))
            .all(|(k, _)| k.contains(&format!(r#"transport="{transport}""#))),
        "{s:#?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[cfg(feature = "cbor")]
#[tokio::test]
async fn node_metrics_count_wire_bytes_over_tcp() {
    node_wire_bytes_over("/ip4/127.0.0.1/tcp/0", "tcp").await;
}

#[cfg(feature = "cbor")]
#[tokio::test]
async fn node_metrics_count_wire_bytes_over_quic() {
    node_wire_bytes_over("/ip4/127.0.0.1/udp/0/quic-v1", "quic").await;
}

#[cfg(all(feature = "cbor", feature = "websocket"))]
#[tokio::test]
async fn node_metrics_count_wire_bytes_over_websocket() {
    node_wire_bytes_over("/ip4/127.0.0.1/tcp/0/ws", "websocket").await;
}
