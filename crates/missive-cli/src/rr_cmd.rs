//! `missive rr serve` and `missive rr call`: a JSON request-response protocol on the node, on
//! rust-libp2p's `request_response::json` wire.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, Protocol};
use missive::request_response::{Behaviour, Config, ProtocolSupport, json};

/// The protocol `rr serve` answers.
pub(crate) const PROTOCOL: &str = "/missive/json-echo/1.0.0";

/// JSON values in, JSON values out.
pub(crate) type JsonCodec = json::Codec<serde_json::Value, serde_json::Value>;

#[derive(Debug, Subcommand)]
pub(crate) enum RrCommand {
    /// Answer JSON requests with `{"peer": <requester>, "request": <the request>}`.
    Serve(ServeArgs),
    /// Send one JSON request to a peer and print its answer.
    Call(CallArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Addresses to listen on (default: TCP, QUIC and WebSocket on loopback, ports chosen by the
    /// system).
    #[arg(default_values = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0/ws"])]
    addrs: Vec<String>,
    /// The node's key file; created when it does not exist.
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    metrics: crate::metrics_http::MetricsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The peer's address with its /p2p/ part.
    addr: String,
    /// The request, as JSON.
    json: String,
}

pub(crate) async fn run(cmd: RrCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RrCommand::Serve(args) => serve(args).await,
        RrCommand::Call(args) => call(args).await,
    }
}

fn protocols() -> [(String, ProtocolSupport); 1] {
    [(PROTOCOL.to_owned(), ProtocolSupport::Full)]
}

/// Serves the JSON echo protocol on `node` until the node stops.
pub(crate) fn serve_json_echo(node: &Node) -> anyhow::Result<Behaviour<JsonCodec>> {
    let behaviour = Behaviour::<JsonCodec>::new(node, protocols(), Config::default())?;
    behaviour.serve(|peer, request| async move {
        serde_json::json!({ "peer": peer.to_string(), "request": request })
    })?;
    Ok(behaviour)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.metrics.start().await?;
    let key = match &args.key {
        Some(path) => Keypair::load_or_generate(path)
            .with_context(|| format!("cannot use the key file {}", path.display()))?,
        None => Keypair::generate(),
    };
    let node = Node::new(key, NodeConfig::default()).await?;
    let _behaviour = serve_json_echo(&node)?;
    println!("peer id: {}", node.peer_id());
    for text in &args.addrs {
        let addr: Multiaddr = text
            .parse()
            .with_context(|| format!("{text:?} is not a multiaddr"))?;
        let bound = node
            .listen(addr)
            .await
            .with_context(|| format!("cannot listen on {text}"))?;
        println!("listening on {}", bound.with(Protocol::P2p(node.peer_id())));
    }
    println!("answering {PROTOCOL}");
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let addr: Multiaddr = args
        .addr
        .parse()
        .with_context(|| format!("{:?} is not a multiaddr", args.addr))?;
    let peer = addr
        .peer_id()
        .context("the address needs a /p2p/<peer id> part")?;
    let request: serde_json::Value =
        serde_json::from_str(&args.json).context("the request is not valid JSON")?;
    let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let behaviour = Behaviour::<JsonCodec>::new(&node, protocols(), Config::default())?;
    node.add_address(peer, addr.without_peer_id());
    let response = behaviour
        .request(peer, request)
        .await
        .with_context(|| format!("request to {peer} failed"))?;
    println!("{response}");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
