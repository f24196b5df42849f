//! `missive queue listen|send`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use missive::queue::{Connection, Datagram, Listener};
use missive::transport::tls;

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Accept connections and print every datagram (or echo it back with --echo).
    Listen(ListenArgs),
    /// Connect, send one datagram per TEXT with the given tag, and close.
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Address to listen on, e.g. 127.0.0.1:7000 (port 0 picks a free port).
    addr: String,
    /// Send every datagram back unchanged instead of printing it.
    #[arg(long)]
    echo: bool,
    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Print one JSON object per datagram.
    #[arg(long)]
    json: bool,
    /// Stop after this many connections have been served (default: serve until interrupted).
    #[arg(long)]
    connections: Option<u64>,
    #[command(flatten)]
    metrics: crate::metrics_http::MetricsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Address to connect to, e.g. 127.0.0.1:7000.
    addr: String,
    /// The tag of every datagram sent.
    #[arg(long, default_value_t = 0)]
    tag: u16,
    /// Connect with TLS, trusting the certificates in this PEM file.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name to verify the server's certificate against (with --tls-ca).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Wait for one reply per datagram and print it (for an --echo listener).
    #[arg(long)]
    expect_replies: bool,
    /// The payloads, one datagram each.
    #[arg(required = true)]
    text: Vec<String>,
}

pub(crate) async fn run(cmd: QueueCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        QueueCommand::Listen(args) => listen(args).await,
        QueueCommand::Send(args) => send(args).await,
    }
}

async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    args.metrics.start().await?;
    let mut listener = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = tls::server_config(tls::load_certs(cert)?, tls::load_private_key(key)?)?;
            Listener::bind_tls(&args.addr, config).await
        }
        _ => Listener::bind_tcp(&args.addr).await,
    }
    .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    eprintln!(
        "listening on {local}{}{}",
        if args.tls_cert.is_some() {
            " (TLS)"
        } else {
            ""
        },
        if args.echo { ", echoing" } else { "" }
    );
    let mut served = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while args.connections.is_none_or(|n| served < n) {
        let conn = listener.accept().await?;
        served += 1;
        let (echo, json) = (args.echo, args.json);
        tasks.spawn(serve(conn, echo, json));
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(conn: Connection, echo: bool, json: bool) {
    let peer = conn.peer_addr().clone();
    eprintln!("{peer}: connected");
    let (mut reader, mut writer) = conn.split();
    let mut count = 0u64;
    while let Some(item) = reader.next().await {
        let datagram = match item {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{peer}: {e}");
                return;
            }
        };
        count += 1;
        if echo {
            if let Err(e) = writer.send(datagram).await {
                eprintln!("{peer}: {e}");
                return;
            }
        } else if json {
            let line = serde_json::json!({
                "peer": peer.to_string(),
                "tag": datagram.tag(),
                "payload": String::from_utf8_lossy(datagram.payload()),
                "len": datagram.payload().len(),
            });
            println!("{line}");
        } else {
            println!(
                "{peer} tag={} len={} {}",
                datagram.tag(),
                datagram.payload().len(),
                String::from_utf8_lossy(datagram.payload())
            );
        }
    }
    let _ = writer.close().await;
    eprintln!("{peer}: closed after {count} datagrams");
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut conn = match &args.tls_ca {
        Some(ca) => {
            let config: Arc<_> = tls::client_config(tls::load_certs(ca)?)?;
            Connection::tls_client(&args.addr, &args.server_name, config).await
        }
        None => Connection::tcp_client(&args.addr).await,
    }
    .with_context(|| format!("cannot connect to {}", args.addr))?;
    for text in &args.text {
        conn.writer()
            .send(Datagram::new(args.tag, text.clone()))
            .await?;
        if args.expect_replies {
            match conn.reader().next().await {
                Some(Ok(reply)) => println!(
                    "tag={} {}",
                    reply.tag(),
                    String::from_utf8_lossy(reply.payload())
                ),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the listener closed the connection before replying"),
            }
        }
    }
    conn.close().await?;
    eprintln!("sent {} datagram(s) with tag {}", args.text.len(), args.tag);
    Ok(ExitCode::SUCCESS)
}
