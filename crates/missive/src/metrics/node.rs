//! The node's metrics (`missive_node_*`). Most are read off the node's own events at the one
//! place they are emitted, so the hooks stay out of the transports.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::registry::{Registry, Unit};

use super::histogram::LatencyHistogram;
use super::{Counter, Family, Gauge, Labels};
use crate::p2p::{
    DialError, Endpoint, IncomingError, Multiaddr, NodeEvent, Protocol, StreamRefusal,
};

/// The metric families of nodes.
///
/// | name | type | labels |
/// |---|---|---|
/// | `missive_node_connections_total` | counter | `transport` (tcp, quic, websocket, other), `direction` (inbound, outbound) |
/// | `missive_node_connections_open` | gauge | `direction` |
/// | `missive_node_handshakes_total` | counter | `direction` (inbound: accepted sockets and QUIC Initials; outbound: dial attempts) |
/// | `missive_node_handshake_failures_total` | counter | `direction`, `cause` |
/// | `missive_node_pending_handshakes` | gauge | inbound handshakes under way |
/// | `missive_node_streams_total` | counter | `direction`, `protocol` (negotiated streams) |
/// | `missive_node_stream_refusals_total` | counter | `reason` (too_many_streams, too_many_negotiating, backlog_full) |
/// | `missive_node_dial_duration_seconds` | histogram | time from a dial's start to its connection |
/// | `missive_node_wire_bytes_total` | counter | `transport` (tcp, websocket, quic), `direction` (in, out) |
///
/// Wire bytes are what the transport carried under the security layer: on TCP the socket's
/// bytes, on WebSocket the binary messages' payloads (without WebSocket framing or the TLS of
/// `wss`), on QUIC the UDP datagrams' payloads of the whole endpoint (handshakes, every
/// connection, and datagrams it dropped). They are counted as they pass, so a scrape sees open
/// connections' traffic.
///
/// `cause` is, inbound: `too_many_pending_handshakes`, `first_bytes_timeout`, `upgrade`,
/// `connection_limit`; outbound: `transport`, `upgrade`, `timeout`, `wrong_peer`,
/// `unsupported_address`, `connection_limit`, `other`.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    pub(crate) inner: Arc<NodeHandles>,
}

#[derive(Debug)]
pub(crate) struct NodeHandles {
    connections: Family<Labels, Counter>,
    open_inbound: Gauge,
    open_outbound: Gauge,
    handshakes_inbound: Counter,
    handshakes_outbound: Counter,
    failures: Family<Labels, Counter>,
    pending: Gauge,
    streams: Family<Vec<(&'static str, String)>, Counter>,
    refusals: Family<Labels, Counter>,
    dial_duration: LatencyHistogram,
    wire_bytes: Family<Labels, Counter>,
}

/// One connection's (or QUIC endpoint's) byte counters, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct WireTally {
    read: Counter,
    written: Counter,
}

impl WireTally {
    pub(crate) fn read(&self, bytes: usize) {
        if bytes > 0 {
            self.read.inc_by(bytes as u64);
        }
    }

    pub(crate) fn written(&self, bytes: usize) {
        self.written.inc_by(bytes as u64);
    }
}

impl Default for NodeMetrics {
    /// The node metrics of the [default registry](super::default_registry).
    fn default() -> Self {
        static DEFAULT: OnceLock<NodeMetrics> = OnceLock::new();
        super::default_of(&DEFAULT, NodeMetrics::register)
    }
}

impl NodeMetrics {
    /// Registers the node metric families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let connections = Family::<Labels, Counter>::default();
        let open = Family::<Labels, Gauge>::default();
        let handshakes = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let pending = Gauge::default();
        let streams = Family::<Vec<(&'static str, String)>, Counter>::default();
        let refusals = Family::<Labels, Counter>::default();
        let dial_duration = LatencyHistogram::default();
        let wire_bytes = Family::<Labels, Counter>::default();
        registry.register_with_unit(
            "missive_node_wire",
            "Bytes the transports carried, by transport and direction",
            Unit::Bytes,
            wire_bytes.clone(),
        );
        registry.register(
            "missive_node_connections",
            "Connections established",
            connections.clone(),
        );
        registry.register(
            "missive_node_connections_open",
            "Connections open",
            open.clone(),
        );
        registry.register(
            "missive_node_handshakes",
            "Connection handshakes started",
            handshakes.clone(),
        );
        registry.register(
            "missive_node_handshake_failures",
            "Connection handshakes that failed, by cause",
            failures.clone(),
        );
        registry.register(
            "missive_node_pending_handshakes",
            "Inbound handshakes under way",
            pending.clone(),
        );
        registry.register(
            "missive_node_streams",
            "Streams negotiated, by protocol",
            streams.clone(),
        );
        registry.register(
            "missive_node_stream_refusals",
            "Inbound streams reset by a limit",
            refusals.clone(),
        );
        registry.register_with_unit(
            "missive_node_dial_duration",
            "Time from a dial's start to its connection",
            Unit::Seconds,
            dial_duration.clone(),
        );
        let direction = |family: &Family<Labels, Gauge>, d: &'static str| {
            family.get_or_create_owned(&vec![("direction", d)])
        };
        let started = |d: &'static str| handshakes.get_or_create_owned(&vec![("direction", d)]);
        NodeMetrics {
            inner: Arc::new(NodeHandles {
                open_inbound: direction(&open, "inbound"),
                open_outbound: direction(&open, "outbound"),
                handshakes_inbound: started("inbound"),
                handshakes_outbound: started("outbound"),
                connections,
                failures,
                pending,
                streams,
                refusals,
                dial_duration,
                wire_bytes,
            }),
        }
    }
}

impl NodeHandles {
    /// Counts what `event` says happened.
    pub(crate) fn observe(&self, event: &NodeEvent) {
        match event {
            NodeEvent::ConnectionEstablished {
                endpoint,
                remote_addr,
                ..
            } => {
                let labels = vec![
                    ("transport", transport(remote_addr)),
                    ("direction", direction(*endpoint)),
                ];
                self.connections.get_or_create(&labels).inc();
                self.open(*endpoint).inc();
            }
            NodeEvent::ConnectionClosed { endpoint, .. } => {
                self.open(*endpoint).dec();
            }
            NodeEvent::IncomingConnectionError { error, .. } => {
                let cause = match **error {
                    IncomingError::TooManyPendingHandshakes => "too_many_pending_handshakes",
                    IncomingError::FirstBytesTimeout => "first_bytes_timeout",
                    IncomingError::Upgrade(_) => "upgrade",
                    IncomingError::ConnectionLimit(_) => "connection_limit",
                };
                self.fail("inbound", cause);
            }
            NodeEvent::InboundStreamRefused { reason, .. } => {
                let reason = match reason {
                    StreamRefusal::TooManyStreams => "too_many_streams",
                    StreamRefusal::TooManyNegotiating => "too_many_negotiating",
                    StreamRefusal::BacklogFull(_) => "backlog_full",
                };
                self.refusals.get_or_create(&vec![("reason", reason)]).inc();
            }
            _ => {}
        }
    }

    fn open(&self, endpoint: Endpoint) -> &Gauge {
        match endpoint {
            Endpoint::Dialer => &self.open_outbound,
            Endpoint::Listener => &self.open_inbound,
        }
    }

    fn fail(&self, direction: &'static str, cause: &'static str) {
        self.failures
            .get_or_create(&vec![("direction", direction), ("cause", cause)])
            .inc();
    }

    /// An inbound handshake starts; it is pending until the guard drops.
    pub(crate) fn inbound_handshake(self: &Arc<Self>) -> PendingHandshake {
        self.handshakes_inbound.inc();
        self.pending.inc();
        PendingHandshake(self.clone())
    }

    /// One dial attempt to one address starts.
    pub(crate) fn outbound_handshake(&self) {
        self.handshakes_outbound.inc();
    }

    /// A dial attempt failed.
    pub(crate) fn outbound_failed(&self, error: &DialError) {
        let cause = match error {
            DialError::Transport { .. } => "transport",
            DialError::Upgrade { .. } => "upgrade",
            DialError::Timeout { .. } => "timeout",
            DialError::WrongPeer { .. } => "wrong_peer",
            DialError::UnsupportedAddress(_) => "unsupported_address",
            DialError::ConnectionLimit(_) => "connection_limit",
            _ => "other",
        };
        self.fail("outbound", cause);
    }

    /// A dial that started at `started` made its connection.
    pub(crate) fn dialed(&self, started: Instant) {
        self.dial_duration.observe(started.elapsed());
    }

    /// The byte counters of a connection (or endpoint) of `transport`.
    pub(crate) fn wire_tally(&self, transport: &'static str) -> WireTally {
        let of = |direction: &'static str| {
            self.wire_bytes
                .get_or_create_owned(&vec![("transport", transport), ("direction", direction)])
        };
        WireTally {
            read: of("in"),
            written: of("out"),
        }
    }

    /// A stream was negotiated for `protocol`.
    pub(crate) fn stream(&self, endpoint: Endpoint, protocol: &str) {
        self.streams
            .get_or_create(&vec![
                ("direction", direction(endpoint).to_owned()),
                ("protocol", protocol.to_owned()),
            ])
            .inc();
    }
}

/// Holds one place in the pending-handshakes gauge.
#[derive(Debug)]
pub(crate) struct PendingHandshake(Arc<NodeHandles>);

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.0.pending.dec();
    }
}

fn direction(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Dialer => "outbound",
        Endpoint::Listener => "inbound",
    }
}

fn transport(addr: &Multiaddr) -> &'static str {
    let mut transport = "other";
    for protocol in addr.iter() {
        match protocol {
            Protocol::QuicV1 => return "quic",
            Protocol::Ws | Protocol::Wss => return "websocket",
            Protocol::Tcp(_) => transport = "tcp",
            _ => {}
        }
    }
    transport
}
