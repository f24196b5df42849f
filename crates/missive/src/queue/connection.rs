//! A queue connection: a reader and a writer over one byte stream.

use std::io;
#[cfg(all(feature = "unix", unix))]
use std::path::Path;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::config::QueueConfig;
use super::reader::Reader;
use super::writer::{SendError, Writer};
use crate::transport::Address;

/// Why a client connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP or Unix connection could not be made.
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// The TCP or Unix connection was not made within the connect deadline
    /// (`QueueConfig::with_connect_timeout`, 10 s by default).
    #[error("connect did not complete within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake or configuration failed.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
}

/// An ordered, lossless channel of [`Datagram`](super::Datagram)s over one byte stream.
///
/// Use [`Connection::writer`] and [`Connection::reader`] for one task, or [`Connection::split`] the
/// connection so that one task sends while another receives.
#[derive(Debug)]
pub struct Connection {
    reader: Reader,
    writer: Writer,
    linger: Duration,
}

/// How a [`Connection::close`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Closed {
    /// Datagrams that arrived after the close began and were read and dropped. Non-zero means the
    /// peer was still sending: those datagrams reached this process but not the application.
    pub discarded: u64,
    /// Whether the peer closed its side within the linger time (`QueueConfig::with_linger`).
    pub peer_closed: bool,
}

impl Connection {
    /// A connection over any byte stream, such as a TLS stream, a node stream or an in-memory pipe.
    pub fn new<T>(io: T, config: QueueConfig) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::with_addresses(io, config, Address::Memory, Address::Memory)
    }

    /// Like [`Connection::new`], recording the addresses that `local_addr` and `peer_addr` report.
    pub fn with_addresses<T>(io: T, config: QueueConfig, local: Address, peer: Address) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        Connection {
            reader: Reader::new(Box::pin(read), &config, local.clone(), peer.clone()),
            writer: Writer::new(Box::pin(write), &config, local, peer),
            linger: config.linger,
        }
    }

    /// Connects over TCP (with `TCP_NODELAY`) with the default configuration: the connection
    /// must be made within 10 s.
    #[cfg(feature = "tcp")]
    pub async fn tcp_client(addr: impl tokio::net::ToSocketAddrs) -> Result<Self, ConnectError> {
        Self::tcp_client_with(addr, QueueConfig::default()).await
    }

    /// Connects over TCP (with `TCP_NODELAY`) with `config`; [`ConnectError::Timeout`] when the
    /// connection is not made within `QueueConfig::with_connect_timeout` (10 s by default).
    #[cfg(feature = "tcp")]
    pub async fn tcp_client_with(
        addr: impl tokio::net::ToSocketAddrs,
        config: QueueConfig,
    ) -> Result<Self, ConnectError> {
        let timeout = config.connect_timeout;
        let dial = crate::transport::tcp::connect_with_options(addr, &config.socket);
        let stream = tokio::time::timeout(timeout, dial)
            .await
            .map_err(|_| ConnectError::Timeout(timeout))??;
        #[cfg(feature = "metrics")]
        config.metrics.inner.client_connections.inc();
        Ok(Self::from_tcp(stream, config)?)
    }

    /// A connection over an established TCP stream. Its halves are split without a lock.
    #[cfg(feature = "tcp")]
    pub fn from_tcp(stream: tokio::net::TcpStream, config: QueueConfig) -> io::Result<Self> {
        let local = Address::Tcp(stream.local_addr()?);
        let peer = Address::Tcp(stream.peer_addr()?);
        let (read, write) = stream.into_split();
        Ok(Connection {
            reader: Reader::new(Box::pin(read), &config, local.clone(), peer.clone()),
            writer: Writer::new(Box::pin(write), &config, local, peer),
            linger: config.linger,
        })
    }

    /// Connects over TLS to `addr`, verifying the server's certificate for `server_name`, with the
    /// default configuration: 10 s to connect, then 10 s for the handshake.
    #[cfg(feature = "tls")]
    pub async fn tls_client(
        addr: impl tokio::net::ToSocketAddrs,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ConnectError> {
        Self::tls_client_with(addr, server_name, config, QueueConfig::default()).await
    }

    /// Connects over TLS with `queue_config`: `TlsError::ConnectTimeout` past its connect timeout,
    /// `TlsError::HandshakeTimeout` when the server has not finished the handshake within its
    /// handshake timeout (10 s each by default).
    #[cfg(feature = "tls")]
    pub async fn tls_client_with(
        addr: impl tokio::net::ToSocketAddrs,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
        queue_config: QueueConfig,
    ) -> Result<Self, ConnectError> {
        let stream = crate::transport::tls::connect_with(
            addr,
            server_name,
            config,
            (queue_config.connect_timeout, queue_config.handshake_timeout),
            &queue_config.socket,
        )
        .await?;
        let (tcp, _) = stream.get_ref();
        let local = Address::Tcp(tcp.local_addr()?);
        let peer = Address::Tcp(tcp.peer_addr()?);
        #[cfg(feature = "metrics")]
        queue_config.metrics.inner.client_connections.inc();
        Ok(Self::with_addresses(stream, queue_config, local, peer))
    }

    /// Connects to the Unix domain socket at `path` with the default configuration.
    #[cfg(all(feature = "unix", unix))]
    pub async fn unix_client(path: impl AsRef<Path>) -> Result<Self, ConnectError> {
        Self::unix_client_with(path, QueueConfig::default()).await
    }

    /// Connects to the Unix domain socket at `path` with `config`; [`ConnectError::Timeout`]
    /// past its connect timeout (10 s by default).
    #[cfg(all(feature = "unix", unix))]
    pub async fn unix_client_with(
        path: impl AsRef<Path>,
        config: QueueConfig,
    ) -> Result<Self, ConnectError> {
        let timeout = config.connect_timeout;
        let stream = tokio::time::timeout(timeout, crate::transport::unix::connect(path.as_ref()))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))??;
        #[cfg(feature = "metrics")]
        config.metrics.inner.client_connections.inc();
        Ok(Self::from_unix(stream, config))
    }

    /// A connection over an established Unix stream. Its halves are split without a lock.
    #[cfg(all(feature = "unix", unix))]
    pub fn from_unix(stream: tokio::net::UnixStream, config: QueueConfig) -> Self {
        let unix_addr = |a: io::Result<tokio::net::unix::SocketAddr>| {
            Address::Unix(a.ok().and_then(|a| a.as_pathname().map(Path::to_owned)))
        };
        let local = unix_addr(stream.local_addr());
        let peer = unix_addr(stream.peer_addr());
        let (read, write) = stream.into_split();
        Connection {
            reader: Reader::new(Box::pin(read), &config, local.clone(), peer.clone()),
            writer: Writer::new(Box::pin(write), &config, local, peer),
            linger: config.linger,
        }
    }

    /// The receiving half.
    pub fn reader(&mut self) -> &mut Reader {
        &mut self.reader
    }

    /// The sending half.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// Separates the halves so that they can be used from different tasks.
    pub fn split(self) -> (Reader, Writer) {
        (self.reader, self.writer)
    }

    /// Puts halves back together. They should come from the same connection. The linger time of
    /// the result is the default of [`QueueConfig`].
    pub fn join(reader: Reader, writer: Writer) -> Self {
        Connection {
            reader,
            writer,
            linger: QueueConfig::default().linger,
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> &Address {
        self.reader.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &Address {
        self.reader.peer_addr()
    }

    /// Closes the connection without losing what was sent: writes everything queued, shuts the
    /// write side down (for TLS, with a `close_notify`), then reads until the peer closes its side
    /// or the linger time (`QueueConfig::with_linger`, 2 s by default) runs out.
    ///
    /// Datagrams that arrive meanwhile are dropped and counted in [`Closed::discarded`]; to keep
    /// them, close the writer with [`Writer::close`] and read the reader to its end instead.
    pub async fn close(mut self) -> Result<Closed, SendError> {
        self.writer.close().await?;
        #[cfg(feature = "metrics")]
        self.reader.closing();
        let mut discarded = 0;
        let drain = async {
            while let Some(item) = self.reader.next().await {
                match item {
                    Ok(_) => discarded += 1,
                    Err(_) => break,
                }
            }
        };
        let peer_closed = tokio::time::timeout(self.linger, drain).await.is_ok();
        if discarded > 0 {
            tracing::warn!(discarded, peer = %self.reader.peer_addr(), "datagrams arrived while closing");
        }
        Ok(Closed {
            discarded,
            peer_closed,
        })
    }
}
