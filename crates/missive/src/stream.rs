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

use std::future::Future;
use std::sync::{Arc, Weak};

use crate::p2p::negotiate::Version;
use crate::p2p::node::Shared;
use crate::p2p::{Multiaddr, Node, PeerId};

pub use crate::p2p::streams::{
    AlreadyRegistered, IncomingStreams, InvalidProtocol, OpenStreamError, Stream, StreamProtocol,
};

impl Node {
    /// The stream protocol handle.
    pub fn stream_control(&self) -> Control {
        Control::new(self.clone())
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
