//! Request-response protocols in the style of libp2p-request-response: each request travels on a
//! stream of its own, and a [`Codec`] says how requests and responses look on it.
//!
//! A [`Behaviour`] is a cloneable handle on a [`Node`](crate::p2p::Node) for one protocol or
//! protocol family: [`Behaviour::request`] awaits a response, [`Behaviour::send_request`] and
//! the [`Event`] stream give libp2p's event interface, and [`Behaviour::serve`] answers inbound
//! requests with an async function. Every message is held to a size limit
//! ([`MessageTooLarge`]); [`cbor`] and [`json`] write exactly what rust-libp2p's codecs write.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//! use missive::request_response::{json, Behaviour, Config, ProtocolSupport};
//!
//! type Codec = json::Codec<serde_json::Value, serde_json::Value>;
//! let protocols = [("/echo/1".to_owned(), ProtocolSupport::Full)];
//! let a = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let b = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let server = Behaviour::<Codec>::new(&a, protocols.clone(), Config::default())?;
//! server.serve(|_peer, request| async move { request })?;
//! let client = Behaviour::<Codec>::new(&b, protocols, Config::default())?;
//! let addr = a.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
//! b.add_address(a.peer_id(), addr);
//! let answer = client.request(a.peer_id(), serde_json::json!({"hi": 1})).await?;
//! # Ok(()) }
//! ```
//!
//! # Limits
//! A request has [`Config::with_request_timeout`] from call to response. Each connection holds
//! at most [`Config::with_max_concurrent_streams`] request streams and each peer at most
//! [`Config::with_max_requests_per_peer`] requests per direction; beyond them requests fail
//! visibly ([`OutboundFailure::TooManyStreams`], [`OutboundFailure::PeerLimit`]) and refused
//! inbound streams raise [`Event::InboundFailure`]. A connection is not closed as idle while a
//! request stream is open on it.

mod behaviour;
#[cfg(feature = "cbor")]
pub mod cbor;
mod codec;
mod config;
mod event_queue;
mod events;
#[cfg(feature = "json")]
pub mod json;
mod limits;
mod one_way;
mod serde_codec;
#[cfg(feature = "tower")]
mod tower;

pub use behaviour::{AlreadyServing, Behaviour, EventsTaken, NewBehaviourError, ProtocolSupport};
pub use codec::{Codec, MessageKind, MessageTooLarge, read_to_end_limited};
pub use config::{Config, OnPeerLimit};
pub use event_queue::Events;
pub use events::{
    Event, InboundFailure, InboundRequestId, Message, OutboundFailure, OutboundRequestId,
    ResponseChannel,
};
pub use one_way::OneWay;
pub use serde_codec::{DEFAULT_REQUEST_LIMIT, DEFAULT_RESPONSE_LIMIT, Format, SerdeCodec};
