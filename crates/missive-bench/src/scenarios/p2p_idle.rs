//! `idle-conns`: the resident memory that idle peer-to-peer connections cost, missive's node
//! against rust-libp2p (libp2p-stream's behaviour, default TCP, Noise and yamux).
//!
//! One node dials the other N times: 1,000 with rounds of 1 s or more (a normal run), 100 with
//! shorter ones (`--quick`), fewer when the open-file limit cannot hold 2 N sockets (said on
//! stderr). Both nodes live in one process, so the metric, bytes per connection, counts both
//! ends of a connection: the growth of the process's resident set (`Rss` of
//! `/proc/self/smaps_rollup`, Linux only) from one warm connection to N + 1 of them, divided by
//! N. The listener checks that no connection closes before the second reading.
//!
//! **Lower is better** here: the table's ratio is still missive ÷ rust-libp2p, and the target
//! is a ratio of at most 0.5×.
//!
//! Memory freed by the allocator stays resident and is handed out again, so a measurement after
//! an earlier round in the same process undercounts (to zero, when the earlier round was the
//! larger). Each round therefore runs in a fresh child process: the benchmark program that is
//! running (`missive-bench`, or `missive bench`) is started again with `--scenarios idle-conns
//! --systems <system> --rounds 1 --json <file>` and the connection count in
//! `MISSIVE_BENCH_IDLE_CONNS_CHILD`; the child skips the runner's warm-up round, measures once
//! in process and the parent reads the child's JSON line. Any other program (a test binary, say)
//! measures in its own process, which is only trustworthy for its first round.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use missive::p2p::{Keypair, Node, NodeEvent};
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

use super::p2p::{
    LIBP2P, Transport, drive_while, libp2p_addr, libp2p_dial, libp2p_listen, libp2p_swarm,
    missive_addr, missive_config, missive_loopback, missive_socket_addr,
};
use super::{Entry, SETUP_TIMEOUT, Scenario, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// The scenario's name.
const NAME: &str = "idle-conns";
/// Idle connections of a normal round.
const IDLE_CONNS_FULL: usize = 1_000;
/// Idle connections of a short round.
const IDLE_CONNS_SHORT: usize = 100;
/// Rounds at least this long are normal rounds.
const FULL_ROUND: Duration = Duration::from_secs(1);
/// Dials in flight at once while connecting.
const DIAL_BATCH: usize = 16;
/// File descriptors kept free for everything else in the process.
const FD_RESERVE: usize = 64;
/// Set in a child process that measures one round: the number of connections to make.
const CHILD_ENV: &str = "MISSIVE_BENCH_IDLE_CONNS_CHILD";
/// How long a child process may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the parent looks whether the child has ended.
const CHILD_POLL: Duration = Duration::from_millis(5);

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: NAME,
        entries: vec![
            Entry {
                system: "missive",
                metric: "bytes_per_conn",
                unit: "B",
                run: |p| idle_round(System::Missive, p),
            },
            Entry {
                system: LIBP2P,
                metric: "bytes_per_conn",
                unit: "B",
                run: |p| idle_round(System::Libp2p, p),
            },
        ],
    }]
}

/// The two systems of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Missive,
    Libp2p,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Missive => "missive",
            System::Libp2p => LIBP2P,
        }
    }

    fn in_process(self, conns: usize) -> anyhow::Result<Resident> {
        match self {
            System::Missive => missive_in_process(conns),
            System::Libp2p => libp2p_in_process(conns),
        }
    }
}

/// The resident set before and after `conns` connections.
#[derive(Debug, Clone, Copy)]
struct Resident {
    before: u64,
    after: u64,
    conns: usize,
}

impl Resident {
    /// Bytes per connection.
    fn sample(self) -> anyhow::Result<Sample> {
        let Resident {
            before,
            after,
            conns,
        } = self;
        if after <= before || conns == 0 {
            bail!(
                "the resident set did not grow ({before} → {after} bytes) with {conns} \
                 connections: freed memory of an earlier round was reused"
            );
        }
        Ok(Sample {
            value: (after - before) as f64 / conns as f64,
            sent: None,
            delivered: None,
        })
    }
}

/// One round: in a child process when this program can be started as one, else in process.
fn idle_round(system: System, params: &RoundParams) -> anyhow::Result<Sample> {
    if let Ok(conns) = std::env::var(CHILD_ENV) {
        let conns: usize = conns
            .parse()
            .with_context(|| format!("{CHILD_ENV}={conns:?} is not a count"))?;
        // The runner's warm-up round comes first: it would leave freed memory behind.
        static WARMED_UP: AtomicBool = AtomicBool::new(false);
        if !WARMED_UP.swap(true, Ordering::Relaxed) {
            return Ok(Sample::default());
        }
        return system.in_process(conns)?.sample();
    }
    let conns = idle_conns(params)?;
    match child_command() {
        Some(command) => in_child(command, system, conns),
        None => system.in_process(conns)?.sample(),
    }
}

/// This program, ready to take the benchmark's flags, if it is one of the programs that do.
fn child_command() -> Option<Command> {
    let exe = std::env::current_exe().ok()?;
    let prefix = benchmark_prefix(exe.file_stem()?.to_str()?)?;
    let mut command = Command::new(&exe);
    command.args(prefix);
    Some(command)
}

/// The arguments that come before the benchmark's flags in the program named `stem`.
fn benchmark_prefix(stem: &str) -> Option<&'static [&'static str]> {
    match stem {
        "missive-bench" => Some(&[]),
        "missive" => Some(&["bench"]),
        _ => None,
    }
}

/// Runs one measured round of `system` in a child process and reads its result.
fn in_child(mut command: Command, system: System, conns: usize) -> anyhow::Result<Sample> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let json = std::env::temp_dir().join(format!(
        "missive-bench-{NAME}-{}-{}.json",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    command
        .args([
            "--scenarios",
            NAME,
            "--systems",
            system.name(),
            "--rounds",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .env(CHILD_ENV, conns.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let result = run_child(command, &json, system);
    let _ = std::fs::remove_file(&json);
    result
}

fn run_child(mut command: Command, json: &Path, system: System) -> anyhow::Result<Sample> {
    let mut child = command.spawn().context("starting the child process")?;
    let deadline = Instant::now() + CHILD_TIMEOUT;
    // The child writes a few lines at most, so its pipes cannot fill up while it runs.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the child process did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(CHILD_POLL);
    };
    let output = child.wait_with_output()?;
    let said = || {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        text.lines()
            .filter(|l| !l.starts_with('|'))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !status.success() {
        bail!("the child process failed ({status}): {}", said());
    }
    let lines = std::fs::read_to_string(json).context("reading the child's JSON")?;
    match child_value(&lines, system.name())? {
        Some(value) => Ok(Sample {
            value,
            sent: None,
            delivered: None,
        }),
        None => Err(anyhow!("the child's round failed: {}", said())),
    }
}

/// The measured value in the child's JSON lines (`None`: its round failed).
fn child_value(lines: &str, system: &str) -> anyhow::Result<Option<f64>> {
    for line in lines.lines() {
        let row: serde_json::Value = serde_json::from_str(line)?;
        if row["scenario"] == NAME && row["system"] == system {
            if row["rounds"].as_u64().unwrap_or(0) == 0 {
                return Ok(None);
            }
            return row["median"]
                .as_f64()
                .map(Some)
                .context("the child's row has no median");
        }
    }
    bail!("the child's JSON has no row for {system}")
}

/// The connections a round makes (besides the warm one).
fn idle_conns(params: &RoundParams) -> anyhow::Result<usize> {
    let wanted = if params.duration >= FULL_ROUND {
        IDLE_CONNS_FULL
    } else {
        IDLE_CONNS_SHORT
    };
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading the limits")?;
    let soft = open_files_limit(&limits).unwrap_or(usize::MAX);
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
                "{NAME}: the open-files limit ({soft}) holds {fits} connections, not \
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

/// Waits until the listener has seen `n` connections established.
async fn listener_saw(count: &mut watch::Receiver<usize>, n: usize) -> anyhow::Result<()> {
    timeout(SETUP_TIMEOUT, count.wait_for(|c| *c >= n))
        .await
        .with_context(|| format!("the listener saw fewer than {n} connections in time"))?
        .map_err(|_| anyhow!("the listener stopped before it saw {n} connections"))?;
    Ok(())
}

/// Measures `conns` idle connections between two missive nodes in this process.
fn missive_in_process(conns: usize) -> anyhow::Result<Resident> {
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
                let addr = node.listen(missive_loopback(Transport::Tcp)).await?;
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
                let target = missive_addr(Transport::Tcp, addr);
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
    Ok(Resident {
        before,
        after,
        conns,
    })
}

/// Measures `conns` idle connections between two rust-libp2p swarms in this process.
fn libp2p_in_process(conns: usize) -> anyhow::Result<Resident> {
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (before, after)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_swarm(
                    libp2p::identity::Keypair::generate_ed25519(),
                    Transport::Tcp,
                )?;
                let addr = libp2p_listen(&mut swarm, Transport::Tcp).await?;
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
                let mut swarm = libp2p_swarm(
                    libp2p::identity::Keypair::generate_ed25519(),
                    Transport::Tcp,
                )?;
                let target = libp2p_addr(Transport::Tcp, addr);
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
    Ok(Resident {
        before,
        after,
        conns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_measures_idle_connections_in_process() -> anyhow::Result<()> {
        for system in [System::Missive, System::Libp2p] {
            let resident = system
                .in_process(IDLE_CONNS_SHORT / 4)
                .with_context(|| system.name())?;
            assert!(resident.before > 0 && resident.after > 0, "{system:?}");
        }
        Ok(())
    }

    #[test]
    fn short_rounds_make_fewer_idle_connections() -> anyhow::Result<()> {
        let round = |ms| RoundParams {
            duration: Duration::from_millis(ms),
            burst: 1,
            quick: true,
            messages: None,
        };
        assert!(idle_conns(&round(150))? <= IDLE_CONNS_SHORT);
        assert!(idle_conns(&round(1_000))? <= IDLE_CONNS_FULL);
        assert!(idle_conns(&round(150))? <= idle_conns(&round(1_000))?);
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
        let resident = |before, after| Resident {
            before,
            after,
            conns: 5,
        };
        assert!(resident(10, 10).sample().is_err());
        assert!(resident(10, 60).sample().is_ok_and(|s| s.value == 10.0));
    }

    #[test]
    fn only_the_benchmark_programs_are_started_as_children() {
        assert_eq!(benchmark_prefix("missive-bench"), Some(&[][..]));
        assert_eq!(benchmark_prefix("missive"), Some(&["bench"][..]));
        assert_eq!(benchmark_prefix("missive_bench-0123456789abcdef"), None);
    }

    #[test]
    fn the_child_value_is_read_from_its_json_row() -> anyhow::Result<()> {
        let ok = r#"{"scenario":"idle-conns","system":"missive","metric":"bytes_per_conn","unit":"B","median":1234.5,"min":1234.5,"max":1234.5,"rounds":1}"#;
        assert_eq!(child_value(ok, "missive")?, Some(1234.5));
        let failed = ok.replace(r#""rounds":1"#, r#""rounds":0"#);
        assert_eq!(child_value(&failed, "missive")?, None);
        assert!(child_value(ok, LIBP2P).is_err());
        Ok(())
    }
}
