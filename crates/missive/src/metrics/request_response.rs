//! Request-response metrics (`missive_rr_*`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{Counter, Family, Gauge, Labels, latency_buckets};
use crate::request_response::{InboundFailure, OutboundFailure};

/// The metric families of request-response behaviours.
///
/// | name | type | labels |
/// |---|---|---|
/// | `missive_rr_requests_total` | counter | `direction` (outbound, inbound), `outcome` |
/// | `missive_rr_request_duration_seconds` | histogram | outbound requests answered, from the call to the response |
/// | `missive_rr_requests_in_flight` | gauge | `direction` |
/// | `missive_rr_events_dropped_total` | counter | events dropped because the application did not read them |
///
/// `outcome` is `ok` (outbound: a response; inbound: a response sent) or the failure:
/// `dial_failure`, `timeout`, `connection_closed`, `unsupported_protocols`, `too_many_streams`,
/// `peer_limit`, `io`, and inbound also `response_omission`. To tell behaviours apart, give each
/// its own metrics registered in a sub-registry with a label
/// (`registry.sub_registry_with_label(("protocol", "/greet/1".into()))`).
#[derive(Clone, Debug)]
pub struct RrMetrics {
    pub(crate) inner: Arc<RrHandles>,
}

#[derive(Debug)]
pub(crate) struct RrHandles {
    requests: Family<Labels, Counter>,
    outbound_ok: Counter,
    inbound_ok: Counter,
    duration: Histogram,
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
        let requests = Family::<Labels, Counter>::default();
        let duration = Histogram::new(latency_buckets());
        let in_flight = Family::<Labels, Gauge>::default();
        let dropped = Counter::default();
        registry.register(
            "missive_rr_requests",
            "Requests ended, by direction and outcome",
            requests.clone(),
        );
        registry.register_with_unit(
            "missive_rr_request_duration",
            "Time from an outbound request's call to its response",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "missive_rr_requests_in_flight",
            "Requests under way",
            in_flight.clone(),
        );
        registry.register(
            "missive_rr_events_dropped",
            "Events dropped because the application did not read them",
            dropped.clone(),
        );
        let ok = |direction: &'static str| {
            requests.get_or_create_owned(&vec![("direction", direction), ("outcome", "ok")])
        };
        let gauge = |direction: &'static str| {
            in_flight.get_or_create_owned(&vec![("direction", direction)])
        };
        RrMetrics {
            inner: Arc::new(RrHandles {
                outbound_ok: ok("outbound"),
                inbound_ok: ok("inbound"),
                outbound_in_flight: gauge("outbound"),
                inbound_in_flight: gauge("inbound"),
                requests,
                duration,
                events_dropped: dropped,
            }),
        }
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

    fn ended(&self, direction: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&vec![("direction", direction), ("outcome", outcome)])
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
                h.duration.observe(self.started.elapsed().as_secs_f64());
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
