//! [`Config`]: the timers and limits of a request-response [`Behaviour`](super::Behaviour).

use std::collections::HashMap;
use std::time::Duration;

use crate::p2p::PeerId;
use crate::p2p::negotiate::Version;

/// What an outbound request does when its peer already has the per-peer maximum in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnPeerLimit {
    /// Wait for a request to that peer to finish (the wait counts against the request timeout).
    #[default]
    Wait,
    /// Fail at once with [`OutboundFailure::PeerLimit`](super::OutboundFailure::PeerLimit).
    Fail,
}

/// Settings of a request-response [`Behaviour`](super::Behaviour). Defaults follow rust-libp2p.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    pub(crate) request_timeout: Duration,
    pub(crate) max_concurrent_streams: usize,
    pub(crate) max_requests_per_peer: usize,
    pub(crate) peer_limits: HashMap<PeerId, usize>,
    pub(crate) on_peer_limit: OnPeerLimit,
    pub(crate) version: Version,
    pub(crate) event_capacity: usize,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::RrMetrics,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_concurrent_streams: 100,
            max_requests_per_peer: 100,
            peer_limits: HashMap::new(),
            on_peer_limit: OnPeerLimit::Wait,
            version: Version::V1Lazy,
            event_capacity: 256,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::RrMetrics::default(),
        }
    }
}

impl Config {
    /// Where the behaviour records its metrics (default:
    /// [`RrMetrics::default`](crate::metrics::RrMetrics), in the crate's default registry).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: crate::metrics::RrMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Deadline of one request, from the call until the whole response is read; and for an
    /// inbound request, from its stream until the response is written (default 10 s).
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Request-response streams open at once on one connection, both directions together
    /// (default 100). At the limit an outbound request fails with
    /// [`OutboundFailure::TooManyStreams`](super::OutboundFailure::TooManyStreams) and an inbound
    /// stream is reset with an
    /// [`InboundFailure::TooManyStreams`](super::InboundFailure::TooManyStreams) event.
    pub fn with_max_concurrent_streams(mut self, n: usize) -> Self {
        self.max_concurrent_streams = n.max(1);
        self
    }

    /// Requests in flight with one peer, counted per direction (default 100). This is local
    /// policy (the old `Throttled` wrapper's job); nothing of it goes on the wire.
    pub fn with_max_requests_per_peer(mut self, n: usize) -> Self {
        self.max_requests_per_peer = n.max(1);
        self
    }

    /// Overrides [`Config::with_max_requests_per_peer`] for `peer`.
    pub fn with_peer_limit(mut self, peer: PeerId, n: usize) -> Self {
        self.peer_limits.insert(peer, n.max(1));
        self
    }

    /// What an outbound request does at the per-peer limit (default: wait).
    pub fn with_on_peer_limit(mut self, mode: OnPeerLimit) -> Self {
        self.on_peer_limit = mode;
        self
    }

    /// multistream-select flavour for outbound streams (default [`Version::V1Lazy`]: with a
    /// single outbound protocol the proposal travels with the request, saving a round trip;
    /// rust-libp2p accepts it). With several outbound protocols, or with [`Version::V1`], the
    /// requester waits for the peer's answer before it writes the request. A lazy requester
    /// learns that the peer refused the protocol when it reads the response; a one-way protocol
    /// ([`OneWay`](super::OneWay)) reads none, so its requests to a peer that refuses count as
    /// done: use [`Version::V1`] where a one-way sender must learn of refusals.
    ///
    /// js-libp2p 3 servers lose a lazy request whose end arrives before they have answered
    /// the proposal (their multistream-select hands the early bytes back to a stream that is
    /// already closed for reading, then resets it or never answers): use [`Version::V1`]
    /// towards js-libp2p servers. rust-libp2p and missive servers take the lazy request.
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Events kept until the application reads them (default 256). Protocol work never waits
    /// for the reader: when a new event does not fit, the oldest one is dropped and counted in
    /// [`Events::dropped`](super::Events::dropped). Memory for events is bounded by this many.
    pub fn with_event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }
}
