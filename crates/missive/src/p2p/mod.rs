//! The libp2p-compatible peer-to-peer node.
//!
//! A [`Node`] listens and dials over TCP, QUIC and WebSocket ([`websocket`], `/tcp/N/ws`), secures each connection with Noise XX (libp2p
//! handshake payload) or libp2p-tls (TLS 1.3, see [`tls`] and [`NodeConfig::with_security`]),
//! multiplexes it with yamux and negotiates every stream with
//! multistream-select 1.0 — the wire of rust-libp2p, go-libp2p and js-libp2p. Applications
//! use streams through [`crate::stream::Control`]; `/ipfs/ping/1.0.0` and `/ipfs/id/1.0.0`
//! (identify) are served by default.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//!
//! let a = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let b = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let addr = a.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
//! let peer = b.dial(addr).await?;
//! assert_eq!(peer, a.peer_id());
//! let rtt = b.ping(peer).await?;
//! println!("{peer} answered in {rtt:?}");
//! # Ok(()) }
//! ```

mod config;
pub(crate) mod connection;
mod der;
mod events;
pub(crate) mod identity;
mod inbound;
mod multiaddr;
mod multibase;
pub(crate) mod mux;
pub mod negotiate;
pub(crate) mod negotiated;
pub(crate) mod node;
pub mod noise;
mod peer_id;
pub(crate) mod protobuf;
mod quic;
mod quic_socket;
pub(crate) mod streams;
pub(crate) mod substream;
pub mod tls;
mod upgrade;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub mod websocket;
#[cfg(feature = "webtransport")]
pub mod webtransport;
#[cfg(feature = "webtransport")]
mod webtransport_certs;

pub use config::NodeConfig;
pub use connection::{CloseCause, ConnectionId, StreamRefusal};
pub use events::{DialError, Events, IncomingError, ListenError, NewNodeError, NodeEvent};
pub use identity::{
    DecodeKeyError, KeyFileError, KeyType, Keypair, ParsePeerIdError, PeerId, PublicKey,
};
pub use multiaddr::{DecodeMultiaddrError, Multiaddr, ParseMultiaddrError, Protocol};
pub use mux::ProtocolError as YamuxError;
pub use negotiated::NegotiateError;
pub use node::Node;
pub use upgrade::{Endpoint, Security, UpgradeError};
#[cfg(feature = "websocket")]
pub use websocket::WebSocketError;
#[cfg(feature = "webtransport")]
pub use webtransport::WebTransportError;

#[doc(hidden)]
pub use mux::session::session_for_fuzzing as yamux_session_for_fuzzing;
#[doc(hidden)]
pub use tls::certificate::verify_for_fuzzing as verify_tls_certificate_for_fuzzing;
