//! js-libp2p in headless Chromium against a missive node.
//!
//! [`BrowserPeer`] is a missive node that serves what the page in `browser/` (next to this
//! crate's `Cargo.toml`) asks of it: ping and identify (every node has them), `/echo/1.0.0` with
//! [`Control::accept`](missive::stream::Control::accept) and a JSON request-response protocol.
//! [`run_page`] runs the page in Chromium through `browser/run.mjs` against the node's addresses
//! and returns what the page reported, as [`PageResults`].
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use missive_interop::browser::{BrowserPeer, BrowserTransport, run_page};
//!
//! let peer = BrowserPeer::start(&[BrowserTransport::WebSocket]).await?;
//! let run = run_page(&peer.dial_addresses()).await?;
//! assert!(run.results.transports["ws"].ok);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, Protocol};
use missive::request_response::{self as rr, ProtocolSupport};
use missive::stream::{Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The echo protocol the page uses.
pub const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
/// The JSON request-response protocol the page uses.
pub const JSON_PROTOCOL: &str = "/missive/browser-json/1.0.0";
/// The sizes the page echoes, in bytes.
pub const ECHO_SIZES: [usize; 3] = [10, 1024, 100 * 1024];
/// The text of the page's JSON request.
pub const JSON_TEXT: &str = "hello from the browser";
/// Largest echo the node takes on one stream; the page sends at most 100 KiB.
const MAX_ECHO: usize = 1024 * 1024;
/// Deadline of one echo stream, first byte to close.
const ECHO_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline of one run of the page: Chromium's start, both transports' steps and its exit.
const RUN_DEADLINE: Duration = Duration::from_secs(50);
/// What the runner gives the page to finish (less than [`RUN_DEADLINE`], so the page's own
/// timeout is what reports a hang, with the page's console).
const PAGE_TIMEOUT_MS: u64 = 40_000;
/// The environment variable that, set to `skip`, skips the browser tests, and set to `require`,
/// makes a missing browser or npm package a failure instead of a skip.
pub const SKIP_VARIABLE: &str = "MISSIVE_BROWSER_TESTS";

/// The bytes the page sends in an echo of `size` bytes: the same pattern as `echoPattern` in
/// `browser/src/page.js`.
pub fn echo_pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) + size.wrapping_mul(7) + (i >> 8)) as u8)
        .collect()
}

/// Lowercase hex SHA-256 of `bytes`, as the page writes it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The page's JSON request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRequest {
    /// Any text.
    pub text: String,
}

/// The node's JSON response: the request's text upper-cased, and its length in characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonResponse {
    /// `text` upper-cased.
    pub upper: String,
    /// The number of characters of `text`.
    pub length: usize,
}

impl JsonResponse {
    /// The answer to `request`.
    pub fn to(request: &JsonRequest) -> Self {
        JsonResponse {
            upper: request.text.to_uppercase(),
            length: request.text.chars().count(),
        }
    }
}

type JsonCodec = rr::json::Codec<JsonRequest, JsonResponse>;

/// A transport the page dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BrowserTransport {
    /// Plain WebSocket, `/tcp/N/ws`.
    WebSocket,
    /// WebTransport, `/udp/N/quic-v1/webtransport/certhash/…`.
    WebTransport,
}

impl BrowserTransport {
    /// The name the page and the runner use for it (`ws`, `webtransport`).
    pub fn name(self) -> &'static str {
        match self {
            BrowserTransport::WebSocket => "ws",
            BrowserTransport::WebTransport => "webtransport",
        }
    }

    /// The loopback address the node listens on for it, port chosen by the system.
    pub fn listen_address(self) -> &'static str {
        match self {
            BrowserTransport::WebSocket => "/ip4/127.0.0.1/tcp/0/ws",
            BrowserTransport::WebTransport => "/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
        }
    }
}

/// What the echo handler received on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoedStream {
    /// Bytes received (and written back).
    pub length: usize,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
}

/// A missive node serving the page's protocols on loopback.
#[derive(Debug)]
pub struct BrowserPeer {
    node: Node,
    addresses: Vec<(BrowserTransport, Multiaddr)>,
    echoed: Arc<Mutex<Vec<EchoedStream>>>,
    _json: rr::Behaviour<JsonCodec>,
    echo_task: tokio::task::JoinHandle<()>,
}

impl BrowserPeer {
    /// Starts a node listening on each of `transports` on 127.0.0.1.
    pub async fn start(transports: &[BrowserTransport]) -> anyhow::Result<Self> {
        let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
        let echoed = Arc::new(Mutex::new(Vec::new()));
        let mut incoming = node.stream_control().accept(ECHO_PROTOCOL)?;
        let record = echoed.clone();
        let echo_task = tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                let record = record.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(received)) =
                        tokio::time::timeout(ECHO_DEADLINE, echo(stream)).await
                    {
                        let entry = EchoedStream {
                            length: received.len(),
                            sha256: sha256_hex(&received),
                        };
                        record.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
                    }
                });
            }
        });
        let json = rr::Behaviour::<JsonCodec>::new(
            &node,
            [(JSON_PROTOCOL.to_owned(), ProtocolSupport::Full)],
            rr::Config::default(),
        )?;
        json.serve(|_peer, request| async move { JsonResponse::to(&request) })?;

        let mut addresses = Vec::new();
        for &transport in transports {
            let wanted: Multiaddr = transport.listen_address().parse()?;
            let bound = node
                .listen(wanted)
                .await
                .with_context(|| format!("listening on {}", transport.listen_address()))?;
            let dialable = dialable_address(&node, transport, bound)?;
            addresses.push((transport, dialable));
        }
        Ok(BrowserPeer {
            node,
            addresses,
            echoed,
            _json: json,
            echo_task,
        })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The address the page dials for `transport`, ending in `/p2p/<peer id>`.
    pub fn address(&self, transport: BrowserTransport) -> Option<&Multiaddr> {
        self.addresses
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| a)
    }

    /// Every transport's dial address.
    pub fn dial_addresses(&self) -> Vec<(BrowserTransport, Multiaddr)> {
        self.addresses.clone()
    }

    /// What the echo handler received, one entry per finished stream.
    pub fn echoed(&self) -> Vec<EchoedStream> {
        self.echoed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the node.
    pub async fn shutdown(self) {
        self.echo_task.abort();
        self.node.shutdown().await;
    }
}

/// The listen address as a browser dials it: for WebTransport, with the certificate hashes the
/// node announces; always with `/p2p/<peer id>`.
fn dialable_address(
    node: &Node,
    transport: BrowserTransport,
    bound: Multiaddr,
) -> anyhow::Result<Multiaddr> {
    let mut address = bound;
    if transport == BrowserTransport::WebTransport && !address.to_string().contains("/certhash/") {
        let prefix = address.to_string();
        address = node
            .listen_addrs()
            .into_iter()
            .find(|a| {
                let text = a.to_string();
                text.starts_with(&prefix) && text.contains("/certhash/")
            })
            .ok_or_else(|| anyhow!("the node announces no certhash for {prefix}"))?;
    }
    if address.peer_id().is_none() {
        address.push(Protocol::P2p(node.peer_id()));
    }
    Ok(address)
}

/// Writes back everything read until the page closes its side, and returns what it read.
async fn echo(mut stream: Stream) -> std::io::Result<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.shutdown().await?;
            return Ok(received);
        }
        if received.len() + n > MAX_ECHO {
            return Err(std::io::Error::other("echo larger than the test's limit"));
        }
        received.extend_from_slice(&buf[..n]);
        stream.write_all(&buf[..n]).await?;
    }
}

/// The folder of the page, its bundle and its runner.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The Chromium binary: `MISSIVE_CHROMIUM` or Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("MISSIVE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// How to install what the browser tests need, for the failure message.
pub fn install_hint() -> String {
    format!(
        "install Chromium and Node.js (Debian: `apt-get install -y chromium nodejs npm`), then \
         `npm ci && npm run build` in {}; or set {SKIP_VARIABLE}=skip to skip the browser tests",
        browser_dir().display()
    )
}

/// `Err` with what is missing when Chromium, Node.js or the npm packages are absent.
pub fn check_prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    if !chromium_path().is_file() {
        missing.push(format!("Chromium ({})", chromium_path().display()));
    }
    missing.extend(missing_node_pieces(&[
        "playwright-core",
        "esbuild",
        "libp2p",
    ]));
    missing_message(missing)
}

/// The npm packages `browser/reference-peer.mjs` imports.
const REFERENCE_PEER_PACKAGES: [&str; 6] = [
    "libp2p",
    "@libp2p/websockets",
    "@chainsafe/libp2p-noise",
    "@chainsafe/libp2p-yamux",
    "@libp2p/ping",
    "@libp2p/identify",
];

/// `Err` with what is missing when Node.js or the npm packages of the reference peer
/// (`browser/reference-peer.mjs`) are absent; Chromium is not needed for it.
pub fn check_node_prerequisites() -> Result<(), String> {
    missing_message(missing_node_pieces(&REFERENCE_PEER_PACKAGES))
}

/// Node.js, when it does not run, and each of `packages` not in `browser/node_modules`.
fn missing_node_pieces(packages: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    let node_runs = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_runs {
        missing.push("Node.js (`node`)".to_owned());
    }
    let modules = browser_dir().join("node_modules");
    for package in packages {
        if !modules.join(package).is_dir() {
            missing.push(format!("the npm package {package} ({})", modules.display()));
        }
    }
    missing
}

fn missing_message(missing: Vec<String>) -> Result<(), String> {
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing: {}; {}",
            missing.join(", "),
            install_hint()
        ))
    }
}

/// `true` when the browser tests are told to skip (`MISSIVE_BROWSER_TESTS=skip`).
pub fn skip_requested() -> bool {
    std::env::var(SKIP_VARIABLE).is_ok_and(|v| v == "skip")
}

/// `true` when the browser tests must run (`MISSIVE_BROWSER_TESTS=require`).
pub fn required() -> bool {
    std::env::var(SKIP_VARIABLE).is_ok_and(|v| v == "require")
}

/// Bundles the page into `browser/dist` (`node build.mjs`), once per process, so the page
/// tested is the page in the source tree.
pub fn build_bundle() -> anyhow::Result<()> {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return Ok(());
    }
    let output = std::process::Command::new("node")
        .arg("build.mjs")
        .current_dir(browser_dir())
        .output()
        .context("running node build.mjs")?;
    if !output.status.success() {
        bail!(
            "the page's bundle did not build: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    *built = true;
    Ok(())
}

/// One run of the page: what the runner printed and how it ended.
#[derive(Debug)]
pub struct PageRun {
    /// The runner's exit status (0: the page finished).
    pub status: i32,
    /// What the page reported.
    pub results: PageResults,
    /// The runner's stderr (the page's console when something failed).
    pub stderr: String,
    /// How long the runner took.
    pub timings: RunnerTimings,
}

/// What the page writes into `window.results`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageResults {
    /// Every case has ended.
    pub done: bool,
    /// Every case passed the page's own checks.
    pub ok: bool,
    /// Chromium's user agent.
    #[serde(default)]
    pub user_agent: String,
    /// The browser node's PeerId.
    #[serde(default)]
    pub browser_peer: Option<String>,
    /// One entry per transport dialed (`ws`, `webtransport`).
    pub transports: BTreeMap<String, TransportResults>,
    /// Failures outside a transport's steps.
    pub errors: Vec<String>,
}

/// The page's results for one transport.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportResults {
    /// Every step passed the page's checks.
    pub ok: bool,
    /// One line per failed step.
    pub errors: Vec<String>,
    /// The address dialed.
    #[serde(default)]
    pub address: String,
    /// The connection.
    pub dial: Option<DialResults>,
    /// The ping.
    pub ping: Option<PingResults>,
    /// What identify told the page.
    pub identify: Option<IdentifyResults>,
    /// The echoes, in [`ECHO_SIZES`] order.
    #[serde(default)]
    pub echo: Vec<EchoResults>,
    /// The JSON request and its response.
    pub json: Option<JsonResults>,
}

/// The page's connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DialResults {
    /// Milliseconds from dial to connection.
    pub ms: f64,
    /// The PeerId the connection authenticated.
    pub remote_peer: String,
    /// The address the connection is on.
    pub remote_addr: String,
    /// The muxer (`/yamux/1.0.0`; none on WebTransport).
    pub multiplexer: Option<String>,
    /// The security protocol (`/noise`).
    pub encryption: Option<String>,
}

/// The page's ping.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingResults {
    /// js-libp2p's round-trip time, whole milliseconds (0 is possible on loopback).
    pub rtt_ms: f64,
    /// The page's own timing of the ping call, fractional milliseconds.
    pub measured_ms: f64,
}

/// What identify returned to the page.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifyResults {
    /// The PeerId of the key the node sent.
    pub peer_id: String,
    /// The node's agent version.
    pub agent_version: Option<String>,
    /// The node's protocol version.
    pub protocol_version: Option<String>,
    /// The protocols the node listed.
    pub protocols: Vec<String>,
    /// The node's listen addresses.
    pub listen_addrs: Vec<String>,
    /// The address the node sees the page at.
    pub observed_addr: Option<String>,
}

/// One echo as the page saw it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EchoResults {
    /// Bytes sent.
    pub size: usize,
    /// Bytes received.
    pub received_length: usize,
    /// SHA-256 of what was sent.
    pub sent_sha256: String,
    /// SHA-256 of what came back.
    pub received_sha256: String,
    /// The page compared them byte for byte.
    pub equal: bool,
    /// Milliseconds from opening the stream to the end of the echo.
    pub ms: f64,
}

/// The page's JSON call.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonResults {
    /// What it sent.
    pub request: JsonRequest,
    /// What it received.
    pub response: JsonResponse,
}

/// How long the runner's parts took, in milliseconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerTimings {
    /// Starting Chromium.
    pub launch_ms: u64,
    /// Loading the page until its results were done.
    pub page_ms: u64,
    /// Everything, the browser's exit included.
    pub total_ms: u64,
}

#[derive(Deserialize)]
struct RunnerLine {
    status: i32,
    #[serde(default)]
    timings: RunnerTimings,
    results: Option<PageResults>,
}

/// Runs the page in headless Chromium against `addresses` (one per transport) and returns its
/// results. Fails with the runner's output when the runner fails or prints no results.
pub async fn run_page(addresses: &[(BrowserTransport, Multiaddr)]) -> anyhow::Result<PageRun> {
    run_page_with(addresses, None).await
}

/// [`run_page`], also saving a screenshot of the finished page to `screenshot`.
pub async fn run_page_with(
    addresses: &[(BrowserTransport, Multiaddr)],
    screenshot: Option<&Path>,
) -> anyhow::Result<PageRun> {
    // One Chromium at a time: two on two cores make each slow enough to miss deadlines.
    static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_BROWSER.lock().await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg("run.mjs")
        .arg("--timeout-ms")
        .arg(PAGE_TIMEOUT_MS.to_string())
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (transport, address) in addresses {
        command
            .arg(format!("--{}", transport.name()))
            .arg(address.to_string());
    }
    if let Some(path) = screenshot {
        command.arg("--screenshot").arg(path);
    }
    let child = command.spawn().context("starting node run.mjs")?;
    let output = tokio::time::timeout(RUN_DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("the runner did not end within {RUN_DEADLINE:?}"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            anyhow!(
                "the runner printed no results (exit {:?}); stderr:\n{stderr}",
                output.status.code()
            )
        })?;
    let parsed: RunnerLine = serde_json::from_str(line)
        .with_context(|| format!("the runner's line is not the expected JSON: {line}"))?;
    let results = parsed.results.ok_or_else(|| {
        anyhow!(
            "the page left no results (runner status {}); stderr:\n{stderr}",
            parsed.status
        )
    })?;
    Ok(PageRun {
        status: parsed.status,
        results,
        stderr,
        timings: parsed.timings,
    })
}
