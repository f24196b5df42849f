//! The scenario registry and what the scenario families share.
//!
//! A family is one file; it contributes [`Scenario`]s to [`registry`]. A scenario lists its entries
//! (one per system and metric); the runner alternates them round by round.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use crate::{RoundParams, Sample};

mod aead;
mod p2p;
mod p2p_dial;
mod p2p_idle;
mod queue;
mod raw;
mod rpc;
mod rpc_protosocket;
mod rpc_raw;
mod rpc_tarpc;
mod rpc_tonic;
mod rr;

pub(crate) use p2p::CHUNK;
pub(crate) use rpc::BULK;

/// One named scenario: the systems compared in it.
#[derive(Debug)]
pub(crate) struct Scenario {
    /// The name used on the command line and in the JSON.
    pub(crate) name: &'static str,
    /// The systems and metrics, in the order they run within a round.
    pub(crate) entries: Vec<Entry>,
}

/// One system's part in a scenario.
#[derive(Debug)]
pub(crate) struct Entry {
    /// System name as in the JSON.
    pub(crate) system: &'static str,
    /// Metric name as in the JSON.
    pub(crate) metric: &'static str,
    /// Unit of the metric.
    pub(crate) unit: &'static str,
    /// Runs one round and measures it.
    pub(crate) run: fn(&RoundParams) -> anyhow::Result<Sample>,
}

/// All scenarios, in the order a full run executes them.
pub(crate) fn registry() -> Vec<Scenario> {
    let mut all = Vec::new();
    all.extend(raw::scenarios());
    all.extend(queue::scenarios());
    all.extend(p2p::scenarios());
    all.extend(p2p_dial::scenarios());
    all.extend(p2p_idle::scenarios());
    all.extend(rr::scenarios());
    all.extend(rpc::scenarios());
    all
}

/// Payload size of the small-message scenarios.
pub(crate) const PAYLOAD: usize = 64;
/// Upper bound on messages one round sends, whatever the clock says.
pub(crate) const MAX_MESSAGES: u64 = 200_000_000;
/// How long a side may wait for the other to show up (bind, connect, handshake).
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than the round's duration a side may run before it gives up.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// When the senders of a round stop: after the round's duration (a timed round) or after a fixed
/// number of messages (a counted round, whose instructions are counted: no clock is read per
/// message there, and `duration` is only the time limit).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    /// How long the measured part lasts (timed) or may last at most (counted).
    pub(crate) duration: Duration,
    /// The messages of a counted round.
    pub(crate) messages: Option<u64>,
}

impl Limit {
    /// The part of the count that connection `conn` of `conns` sends (counted rounds): the
    /// shares add up to the count.
    pub(crate) fn share(self, conn: usize, conns: usize) -> Self {
        let conns = conns.max(1) as u64;
        let conn = conn as u64;
        Self {
            duration: self.duration,
            messages: self
                .messages
                .map(|m| m / conns + u64::from(conn < m % conns)),
        }
    }

    /// Starts the measured part now.
    pub(crate) fn start(self) -> Stop {
        Stop {
            deadline: Instant::now() + self.duration,
            messages: self.messages,
        }
    }
}

/// A started [`Limit`]: asked before each message or burst whether to go on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stop {
    /// The end of the measured part (a time limit only, in a counted round).
    pub(crate) deadline: Instant,
    messages: Option<u64>,
}

impl Stop {
    /// Whether a sender that has sent `sent` messages sends another.
    #[inline]
    pub(crate) fn allows(&self, sent: u64) -> bool {
        match self.messages {
            Some(messages) => sent < messages,
            None => sent < MAX_MESSAGES && Instant::now() < self.deadline,
        }
    }

    /// How many more messages a sender that has sent `sent` may send at most, the clock aside.
    #[inline]
    pub(crate) fn remaining(&self, sent: u64) -> u64 {
        match self.messages {
            Some(messages) => messages.saturating_sub(sent),
            None => MAX_MESSAGES.saturating_sub(sent),
        }
    }

    /// How many messages a sender that has sent `sent` sends in its next burst of at most
    /// `burst`; 0 when it stops.
    #[inline]
    pub(crate) fn burst(&self, sent: u64, burst: usize) -> u64 {
        match self.messages {
            Some(messages) => messages.saturating_sub(sent).min(burst as u64),
            None if self.allows(sent) => burst as u64,
            None => 0,
        }
    }
}

/// Builds the single-threaded tokio runtime of one side.
pub(crate) fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")
}

/// Runs one round: `server` on its own thread (it reports its address once it listens), then
/// `client` on this thread with that address. Returns both results.
pub(crate) fn two_sides<S, C, SR, CR>(server: S, client: C) -> anyhow::Result<(SR, CR)>
where
    S: FnOnce(mpsc::SyncSender<SocketAddr>) -> anyhow::Result<SR> + Send + 'static,
    SR: Send + 'static,
    C: FnOnce(SocketAddr) -> anyhow::Result<CR>,
{
    let (addr_tx, addr_rx) = mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("bench-server".to_owned())
        .spawn(move || server(addr_tx))
        .context("spawning the server thread")?;
    let addr = match addr_rx.recv_timeout(SETUP_TIMEOUT) {
        Ok(addr) => addr,
        Err(_) => {
            // The server failed before listening; its error says why.
            return match handle.join() {
                Ok(Err(e)) => Err(e.context("server failed before listening")),
                Ok(Ok(_)) => Err(anyhow!("server ended without listening")),
                Err(_) => Err(anyhow!("server thread panicked before listening")),
            };
        }
    };
    let client_result = client(addr);
    let server_result = handle
        .join()
        .map_err(|_| anyhow!("server thread panicked"))?;
    let client_result = client_result.context("client side")?;
    let server_result = server_result.context("server side")?;
    Ok((server_result, client_result))
}

/// A loopback port that was free a moment ago, for listeners that cannot report their address.
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(probe.local_addr()?)
}

/// What the receiving side of a one-way round saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Received {
    /// Messages that arrived intact and in increasing sequence order.
    pub(crate) delivered: u64,
    /// Messages that arrived but were malformed or out of order.
    pub(crate) rejected: u64,
    /// When the first message arrived.
    pub(crate) first: Option<Instant>,
    /// When the stream ended (or the receiver gave up).
    pub(crate) end: Option<Instant>,
    /// The sequence number of the last message counted as delivered.
    last_seq: Option<u64>,
}

impl Received {
    /// Accounts for one arrived message with sequence number `seq` (`None`: malformed).
    #[inline]
    pub(crate) fn arrived(&mut self, seq: Option<u64>) {
        if self.first.is_none() {
            self.first = Some(Instant::now());
        }
        match seq {
            Some(seq) if self.last_seq.is_none_or(|last| seq > last) => {
                self.last_seq = Some(seq);
                self.delivered += 1;
            }
            _ => self.rejected += 1,
        }
    }

    /// Marks the end of the stream.
    pub(crate) fn ended(&mut self) {
        self.end = Some(Instant::now());
    }

    /// Delivered messages per second between the first arrival and the end of the stream.
    pub(crate) fn sample(&self, sent: u64) -> anyhow::Result<Sample> {
        let (Some(first), Some(end)) = (self.first, self.end) else {
            return Err(anyhow!("no message arrived"));
        };
        let secs = end.duration_since(first).as_secs_f64();
        if secs <= 0.0 {
            return Err(anyhow!("the round was too short to time"));
        }
        Ok(Sample {
            value: self.delivered as f64 / secs,
            sent: Some(sent),
            delivered: Some(self.delivered),
        })
    }
}

/// The 64-byte payload of message `seq`: its sequence number, then filler.
#[inline]
pub(crate) fn payload(seq: u64) -> [u8; PAYLOAD] {
    let mut p = [0xa5u8; PAYLOAD];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p
}

/// The tag of message `seq`: it varies so that tags are exercised too.
#[inline]
pub(crate) fn tag(seq: u64) -> u16 {
    (seq % 65_536) as u16
}

/// The sequence number carried by a payload, if the payload and its tag are well formed.
#[inline]
pub(crate) fn seq_of(tag_seen: u16, payload: &[u8]) -> Option<u64> {
    if payload.len() != PAYLOAD {
        return None;
    }
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    (tag(seq) == tag_seen).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_counts_only_well_formed_increasing_sequence_numbers() {
        let mut received = Received::default();
        for seq in [Some(0), Some(1), Some(1), Some(5), None, Some(3), Some(6)] {
            received.arrived(seq);
        }
        assert_eq!(received.delivered, 4);
        assert_eq!(received.rejected, 3);
    }

    #[test]
    fn seq_of_reads_back_what_payload_and_tag_wrote() {
        let seq = 70_000;
        assert_eq!(seq_of(tag(seq), &payload(seq)), Some(seq));
    }

    #[test]
    fn seq_of_rejects_a_wrong_tag_or_length() {
        assert_eq!(seq_of(tag(8).wrapping_add(1), &payload(8)), None);
        assert_eq!(seq_of(tag(8), &payload(8)[..PAYLOAD - 1]), None);
    }

    #[test]
    fn a_counted_stop_ends_bursts_at_the_count_and_ignores_the_clock() {
        let limit = Limit {
            duration: Duration::ZERO,
            messages: Some(10),
        };
        let stop = limit.start();
        assert_eq!(stop.burst(0, 4), 4);
        assert_eq!(stop.burst(8, 4), 2);
        assert_eq!(stop.burst(10, 4), 0);
        assert!(stop.allows(9));
        assert!(!stop.allows(10));
    }

    #[test]
    fn the_shares_of_a_count_add_up_to_it() {
        let limit = Limit {
            duration: Duration::ZERO,
            messages: Some(1_001),
        };
        let shares: Vec<_> = (0..16).map(|c| limit.share(c, 16).messages).collect();
        assert_eq!(shares.iter().map(|m| m.unwrap_or(0)).sum::<u64>(), 1_001);
        assert_eq!(shares[0], Some(63));
        assert_eq!(shares[15], Some(62));
    }

    #[test]
    fn a_timed_stop_ends_at_its_deadline() {
        let past = Limit {
            duration: Duration::ZERO,
            messages: None,
        }
        .start();
        assert_eq!(past.burst(0, 4), 0);
        assert!(!past.allows(0));
        let future = Limit {
            duration: Duration::from_secs(60),
            messages: None,
        }
        .start();
        assert_eq!(future.burst(1_000, 4), 4);
        assert!(!future.allows(MAX_MESSAGES));
    }

    #[test]
    fn every_scenario_name_is_unique() {
        let names: Vec<_> = registry().iter().map(|s| s.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
    }
}
