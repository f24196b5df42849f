//! `dial` and `idle-conns`: what a peer-to-peer connection costs to make and to keep, missive's
//! node against rust-libp2p (libp2p-stream's behaviour, default TCP, Noise and yamux).
//!
//! - `dial`: the dialing node connects to the listening node again and again for the round's
//!   duration, one dial at a time: TCP connect, multistream-select, Noise XX, multistream-select,
//!   yamux — until the dialer's connection is ready for a stream — then closes that connection
//!   and dials afresh. The metric is dials per second, the inverse of the mean time from dial to
//!   ready, so that higher is better as in every other scenario: the target "dial to ready in at
//!   most 0.5× rust-libp2p's time" reads as "missive ÷ rust-libp2p ≥ 2×" in the table.
//! - `idle-conns`: the resident memory that idle connections cost. One node dials the other N
//!   times (1,000 with a round of 1 s or more, as in a normal run; 100 with shorter rounds, as in
//!   `--quick`; fewer when the open-file limit cannot hold 2 N sockets, which is said on stderr).
//!   Both nodes live in this process, so the metric, bytes per connection, counts both ends of
//!   a connection: the growth of the process's resident set between one warm connection and
//!   N + 1 of them, divided by N. **Lower is better** here: the table's ratio is still missive ÷
//!   rust-libp2p, and the target is a ratio of at most 0.5×.
//!
//! The resident set is read from `/proc/self/smaps_rollup` (Linux only). Memory a round frees
//! stays with the allocator, so a round may reuse memory the previous round (of the other
//! system, in the alternating order) left behind; the warm connection, the fixed setup before
//! the first reading and the median over several rounds keep this small, and the run order of
//! the systems can be checked with `--systems`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use missive::p2p::{Keypair, Multiaddr, Node, NodeEvent};
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

use super::p2p::{
    LIBP2P, drive_while, libp2p_addr, libp2p_dial, libp2p_listen, libp2p_swarm, missive_config,
    missive_loopback, missive_socket_addr,
};
use super::{Entry, GRACE, SETUP_TIMEOUT, Scenario, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// Upper bound on the dials of one `dial` round, whatever the clock says.
const MAX_DIALS: u64 = 10_000_000;
/// Idle connections of a normal round.
const IDLE_CONNS_FULL: usize = 1_000;
/// Idle connections of a short round.
const IDLE_CONNS_SHORT: usize = 100;
/// Rounds at least this long are normal rounds for `idle-conns`.
const FULL_ROUND: Duration = Duration::from_secs(1);
/// Dials in flight at once while `idle-conns` connects.
const DIAL_BATCH: usize = 16;
/// File descriptors kept free for everything else in the process.
const FD_RESERVE: usize = 64;
/// Connections to one peer that the `dial` nodes accept: closed connections still winding
/// down must never refuse a new one.
const DIAL_CONNECTIONS_PER_PEER: usize = 1_024;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "dial",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "dials_per_s",
                    unit: "1/s",
                    run: missive_dial,
                },
                Entry {
                    system: LIBP2P,
                    metric: "dials_per_s",
                    unit: "1/s",
                    run: libp2p_dial_round,
                },
            ],
        },
        Scenario {
            name: "idle-conns",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "bytes_per_conn",
                    unit: "B",
                    run: missive_idle,
                },
                Entry {
                    system: LIBP2P,
                    metric: "bytes_per_conn",
                    unit: "B",
                    run: libp2p_idle,
                },
            ],
        },
    ]
}

/// Dials per second from a count and the time it took.
fn dial_sample(dials: u64, elapsed: Duration) -> anyhow::Result<Sample> {
    let secs = elapsed.as_secs_f64();
    if dials == 0 || secs <= 0.0 {
        bail!("no dial completed");
    }
    Ok(Sample {
        value: dials as f64 / secs,
        sent: None,
        delivered: None,
    })
}

// ---------------------------------------------------------------------------------------------
// dial

fn missive_dial(params: &RoundParams) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let config = || missive_config().with_max_connections_per_peer(DIAL_CONNECTIONS_PER_PEER);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (dials, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), config()).await?;
                let addr = node.listen(missive_loopback()?).await?;
                addr_tx.send(missive_socket_addr(&addr)?)?;
                let _ = timeout(SETUP_TIMEOUT + duration + GRACE, done_rx).await;
                anyhow::Ok(())
            })
        },
        move |addr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), config()).await?;
                let target = Multiaddr::from_socket_addr(addr);
                let start = Instant::now();
                let deadline = start + duration;
                let mut dials = 0u64;
                while Instant::now() < deadline && dials < MAX_DIALS {
                    let peer = timeout(SETUP_TIMEOUT, node.dial(target.clone()))
                        .await
                        .context("a dial timed out")??;
                    node.close_peer(&peer);
                    dials += 1;
                }
                anyhow::Ok((dials, start.elapsed()))
            })
        },
    )?;
    dial_sample(dials, elapsed)
}

fn libp2p_dial_round(params: &RoundParams) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (dials, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_swarm(libp2p::identity::Keypair::generate_ed25519())?;
                let addr = libp2p_listen(&mut swarm).await?;
                addr_tx.send(addr)?;
                let _ = drive_while(
                    &mut swarm,
                    timeout(SETUP_TIMEOUT + duration + GRACE, done_rx),
                )
                .await;
                anyhow::Ok(())
            })
        },
        move |addr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_swarm(libp2p::identity::Keypair::generate_ed25519())?;
                let target = libp2p_addr(addr);
                let start = Instant::now();
                let deadline = start + duration;
                let mut dials = 0u64;
                while Instant::now() < deadline && dials < MAX_DIALS {
                    let opts = DialOpts::unknown_peer_id().address(target.clone()).build();
                    let id = opts.connection_id();
                    timeout(SETUP_TIMEOUT, libp2p_dial(&mut swarm, opts))
                        .await
                        .context("a dial timed out")??;
                    swarm.close_connection(id);
                    dials += 1;
                }
                anyhow::Ok((dials, start.elapsed()))
            })
        },
    )?;
    dial_sample(dials, elapsed)
}

// ---------------------------------------------------------------------------------------------
// idle-conns

/// The connections an `idle-conns` round makes (besides the warm one).
fn idle_conns(params: &RoundParams) -> anyhow::Result<usize> {
    let wanted = if params.duration >= FULL_ROUND {
        IDLE_CONNS_FULL
    } else {
        IDLE_CONNS_SHORT
    };
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading the limits")?;
    let soft = open_files_limit(&limits).context("no open-files limit in /proc/self/limits")?;
    let open = std::fs::read_dir("/proc/self/fd")
        .context("listing open files")?
        .count();
    let fits = fitting_conns(soft, open);
    if fits == 0 {
        bail!("the open-files limit ({soft}) leaves no room for connections");
    }
    if fits < wanted {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            eprintln!(
                "idle-conns: the open-files limit ({soft}) holds {fits} connections, not \
                 {wanted}; measuring {fits}"
            );
        }
    }
    Ok(wanted.min(fits))
}

/// The soft `Max open files` limit in the text of `/proc/self/limits` (`None`: unlimited or
/// absent).
fn open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many in-process connections (two sockets each, plus the warm one) fit under `soft`
/// open files when `open` are open already.
fn fitting_conns(soft: usize, open: usize) -> usize {
    (soft.saturating_sub(open + FD_RESERVE) / 2).saturating_sub(1)
}

/// The resident set of this process, in bytes, from the `Rss:` line of `smaps_rollup`.
fn resident_bytes() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup")
        .context("reading /proc/self/smaps_rollup")?;
    rss_of_rollup(&text).context("no Rss line in /proc/self/smaps_rollup")
}

fn rss_of_rollup(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Rss:"))?;
    let kib: u64 = line
        .trim_start_matches("Rss:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Bytes per connection from the resident set before and after `conns` connections.
fn idle_sample(before: u64, after: u64, conns: usize) -> anyhow::Result<Sample> {
    if after <= before {
        bail!("the resident set did not grow ({before} → {after} bytes) with {conns} connections");
    }
    Ok(Sample {
        value: (after - before) as f64 / conns as f64,
        sent: None,
        delivered: None,
    })
}

/// Waits until the listener has seen `n` connections established.
async fn listener_saw(count: &mut watch::Receiver<usize>, n: usize) -> anyhow::Result<()> {
    timeout(SETUP_TIMEOUT, count.wait_for(|c| *c >= n))
        .await
        .with_context(|| format!("the listener saw fewer than {n} connections in time"))?
        .map_err(|_| anyhow!("the listener stopped before it saw {n} connections"))?;
    Ok(())
}

fn missive_idle(params: &RoundParams) -> anyhow::Result<Sample> {
    let conns = idle_conns(params)?;
    let config = move || {
        missive_config()
            .with_max_connections_per_peer(conns + 1)
            .with_event_capacity(conns + 64)
    };
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (before, after)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), config()).await?;
                let mut events = node.events();
                let addr = node.listen(missive_loopback()?).await?;
                addr_tx.send(missive_socket_addr(&addr)?)?;
                let mut done_rx = done_rx;
                let mut established = 0usize;
                let watched = timeout(SETUP_TIMEOUT * 3, async {
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut done_rx => return anyhow::Ok(()),
                            event = events.next() => match event {
                                Some(NodeEvent::ConnectionEstablished { .. }) => {
                                    established += 1;
                                    count_tx.send_replace(established);
                                }
                                Some(NodeEvent::ConnectionClosed { cause, .. }) => {
                                    bail!("a connection closed while idle: {cause:?}");
                                }
                                Some(_) => {}
                                None => bail!("the node's events ended"),
                            },
                        }
                    }
                })
                .await;
                watched.context("the round did not end in time")?
            })
        },
        move |addr| {
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), config()).await?;
                let target = Multiaddr::from_socket_addr(addr);
                // One warm connection: costs paid once per node stay out of the measurement.
                timeout(SETUP_TIMEOUT, node.dial(target.clone()))
                    .await
                    .context("the warm dial timed out")??;
                listener_saw(&mut count_rx, 1).await?;
                let before = resident_bytes()?;
                let mut left = conns;
                while left > 0 {
                    let batch = left.min(DIAL_BATCH);
                    let dials = join_all((0..batch).map(|_| node.dial(target.clone())));
                    for dialed in timeout(SETUP_TIMEOUT, dials)
                        .await
                        .context("dials timed out")?
                    {
                        dialed?;
                    }
                    left -= batch;
                }
                listener_saw(&mut count_rx, conns + 1).await?;
                let after = resident_bytes()?;
                // Tell the listener before anything closes.
                let _ = done_tx.send(());
                anyhow::Ok((before, after))
            })
        },
    )?;
    idle_sample(before, after, conns)
}

fn libp2p_idle(params: &RoundParams) -> anyhow::Result<Sample> {
    let conns = idle_conns(params)?;
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (before, after)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_swarm(libp2p::identity::Keypair::generate_ed25519())?;
                let addr = libp2p_listen(&mut swarm).await?;
                addr_tx.send(addr)?;
                let mut done_rx = done_rx;
                let mut established = 0usize;
                let watched = timeout(SETUP_TIMEOUT * 3, async {
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut done_rx => return anyhow::Ok(()),
                            event = swarm.select_next_some() => match event {
                                SwarmEvent::ConnectionEstablished { .. } => {
                                    established += 1;
                                    count_tx.send_replace(established);
                                }
                                SwarmEvent::ConnectionClosed { cause, .. } => {
                                    bail!("a connection closed while idle: {cause:?}");
                                }
                                _ => {}
                            },
                        }
                    }
                })
                .await;
                watched.context("the round did not end in time")?
            })
        },
        move |addr| {
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_swarm(libp2p::identity::Keypair::generate_ed25519())?;
                let target = libp2p_addr(addr);
                let opts = DialOpts::unknown_peer_id().address(target.clone()).build();
                timeout(SETUP_TIMEOUT, libp2p_dial(&mut swarm, opts))
                    .await
                    .context("the warm dial timed out")??;
                drive_while(&mut swarm, listener_saw(&mut count_rx, 1)).await?;
                let before = resident_bytes()?;
                let mut left = conns;
                while left > 0 {
                    let batch = left.min(DIAL_BATCH);
                    let mut pending = HashSet::with_capacity(batch);
                    for _ in 0..batch {
                        let opts = DialOpts::unknown_peer_id().address(target.clone()).build();
                        pending.insert(opts.connection_id());
                        swarm.dial(opts)?;
                    }
                    timeout(SETUP_TIMEOUT, async {
                        while !pending.is_empty() {
                            match swarm.select_next_some().await {
                                SwarmEvent::ConnectionEstablished { connection_id, .. } => {
                                    pending.remove(&connection_id);
                                }
                                SwarmEvent::OutgoingConnectionError { error, .. } => {
                                    bail!("a dial failed: {error}");
                                }
                                SwarmEvent::ConnectionClosed { cause, .. } => {
                                    bail!("a connection closed while idle: {cause:?}");
                                }
                                _ => {}
                            }
                        }
                        anyhow::Ok(())
                    })
                    .await
                    .context("dials timed out")??;
                    left -= batch;
                }
                drive_while(&mut swarm, listener_saw(&mut count_rx, conns + 1)).await?;
                let after = resident_bytes()?;
                // Tell the listener before anything closes.
                let _ = done_tx.send(());
                anyhow::Ok((before, after))
            })
        },
    )?;
    idle_sample(before, after, conns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_completes_a_short_round() -> anyhow::Result<()> {
        let params = RoundParams {
            duration: Duration::from_millis(30),
            burst: 1,
        };
        for scenario in scenarios() {
            for entry in &scenario.entries {
                let sample = (entry.run)(&params)
                    .with_context(|| format!("{} / {}", scenario.name, entry.system))?;
                assert!(sample.value > 0.0, "{} / {}", scenario.name, entry.system);
            }
        }
        Ok(())
    }

    #[test]
    fn short_rounds_make_fewer_idle_connections() -> anyhow::Result<()> {
        let short = RoundParams {
            duration: Duration::from_millis(150),
            burst: 1,
        };
        let full = RoundParams {
            duration: Duration::from_secs(1),
            burst: 1,
        };
        assert!(idle_conns(&short)? <= IDLE_CONNS_SHORT);
        assert!(idle_conns(&full)? <= IDLE_CONNS_FULL);
        assert!(idle_conns(&short)? <= idle_conns(&full)?);
        Ok(())
    }

    #[test]
    fn open_files_limit_is_read_from_the_soft_column() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(open_files_limit(limits), Some(1024));
        assert_eq!(open_files_limit("Max processes 10 10 processes"), None);
    }

    #[test]
    fn connections_fit_under_the_open_files_limit() {
        assert_eq!(fitting_conns(1024, 10), 474);
        assert_eq!(fitting_conns(20, 10), 0);
    }

    #[test]
    fn rss_is_read_in_bytes_from_smaps_rollup() {
        let text = "560db66df000-7fffefcd7000 ---p 00000000 00:00 0  [rollup]\n\
                    Rss:                1612 kB\nPss:                 316 kB\n";
        assert_eq!(rss_of_rollup(text), Some(1612 * 1024));
        assert_eq!(rss_of_rollup("Pss: 1 kB"), None);
    }

    #[test]
    fn memory_that_did_not_grow_is_not_a_sample() {
        assert!(idle_sample(10, 10, 5).is_err());
        assert!(idle_sample(10, 60, 5).is_ok_and(|s| s.value == 10.0));
    }
}
