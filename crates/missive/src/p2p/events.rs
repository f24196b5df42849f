//! Node events and the errors of node operations.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::broadcast;

use super::connection::{CloseCause, ConnectionId, StreamRefusal};
use super::noise::NoiseError;
use super::upgrade::{Endpoint, UpgradeError};
use super::{Multiaddr, PeerId};

/// Node events, from [`super::Node::events`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A connection is secured, multiplexed and ready.
    ConnectionEstablished {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Who dialed.
        endpoint: Endpoint,
        /// The remote's address.
        remote_addr: Multiaddr,
    },
    /// A connection closed.
    ConnectionClosed {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Who dialed.
        endpoint: Endpoint,
        /// Why it closed.
        cause: CloseCause,
    },
    /// An inbound connection failed before it was established.
    IncomingConnectionError {
        /// The remote's address.
        remote_addr: Multiaddr,
        /// What went wrong.
        error: Arc<IncomingError>,
    },
    /// The node listens on a new address.
    NewListenAddr {
        /// The address.
        address: Multiaddr,
    },
    /// A listener stopped after an error.
    ListenerError {
        /// The address it listened on.
        address: Multiaddr,
        /// The error.
        error: Arc<io::Error>,
    },
    /// An inbound stream was reset because of a limit.
    InboundStreamRefused {
        /// The remote.
        peer: PeerId,
        /// Which limit.
        reason: StreamRefusal,
    },
}

/// Why an inbound connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IncomingError {
    /// The table of inbound handshakes was full (or this address had its share), and this
    /// connection, the least advanced, yielded its place to a newer one (local limit).
    #[error("closed to make room: too many pending inbound handshakes")]
    TooManyPendingHandshakes,
    /// The connection sent nothing within the first-bytes deadline.
    #[error("the connection sent nothing within the first-bytes deadline")]
    FirstBytesTimeout,
    /// The handshake failed or timed out.
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// The peer already has the maximum number of connections (local limit).
    #[error("peer {0} already has the maximum number of connections")]
    ConnectionLimit(PeerId),
}

/// Why [`super::Node::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewNodeError {
    /// The Noise key could not be made.
    #[error("could not prepare the noise key: {0}")]
    Noise(#[source] NoiseError),
    /// The libp2p-tls certificate could not be made.
    #[error("could not prepare the TLS certificate: {0}")]
    Tls(#[source] super::tls::TlsError),
}

/// Why [`super::Node::listen`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Only `/ip4|ip6/<ip>/tcp/<port>` can be listened on.
    #[error("cannot listen on {0}: expected /ip4|ip6/<ip>/tcp/<port>")]
    UnsupportedAddress(Multiaddr),
    /// A `wss` (`/tls/ws`) address without a certificate: see
    /// [`NodeConfig::with_websocket_tls_server`](super::NodeConfig::with_websocket_tls_server).
    #[error(
        "cannot listen on {0}: wss needs a certificate (NodeConfig::with_websocket_tls_server)"
    )]
    NoCertificate(Multiaddr),
    /// The socket could not be bound.
    #[error("could not bind: {0}")]
    Io(#[source] io::Error),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a dial failed. Cloneable: one dial may answer several waiting callers.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The address book has no address of the peer.
    #[error("no address known for peer {0}")]
    NoAddresses(PeerId),
    /// The address is not a TCP address this node can dial.
    #[error("cannot dial {0}: expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/p2p/<peer>]")]
    UnsupportedAddress(Multiaddr),
    /// TCP connect (or DNS resolution) failed.
    #[error("could not connect to {addr}: {error}")]
    Transport {
        /// The address.
        addr: Multiaddr,
        /// The error.
        error: Arc<io::Error>,
    },
    /// The address leads back to this node.
    #[error("the address leads to this node itself")]
    LocalPeer,
    /// The remote proved a different identity than the one dialed.
    #[error("peer id mismatch: dialed {expected}, the remote is {actual}")]
    WrongPeer {
        /// The PeerId that was dialed.
        expected: PeerId,
        /// The PeerId the remote proved.
        actual: PeerId,
    },
    /// Security or muxer setup failed, or the setup deadline passed.
    #[error("connection setup with {addr} failed: {error}")]
    Upgrade {
        /// The address.
        addr: Multiaddr,
        /// The error.
        error: Arc<UpgradeError>,
    },
    /// The peer already has the maximum number of connections (local limit).
    #[error("peer {0} already has the maximum number of connections")]
    ConnectionLimit(PeerId),
    /// No address of the peer gave a connection within the connection setup deadline.
    #[error("no address of {peer} answered within the dial deadline ({tried} tried)")]
    Timeout {
        /// The peer dialed.
        peer: PeerId,
        /// How many of its addresses were tried.
        tried: usize,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// A subscription to node events (from [`super::Node::events`]): a `futures` `Stream` of [`NodeEvent`]. A subscriber that
/// falls behind by more than the event capacity skips the oldest events.
pub struct Events {
    inner: Pin<Box<dyn futures_core::Stream<Item = NodeEvent> + Send>>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<NodeEvent>) -> Self {
        let s = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((e, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Self { inner: Box::pin(s) }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl futures_core::Stream for Events {
    type Item = NodeEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NodeEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}
