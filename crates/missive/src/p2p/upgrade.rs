//! Connection upgrade: TCP or WebSocket → multistream-select `/noise` or `/tls/1.0.0` → Noise XX or TLS 1.3
//! → multistream-select `/yamux/1.0.0` → yamux ([`super::mux`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;

use super::connection::Muxed;
use super::negotiate::Version;
use super::negotiated::{NegotiateError, Negotiated, dialer_select, listener_select};
use super::noise::{NoiseConfig, NoiseError, NoiseStream};
use super::tls::{TlsConfig, TlsError};
use super::{NodeConfig, PeerId};

/// The Noise security protocol.
pub(crate) const NOISE: &str = "/noise";
/// The stream multiplexer.
pub(crate) const YAMUX: &str = "/yamux/1.0.0";
/// Plaintext gathered before it goes to rustls: a whole TLS record's worth, so that the yamux
/// frames (header and body are separate writes) of one flush become few records.
const TLS_WRITE_BUFFER: usize = 16 * 1024;

/// The security protocols a node speaks on TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Security {
    /// Noise XX with the libp2p handshake payload (`/noise`).
    Noise,
    /// libp2p-tls, TLS 1.3 with the libp2p certificate (`/tls/1.0.0`).
    Tls,
}

impl Security {
    /// The multistream-select protocol name.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Security::Noise => NOISE,
            Security::Tls => super::tls::PROTOCOL,
        }
    }

    fn from_protocol_name(name: &str) -> Option<Self> {
        [Security::Noise, Security::Tls]
            .into_iter()
            .find(|s| s.protocol_name() == name)
    }
}

/// The byte stream a connection's security runs on: TCP, or a WebSocket over TCP; with the
/// metrics feature it counts the bytes it carries.
#[derive(Debug)]
pub(crate) struct Wire {
    stream: WireStream,
    #[cfg(feature = "metrics")]
    tally: Option<crate::metrics::node::WireTally>,
}

#[derive(Debug)]
enum WireStream {
    Tcp(TcpStream),
    #[cfg(feature = "websocket")]
    WebSocket(Box<super::websocket::WsConnection>),
}

impl Wire {
    fn of(stream: WireStream) -> Self {
        Wire {
            stream,
            #[cfg(feature = "metrics")]
            tally: None,
        }
    }

    /// A WebSocket connection (its HTTP upgrade done).
    #[cfg(feature = "websocket")]
    pub(crate) fn websocket(ws: super::websocket::WsConnection) -> Self {
        Self::of(WireStream::WebSocket(Box::new(ws)))
    }

    /// Sets the node's TCP socket options (nodelay, keepalive, buffers) on the socket under it.
    fn apply(&self, options: &crate::transport::tcp::SocketOptions) -> io::Result<()> {
        let tcp = match &self.stream {
            WireStream::Tcp(t) => t,
            #[cfg(feature = "websocket")]
            WireStream::WebSocket(ws) => ws.get_ref().tcp(),
        };
        options.apply(tcp)
    }

    /// The transport's name in the metrics.
    #[cfg(feature = "metrics")]
    fn transport(&self) -> &'static str {
        match &self.stream {
            WireStream::Tcp(_) => "tcp",
            #[cfg(feature = "websocket")]
            WireStream::WebSocket(_) => "websocket",
        }
    }
}

impl From<TcpStream> for Wire {
    fn from(tcp: TcpStream) -> Self {
        Self::of(WireStream::Tcp(tcp))
    }
}

/// The transport stream after multistream-select chose the security protocol.
type Raw = Negotiated<Wire>;

/// The decrypted byte stream of a connection, whichever security protocol made it. The TLS
/// side is boxed (rustls's state is large) and buffered: rustls makes a record of every write.
/// Noise, the default, stays inline: one value per connection, inside the muxer's state.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Secured {
    Noise(NoiseStream<Raw>),
    Tls(Box<BufWriter<tokio_rustls::TlsStream<Raw>>>),
}

/// The secured bytes yamux runs on.
pub(crate) type MuxIo = Negotiated<Secured>;
/// The yamux connection over the secured bytes.
pub(crate) type MuxConnection = super::mux::Connection<MuxIo>;

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The peer did not agree to `/noise` or `/yamux/1.0.0`, or broke multistream-select.
    #[error("connection negotiation failed: {0}")]
    Negotiation(#[source] NegotiateError),
    /// The Noise handshake failed (bad signature, wrong peer, broken message, i/o).
    #[error("noise handshake failed: {0}")]
    Noise(#[source] NoiseError),
    /// The libp2p-tls handshake failed (refused certificate, wrong peer, TLS alert, i/o).
    #[error("tls handshake failed: {0}")]
    Tls(#[source] TlsError),
    /// The connection was not secured and multiplexed within the setup deadline.
    #[error("connection setup did not finish within the deadline")]
    Timeout,
    /// The QUIC connection could not be made (its handshake failed, or it was refused).
    #[error("QUIC connection failed: {0}")]
    Quic(#[source] std::io::Error),
    /// The WebSocket upgrade (HTTP, and TLS for `wss`) failed.
    #[cfg(feature = "websocket")]
    #[error("websocket upgrade failed: {0}")]
    WebSocket(#[source] super::websocket::WebSocketError),
    /// The WebTransport session could not be set up (HTTP/3, the CONNECT request, the
    /// Noise handshake's stream).
    #[cfg(feature = "webtransport")]
    #[error("WebTransport session failed: {0}")]
    WebTransport(#[source] super::webtransport::WebTransportError),
}

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// This node dialed.
    Dialer,
    /// The remote dialed this node.
    Listener,
}

/// The security configurations of a node, prepared once.
#[derive(Debug)]
pub(crate) struct SecurityConfigs {
    pub(crate) noise: NoiseConfig,
    pub(crate) tls: TlsConfig,
}

/// Secures and multiplexes `wire` (the caller applies the setup deadline). The dialer proposes
/// `proposal` (or the first configured) alone, lazily; the listener accepts any configured security protocol. A refusal of
/// the proposal shows as an error [`refused_security`] recognises.
pub(crate) async fn upgrade(
    #[cfg_attr(not(feature = "metrics"), allow(unused_mut))] mut wire: Wire,
    security: &SecurityConfigs,
    config: &NodeConfig,
    endpoint: Endpoint,
    expected: Option<PeerId>,
    proposal: Option<Security>,
) -> Result<(Muxed, PeerId), UpgradeError> {
    if let Err(e) = wire.apply(&config.socket) {
        tracing::debug!(error = %e, "node connection: socket options not set");
    }
    #[cfg(feature = "metrics")]
    {
        wire.tally = Some(config.metrics.inner.wire_tally(wire.transport()));
    }
    let dialer = endpoint == Endpoint::Dialer;
    let offered = &config.security;
    let (chosen, raw) = if dialer {
        let first = proposal
            .or_else(|| offered.first().copied())
            .unwrap_or(Security::Noise);
        dialer_select(wire, [first.protocol_name()], Version::V1Lazy).await
    } else {
        listener_select(wire, |p| offered.iter().any(|s| s.protocol_name() == p)).await
    }
    .map_err(UpgradeError::Negotiation)?;
    let (encrypted, peer) = match Security::from_protocol_name(&chosen) {
        Some(Security::Noise) => {
            let (stream, peer) = security
                .noise
                .handshake(raw, dialer, expected)
                .await
                .map_err(UpgradeError::Noise)?;
            (Secured::Noise(stream), peer)
        }
        Some(Security::Tls) => {
            let (stream, peer) = security
                .tls
                .handshake(raw, dialer, expected)
                .await
                .map_err(UpgradeError::Tls)?;
            let buffered = BufWriter::with_capacity(TLS_WRITE_BUFFER, stream);
            (Secured::Tls(Box::new(buffered)), peer)
        }
        None => {
            return Err(UpgradeError::Negotiation(NegotiateError::Io(
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "negotiated an unoffered protocol",
                ),
            )));
        }
    };
    let muxable = if dialer {
        dialer_select(encrypted, [YAMUX], Version::V1Lazy).await
    } else {
        listener_select(encrypted, |p| p == YAMUX).await
    }
    .map_err(UpgradeError::Negotiation)?
    .1;
    let mode = if dialer {
        super::mux::Mode::Client
    } else {
        super::mux::Mode::Server
    };
    let conn = super::mux::Connection::new(muxable, mode, mux_config(config));
    Ok((Muxed::Yamux(Box::new(conn)), peer))
}

/// Whether `e` says that the listener refused the proposed security protocol (answered `na`),
/// which a lazy proposal learns at the handshake's first read.
pub(crate) fn refused_security(e: &UpgradeError) -> bool {
    match e {
        UpgradeError::Negotiation(NegotiateError::Protocol(
            super::negotiate::NegotiationError::Unsupported,
        )) => true,
        UpgradeError::Negotiation(NegotiateError::Io(io))
        | UpgradeError::Noise(NoiseError::Io(io))
        | UpgradeError::Tls(TlsError::Io(io)) => {
            super::negotiated::is_protocol_refused(io) || super::negotiated::is_unconfirmed(io)
        }
        _ => false,
    }
}

/// The largest yamux frame body the node sends: a bulk write of 64 KiB goes out as one frame,
/// within the peer's initial window of 256 KiB.
const MAX_FRAME: u32 = 64 * 1024;

/// Yamux settings: the peer's streams are capped above the node's own per-connection limit,
/// so that the node refuses an extra stream itself (reset, with an event) and yamux's cap only
/// bounds what a peer can make the session allocate.
fn mux_config(config: &NodeConfig) -> super::mux::Config {
    super::mux::Config {
        max_inbound_streams: config.max_streams_per_connection.saturating_add(256),
        max_frame: MAX_FRAME,
        ..super::mux::Config::default()
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Secured::Noise($s) => {
                let $s = Pin::new($s);
                $e
            }
            Secured::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Secured {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Secured {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Secured::Noise(s) => s.is_write_vectored(),
            Secured::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

macro_rules! wire {
    ($stream:expr, $s:ident => $e:expr) => {
        match $stream {
            WireStream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "websocket")]
            WireStream::WebSocket($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        #[cfg(feature = "metrics")]
        let before = buf.filled().len();
        let read = wire!(&mut this.stream, s => s.poll_read(cx, buf));
        #[cfg(feature = "metrics")]
        if let Some(tally) = &this.tally {
            tally.read(buf.filled().len() - before);
        }
        read
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = wire!(&mut this.stream, s => s.poll_write(cx, buf));
        this.wrote(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = wire!(&mut this.stream, s => s.poll_write_vectored(cx, bufs));
        this.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            WireStream::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "websocket")]
            WireStream::WebSocket(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        wire!(&mut self.get_mut().stream, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        wire!(&mut self.get_mut().stream, s => s.poll_shutdown(cx))
    }
}

impl Wire {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        #[cfg(feature = "metrics")]
        if let (Some(tally), Poll::Ready(Ok(n))) = (&self.tally, written) {
            tally.written(*n);
        }
    }
}
