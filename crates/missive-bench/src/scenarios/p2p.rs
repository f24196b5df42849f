//! `stream-echo` and `stream-bulk`: one long-lived stream between two peer-to-peer nodes (TCP,
//! Noise, yamux, multistream-select), missive's node with [`missive::stream::Control`] against
//! rust-libp2p with libp2p-stream's `Control`; `stream-echo-quic` and `stream-bulk-quic`: the same
//! over QUIC v1 (libp2p-tls in the QUIC handshake, native QUIC streams, multistream-select), both
//! nodes listening and dialing on `/ip4/127.0.0.1/udp/<port>/quic-v1` only; `stream-echo-ws` and
//! `stream-bulk-ws`: over WebSocket (`/ip4/127.0.0.1/tcp/<port>/ws`, libp2p-websocket on the
//! rust-libp2p side, over its TCP transport as `SwarmBuilder::with_websocket` builds it), Noise and yamux inside binary messages.
//!
//! Each round starts two fresh nodes, one per side, each on its own single-threaded runtime; the
//! listening side accepts one stream of the scenario's protocol, the dialing side connects, opens
//! that stream and then measures: connection and stream setup are outside the measured time.
//!
//! - `stream-echo`: 64-byte messages echoed one at a time (one in flight); round trips per second.
//! - `stream-bulk`: the dialing side uploads 64 KiB writes for the round's duration, closes its
//!   write side and waits for the listener's count of the bytes it read; the rate is the bytes
//!   confirmed divided by the time from the first write to the count's arrival.
//!
//! A third system, `raw`, runs the same traffic on a plain TCP connection (`TCP_NODELAY` on, no
//! encryption, no multiplexing): the ceiling that any node stack's ratio is bounded by. In
//! `stream-bulk`, a fourth, `aead`, is the crypto ceiling: the node's ChaCha20-Poly1305 sealing
//! and opening the same bytes on one core (`scenarios/aead.rs`). The QUIC scenarios have no such
//! ceiling: they compare the two stacks only.
//!
//! The rust-libp2p nodes run libp2p-stream's behaviour only (no ping), with the default TCP
//! (`TCP_NODELAY` on), Noise and yamux configurations; missive's nodes run the default
//! configuration with a long idle timeout; over QUIC, rust-libp2p runs libp2p-quic's default
//! configuration (`SwarmBuilder::with_quic`). Both sides of a node connection in one process make
//! this a measure of the whole stack's CPU cost per message or byte: Noise's ChaCha20-Poly1305
//! on both sides is the ceiling of `stream-bulk`.
//!
//! Shared with `p2p_dial.rs`, `p2p_idle.rs` and `rr.rs`: the [`Transport`] of a scenario,
//! building both kinds of node on it, converting addresses.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol as LibProtocolPart;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, Swarm, SwarmEvent};
use libp2p::{Multiaddr as LibMultiaddr, StreamProtocol as LibProtocol, noise, tcp, yamux};
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, Protocol};
use missive::stream::StreamProtocol;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

use super::two_sides;
use super::{Entry, GRACE, Limit, PAYLOAD, SETUP_TIMEOUT, Scenario, payload, tokio_runtime};
use crate::{RoundParams, Sample};

/// System name of rust-libp2p in the scenarios of this family.
pub(super) const LIBP2P: &str = "rust-libp2p";
/// How long a connection without streams stays open on both kinds of node: longer than any
/// round, so that no connection closes on its own while it is measured.
pub(super) const LONG_IDLE: Duration = Duration::from_secs(600);
/// Size of one write of `stream-bulk`.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Size of the receive buffers.
const READ_BUF: usize = 64 * 1024;
/// Upper bound on the bytes one `stream-bulk` round sends, whatever the clock says.
const MAX_BYTES: u64 = 1 << 40;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "stream-echo",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Tcp, Traffic::Echo, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Tcp, Traffic::Echo, p),
                },
                Entry {
                    system: "raw",
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| raw_round(Traffic::Echo, p),
                },
            ],
        },
        Scenario {
            name: "stream-bulk",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| missive_round(Transport::Tcp, Traffic::Bulk, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| libp2p_round(Transport::Tcp, Traffic::Bulk, p),
                },
                Entry {
                    system: "raw",
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| raw_round(Traffic::Bulk, p),
                },
                Entry {
                    system: "aead",
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: super::aead::round,
                },
            ],
        },
        Scenario {
            name: "stream-echo-quic",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Quic, Traffic::Echo, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Quic, Traffic::Echo, p),
                },
            ],
        },
        Scenario {
            name: "stream-echo-ws",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| missive_round(Transport::Ws, Traffic::Echo, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "round_trips_per_s",
                    unit: "1/s",
                    run: |p| libp2p_round(Transport::Ws, Traffic::Echo, p),
                },
            ],
        },
        Scenario {
            name: "stream-bulk-ws",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| missive_round(Transport::Ws, Traffic::Bulk, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| libp2p_round(Transport::Ws, Traffic::Bulk, p),
                },
            ],
        },
        Scenario {
            name: "stream-bulk-quic",
            entries: vec![
                Entry {
                    system: "missive",
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| missive_round(Transport::Quic, Traffic::Bulk, p),
                },
                Entry {
                    system: LIBP2P,
                    metric: "bytes_per_s",
                    unit: "B/s",
                    run: |p| libp2p_round(Transport::Quic, Traffic::Bulk, p),
                },
            ],
        },
    ]
}

/// The transport of a node scenario, the same for both stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// TCP, then Noise and yamux.
    Tcp,
    /// QUIC v1: libp2p-tls in the QUIC handshake, native QUIC streams.
    Quic,
    /// WebSocket over TCP (`/tcp/<port>/ws`), then Noise and yamux inside binary messages.
    Ws,
}

/// The loopback socket address with a port chosen by the system.
const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// What one stream scenario carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    /// 64-byte echo round trips, one in flight.
    Echo,
    /// Upload in 64 KiB writes, confirmed by the receiver's byte count.
    Bulk,
}

impl Traffic {
    /// The stream protocol of the scenario.
    fn protocol(self) -> &'static str {
        match self {
            Traffic::Echo => "/missive-bench/echo/1.0.0",
            Traffic::Bulk => "/missive-bench/bulk/1.0.0",
        }
    }
}

/// What the measuring side saw: units moved (round trips or bytes), the messages (round trips
/// or writes) that moved them, and the time they took.
#[derive(Debug, Clone, Copy)]
struct Moved {
    units: u64,
    messages: u64,
    elapsed: Duration,
}

impl Moved {
    fn sample(self) -> anyhow::Result<Sample> {
        let secs = self.elapsed.as_secs_f64();
        if self.units == 0 || secs <= 0.0 {
            bail!("nothing was moved");
        }
        Ok(Sample {
            value: self.units as f64 / secs,
            sent: Some(self.messages),
            delivered: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The traffic, the same for both systems (their streams seen through tokio's io traits).

/// The accepting side: echoes or counts until the other side closes its write side.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    traffic: Traffic,
    mut io: S,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if traffic == Traffic::Echo {
            io.write_all(&buf[..n]).await?;
            io.flush().await?;
        }
    }
    if traffic == Traffic::Bulk {
        io.write_all(&total.to_be_bytes()).await?;
    }
    io.shutdown().await?;
    Ok(())
}

/// The opening side: moves data until `limit` says stop and measures.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    traffic: Traffic,
    mut io: S,
    limit: Limit,
) -> anyhow::Result<Moved> {
    let start = Instant::now();
    let stop = limit.start();
    match traffic {
        Traffic::Echo => {
            let mut back = [0u8; PAYLOAD];
            let mut seq = 0u64;
            while stop.allows(seq) {
                let message = payload(seq);
                io.write_all(&message).await?;
                io.flush().await?;
                io.read_exact(&mut back).await?;
                if back != message {
                    bail!("round trip {seq} came back altered");
                }
                seq += 1;
            }
            let elapsed = start.elapsed();
            io.shutdown().await?;
            if io.read(&mut back).await? != 0 {
                bail!("bytes arrived after the last echo");
            }
            Ok(Moved {
                units: seq,
                messages: seq,
                elapsed,
            })
        }
        Traffic::Bulk => {
            let chunk = vec![0xa5u8; CHUNK];
            let mut writes = 0u64;
            while stop.allows(writes) && writes < MAX_BYTES / CHUNK as u64 {
                io.write_all(&chunk).await?;
                writes += 1;
            }
            let sent = writes * CHUNK as u64;
            io.shutdown().await?;
            let mut count = [0u8; 8];
            io.read_exact(&mut count).await?;
            let elapsed = start.elapsed();
            let received = u64::from_be_bytes(count);
            if received != sent {
                bail!("sent {sent} bytes, the receiver counted {received}");
            }
            Ok(Moved {
                units: sent,
                messages: writes,
                elapsed,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// missive's node.

/// The configuration of missive's nodes in this family: the defaults, with a long idle timeout.
pub(super) fn missive_config() -> NodeConfig {
    NodeConfig::default().with_idle_timeout(LONG_IDLE)
}

/// The loopback address to listen on over `transport`, port chosen by the system.
pub(super) fn missive_loopback(transport: Transport) -> Multiaddr {
    missive_addr(transport, LOOPBACK_ANY_PORT)
}

/// The missive address of `addr` over `transport`: `/ip4/…/tcp/…` or `/ip4/…/udp/…/quic-v1`.
pub(super) fn missive_addr(transport: Transport, addr: SocketAddr) -> Multiaddr {
    match transport {
        Transport::Tcp => Multiaddr::from_socket_addr(addr),
        Transport::Ws => Multiaddr::from_socket_addr(addr).with(Protocol::Ws),
        Transport::Quic => {
            let ip = match addr.ip() {
                IpAddr::V4(a) => Protocol::Ip4(a),
                IpAddr::V6(a) => Protocol::Ip6(a),
            };
            Multiaddr::empty()
                .with(ip)
                .with(Protocol::Udp(addr.port()))
                .with(Protocol::QuicV1)
        }
    }
}

/// The IP and port (TCP, or UDP under QUIC) of a missive address.
pub(super) fn missive_socket_addr(addr: &Multiaddr) -> anyhow::Result<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(*a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(*a)),
            Protocol::Tcp(p) | Protocol::Udp(p) => port = Some(*p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(anyhow!(
            "{addr} is not an IP address with a TCP or UDP port"
        )),
    }
}

fn missive_round(
    transport: Transport,
    traffic: Traffic,
    params: &RoundParams,
) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let key = Keypair::generate();
    let server_peer = key.peer_id();
    let protocol = StreamProtocol::new(traffic.protocol());
    let accepted = protocol.clone();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), moved) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let node = Node::new(key, missive_config()).await?;
                let mut incoming = node.stream_control().accept(accepted)?;
                let addr = node.listen(missive_loopback(transport)).await?;
                addr_tx.send(missive_socket_addr(&addr)?)?;
                let (_, stream) = timeout(SETUP_TIMEOUT, incoming.next())
                    .await
                    .context("no stream came")?
                    .context("the node stopped accepting")?;
                timeout(duration + GRACE, serve(traffic, stream))
                    .await
                    .context("the stream did not end in time")??;
                // Keep the node (and its connection task) up until the other side is done.
                let _ = timeout(GRACE, done_rx).await;
                anyhow::Ok(())
            })
        },
        move |addr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let node = Node::new(Keypair::generate(), missive_config()).await?;
                let stream = timeout(
                    SETUP_TIMEOUT,
                    node.stream_control().open_stream_with_addrs(
                        server_peer,
                        vec![missive_addr(transport, addr)],
                        protocol,
                    ),
                )
                .await
                .context("opening the stream timed out")??;
                drive(traffic, stream, limit).await
            })
        },
    )?;
    moved.sample()
}

// ---------------------------------------------------------------------------------------------
// Plain TCP: the ceiling.

fn raw_round(traffic: Traffic, params: &RoundParams) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let ((), moved) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind(LOOPBACK_ANY_PORT).await?;
                addr_tx.send(listener.local_addr()?)?;
                let (stream, _) = timeout(SETUP_TIMEOUT, listener.accept())
                    .await
                    .context("no connection came")??;
                stream.set_nodelay(true)?;
                // No connection task to keep up: the socket's data is sent once it is written.
                timeout(duration + GRACE, serve(traffic, stream))
                    .await
                    .context("the stream did not end in time")?
            })
        },
        move |addr| {
            tokio_runtime()?.block_on(async move {
                let stream = timeout(SETUP_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .context("connecting timed out")??;
                stream.set_nodelay(true)?;
                drive(traffic, stream, limit).await
            })
        },
    )?;
    moved.sample()
}

// ---------------------------------------------------------------------------------------------
// rust-libp2p with libp2p-stream.

/// A rust-libp2p swarm with libp2p-stream's behaviour on `transport`; see [`libp2p_swarm_with`].
pub(super) fn libp2p_swarm(
    key: libp2p::identity::Keypair,
    transport: Transport,
) -> anyhow::Result<Swarm<libp2p_stream::Behaviour>> {
    libp2p_swarm_with(key, transport, libp2p_stream::Behaviour::new)
}

/// A rust-libp2p swarm with the behaviour `behaviour` makes, on the default TCP, Noise and yamux
/// configurations or the default QUIC configuration; connections stay open for [`LONG_IDLE`]
/// without streams.
pub(super) fn libp2p_swarm_with<B: NetworkBehaviour>(
    key: libp2p::identity::Keypair,
    transport: Transport,
    behaviour: impl FnOnce() -> B,
) -> anyhow::Result<Swarm<B>> {
    let builder = libp2p::SwarmBuilder::with_existing_identity(key).with_tokio();
    let config = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(LONG_IDLE);
    Ok(match transport {
        Transport::Tcp => builder
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| behaviour())?
            .with_swarm_config(config)
            .build(),
        Transport::Quic => builder
            .with_quic()
            .with_behaviour(|_| behaviour())?
            .with_swarm_config(config)
            .build(),
        // `SwarmBuilder::with_websocket`'s transport without its DNS layer, which loopback
        // addresses do not need.
        Transport::Ws => builder
            .with_other_transport(|key| {
                use libp2p::Transport as _;
                let ws = libp2p_websocket::Config::new(tcp::tokio::Transport::new(
                    tcp::Config::default(),
                ));
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    ws.upgrade(libp2p::core::upgrade::Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default())
                        .map(|(peer, muxer), _| {
                            (peer, libp2p::core::muxing::StreamMuxerBox::new(muxer))
                        }),
                )
            })?
            .with_behaviour(|_| behaviour())?
            .with_swarm_config(config)
            .build(),
    })
}

/// The rust-libp2p address of `addr` over `transport`.
pub(super) fn libp2p_addr(transport: Transport, addr: SocketAddr) -> LibMultiaddr {
    let ip = LibMultiaddr::empty().with(LibProtocolPart::from(addr.ip()));
    match transport {
        Transport::Tcp => ip.with(LibProtocolPart::Tcp(addr.port())),
        Transport::Ws => ip
            .with(LibProtocolPart::Tcp(addr.port()))
            .with(LibProtocolPart::Ws("/".into())),
        Transport::Quic => ip
            .with(LibProtocolPart::Udp(addr.port()))
            .with(LibProtocolPart::QuicV1),
    }
}

/// The IP and port (TCP, or UDP under QUIC) of a rust-libp2p address.
fn libp2p_socket_addr(addr: &LibMultiaddr) -> anyhow::Result<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            LibProtocolPart::Ip4(a) => ip = Some(IpAddr::V4(a)),
            LibProtocolPart::Ip6(a) => ip = Some(IpAddr::V6(a)),
            LibProtocolPart::Tcp(p) | LibProtocolPart::Udp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(anyhow!(
            "{addr} is not an IP address with a TCP or UDP port"
        )),
    }
}

/// Listens on loopback over `transport` and drives the swarm until it reports its address.
pub(super) async fn libp2p_listen<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    transport: Transport,
) -> anyhow::Result<SocketAddr> {
    swarm.listen_on(libp2p_addr(transport, LOOPBACK_ANY_PORT))?;
    timeout(SETUP_TIMEOUT, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return libp2p_socket_addr(&address);
            }
        }
    })
    .await
    .context("the swarm reported no listen address")?
}

/// Dials with `opts` and drives the swarm until that connection is established; returns the
/// remote's PeerId.
pub(super) async fn libp2p_dial<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    opts: DialOpts,
) -> anyhow::Result<libp2p::PeerId> {
    let id = opts.connection_id();
    swarm.dial(opts)?;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished {
                connection_id,
                peer_id,
                endpoint: ConnectedPoint::Dialer { .. },
                ..
            } if connection_id == id => return Ok(peer_id),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } if connection_id == id => bail!("dial failed: {error}"),
            _ => {}
        }
    }
}

/// Drives the swarm while `work` runs; returns what `work` returns.
pub(super) async fn drive_while<B: NetworkBehaviour, F: Future>(
    swarm: &mut Swarm<B>,
    work: F,
) -> F::Output {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = swarm.select_next_some() => {}
        }
    }
}

fn libp2p_round(
    transport: Transport,
    traffic: Traffic,
    params: &RoundParams,
) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let server_peer = key.public().to_peer_id();
    let protocol = LibProtocol::new(traffic.protocol());
    let accepted = protocol.clone();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let ((), moved) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut swarm = libp2p_swarm(key, transport)?;
                let mut incoming = swarm.behaviour().new_control().accept(accepted)?;
                let addr = libp2p_listen(&mut swarm, transport).await?;
                addr_tx.send(addr)?;
                drive_while(&mut swarm, async move {
                    let (_, stream) = timeout(SETUP_TIMEOUT, incoming.next())
                        .await
                        .context("no stream came")?
                        .context("the swarm stopped accepting")?;
                    timeout(duration + GRACE, serve(traffic, stream.compat()))
                        .await
                        .context("the stream did not end in time")??;
                    // Keep the swarm driven until the other side is done.
                    let _ = timeout(GRACE, done_rx).await;
                    anyhow::Ok(())
                })
                .await
            })
        },
        move |addr| {
            let _done = done_tx;
            tokio_runtime()?.block_on(async move {
                let mut swarm =
                    libp2p_swarm(libp2p::identity::Keypair::generate_ed25519(), transport)?;
                let mut control = swarm.behaviour().new_control();
                let opts = DialOpts::peer_id(server_peer)
                    .addresses(vec![libp2p_addr(transport, addr)])
                    .build();
                timeout(SETUP_TIMEOUT, libp2p_dial(&mut swarm, opts))
                    .await
                    .context("dialing timed out")??;
                drive_while(&mut swarm, async move {
                    let stream = timeout(SETUP_TIMEOUT, control.open_stream(server_peer, protocol))
                        .await
                        .context("opening the stream timed out")??;
                    drive(traffic, stream.compat(), limit).await
                })
                .await
            })
        },
    )?;
    moved.sample()
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
    fn every_system_moves_data_in_a_short_round() -> anyhow::Result<()> {
        short_round("stream-echo")?;
        short_round("stream-bulk")
    }

    #[test]
    fn every_system_echoes_over_quic_in_a_short_round() -> anyhow::Result<()> {
        short_round("stream-echo-quic")
    }

    #[test]
    fn every_system_uploads_over_quic_in_a_short_round() -> anyhow::Result<()> {
        short_round("stream-bulk-quic")
    }

    #[test]
    fn every_system_echoes_and_uploads_over_websocket_in_a_short_round() -> anyhow::Result<()> {
        short_round("stream-echo-ws")?;
        short_round("stream-bulk-ws")
    }

    #[test]
    fn the_quic_and_ws_scenarios_compare_the_stacks_only() {
        for scenario in scenarios() {
            let systems: Vec<_> = scenario.entries.iter().map(|e| e.system).collect();
            if scenario.name.ends_with("-quic") || scenario.name.ends_with("-ws") {
                assert_eq!(systems, ["missive", LIBP2P], "{}", scenario.name);
            } else {
                assert_eq!(systems, ["missive", LIBP2P, "raw"], "{}", scenario.name);
            }
        }
    }

    #[test]
    fn addresses_convert_between_socket_and_both_multiaddr_forms() -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4001));
        for transport in [Transport::Tcp, Transport::Quic, Transport::Ws] {
            assert_eq!(missive_socket_addr(&missive_addr(transport, addr))?, addr);
            assert_eq!(libp2p_socket_addr(&libp2p_addr(transport, addr))?, addr);
        }
        assert!(missive_socket_addr(&Multiaddr::empty()).is_err());
        Ok(())
    }

    #[test]
    fn both_stacks_spell_each_transport_alike() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4001));
        assert_eq!(
            missive_loopback(Transport::Tcp).to_string(),
            "/ip4/127.0.0.1/tcp/0"
        );
        for (transport, spelled) in [
            (Transport::Tcp, "/ip4/127.0.0.1/tcp/4001"),
            (Transport::Quic, "/ip4/127.0.0.1/udp/4001/quic-v1"),
            (Transport::Ws, "/ip4/127.0.0.1/tcp/4001/ws"),
        ] {
            assert_eq!(missive_addr(transport, addr).to_string(), spelled);
            assert_eq!(libp2p_addr(transport, addr).to_string(), spelled);
        }
    }

    #[test]
    fn bulk_server_reports_the_bytes_it_read() -> anyhow::Result<()> {
        tokio_runtime()?.block_on(async {
            let (client, server) = tokio::io::duplex(4096);
            let served = tokio::spawn(serve(Traffic::Bulk, server));
            let limit = Limit {
                duration: Duration::from_millis(5),
                messages: None,
            };
            let moved = drive(Traffic::Bulk, client, limit).await?;
            served.await??;
            assert!(moved.units >= CHUNK as u64);
            assert_eq!(moved.units % CHUNK as u64, 0);
            Ok(())
        })
    }
}
