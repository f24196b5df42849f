//! Pipelined RPC over any byte stream, wire-compatible with protosocket-rpc.
//!
//! The model is protosocket-rpc's: ids and control codes are fields of the user's own messages
//! (the [`Message`] trait: Normal, Cancel, End), and what the codec encodes is exactly what is on
//! the wire. On top of it: library-chosen ids (or the caller's), a bounded number of calls in
//! flight, deadlines, a status per failed call, client and bidirectional streaming, and a
//! reconnecting [`pool::Pool`].
//!
//! - [`Client`]: a cheap-to-clone handle; [`Client::call`] (unary), [`Client::server_stream`],
//!   [`Client::client_stream`], [`Client::bidi_stream`]. One [`ClientConnection`] driver task
//!   per connection owns the socket.
//! - [`Server`]: [`Server::connection`] runs a per-connection [`Service`] over one byte stream
//!   (`Server::serve_tcp`, `serve_tls` and `serve_unix` accept for you, as `Client::connect_tcp`,
//!   `connect_tls` and `connect_unix` dial); [`Server::shutdown`] drains calls in flight. A node
//!   stream (`stream::Control::open_stream`) works as the byte stream too.
//! - Codecs: `prost::ProstCodec` (protosocket-prost framing), `msgpack::MessagePackCodec`
//!   (protosocket-messagepack framing) with `msgpack::Envelope` for bodies without ids, or any
//!   [`Encoder`] + [`Decoder`] of your own. `echo` is a ready protocol for benchmarks.
//!
//! ```
//! # #[cfg(feature = "prost")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use missive::rpc::echo::{self, EchoService, Request};
//! use missive::rpc::{Client, ClientConfig, Server};
//!
//! // Any byte stream will do; here, an in-memory pipe.
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! let server = Server::default();
//! tokio::spawn(server.connection(b, echo::ServerCodec::default(), EchoService));
//! let client = Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
//!
//! let response = client.call(Request::unary("hello")).await?;
//! assert_eq!(&response.body[..], b"hello");
//!
//! let echoes: Vec<_> = client.server_stream(Request::stream("hi", 3)).await?.collect().await;
//! assert_eq!(echoes.len(), 3);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prost"))]
//! # fn main() {}
//! ```
//!
//! # Cancel safety
//! Dropping a unary call's future, a [`client::ResponseStream`] or a [`client::ResponseFuture`]
//! before it completes sends Cancel for its id; the server drops the rpc's work and answers
//! Cancel. Dropping a [`client::RequestSink`] ends the request stream (End). A call whose
//! deadline passes is cancelled the same way.
//!
//! # Limits
//! Messages: 4 MiB by default, on both sides, checked against the length prefix before anything
//! is allocated; buffers grow at most 64 KiB ahead of the bytes that arrived, and a connection
//! holds at most one message's worth (the decoder's `max_message_size` plus 16 bytes) without a
//! complete frame. Client: 4,096 calls in flight (wait or fail fast); 64 responses buffered per
//! response stream and 1 MiB of streamed requests queued before the sender waits. Server: 4,096
//! running rpcs per connection (a request beyond is refused with a status, and the connection goes
//! on), 16 requests buffered per request stream, and a 1 MiB send budget: above it the server
//! stops reading and stops polling rpcs, so a peer that stops reading cannot make it buffer
//! without bound. A full stream buffer pauses reading that connection until the consumer catches
//! up.
//!
//! # Deadlines
//! Clients connect within 10 s and finish a TLS handshake within 10 s; the pool's dials share a
//! 10 s deadline. [`Server::shutdown`] waits 10 s for running rpcs, then fails them with
//! `Unavailable`. `serve_tls` runs at most 64 handshakes at once. Accepted TCP connections get
//! keepalive after 30 s idle; an idle timeout (off by default) closes idle connections. Each has
//! a setter on [`ClientConfig`], [`ServerConfig`] or [`pool::Pool`].

mod calls;
pub mod client;
pub mod codec;
mod connect;
#[cfg(feature = "prost")]
pub mod echo;
mod inbox;
mod io;
pub mod message;
#[cfg(feature = "msgpack")]
pub mod msgpack;
pub mod pool;
#[cfg(feature = "prost")]
pub mod prost;
mod rpcs;
pub mod server;
mod slots;
#[cfg(feature = "tower")]
mod tower;

pub use client::{CallError, CallOptions, Client, ClientConfig, ClientConnection, InFlightPolicy};
pub use codec::{DecodeError, Decoder, EncodeError, Encoder};
pub use message::{ControlCode, Message, Status, StatusCode};
pub use server::{
    CallContext, Reply, RequestStream, Server, ServerConfig, ServerConnection, Service,
};
#[cfg(feature = "tower")]
pub use tower::{Oneshot, TowerService};
