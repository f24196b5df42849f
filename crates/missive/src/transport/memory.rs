//! An in-memory, bounded, full-duplex pipe: a transport for tests and examples that needs no socket.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // Each direction buffers at most 1 KiB; a writer past that waits for the reader.
//! let (mut a, mut b) = missive::transport::memory::pair(1024);
//! a.write_all(b"ping").await?;
//! let mut buf = [0u8; 4];
//! b.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//! # Ok(())
//! # }
//! ```

use tokio::io::DuplexStream;

/// Creates a connected pair of in-memory streams.
///
/// Each direction buffers at most `max_buf_size` bytes; a writer that gets ahead of its reader waits,
/// exactly as it would on a socket whose peer stops reading. Dropping one end makes the other end read
/// EOF and fail its writes with `BrokenPipe`.
pub fn pair(max_buf_size: usize) -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(max_buf_size)
}
