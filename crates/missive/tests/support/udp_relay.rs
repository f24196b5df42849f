//! A fault-injecting loopback UDP relay for tests.
//!
//! [`UdpRelay::start`] binds a socket on `127.0.0.1:0` (the *front*, which a client sends to)
//! and a second one (the *back*) that exchanges datagrams with one target address, such as a
//! node's QUIC port. The first address that sends to the front becomes the client; datagrams
//! from any other address are dropped and counted, so one relay serves one client socket.
//!
//! Each direction ([`Dir::ToServer`]: client to target, [`Dir::ToClient`]: back) has its own
//! [`Faults`], changed at any time with [`UdpRelay::set`]:
//!
//! - `loss`: the probability that a datagram is dropped;
//! - `duplicate`: the probability that a datagram is sent twice;
//! - `reorder`: the probability that a datagram is held back and sent after the next
//!   [`REORDER_AFTER`] datagrams of its direction (or after [`REORDER_MAX_HOLD`], so that a
//!   quiet direction does not keep it forever);
//! - `black_hole`: drop everything.
//!
//! The random choices come from a xorshift generator with a fixed seed, so a run draws the same
//! sequence of numbers (which datagrams they fall on still depends on timing). Memory is
//! bounded: one receive buffer per socket and at most [`MAX_HELD`] held datagrams per direction
//! (a datagram that would exceed it is sent at once). Dropping the relay ends its task.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A held (reordered) datagram goes out after this many later datagrams of its direction.
pub(crate) const REORDER_AFTER: u32 = 2;
/// ... or at the latest this long after it arrived.
pub(crate) const REORDER_MAX_HOLD: Duration = Duration::from_millis(5);
/// Held datagrams per direction at most.
pub(crate) const MAX_HELD: usize = 16;
/// The largest datagram relayed (larger ones are truncated by the socket, as UDP does).
const MAX_DATAGRAM: usize = 65_535;

/// A direction of the relayed traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From the client to the target.
    ToServer,
    /// From the target back to the client.
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

/// What the relay does to one direction's datagrams. Probabilities are in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Faults {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) reorder: f64,
    pub(crate) black_hole: bool,
}

impl Faults {
    /// Forward everything as it comes.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Drop every datagram.
    pub(crate) fn black_hole() -> Self {
        Self {
            black_hole: true,
            ..Self::default()
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Datagrams received from the sender of this direction.
    pub(crate) received: AtomicU64,
    /// Datagrams sent on (a duplicate counts twice).
    pub(crate) sent: AtomicU64,
    /// Dropped by `loss` or `black_hole`.
    pub(crate) dropped: AtomicU64,
    /// Sent twice.
    pub(crate) duplicated: AtomicU64,
    /// Held back and sent later.
    pub(crate) reordered: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct State {
    faults: Mutex<[Faults; 2]>,
    counters: [Counters; 2],
    /// Datagrams from addresses other than the client's.
    strangers: AtomicU64,
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub(crate) struct UdpRelay {
    front: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpRelay {
    /// Starts a relay to `target` that forwards everything until [`UdpRelay::set`] says
    /// otherwise. `seed` seeds the random choices (0 is replaced by a fixed non-zero seed).
    pub(crate) async fn start(target: SocketAddr, seed: u64) -> io::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(target).await?;
        let addr = front.local_addr()?;
        let state = Arc::new(State::default());
        let task = tokio::spawn(run(front, back, state.clone(), XorShift::new(seed)));
        Ok(Self {
            front: addr,
            state,
            task,
        })
    }

    /// The address clients send to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.front
    }

    /// Sets the faults of both directions.
    pub(crate) fn set(&self, faults: Faults) {
        *self.state.faults.lock().unwrap_or_else(|e| e.into_inner()) = [faults, faults];
    }

    /// Sets the faults of one direction.
    pub(crate) fn set_dir(&self, dir: Dir, faults: Faults) {
        self.state.faults.lock().unwrap_or_else(|e| e.into_inner())[dir.index()] = faults;
    }

    /// The counters of `dir`.
    pub(crate) fn counters(&self, dir: Dir) -> &Counters {
        &self.state.counters[dir.index()]
    }

    /// Datagrams dropped because they came from an address other than the client's.
    pub(crate) fn strangers(&self) -> u64 {
        Counters::get(&self.state.strangers)
    }
}

/// A xorshift64* generator: tiny, deterministic, good enough to pick faults.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0.0..1.0`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// A datagram held back for reordering.
struct Held {
    bytes: Vec<u8>,
    /// Later datagrams still to pass before this one goes.
    after: u32,
    /// When it goes at the latest.
    deadline: Instant,
}

/// One direction's held datagrams.
#[derive(Default)]
struct Lane {
    held: Vec<Held>,
}

impl Lane {
    fn earliest(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.deadline).min()
    }
}

async fn run(front: UdpSocket, back: UdpSocket, state: Arc<State>, mut rng: XorShift) {
    let mut client: Option<SocketAddr> = None;
    let mut front_buf = vec![0u8; MAX_DATAGRAM];
    let mut back_buf = vec![0u8; MAX_DATAGRAM];
    let mut lanes = [Lane::default(), Lane::default()];
    loop {
        let next_deadline = lanes[0]
            .earliest()
            .into_iter()
            .chain(lanes[1].earliest())
            .min();
        let sleep = async {
            match next_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = front.recv_from(&mut front_buf) => {
                let Ok((n, from)) = r else { continue };
                match client {
                    None => client = Some(from),
                    Some(c) if c != from => {
                        Counters::add(&state.strangers);
                        continue;
                    }
                    Some(_) => {}
                }
                let out = Out::Back(&back);
                relay(&state, &mut rng, &mut lanes[0], Dir::ToServer, &front_buf[..n], out).await;
            }
            r = back.recv(&mut back_buf) => {
                // Errors (an ICMP unreachable from a target not listening yet) are not fatal.
                let Ok(n) = r else { continue };
                let Some(c) = client else { continue };
                let out = Out::Front(&front, c);
                relay(&state, &mut rng, &mut lanes[1], Dir::ToClient, &back_buf[..n], out).await;
            }
            () = sleep => {
                let now = Instant::now();
                for (i, lane) in lanes.iter_mut().enumerate() {
                    let due: Vec<Held> = {
                        let (due, keep) = std::mem::take(&mut lane.held)
                            .into_iter()
                            .partition(|h| h.deadline <= now);
                        lane.held = keep;
                        due
                    };
                    for h in due {
                        let out = if i == 0 {
                            Out::Back(&back)
                        } else {
                            match client {
                                Some(c) => Out::Front(&front, c),
                                None => continue,
                            }
                        };
                        out.send(&h.bytes).await;
                        Counters::add(&state.counters[i].sent);
                    }
                }
            }
        }
    }
}

/// Where a direction's datagrams go.
#[derive(Clone, Copy)]
enum Out<'a> {
    Back(&'a UdpSocket),
    Front(&'a UdpSocket, SocketAddr),
}

impl Out<'_> {
    async fn send(self, bytes: &[u8]) {
        // A full socket buffer or an unreachable target loses the datagram, as UDP may.
        let _ = match self {
            Out::Back(s) => s.send(bytes).await,
            Out::Front(s, to) => s.send_to(bytes, to).await,
        };
    }
}

async fn relay(
    state: &State,
    rng: &mut XorShift,
    lane: &mut Lane,
    dir: Dir,
    bytes: &[u8],
    out: Out<'_>,
) {
    let counters = &state.counters[dir.index()];
    Counters::add(&counters.received);
    let faults = state.faults.lock().unwrap_or_else(|e| e.into_inner())[dir.index()];
    if faults.black_hole || rng.chance(faults.loss) {
        Counters::add(&counters.dropped);
        return;
    }
    let copies = if rng.chance(faults.duplicate) {
        Counters::add(&counters.duplicated);
        2
    } else {
        1
    };
    if lane.held.len() < MAX_HELD && rng.chance(faults.reorder) {
        Counters::add(&counters.reordered);
        for _ in 0..copies {
            lane.held.push(Held {
                bytes: bytes.to_vec(),
                after: REORDER_AFTER,
                deadline: Instant::now() + REORDER_MAX_HOLD,
            });
        }
        return;
    }
    for _ in 0..copies {
        out.send(bytes).await;
        Counters::add(&counters.sent);
    }
    // This datagram passed the held ones: those whose turn has come go now.
    let mut i = 0;
    while i < lane.held.len() {
        lane.held[i].after = lane.held[i].after.saturating_sub(1);
        if lane.held[i].after == 0 {
            let h = lane.held.remove(i);
            out.send(&h.bytes).await;
            Counters::add(&counters.sent);
        } else {
            i += 1;
        }
    }
}
