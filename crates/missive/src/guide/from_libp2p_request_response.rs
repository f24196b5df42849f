//! From libp2p-request-response 0.29 / 0.30 (and the old `Throttled`) to
//! [`request_response`](crate::request_response).
//!
//! The wire is rust-libp2p's: one stream per request, the same protocol names, and the
//! [`cbor`](crate::request_response::cbor) and [`json`](crate::request_response::json) codecs write
//! exactly what rust-libp2p's write, so a missive node and a rust-libp2p swarm exchange requests
//! both ways. What changes is the shape: a cloneable handle on a [`Node`](crate::p2p::Node)
//! instead of a `NetworkBehaviour` inside a swarm that you poll, and an awaitable
//! [`request`](crate::request_response::Behaviour::request) beside the event interface.
//!
//! # Names
//!
//! | libp2p-request-response | missive |
//! |---|---|
//! | `cbor::Behaviour<Req, Resp>::new(protocols, Config)` in a `SwarmBuilder` | [`Behaviour::<cbor::Codec<Req, Resp>>::new(&node, protocols, Config)?`](crate::request_response::Behaviour::new) |
//! | `Behaviour::with_codec(codec, protocols, cfg)` | [`Behaviour::with_codec(&node, codec, protocols, cfg)`](crate::request_response::Behaviour::with_codec) |
//! | `ProtocolSupport::{Inbound, Outbound, Full}` | [`ProtocolSupport`](crate::request_response::ProtocolSupport), the same |
//! | `StreamProtocol::new("/p/1")` as the protocol | a `String` (or your `Codec::Protocol` type) |
//! | `Config::with_request_timeout`, `with_max_concurrent_streams` | [`Config::with_request_timeout`](crate::request_response::Config::with_request_timeout), [`with_max_concurrent_streams`](crate::request_response::Config::with_max_concurrent_streams), the same defaults (10 s, 100) |
//! | `swarm.behaviour_mut().send_request(&peer, req)` | [`behaviour.send_request(peer, req)`](crate::request_response::Behaviour::send_request) (outcome as an event), or [`behaviour.request(peer, req).await`](crate::request_response::Behaviour::request) |
//! | `send_request_with_addresses(&peer, req, addrs)`, `add_address` | [`send_request_with_addresses`](crate::request_response::Behaviour::send_request_with_addresses), [`request_with_addresses`](crate::request_response::Behaviour::request_with_addresses), [`Node::add_address`](crate::p2p::Node::add_address) |
//! | `swarm.select_next_some()` → `SwarmEvent::Behaviour(Event)` | [`behaviour.events()?.next().await`](crate::request_response::Behaviour::events) → [`Event`](crate::request_response::Event) |
//! | `Event::{Message, OutboundFailure, InboundFailure, ResponseSent}` | the same variants and fields |
//! | `Message::{Request { request_id, request, channel }, Response { request_id, response }}` | [`Message`](crate::request_response::Message), the same |
//! | `send_response(channel, resp)` → `Result<(), Resp>` | [`send_response`](crate::request_response::Behaviour::send_response), the same; or [`serve(\|peer, req\| async { resp })`](crate::request_response::Behaviour::serve) |
//! | `ResponseChannel::is_open` | [`ResponseChannel::is_open`](crate::request_response::ResponseChannel::is_open) |
//! | `OutboundFailure::{DialFailure, Timeout, ConnectionClosed, UnsupportedProtocols, Io}` | [`OutboundFailure`](crate::request_response::OutboundFailure): the same, plus `TooManyStreams` and `PeerLimit` |
//! | `InboundFailure::{Timeout, ConnectionClosed, UnsupportedProtocols, ResponseOmission, Io}` | [`InboundFailure`](crate::request_response::InboundFailure): the same, plus `TooManyStreams` and `PeerLimit` |
//! | `is_connected`, `is_pending_outbound`, `is_pending_inbound` | the same names, on the handle |
//! | the `Codec` trait (`async_trait`, `futures` I/O) | [`Codec`](crate::request_response::Codec): the same four methods, native `async fn`, tokio I/O |
//! | `cbor::codec::Codec` request/response limits (1 MiB / 10 MiB) | [`SerdeCodec::with_request_limit` / `with_response_limit`](crate::request_response::SerdeCodec::with_request_limit), the same defaults |
//! | `Throttled::set_receive_limit(n)`, `override_receive_limit(&peer, n)`, `remove_override(&peer)` | [`Config::with_max_requests_per_peer(n)`](crate::request_response::Config::with_max_requests_per_peer), [`Config::with_peer_limit(peer, n)`](crate::request_response::Config::with_peer_limit), [`Behaviour::set_peer_limit(peer, Some(n) / None)`](crate::request_response::Behaviour::set_peer_limit) |
//! | `Throttled::can_send(&peer)`, `send_request` → `Err(req)` without credit, `ResumeSending(peer)` | [`OnPeerLimit::Wait`](crate::request_response::OnPeerLimit::Wait) (default: the request waits for a slot, FIFO per peer) or [`OnPeerLimit::Fail`](crate::request_response::OnPeerLimit::Fail) ([`OutboundFailure::PeerLimit`](crate::request_response::OutboundFailure::PeerLimit)) |
//! | `Throttled`'s `TooManyInboundRequests(peer)` | [`InboundFailure::PeerLimit`](crate::request_response::InboundFailure::PeerLimit) |
//!
//! # What behaves differently
//!
//! - **No swarm to poll.** Requests make progress on the node's tasks; the event stream is for
//!   what you want to know, not what must be driven. Events never hold protocol work up: the
//!   last 256 are kept ([`Config::with_event_capacity`](crate::request_response::Config::with_event_capacity)),
//!   the oldest dropped and counted when nobody reads.
//! - **Throttled's credits become local limits.** `Throttled` sent credit messages on the wire
//!   and let a peer send only as many requests as it had been granted credits. missive puts
//!   nothing extra on the wire: each side limits requests in flight per peer and direction
//!   (100 by default, overrides per peer), so it talks to peers with and without `Throttled`'s
//!   successor. Receive limit `n` for a peer ↔ `with_peer_limit(peer, n)`; a sender that
//!   checked `can_send` ↔ `OnPeerLimit::Fail`; one that waited for `ResumeSending` ↔ the default
//!   `OnPeerLimit::Wait`. A request over the limit never reaches the peer.
//! - **One deadline per request.** The request timeout covers waiting for a per-peer slot,
//!   dialing, opening and negotiating the stream, and the exchange.
//! - **Lazy negotiation by default.** Outbound requests use multistream-select `V1Lazy`: the
//!   proposal travels with the request (one round trip less). rust-libp2p reads it. A one-way
//!   request to a peer that refuses the protocol then counts as sent;
//!   [`Config::with_version(Version::V1)`](crate::request_response::Config::with_version) waits for
//!   the answer instead.
//! - **Errors say what happened.** A codec error is `Io` whatever its kind; only a refused
//!   protocol is `UnsupportedProtocols`; a responder that closes without a byte gives `Io` of
//!   kind `UnexpectedEof`. A `serve` handler that panics fails its request only
//!   (`ResponseOmission`).
//! - **Dialing.** A request to an unconnected peer dials the addresses the node knows (or the
//!   ones given), concurrently, under the request's deadline.
//! - **`send_request` from any thread**, including outside the runtime.
//!
//! # Before and after
//!
//! With rust-libp2p: the behaviour in a swarm, and a loop that drives it.
//!
//! ```text
//! let mut swarm = libp2p::SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!     .with_behaviour(|_| request_response::cbor::Behaviour::<Ping, Pong>::new(
//!         [(StreamProtocol::new("/ping-pong/1"), ProtocolSupport::Full)],
//!         request_response::Config::default(),
//!     ))?
//!     .build();
//! swarm.dial(provider_addr)?;
//! swarm.behaviour_mut().send_request(&provider, Ping(1));
//! loop {
//!     match swarm.select_next_some().await {
//!         SwarmEvent::Behaviour(request_response::Event::Message { message, .. }) => match message {
//!             request_response::Message::Request { request, channel, .. } => {
//!                 let _ = swarm.behaviour_mut().send_response(channel, Pong(request.0));
//!             }
//!             request_response::Message::Response { response, .. } => break response,
//!         },
//!         SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
//!             return Err(error.into());
//!         }
//!         _ => {}
//!     }
//! }
//! ```
//!
//! With missive: a handle per node; one side serves, the other awaits its answer.
//!
//! ```
//! use missive::p2p::{Keypair, Node, NodeConfig};
//! use missive::request_response::{cbor, Behaviour, Config, ProtocolSupport};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Ping(u64);
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Pong(u64);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let protocols = [("/ping-pong/1".to_owned(), ProtocolSupport::Full)];
//! // Throttled's receive limit of 8 per peer, as local policy:
//! let config = Config::default().with_max_requests_per_peer(8);
//!
//! let provider = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let provider_addr = provider.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
//! let serving = Behaviour::<cbor::Codec<Ping, Pong>>::new(&provider, protocols.clone(), config.clone())?;
//! serving.serve(|_peer, Ping(n)| async move { Pong(n) })?;
//!
//! let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! node.add_address(provider.peer_id(), provider_addr);
//! let rr = Behaviour::<cbor::Codec<Ping, Pong>>::new(&node, protocols, config)?;
//! let Pong(n) = rr.request(provider.peer_id(), Ping(1)).await?;
//! assert_eq!(n, 1);
//! # node.shutdown().await;
//! # provider.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The event interface is there too: see the `file_sharing` example, whose provider answers
//! through `Event::Message` and `send_response`.
