//! Raw stream protocols on a [`Node`], with libp2p-stream's vocabulary.
//!
//! A [`Control`] (cloneable) accepts streams for a protocol ([`Control::accept`] returns
//! [`IncomingStreams`], a `futures` `Stream` of `(PeerId, Stream)`) and opens streams to peers
//! ([`Control::open_stream`]), dialing first when there is no connection.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt as _;
//! use missive::p2p::{Keypair, Node, NodeConfig};
//! use missive::stream::StreamProtocol;
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//!
//! let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let control = node.stream_control();
//! let mut incoming = control.accept(StreamProtocol::new("/echo/1.0.0"))?;
//! tokio::spawn(async move {
//!     while let Some((_peer, mut stream)) = incoming.next().await {
//!         let mut buf = Vec::new();
//!         let _ = stream.read_to_end(&mut buf).await;
//!         let _ = stream.write_all(&buf).await;
//!         let _ = stream.shutdown().await;
//!     }
//! });
//! # Ok(()) }
//! ```
//!
//! # Resource management
//! Each accepted protocol buffers at most [`NodeConfig::with_inbound_backlog`] streams that the
//! application has not taken yet; further streams are reset and counted
//! ([`IncomingStreams::overflowed`], [`NodeEvent::InboundStreamRefused`]). Dropping
//! [`IncomingStreams`] deregisters the protocol: later proposals are answered `na`.
//!
//! # Cancel safety
//! Dropping a [`Stream`] resets it. Dropping an `open_stream` future before it completes
//! resets the stream it was negotiating; a dial it started goes on and its connection is kept.
//!
//! [`NodeConfig::with_inbound_backlog`]: crate::p2p::NodeConfig::with_inbound_backlog
//! [`NodeEvent::InboundStreamRefused`]: crate::p2p::NodeEvent::InboundStreamRefused

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::compat::Compat;

use crate::p2p::connection::StreamGuard;
use crate::p2p::negotiate::{MAX_MESSAGE_LEN, NegotiationError, Version};
use crate::p2p::negotiated::Negotiated;
use crate::p2p::node::Shared;
use crate::p2p::stream_ends::end_of_stream;
use crate::p2p::{ConnectionId, DialError, Multiaddr, Node, PeerId};

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
    io: Negotiated<Compat<yamux::Stream>>,
    protocol: StreamProtocol,
    peer: PeerId,
    _guard: StreamGuard,
}

impl Stream {
    pub(crate) fn new(
        io: Negotiated<Compat<yamux::Stream>>,
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
    pub fn remote_addr(&self) -> &Multiaddr {
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
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if buf.filled().len() == before && buf.remaining() > 0 {
            // yamux reads a FIN, a RST and a dead connection alike as the end of the stream;
            // only the first is one.
            return Poll::Ready(end_of_stream(this._guard.end()));
        }
        Poll::Ready(Ok(()))
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

/// Opens and accepts streams on a node. Clones share the node.
#[derive(Debug, Clone)]
pub struct Control {
    node: Node,
}

impl Control {
    pub(crate) fn new(node: Node) -> Self {
        Self { node }
    }

    /// Accepts inbound streams of `protocol` until the returned [`IncomingStreams`] is dropped.
    pub fn accept(&self, protocol: StreamProtocol) -> Result<IncomingStreams, AlreadyRegistered> {
        self.node.shared().register(protocol)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.node.shared()
    }

    /// Serves the inbound streams of `protocol` with `handler`, each run in the task that
    /// negotiated its stream, until the returned registration is dropped. For protocols of the
    /// crate that answer every stream at once (request-response, ping, identify): there is no
    /// backlog to fill and no second task per stream.
    pub(crate) fn serve_inline<F, Fut>(
        &self,
        protocol: StreamProtocol,
        handler: F,
    ) -> Result<InlineRegistration, AlreadyRegistered>
    where
        F: Fn(PeerId, Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = self.node.shared();
        let id = shared.register_inline(
            &protocol,
            Arc::new(move |peer, stream| Box::pin(handler(peer, stream))),
        )?;
        Ok(InlineRegistration {
            protocol,
            id,
            shared: Some(Arc::downgrade(shared)),
        })
    }

    /// Opens a stream to `peer` with `protocol`, dialing a known address of the peer first when
    /// there is no connection. Waits for the peer to confirm the protocol.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, OpenStreamError> {
        self.open_stream_with(peer, &[], &[protocol], Version::V1)
            .await
            .map(|(s, _)| s)
    }

    /// Like [`Control::open_stream`], dialing `addresses` (added to the address book) when there
    /// is no connection.
    pub async fn open_stream_with_addrs(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        protocol: StreamProtocol,
    ) -> Result<Stream, OpenStreamError> {
        self.open_stream_with(peer, &addresses, &[protocol], Version::V1)
            .await
            .map(|(s, _)| s)
    }

    /// Opens a stream proposing `protocols` in order and returns the one the peer chose.
    ///
    /// With [`Version::V1Lazy`] and a single protocol the stream is returned without waiting
    /// for the peer's answer, and the proposal goes out together with the first write (or with
    /// the first flush, shutdown or read); a refusal then shows as an `Unsupported` i/o error on
    /// first read.
    pub async fn open_stream_with(
        &self,
        peer: PeerId,
        addresses: &[Multiaddr],
        protocols: &[StreamProtocol],
        version: Version,
    ) -> Result<(Stream, StreamProtocol), OpenStreamError> {
        self.node
            .shared()
            .open_stream(peer, addresses, protocols, version)
            .await
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

/// A protocol served by [`Control::serve_inline`]; dropping it deregisters the protocol.
/// It does not keep the node alive.
#[derive(Debug)]
pub(crate) struct InlineRegistration {
    protocol: StreamProtocol,
    id: u64,
    shared: Option<Weak<Shared>>,
}

impl InlineRegistration {
    /// Keeps the protocol served until the node shuts down.
    pub(crate) fn detach(mut self) {
        self.shared = None;
    }
}

impl Drop for InlineRegistration {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take().and_then(|s| s.upgrade()) {
            shared.deregister(&self.protocol, self.id);
        }
    }
}

/// The protocol already has an [`IncomingStreams`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol {0} is already registered")]
pub struct AlreadyRegistered(pub StreamProtocol);

/// Why [`Control::open_stream`] failed.
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
