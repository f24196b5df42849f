//! The receiving half of a queue connection.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_core::Stream;
use tokio::io::AsyncRead;
use tokio::time::{Instant, Sleep};

use super::config::QueueConfig;
use super::datagram::{Datagram, Decoder, FrameError};
use crate::transport::Address;

/// Why receiving failed. After any of these the reader is finished and yields `None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The peer sent a frame that breaks the format or a limit.
    #[error("peer sent an invalid frame: {0}")]
    Frame(#[from] FrameError),
    /// The stream ended in the middle of a frame: the peer closed or crashed while sending. A clean
    /// close at a frame boundary is not an error; the reader just ends.
    #[error("connection closed in the middle of a frame ({buffered} bytes of it received)")]
    Truncated {
        /// How many bytes of the incomplete frame had arrived.
        buffered: usize,
    },
    /// Reading from the transport failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// Nothing arrived for the idle timeout (`QueueConfig::with_idle_timeout`): drop the
    /// connection.
    #[error("nothing received for {0:?}")]
    Idle(std::time::Duration),
}

/// Receives datagrams in the order they were sent: a [`Stream`] of `Result<Datagram, RecvError>`.
///
/// Each read from the transport decodes every complete frame it holds, and payloads are slices of the
/// read buffer, not copies.
///
/// # Cancel safety
/// `next()` is cancel safe: a datagram is only taken from the buffer when it is returned.
pub struct Reader {
    io: Pin<Box<dyn AsyncRead + Send>>,
    buf: BytesMut,
    decoder: Decoder,
    read_chunk: usize,
    finished: bool,
    idle: Option<Idle>,
    local: Address,
    peer: Address,
    #[cfg(feature = "metrics")]
    counts: ReadCounts,
}

/// The idle timeout: when the last bytes arrived, and a timer that fires no earlier than the
/// timeout after that (reset only when it fires early, not at every read).
struct Idle {
    timeout: Duration,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    /// Whether the connection has been idle for the timeout (registers for a wake-up if not).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.last_read + self.timeout;
        while self.timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
        false
    }
}

impl Reader {
    pub(crate) fn new(
        io: Pin<Box<dyn AsyncRead + Send>>,
        config: &QueueConfig,
        local: Address,
        peer: Address,
    ) -> Self {
        Reader {
            io,
            buf: BytesMut::with_capacity(config.read_chunk),
            decoder: Decoder::new(config.max_frame_len).with_any_version(config.any_version),
            read_chunk: config.read_chunk,
            finished: false,
            idle: config.idle_timeout.map(|timeout| Idle {
                timeout,
                last_read: Instant::now(),
                timer: Box::pin(tokio::time::sleep(timeout)),
            }),
            local,
            peer,
            #[cfg(feature = "metrics")]
            counts: ReadCounts::new(&config.metrics),
        }
    }

    /// Receives the next datagram; `None` once the peer has closed cleanly or after an error.
    pub async fn recv(&mut self) -> Option<Result<Datagram, RecvError>> {
        futures_util::StreamExt::next(self).await
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &Address {
        &self.peer
    }

    /// The connection is closing: what ends the reader now is nobody's error to count.
    #[cfg(feature = "metrics")]
    pub(crate) fn closing(&mut self) {
        self.counts.closing = true;
    }

    fn finish(&mut self, error: RecvError) -> Poll<Option<Result<Datagram, RecvError>>> {
        #[cfg(feature = "metrics")]
        self.counts.end(Some(match &error {
            RecvError::Frame(_) => "frame",
            RecvError::Truncated { .. } => "truncated",
            RecvError::Io(_) => "io",
            RecvError::Idle(_) => "idle",
        }));
        self.finished = true;
        self.buf = BytesMut::new();
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Reader {
    type Item = Result<Datagram, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match this.decoder.decode(&mut this.buf) {
                Ok(Some(datagram)) => {
                    #[cfg(feature = "metrics")]
                    {
                        this.counts.add(datagram.frame_len());
                        if !holds_frame(&this.buf) {
                            this.counts.flush();
                        }
                    }
                    return Poll::Ready(Some(Ok(datagram)));
                }
                Ok(None) => {}
                Err(e) => return this.finish(e.into()),
            }
            #[cfg(feature = "metrics")]
            this.counts.flush();
            if this.buf.capacity() - this.buf.len() < this.read_chunk / 4 {
                this.buf.reserve(this.read_chunk);
            }
            let read = match tokio_util::io::poll_read_buf(this.io.as_mut(), cx, &mut this.buf) {
                Poll::Ready(read) => read,
                Poll::Pending => {
                    if let Some(idle) = &mut this.idle
                        && idle.poll_expired(cx)
                    {
                        let timeout = idle.timeout;
                        return this.finish(RecvError::Idle(timeout));
                    }
                    return Poll::Pending;
                }
            };
            if let (Ok(n), Some(idle)) = (&read, &mut this.idle)
                && *n > 0
            {
                idle.last_read = Instant::now();
            }
            match read {
                Ok(0) if this.buf.is_empty() => {
                    #[cfg(feature = "metrics")]
                    this.counts.end(None);
                    this.finished = true;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let buffered = this.buf.len();
                    return this.finish(RecvError::Truncated { buffered });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return this.finish(e.into()),
            }
        }
    }
}

/// Whether `buf` holds one more complete frame: while it does, the counts can wait for the
/// next read; when it does not, the caller may not poll again for a while.
#[cfg(feature = "metrics")]
fn holds_frame(buf: &[u8]) -> bool {
    match buf.first_chunk::<4>() {
        Some(size) => buf.len() - 4 >= u32::from_be_bytes(*size) as usize,
        None => false,
    }
}

/// What a reader received since it last added to the shared counters: they are added to once
/// per read system call, not once per datagram.
#[cfg(feature = "metrics")]
struct ReadCounts {
    handles: std::sync::Arc<crate::metrics::queue::QueueHandles>,
    datagrams: u64,
    bytes: u64,
    open: bool,
    /// Errors end a closing connection's linger read, which nobody sees: not counted.
    closing: bool,
}

#[cfg(feature = "metrics")]
impl ReadCounts {
    fn new(metrics: &crate::metrics::QueueMetrics) -> Self {
        metrics.inner.open.inc();
        ReadCounts {
            handles: metrics.inner.clone(),
            datagrams: 0,
            bytes: 0,
            open: true,
            closing: false,
        }
    }

    fn add(&mut self, frame_len: usize) {
        self.datagrams += 1;
        self.bytes += frame_len as u64;
    }

    fn flush(&mut self) {
        if self.datagrams > 0 {
            self.handles.datagrams_in.inc_by(self.datagrams);
            self.handles.bytes_in.inc_by(self.bytes);
            self.datagrams = 0;
            self.bytes = 0;
        }
    }

    /// The reader ended, with an error of `kind` or cleanly.
    fn end(&mut self, kind: Option<&'static str>) {
        self.flush();
        if std::mem::take(&mut self.open) {
            self.handles.open.dec();
            if let Some(kind) = kind.filter(|_| !self.closing) {
                self.handles.receive_error(kind);
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for ReadCounts {
    fn drop(&mut self) {
        self.end(None);
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("buffered", &self.buf.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
