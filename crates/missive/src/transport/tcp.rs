//! TCP: connections with `TCP_NODELAY` set, because every missive protocol writes whole messages and
//! batches them itself; Nagle's algorithm would only add latency.
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
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

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

/// What servers do with every accepted connection: `TCP_NODELAY`, and keepalive after `idle`.
#[cfg(any(feature = "queue", feature = "rpc"))]
pub(crate) fn prepare_accepted(stream: &TcpStream, keepalive: Option<Duration>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    set_keepalive(stream, keepalive)
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
