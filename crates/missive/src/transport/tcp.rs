//! TCP: connections with `TCP_NODELAY` set, because every missive protocol writes whole messages and
//! batches them itself; Nagle's algorithm would only add latency.
//!
//! [`SocketOptions`] holds the options the queue, rpc and node sockets are made with (keepalive,
//! `SO_REUSEADDR`, the listen backlog, buffer sizes, `TCP_NODELAY`); [`bind_with`] and
//! [`connect_with`] apply them, set through `socket2` where tokio has no setter.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! use missive::transport::tcp;
//!
//! let listener = tcp::bind("127.0.0.1:0").await?;
//! let client = tcp::connect_within(listener.local_addr()?, Duration::from_secs(5)).await?;
//! let server = tcp::accept(&listener).await?;
//! tcp::set_keepalive(&server, Some(Duration::from_secs(30)))?;
//! assert!(client.nodelay()? && server.nodelay()?);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};

/// The options of TCP sockets: listeners ([`bind_with`]), dialed connections ([`connect_with`])
/// and accepted ones ([`SocketOptions::apply`]).
///
/// | option | default | applies to |
/// |---|---|---|
/// | `TCP_NODELAY` | on | connections |
/// | keepalive | probes after 30 s idle (interval and count: the system's) | connections |
/// | `SO_REUSEADDR` | on (tokio's default on Unix: a restarted server rebinds at once) | listeners, dialers |
/// | listen backlog | 1,024 (tokio's) | listeners |
/// | `SO_SNDBUF`, `SO_RCVBUF` | the system's (Linux autotunes both) | listeners (inherited by accepted connections) and connections |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use missive::transport::tcp::{self, SocketOptions};
///
/// let options = SocketOptions::default()
///     .with_keepalive(Some(Duration::from_secs(60)))
///     .with_recv_buffer_size(Some(256 * 1024))
///     .with_backlog(64);
/// let listener = tcp::bind_with("127.0.0.1:0", &options).await?;
/// let client = tcp::connect_with(listener.local_addr()?, &options, Duration::from_secs(5)).await?;
/// assert!(client.nodelay()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    nodelay: bool,
    keepalive: Option<Duration>,
    reuse_address: bool,
    backlog: u32,
    send_buffer_size: Option<usize>,
    recv_buffer_size: Option<usize>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            keepalive: Some(super::DEFAULT_TCP_KEEPALIVE),
            reuse_address: true,
            backlog: 1024,
            send_buffer_size: None,
            recv_buffer_size: None,
        }
    }
}

impl SocketOptions {
    /// `TCP_NODELAY` (default on: missive batches its own writes, so Nagle only adds latency).
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// TCP keepalive: probes after `idle` without traffic (default 30 s; `None`: off).
    pub fn with_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// `SO_REUSEADDR` on listeners and dialing sockets (default on).
    pub fn with_reuse_address(mut self, reuse: bool) -> Self {
        self.reuse_address = reuse;
        self
    }

    /// Connections a listener's kernel queue holds before they are accepted (default 1,024;
    /// the system caps it, on Linux at `net.core.somaxconn`).
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.max(1);
        self
    }

    /// `SO_SNDBUF` in bytes (default `None`: the system's). The kernel may round it (Linux
    /// doubles it for its bookkeeping).
    pub fn with_send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer_size = bytes;
        self
    }

    /// `SO_RCVBUF` in bytes (default `None`: the system's). Set on a listener, it is set before
    /// `listen`, so accepted connections get the window scale that fits it.
    pub fn with_recv_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// The keepalive idle time, if keepalive is on.
    pub fn keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuse_address(&self) -> bool {
        self.reuse_address
    }

    /// The listen backlog.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// The `SO_SNDBUF` asked for.
    pub fn send_buffer_size(&self) -> Option<usize> {
        self.send_buffer_size
    }

    /// The `SO_RCVBUF` asked for.
    pub fn recv_buffer_size(&self) -> Option<usize> {
        self.recv_buffer_size
    }

    /// Sets the connection options (nodelay, keepalive, buffer sizes) on `stream`, such as one
    /// just accepted.
    pub fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_nodelay(self.nodelay)?;
        set_keepalive(stream, self.keepalive)?;
        let socket = socket2::SockRef::from(stream);
        if let Some(bytes) = self.send_buffer_size {
            socket.set_send_buffer_size(bytes)?;
        }
        if let Some(bytes) = self.recv_buffer_size {
            socket.set_recv_buffer_size(bytes)?;
        }
        Ok(())
    }

    /// A socket for `addr`'s family with the options that must precede `bind` or `connect`.
    fn socket_for(&self, addr: SocketAddr) -> io::Result<TcpSocket> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(self.reuse_address)?;
        if let Some(bytes) = self.send_buffer_size {
            socket.set_send_buffer_size(u32::try_from(bytes).unwrap_or(u32::MAX))?;
        }
        if let Some(bytes) = self.recv_buffer_size {
            socket.set_recv_buffer_size(u32::try_from(bytes).unwrap_or(u32::MAX))?;
        }
        Ok(socket)
    }
}

/// Binds a listener on `addr` (each resolved address in turn) with `options`: `SO_REUSEADDR`,
/// the buffer sizes and the backlog.
pub async fn bind_with(
    addr: impl ToSocketAddrs,
    options: &SocketOptions,
) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let bound = options.socket_for(addr).and_then(|socket| {
            socket.bind(addr)?;
            socket.listen(options.backlog)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// Connects to `addr` (each resolved address in turn) with `options`, giving up after `timeout`
/// with an error of kind [`io::ErrorKind::TimedOut`].
pub async fn connect_with(
    addr: impl ToSocketAddrs,
    options: &SocketOptions,
    timeout: Duration,
) -> io::Result<TcpStream> {
    super::within(timeout, connect_with_options(addr, options)).await
}

/// Connects as [`connect_with`] does, without a deadline of its own (the caller has one).
pub(crate) async fn connect_with_options(
    addr: impl ToSocketAddrs,
    options: &SocketOptions,
) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let connected = match options.socket_for(addr) {
            Ok(socket) => socket.connect(addr).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(stream) => {
                stream.set_nodelay(options.nodelay)?;
                set_keepalive(&stream, options.keepalive)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")))
}

/// Connects to `addr` (trying each resolved address in turn) and sets `TCP_NODELAY`.
pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects as [`connect`] does, giving up after `timeout` with an error of kind
/// [`io::ErrorKind::TimedOut`] (a listener whose accept queue is full drops the handshake, and
/// the system would retry for minutes).
pub async fn connect_within(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    super::within(timeout, connect(addr)).await
}

/// Sets TCP keepalive on `stream`: probes after `idle` without traffic (`None`: off). The
/// interval and number of probes are the system's.
pub fn set_keepalive(stream: &TcpStream, idle: Option<Duration>) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    match idle {
        Some(idle) => socket.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle)),
        None => socket.set_keepalive(false),
    }
}

/// Binds a listener on `addr`; port 0 picks a free port (see [`TcpListener::local_addr`]).
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts one connection from `listener` and sets `TCP_NODELAY` on it.
pub async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
