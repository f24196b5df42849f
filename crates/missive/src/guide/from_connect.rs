//! From connect 0.2.4 to [`queue`](crate::queue).
//!
//! The queue speaks connect's frame (`u32 size | u16 version | u16 tag | payload`), so a
//! missive program and a connect program talk to each other over TCP and TLS; you can move one
//! side at a time. Two ways to switch:
//!
//! - **Change only the `use` lines**: [`compat::connect`](crate::compat::connect) has connect's
//!   client shapes (`Connection::tcp_client`, `ConnectDatagram::with_tag`, `writer().send`,
//!   `reader().next()` yielding datagrams, `data()`, `recipient()`), with the reader's error
//!   kept instead of lost.
//! - **Use the queue itself**, which this page describes: its reader yields `Result`s, and its
//!   datagrams share the read buffer instead of owning a `Vec`.
//!
//! # Names
//!
//! | connect 0.2.4 | missive |
//! |---|---|
//! | `Connection` | [`queue::Connection`](crate::queue::Connection) |
//! | `Connection::tcp_client(addr)` | [`Connection::tcp_client`](crate::queue::Connection::tcp_client), [`tcp_client_with(addr, QueueConfig)`](crate::queue::Connection::tcp_client_with) |
//! | `Connection::tls_client(addr, domain, TlsConnector)` | [`Connection::tls_client(addr, domain, Arc<rustls::ClientConfig>)`](crate::queue::Connection::tls_client), [`tls_client_with`](crate::queue::Connection::tls_client_with) |
//! | `tcp::TcpListener::bind(addr)`, then `listener.next().await` | [`Listener::bind_tcp(addr)`](crate::queue::Listener::bind_tcp), then [`listener.accept().await?`](crate::queue::Listener::accept) |
//! | `tls::TlsListener::bind(addr, TlsAcceptor)` | [`Listener::bind_tls(addr, Arc<rustls::ServerConfig>)`](crate::queue::Listener::bind_tls) |
//! | `ConnectDatagram::new(recipient, Vec<u8>)?` (`with_tag` in later docs) | [`Datagram::new(tag, impl Into<Bytes>)`](crate::queue::Datagram::new) (no `Result`) |
//! | `datagram.recipient()` | [`datagram.tag()`](crate::queue::Datagram::tag) |
//! | `datagram.data()`, `take_data()` | [`datagram.payload()`](crate::queue::Datagram::payload) (`&Bytes`), [`into_payload()`](crate::queue::Datagram::into_payload) |
//! | `ConnectionReader` (`Stream<Item = ConnectDatagram>`) | [`queue::Reader`](crate::queue::Reader) (`Stream<Item = Result<Datagram, RecvError>>`) |
//! | `ConnectionWriter` (`Sink<ConnectDatagram>`) | [`queue::Writer`](crate::queue::Writer) (`Sink<Datagram>`, and `send`, `feed`, `flush`, `close` methods) |
//! | `ConnectionWriteError::{ConnectionClosed, IoError}` | [`SendError::{Closed, Io}`](crate::queue::SendError), plus `TooLarge` and `EmptyPayload` |
//! | `DatagramError::{EmptyMessage, TooLargeMessage}` | [`SendError::EmptyPayload`](crate::queue::SendError::EmptyPayload), [`SendError::TooLarge`](crate::queue::SendError::TooLarge), when sending |
//! | `conn.split()`, `Connection::join(r, w)`, `local_addr()`, `peer_addr()` | the same names; addresses are [`Address`](crate::transport::Address) |
//! | `conn.close().await` (drops both halves) | [`conn.close().await?`](crate::queue::Connection::close): flushes, shuts down, waits for the peer |
//! | async-std | tokio |
//!
//! # What behaves differently
//!
//! - **Results on the reader.** connect's reader ends (`None`) when the peer breaks the frame
//!   format or a read fails, and you cannot tell that from a clean close. The queue's reader
//!   yields `Err(RecvError)` first ([`RecvError::Frame`](crate::queue::RecvError::Frame),
//!   [`Truncated`](crate::queue::RecvError::Truncated) for a stream cut inside a frame,
//!   [`Io`](crate::queue::RecvError::Io), [`Idle`](crate::queue::RecvError::Idle)), then `None`.
//!   `None` alone means the peer closed at a frame boundary.
//! - **Nothing is dropped.** connect's writer drops a batch its socket does not take whole
//!   (the benchmarks measure connect delivering 2% of what it is given over TLS). The queue's
//!   writer keeps every datagram and waits when 256 KiB are queued
//!   ([`QueueConfig::with_send_buffer`](crate::queue::QueueConfig::with_send_buffer)): a slow
//!   peer slows the sender instead of losing its messages.
//! - **Frame limit.** connect allows payloads up to 100 MB when sending and no limit when
//!   receiving (a peer's size field decides what it buffers). The queue's limit is 8 MiB both
//!   ways, checked before anything is allocated; raise it to connect's with
//!   [`QueueConfig::with_max_frame_len(QueueConfig::CONNECT_MAX_FRAME_LEN)`](crate::queue::QueueConfig::CONNECT_MAX_FRAME_LEN).
//!   `compat::connect` uses connect's limit by default.
//! - **Empty payloads** are refused when sending ([`SendError::EmptyPayload`](crate::queue::SendError::EmptyPayload)),
//!   as connect refuses them when constructing, because connect cannot read them; the queue
//!   reads them, and [`QueueConfig::with_empty_payloads`](crate::queue::QueueConfig::with_empty_payloads) allows sending them to missive peers.
//! - **Versions.** connect writes version 1 and never checks it. The queue refuses other
//!   versions on receipt unless [`QueueConfig::with_any_version`](crate::queue::QueueConfig::with_any_version).
//! - **Deadlines.** Clients connect within 10 s and finish TLS within 10 s; listeners give a
//!   client 10 s for its handshake and run at most 64 at once. connect has no deadlines.
//! - **Listener.** `accept().await` returns one ready connection (TLS handshakes run
//!   concurrently inside it); failed handshakes are counted
//!   ([`Listener::failed_handshakes`](crate::queue::Listener::failed_handshakes)), not returned, so one bad client never
//!   stops the listener. connect's listener is a `Stream` of connections.
//! - **Closing.** [`Connection::close`](crate::queue::Connection::close) writes what is queued, sends
//!   the TLS `close_notify`, and reads until the peer closes (2 s linger), so the peer's kernel
//!   does not reset the connection with your last datagrams unread.
//! - **No copies.** Received payloads are [`Bytes`](bytes::Bytes) slices of the read buffer;
//!   `payload().to_vec()` gives a `Vec` when you need one.
//! - **TLS** is rustls 0.23 through tokio-rustls (connect: rustls 0.19 through async-tls); give
//!   `Arc<rustls::ClientConfig>` / `Arc<rustls::ServerConfig>`, or build them with
//!   [`transport::tls`](crate::transport::tls).
//!
//! # Before and after
//!
//! An echo client, with connect:
//!
//! ```text
//! use connect::{ConnectDatagram, Connection, SinkExt, StreamExt};
//!
//! #[async_std::main]
//! async fn main() -> anyhow::Result<()> {
//!     let mut conn = Connection::tcp_client("127.0.0.1:7000").await?;
//!     let envelope = ConnectDatagram::new(65535, b"Hello world!".to_vec())?;
//!     conn.writer().send(envelope).await?;
//!     if let Some(mut envelope) = conn.reader().next().await {
//!         let data = envelope.take_data().unwrap();
//!         assert_eq!(String::from_utf8(data)?, "Hello world!");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! With the queue (and a server, so that the example runs by itself):
//!
//! ```
//! use futures_util::StreamExt;
//! use missive::queue::{Connection, Datagram, Listener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut listener = Listener::bind_tcp("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?.to_string();
//! tokio::spawn(async move {
//!     let mut conn = listener.accept().await?;
//!     while let Some(datagram) = conn.reader().next().await {
//!         conn.writer().send(datagram?).await?;
//!     }
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let mut conn = Connection::tcp_client(addr).await?;
//! conn.writer().send(Datagram::new(65535, "Hello world!")).await?;
//! match conn.reader().next().await {
//!     Some(envelope) => {
//!         let envelope = envelope?; // a broken connection is an error, not the end
//!         assert_eq!(envelope.tag(), 65535);
//!         assert_eq!(std::str::from_utf8(envelope.payload())?, "Hello world!");
//!     }
//!     None => return Err("the server closed without answering".into()),
//! }
//! conn.close().await?;
//! # Ok(())
//! # }
//! ```
