//! The streams of a node's connections: [`Stream`] (negotiated, with its protocol), the
//! [`StreamProtocol`] name, [`IncomingStreams`] of an accepted protocol and the errors of
//! opening and registering. The application-facing vocabulary built on them is in
//! [`crate::stream`], which re-exports these.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::connection::StreamGuard;
use super::negotiate::{MAX_MESSAGE_LEN, NegotiationError};
use super::negotiated::Negotiated;
use super::node::Shared;
use super::substream::Substream;
use super::{ConnectionId, DialError, PeerId};

/// The name of a stream protocol, such as `/echo/1.0.0`. It starts with `/`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamProtocol(Cow<'static, str>);

impl StreamProtocol {
    /// A protocol name known at compile time.
    ///
    /// # Panics
    /// If `name` does not start with `/` (a programming error; use
    /// [`StreamProtocol::try_from_owned`] for names from outside).
    pub const fn new(name: &'static str) -> Self {
        let b = name.as_bytes();
        assert!(
            !b.is_empty() && b[0] == b'/',
            "a protocol name starts with '/'"
        );
        Self(Cow::Borrowed(name))
    }

    /// A protocol name made at run time; it must start with `/` and fit in one
    /// multistream-select message.
    pub fn try_from_owned(name: String) -> Result<Self, InvalidProtocol> {
        if name.starts_with('/') && name.len() < MAX_MESSAGE_LEN {
            Ok(Self(Cow::Owned(name)))
        } else {
            Err(InvalidProtocol(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StreamProtocol {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamProtocol({})", self.0)
    }
}

/// A protocol name that does not start with `/` or is too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protocol name {0:?}: it must start with '/' and be shorter than 16,383 bytes")]
pub struct InvalidProtocol(pub String);

/// A negotiated stream to a peer: tokio `AsyncRead + AsyncWrite`.
///
/// `shutdown` closes the write side only (yamux FIN); reading goes on until the peer closes
/// its side. Dropping the stream resets it.
pub struct Stream {
    io: Negotiated<Substream>,
    protocol: StreamProtocol,
    peer: PeerId,
    _guard: StreamGuard,
}

impl Stream {
    pub(crate) fn new(
        io: Negotiated<Substream>,
        protocol: StreamProtocol,
        peer: PeerId,
        guard: StreamGuard,
    ) -> Self {
        Self {
            io,
            protocol,
            peer,
            _guard: guard,
        }
    }

    /// The negotiated protocol.
    pub fn protocol(&self) -> &StreamProtocol {
        &self.protocol
    }

    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The connection the stream runs on.
    pub fn connection_id(&self) -> ConnectionId {
        self._guard.connection_id()
    }

    /// The remote address of the stream's connection: the address dialed, or the address an
    /// inbound connection came from.
    pub fn remote_addr(&self) -> &super::Multiaddr {
        self._guard.remote_addr()
    }

    /// Resolves once the stream's connection has closed.
    #[cfg(feature = "request-response")]
    pub(crate) fn connection_closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self._guard.connection_closed().clone().cancelled_owned()
    }

    /// Whether the stream's connection has closed.
    #[cfg(feature = "request-response")]
    pub(crate) fn is_connection_closed(&self) -> bool {
        self._guard.connection_closed().is_cancelled()
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("protocol", &self.protocol)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Every transport's stream ends with `Ok` only after the peer's FIN; a reset and a lost
        // connection are errors.
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The inbound streams of one protocol: a `futures` `Stream` of `(PeerId, Stream)`.
///
/// Dropping it deregisters the protocol.
pub struct IncomingStreams {
    pub(crate) rx: mpsc::Receiver<(PeerId, Stream)>,
    pub(crate) protocol: StreamProtocol,
    pub(crate) registration: u64,
    pub(crate) overflow: Arc<AtomicU64>,
    pub(crate) shared: Arc<Shared>,
}

impl IncomingStreams {
    /// The protocol these streams speak.
    pub fn protocol(&self) -> &StreamProtocol {
        &self.protocol
    }

    /// How many inbound streams were reset because the backlog was full.
    pub fn overflowed(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for IncomingStreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingStreams")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl futures_core::Stream for IncomingStreams {
    type Item = (PeerId, Stream);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for IncomingStreams {
    fn drop(&mut self) {
        self.shared.deregister(&self.protocol, self.registration);
    }
}

/// The protocol already has an [`IncomingStreams`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol {0} is already registered")]
pub struct AlreadyRegistered(pub StreamProtocol);

/// Why [`Control::open_stream`](crate::stream::Control::open_stream) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStreamError {
    /// The peer supports none of the protocols (it answered `na`).
    #[error("the peer does not support {0:?}")]
    UnsupportedProtocol(Vec<StreamProtocol>),
    /// There was no connection and dialing failed.
    #[error("could not connect to the peer: {0}")]
    Dial(#[source] DialError),
    /// The stream was not opened and negotiated within the negotiation timeout.
    #[error("stream negotiation timed out")]
    Timeout,
    /// The connection closed while the stream was being opened.
    #[error("the connection closed while opening the stream")]
    ConnectionClosed,
    /// The connection already has its maximum number of streams (local limit).
    #[error("the connection has reached its stream limit")]
    TooManyStreams,
    /// The peer broke multistream-select.
    #[error("the peer broke protocol negotiation: {0}")]
    Protocol(#[source] NegotiationError),
    /// The stream failed during negotiation.
    #[error("i/o while negotiating the stream: {0}")]
    Io(#[source] io::Error),
    /// No protocol was given.
    #[error("no protocol to propose")]
    NoProtocol,
}
