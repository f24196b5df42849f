//! A missive node dials js-libp2p 3 in Node.js (`browser/reference-peer.mjs`: WebSocket, Noise,
//! `@chainsafe/libp2p-yamux`) on loopback: the other direction of `browser_js_libp2p.rs`. It
//! checks the connection's PeerId, pings three times, runs identify, echoes 10 B, 100 KiB and
//! 2 MiB on `/echo/1.0.0` (the 2 MiB one crosses many yamux windows both ways, written and read
//! at once), eight 64 KiB echoes at once on the one connection, and makes one JSON
//! request-response call.
//!
//! Needs Node.js and `npm ci` in `crates/missive-interop/browser` (not Chromium). With
//! `MISSIVE_BROWSER_TESTS=require` (`.ci/run` sets it) a missing piece fails the test; elsewhere
//! the test says what is missing and how to install it, and skips.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use missive::p2p::negotiate::Version;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, PeerId, Protocol};
use missive::protocols::{identify, ping};
use missive::request_response::{self as rr, ProtocolSupport};
use missive::stream::Control;
use missive_interop::browser::{
    self, ECHO_PROTOCOL, JSON_PROTOCOL, JSON_TEXT, JsonRequest, JsonResponse, echo_pattern,
    sha256_hex,
};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Deadline of the whole test: the peer's start, every step and its stop.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// How long the reference peer lives at most, so that it stops even if the test is killed.
const PEER_LIFETIME_S: u64 = 60;
/// Deadline of one ping round trip.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The echoes one at a time, in bytes: one frame, within one yamux window (256 KiB), eight windows.
const ECHO_SIZES: [usize; 3] = [10, 100 * 1024, 2 * 1024 * 1024];
/// The echoes at once: eight streams of about 64 KiB, each a different size and so a different
/// pattern, so that bytes crossing between streams show.
const CONCURRENT_ECHOES: usize = 8;
const CONCURRENT_ECHO_SIZE: usize = 64 * 1024;

/// `false` when the test is to be skipped; panics with `MISSIVE_BROWSER_TESTS=require` when a
/// prerequisite is missing.
fn node_js_available() -> bool {
    if browser::skip_requested() {
        eprintln!(
            "{}=skip: the Node.js js-libp2p test is skipped",
            browser::SKIP_VARIABLE
        );
        return false;
    }
    match browser::check_node_prerequisites() {
        Ok(()) => true,
        Err(missing) if browser::required() => {
            panic!("the Node.js js-libp2p test cannot run: {missing}")
        }
        Err(missing) => {
            eprintln!(
                "SKIPPED: the Node.js js-libp2p test cannot run here: {missing}\n\
                 ({}=require makes this a failure; .ci/run sets it)",
                browser::SKIP_VARIABLE
            );
            false
        }
    }
}

/// `node reference-peer.mjs`, killed when dropped; closing its stdin stops it too.
struct ReferencePeer {
    child: Child,
    stdin: Option<ChildStdin>,
    peer_id: PeerId,
    address: Multiaddr,
    stderr: Arc<Mutex<String>>,
}

impl ReferencePeer {
    async fn start() -> anyhow::Result<Self> {
        let mut child = Command::new("node")
            .arg("reference-peer.mjs")
            .arg("--lifetime-s")
            .arg(PEER_LIFETIME_S.to_string())
            .current_dir(browser::browser_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting node reference-peer.mjs")?;
        let stdin = child.stdin.take();
        // Kept for failure messages; read all along so the peer never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().context("the peer's stdout")?;
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the peer ended without printing its addresses"))?;
        let announced: Announced = serde_json::from_str(&line)
            .with_context(|| format!("the peer's line is not the expected JSON: {line}"))?;
        let peer_id: PeerId = announced
            .peer_id
            .parse()
            .map_err(|e| anyhow!("the peer's PeerId {}: {e:?}", announced.peer_id))?;
        let mut address: Multiaddr = announced
            .addresses
            .iter()
            .find(|a| a.contains("/ws"))
            .ok_or_else(|| anyhow!("the peer announces no /ws address: {line}"))?
            .parse()
            .map_err(|e| anyhow!("the peer's address: {e:?}"))?;
        if address.peer_id().is_none() {
            address.push(Protocol::P2p(peer_id));
        }
        Ok(ReferencePeer {
            child,
            stdin,
            peer_id,
            address,
            stderr,
        })
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes the peer's stdin and waits for it to exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().await?;
        ensure!(
            status.success(),
            "the peer exited with {status}; stderr:\n{}",
            self.stderr()
        );
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Announced {
    peer_id: String,
    addresses: Vec<String>,
}

/// Echoes `sent` on a new `/echo/1.0.0` stream, writing and reading at once, then closes the
/// write side and reads to the end; returns what came back.
async fn echo(control: &Control, peer: PeerId, sent: &[u8]) -> anyhow::Result<Vec<u8>> {
    let stream = control
        .open_stream(peer, ECHO_PROTOCOL)
        .await
        .context("opening an echo stream")?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        for chunk in sent.chunks(16 * 1024) {
            writer.write_all(chunk).await?;
        }
        writer.shutdown().await
    };
    let read = async {
        let mut received = Vec::with_capacity(sent.len());
        reader.read_to_end(&mut received).await.map(|_| received)
    };
    let (written, received) = tokio::join!(write, read);
    written.with_context(|| format!("{} B echo: writing", sent.len()))?;
    received.with_context(|| format!("{} B echo: reading", sent.len()))
}

/// Echoes `size` bytes of the agreed pattern and checks every byte came back.
async fn echo_checked(control: &Control, peer: PeerId, size: usize) -> anyhow::Result<Duration> {
    let sent = echo_pattern(size);
    let start = Instant::now();
    let received = echo(control, peer, &sent).await?;
    let took = start.elapsed();
    ensure!(
        received.len() == size,
        "{size} B echo: {} B came back",
        received.len()
    );
    if received != sent {
        let first = received.iter().zip(&sent).position(|(a, b)| a != b);
        bail!(
            "{size} B echo: bytes differ from offset {first:?} (sent sha256 {}, received {})",
            sha256_hex(&sent),
            sha256_hex(&received)
        );
    }
    Ok(took)
}

async fn dial_and_check(node: &Node, peer: &ReferencePeer) -> anyhow::Result<()> {
    let start = Instant::now();
    let connected = node.dial(peer.address.clone()).await.context("dialing")?;
    let dial_time = start.elapsed();
    ensure!(
        connected == peer.peer_id,
        "the connection authenticated {connected}, the peer is {}",
        peer.peer_id
    );
    ensure!(
        node.is_connected(&peer.peer_id),
        "no connection after the dial"
    );
    let control = node.stream_control();

    let mut rtts = Vec::new();
    for round in 0..3 {
        let rtt = ping::ping(&control, peer.peer_id, PING_TIMEOUT)
            .await
            .with_context(|| format!("ping {round}"))?;
        rtts.push(rtt);
    }

    let info = identify::request(&control, peer.peer_id)
        .await
        .context("identify")?;
    ensure!(
        info.peer_id() == peer.peer_id,
        "identify's key is {}",
        info.peer_id()
    );
    ensure!(
        info.agent_version.starts_with("js-libp2p/"),
        "identify's agent {:?}",
        info.agent_version
    );
    for protocol in [
        ping::PROTOCOL.as_str(),
        identify::PROTOCOL.as_str(),
        ECHO_PROTOCOL.as_str(),
        JSON_PROTOCOL,
    ] {
        ensure!(
            info.protocols.iter().any(|p| p.as_str() == protocol),
            "identify lists {:?}, not {protocol}",
            info.protocols
        );
    }
    let listening = peer.address.without_peer_id();
    ensure!(
        info.listen_addrs
            .iter()
            .any(|a| a.without_peer_id() == listening),
        "identify's listen addresses {:?} lack {listening}",
        info.listen_addrs
    );

    let mut echo_times = Vec::new();
    for size in ECHO_SIZES {
        echo_times.push((size, echo_checked(&control, peer.peer_id, size).await?));
    }

    let start = Instant::now();
    let concurrent = (0..CONCURRENT_ECHOES)
        .map(|i| echo_checked(&control, peer.peer_id, CONCURRENT_ECHO_SIZE + 7 * i));
    for (i, result) in futures::future::join_all(concurrent)
        .await
        .into_iter()
        .enumerate()
    {
        result.with_context(|| format!("concurrent echo {i}"))?;
    }
    let concurrent_time = start.elapsed();

    // Negotiated before the request is written: js-libp2p (`@libp2p/utils` 7.4) loses a stream
    // whose lazy proposal, request and close arrive together (its multistream-select puts the
    // request back on a read side already closed, and resets the stream or never answers).
    let json = rr::Behaviour::<rr::json::Codec<JsonRequest, JsonResponse>>::new(
        node,
        [(JSON_PROTOCOL.to_owned(), ProtocolSupport::Outbound)],
        rr::Config::default().with_version(Version::V1),
    )?;
    let request = JsonRequest {
        text: JSON_TEXT.to_owned(),
    };
    let response = json
        .request(peer.peer_id, request.clone())
        .await
        .map_err(|e| anyhow!("the JSON request: {e}"))?;
    ensure!(
        response == JsonResponse::to(&request),
        "the JSON response {response:?} to {request:?}"
    );

    let echoes: Vec<String> = echo_times
        .iter()
        .map(|(size, took)| format!("{size} B {:.1} ms", took.as_secs_f64() * 1e3))
        .collect();
    eprintln!(
        "{} ({}): dial {:.1} ms, ping {:?}, echo {}, {CONCURRENT_ECHOES} × 64 KiB at once {:.1} ms",
        info.agent_version,
        peer.address,
        dial_time.as_secs_f64() * 1e3,
        rtts,
        echoes.join(", "),
        concurrent_time.as_secs_f64() * 1e3
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missive_dials_js_libp2p_over_websocket() {
    if !node_js_available() {
        return;
    }
    let run = async {
        let peer = ReferencePeer::start().await?;
        let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
        let checked = dial_and_check(&node, &peer).await;
        node.shutdown().await;
        if let Err(error) = checked {
            bail!("{error:#}\nthe peer's stderr:\n{}", peer.stderr());
        }
        peer.stop().await
    };
    let outcome = tokio::time::timeout(TEST_DEADLINE, run)
        .await
        .unwrap_or_else(|_| Err(anyhow!("the test did not end within {TEST_DEADLINE:?}")));
    if let Err(error) = outcome {
        panic!("{error:#}");
    }
}
