//! Unix domain sockets.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

/// Connects to the Unix socket at `path`.
pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
    UnixStream::connect(path).await
}

/// Connects as [`connect`] does, giving up after `timeout` with an error of kind
/// [`io::ErrorKind::TimedOut`].
pub async fn connect_within(path: impl AsRef<Path>, timeout: Duration) -> io::Result<UnixStream> {
    super::within(timeout, connect(path)).await
}

/// Binds a listener at `path`. The path must not exist yet; remove a stale socket file first.
pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
    UnixListener::bind(path)
}
