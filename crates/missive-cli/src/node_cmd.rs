//! `missive node listen`, `missive node identify` and `missive ping`: a libp2p-compatible node
//! at the terminal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt;
use missive::p2p::{KeyType, Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId, Protocol};
use missive::protocols::identify;
use missive::stream::{Control, StreamProtocol};
use tokio::io::AsyncWriteExt;

/// The echo protocol `node listen` serves: bytes come back until the remote closes its write side.
pub(crate) const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The node's key file (libp2p's protobuf encoding); created when it does not exist. Without
    /// it, a fresh identity is used.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The type of a new identity (a key file that exists keeps its own).
    #[arg(long, value_enum, default_value_t = KeyKind::Ed25519)]
    key_type: KeyKind,
    /// Addresses to listen on (default: TCP, QUIC and WebSocket on loopback, ports chosen by the
    /// system).
    #[arg(default_values = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0/ws"])]
    addrs: Vec<String>,
    #[command(flatten)]
    metrics: crate::metrics_http::MetricsArgs,
    /// Do not serve WebTransport (for browsers) on the port of each QUIC address.
    #[arg(long)]
    no_webtransport: bool,
}

/// The identity key types a node can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KeyKind {
    /// Ed25519 (peer ids `12D3KooW…`).
    Ed25519,
    /// secp256k1 (peer ids `16Uiu2HA…`), as Ethereum's libp2p networks use.
    Secp256k1,
}

impl KeyKind {
    fn generate(self) -> Keypair {
        match self {
            Self::Ed25519 => Keypair::generate(),
            Self::Secp256k1 => Keypair::generate_secp256k1(),
        }
    }

    fn key_type(self) -> KeyType {
        match self {
            Self::Ed25519 => KeyType::Ed25519,
            Self::Secp256k1 => KeyType::Secp256k1,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct PingArgs {
    /// The peer's address, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…
    addr: String,
    /// How many pings to send.
    #[arg(long, short = 'c', default_value_t = 5)]
    count: u32,
    /// Milliseconds between pings.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct IdentifyArgs {
    /// The peer's address, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…
    addr: String,
}

pub(crate) async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    args.metrics.start().await?;
    let key = match &args.key {
        Some(path) => {
            let key = Keypair::load_or_generate_with(path, || args.key_type.generate())
                .with_context(|| format!("cannot use the key file {}", path.display()))?;
            if key.key_type() != args.key_type.key_type() {
                eprintln!(
                    "note: {} holds a {} key, which is used as it is",
                    path.display(),
                    key.key_type()
                );
            }
            key
        }
        None => args.key_type.generate(),
    };
    let node = Node::new(key, NodeConfig::default()).await?;
    let peer = node.peer_id();
    println!("peer id: {peer}");
    for text in &args.addrs {
        let addr: Multiaddr = text
            .parse()
            .with_context(|| format!("{text:?} is not a multiaddr"))?;
        let bound = node
            .listen(addr)
            .await
            .with_context(|| format!("cannot listen on {text}"))?;
        println!("listening on {}", bound.clone().with(Protocol::P2p(peer)));
        if !args.no_webtransport && bound.iter().last() == Some(&Protocol::QuicV1) {
            let web = node
                .listen(bound.with(Protocol::WebTransport))
                .await
                .context("cannot serve WebTransport on the QUIC port")?;
            println!("listening on {}", web.with(Protocol::P2p(peer)));
        }
    }
    println!(
        "serving /ipfs/ping/1.0.0, /ipfs/id/1.0.0 and {}",
        ECHO.as_str()
    );
    let echo = tokio::spawn(serve_echo(node.stream_control()));
    let mut events = node.events();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(NodeEvent::ConnectionEstablished { peer, remote_addr, .. }) => {
                    eprintln!("connected: {peer} from {remote_addr}");
                }
                Some(NodeEvent::ConnectionClosed { peer, cause, .. }) => {
                    eprintln!("disconnected: {peer} ({cause:?})");
                }
                Some(NodeEvent::IncomingConnectionError { remote_addr, error }) => {
                    eprintln!("incoming connection from {remote_addr} failed: {error}");
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    echo.abort();
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Echoes every stream of the echo protocol until its remote closes its write side.
pub(crate) async fn serve_echo(control: Control) -> anyhow::Result<()> {
    let mut incoming = control.accept(ECHO)?;
    while let Some((_peer, stream)) = incoming.next().await {
        tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(stream);
            if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                let _ = write.shutdown().await;
            }
        });
    }
    Ok(())
}

/// A node with a new identity, connected to the peer at `addr` (a multiaddr in text form).
async fn dial_with_a_fresh_identity(addr: &str) -> anyhow::Result<(Node, PeerId)> {
    let addr: Multiaddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not a multiaddr"))?;
    let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let peer = node
        .dial(addr.clone())
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    Ok((node, peer))
}

/// Dials a peer and prints what it says about itself through identify.
pub(crate) async fn identify(args: IdentifyArgs) -> anyhow::Result<ExitCode> {
    let (node, peer) = dial_with_a_fresh_identity(&args.addr).await?;
    let info = identify::request(&node.stream_control(), peer)
        .await
        .with_context(|| format!("{peer} did not identify itself"))?;
    node.shutdown().await;
    println!("peer id: {peer}");
    println!("agent: {}", info.agent_version);
    println!("protocol version: {}", info.protocol_version);
    for a in &info.listen_addrs {
        println!("listen address: {a}");
    }
    if info.unsupported_addrs > 0 {
        println!(
            "listen addresses not shown: {} (transports this node does not speak)",
            info.unsupported_addrs
        );
    }
    if let Some(observed) = &info.observed_addr {
        println!("sees us at: {observed}");
    }
    for p in &info.protocols {
        println!("protocol: {p}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn ping(args: PingArgs) -> anyhow::Result<ExitCode> {
    let (node, peer) = dial_with_a_fresh_identity(&args.addr).await?;
    println!("connected to {peer}");
    let mut rtts = Vec::new();
    for i in 1..=args.count {
        match node.ping(peer).await {
            Ok(rtt) => {
                println!("ping {i}: {:.3} ms", rtt.as_secs_f64() * 1e3);
                rtts.push(rtt);
            }
            Err(e) => println!("ping {i}: failed: {e}"),
        }
        if i < args.count {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    }
    node.shutdown().await;
    if rtts.is_empty() {
        anyhow::bail!("no ping succeeded");
    }
    rtts.sort();
    println!(
        "{} of {} answered; min {:.3} ms, median {:.3} ms, max {:.3} ms",
        rtts.len(),
        args.count,
        rtts[0].as_secs_f64() * 1e3,
        rtts[rtts.len() / 2].as_secs_f64() * 1e3,
        rtts[rtts.len() - 1].as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}
