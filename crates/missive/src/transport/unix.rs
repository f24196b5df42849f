//! Unix domain sockets.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use missive::transport::unix;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let path = std::env::temp_dir().join(format!("missive-doc-{}.sock", std::process::id()));
//! let _ = std::fs::remove_file(&path);
//! let listener = unix::bind(&path)?;
//! let mut client = unix::connect(&path).await?;
//! let (mut server, _) = listener.accept().await?;
//! client.write_all(b"hi").await?;
//! let mut buf = [0u8; 2];
//! server.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hi");
//! std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```

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
