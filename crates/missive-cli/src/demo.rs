//! `missive demo`: every layer on loopback, then a results table.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt;
use missive::p2p::{Keypair, Node, NodeConfig};
use missive::queue::{Connection, Datagram, Listener};
use missive::transport::tls::SelfSigned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::progress::Progress;
use crate::table;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Datagrams to send per queue transport.
    #[arg(long, default_value_t = 1_000_000)]
    count: u32,
    /// Echo round trips on one node stream.
    #[arg(long, default_value_t = 20_000)]
    echoes: u32,
    /// Unary RPC calls (64 in flight).
    #[arg(long, default_value_t = 200_000)]
    calls: u32,
    /// Request-response round trips (JSON, one stream per request).
    #[arg(long, default_value_t = 2_000)]
    requests: u32,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// One line of the results table.
pub(crate) struct Outcome {
    pub(crate) layer: &'static str,
    pub(crate) transport: &'static str,
    pub(crate) exchanged: u64,
    pub(crate) unit: &'static str,
    pub(crate) elapsed: Duration,
    pub(crate) passed: bool,
    pub(crate) check: String,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut outcomes = Vec::new();
    outcomes.push(queue_over("tcp", args.count).await?);
    outcomes.push(queue_over("tls", args.count).await?);
    outcomes.push(node_ping_and_echo(TCP, "tcp+noise+yamux", args.echoes).await?);
    outcomes.push(node_ping_and_echo(QUIC, "quic", args.echoes).await?);
    outcomes.push(node_ping_and_echo(WS, "ws+noise+yamux", args.echoes).await?);
    outcomes.push(crate::demo_rpc::unary_stream_and_cancel(args.calls).await?);
    outcomes.push(crate::demo_rpc::over_a_node_stream(args.calls).await?);
    outcomes.push(request_response(TCP, "tcp/json", args.requests).await?);
    outcomes.push(request_response(QUIC, "quic/json", args.requests).await?);

    let all_passed = outcomes.iter().all(|o| o.passed);
    if args.json {
        for o in &outcomes {
            let line = serde_json::json!({
                "layer": o.layer,
                "transport": o.transport,
                "exchanged": o.exchanged,
                "unit": o.unit,
                "seconds": o.elapsed.as_secs_f64(),
                "per_second": per_second(o.exchanged, o.elapsed),
                "passed": o.passed,
                "check": o.check,
            });
            println!("{line}");
        }
    } else {
        let rows: Vec<Vec<String>> = outcomes
            .iter()
            .map(|o| {
                vec![
                    o.layer.to_owned(),
                    o.transport.to_owned(),
                    format!("{} {}", o.exchanged, o.unit),
                    format!("{:.0} ms", o.elapsed.as_secs_f64() * 1e3),
                    format!("{:.0}/s", per_second(o.exchanged, o.elapsed)),
                    o.check.clone(),
                    if o.passed { "yes" } else { "NO" }.to_owned(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(
                &[
                    "layer",
                    "transport",
                    "exchanged",
                    "time",
                    "rate",
                    "check",
                    "passed"
                ],
                &rows
            )
        );
        println!("{}", metrics_summary(&missive::metrics::encode_default()));
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Sends `count` 64-byte datagrams with cycling tags over one connection and checks on the receiving
/// side that every one arrived, in order, intact.
async fn queue_over(transport: &'static str, count: u32) -> anyhow::Result<Outcome> {
    let (mut listener, client_config) = match transport {
        "tls" => {
            let cert = SelfSigned::generate(&["localhost"])?;
            let listener = Listener::bind_tls("127.0.0.1:0", cert.server_config()?).await?;
            (listener, Some(cert.client_config()?))
        }
        _ => (Listener::bind_tcp("127.0.0.1:0").await?, None),
    };
    let addr = listener
        .local_addr()?
        .as_socket_addr()
        .context("a TCP listener has a socket address")?;

    let progress = Progress::new(
        format!("queue/{transport:3}"),
        u64::from(count),
        "datagrams",
    );
    let receiver = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut conn = listener.accept().await?;
            let mut received = 0u32;
            let mut in_order = true;
            while let Some(item) = conn.reader().next().await {
                let datagram = item?;
                in_order &= datagram == nth(received);
                received += 1;
                if received.is_multiple_of(4096) {
                    progress.set_position(u64::from(received));
                }
            }
            progress.set_position(u64::from(received));
            anyhow::Ok((received, in_order))
        })
    };

    let started = Instant::now();
    let mut conn = match client_config {
        Some(config) => Connection::tls_client(addr, "localhost", config).await?,
        None => Connection::tcp_client(addr).await?,
    };
    for i in 0..count {
        conn.writer().feed(nth(i)).await?;
    }
    conn.close().await?;
    let (received, in_order) = receiver.await??;
    let elapsed = started.elapsed();
    progress.finish_and_clear();

    let passed = received == count && in_order;
    Ok(Outcome {
        layer: "queue",
        transport,
        exchanged: u64::from(received),
        unit: "datagrams",
        elapsed,
        passed,
        check: format!(
            "{received}/{count} delivered, {}",
            if in_order { "in order" } else { "OUT OF ORDER" }
        ),
    })
}

/// Two nodes on loopback: one dials the other (TCP + Noise + Yamux), checks the PeerId it reached,
/// pings it, asks it to identify itself, then runs `echoes` 64-byte round trips on one `/echo/1.0.0` stream.
/// The node's loopback listen addresses the demo runs its node rows on.
const TCP: &str = "/ip4/127.0.0.1/tcp/0";
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
const WS: &str = "/ip4/127.0.0.1/tcp/0/ws";

async fn node_ping_and_echo(
    listen: &str,
    transport: &'static str,
    echoes: u32,
) -> anyhow::Result<Outcome> {
    let server = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let addr = server.listen(listen.parse()?).await?;
    let echo = tokio::spawn(crate::node_cmd::serve_echo(server.stream_control()));
    let client = Node::new(Keypair::generate(), NodeConfig::default()).await?;

    let progress = Progress::new(
        format!("node/echo {transport}"),
        u64::from(echoes),
        "round trips",
    );
    let started = Instant::now();
    let reached = client.dial(addr).await?;
    let dialed_in = started.elapsed();
    let mut pings = Vec::new();
    for _ in 0..20 {
        pings.push(client.ping(reached).await?);
    }
    pings.sort();
    let identified = missive::protocols::identify::request(&client.stream_control(), reached)
        .await
        .is_ok_and(|info| {
            info.agent_version == missive::protocols::identify::AGENT_VERSION
                && info.protocols.contains(&crate::node_cmd::ECHO)
        });

    let mut stream = client
        .stream_control()
        .open_stream(reached, crate::node_cmd::ECHO)
        .await?;
    let echo_started = Instant::now();
    let mut intact = true;
    let mut sent = [0u8; 64];
    let mut back = [0u8; 64];
    for i in 0..echoes {
        sent[..4].copy_from_slice(&i.to_be_bytes());
        stream.write_all(&sent).await?;
        stream.read_exact(&mut back).await?;
        intact &= back == sent;
        if i.is_multiple_of(1024) {
            progress.set_position(u64::from(i));
        }
    }
    stream.shutdown().await?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    let elapsed = echo_started.elapsed();
    progress.finish_and_clear();
    echo.abort();
    client.shutdown().await;
    server.shutdown().await;

    let peer_matches = reached == server.peer_id();
    Ok(Outcome {
        layer: "node",
        transport,
        exchanged: u64::from(echoes),
        unit: "echoes",
        elapsed,
        passed: peer_matches && identified && intact && rest.is_empty(),
        check: format!(
            "peer id {}, dial {:.1} ms, ping median {:.0} µs, identify {}, echoes {}",
            if peer_matches { "matches" } else { "MISMATCH" },
            dialed_in.as_secs_f64() * 1e3,
            pings[pings.len() / 2].as_secs_f64() * 1e6,
            if identified {
                "lists /echo/1.0.0"
            } else {
                "FAILED"
            },
            if intact { "intact" } else { "CORRUPTED" }
        ),
    })
}

/// Two nodes: one serves the JSON echo protocol of `missive rr serve`, the other sends `requests`
/// requests (16 at a time, each on a stream of its own) and checks every answer.
async fn request_response(
    listen: &str,
    transport: &'static str,
    requests: u32,
) -> anyhow::Result<Outcome> {
    use missive::request_response::{Behaviour, Config};

    let server = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let _serving = crate::rr_cmd::serve_json_echo(&server)?;
    let addr = server.listen(listen.parse()?).await?;
    let client = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let protocols = [(
        crate::rr_cmd::PROTOCOL.to_owned(),
        missive::request_response::ProtocolSupport::Full,
    )];
    let rr = Behaviour::<crate::rr_cmd::JsonCodec>::new(&client, protocols, Config::default())?;
    client.add_address(server.peer_id(), addr);
    let me = client.peer_id().to_string();
    let peer = server.peer_id();

    let started = Instant::now();
    let right = futures_util::stream::iter(0..requests)
        .map(|i| {
            let rr = rr.clone();
            let me = me.clone();
            async move {
                let request = serde_json::json!({ "n": i });
                rr.request(peer, request.clone()).await.is_ok_and(|answer| {
                    answer["request"] == request && answer["peer"] == me.as_str()
                })
            }
        })
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let elapsed = started.elapsed();
    client.shutdown().await;
    server.shutdown().await;
    Ok(Outcome {
        layer: "request_response",
        transport,
        exchanged: u64::from(requests),
        unit: "requests",
        elapsed,
        passed: right == requests as usize,
        check: format!("{right}/{requests} answered right, one stream each"),
    })
}

/// The i-th demo datagram: a tag and a 64-byte payload that both depend on `i`.
fn nth(i: u32) -> Datagram {
    let mut payload = [0u8; 64];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    payload[4..].fill((i % 251) as u8);
    Datagram::new((i % 65_536) as u16, payload.to_vec())
}

/// One line of what the library's metrics counted during the demo.
fn metrics_summary(text: &str) -> String {
    let sum = |name: &str, keep: &dyn Fn(&str) -> bool| -> u64 {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(key, _)| key.split('{').next() == Some(name) && keep(key))
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .map(|value| value as u64)
            .sum::<u64>()
    };
    let all = |_: &str| true;
    let ended_well = |key: &str| {
        ["ok", "cancelled", "abandoned", "disconnected"]
            .iter()
            .any(|s| key.contains(&format!("status=\"{s}\"")))
    };
    let calls = sum("missive_rpc_calls_total", &all);
    let rpc_failed = calls - sum("missive_rpc_calls_total", &ended_well);
    let requests = sum("missive_rr_requests_total", &all);
    let rr_failed = requests
        - sum("missive_rr_requests_total", &|k| {
            k.contains("outcome=\"ok\"")
        });
    let handshakes = sum("missive_node_handshakes_total", &all);
    let handshake_failed = sum("missive_node_handshake_failures_total", &all);
    let receive_errors = sum("missive_queue_receive_errors_total", &all);
    let error_kinds: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.starts_with("missive_queue_receive_errors_total{") && !line.ends_with(" 0")
        })
        .collect();
    if !error_kinds.is_empty() {
        eprintln!("{}", error_kinds.join("\n"));
    }
    format!(
        "metrics: {handshakes} node handshakes ({handshake_failed} failed), {} rpc calls ended ({rpc_failed} failed), {requests} requests ({rr_failed} failed), {} datagrams received ({receive_errors} receive errors); failures: {}",
        calls,
        sum("missive_queue_datagrams_total", &|k| k
            .contains("direction=\"in\"")),
        handshake_failed + rpc_failed + rr_failed + receive_errors,
    )
}
