//! From libp2p-stream 0.5 to [`stream`](crate::stream).
//!
//! The names are libp2p-stream's ([`Control`](crate::stream::Control),
//! [`IncomingStreams`](crate::stream::IncomingStreams), [`StreamProtocol`](crate::stream::StreamProtocol),
//! `accept`, `open_stream`) and the wire is rust-libp2p's (TCP + Noise + Yamux +
//! multistream-select), so a missive node and a rust-libp2p swarm open streams to each other.
//! The difference is where the `Control` comes from: the [`Node`](crate::p2p::Node) itself, with no
//! behaviour to add to a swarm and no swarm to poll.
//!
//! # Names
//!
//! | libp2p-stream 0.5 | missive |
//! |---|---|
//! | `stream::Behaviour::new()` in a swarm, `behaviour.new_control()` | [`node.stream_control()`](crate::p2p::Node::stream_control) |
//! | `Control::accept(protocol)` → `Result<IncomingStreams, AlreadyRegistered>` | [`Control::accept`](crate::stream::Control::accept), the same (`&self`, not `&mut self`) |
//! | `IncomingStreams: Stream<Item = (PeerId, Stream)>` | [`IncomingStreams`](crate::stream::IncomingStreams), the same |
//! | `Control::open_stream(peer, protocol)` | [`Control::open_stream`](crate::stream::Control::open_stream), [`open_stream_with_addrs`](crate::stream::Control::open_stream_with_addrs), [`open_stream_with`](crate::stream::Control::open_stream_with) (several protocols, lazy negotiation) |
//! | `OpenStreamError::{UnsupportedProtocol(p), Io(e)}` | [`OpenStreamError`](crate::stream::OpenStreamError): `UnsupportedProtocol(Vec<_>)`, `Dial`, `Timeout`, `ConnectionClosed`, `TooManyStreams`, `Protocol`, `Io`, `NoProtocol` |
//! | `libp2p::Stream` (`futures::AsyncRead + AsyncWrite`) | [`stream::Stream`](crate::stream::Stream) (tokio `AsyncRead + AsyncWrite`; `compat()` from tokio-util for `futures` I/O), with [`peer`](crate::stream::Stream::peer) and [`protocol`](crate::stream::Stream::protocol) |
//! | `stream.close().await` (futures) | `stream.shutdown().await` (tokio): closes the write side, reading goes on |
//! | `swarm.dial(addr)`, `swarm.listen_on(addr)` | [`node.dial(addr).await?`](crate::p2p::Node::dial) (returns the `PeerId`), [`node.listen(addr).await?`](crate::p2p::Node::listen) (returns the bound address) |
//! | `SwarmEvent::ConnectionEstablished` … | [`node.events()`](crate::p2p::Node::events) |
//!
//! # What behaves differently
//!
//! - **`open_stream` dials**, as libp2p-stream's does through the swarm: with no connection to
//!   the peer it dials the addresses the node knows
//!   ([`Node::add_address`](crate::p2p::Node::add_address)) or, with `open_stream_with_addrs`,
//!   the ones given. A failed dial is [`OpenStreamError::Dial`](crate::stream::OpenStreamError::Dial)
//!   with its cause, not an `Io` error.
//! - **Errors are typed.** A failed dial, a negotiation timeout, a closed connection or the
//!   stream limit each have a variant, where libp2p-stream has one `Io`.
//! - **Bounded backlog.** Each accepted protocol buffers at most 16 streams the application has
//!   not taken ([`NodeConfig::with_inbound_backlog`](crate::p2p::NodeConfig::with_inbound_backlog));
//!   more are reset and counted ([`IncomingStreams::overflowed`](crate::stream::IncomingStreams::overflowed),
//!   and a node event). libp2p-stream's channel holds about one stream per protocol and drops
//!   the rest with a debug log.
//! - **`accept()` returns a stream of streams, dropping it deregisters** the protocol: later
//!   proposals are refused with `na`, as in libp2p-stream.
//! - **No `&mut self`**: `Control` is `Clone` and every method takes `&self`;
//!   libp2p-stream's one-stream-at-a-time backpressure per `Control` becomes the node's stream
//!   limit per connection.
//! - **Deadlines.** Negotiating a stream has a deadline ([`NodeConfig::with_negotiation_timeout`](crate::p2p::NodeConfig::with_negotiation_timeout)),
//!   and so does setting up a connection.
//!
//! # Before and after
//!
//! rust-libp2p's `stream` example, in short:
//!
//! ```text
//! let mut swarm = libp2p::SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!     .with_behaviour(|_| stream::Behaviour::new())?
//!     .build();
//! swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! let mut control = swarm.behaviour().new_control();
//! let mut incoming = control.accept(ECHO_PROTOCOL)?;
//! tokio::spawn(async move {
//!     while let Some((peer, stream)) = incoming.next().await {
//!         tokio::spawn(echo(stream));
//!     }
//! });
//! swarm.dial(address)?;
//! tokio::spawn(async move {
//!     let stream = control.open_stream(peer, ECHO_PROTOCOL).await?;
//!     send(stream).await
//! });
//! loop {
//!     swarm.next().await; // the swarm must be polled for anything to happen
//! }
//! ```
//!
//! With missive (the `stream_echo` example is the complete program):
//!
//! ```
//! use futures_util::StreamExt;
//! use missive::p2p::{Keypair, Node, NodeConfig};
//! use missive::stream::StreamProtocol;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/echo");
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let address = server.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
//! let mut incoming = server.stream_control().accept(ECHO_PROTOCOL)?;
//! tokio::spawn(async move {
//!     while let Some((_peer, mut stream)) = incoming.next().await {
//!         let mut buf = Vec::new();
//!         stream.read_to_end(&mut buf).await?;
//!         stream.write_all(&buf).await?;
//!         stream.shutdown().await?;
//!     }
//!     Ok::<_, std::io::Error>(())
//! });
//!
//! let client = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! client.add_address(server.peer_id(), address);
//! let mut stream = client.stream_control().open_stream(server.peer_id(), ECHO_PROTOCOL).await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?;
//! let mut echo = Vec::new();
//! stream.read_to_end(&mut echo).await?;
//! assert_eq!(echo, b"hello");
//! # client.shutdown().await;
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
