//! [`NodeConfig`]: every limit and timer of a [`super::Node`].

use std::time::Duration;

use super::Security;

/// Settings of a [`super::Node`]. Every limit has a default taken from the libp2p
/// implementations users trust; see each setter for what it costs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    pub(crate) connection_setup_timeout: Duration,
    pub(crate) negotiation_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections_per_peer: usize,
    pub(crate) max_pending_incoming: usize,
    pub(crate) max_pending_incoming_per_ip: usize,
    pub(crate) first_bytes_timeout: Duration,
    pub(crate) max_negotiating_inbound_streams: usize,
    pub(crate) max_streams_per_connection: usize,
    pub(crate) inbound_backlog: usize,
    pub(crate) event_capacity: usize,
    pub(crate) ping_timeout: Duration,
    pub(crate) enable_perf: bool,
    pub(crate) security: Vec<Security>,
    #[cfg(feature = "websocket")]
    pub(crate) websocket_tls_server: Option<std::sync::Arc<rustls::ServerConfig>>,
    #[cfg(feature = "websocket")]
    pub(crate) websocket_tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub(crate) socket: crate::transport::tcp::SocketOptions,
    pub(crate) udp_socket: crate::transport::udp::UdpSocketOptions,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::NodeMetrics,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            connection_setup_timeout: Duration::from_secs(10),
            negotiation_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections_per_peer: 8,
            max_pending_incoming: 64,
            max_pending_incoming_per_ip: 32,
            first_bytes_timeout: crate::transport::DEFAULT_FIRST_BYTES_TIMEOUT,
            max_negotiating_inbound_streams: 128,
            max_streams_per_connection: 512,
            inbound_backlog: 16,
            event_capacity: 256,
            ping_timeout: Duration::from_secs(20),
            enable_perf: false,
            security: vec![Security::Noise, Security::Tls],
            #[cfg(feature = "websocket")]
            websocket_tls_server: None,
            #[cfg(feature = "websocket")]
            websocket_tls_client: None,
            socket: crate::transport::tcp::SocketOptions::default(),
            udp_socket: crate::transport::udp::UdpSocketOptions::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::NodeMetrics::default(),
        }
    }
}

impl NodeConfig {
    /// The options of the node's TCP sockets: its listeners (backlog, `SO_REUSEADDR`, buffer
    /// sizes) and every connection it dials or accepts (`TCP_NODELAY`, keepalive, buffer
    /// sizes); defaults: [`SocketOptions`](crate::transport::tcp::SocketOptions).
    pub fn with_socket_options(mut self, options: crate::transport::tcp::SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// The options of the node's UDP sockets, under QUIC and WebTransport (`SO_REUSEADDR`,
    /// buffer sizes); defaults: [`UdpSocketOptions`](crate::transport::udp::UdpSocketOptions).
    pub fn with_udp_socket_options(
        mut self,
        options: crate::transport::udp::UdpSocketOptions,
    ) -> Self {
        self.udp_socket = options;
        self
    }

    /// Where the node records its metrics (default:
    /// [`NodeMetrics::default`](crate::metrics::NodeMetrics), in the crate's default registry).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: crate::metrics::NodeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Total deadline for TCP connect + security (Noise or TLS) + Yamux negotiation (default
    /// 10 s). It is a deadline, not an idle timer: a peer that trickles bytes is cut off all
    /// the same.
    pub fn with_connection_setup_timeout(mut self, d: Duration) -> Self {
        self.connection_setup_timeout = d;
        self
    }

    /// Deadline for multistream-select on a new stream (default 10 s).
    pub fn with_negotiation_timeout(mut self, d: Duration) -> Self {
        self.negotiation_timeout = d;
        self
    }

    /// How long a connection without any stream stays open (default 10 s).
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Connections kept to one peer, both directions together (default 8); further ones are
    /// closed right after their handshake.
    pub fn with_max_connections_per_peer(mut self, n: usize) -> Self {
        self.max_connections_per_peer = n.max(1);
        self
    }

    /// Inbound connections in their handshake at once (default 64), so that slow handshakes
    /// cannot use up memory and tasks. A newcomer to a full table is still admitted: the least
    /// advanced connection in the table (one that has sent nothing, before one that has; the
    /// oldest first) is closed instead, with an
    /// [`IncomingError::TooManyPendingHandshakes`](super::IncomingError::TooManyPendingHandshakes)
    /// event. Sockets that never speak therefore cannot lock honest peers out.
    pub fn with_max_pending_incoming(mut self, n: usize) -> Self {
        self.max_pending_incoming = n.max(1);
        self
    }

    /// Inbound connections in their handshake at once from one IP address (default 32, half the
    /// table). A newcomer from an address at its share takes the place of that address's least
    /// advanced connection, so one address cannot fill the table at others' expense. Keep it
    /// above the dials one honest host makes at once (behind a NAT, many hosts share one).
    pub fn with_max_pending_incoming_per_ip(mut self, n: usize) -> Self {
        self.max_pending_incoming_per_ip = n.max(1);
        self
    }

    /// How long an inbound connection may stay silent after it was accepted (default 3 s): one
    /// that has sent no byte by then is closed with an
    /// [`IncomingError::FirstBytesTimeout`](super::IncomingError::FirstBytesTimeout) event. A
    /// libp2p dialer speaks first, at once; this only frees the slots of sockets that never do.
    pub fn with_first_bytes_timeout(mut self, d: Duration) -> Self {
        self.first_bytes_timeout = d;
        self
    }

    /// Inbound streams negotiating their protocol at once, per connection (default 128);
    /// further ones are reset.
    pub fn with_max_negotiating_inbound_streams(mut self, n: usize) -> Self {
        self.max_negotiating_inbound_streams = n.max(1);
        self
    }

    /// Open streams per connection (default 512). Extra inbound streams are reset and extra
    /// outbound ones fail with an error; the connection stays up.
    pub fn with_max_streams_per_connection(mut self, n: usize) -> Self {
        self.max_streams_per_connection = n.max(1);
        self
    }

    /// Inbound streams buffered per accepted protocol while the application has not taken
    /// them (default 16); further ones are reset and counted.
    pub fn with_inbound_backlog(mut self, n: usize) -> Self {
        self.inbound_backlog = n.max(1);
        self
    }

    /// Node events buffered for each subscriber (default 256); a subscriber that falls further
    /// behind skips the oldest ones.
    pub fn with_event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// The certificate of `wss` listeners (`/tcp/N/tls/ws`, `/tcp/N/wss`); without one, listening
    /// on such an address fails with [`ListenError::NoCertificate`](super::ListenError::NoCertificate).
    /// Make it from PEM files with [`crate::transport::tls::server_config`] (as the queue's TLS
    /// listener does), or from [`crate::transport::tls::SelfSigned`] for tests. The libp2p
    /// security protocol still runs inside, so a peer's identity never rests on this certificate.
    #[cfg(feature = "websocket")]
    pub fn with_websocket_tls_server(
        mut self,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> Self {
        self.websocket_tls_server = Some(config);
        self
    }

    /// The TLS client configuration (trusted roots) for dialing `wss` addresses; without one such
    /// a dial fails with [`WebSocketError::NoTlsClientConfig`](super::WebSocketError::NoTlsClientConfig).
    /// [`crate::transport::tls::client_config`] makes one from root certificates.
    #[cfg(feature = "websocket")]
    pub fn with_websocket_tls_client(
        mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Self {
        self.websocket_tls_client = Some(config);
        self
    }

    /// Deadline of one [`super::Node::ping`] (default 20 s).
    pub fn with_ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }

    /// The security protocols of TCP connections (default Noise, then TLS). A listener accepts
    /// any of them. A dialer proposes the first alone, its proposal travelling with the first
    /// handshake message (no round trip of its own); only when the listener refuses it does the
    /// dialer connect again and propose the next. So a dial to a peer that speaks the first
    /// costs nothing for the others, and one to a peer that speaks only a later one costs one
    /// TCP connection per refusal. Duplicates are dropped, and an empty list keeps the current
    /// one.
    pub fn with_security(mut self, protocols: &[Security]) -> Self {
        let mut list = Vec::with_capacity(protocols.len());
        for p in protocols {
            if !list.contains(p) {
                list.push(*p);
            }
        }
        if !list.is_empty() {
            self.security = list;
        }
        self
    }

    /// Serves `/perf/1.0.0` (default off: it lets peers ask for any amount of data).
    pub fn with_perf(mut self, enable: bool) -> Self {
        self.enable_perf = enable;
        self
    }
}
