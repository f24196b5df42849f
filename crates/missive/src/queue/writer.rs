//! The sending half of a queue connection.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_sink::Sink;
use tokio::io::AsyncWrite;

use super::config::QueueConfig;
use super::datagram::{Datagram, HEADER_LEN, VERSION, frame_header};
use crate::transport::Address;

/// Payloads at least this long are queued by reference and written vectored instead of copied into
/// the write buffer.
const COPY_THRESHOLD: usize = 4 * 1024;

/// At most this many buffers go into one vectored write.
const MAX_IOVECS: usize = 64;

/// Why a datagram could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The datagram is larger than the frame limit (`QueueConfig::with_max_frame_len`); it was not
    /// queued.
    #[error("datagram of {len} bytes exceeds the frame limit of {limit} bytes")]
    TooLarge {
        /// The payload length.
        len: usize,
        /// The largest payload allowed.
        limit: usize,
    },
    /// The payload is empty and empty payloads are not enabled (`QueueConfig::with_empty_payloads`).
    #[error("empty payloads are not enabled for this connection")]
    EmptyPayload,
    /// The writer was closed by [`Writer::close`].
    #[error("the writer is closed")]
    Closed,
    /// Writing to the transport failed; datagrams still queued were not delivered and the writer is
    /// unusable.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
}

/// Sends datagrams in order: a [`Sink<Datagram>`] plus `send`, `feed`, `flush` and `close` methods.
///
/// Datagrams are encoded into one reusable buffer (large payloads are referenced, not copied) and
/// written with as few system calls as possible. [`Writer::send`] returns once its datagram has been
/// handed to the transport; [`Writer::feed`] only queues it, waiting while the send buffer is full,
/// which is how a fast producer is held back by a slow peer.
///
/// # Cancel safety
/// `feed` and `send` are cancel safe before the datagram is queued: if the future is dropped while it
/// waits for buffer space, the datagram was not queued. Once queued, a datagram stays queued; a later
/// `flush`, `send` or `close` writes it.
pub struct Writer {
    io: Pin<Box<dyn AsyncWrite + Send>>,
    /// Headers and small payloads, in order after everything in `chunks`.
    staging: BytesMut,
    /// Frozen parts of the stream that precede `staging`: earlier staging and large payloads.
    chunks: VecDeque<Bytes>,
    queued: usize,
    send_buffer: usize,
    max_payload: usize,
    empty_payloads: bool,
    state: State,
    local: Address,
    peer: Address,
    #[cfg(feature = "metrics")]
    counts: WriteCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Failed,
}

impl Writer {
    pub(crate) fn new(
        io: Pin<Box<dyn AsyncWrite + Send>>,
        config: &QueueConfig,
        local: Address,
        peer: Address,
    ) -> Self {
        Writer {
            io,
            staging: BytesMut::with_capacity(config.send_buffer.min(64 * 1024)),
            chunks: VecDeque::new(),
            queued: 0,
            send_buffer: config.send_buffer,
            max_payload: config.max_frame_len.saturating_sub(4),
            empty_payloads: config.empty_payloads,
            state: State::Open,
            local,
            peer,
            #[cfg(feature = "metrics")]
            counts: WriteCounts {
                handles: config.metrics.inner.clone(),
                datagrams: 0,
                bytes: 0,
                waiting: false,
            },
        }
    }

    /// Queues a datagram of `tag` (version [`VERSION`](super::datagram::VERSION)) whose payload is copied
    /// from `payload`, waiting while the send buffer is full, as [`Writer::feed`] does: no
    /// [`Datagram`] and no `Bytes` is made for it, so a producer that keeps its payloads in a
    /// buffer of its own pays one copy and no allocation per datagram.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// use missive::queue::{Connection, QueueConfig};
    ///
    /// let (a, b) = missive::transport::memory::pair(64 * 1024);
    /// let (mut a, mut b) = (Connection::new(a, QueueConfig::default()), Connection::new(b, QueueConfig::default()));
    /// let mut scratch = Vec::new();
    /// for i in 0..3u8 {
    ///     scratch.clear();
    ///     scratch.extend_from_slice(&[i; 16]);
    ///     a.writer().feed_slice(7, &scratch).await?;
    /// }
    /// a.writer().flush().await?;
    /// let third = b.reader().nth(2).await.expect("a datagram")?;
    /// assert_eq!((third.tag(), &third.payload()[..]), (7, &[2u8; 16][..]));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Writer::feed`]: [`SendError::TooLarge`], [`SendError::EmptyPayload`], a closed or
    /// failed writer.
    ///
    /// # Cancel safety
    /// As [`Writer::feed`]: dropped while it waits for room, nothing was queued.
    pub async fn feed_slice(&mut self, tag: u16, payload: &[u8]) -> Result<(), SendError> {
        self.check_payload(payload.len())?;
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_ready(cx)).await?;
        let header = frame_header(VERSION, tag, payload.len());
        let frame_len = HEADER_LEN + payload.len();
        self.queued += frame_len;
        #[cfg(feature = "metrics")]
        {
            self.counts.datagrams += 1;
            self.counts.bytes += frame_len as u64;
        }
        self.staging.reserve(frame_len);
        self.staging.extend_from_slice(&header);
        self.staging.extend_from_slice(payload);
        Ok(())
    }

    /// Queues `datagram` and writes everything queued to the transport.
    pub async fn send(&mut self, datagram: Datagram) -> Result<(), SendError> {
        futures_util::SinkExt::send(self, datagram).await
    }

    /// Queues `datagram`, waiting only while the send buffer is full. Call [`Writer::flush`] (or
    /// `send`, or `close`) to make sure it is written.
    pub async fn feed(&mut self, datagram: Datagram) -> Result<(), SendError> {
        futures_util::SinkExt::feed(self, datagram).await
    }

    /// Writes everything queued to the transport.
    pub async fn flush(&mut self) -> Result<(), SendError> {
        futures_util::SinkExt::flush(self).await
    }

    /// Writes everything queued, then shuts down the write side (for TLS, after a `close_notify`). The
    /// peer's reader ends cleanly after the last datagram.
    pub async fn close(&mut self) -> Result<(), SendError> {
        futures_util::SinkExt::close(self).await
    }

    /// Bytes queued but not yet handed to the transport.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &Address {
        &self.peer
    }

    /// Refuses a payload of `len` bytes that the peer must not receive (too large, or empty
    /// unless allowed), and a writer that is not open.
    fn check_payload(&self, len: usize) -> Result<(), SendError> {
        self.check_open()?;
        if len > self.max_payload {
            return Err(SendError::TooLarge {
                len,
                limit: self.max_payload,
            });
        }
        if len == 0 && !self.empty_payloads {
            return Err(SendError::EmptyPayload);
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Closed => Err(SendError::Closed),
            State::Failed => Err(SendError::Io(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn enqueue(&mut self, datagram: Datagram) {
        let frame_len = datagram.frame_len();
        self.queued += frame_len;
        #[cfg(feature = "metrics")]
        {
            self.counts.datagrams += 1;
            self.counts.bytes += frame_len as u64;
        }
        let header = datagram.header();
        let payload = datagram.into_payload();
        if payload.len() < COPY_THRESHOLD {
            // One reservation for the frame, so that the two copies only check it.
            self.staging.reserve(frame_len);
            self.staging.extend_from_slice(&header);
            self.staging.extend_from_slice(&payload);
        } else {
            self.staging.extend_from_slice(&header);
            self.chunks.push_back(self.staging.split().freeze());
            self.chunks.push_back(payload);
        }
    }

    /// Performs one write of queued bytes.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        #[cfg(feature = "metrics")]
        self.counts.flush();
        let result = if self.chunks.is_empty() {
            ready!(self.io.as_mut().poll_write(cx, &self.staging))
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for chunk in self.chunks.iter().take(MAX_IOVECS - 1) {
                slices[n] = IoSlice::new(chunk);
                n += 1;
            }
            // The staging buffer follows every chunk, so it goes in only when they all did.
            if self.chunks.len() == n {
                slices[n] = IoSlice::new(&self.staging);
                n += 1;
            }
            ready!(self.io.as_mut().poll_write_vectored(cx, &slices[..n]))
        };
        match result {
            Ok(0) => {
                self.state = State::Failed;
                Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())))
            }
            Ok(written) => {
                self.advance(written);
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Poll::Ready(Ok(())),
            Err(e) => {
                self.state = State::Failed;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.staging.advance(written);
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.chunks.pop_front();
        }
    }
}

impl Sink<Datagram> for Writer {
    type Error = SendError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.check_open()?;
        while self.queued >= self.send_buffer {
            let written = self.poll_write_some(cx);
            #[cfg(feature = "metrics")]
            self.counts.note_wait(written.is_pending());
            ready!(written)?;
        }
        #[cfg(feature = "metrics")]
        self.counts.note_wait(false);
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, datagram: Datagram) -> Result<(), SendError> {
        self.check_payload(datagram.payload().len())?;
        self.enqueue(datagram);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        if self.state == State::Failed {
            self.check_open()?;
        }
        while self.queued > 0 {
            ready!(self.poll_write_some(cx))?;
        }
        if self.state == State::Closed {
            return Poll::Ready(Ok(()));
        }
        ready!(self.io.as_mut().poll_flush(cx)).map_err(|e| {
            self.state = State::Failed;
            SendError::Io(e)
        })?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        if self.state == State::Closed {
            return Poll::Ready(Ok(()));
        }
        ready!(self.as_mut().poll_flush(cx))?;
        let result = ready!(self.io.as_mut().poll_shutdown(cx));
        self.state = State::Closed;
        match result {
            Ok(()) => Poll::Ready(Ok(())),
            // The peer may already be gone; everything was written, so closing succeeded.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

/// What a writer queued since it last added to the shared counters (once per write system
/// call), and whether a caller is waiting for the send buffer to drain.
#[cfg(feature = "metrics")]
struct WriteCounts {
    handles: std::sync::Arc<crate::metrics::queue::QueueHandles>,
    datagrams: u64,
    bytes: u64,
    waiting: bool,
}

#[cfg(feature = "metrics")]
impl WriteCounts {
    fn flush(&mut self) {
        if self.datagrams > 0 {
            self.handles.datagrams_out.inc_by(self.datagrams);
            self.handles.bytes_out.inc_by(self.bytes);
            self.datagrams = 0;
            self.bytes = 0;
        }
    }

    /// Counts a wait once, when it starts.
    fn note_wait(&mut self, waiting: bool) {
        if waiting && !self.waiting {
            self.handles.backpressure_waits.inc();
        }
        self.waiting = waiting;
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("queued", &self.queued)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
