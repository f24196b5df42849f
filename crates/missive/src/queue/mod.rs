//! An ordered, lossless queue of tagged datagrams over one connection, on the wire of the `connect`
//! crate (0.2.4).
//!
//! Every [`Datagram`] carries a `u16` tag that the application uses to label it (a message type, a
//! serialization format, a recipient) and a payload of bytes. A [`Connection`] delivers datagrams in
//! the order they were sent and never drops one: a sender that gets ahead of its peer waits
//! (backpressure), and every failure — a peer that breaks the format, a stream cut in the middle of a
//! frame, a closed connection — is a typed error, never a silent loss.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use missive::queue::{Connection, Datagram};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut conn = Connection::tcp_client("127.0.0.1:7000").await?;
//! conn.writer().send(Datagram::new(65535, "Hello world!")).await?;
//! if let Some(reply) = conn.reader().next().await {
//!     let reply = reply?;
//!     assert_eq!(reply.payload(), "Hello world!");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The frame is `u32 BE size | u16 BE version | u16 BE tag | payload` (see [`datagram`]), so missive
//! talks to connect 0.2.4 peers over TCP and TLS, and to anything using tokio-util's default
//! `LengthDelimitedCodec` with the version and tag at the front of each frame.

mod config;
mod connection;
pub mod datagram;
#[cfg(any(feature = "tcp", all(feature = "unix", unix)))]
mod listener;
mod reader;
mod writer;

pub use config::QueueConfig;
pub use connection::{Closed, ConnectError, Connection};
pub use datagram::{Datagram, FrameError};
#[cfg(any(feature = "tcp", all(feature = "unix", unix)))]
pub use listener::{AcceptError, Listener};
pub use reader::{Reader, RecvError};
pub use writer::{SendError, Writer};
