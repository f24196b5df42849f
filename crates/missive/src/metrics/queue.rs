//! The queue layer's metrics (`missive_queue_*`).

use std::sync::{Arc, OnceLock};

use prometheus_client::registry::{Registry, Unit};

use super::{Counter, Family, Gauge, Labels};

/// The metric families of queue connections and listeners.
///
/// | name | type | labels |
/// |---|---|---|
/// | `missive_queue_datagrams_total` | counter | `direction` (in, out) |
/// | `missive_queue_bytes_total` | counter | `direction` (frame bytes, headers included) |
/// | `missive_queue_backpressure_waits_total` | counter | times a writer waited for its send buffer to drain |
/// | `missive_queue_receive_errors_total` | counter | `kind` (frame, truncated, io, idle) |
/// | `missive_queue_connections_total` | counter | `side` (client, server) |
/// | `missive_queue_connections_open` | gauge | connections whose reader has not ended |
/// | `missive_queue_failed_handshakes_total` | counter | TLS handshakes a listener gave up on |
///
/// Datagrams and bytes are added once per read or write system call, not per datagram.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    pub(crate) inner: Arc<QueueHandles>,
}

#[derive(Debug)]
// Without a socket transport there are no clients or listeners to count.
#[cfg_attr(not(any(feature = "tcp", feature = "unix")), allow(dead_code))]
pub(crate) struct QueueHandles {
    pub(crate) datagrams_in: Counter,
    pub(crate) datagrams_out: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) backpressure_waits: Counter,
    receive_errors: Family<Labels, Counter>,
    pub(crate) client_connections: Counter,
    pub(crate) server_connections: Counter,
    pub(crate) open: Gauge,
    pub(crate) failed_handshakes: Counter,
}

impl Default for QueueMetrics {
    /// The queue metrics of the [default registry](super::default_registry).
    fn default() -> Self {
        static DEFAULT: OnceLock<QueueMetrics> = OnceLock::new();
        super::default_of(&DEFAULT, QueueMetrics::register)
    }
}

impl QueueMetrics {
    /// Registers the queue metric families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let datagrams = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        let waits = Counter::default();
        let receive_errors = Family::<Labels, Counter>::default();
        let connections = Family::<Labels, Counter>::default();
        let open = Gauge::default();
        let failed = Counter::default();
        registry.register(
            "missive_queue_datagrams",
            "Datagrams sent and received",
            datagrams.clone(),
        );
        registry.register_with_unit(
            "missive_queue",
            "Frame bytes sent and received",
            Unit::Bytes,
            bytes.clone(),
        );
        registry.register(
            "missive_queue_backpressure_waits",
            "Times a writer waited for its send buffer to drain",
            waits.clone(),
        );
        registry.register(
            "missive_queue_receive_errors",
            "Readers ended by an error, by kind",
            receive_errors.clone(),
        );
        registry.register(
            "missive_queue_connections",
            "Queue connections made",
            connections.clone(),
        );
        registry.register(
            "missive_queue_connections_open",
            "Queue connections whose reader has not ended",
            open.clone(),
        );
        registry.register(
            "missive_queue_failed_handshakes",
            "TLS handshakes a listener gave up on",
            failed.clone(),
        );
        let get = |family: &Family<Labels, Counter>, key: &'static str, value: &'static str| {
            family.get_or_create_owned(&vec![(key, value)])
        };
        QueueMetrics {
            inner: Arc::new(QueueHandles {
                datagrams_in: get(&datagrams, "direction", "in"),
                datagrams_out: get(&datagrams, "direction", "out"),
                bytes_in: get(&bytes, "direction", "in"),
                bytes_out: get(&bytes, "direction", "out"),
                backpressure_waits: waits,
                receive_errors,
                client_connections: get(&connections, "side", "client"),
                server_connections: get(&connections, "side", "server"),
                open,
                failed_handshakes: failed,
            }),
        }
    }
}

impl QueueHandles {
    pub(crate) fn receive_error(&self, kind: &'static str) {
        self.receive_errors
            .get_or_create(&vec![("kind", kind)])
            .inc();
    }
}
