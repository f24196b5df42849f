//! The rpc layer's metrics (`missive_rpc_*`), labelled by `side` (client or server).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::registry::{Registry, Unit};

use super::histogram::LatencyHistogram;
use super::{Counter, Family, Gauge, Labels};
use crate::rpc::StatusCode;

/// The metric families of rpc clients and servers.
///
/// | name | type | labels |
/// |---|---|---|
/// | `missive_rpc_calls_total` | counter | `side`, `kind` (unary, client_stream, server_stream, bidi), `status` |
/// | `missive_rpc_call_duration_seconds` | histogram | `side`, `kind` (calls that ended ok) |
/// | `missive_rpc_calls_in_flight` | gauge | `side` |
/// | `missive_rpc_cancels_total` | counter | `side` (client: Cancels sent; server: Cancels received) |
/// | `missive_rpc_sent_bytes_total`, `missive_rpc_received_bytes_total` | counter | `side` |
/// | `missive_rpc_send_budget_pauses_total` | counter | `side` (times the send budget held input or requests back) |
/// | `missive_rpc_connections_total` | counter | `side` |
///
/// `status` is `ok`, a [`StatusCode`] in snake case (`cancelled`, `rejected`, `internal`,
/// `unavailable`, `resource_exhausted`, `unknown`), or on the client also `deadline_exceeded`,
/// `connection_closed`, `too_many_in_flight`, `duplicate_id`, `encode`, `unexpected_end`; on the
/// server `disconnected` counts rpcs dropped because the client went away. Both sides count
/// every kind; on the client a streaming call ends at its stream's end, its response or an
/// error, and one whose stream or response is dropped before that is `abandoned`.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    client: Arc<SideMetrics>,
    server: Arc<SideMetrics>,
}

#[derive(Debug)]
struct Families {
    calls: Family<Labels, Counter>,
}

/// One side's handles, resolved once so the hot path touches only atomics.
#[derive(Debug)]
pub(crate) struct SideMetrics {
    side: &'static str,
    families: Arc<Families>,
    ok: [Counter; 4],
    durations: [LatencyHistogram; 4],
    pub(crate) in_flight: Gauge,
    pub(crate) cancels: Counter,
    pub(crate) sent_bytes: Counter,
    pub(crate) received_bytes: Counter,
    pub(crate) budget_pauses: Counter,
    pub(crate) connections: Counter,
}

/// What kind of rpc a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Unary = 0,
    ClientStream = 1,
    ServerStream = 2,
    Bidi = 3,
    /// Refused before the handler chose a kind.
    Unknown = 4,
}

impl CallKind {
    /// The kinds a call that ends well can have.
    const STARTED: [CallKind; 4] = [
        Self::Unary,
        Self::ClientStream,
        Self::ServerStream,
        Self::Bidi,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ClientStream => "client_stream",
            Self::ServerStream => "server_stream",
            Self::Bidi => "bidi",
            Self::Unknown => "unknown",
        }
    }
}

impl Default for RpcMetrics {
    /// The rpc metrics of the [default registry](super::default_registry).
    fn default() -> Self {
        static DEFAULT: OnceLock<RpcMetrics> = OnceLock::new();
        super::default_of(&DEFAULT, RpcMetrics::register)
    }
}

impl RpcMetrics {
    /// Registers the rpc metric families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let calls = Family::<Labels, Counter>::default();
        let durations = Family::<Labels, LatencyHistogram>::default();
        let in_flight = Family::<Labels, Gauge>::default();
        let cancels = Family::<Labels, Counter>::default();
        let sent = Family::<Labels, Counter>::default();
        let received = Family::<Labels, Counter>::default();
        let pauses = Family::<Labels, Counter>::default();
        let connections = Family::<Labels, Counter>::default();
        registry.register(
            "missive_rpc_calls",
            "Rpcs ended, by side, kind and status",
            calls.clone(),
        );
        registry.register_with_unit(
            "missive_rpc_call_duration",
            "Time from a call's start to its successful end",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "missive_rpc_calls_in_flight",
            "Rpcs started and not yet ended",
            in_flight.clone(),
        );
        registry.register("missive_rpc_cancels", "Cancel messages", cancels.clone());
        registry.register_with_unit(
            "missive_rpc_sent",
            "Bytes written to rpc connections",
            Unit::Bytes,
            sent.clone(),
        );
        registry.register_with_unit(
            "missive_rpc_received",
            "Bytes read from rpc connections",
            Unit::Bytes,
            received.clone(),
        );
        registry.register(
            "missive_rpc_send_budget_pauses",
            "Times the send budget held input or streamed requests back",
            pauses.clone(),
        );
        registry.register(
            "missive_rpc_connections",
            "Rpc connections started",
            connections.clone(),
        );
        let families = Arc::new(Families { calls });
        let side = |side: &'static str| {
            let labels = vec![("side", side)];
            Arc::new(SideMetrics {
                side,
                families: families.clone(),
                ok: CallKind::STARTED.map(|kind| {
                    families.calls.get_or_create_owned(&vec![
                        ("side", side),
                        ("kind", kind.label()),
                        ("status", "ok"),
                    ])
                }),
                durations: CallKind::STARTED.map(|kind| {
                    durations.get_or_create_owned(&vec![("side", side), ("kind", kind.label())])
                }),
                in_flight: in_flight.get_or_create_owned(&labels),
                cancels: cancels.get_or_create_owned(&labels),
                sent_bytes: sent.get_or_create_owned(&labels),
                received_bytes: received.get_or_create_owned(&labels),
                budget_pauses: pauses.get_or_create_owned(&labels),
                connections: connections.get_or_create_owned(&labels),
            })
        };
        RpcMetrics {
            client: side("client"),
            server: side("server"),
        }
    }

    pub(crate) fn client(&self) -> Arc<SideMetrics> {
        self.client.clone()
    }

    pub(crate) fn server(&self) -> Arc<SideMetrics> {
        self.server.clone()
    }
}

impl SideMetrics {
    /// A call of `kind` ended well after starting at `started`.
    pub(crate) fn ok(&self, kind: CallKind, started: Instant) {
        if let (Some(ok), Some(duration)) = (
            self.ok.get(kind as usize),
            self.durations.get(kind as usize),
        ) {
            ok.inc();
            duration.observe(started.elapsed());
        }
    }

    /// A call of `kind` ended with `status` (anything but ok).
    pub(crate) fn ended(&self, kind: CallKind, status: &'static str) {
        self.families
            .calls
            .get_or_create(&vec![
                ("side", self.side),
                ("kind", kind.label()),
                ("status", status),
            ])
            .inc();
    }

    /// A call of `kind` ended with the server's `code`.
    pub(crate) fn failed(&self, kind: CallKind, code: StatusCode) {
        self.ended(kind, status_label(code));
    }
}

/// A status code as a label value.
pub(crate) fn status_label(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Cancelled => "cancelled",
        StatusCode::Rejected => "rejected",
        StatusCode::Internal => "internal",
        StatusCode::Unavailable => "unavailable",
        StatusCode::ResourceExhausted => "resource_exhausted",
        StatusCode::Unknown => "unknown",
    }
}
