//! connect 0.2.4's client shapes on the [`queue`] layer: [`Connection::tcp_client`],
//! [`ConnectDatagram::with_tag`], `writer().send(..)` through [`SinkExt`], and `reader().next()`
//! through [`StreamExt`] yielding datagrams, not results.
//!
//! The wire is the queue's, which is connect's, so these talk to connect peers and to missive
//! queues alike. What differs from connect itself:
//!
//! - **The reader keeps its error.** connect's reader ends (`None`) on a broken frame or a failed
//!   read, and the reason is lost. [`ConnectionReader`] ends the same way, and
//!   [`ConnectionReader::error`] / [`ConnectionReader::take_error`] give the
//!   [`RecvError`] that ended it (a clean close leaves none). It is also logged as a warning.
//! - **Nothing is lost on a slow socket.** connect drops a batch its socket does not take whole;
//!   the queue's writer waits for room (backpressure) and sends every datagram in order.
//! - **The frame limit is connect's 100 MB**, on both sides ([`QueueConfig::CONNECT_MAX_FRAME_LEN`]);
//!   a frame that claims more ends the reader with `FrameError::TooLarge` before anything is
//!   allocated (connect would try to buffer it). `*_with` constructors take any [`QueueConfig`].
//! - **Deadlines**: a connection must be made within 10 s and a TLS handshake finished within
//!   10 s (settable through [`QueueConfig`]); connect waits as long as the system does.
//! - Addresses are [`Address`]es (a TCP one holds the `SocketAddr`), and errors are missive's:
//!   [`ConnectError`] from the constructors, [`ConnectionWriteError`] (missive's
//!   [`SendError`]) from the writer, [`DatagramError`] from [`ConnectDatagram::with_tag`].
//!
//! Servers use the queue's [`Listener`](crate::queue::Listener) (`accept().await`, not a stream
//! of connections) and wrap what it accepts: `Connection::from(listener.accept().await?)`.
//!
//! ```
//! use missive::compat::connect::{ConnectDatagram, Connection, SinkExt, StreamExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut listener = missive::queue::Listener::bind_tcp("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?.to_string();
//! tokio::spawn(async move {
//!     let mut conn = Connection::from(listener.accept().await?);
//!     while let Some(datagram) = conn.reader().next().await {
//!         conn.writer().send(datagram).await?;
//!     }
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let mut conn = Connection::tcp_client(addr).await?;
//! conn.writer().send(ConnectDatagram::with_tag(65535, b"Hello".to_vec())?).await?;
//! let echo = conn.reader().next().await.ok_or("closed")?;
//! assert_eq!((echo.recipient(), echo.data()), (65535, &b"Hello"[..]));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;

use crate::queue::{self, Datagram, QueueConfig, Reader, Writer};
use crate::transport::Address;

pub use crate::queue::{Closed, ConnectError, RecvError, SendError};
pub use futures_util::{SinkExt, StreamExt};

/// Why a datagram could not be sent: missive's [`SendError`] under connect's name. Its
/// variants are missive's (`Closed`, `Io`, and the limits `TooLarge` and `EmptyPayload`).
pub type ConnectionWriteError = SendError;

/// The largest payload connect 0.2.4 allows in one datagram: 100,000,000 bytes.
pub const MAX_PAYLOAD_LEN: usize = 100_000_000;

/// Why a [`ConnectDatagram`] could not be made: connect's checks, with connect's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The payload is empty (connect 0.2.4 cannot read an empty datagram).
    #[error("a datagram needs a non-empty payload")]
    EmptyMessage,
    /// The payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("a payload of {len} bytes exceeds connect's limit of {MAX_PAYLOAD_LEN} bytes")]
    TooLargeMessage {
        /// The payload length.
        len: usize,
    },
}

/// A datagram with connect's accessors: `recipient()` is the queue's tag, `data()` the payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectDatagram {
    inner: Datagram,
}

impl ConnectDatagram {
    /// A datagram for `recipient` (the tag) carrying `data`, checked as connect checks it:
    /// not empty, at most [`MAX_PAYLOAD_LEN`] bytes.
    ///
    /// # Errors
    /// [`DatagramError::EmptyMessage`], [`DatagramError::TooLargeMessage`].
    pub fn with_tag(recipient: u16, data: impl Into<Bytes>) -> Result<Self, DatagramError> {
        let data = data.into();
        if data.is_empty() {
            return Err(DatagramError::EmptyMessage);
        }
        if data.len() > MAX_PAYLOAD_LEN {
            return Err(DatagramError::TooLargeMessage { len: data.len() });
        }
        Ok(Self {
            inner: Datagram::new(recipient, data),
        })
    }

    /// connect 0.2.4's name for [`ConnectDatagram::with_tag`].
    ///
    /// # Errors
    /// As [`ConnectDatagram::with_tag`].
    pub fn new(recipient: u16, data: impl Into<Bytes>) -> Result<Self, DatagramError> {
        Self::with_tag(recipient, data)
    }

    /// The tag: the application's label for the datagram.
    pub fn recipient(&self) -> u16 {
        self.inner.tag()
    }

    /// The frame version (1).
    pub fn version(&self) -> u16 {
        self.inner.version()
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        self.inner.payload()
    }

    /// The payload as a `Vec` (connect 0.2.4 hands it out once; here it stays readable).
    pub fn take_data(&mut self) -> Option<Vec<u8>> {
        Some(self.inner.payload().to_vec())
    }

    /// The length of the datagram on the wire, header included.
    pub fn size(&self) -> usize {
        self.inner.frame_len()
    }

    /// The queue's datagram.
    pub fn into_inner(self) -> Datagram {
        self.inner
    }
}

impl From<Datagram> for ConnectDatagram {
    fn from(inner: Datagram) -> Self {
        Self { inner }
    }
}

impl From<ConnectDatagram> for Datagram {
    fn from(datagram: ConnectDatagram) -> Self {
        datagram.inner
    }
}

/// A queue connection with connect's shape: a [`ConnectionReader`] and a [`ConnectionWriter`].
#[derive(Debug)]
pub struct Connection {
    reader: ConnectionReader,
    writer: ConnectionWriter,
}

/// The configuration of the constructors without a config: the queue's defaults with
/// connect's frame limit.
fn connect_config() -> QueueConfig {
    QueueConfig::default().with_max_frame_len(QueueConfig::CONNECT_MAX_FRAME_LEN)
}

impl Connection {
    /// Connects over TCP, with connect's frame limit and a 10 s connect deadline.
    ///
    /// # Errors
    /// The connection failed or timed out ([`ConnectError`]).
    pub async fn tcp_client(addr: impl tokio::net::ToSocketAddrs) -> Result<Self, ConnectError> {
        Self::tcp_client_with(addr, connect_config()).await
    }

    /// Connects over TCP with `config`.
    ///
    /// # Errors
    /// The connection failed or timed out ([`ConnectError`]).
    pub async fn tcp_client_with(
        addr: impl tokio::net::ToSocketAddrs,
        config: QueueConfig,
    ) -> Result<Self, ConnectError> {
        queue::Connection::tcp_client_with(addr, config)
            .await
            .map(Self::from)
    }

    /// Connects over TLS, verifying the server's certificate for `domain`, with connect's
    /// frame limit (10 s to connect, then 10 s for the handshake). connect takes an
    /// `async_tls::TlsConnector`; this takes the rustls configuration.
    ///
    /// # Errors
    /// The connection or handshake failed or timed out ([`ConnectError`]).
    #[cfg(feature = "tls")]
    pub async fn tls_client(
        addr: impl tokio::net::ToSocketAddrs,
        domain: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ConnectError> {
        Self::tls_client_with(addr, domain, tls, connect_config()).await
    }

    /// Connects over TLS with `config`.
    ///
    /// # Errors
    /// The connection or handshake failed or timed out ([`ConnectError`]).
    #[cfg(feature = "tls")]
    pub async fn tls_client_with(
        addr: impl tokio::net::ToSocketAddrs,
        domain: &str,
        tls: Arc<rustls::ClientConfig>,
        config: QueueConfig,
    ) -> Result<Self, ConnectError> {
        queue::Connection::tls_client_with(addr, domain, tls, config)
            .await
            .map(Self::from)
    }

    /// The receiving half.
    pub fn reader(&mut self) -> &mut ConnectionReader {
        &mut self.reader
    }

    /// The sending half.
    pub fn writer(&mut self) -> &mut ConnectionWriter {
        &mut self.writer
    }

    /// Separates the halves, for one task that reads and one that writes.
    pub fn split(self) -> (ConnectionReader, ConnectionWriter) {
        (self.reader, self.writer)
    }

    /// Puts the halves of one connection back together.
    pub fn join(reader: ConnectionReader, writer: ConnectionWriter) -> Self {
        Self { reader, writer }
    }

    /// The local address.
    pub fn local_addr(&self) -> Address {
        self.reader.inner.local_addr().clone()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Address {
        self.reader.inner.peer_addr().clone()
    }

    /// Closes without losing what was sent (see [`queue::Connection::close`]); connect's
    /// `close` drops both halves at once.
    ///
    /// # Errors
    /// Writing what was queued failed.
    pub async fn close(self) -> Result<Closed, SendError> {
        self.into_inner().close().await
    }

    /// The queue connection underneath. The reader's kept error, if any, is dropped with it.
    pub fn into_inner(self) -> queue::Connection {
        queue::Connection::join(self.reader.inner, self.writer.inner)
    }
}

impl From<queue::Connection> for Connection {
    fn from(conn: queue::Connection) -> Self {
        let (reader, writer) = conn.split();
        Self {
            reader: ConnectionReader {
                inner: reader,
                error: None,
                ended: false,
            },
            writer: ConnectionWriter { inner: writer },
        }
    }
}

/// Receives datagrams in order, as a [`Stream`] of [`ConnectDatagram`].
///
/// The stream ends at the peer's clean close or at the first error; the error is kept for
/// [`ConnectionReader::error`] and [`ConnectionReader::take_error`].
///
/// # Cancel safety
/// `next()` is cancel safe, as the queue's reader.
pub struct ConnectionReader {
    inner: Reader,
    error: Option<RecvError>,
    ended: bool,
}

impl ConnectionReader {
    /// Whether the stream has ended (by a clean close or an error).
    pub fn is_closed(&self) -> bool {
        self.ended
    }

    /// The error that ended the stream, if one did.
    pub fn error(&self) -> Option<&RecvError> {
        self.error.as_ref()
    }

    /// Takes the error that ended the stream, if one did.
    pub fn take_error(&mut self) -> Option<RecvError> {
        self.error.take()
    }

    /// The local address.
    pub fn local_addr(&self) -> Address {
        self.inner.local_addr().clone()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Address {
        self.inner.peer_addr().clone()
    }

    /// The queue's reader, which yields `Result`s.
    pub fn into_inner(self) -> Reader {
        self.inner
    }
}

impl Stream for ConnectionReader {
    type Item = ConnectDatagram;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectDatagram>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(Ok(datagram)) => Poll::Ready(Some(datagram.into())),
            Some(Err(error)) => {
                tracing::warn!(peer = %this.inner.peer_addr(), %error, "queue connection failed");
                this.error = Some(error);
                this.ended = true;
                Poll::Ready(None)
            }
            None => {
                this.ended = true;
                Poll::Ready(None)
            }
        }
    }
}

impl fmt::Debug for ConnectionReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionReader")
            .field("inner", &self.inner)
            .field("error", &self.error)
            .field("ended", &self.ended)
            .finish()
    }
}

/// Sends datagrams in order, as a [`Sink`] of [`ConnectDatagram`]: `send` (from [`SinkExt`])
/// returns once the datagram is written to the socket.
#[derive(Debug)]
pub struct ConnectionWriter {
    inner: Writer,
}

impl ConnectionWriter {
    /// The local address.
    pub fn local_addr(&self) -> Address {
        self.inner.local_addr().clone()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Address {
        self.inner.peer_addr().clone()
    }

    /// The queue's writer.
    pub fn into_inner(self) -> Writer {
        self.inner
    }
}

impl Sink<ConnectDatagram> for ConnectionWriter {
    type Error = ConnectionWriteError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: ConnectDatagram) -> Result<(), SendError> {
        Pin::new(&mut self.get_mut().inner).start_send(item.inner)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
