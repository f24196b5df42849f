//! Load checks, not part of the normal test run:
//!
//! ```sh
//! cargo test --release -p missive --test soak -- --ignored --nocapture
//! ```
//!
//! - `soak_node_holds_5000_connections_while_serving_requests`: 5,000 client nodes each hold one
//!   connection to one server node (one node per connection, because a node keeps one connection
//!   per peer and the server at most 8 per peer); 500 of them then send request-response requests,
//!   8 at a time each.
//! - `soak_rpc_server_with_2000_connections_and_64_calls_in_flight_each`: 2,000 rpc clients, each
//!   with 64 calls in flight for 10 s.
//!
//! Each server runs in a child process (this test binary again, with `MISSIVE_SOAK_ROLE` set),
//! so its resident memory (VmRSS in /proc/self/status) is its own: the figures printed are the
//! server's memory before and after, per connection, the failures (which must be zero) and the
//! rate. The two checks run one after the other. About 10,000 file descriptors are used per
//! process; the test checks the limit (`ulimit -n`) first and says so when it is too low.
//! `MISSIVE_SOAK_DIVISOR=10` divides the connection counts for a quick trial.
//!
//! One run on a shared 2-core machine (release build, `ulimit -n` 20,000): the node held 5,000
//! connections (0 dial failures, 2,300 dials/s) at 4.5 kB of server RSS each when idle and 6.1 kB
//! while 500 of them carried 100,000 requests (44,000 requests/s, 0 failures); the rpc server
//! held 2,000 connections at 9.9 kB each when idle and 33.9 kB with 64 calls in flight on each
//! (128,000 in flight, 448,000 calls/s, 0 failures).
#![cfg(all(feature = "rpc", feature = "json", feature = "tcp"))]

#[path = "support/rpc_wire.rs"]
mod rpc_wire;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, PeerId};
use missive::request_response::{Behaviour, Config, ProtocolSupport, json};
use missive::rpc::{Client, ClientConfig, Reply, Server, Service, Status};
use rpc_wire::{Msg, WireCodec};
use serde_json::{Value, json};

const NODE_CONNECTIONS: usize = 5_000;
const NODE_REQUESTERS: usize = 500;
const REQUESTS_EACH: usize = 200;
const REQUESTS_IN_FLIGHT_EACH: usize = 8;
const RPC_CONNECTIONS: usize = 2_000;
const RPC_IN_FLIGHT_EACH: usize = 64;
const RPC_LOAD: Duration = Duration::from_secs(10);
/// Dials and handshakes at once. The node admits 64 pending inbound handshakes and closes the
/// ones beyond; a client's dial can complete before the server's side of it, so the server's
/// count runs ahead of the clients': with 32 at once, 2 dials in 5,000 were refused.
const DIAL_CONCURRENCY: usize = 16;
/// Every soak ends by itself within this.
const SOAK_LIMIT: Duration = Duration::from_secs(300);
const ROLE: &str = "MISSIVE_SOAK_ROLE";
const PROTOCOL: &str = "/soak/rr/1";

type JsonCodec = json::Codec<Value, Value>;

/// `n` divided by `MISSIVE_SOAK_DIVISOR` (default 1), for a quick trial run of the soaks.
fn scale(n: usize) -> usize {
    let divisor: usize = std::env::var("MISSIVE_SOAK_DIVISOR")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    (n / divisor.max(1)).max(1)
}

/// The soaks measure memory: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
#[ignore = "load check, run by hand (see the file's docs)"]
fn soak_node_holds_5000_connections_while_serving_requests() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    check_fd_limit(scale(NODE_CONNECTIONS));
    let mut server = ServerProcess::spawn("node-server", "soak_role_node_server");
    let addr: Multiaddr = server.line("ADDR").parse().expect("multiaddr");
    let peer = addr.peer_id().expect("a /p2p/ address");
    let before = server.measure();
    runtime().block_on(async {
        let started = Instant::now();
        let (clients, dial_failures) = dial_nodes(&addr, scale(NODE_CONNECTIONS)).await;
        let dial_secs = started.elapsed().as_secs_f64();
        let idle = server.measure_at(clients.len());
        println!(
            "node: {} connections in {dial_secs:.1} s ({:.0}/s), {dial_failures} dial failures",
            clients.len(),
            clients.len() as f64 / dial_secs,
        );
        let started = Instant::now();
        let (ok, failed) = request_load(&clients[..scale(NODE_REQUESTERS)], peer).await;
        let load_secs = started.elapsed().as_secs_f64();
        let loaded = server.measure();
        println!(
            "node: {ok} requests answered, {failed} failed, {:.0} requests/s over {} connections \
             (while {} held)",
            ok as f64 / load_secs,
            scale(NODE_REQUESTERS),
            clients.len()
        );
        report("node", &before, &idle, &loaded);
        assert_eq!(dial_failures, 0, "dial failures");
        assert_eq!(
            idle.connections,
            scale(NODE_CONNECTIONS) as u64,
            "connections held"
        );
        assert_eq!(
            loaded.connections,
            scale(NODE_CONNECTIONS) as u64,
            "connections held under load"
        );
        assert_eq!(failed, 0, "request failures");
        assert_eq!(ok, (scale(NODE_REQUESTERS) * REQUESTS_EACH) as u64);
        drop(clients);
    });
    server.quit();
}

#[test]
#[ignore = "load check, run by hand (see the file's docs)"]
fn soak_rpc_server_with_2000_connections_and_64_calls_in_flight_each() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    check_fd_limit(scale(RPC_CONNECTIONS));
    let mut server = ServerProcess::spawn("rpc-server", "soak_role_rpc_server");
    let addr: std::net::SocketAddr = server.line("ADDR").parse().expect("socket address");
    let before = server.measure();
    runtime().block_on(async {
        let connects = futures_util::stream::iter(0..scale(RPC_CONNECTIONS))
            .map(|_| Client::connect_tcp(addr, WireCodec, ClientConfig::default()))
            .buffer_unordered(DIAL_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let connect_failures = connects.iter().filter(|c| c.is_err()).count();
        let clients: Vec<Client<Msg, Msg>> = connects.into_iter().filter_map(Result::ok).collect();
        // One call each, so that every connection is up on the server before measuring.
        let warm = futures_util::future::join_all(clients.iter().map(|c| c.call(Msg::body("w"))));
        let warm_failures = warm.await.iter().filter(|r| r.is_err()).count();
        let idle = server.measure_at(clients.len());
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let stop = started + RPC_LOAD;
        let mut loops = Vec::with_capacity(scale(RPC_CONNECTIONS) * RPC_IN_FLIGHT_EACH);
        for client in &clients {
            for i in 0..RPC_IN_FLIGHT_EACH {
                let (client, ok, failed) = (client.clone(), ok.clone(), failed.clone());
                loops.push(tokio::spawn(async move {
                    let body = bytes::Bytes::from(format!("call {i:>8}"));
                    while Instant::now() < stop {
                        match client.call(Msg::body(body.clone())).await {
                            Ok(r) if r.body == body => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
        }
        tokio::time::sleep(RPC_LOAD / 2).await;
        let loaded = server.measure();
        for l in loops {
            l.await.expect("call loop");
        }
        let secs = started.elapsed().as_secs_f64();
        let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
        println!(
            "rpc: {} connections, {connect_failures} connect failures, {warm_failures} failed \
             first calls",
            clients.len()
        );
        println!(
            "rpc: {ok} calls answered, {failed} failed, {:.0} calls/s with {} in flight",
            ok as f64 / secs,
            scale(RPC_CONNECTIONS) * RPC_IN_FLIGHT_EACH
        );
        report("rpc", &before, &idle, &loaded);
        assert_eq!(connect_failures + warm_failures, 0, "connect failures");
        assert_eq!(
            idle.connections,
            scale(RPC_CONNECTIONS) as u64,
            "connections served"
        );
        assert_eq!(failed, 0, "call failures");
        assert!(ok > 0);
        drop(clients);
    });
    server.quit();
}

/// The node server, when this binary runs as the child of the node soak.
#[test]
#[ignore = "run by soak_node_holds_5000_connections_while_serving_requests"]
fn soak_role_node_server() {
    if std::env::var(ROLE).as_deref() != Ok("node-server") {
        return;
    }
    runtime().block_on(async {
        let config = NodeConfig::default()
            .with_idle_timeout(Duration::from_secs(3600))
            .with_event_capacity(16);
        let node = Node::new(Keypair::generate(), config).await.expect("node");
        let server = Behaviour::<JsonCodec>::new(
            &node,
            [(PROTOCOL.to_owned(), ProtocolSupport::Inbound)],
            Config::default(),
        )
        .expect("rr");
        server
            .serve(|_peer, request: Value| async move { json!({ "echo": request }) })
            .expect("serve");
        let addr = node
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        println!("SOAK ADDR {addr}/p2p/{}", node.peer_id());
        let count = node.clone();
        serve_commands(move || count.connected_peers().len() as u64).await;
        drop(server);
        node.shutdown().await;
    });
}

/// The rpc server, when this binary runs as the child of the rpc soak.
#[test]
#[ignore = "run by soak_rpc_server_with_2000_connections_and_64_calls_in_flight_each"]
fn soak_role_rpc_server() {
    if std::env::var(ROLE).as_deref() != Ok("rpc-server") {
        return;
    }
    runtime().block_on(async {
        let listener = missive::transport::tcp::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("SOAK ADDR {}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let server = Server::default();
        let serving = server.clone();
        let accepting = tokio::spawn(async move {
            serving
                .serve_tcp(listener, move |_peer| {
                    count.fetch_add(1, Ordering::Relaxed);
                    (WireCodec, Echo)
                })
                .await
        });
        serve_commands(move || accepted.load(Ordering::Relaxed)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await;
        accepting.abort();
    });
}

/// The rpc service of the soak: echoes the body.
#[derive(Debug, Clone, Copy)]
struct Echo;

impl Service for Echo {
    type Request = Msg;
    type Response = Msg;
    type Unary = std::future::Ready<Result<Msg, Status>>;
    type Stream = futures_util::stream::Empty<Result<Msg, Status>>;

    fn call(
        &mut self,
        request: Msg,
        _context: &mut missive::rpc::CallContext<Msg>,
    ) -> Reply<Self::Unary, Self::Stream> {
        Reply::Unary(std::future::ready(Ok(Msg::body(request.body))))
    }
}

/// Answers `MEASURE` lines on stdin with `SOAK MEASURE <rss kB> <peak kB> <connections>` until
/// `QUIT`, the end of stdin, or the soak's time limit.
async fn serve_commands(connections: impl Fn() -> u64 + Send + 'static) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + SOAK_LIMIT;
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match line.trim() {
            "MEASURE" => {
                let (rss, peak) = memory_kb();
                println!("SOAK MEASURE {rss} {peak} {}", connections());
            }
            _ => break,
        }
    }
}

/// (VmRSS, VmHWM) of this process in kB.
fn memory_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A server's memory and connection count at one moment.
#[derive(Debug, Clone, Copy)]
struct Measure {
    rss_kb: u64,
    peak_kb: u64,
    connections: u64,
}

fn report(layer: &str, before: &Measure, idle: &Measure, loaded: &Measure) {
    let n = idle.connections.max(1);
    let per = |m: &Measure| (m.rss_kb.saturating_sub(before.rss_kb) * 1024) as f64 / n as f64;
    println!(
        "{layer}: server RSS {} kB before, {} kB with {n} connections idle ({:.1} kB per \
         connection), {} kB under load ({:.1} kB per connection), peak {} kB",
        before.rss_kb,
        idle.rss_kb,
        per(idle) / 1024.0,
        loaded.rss_kb,
        per(loaded) / 1024.0,
        loaded.peak_kb
    );
}

/// A server child process, spoken to by lines on stdin and stdout.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    fn spawn(role: &str, test: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// The rest of the next line that starts with `SOAK <key> `.
    fn line(&mut self, key: &str) -> String {
        let prefix = format!("SOAK {key} ");
        for _ in 0..1000 {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read the server");
            assert!(n > 0, "the server process ended before saying {key}");
            // The test harness may print `test NAME ... ` on the same line first.
            if let Some(at) = line.find(&prefix) {
                return line[at + prefix.len()..].trim_end().to_owned();
            }
        }
        panic!("the server process never said {key}");
    }

    fn measure(&mut self) -> Measure {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "MEASURE").expect("write to the server");
        stdin.flush().expect("flush");
        let figures: Vec<u64> = self
            .line("MEASURE")
            .split_whitespace()
            .map(|f| f.parse().expect("a number"))
            .collect();
        Measure {
            rss_kb: figures[0],
            peak_kb: figures[1],
            connections: figures[2],
        }
    }

    /// Measures once the server counts `connections` (its side of a connection may register a
    /// moment after the client's), or after 5 s.
    fn measure_at(&mut self, connections: usize) -> Measure {
        let mut m = self.measure();
        for _ in 0..50 {
            if m.connections >= connections as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            m = self.measure();
        }
        m
    }

    fn quit(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "QUIT");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the server process failed: {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the server process did not end within 20 s of QUIT");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // After a failed assertion: never leave the child behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Stops with a clear message when the descriptor limit cannot hold `connections` sockets.
fn check_fd_limit(connections: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: Option<usize> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok());
    if let Some(soft) = soft {
        assert!(
            soft >= connections + 1_000,
            "the open-file limit is {soft}; this soak needs {} (run `ulimit -n 20000` first)",
            connections + 1_000
        );
    }
}

/// `n` client nodes, each dialing `addr` once; returns the connected ones and the failures.
async fn dial_nodes(addr: &Multiaddr, n: usize) -> (Vec<(Node, Behaviour<JsonCodec>)>, usize) {
    let config = NodeConfig::default().with_idle_timeout(Duration::from_secs(3600));
    let dials = futures_util::stream::iter(0..n)
        .map(|_| {
            let config = config.clone();
            async move {
                let node = Node::new(Keypair::generate(), config).await.expect("node");
                let rr = Behaviour::<JsonCodec>::new(
                    &node,
                    [(PROTOCOL.to_owned(), ProtocolSupport::Outbound)],
                    Config::default(),
                )
                .expect("rr");
                node.dial(addr.clone()).await.map(|_| (node, rr))
            }
        })
        .buffer_unordered(DIAL_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let failures = dials.iter().filter(|d| d.is_err()).count();
    if let Some(Err(e)) = dials.iter().find(|d| d.is_err()) {
        println!("node: first dial failure: {e}");
    }
    (dials.into_iter().filter_map(Result::ok).collect(), failures)
}

/// Each of `clients` sends `REQUESTS_EACH` requests, `REQUESTS_IN_FLIGHT_EACH` at a time.
async fn request_load(clients: &[(Node, Behaviour<JsonCodec>)], peer: PeerId) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = clients
        .iter()
        .flat_map(|(_, rr)| {
            (0..REQUESTS_IN_FLIGHT_EACH).map(|lane| {
                let (rr, ok, failed) = (rr.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    for i in (lane..REQUESTS_EACH).step_by(REQUESTS_IN_FLIGHT_EACH) {
                        let request = json!({ "i": i });
                        match rr.request(peer, request.clone()).await {
                            Ok(r) if r["echo"] == request => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(_) | Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("request lane");
    }
    (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
}
