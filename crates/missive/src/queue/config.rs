//! Limits and switches of a queue connection.

use std::time::Duration;

/// Settings of a queue [`Connection`](super::Connection) and [`Listener`](super::Listener).
///
/// Every field has a default taken from the systems users already trust, and a by-value setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueConfig {
    pub(crate) max_frame_len: usize,
    pub(crate) send_buffer: usize,
    pub(crate) read_chunk: usize,
    pub(crate) any_version: bool,
    pub(crate) empty_payloads: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_pending_handshakes: usize,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) first_bytes_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) connect_timeout: Duration,
    #[cfg(feature = "tcp")]
    pub(crate) socket: crate::transport::tcp::SocketOptions,
    pub(crate) idle_timeout: Option<Duration>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::QueueMetrics,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_frame_len: 8 * 1024 * 1024,
            send_buffer: 256 * 1024,
            read_chunk: 64 * 1024,
            any_version: false,
            empty_payloads: false,
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 64,
            first_bytes_timeout: crate::transport::DEFAULT_FIRST_BYTES_TIMEOUT,
            linger: Duration::from_secs(2),
            connect_timeout: crate::transport::DEFAULT_CONNECT_TIMEOUT,
            #[cfg(feature = "tcp")]
            socket: crate::transport::tcp::SocketOptions::default(),
            idle_timeout: None,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::QueueMetrics::default(),
        }
    }
}

impl QueueConfig {
    /// connect 0.2.4's limit as a frame length: payloads of up to 100,000,000 bytes, plus the 4
    /// bytes of version and tag. `with_max_frame_len(QueueConfig::CONNECT_MAX_FRAME_LEN)` accepts
    /// and sends everything a connect peer does.
    pub const CONNECT_MAX_FRAME_LEN: usize = 100_000_004;

    /// The largest frame accepted or sent, counted as the frame's size field (payload + 4).
    ///
    /// Default 8 MiB, as tokio-util's `LengthDelimitedCodec`; [`Self::CONNECT_MAX_FRAME_LEN`]
    /// is connect's 100 MB. A received frame that claims more ends the reader with
    /// `FrameError::TooLarge` before anything is allocated for it; a larger datagram is refused
    /// by the writer with `SendError::TooLarge`. Raising it lets one peer make the other buffer
    /// that much per connection (the buffer grows with the bytes that arrive, not with the
    /// claim). Values are kept between 4 and `u32::MAX`, what the size field can say.
    pub fn with_max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes.clamp(4, u32::MAX as usize);
        self
    }

    /// The frame limit (see [`Self::with_max_frame_len`]).
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// How many bytes the writer queues before a send waits for the socket (default 256 KiB).
    ///
    /// This is the backpressure bound: when the peer stops reading, senders wait once this much is
    /// queued, so memory per connection stays at about this plus one datagram. Larger values batch
    /// more per system call at the cost of memory.
    pub fn with_send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes.max(1);
        self
    }

    /// How much the reader asks the socket for at least, per read (default 64 KiB).
    pub fn with_read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes.max(64);
        self
    }

    /// Accept datagrams of any version (default: only version 1, which is what every peer sends;
    /// anything else ends the reader with `FrameError::UnsupportedVersion`).
    pub fn with_any_version(mut self, any: bool) -> Self {
        self.any_version = any;
        self
    }

    /// Allow sending datagrams with an empty payload (default: refused with
    /// `SendError::EmptyPayload`, because connect 0.2.4 cannot read them). Empty payloads are always
    /// accepted on receipt.
    pub fn with_empty_payloads(mut self, allow: bool) -> Self {
        self.empty_payloads = allow;
        self
    }

    /// How long a TLS listener waits for a client to finish its handshake, and a TLS client
    /// (`Connection::tls_client_with`) for the server (default 10 s). Past it the client gets
    /// `TlsError::HandshakeTimeout`; the listener drops the connection and counts it.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long [`Connection::close`](super::Connection::close) keeps reading after it has shut
    /// down the write side, waiting for the peer to close too (default 2 s).
    ///
    /// A socket closed with unread data in its receive buffer (a late datagram, or a TLS 1.3 session
    /// ticket the application never asked for) is reset by the kernel, and a reset can make the peer
    /// lose datagrams it has received but not yet read. Reading until the peer's end avoids that.
    /// Zero skips the wait.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How long a client waits for its TCP or Unix connection to be made (default 10 s); past it,
    /// `ConnectError::Timeout` (TLS: `TlsError::ConnectTimeout`). A listener whose accept queue
    /// is full drops the handshake, and the system would retry for minutes.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Where the connections and listeners made with this configuration record their metrics
    /// (default: [`QueueMetrics::default`](crate::metrics::QueueMetrics), in the crate's default
    /// registry).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: crate::metrics::QueueMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// TCP keepalive on the connections a [`Listener`](super::Listener) accepts (default: probes
    /// after 30 s without traffic; `None` turns it off). It notices a peer that vanished without
    /// closing (power loss, a dropped route) at the cost of a few probe packets per idle
    /// connection.
    #[cfg(feature = "tcp")]
    pub fn with_tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.socket = self.socket.with_keepalive(idle);
        self
    }

    /// The TCP options of the sockets this configuration makes: clients, listeners bound with
    /// [`Listener::bind_tcp_with`](super::Listener::bind_tcp_with), and the connections they
    /// accept (defaults: [`SocketOptions`](crate::transport::tcp::SocketOptions)). Replaces the
    /// keepalive set by [`Self::with_tcp_keepalive`].
    #[cfg(feature = "tcp")]
    pub fn with_socket_options(mut self, options: crate::transport::tcp::SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// Sheds a connection on which nothing arrives for this long (default `None`: never). The
    /// reader then ends with `RecvError::Idle`, and the application drops the connection. Only
    /// received bytes count: a connection that only sends is idle to its reader. The timer runs
    /// while the reader is polled.
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many TLS handshakes a listener runs at once (default 64); past that, a new connection
    /// is still accepted and the least advanced handshake in progress (one whose client has sent
    /// nothing, before one that has; the oldest first) is closed to make room, as is the oldest
    /// of one IP address holding half of them. So clients that never speak cannot lock honest
    /// ones out.
    pub fn with_max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending_handshakes = n.max(1);
        self
    }

    /// How long a new TLS connection may stay silent before its client hello (default 3 s):
    /// a client that has sent nothing by then is dropped and counted as a failed handshake,
    /// without waiting for the whole handshake deadline.
    pub fn with_first_bytes_timeout(mut self, timeout: Duration) -> Self {
        self.first_bytes_timeout = timeout;
        self
    }
}
