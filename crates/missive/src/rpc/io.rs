//! Buffered socket I/O shared by the client and server drivers: one vectored write per wake-up,
//! every complete frame decoded per read.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{DecodeError, EncodeError, Encoder, MAX_PREFIX_LEN};

/// Messages up to this size are copied into one contiguous staging buffer (cheaper than one
/// I/O slice each); larger ones are written from the encoder's buffer without a copy.
const COALESCE_BELOW: usize = 4 * 1024;
/// I/O slices handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Free space kept in the read buffer before a read.
const READ_RESERVE: usize = 16 * 1024;

enum Chunk<S> {
    Staged(Bytes),
    Owned(S),
}

impl<S: Buf> Chunk<S> {
    fn buf(&self) -> &dyn Buf {
        match self {
            Self::Staged(b) => b,
            Self::Owned(s) => s,
        }
    }
}

/// Encoded frames waiting for the socket, in order.
pub(crate) struct WriteQueue<S> {
    chunks: VecDeque<Chunk<S>>,
    staging: BytesMut,
    queued: usize,
    flushed: bool,
}

impl<S> std::fmt::Debug for WriteQueue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue")
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

impl<S: Buf> WriteQueue<S> {
    pub(crate) fn new() -> Self {
        Self {
            chunks: VecDeque::new(),
            staging: BytesMut::with_capacity(16 * 1024),
            queued: 0,
            flushed: true,
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Encodes one message and queues it (small frames straight into the staging buffer).
    ///
    /// # Errors
    /// The encoder's error; nothing is queued then.
    pub(crate) fn encode<E: Encoder<Serialized = S>>(
        &mut self,
        message: E::Message,
        encoder: &mut E,
    ) -> Result<(), EncodeError> {
        let before = self.staging.len();
        match encoder.encode_into(message, &mut self.staging, COALESCE_BELOW) {
            Ok(None) => {
                let n = self.staging.len() - before;
                self.queued += n;
                self.flushed = self.flushed && n == 0;
                Ok(())
            }
            Ok(Some(frame)) => {
                self.staging.truncate(before);
                self.push(frame, encoder);
                Ok(())
            }
            Err(e) => {
                self.staging.truncate(before);
                Err(e)
            }
        }
    }

    /// Queues one encoded frame.
    pub(crate) fn push<E: Encoder<Serialized = S>>(&mut self, mut frame: S, encoder: &mut E) {
        let n = frame.remaining();
        if n == 0 {
            encoder.return_buffer(frame);
            return;
        }
        self.queued += n;
        self.flushed = false;
        if n < COALESCE_BELOW {
            self.staging.put(&mut frame);
            encoder.return_buffer(frame);
        } else {
            if !self.staging.is_empty() {
                self.chunks
                    .push_back(Chunk::Staged(self.staging.split().freeze()));
            }
            self.chunks.push_back(Chunk::Owned(frame));
        }
    }

    /// Writes as much as the socket takes, then flushes. `Ready(Ok(()))` when everything is
    /// written and flushed.
    pub(crate) fn poll_write<T, E>(
        &mut self,
        io: &mut T,
        encoder: &mut E,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin,
        E: Encoder<Serialized = S>,
    {
        while self.queued > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            for chunk in &self.chunks {
                if n == MAX_SLICES {
                    break;
                }
                n += chunk.buf().chunks_vectored(&mut slices[n..]);
            }
            if n < MAX_SLICES && !self.staging.is_empty() {
                slices[n] = IoSlice::new(&self.staging);
                n += 1;
            }
            let written = if n == 1 {
                std::task::ready!(Pin::new(&mut *io).poll_write(cx, &slices[0]))?
            } else {
                std::task::ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written, encoder);
        }
        if !self.flushed {
            std::task::ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.flushed = true;
        }
        Poll::Ready(Ok(()))
    }

    fn advance<E: Encoder<Serialized = S>>(&mut self, mut written: usize, encoder: &mut E) {
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.staging.advance(written);
                return;
            };
            let rem = front.buf().remaining();
            if written < rem {
                match front {
                    Chunk::Staged(b) => b.advance(written),
                    Chunk::Owned(s) => s.advance(written),
                }
                return;
            }
            written -= rem;
            if let Some(Chunk::Owned(mut s)) = self.chunks.pop_front() {
                s.advance(rem);
                encoder.return_buffer(s);
            }
        }
    }
}

/// After the decoder found no complete frame in `buffer`: the peer may not make the connection
/// hold more than one frame of the largest size.
///
/// # Errors
/// [`DecodeError::Unframed`] when `buffer` holds more than `max_message_size` plus the prefix.
pub(crate) fn check_unframed(
    buffer: &BytesMut,
    max_message_size: usize,
) -> Result<(), DecodeError> {
    let max = max_message_size.saturating_add(MAX_PREFIX_LEN);
    if buffer.len() > max {
        return Err(DecodeError::Unframed {
            buffered: buffer.len(),
            max,
        });
    }
    Ok(())
}

/// Reads once into `buffer`; `Ready(Ok(0))` is end of stream.
pub(crate) fn poll_read_into<T: AsyncRead + Unpin>(
    io: &mut T,
    buffer: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buffer.capacity() - buffer.len() < READ_RESERVE / 4 {
        buffer.reserve(READ_RESERVE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_deadline::within;

    struct Raw;
    impl Encoder for Raw {
        type Message = Vec<u8>;
        type Serialized = Bytes;
        fn encode(&mut self, m: Vec<u8>) -> Result<Bytes, EncodeError> {
            Ok(m.into())
        }
    }

    #[tokio::test]
    async fn write_queue_keeps_order_of_small_and_large_frames() {
        within(async {
            let (mut a, mut b) = tokio::io::duplex(1 << 20);
            let mut q = WriteQueue::new();
            let mut enc = Raw;
            let mut expected = Vec::new();
            for i in 0..50u32 {
                let len = if i % 7 == 0 { 10_000 } else { 10 + i as usize };
                let frame: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                expected.extend_from_slice(&frame);
                q.push(Bytes::from(frame), &mut enc);
            }
            std::future::poll_fn(|cx| q.poll_write(&mut a, &mut enc, cx))
                .await
                .expect("write");
            assert!(q.is_empty());
            drop(a);
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .expect("read");
            assert_eq!(got, expected);
        })
        .await;
    }
}
