//! An in-memory, bounded, full-duplex pipe: a transport for tests and examples that needs no socket.

use tokio::io::DuplexStream;

/// Creates a connected pair of in-memory streams.
///
/// Each direction buffers at most `max_buf_size` bytes; a writer that gets ahead of its reader waits,
/// exactly as it would on a socket whose peer stops reading. Dropping one end makes the other end read
/// EOF and fail its writes with `BrokenPipe`.
pub fn pair(max_buf_size: usize) -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(max_buf_size)
}
