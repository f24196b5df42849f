//! A missive node and the browser page that talks to it, for a person to open.
//!
//! ```text
//! (cd crates/missive-interop/browser && npm ci && npm run build)
//! cargo run -p missive-interop --example serve_page            # until Ctrl-C
//! cargo run -p missive-interop --example serve_page -- --port 8080 --for-seconds 300
//! ```
//!
//! It starts a node on loopback listening on WebSocket and WebTransport, serving `/echo/1.0.0`
//! and the page's JSON protocol, serves the bundled page (`browser/dist`) on 127.0.0.1 and prints
//! the page's URL with the node's addresses in its query. Opened in Chromium, the page dials the
//! node over each transport with js-libp2p and shows the ping time, what identify said, the
//! echoes and the JSON response.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use missive_interop::browser::{self, BrowserPeer, BrowserTransport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head the page server reads; a browser's GET is well under it.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Deadline for a request head to arrive and its answer to be written.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0u16;
    let mut lifetime = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().context("--port")?,
            "--for-seconds" => {
                lifetime = Some(Duration::from_secs(value.parse().context("--for-seconds")?))
            }
            _ => bail!("usage: serve_page [--port N] [--for-seconds N]"),
        }
    }
    let dist = browser::browser_dir().join("dist");
    if !dist.join("page.js").is_file() {
        bail!(
            "no bundled page in {}: {}",
            dist.display(),
            browser::install_hint()
        );
    }

    let mut started = None;
    for transports in [
        &[BrowserTransport::WebSocket, BrowserTransport::WebTransport][..],
        &[BrowserTransport::WebSocket][..],
    ] {
        match BrowserPeer::start(transports).await {
            Ok(peer) => {
                started = Some(peer);
                break;
            }
            Err(error) => eprintln!("could not listen on {transports:?}: {error:#}"),
        }
    }
    let peer = started.context("the node could not listen on any browser transport")?;
    println!("node {}", peer.node().peer_id());
    let mut query = Vec::new();
    for (transport, address) in peer.dial_addresses() {
        println!("  {:<13} {address}", transport.name());
        query.push(format!("{}={address}", transport.name()));
    }

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!(
        "http://{}/index.html?{}",
        listener.local_addr()?,
        query.join("&")
    );
    println!("open {url}");

    let serving = async {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(error) => {
                    // Out of descriptors, say: the page server waits and goes on.
                    eprintln!("page server accept: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let dist = dist.clone();
            tokio::spawn(async move {
                if let Err(error) = tokio::time::timeout(REQUEST_DEADLINE, answer(socket, &dist))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("request timed out")))
                {
                    eprintln!("page request: {error:#}");
                }
            });
        }
    };
    let stop = async {
        match lifetime {
            Some(lifetime) => tokio::time::sleep(lifetime).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = serving => {}
        () = stop => {}
    }
    peer.shutdown().await;
    Ok(())
}

/// Answers one GET for a file of `dist` and closes: the page is two files, so a file server
/// of a few lines does instead of an HTTP framework.
async fn answer(mut socket: TcpStream, dist: &Path) -> anyhow::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            socket
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)])
        .into_owned();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let file = match path {
        "/" | "/index.html" => Some(("index.html", "text/html; charset=utf-8")),
        "/page.js" => Some(("page.js", "text/javascript; charset=utf-8")),
        "/page.js.map" => Some(("page.js.map", "application/json")),
        _ => None,
    };
    let body = match (method, file) {
        ("GET", Some((name, kind))) => tokio::fs::read(PathBuf::from(dist).join(name))
            .await
            .ok()
            .map(|b| (b, kind)),
        _ => None,
    };
    match body {
        Some((body, kind)) => {
            let header = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(header.as_bytes()).await?;
            socket.write_all(&body).await?;
        }
        None => {
            socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?
        }
    }
    socket.shutdown().await?;
    Ok(())
}
