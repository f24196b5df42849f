//! `rpc-1`, `rpc-64`, `rpc-1024`, `rpc-16x1`, `rpc-16x64`, `rpc-bulk`: unary echo calls.
//!
//! Every system echoes the same protobuf messages (`Request { 1: request_id, 2: code, 3: body }`,
//! answered with the same fields), framed by a LEB128 length as protosocket-prost frames them.
//! After one call per connection (so that setup is not timed), the client keeps a fixed number of
//! calls in flight on each connection until the round's time is up, then waits for the calls still
//! in flight and closes. The window is the same for every system: a fixed set of callers per
//! connection, made once (one `FuturesUnordered` of `in_flight` callers, on one current-thread
//! runtime), each making its next call when its last one came back, so no future is made per
//! call and the harness's cost per call is that of the system's own call future. Completed calls are counted up to the deadline
//! and divided by the time from the start to the last counted completion. Every response is
//! checked: 64-byte bodies carry the call's sequence number, bulk bodies must come back whole.
//!
//! - `missive`: [`missive::rpc`] with the ready [`echo`] protocol and default configurations.
//! - `protosocket-rpc`: protosocket-rpc 2.0.2 with protosocket-prost and the same messages.
//! - `tarpc`: tarpc 0.38 over its serde transport with bincode (see [`rpc_tarpc`]).
//! - `tonic`: tonic 0.14 unary gRPC over HTTP/2 with prost messages (see [`rpc_tonic`]).
//! - `raw`: hand-written tokio sockets carrying frames of the same sizes, pipelined with the same
//!   number in flight: the limit of this wire.
//!
//! `rpc-bulk` measures `bytes_per_s`: body bytes of completed calls (each echoed once, counted
//! once) per second. The other scenarios measure `calls_per_s`.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use missive::rpc::echo::{self, EchoService, Request};
use missive::rpc::{Client, ClientConfig, Server, ServerConfig};
use tokio::net::TcpListener;

use super::{
    Entry, GRACE, Limit, PAYLOAD, SETUP_TIMEOUT, Scenario, payload, rpc_protosocket, rpc_raw,
    rpc_tarpc, rpc_tonic, tokio_runtime, two_sides,
};
use crate::{RoundParams, Sample};

/// Body size of `rpc-bulk`.
pub(crate) const BULK: usize = 1 << 20;
/// The shortest measured time of an rpc round in the quick run.
const MIN_QUICK_ROUND: Duration = Duration::from_millis(20);
/// A request id of the size most ids of a round have (three LEB128 bytes), used to size the
/// frames of the raw echo like the protobuf ones.
const TYPICAL_ID: u64 = 1 << 20;

/// The shape of one rpc scenario.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    /// Connections, each with its own calls.
    pub(super) conns: usize,
    /// Calls kept in flight on each connection.
    pub(super) in_flight: usize,
    /// Body bytes of every request and response.
    pub(super) body: usize,
}

const RPC_1: Shape = Shape {
    conns: 1,
    in_flight: 1,
    body: PAYLOAD,
};
const RPC_64: Shape = Shape {
    conns: 1,
    in_flight: 64,
    body: PAYLOAD,
};
const RPC_1024: Shape = Shape {
    conns: 1,
    in_flight: 1024,
    body: PAYLOAD,
};
const RPC_16X1: Shape = Shape {
    conns: 16,
    in_flight: 1,
    body: PAYLOAD,
};
const RPC_16X64: Shape = Shape {
    conns: 16,
    in_flight: 64,
    body: PAYLOAD,
};
const RPC_BULK: Shape = Shape {
    conns: 1,
    in_flight: 8,
    body: BULK,
};

impl Shape {
    /// Whether the scenario is measured in bytes rather than calls.
    fn is_bulk(&self) -> bool {
        self.body > PAYLOAD
    }

    fn metric(&self) -> &'static str {
        if self.is_bulk() {
            "bytes_per_s"
        } else {
            "calls_per_s"
        }
    }

    fn unit(&self) -> &'static str {
        if self.is_bulk() { "B/s" } else { "1/s" }
    }

    /// Bytes of one request (and of its response) on the wire, without the length prefix.
    pub(super) fn message_len(&self) -> usize {
        use prost::Message as _;
        Request {
            request_id: TYPICAL_ID,
            body: Bytes::from(vec![0u8; self.body]),
            ..Request::default()
        }
        .encoded_len()
    }

    /// The sample of a round that completed `calls` in `elapsed`.
    pub(super) fn sample(&self, calls: Calls) -> anyhow::Result<Sample> {
        let secs = calls.elapsed.as_secs_f64();
        if calls.completed == 0 || secs <= 0.0 {
            bail!("no call completed");
        }
        let per_call = if self.is_bulk() {
            self.body as f64
        } else {
            1.0
        };
        Ok(Sample {
            value: calls.completed as f64 * per_call / secs,
            sent: Some(calls.issued),
            delivered: None,
        })
    }
}

/// One system's entry in a scenario of shape `$shape`, run by `$round(params, shape)`.
macro_rules! rpc_entry {
    ($system:literal, $shape:expr, $round:path) => {
        Entry {
            system: $system,
            metric: $shape.metric(),
            unit: $shape.unit(),
            run: |params| $round(&round_params(params), $shape),
        }
    };
}

/// One scenario: the same shape for every system.
macro_rules! rpc_scenario {
    ($name:literal, $shape:expr) => {
        Scenario {
            name: $name,
            entries: vec![
                rpc_entry!("missive", $shape, missive_round),
                rpc_entry!("protosocket-rpc", $shape, rpc_protosocket::round),
                rpc_entry!("tarpc", $shape, rpc_tarpc::round),
                rpc_entry!("tonic", $shape, rpc_tonic::round),
                rpc_entry!("raw", $shape, rpc_raw::round),
            ],
        }
    };
}

/// The parameters of an rpc round: in the quick run, half the round's time (at least
/// [`MIN_QUICK_ROUND`]), because the rpc scenarios hold 30 of the run's entries and the quick run
/// only shows that every system works.
fn round_params(params: &RoundParams) -> RoundParams {
    let mut params = params.clone();
    if params.quick {
        params.duration = (params.duration / 2).max(MIN_QUICK_ROUND);
    }
    params
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        rpc_scenario!("rpc-1", RPC_1),
        rpc_scenario!("rpc-64", RPC_64),
        rpc_scenario!("rpc-1024", RPC_1024),
        rpc_scenario!("rpc-16x1", RPC_16X1),
        rpc_scenario!("rpc-16x64", RPC_16X64),
        rpc_scenario!("rpc-bulk", RPC_BULK),
    ]
}

/// What the client of a round counted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Calls {
    /// Calls completed before the deadline.
    pub(super) completed: u64,
    /// Calls made after the first ones.
    pub(super) issued: u64,
    /// From the start to the last counted completion.
    pub(super) elapsed: Duration,
}

/// The request bodies of a round and the check of what comes back.
#[derive(Debug, Clone)]
pub(super) struct Body {
    /// The shared body of bulk calls; `None`: 64-byte bodies carrying the sequence number.
    bulk: Option<Bytes>,
}

impl Body {
    pub(super) fn new(shape: Shape) -> Self {
        Self {
            bulk: shape
                .is_bulk()
                .then(|| Bytes::from(vec![0x5au8; shape.body])),
        }
    }

    /// The body of call `seq`.
    pub(super) fn make(&self, seq: u64) -> Bytes {
        match &self.bulk {
            Some(bulk) => bulk.clone(),
            None => Bytes::copy_from_slice(&payload(seq)),
        }
    }

    /// Fails unless `got` is the echo of call `seq`'s body.
    pub(super) fn check(&self, seq: u64, got: &[u8]) -> anyhow::Result<()> {
        let intact = match &self.bulk {
            Some(bulk) => got.len() == bulk.len() && got.last() == bulk.last(),
            None => got == payload(seq),
        };
        if !intact {
            bail!("call {seq} came back altered ({} bytes)", got.len());
        }
        Ok(())
    }
}

/// Makes one call on each of `shape.conns` connections, then keeps `shape.in_flight` calls in
/// flight on each until `limit` says stop, then waits for the calls still in flight.
/// `call(conn, seq)` makes call `seq` on connection `conn` and resolves (to `conn`) once its
/// response checked out.
///
/// The window is a fixed set of `in_flight` callers per connection, made once: each makes its
/// next call when its last one came back. No future is made or allocated per call, so at 1,024
/// calls in flight the harness costs what the system's own call costs, as in the `raw` entry.
pub(super) async fn drive<F, Fut>(shape: Shape, limit: Limit, call: F) -> anyhow::Result<Calls>
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    // One call per connection first: the clock starts on connections that have carried a call.
    let mut first = FuturesUnordered::new();
    for conn in 0..shape.conns {
        first.push(call(conn, conn as u64));
    }
    tokio::time::timeout(SETUP_TIMEOUT, async {
        while let Some(done) = first.next().await {
            done?;
        }
        anyhow::Ok(())
    })
    .await
    .context("the first calls did not finish in time")??;
    let first_measured = shape.conns as u64;
    let next = AtomicU64::new(first_measured);
    let completed = AtomicU64::new(0);
    let start = Instant::now();
    // Nanoseconds from the start to the last counted completion.
    let last = AtomicU64::new(0);
    let stop = limit.start();
    let counted = limit.messages.is_some();
    let (call, next, completed, last) = (&call, &next, &completed, &last);
    let mut callers: FuturesUnordered<_> = (0..shape.conns)
        .flat_map(|conn| (0..shape.in_flight).map(move |_| conn))
        .map(|conn| async move {
            loop {
                let seq = next.load(Relaxed);
                if !stop.allows(seq - first_measured) {
                    return anyhow::Ok(());
                }
                next.store(seq + 1, Relaxed);
                call(conn, seq).await?;
                // A counted round reads no clock per call; a timed one stops at the deadline.
                if counted {
                    completed.fetch_add(1, Relaxed);
                    continue;
                }
                let now = Instant::now();
                if now >= stop.deadline {
                    return Ok(());
                }
                completed.fetch_add(1, Relaxed);
                last.store(nanos_since(start, now), Relaxed);
            }
        })
        .collect();
    tokio::time::timeout(limit.duration + GRACE, async {
        while let Some(done) = callers.next().await {
            done?;
        }
        anyhow::Ok(())
    })
    .await
    .context("the calls in flight did not finish in time")??;
    if counted {
        last.store(nanos_since(start, Instant::now()), Relaxed);
    }
    Ok(Calls {
        completed: completed.load(Relaxed),
        issued: next.load(Relaxed) - first_measured,
        elapsed: Duration::from_nanos(last.load(Relaxed)),
    })
}

fn nanos_since(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// Runs a round's client side in a task of its own, as an application runs its callers, and
/// waits for it.
///
/// Driven from the `block_on` future itself, every wake-up of that future by another task (the
/// client's connection driver completing a call) makes tokio's current-thread scheduler poll
/// the I/O driver once without blocking before it polls the future: two extra `epoll_wait`
/// calls per call in `rpc-1`, paid by every library entry and not by `raw`, whose one future
/// is woken by the socket itself. In a task of its own, the wake-up only queues the task.
pub(super) async fn in_task<F, T>(client: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(client)
        .await
        .context("the client task panicked")?
}

/// The server side's time limit: setting up, the round, and the grace period.
pub(super) fn server_limit(duration: Duration) -> Duration {
    SETUP_TIMEOUT + duration + GRACE
}

// ---------------------------------------------------------------------------------------------
// missive: `missive::rpc` with the echo protocol, default configurations.

fn missive_round(params: &RoundParams, shape: Shape) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let ((), calls) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                let server = Server::new(ServerConfig::default());
                let mut connections = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let (tcp, _) = tokio::time::timeout(SETUP_TIMEOUT, listener.accept())
                        .await
                        .context("no client came")??;
                    tcp.set_nodelay(true)?;
                    let connection =
                        server.connection(tcp, echo::ServerCodec::default(), EchoService);
                    connections.push(tokio::spawn(connection));
                }
                tokio::time::timeout(server_limit(duration), async {
                    for connection in connections {
                        connection.await??;
                    }
                    anyhow::Ok(())
                })
                .await
                .context("the connections did not end in time")?
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let mut clients = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let client = tokio::time::timeout(
                        SETUP_TIMEOUT,
                        Client::connect_tcp(
                            addr,
                            echo::ClientCodec::default(),
                            ClientConfig::default(),
                        ),
                    )
                    .await
                    .context("connecting timed out")??;
                    clients.push(client);
                }
                let body = Body::new(shape);
                let calls = in_task(async move {
                    let calls = drive(shape, limit, |conn, seq| {
                        let client = &clients[conn];
                        let body = &body;
                        async move {
                            let response = client.call(Request::unary(body.make(seq))).await?;
                            body.check(seq, &response.body)?;
                            Ok(conn)
                        }
                    })
                    .await?;
                    // The drivers see every handle gone, finish and close the sockets.
                    drop(clients);
                    anyhow::Ok(calls)
                })
                .await?;
                anyhow::Ok(calls)
            })
        },
    )?;
    shape.sample(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_completes_calls_in_a_short_round() -> anyhow::Result<()> {
        // A round counts the calls completed before its deadline; an unoptimized build of the
        // slower systems may complete none of 1024 calls in a short round on a busy machine, so
        // a round without calls is tried again, a few times, with a longer deadline.
        const ROUNDS_MS: [u64; 4] = [50, 200, 800, 2_000];
        for scenario in scenarios() {
            for entry in &scenario.entries {
                let mut last = None;
                for ms in ROUNDS_MS {
                    let params = RoundParams {
                        duration: Duration::from_millis(ms),
                        burst: 1,
                        quick: false,
                        messages: None,
                    };
                    match (entry.run)(&params) {
                        Ok(sample) if sample.value > 0.0 => {
                            last = None;
                            break;
                        }
                        Ok(_) => last = Some(anyhow::anyhow!("a zero sample")),
                        Err(e) => last = Some(e),
                    }
                }
                if let Some(e) = last {
                    return Err(e.context(format!("{} / {}", scenario.name, entry.system)));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn quick_rounds_measure_half_the_time_and_full_rounds_all_of_it() {
        let full = RoundParams {
            duration: Duration::from_millis(150),
            burst: 1,
            quick: false,
            messages: None,
        };
        assert_eq!(round_params(&full).duration, Duration::from_millis(150));
        let quick = RoundParams {
            quick: true,
            ..full.clone()
        };
        assert_eq!(round_params(&quick).duration, Duration::from_millis(75));
        let tiny = RoundParams {
            duration: Duration::from_millis(10),
            ..quick
        };
        assert_eq!(round_params(&tiny).duration, MIN_QUICK_ROUND);
    }

    #[test]
    fn body_check_refuses_another_calls_body() {
        let body = Body::new(RPC_1);
        assert!(body.check(7, &body.make(7)).is_ok());
        assert!(body.check(7, &body.make(8)).is_err());
        assert!(body.check(7, &body.make(7)[..PAYLOAD - 1]).is_err());
    }

    #[test]
    fn bulk_body_check_refuses_a_short_echo() {
        let body = Body::new(RPC_BULK);
        let sent = body.make(0);
        assert!(body.check(0, &sent).is_ok());
        assert!(body.check(0, &sent[..BULK - 1]).is_err());
    }

    #[test]
    fn message_len_counts_the_protobuf_fields() {
        // Field 1 (tag + 3-byte id), field 3 (tag + 1-byte length + 64 bytes).
        assert_eq!(RPC_64.message_len(), 1 + 3 + 1 + 1 + PAYLOAD);
    }
}
