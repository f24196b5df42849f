//! `missive demo`: every layer on loopback, then a results table.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use missive::queue::{Connection, Datagram, Listener};
use missive::transport::tls::SelfSigned;

use crate::table;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Datagrams to send per queue transport.
    #[arg(long, default_value_t = 1_000_000)]
    count: u32,
    /// Print one JSON object per result instead of the table.
    #[arg(long)]
    json: bool,
}

/// One line of the results table.
struct Outcome {
    layer: &'static str,
    transport: &'static str,
    exchanged: u64,
    unit: &'static str,
    elapsed: Duration,
    passed: bool,
    check: String,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut outcomes = Vec::new();
    outcomes.push(queue_over("tcp", args.count).await?);
    outcomes.push(queue_over("tls", args.count).await?);

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

    let progress = ProgressBar::new(u64::from(count)).with_style(
        ProgressStyle::with_template("queue/{msg:3} {bar:40} {pos}/{len} datagrams")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message(transport);
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

/// The i-th demo datagram: a tag and a 64-byte payload that both depend on `i`.
fn nth(i: u32) -> Datagram {
    let mut payload = [0u8; 64];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    payload[4..].fill((i % 251) as u8);
    Datagram::new((i % 65_536) as u16, payload.to_vec())
}
