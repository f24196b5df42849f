//! Listeners that accept queue connections over TCP, TLS and Unix sockets.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
#[cfg(all(feature = "unix", unix))]
use std::path::{Path, PathBuf};
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::config::QueueConfig;
use super::connection::Connection;
use crate::transport::Address;

type Handshake = Pin<Box<dyn Future<Output = Result<Connection, HandshakeFailure>> + Send>>;

/// A fatal error of a listener's socket. Failures of single clients (a failed or stalled TLS
/// handshake, a connection reset before it was accepted) are not errors of the listener: they are
/// counted in [`Listener::failed_handshakes`] and logged, and the listener goes on serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// Binding or accepting failed (for example: the address is in use, or the process is out of
    /// file descriptors). A later `accept` may succeed once the cause is gone.
    #[error("listener failed: {0}")]
    Io(#[from] io::Error),
    /// The TLS configuration could not be used.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
}

#[derive(Debug)]
struct HandshakeFailure {
    peer: Address,
    reason: String,
}

/// Accepts [`Connection`]s.
///
/// TLS handshakes run concurrently, inside [`Listener::accept`], each under a deadline
/// (`QueueConfig::with_handshake_timeout`), and at most `QueueConfig::with_max_pending_handshakes`
/// at once: a client that stalls or fails its handshake never holds up the others. Accepted TCP
/// and TLS connections get `TCP_NODELAY` and keepalive (`QueueConfig::with_tcp_keepalive`, probes
/// after 30 s idle by default), and the listener's config, idle timeout included
/// (`QueueConfig::with_idle_timeout`, off by default).
pub struct Listener {
    socket: Socket,
    config: QueueConfig,
    /// Admission of TLS handshakes in progress.
    #[cfg(feature = "tls")]
    pending: Arc<crate::transport::pending::Pending>,
    handshakes: FuturesUnordered<Handshake>,
    failed_handshakes: u64,
}

enum Socket {
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpListener),
    #[cfg(feature = "tls")]
    Tls(tokio::net::TcpListener, crate::transport::tls::Acceptor),
    #[cfg(all(feature = "unix", unix))]
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    /// Listens for plain TCP connections on `addr` (port 0 picks a free port).
    #[cfg(feature = "tcp")]
    pub async fn bind_tcp(addr: impl tokio::net::ToSocketAddrs) -> Result<Self, AcceptError> {
        let socket = crate::transport::tcp::bind(addr).await?;
        Ok(Self::new(Socket::Tcp(socket)))
    }

    /// Listens for plain TCP connections on `addr` with `config`, whose socket options
    /// (`QueueConfig::with_socket_options`: backlog, `SO_REUSEADDR`, buffer sizes) the listening
    /// socket is made with.
    #[cfg(feature = "tcp")]
    pub async fn bind_tcp_with(
        addr: impl tokio::net::ToSocketAddrs,
        config: QueueConfig,
    ) -> Result<Self, AcceptError> {
        let socket = crate::transport::tcp::bind_with(addr, &config.socket).await?;
        Ok(Self::new(Socket::Tcp(socket)).with_config(config))
    }

    /// Listens for TLS connections on `addr` with `queue_config`, as [`Self::bind_tcp_with`].
    #[cfg(feature = "tls")]
    pub async fn bind_tls_with(
        addr: impl tokio::net::ToSocketAddrs,
        config: Arc<rustls::ServerConfig>,
        queue_config: QueueConfig,
    ) -> Result<Self, AcceptError> {
        let socket = crate::transport::tcp::bind_with(addr, &queue_config.socket).await?;
        let acceptor = crate::transport::tls::Acceptor::new(config);
        Ok(Self::new(Socket::Tls(socket, acceptor)).with_config(queue_config))
    }

    /// Listens for TLS connections on `addr`, presenting the certificate of `config`.
    #[cfg(feature = "tls")]
    pub async fn bind_tls(
        addr: impl tokio::net::ToSocketAddrs,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<Self, AcceptError> {
        let socket = crate::transport::tcp::bind(addr).await?;
        let acceptor = crate::transport::tls::Acceptor::new(config);
        Ok(Self::new(Socket::Tls(socket, acceptor)))
    }

    /// Listens on a Unix domain socket at `path`, which must not exist yet.
    #[cfg(all(feature = "unix", unix))]
    pub fn bind_unix(path: impl AsRef<Path>) -> Result<Self, AcceptError> {
        let path = path.as_ref().to_owned();
        let socket = crate::transport::unix::bind(&path)?;
        Ok(Self::new(Socket::Unix(socket, path)))
    }

    fn new(socket: Socket) -> Self {
        let config = QueueConfig::default();
        Listener {
            socket,
            #[cfg(feature = "tls")]
            pending: pending_table(&config),
            config,
            handshakes: FuturesUnordered::new(),
            failed_handshakes: 0,
        }
    }

    /// Uses `config` for the connections accepted from now on.
    pub fn with_config(mut self, config: QueueConfig) -> Self {
        #[cfg(feature = "tls")]
        if let Socket::Tls(_, acceptor) = &mut self.socket {
            *acceptor = acceptor
                .clone()
                .with_handshake_timeout(config.handshake_timeout);
        }
        #[cfg(feature = "tls")]
        {
            self.pending = pending_table(&config);
        }
        self.config = config;
        self
    }

    /// The address the listener is bound to (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<Address> {
        match &self.socket {
            #[cfg(feature = "tcp")]
            Socket::Tcp(l) => l.local_addr().map(Address::Tcp),
            #[cfg(feature = "tls")]
            Socket::Tls(l, _) => l.local_addr().map(Address::Tcp),
            #[cfg(all(feature = "unix", unix))]
            Socket::Unix(_, path) => Ok(Address::Unix(Some(path.clone()))),
        }
    }

    /// How many clients failed or abandoned their TLS handshake so far.
    pub fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes
    }

    /// Waits for the next connection that is ready to use (for TLS: whose handshake succeeded).
    ///
    /// # Cancel safety
    /// Cancel safe: a connection is only taken when it is returned; handshakes under way stay with
    /// the listener and go on at the next call.
    pub async fn accept(&mut self) -> Result<Connection, AcceptError> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<Connection, AcceptError>> {
        loop {
            while let Poll::Ready(Some(done)) = self.handshakes.poll_next_unpin(cx) {
                match done {
                    Ok(connection) => {
                        #[cfg(feature = "metrics")]
                        self.config.metrics.inner.server_connections.inc();
                        return Poll::Ready(Ok(connection));
                    }
                    Err(failure) => {
                        self.failed_handshakes += 1;
                        #[cfg(feature = "metrics")]
                        self.config.metrics.inner.failed_handshakes.inc();
                        tracing::debug!(peer = %failure.peer, reason = %failure.reason, "handshake failed");
                    }
                }
            }
            match self.poll_socket(cx) {
                Poll::Ready(Ok(Accepted::Ready(connection))) => {
                    #[cfg(feature = "metrics")]
                    self.config.metrics.inner.server_connections.inc();
                    return Poll::Ready(Ok(*connection));
                }
                Poll::Ready(Ok(Accepted::Handshaking(handshake))) => {
                    self.handshakes.push(handshake);
                }
                Poll::Ready(Err(e)) if is_per_connection_error(&e) => {
                    tracing::debug!(error = %e, "connection failed before it was accepted");
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_socket(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let config = self.config.clone();
        match &self.socket {
            #[cfg(feature = "tcp")]
            Socket::Tcp(l) => l.poll_accept(cx).map(|res| {
                let (stream, _) = res?;
                config.socket.apply(&stream)?;
                Ok(Accepted::Ready(Box::new(Connection::from_tcp(
                    stream, config,
                )?)))
            }),
            #[cfg(feature = "tls")]
            Socket::Tls(l, acceptor) => l.poll_accept(cx).map(|res| {
                let (stream, peer) = res?;
                config.socket.apply(&stream)?;
                let local = Address::Tcp(stream.local_addr()?);
                let acceptor = acceptor.clone();
                // Admitted at once: when the table is full, a less advanced handshake yields.
                let slot = self.pending.admit(peer.ip());
                let handshake: Handshake = Box::pin(async move {
                    let failure = |reason: String| HandshakeFailure {
                        peer: Address::Tcp(peer),
                        reason,
                    };
                    let evicted = slot.evicted();
                    let work = async {
                        let silence = config.first_bytes_timeout.min(config.handshake_timeout);
                        if !crate::transport::pending::first_bytes(&stream, silence, &slot).await {
                            return Err(failure(format!("sent nothing within {silence:?}")));
                        }
                        acceptor
                            .accept(stream)
                            .await
                            .map_err(|e| failure(e.to_string()))
                    };
                    let tls = tokio::select! {
                        () = evicted.cancelled() => Err(failure(
                            "closed to make room: too many pending handshakes".to_owned(),
                        )),
                        r = work => r,
                    }?;
                    drop(slot);
                    Ok(Connection::with_addresses(
                        tls,
                        config,
                        local,
                        Address::Tcp(peer),
                    ))
                });
                Ok(Accepted::Handshaking(handshake))
            }),
            #[cfg(all(feature = "unix", unix))]
            Socket::Unix(l, _) => l.poll_accept(cx).map(|res| {
                let (stream, _) = res?;
                Ok(Accepted::Ready(Box::new(Connection::from_unix(
                    stream, config,
                ))))
            }),
        }
    }
}

/// The handshake admission table for `config`: its cap, half of it per IP address.
#[cfg(feature = "tls")]
fn pending_table(config: &QueueConfig) -> Arc<crate::transport::pending::Pending> {
    let max = config.max_pending_handshakes;
    Arc::new(crate::transport::pending::Pending::new(
        max,
        max.div_ceil(2),
    ))
}

enum Accepted {
    Ready(Box<Connection>),
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Handshaking(Handshake),
}

/// Errors that concern one incoming connection, not the listening socket.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotConnected
            | io::ErrorKind::Interrupted
    )
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr().ok())
            .field("pending_handshakes", &self.handshakes.len())
            .field("failed_handshakes", &self.failed_handshakes)
            .finish_non_exhaustive()
    }
}
