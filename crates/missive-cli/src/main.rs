//! The `missive` command-line tool: every missive capability for a person at a terminal.

mod bench_cmd;
mod demo;
mod demo_rpc;
mod metrics_http;
mod node_cmd;
mod progress;
mod queue_cmd;
mod rpc_cmd;
mod rr_cmd;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Typed message protocols between programs and peers.
#[derive(Debug, Parser)]
#[command(name = "missive", version, about, long_about = None)]
struct Cli {
    /// How log lines (RUST_LOG, e.g. `missive=debug`) are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The formats of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event, with its spans.
    Text,
    /// One JSON object per event, with its fields and its spans' fields.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every layer on loopback and print a results table.
    Demo(demo::DemoArgs),
    /// The ordered message queue (connect-compatible): listen, send.
    #[command(subcommand)]
    Queue(queue_cmd::QueueCommand),
    /// Pipelined RPC (protosocket-compatible echo protocol): serve, call.
    #[command(subcommand)]
    Rpc(rpc_cmd::RpcCommand),
    /// Request-response on the node (rust-libp2p's JSON codec wire): serve, call.
    #[command(subcommand)]
    Rr(rr_cmd::RrCommand),
    /// A libp2p-compatible node that serves ping, identify and /echo/1.0.0; identify a peer.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Dial a libp2p peer and measure ping round trips.
    Ping(node_cmd::PingArgs),
    /// Side-by-side benchmarks against the systems missive replaces.
    Bench(bench_cmd::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Listen, print the node's PeerId and full addresses, serve ping, identify and /echo/1.0.0.
    Listen(node_cmd::ListenArgs),
    /// Dial a libp2p peer and print what it says about itself (agent, addresses, protocols).
    Identify(node_cmd::IdentifyArgs),
}

/// Logs to stderr, filtered by `RUST_LOG` (`warn` when unset): a comma-separated list of
/// `level` and `target=level` directives, e.g. `RUST_LOG=missive=debug,warn`.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => directives.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={directives:?} is not a list of target=level directives ({e}); logging warnings only");
            Targets::new().with_default(tracing::Level::WARN)
        }),
        Err(_) => Targets::new().with_default(tracing::Level::WARN),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => registry.with(layer.with_ansi(false)).init(),
        LogFormat::Json => registry
            .with(layer.json().with_current_span(true).with_span_list(true))
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = match cli.command {
        Command::Bench(args) => return report(bench_cmd::run(args)),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    report(runtime.block_on(async move {
        match command {
            Command::Demo(args) => demo::run(args).await,
            Command::Queue(cmd) => queue_cmd::run(cmd).await,
            Command::Rpc(cmd) => rpc_cmd::run(cmd).await,
            Command::Rr(cmd) => rr_cmd::run(cmd).await,
            Command::Node(NodeCommand::Listen(args)) => node_cmd::listen(args).await,
            Command::Node(NodeCommand::Identify(args)) => node_cmd::identify(args).await,
            Command::Ping(args) => node_cmd::ping(args).await,
            Command::Bench(_) => unreachable!("handled before the runtime starts"),
        }
    }))
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
