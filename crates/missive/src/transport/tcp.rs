//! TCP: connections with `TCP_NODELAY` set, because every missive protocol writes whole messages and
//! batches them itself; Nagle's algorithm would only add latency.

use std::io;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

/// Connects to `addr` (trying each resolved address in turn) and sets `TCP_NODELAY`.
pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
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
