//! `rr-seq` and `rr-64`: request-response with the CBOR codec over one node connection (TCP,
//! Noise, yamux, one multistream-select negotiation per request), missive's
//! [`Behaviour`] against rust-libp2p's `request_response::cbor::Behaviour`; `rr-seq-quic`: `rr-seq`
//! over QUIC v1 (one native QUIC stream and one multistream-select negotiation per request);
//! `rr-seq-ws`: `rr-seq` over WebSocket (`/tcp/<port>/ws`, then Noise and yamux).
//!
//! Each round starts two fresh nodes, one per side, each on its own single-threaded runtime. The
//! listening side answers every request with the request itself; the dialing side connects and
//! sends one unmeasured request, then keeps 1 (`rr-seq`) or 64 (`rr-64`) requests outstanding for
//! the round's duration, stops issuing, and waits for the outstanding ones. Requests and responses
//! are 64-byte CBOR byte strings carrying their sequence number; only responses equal to their
//! request count. The metric is correct responses per second, from the first measured request to
//! the last response.
//!
//! missive's requester uses [`Behaviour::request`] (one future per request, polled together);
//! rust-libp2p's is the swarm's own event loop with `send_request`. Both use their defaults
//! (request timeout, 100 streams per connection) with a long idle timeout.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use libp2p::StreamProtocol as LibProtocol;
use libp2p::request_response::{self as lib_rr, ProtocolSupport as LibSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{Swarm, SwarmEvent};
use missive::p2p::{Keypair, Node, PeerId};
use missive::request_response::{Behaviour, Config, OutboundFailure, ProtocolSupport, cbor};
use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::p2p::{
    LIBP2P, Transport, libp2p_addr, libp2p_dial, libp2p_listen, libp2p_swarm_with, missive_addr,
    missive_config, missive_loopback, missive_socket_addr,
};
use super::two_sides;
use super::{Entry, GRACE, Limit, PAYLOAD, SETUP_TIMEOUT, Scenario, payload, tokio_runtime};
use crate::{RoundParams, Sample};

/// The request-response protocol of both scenarios.
const PROTOCOL: &str = "/missive-bench/rr/1.0.0";
/// Requests outstanding in `rr-64`.
const DEPTH_64: usize = 64;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "rr-seq",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Tcp, 1, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Tcp, 1, p),
                },
            ],
        },
        Scenario {
            name: "rr-64",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Tcp, DEPTH_64, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Tcp, DEPTH_64, p),
                },
            ],
        },
        Scenario {
            name: "rr-seq-quic",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Quic, 1, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Quic, 1, p),
                },
            ],
        },
        Scenario {
            name: "rr-seq-ws",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Ws, 1, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "requests_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Ws, 1, p),
                },
            ],
        },
    ]
}

/// A message of both scenarios: a CBOR byte string (not an array of integers, as a plain
/// `Vec<u8>` would be).
#[derive(Clone, PartialEq, Eq)]
struct Body(Vec<u8>);

impl Body {
    /// The body of request `seq`.
    fn of(seq: u64) -> Self {
        Self(payload(seq).to_vec())
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes)", self.0.len())
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a byte string of at most {PAYLOAD} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Body, E> {
                if v.len() > PAYLOAD {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(Body(v.to_vec()))
            }
        }
        d.deserialize_bytes(Bytes).map_err(D::Error::custom)
    }
}

/// What the requesting side counted.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Responses equal to their request.
    correct: u64,
    /// Requests that ended otherwise: a wrong response or a failure.
    wrong: u64,
}

impl Tally {
    fn record(&mut self, seq: u64, response: Result<&Body, impl fmt::Display>) {
        match response {
            Ok(body) if body.0 == payload(seq) => self.correct += 1,
            Ok(_) => self.wrong += 1,
            Err(e) => {
                if self.wrong == 0 {
                    eprintln!("request {seq} failed: {e}");
                }
                self.wrong += 1;
            }
        }
    }

    fn sample(self, elapsed: Duration) -> anyhow::Result<Sample> {
        let secs = elapsed.as_secs_f64();
        if self.correct == 0 || secs <= 0.0 {
            bail!("no request was answered correctly ({} failed)", self.wrong);
        }
        Ok(Sample {
            value: self.correct as f64 / secs,
            sent: Some(self.correct + self.wrong),
            delivered: Some(self.correct),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// missive

type MissiveCodec = cbor::Codec<Body, Body>;

fn missive_behaviour(
    node: &Node,
    support: ProtocolSupport,
) -> anyhow::Result<Behaviour<MissiveCodec>> {
    Ok(Behaviour::new(
        node,
        [(PROTOCOL.to_owned(), support)],
        Config::default(),
    )?)
}

/// One request of sequence number `seq`, with its number attached to the outcome.
async fn missive_request(
    behaviour: &Behaviour<MissiveCodec>,
    peer: PeerId,
    seq: u64,
) -> (u64, Result<Body, OutboundFailure>) {
    (seq, behaviour.request(peer, Body::of(seq)).await)
}

fn missive_round(
    transport: Transport,
    depth: usize,
    params: &RoundParams,
) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let key = Keypair::generate();
    let server_peer = key.peer_id();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (tally, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let node = Node::new(key, missive_config()).await?;
                let behaviour = missive_behaviour(&node, ProtocolSupport::Inbound)?;
                behaviour.serve(|_peer, request: Body| async move { request })?;
                let addr = node.listen(missive_loopback(transport)).await?;
                addr_tx.send(missive_socket_addr(&addr)?)?;
                // Keep the node up until the other side is done.
                let _ = timeout(SETUP_TIMEOUT + duration + GRACE, done_rx).await;
                drop(behaviour);
                anyhow::Ok(())
            })
        },
        move |addr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), missive_config()).await?;
                let behaviour = missive_behaviour(&node, ProtocolSupport::Outbound)?;
                node.add_address(server_peer, missive_addr(transport, addr));
                // Connect (unmeasured) with a first request.
                let (_, first) =
                    timeout(SETUP_TIMEOUT, missive_request(&behaviour, server_peer, 0))
                        .await
                        .context("the first request timed out")?;
                if first.context("the first request failed")? != Body::of(0) {
                    bail!("the first response is wrong");
                }
                timeout(
                    duration + GRACE,
                    missive_drive(&behaviour, server_peer, depth, limit),
                )
                .await
                .context("the requests did not end in time")
            })
        },
    )?;
    tally.sample(elapsed)
}

/// Keeps `depth` requests outstanding until `limit` says stop, then waits for the last ones.
/// Request 0 was the unmeasured first one: request `n` is the `n`th measured.
async fn missive_drive(
    behaviour: &Behaviour<MissiveCodec>,
    peer: PeerId,
    depth: usize,
    limit: Limit,
) -> (Tally, Duration) {
    let start = Instant::now();
    let stop = limit.start();
    let mut tally = Tally::default();
    let mut next = 1u64;
    let mut in_flight = FuturesUnordered::new();
    while in_flight.len() < depth && stop.allows(next - 1) {
        in_flight.push(missive_request(behaviour, peer, next));
        next += 1;
    }
    while let Some((seq, outcome)) = in_flight.next().await {
        tally.record(seq, outcome.as_ref());
        if stop.allows(next - 1) {
            in_flight.push(missive_request(behaviour, peer, next));
            next += 1;
        }
    }
    (tally, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// rust-libp2p

type LibBehaviour = lib_rr::cbor::Behaviour<Body, Body>;

/// A rust-libp2p swarm with the CBOR request-response behaviour on `transport` (default
/// configurations, as [`libp2p_swarm_with`] makes them).
fn libp2p_rr_swarm(
    key: libp2p::identity::Keypair,
    transport: Transport,
    support: LibSupport,
) -> anyhow::Result<Swarm<LibBehaviour>> {
    libp2p_swarm_with(key, transport, || {
        LibBehaviour::new(
            [(LibProtocol::new(PROTOCOL), support)],
            lib_rr::Config::default(),
        )
    })
}

fn libp2p_round(
    transport: Transport,
    depth: usize,
    params: &RoundParams,
) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let server_peer = key.public().to_peer_id();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), (tally, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_rr_swarm(key, transport, LibSupport::Inbound)?;
                let addr = libp2p_listen(&mut swarm, transport).await?;
                addr_tx.send(addr)?;
                let mut done = std::pin::pin!(timeout(SETUP_TIMEOUT + duration + GRACE, done_rx));
                loop {
                    tokio::select! {
                        _ = &mut done => return anyhow::Ok(()),
                        event = swarm.select_next_some() => {
                            if let SwarmEvent::Behaviour(lib_rr::Event::Message {
                                message: lib_rr::Message::Request { request, channel, .. },
                                ..
                            }) = event
                            {
                                let _ = swarm.behaviour_mut().send_response(channel, request);
                            }
                        }
                    }
                }
            })
        },
        move |addr: SocketAddr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_rr_swarm(
                    libp2p::identity::Keypair::generate_ed25519(),
                    transport,
                    LibSupport::Outbound,
                )?;
                let opts = DialOpts::peer_id(server_peer)
                    .addresses(vec![libp2p_addr(transport, addr)])
                    .build();
                timeout(SETUP_TIMEOUT, libp2p_dial(&mut swarm, opts))
                    .await
                    .context("dialing timed out")??;
                // A first request (unmeasured), as on missive's side.
                let first = swarm
                    .behaviour_mut()
                    .send_request(&server_peer, Body::of(0));
                let mut warm = Tally::default();
                timeout(
                    SETUP_TIMEOUT,
                    libp2p_until_done(
                        &mut swarm,
                        &mut HashMap::from([(first, 0)]),
                        &mut warm,
                        &mut |_| None,
                    ),
                )
                .await
                .context("the first request timed out")?;
                if warm.correct != 1 {
                    bail!("the first request was not answered correctly");
                }
                timeout(
                    duration + GRACE,
                    libp2p_drive(&mut swarm, server_peer, depth, limit),
                )
                .await
                .context("the requests did not end in time")
            })
        },
    )?;
    tally.sample(elapsed)
}

/// Keeps `depth` requests outstanding until `limit` says stop, then waits for the last ones.
async fn libp2p_drive(
    swarm: &mut Swarm<LibBehaviour>,
    peer: libp2p::PeerId,
    depth: usize,
    limit: Limit,
) -> (Tally, Duration) {
    let start = Instant::now();
    let stop = limit.start();
    let mut tally = Tally::default();
    let mut next = 1u64;
    let mut in_flight = HashMap::with_capacity(depth);
    while in_flight.len() < depth && stop.allows(next - 1) {
        let id = swarm.behaviour_mut().send_request(&peer, Body::of(next));
        in_flight.insert(id, next);
        next += 1;
    }
    let mut refill = |behaviour: &mut LibBehaviour| {
        if stop.allows(next - 1) {
            let seq = next;
            next += 1;
            Some((behaviour.send_request(&peer, Body::of(seq)), seq))
        } else {
            None
        }
    };
    libp2p_until_done(swarm, &mut in_flight, &mut tally, &mut refill).await;
    (tally, start.elapsed())
}

/// Drives the swarm until no request of `in_flight` is left; after each outcome, `refill` may
/// send another request (returning its id and sequence number).
async fn libp2p_until_done(
    swarm: &mut Swarm<LibBehaviour>,
    in_flight: &mut HashMap<lib_rr::OutboundRequestId, u64>,
    tally: &mut Tally,
    refill: &mut dyn FnMut(&mut LibBehaviour) -> Option<(lib_rr::OutboundRequestId, u64)>,
) {
    while !in_flight.is_empty() {
        let (id, outcome) = match swarm.select_next_some().await {
            SwarmEvent::Behaviour(lib_rr::Event::Message {
                message:
                    lib_rr::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) => (request_id, Ok(response)),
            SwarmEvent::Behaviour(lib_rr::Event::OutboundFailure {
                request_id, error, ..
            }) => (request_id, Err(error)),
            _ => continue,
        };
        let Some(seq) = in_flight.remove(&id) else {
            continue;
        };
        tally.record(seq, outcome.as_ref());
        if let Some((id, seq)) = refill(swarm.behaviour_mut()) {
            in_flight.insert(id, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive::request_response::Format;

    /// Runs one short round of every system of scenario `name`; every request is answered.
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
            assert_eq!(
                sample.sent, sample.delivered,
                "{} / {}",
                scenario.name, entry.system
            );
        }
        Ok(())
    }

    #[test]
    fn every_system_answers_requests_in_a_short_round() -> anyhow::Result<()> {
        short_round("rr-seq")?;
        short_round("rr-64")
    }

    #[test]
    fn every_system_answers_requests_over_quic_in_a_short_round() -> anyhow::Result<()> {
        short_round("rr-seq-quic")
    }

    #[test]
    fn every_system_answers_requests_over_websocket_in_a_short_round() -> anyhow::Result<()> {
        short_round("rr-seq-ws")
    }

    #[test]
    fn a_body_is_a_cbor_byte_string_and_round_trips() -> anyhow::Result<()> {
        let body = Body::of(7);
        let bytes = <cbor::Cbor as Format>::encode(&body)?;
        // Major type 2 (byte string) with its length in the next byte, then the bytes.
        assert_eq!(&bytes[..2], &[0x58, PAYLOAD as u8]);
        assert_eq!(bytes.len(), 2 + PAYLOAD);
        let back: Body = <cbor::Cbor as Format>::decode(&bytes)?;
        assert_eq!(back, body);
        Ok(())
    }

    #[test]
    fn a_wrong_or_failed_response_is_not_counted() {
        let mut tally = Tally::default();
        tally.record(3, Ok::<_, String>(&Body::of(3)));
        tally.record(4, Ok::<_, String>(&Body::of(5)));
        tally.record(6, Err::<&Body, _>("reset"));
        assert_eq!((tally.correct, tally.wrong), (1, 2));
    }
}
