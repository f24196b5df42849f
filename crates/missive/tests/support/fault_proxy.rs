//! A fault-injecting loopback TCP proxy for tests.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` and forwards every connection it accepts to one
//! target address. Each direction ([`Dir::ToServer`]: from the connecting side to the target,
//! [`Dir::ToClient`]: back) has its own [`Faults`], which the test changes at any time with
//! [`FaultProxy::set`]:
//!
//! - `delay`: every chunk is held this long after it was read (latency, not a pause per chunk);
//! - `bytes_per_sec`: bandwidth limit;
//! - `cut_after(n)`: forward `n` more bytes, then shut both connections down (the receiver sees the
//!   stream end wherever byte `n` falls, typically in the middle of a frame) and close;
//! - `corrupt_at(n)`: flip every bit of the `n`-th byte from now (0-based);
//! - `black_hole`: stop forwarding but keep both sockets open; the proxy stops reading once its
//!   bounded buffer is full, so the sender's TCP window closes as with a peer that stops reading.
//!
//! Offsets count from the moment the faults were set, or from the start of a connection opened
//! later. A cut or a corruption fires once per `set`, on the first connection that reaches it.
//!
//! Memory is bounded: each direction of a connection holds at most [`CHUNKS`] chunks of
//! [`CHUNK`] bytes, and the proxy's sockets have a fixed receive buffer of [`SOCKET_BUFFER`]
//! (which turns off the kernel's receive-buffer growth), so a black hole holds little in the kernel
//! either and a sender's backpressure shows soon. Every task belongs to the proxy: dropping the [`FaultProxy`] (or ending the
//! test's runtime) ends the accept loop and every connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Bytes read from a socket at most at once.
pub(crate) const CHUNK: usize = 16 * 1024;
/// Chunks held per direction of a connection at most (so at most 256 KiB).
pub(crate) const CHUNKS: usize = 16;

/// The receive buffer of the proxy's sockets (the kernel doubles it for its bookkeeping).
pub(crate) const SOCKET_BUFFER: u32 = 64 * 1024;

/// A direction of the proxied connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From the side that connected to the proxy, to the target.
    ToServer,
    /// From the target back to the side that connected.
    ToClient,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }
}

/// The faults of one direction. `Faults::default()` forwards faithfully.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    delay: Duration,
    bytes_per_sec: Option<u64>,
    cut_after: Option<u64>,
    corrupt_at: Option<u64>,
    black_hole: bool,
}

impl Faults {
    /// No fault.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Holds every chunk `delay` before forwarding it.
    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Forwards at most `bytes_per_sec` bytes per second.
    pub(crate) fn bytes_per_sec(mut self, rate: u64) -> Self {
        self.bytes_per_sec = Some(rate.max(1));
        self
    }

    /// Forwards `n` more bytes, then shuts both sides down and closes the connection.
    pub(crate) fn cut_after(mut self, n: u64) -> Self {
        self.cut_after = Some(n);
        self
    }

    /// Flips the byte at offset `n` (counted from now).
    pub(crate) fn corrupt_at(mut self, n: u64) -> Self {
        self.corrupt_at = Some(n);
        self
    }

    /// Stops forwarding, keeping the sockets open.
    pub(crate) fn black_hole(mut self) -> Self {
        self.black_hole = true;
        self
    }
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Connections accepted.
    pub(crate) connections: u64,
    /// Bytes forwarded towards the target.
    pub(crate) to_server: u64,
    /// Bytes forwarded back.
    pub(crate) to_client: u64,
    /// Connections cut by `cut_after`.
    pub(crate) cuts: u64,
    /// Bytes corrupted by `corrupt_at`.
    pub(crate) corruptions: u64,
}

/// A running proxy; dropping it stops it and closes every connection through it.
#[derive(Debug)]
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards each accepted connection to `target`.
    pub(crate) async fn start(target: SocketAddr) -> io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            settings: [
                watch::channel(Setting::default()).0,
                watch::channel(Setting::default()).0,
            ],
            fired: Default::default(),
            stats: Default::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, target, shared.clone()));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// The address to connect to instead of the target.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's address as a node multiaddr (`/ip4/127.0.0.1/tcp/PORT`).
    pub(crate) fn multiaddr(&self) -> String {
        format!("/ip4/{}/tcp/{}", self.addr.ip(), self.addr.port())
    }

    /// Replaces the faults of `dir`; offsets count from now.
    pub(crate) fn set(&self, dir: Dir, faults: Faults) {
        self.shared.settings[dir.index()].send_modify(|s| {
            s.generation += 1;
            s.faults = faults;
        });
    }

    /// Sets the same faults in both directions.
    pub(crate) fn set_both(&self, faults: Faults) {
        self.set(Dir::ToServer, faults.clone());
        self.set(Dir::ToClient, faults);
    }

    /// Forwards faithfully again in both directions (held bytes flow on).
    pub(crate) fn heal(&self) {
        self.set_both(Faults::none());
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> Stats {
        let s = &self.shared.stats;
        Stats {
            connections: s.connections.load(Ordering::Relaxed),
            to_server: s.bytes[0].load(Ordering::Relaxed),
            to_client: s.bytes[1].load(Ordering::Relaxed),
            cuts: s.cuts.load(Ordering::Relaxed),
            corruptions: s.corruptions.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns every connection task (a JoinSet): aborting it ends them all.
        self.accept.abort();
    }
}

#[derive(Debug, Clone, Default)]
struct Setting {
    generation: u64,
    faults: Faults,
}

#[derive(Debug)]
struct Shared {
    settings: [watch::Sender<Setting>; 2],
    /// Per direction: the latest generation whose cut and corruption have fired.
    fired: [FiredAt; 2],
    stats: Counters,
}

#[derive(Debug, Default)]
struct FiredAt {
    cut: AtomicU64,
    corrupt: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes: [AtomicU64; 2],
    cuts: AtomicU64,
    corruptions: AtomicU64,
}

/// Claims a one-shot fault of `generation`: `true` for the first caller only.
fn claim(fired: &AtomicU64, generation: u64) -> bool {
    fired.fetch_max(generation, Ordering::AcqRel) < generation
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of descriptors or similar: pause instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                connections.spawn(proxy_connection(client, target, shared.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The source ended cleanly; the end was passed on.
    Eof,
    /// `cut_after` fired.
    Cut,
    /// A socket failed.
    Failed,
}

async fn proxy_connection(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = connect(target).await else {
        return; // dropping `client` refuses it
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let outcome = {
        let up = pump(&mut client_read, &mut server_write, Dir::ToServer, &shared);
        let down = pump(&mut server_read, &mut client_write, Dir::ToClient, &shared);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let outcome = tokio::select! {
                o = &mut up, if !up_done => { up_done = true; o }
                o = &mut down, if !down_done => { down_done = true; o }
            };
            if outcome != Outcome::Eof || (up_done && down_done) {
                break outcome;
            }
        }
    };
    if outcome == Outcome::Cut {
        // Both receivers see their stream end where the cut fell; what they still send is
        // refused when the sockets drop.
        let _ = client_write.shutdown().await;
        let _ = server_write.shutdown().await;
    }
}

async fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.connect(target).await
}

enum Item {
    Chunk(Instant, BytesMut),
    Eof,
}

/// Forwards one direction: a reader that stamps each chunk with its due time, and a writer that
/// applies the faults, joined by a bounded channel.
async fn pump(
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    dir: Dir,
    shared: &Shared,
) -> Outcome {
    let (tx, mut rx) = mpsc::channel::<Item>(CHUNKS);
    let settings = shared.settings[dir.index()].subscribe();
    let reader = async {
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match src.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = tx.send(Item::Eof).await;
                    // Nothing more to read: wait for the writer to finish.
                    std::future::pending::<()>().await;
                }
                Ok(_) => {
                    let due = Instant::now() + settings.borrow().faults.delay;
                    if tx.send(Item::Chunk(due, buf)).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                Err(_) => return Outcome::Failed,
            }
        }
    };
    let writer = write_side(&mut rx, dst, dir, shared);
    tokio::select! {
        o = reader => o,
        o = writer => o,
    }
}

async fn write_side(
    rx: &mut mpsc::Receiver<Item>,
    dst: &mut OwnedWriteHalf,
    dir: Dir,
    shared: &Shared,
) -> Outcome {
    let d = dir.index();
    let mut settings = shared.settings[d].subscribe();
    // A connection opened after the faults were set counts their offsets from its start.
    let mut generation = settings.borrow_and_update().generation;
    let mut base = 0u64;
    let mut written = 0u64;
    while let Some(item) = rx.recv().await {
        let (due, mut chunk) = match item {
            Item::Chunk(due, chunk) => (due, chunk),
            Item::Eof => {
                let _ = dst.shutdown().await;
                return Outcome::Eof;
            }
        };
        tokio::time::sleep_until(due).await;
        while !chunk.is_empty() {
            let faults = {
                let s = settings.borrow_and_update();
                if s.generation != generation {
                    generation = s.generation;
                    base = written;
                }
                s.faults.clone()
            };
            if faults.black_hole {
                if settings.changed().await.is_err() {
                    return Outcome::Failed;
                }
                continue;
            }
            let mut len = chunk.len();
            if let Some(rate) = faults.bytes_per_sec {
                // Small pieces keep the pace smooth (about 50 per second).
                len = len.min(usize::try_from((rate / 50).max(1)).unwrap_or(CHUNK));
            }
            let rel = written - base;
            let mut cut = false;
            if let Some(n) = faults.cut_after
                && rel + len as u64 >= n
                && claim(&shared.fired[d].cut, generation)
            {
                len = usize::try_from(n - rel).expect("less than a chunk");
                cut = true;
            }
            let mut piece = chunk.split_to(len);
            if let Some(n) = faults.corrupt_at
                && (rel..rel + len as u64).contains(&n)
                && claim(&shared.fired[d].corrupt, generation)
            {
                let i = usize::try_from(n - rel).expect("less than a chunk");
                piece[i] ^= 0xff;
                shared.stats.corruptions.fetch_add(1, Ordering::Relaxed);
            }
            if dst.write_all(&piece).await.is_err() {
                return Outcome::Failed;
            }
            written += len as u64;
            shared.stats.bytes[d].fetch_add(len as u64, Ordering::Relaxed);
            if cut {
                shared.stats.cuts.fetch_add(1, Ordering::Relaxed);
                return Outcome::Cut;
            }
            if let Some(rate) = faults.bytes_per_sec {
                let pause = Duration::from_secs_f64(len as f64 / rate as f64);
                tokio::time::sleep(pause).await;
            }
        }
    }
    Outcome::Failed
}
