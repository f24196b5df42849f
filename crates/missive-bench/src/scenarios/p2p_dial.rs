//! `dial`: what a peer-to-peer connection costs to make, missive's node against rust-libp2p
//! (libp2p-stream's behaviour, default TCP, Noise and yamux); `dial-quic`: the same over QUIC v1
//! (default QUIC configurations: one QUIC handshake with libp2p-tls, no multistream-select, no
//! yamux).
//!
//! The dialing node connects to the listening node again and again for the round's duration,
//! one dial at a time: TCP connect, multistream-select, Noise XX, multistream-select, yamux —
//! until the dialer's connection is ready for a stream — then closes that connection and dials
//! afresh. Neither side waits for a closed connection to wind down before the next dial. The
//! metric is dials per second, the inverse of the mean time from dial to ready, so that higher
//! is better as in every other scenario: the target "dial to ready in at most 0.5× rust-libp2p's
//! time" reads as "missive ÷ rust-libp2p ≥ 2×" in the table. Over QUIC, each stack's dialer
//! sends from one UDP socket for the whole round (it listens on none), so a dial is the QUIC and
//! TLS handshake only.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use libp2p::swarm::dial_opts::DialOpts;
use missive::p2p::{Keypair, Node};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::p2p::{
    LIBP2P, Transport, drive_while, libp2p_addr, libp2p_dial, libp2p_listen, libp2p_swarm,
    missive_addr, missive_config, missive_loopback, missive_socket_addr,
};
use super::{Entry, GRACE, SETUP_TIMEOUT, Scenario, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// Upper bound on the dials of one round, whatever the clock says.
const MAX_DIALS: u64 = 10_000_000;
/// Connections to one peer that the nodes accept: closed connections still winding down must
/// never refuse a new one.
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
                    run: |p| missive_dial(Transport::Tcp, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "dials_per_s",
                    unit: "1/s",
                    run: |p| libp2p_dial_round(Transport::Tcp, p),
                },
            ],
        },
        Scenario {
            name: "dial-quic",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "dials_per_s",
                    unit: "1/s",
                    run: |p| missive_dial(Transport::Quic, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "dials_per_s",
                    unit: "1/s",
                    run: |p| libp2p_dial_round(Transport::Quic, p),
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
        sent: Some(dials),
        delivered: None,
    })
}

// ---------------------------------------------------------------------------------------------
// dial

fn missive_dial(transport: Transport, params: &RoundParams) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let config = || missive_config().with_max_connections_per_peer(DIAL_CONNECTIONS_PER_PEER);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (dials, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), config()).await?;
                let addr = node.listen(missive_loopback(transport)).await?;
                addr_tx.send(missive_socket_addr(&addr)?)?;
                let _ = timeout(SETUP_TIMEOUT + duration + GRACE, done_rx).await;
                anyhow::Ok(())
            })
        },
        move |addr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), config()).await?;
                let target = missive_addr(transport, addr);
                let start = Instant::now();
                let stop = limit.start();
                let mut dials = 0u64;
                while stop.allows(dials) && dials < MAX_DIALS {
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

fn libp2p_dial_round(transport: Transport, params: &RoundParams) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (dials, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut swarm =
                    libp2p_swarm(libp2p::identity::Keypair::generate_ed25519(), transport)?;
                let addr = libp2p_listen(&mut swarm, transport).await?;
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
                let mut swarm =
                    libp2p_swarm(libp2p::identity::Keypair::generate_ed25519(), transport)?;
                let target = libp2p_addr(transport, addr);
                let start = Instant::now();
                let stop = limit.start();
                let mut dials = 0u64;
                while stop.allows(dials) && dials < MAX_DIALS {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one short round of every system of scenario `name`.
    fn short_round(name: &str) -> anyhow::Result<()> {
        let params = RoundParams {
            duration: Duration::from_millis(30),
            burst: 1,
            quick: true,
            messages: None,
        };
        let scenario = scenarios()
            .into_iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no scenario {name}"))?;
        for entry in &scenario.entries {
            let sample = (entry.run)(&params)
                .with_context(|| format!("{} / {}", scenario.name, entry.system))?;
            assert!(sample.value > 0.0, "{} / {}", scenario.name, entry.system);
        }
        Ok(())
    }

    #[test]
    fn every_system_completes_dials_in_a_short_round() -> anyhow::Result<()> {
        short_round("dial")
    }

    #[test]
    fn every_system_completes_quic_dials_in_a_short_round() -> anyhow::Result<()> {
        short_round("dial-quic")
    }
}
