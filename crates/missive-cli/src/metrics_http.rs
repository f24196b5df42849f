//! `--metrics ADDR`: the OpenMetrics text of the library's default registry at `GET /metrics`,
//! over HTTP/1.1, one request per connection.
//!
//! One route and one method do not need an HTTP framework: the request head is parsed by
//! httparse (hyper's parser), read under a deadline and a size cap, and at most 16 scrapes
//! are served at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a scraper has to send its request and take the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Scrapes served at once; more wait in the listen backlog.
const AT_ONCE: usize = 16;

/// The `--metrics` option of the long-running commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Serve OpenMetrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

impl MetricsArgs {
    /// Starts serving when asked; prints where.
    pub(crate) async fn start(&self) -> anyhow::Result<()> {
        if let Some(addr) = &self.metrics {
            let bound = spawn(addr).await?;
            eprintln!("metrics on http://{bound}/metrics");
        }
        Ok(())
    }
}

/// Binds `addr` and serves scrapes on a task of their own until the process ends.
pub(crate) async fn spawn(addr: &str) -> anyhow::Result<SocketAddr> {
    // Every layer's families are registered now, so the first scrape already lists them all.
    let _ = missive::metrics::RpcMetrics::default();
    let _ = missive::metrics::QueueMetrics::default();
    let _ = missive::metrics::NodeMetrics::default();
    let _ = missive::metrics::RrMetrics::default();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(bound)
}

async fn serve(listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(DEADLINE, answer(stream)).await;
                    drop(slot);
                });
            }
            Err(e) => {
                eprintln!("metrics: accept failed: {e}");
                // Out of descriptors, most likely: wait before trying again.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let (status, body) = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => break route(request.method, request.path),
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                break ("431 Request Header Fields Too Large", String::new());
            }
            Err(_) => break ("400 Bad Request", String::new()),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn route(method: Option<&str>, path: Option<&str>) -> (&'static str, String) {
    let path = path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    match (method, path) {
        (Some("GET"), "/metrics") => ("200 OK", missive::metrics::encode_default()),
        (Some(_), "/metrics") => ("405 Method Not Allowed", String::new()),
        _ => ("404 Not Found", String::new()),
    }
}
