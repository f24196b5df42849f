//! Request-response metrics (`missive_rr_*`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::registry::{Registry, Unit};

use super::histogram::LatencyHistogram;
use super::{Counter, Family, Gauge};
use crate::request_response::{InboundFailure, OutboundFailure};

/// The metric families of request-response behaviours, labelled by `protocol`: the
/// behaviour's first protocol name (its first outbound one, or its first inbound one when it
/// only serves), so that a behaviour that offers several versions of a protocol counts as one.
///
/// | name | type | labels |
/// |---|---|---|
/// | `missive_rr_requests_total` | counter | `protocol`, `direction` (outbound, inbound), `outcome` |
/// | `missive_rr_request_duration_seconds` | histogram | `protocol`: outbound requests answered, from the call to the response |
/// | `missive_rr_requests_in_flight` | gauge | `protocol`, `direction` |
/// | `missive_rr_events_dropped_total` | counter | `protocol`: events dropped because the application did not read them |
///
/// `outcome` is `ok` (outbound: a response; inbound: a response sent) or the failure:
/// `dial_failure`, `timeout`, `connection_closed`, `unsupported_protocols`, `too_many_streams`,
/// `peer_limit`, `io`, outbound also `cancelled` (the request's future was dropped), and
/// inbound also `response_omission`.
#[derive(Clone, Debug)]
pub struct RrMetrics {
    families: Arc<RrFamilies>,
}

/// Label sets with the behaviour's protocol name among them.
type ProtocolLabels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct RrFamilies {
    requests: Family<ProtocolLabels, Counter>,
    duration: Family<ProtocolLabels, LatencyHistogram>,
    in_flight: Family<ProtocolLabels, Gauge>,
    dropped: Family<ProtocolLabels, Counter>,
}

/// One behaviour's handles, resolved once at its creation so a request touches only atomics.
#[derive(Debug)]
pub(crate) struct RrHandles {
    families: Arc<RrFamilies>,
    protocol: String,
    outbound_ok: Counter,
    inbound_ok: Counter,
    duration: LatencyHistogram,
    outbound_in_flight: Gauge,
    inbound_in_flight: Gauge,
    pub(crate) events_dropped: Counter,
}

impl Default for RrMetrics {
    /// The request-response metrics of the [default registry](super::default_registry).
    fn default() -> Self {
        static DEFAULT: OnceLock<RrMetrics> = OnceLock::new();
        super::default_of(&DEFAULT, RrMetrics::register)
    }
}

impl RrMetrics {
    /// Registers the request-response metric families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let families = RrFamilies {
            requests: Family::default(),
            duration: Family::default(),
            in_flight: Family::default(),
            dropped: Family::default(),
        };
        registry.register(
            "missive_rr_requests",
            "Requests ended, by protocol, direction and outcome",
            families.requests.clone(),
        );
        registry.register_with_unit(
            "missive_rr_request_duration",
            "Time from an outbound request's call to its response",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register(
            "missive_rr_requests_in_flight",
            "Requests under way",
            families.in_flight.clone(),
        );
        registry.register(
            "missive_rr_events_dropped",
            "Events dropped because the application did not read them",
            families.dropped.clone(),
        );
        RrMetrics {
            families: Arc::new(families),
        }
    }

    /// The handles of a behaviour whose first protocol is `protocol`.
    pub(crate) fn for_protocol(&self, protocol: &str) -> Arc<RrHandles> {
        let f = &self.families;
        let with = |direction: &'static str, outcome: Option<&'static str>| {
            let mut labels = vec![
                ("protocol", protocol.to_owned()),
                ("direction", direction.to_owned()),
            ];
            labels.extend(outcome.map(|o| ("outcome", o.to_owned())));
            labels
        };
        let only_protocol = vec![("protocol", protocol.to_owned())];
        Arc::new(RrHandles {
            outbound_ok: f
                .requests
                .get_or_create_owned(&with("outbound", Some("ok"))),
            inbound_ok: f.requests.get_or_create_owned(&with("inbound", Some("ok"))),
            duration: f.duration.get_or_create_owned(&only_protocol),
            outbound_in_flight: f.in_flight.get_or_create_owned(&with("outbound", None)),
            inbound_in_flight: f.in_flight.get_or_create_owned(&with("inbound", None)),
            events_dropped: f.dropped.get_or_create_owned(&only_protocol),
            protocol: protocol.to_owned(),
            families: f.clone(),
        })
    }
}

impl RrHandles {
    /// An outbound request starts; it ends with [`OutboundRecord::end`] or, dropped, as
    /// `cancelled`.
    pub(crate) fn outbound(self: &Arc<Self>) -> OutboundRecord {
        self.outbound_in_flight.inc();
        OutboundRecord {
            handles: self.clone(),
            started: Instant::now(),
            ended: false,
        }
    }

    /// An inbound request is admitted; it is in flight until the guard drops.
    pub(crate) fn inbound(self: &Arc<Self>) -> InboundInFlight {
        self.inbound_in_flight.inc();
        InboundInFlight(self.clone())
    }

    /// An inbound request ended: `None` when its response was sent.
    pub(crate) fn inbound_ended(&self, failure: Option<&InboundFailure>) {
        let outcome = match failure {
            None => {
                self.inbound_ok.inc();
                return;
            }
            Some(InboundFailure::Timeout) => "timeout",
            Some(InboundFailure::ConnectionClosed) => "connection_closed",
            Some(InboundFailure::UnsupportedProtocols) => "unsupported_protocols",
            Some(InboundFailure::ResponseOmission) => "response_omission",
            Some(InboundFailure::TooManyStreams) => "too_many_streams",
            Some(InboundFailure::PeerLimit) => "peer_limit",
            Some(InboundFailure::Io(_)) => "io",
        };
        self.ended("inbound", outcome);
    }

    /// A request ended otherwise than well (the rare path: it builds its label set).
    fn ended(&self, direction: &'static str, outcome: &'static str) {
        self.families
            .requests
            .get_or_create(&vec![
                ("protocol", self.protocol.clone()),
                ("direction", direction.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }
}

/// One outbound request's outcome and time.
#[derive(Debug)]
pub(crate) struct OutboundRecord {
    handles: Arc<RrHandles>,
    started: Instant,
    ended: bool,
}

impl OutboundRecord {
    /// The request ended: `None` when it got its response.
    pub(crate) fn end(mut self, failure: Option<&OutboundFailure>) {
        self.ended = true;
        let h = &self.handles;
        h.outbound_in_flight.dec();
        let outcome = match failure {
            None => {
                h.outbound_ok.inc();
                h.duration.observe(self.started.elapsed());
                return;
            }
            Some(OutboundFailure::DialFailure(_)) => "dial_failure",
            Some(OutboundFailure::Timeout) => "timeout",
            Some(OutboundFailure::ConnectionClosed) => "connection_closed",
            Some(OutboundFailure::UnsupportedProtocols) => "unsupported_protocols",
            Some(OutboundFailure::TooManyStreams) => "too_many_streams",
            Some(OutboundFailure::PeerLimit) => "peer_limit",
            Some(OutboundFailure::Io(_)) => "io",
        };
        h.ended("outbound", outcome);
    }
}

impl Drop for OutboundRecord {
    fn drop(&mut self) {
        if !self.ended {
            self.handles.outbound_in_flight.dec();
            self.handles.ended("outbound", "cancelled");
        }
    }
}

/// Holds one place in the inbound in-flight gauge.
#[derive(Debug)]
pub(crate) struct InboundInFlight(Arc<RrHandles>);

impl Drop for InboundInFlight {
    fn drop(&mut self) {
        self.0.inbound_in_flight.dec();
    }
}
