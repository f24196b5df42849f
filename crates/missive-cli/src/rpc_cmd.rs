//! `missive rpc serve` and `missive rpc call`: the echo protocol (protobuf, protosocket-prost
//! framing), so a protosocket-rpc peer built on the same messages can talk to either.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use missive::rpc::echo::{ClientCodec, EchoService, Request, ServerCodec};
use missive::rpc::{Client, ClientConfig, Server, ServerConfig};

#[derive(Debug, Subcommand)]
pub(crate) enum RpcCommand {
    /// Serve the echo protocol: a unary answer, or `stream_count` answers then End.
    Serve(ServeArgs),
    /// Call an echo server and print the answers.
    Call(CallArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(default_value = "127.0.0.1:7100")]
    addr: String,
    #[command(flatten)]
    metrics: crate::metrics_http::MetricsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The server's address.
    addr: String,
    /// The text to echo.
    text: String,
    /// Ask for this many streamed answers instead of one.
    #[arg(long)]
    stream: Option<u32>,
}

pub(crate) async fn run(cmd: RpcCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RpcCommand::Serve(args) => serve(args).await,
        RpcCommand::Call(args) => call(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.metrics.start().await?;
    let listener = missive::transport::tcp::bind(&args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    eprintln!("serving rpc echo on {}", listener.local_addr()?);
    let server = Server::new(ServerConfig::default());
    tokio::select! {
        served = server.serve_tcp(listener, |peer| {
            eprintln!("{peer}: connected");
            (ServerCodec::default(), EchoService)
        }) => served?,
        _ = tokio::signal::ctrl_c() => server.shutdown().await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let client: Client<Request, _> =
        Client::connect_tcp(&args.addr, ClientCodec::default(), ClientConfig::default())
            .await
            .with_context(|| format!("cannot connect to {}", args.addr))?;
    match args.stream {
        None => {
            let response = client.call(Request::unary(args.text.clone())).await?;
            println!("{}", String::from_utf8_lossy(&response.body));
        }
        Some(count) => {
            let mut responses = client
                .server_stream(Request::stream(args.text.clone(), count))
                .await?;
            let mut received = 0u32;
            while let Some(response) = responses.next().await {
                let response = response?;
                received += 1;
                println!("{received}: {}", String::from_utf8_lossy(&response.body));
            }
            eprintln!("stream ended after {received} answers");
        }
    }
    Ok(ExitCode::SUCCESS)
}
