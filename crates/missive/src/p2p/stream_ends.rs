//! How each stream of a connection ended: told from the yamux frames the connection reads.
//!
//! yamux reads the end of a stream the same way whether the peer finished it (FIN), reset it
//! (RST) or the whole connection died under it: as a clean end of stream. A cut connection would
//! then pass for a stream that was complete, and the reader would take part of the data for all
//! of it. [`EndWatch`] sits between the connection's decrypted bytes and yamux and notes, for the
//! streams being read, which ones the peer finished or reset; a stream's reader asks at its end.
//! It only reads frame headers (12 bytes each, the data of a frame is skipped by its length) and
//! changes no byte.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How a stream ended, as far as the peer's frames tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Neither FIN nor RST has arrived.
    Open,
    /// The peer finished its side (FIN): a clean end.
    Finished,
    /// The peer reset the stream (RST).
    Reset,
}

/// The ends of the streams being watched on one connection.
#[derive(Debug, Default)]
pub(crate) struct StreamEnds {
    watched: Mutex<HashMap<u32, End>>,
}

impl StreamEnds {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, End>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts noting the end of stream `id`.
    pub(crate) fn watch(&self, id: u32) {
        self.lock().insert(id, End::Open);
    }

    /// Stops noting the end of stream `id`.
    pub(crate) fn forget(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// How stream `id` ended; `Open` for one not watched.
    pub(crate) fn end(&self, id: u32) -> End {
        self.lock().get(&id).copied().unwrap_or(End::Open)
    }

    /// The first end seen counts: a FIN followed by a RST was still a complete stream.
    fn mark(&self, id: u32, end: End) {
        if let Some(e) = self.lock().get_mut(&id)
            && *e == End::Open
        {
            *e = end;
        }
    }
}

const HEADER: usize = 12;
const TYPE_DATA: u8 = 0;
const TYPE_WINDOW_UPDATE: u8 = 1;
const FLAG_FIN: u16 = 0x4;
const FLAG_RST: u16 = 0x8;

/// Finds the yamux frame headers in a byte stream, fed in pieces of any size.
#[derive(Debug, Default)]
struct FrameScanner {
    header: [u8; HEADER],
    have: usize,
    /// Bytes of a data frame's body still to pass.
    skip: u64,
}

impl FrameScanner {
    /// Calls `on_end(stream, end)` for each header in `bytes` that carries FIN or RST.
    fn scan(&mut self, mut bytes: &[u8], mut on_end: impl FnMut(u32, End)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < HEADER {
                return;
            }
            self.have = 0;
            let h = &self.header;
            let kind = h[1];
            let flags = u16::from_be_bytes([h[2], h[3]]);
            let stream = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            if kind == TYPE_DATA {
                self.skip = u64::from(length);
            }
            if kind == TYPE_DATA || kind == TYPE_WINDOW_UPDATE {
                if flags & FLAG_RST != 0 {
                    on_end(stream, End::Reset);
                } else if flags & FLAG_FIN != 0 {
                    on_end(stream, End::Finished);
                }
            }
        }
    }
}

/// The FIN and RST headers found in `bytes` when it arrives in pieces of `piece` bytes, as
/// (stream, reset) pairs. For the fuzz target, which checks that the cut of the reads never
/// matters; not part of the API.
#[doc(hidden)]
pub fn scan_for_fuzzing(bytes: &[u8], piece: usize) -> Vec<(u32, bool)> {
    let mut scanner = FrameScanner::default();
    let mut found = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        scanner.scan(chunk, |id, end| found.push((id, end == End::Reset)));
    }
    found
}

/// The connection's byte stream under yamux, with the stream ends noted on the way in.
#[derive(Debug)]
pub(crate) struct EndWatch<T> {
    io: T,
    scanner: FrameScanner,
    ends: Arc<StreamEnds>,
}

impl<T> EndWatch<T> {
    pub(crate) fn new(io: T, ends: Arc<StreamEnds>) -> Self {
        Self {
            io,
            scanner: FrameScanner::default(),
            ends,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EndWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let ends = &this.ends;
        this.scanner
            .scan(&buf.filled()[before..], |id, end| ends.mark(id, end));
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EndWatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The error a stream's reader gets when its connection ended before the peer finished the
/// stream: the data read so far may be incomplete.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the connection closed before the peer finished the stream")]
pub(crate) struct ConnectionLost;

/// Whether `e` says that a stream's connection ended under it.
#[cfg_attr(not(feature = "request-response"), allow(dead_code))]
pub(crate) fn is_connection_lost(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ConnectionLost>())
}

/// The read result for a stream whose yamux reader reached its end, given how it ended.
pub(crate) fn end_of_stream(end: End) -> io::Result<()> {
    match end {
        End::Finished => Ok(()),
        End::Reset => Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the peer reset the stream",
        )),
        End::Open => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            ConnectionLost,
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn header(kind: u8, flags: u16, stream: u32, length: u32) -> Vec<u8> {
        let mut h = vec![0, kind];
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&stream.to_be_bytes());
        h.extend_from_slice(&length.to_be_bytes());
        h
    }

    /// A data frame whose body is made of bytes that look like a header with RST, so a scanner
    /// that did not skip bodies would see it.
    fn frame(stream: u32, flags: u16, body_len: u32) -> Vec<u8> {
        let mut f = header(TYPE_DATA, flags, stream, body_len);
        let decoy = header(TYPE_DATA, FLAG_RST, stream, 0);
        f.extend(decoy.iter().cycle().take(body_len as usize));
        f
    }

    fn scan_all(bytes: &[u8], piece: usize) -> Vec<(u32, End)> {
        let mut scanner = FrameScanner::default();
        let mut seen = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            scanner.scan(chunk, |id, end| seen.push((id, end)));
        }
        seen
    }

    #[test]
    fn fin_and_rst_are_found_and_bodies_are_skipped() {
        let mut wire = frame(1, 0, 40);
        wire.extend(frame(1, FLAG_FIN, 5));
        wire.extend(header(2, 0x1, 0, 7)); // a ping: its length is not a body
        wire.extend(header(TYPE_WINDOW_UPDATE, FLAG_RST, 3, 1024));
        wire.extend(frame(5, FLAG_FIN | FLAG_RST, 0));
        assert_eq!(
            scan_all(&wire, usize::MAX),
            [(1, End::Finished), (3, End::Reset), (5, End::Reset)]
        );
    }

    #[test]
    fn only_watched_streams_are_noted_and_the_first_end_counts() {
        let ends = StreamEnds::default();
        ends.watch(1);
        ends.mark(1, End::Finished);
        ends.mark(1, End::Reset);
        ends.mark(2, End::Reset);
        assert_eq!(ends.end(1), End::Finished);
        assert_eq!(ends.end(2), End::Open);
        ends.forget(1);
        assert!(ends.lock().is_empty());
    }

    #[test]
    fn end_of_stream_is_clean_only_after_a_fin() {
        assert!(end_of_stream(End::Finished).is_ok());
        let reset = end_of_stream(End::Reset).expect_err("reset");
        assert_eq!(reset.kind(), io::ErrorKind::ConnectionReset);
        let lost = end_of_stream(End::Open).expect_err("lost");
        assert!(is_connection_lost(&lost));
    }

    proptest! {
        /// However the bytes are cut into reads, the same ends are found.
        #[test]
        fn the_ends_found_do_not_depend_on_how_reads_cut_the_bytes(
            frames in prop::collection::vec((1u32..6, 0u16..16, 0u32..300), 0..40),
            piece in 1usize..64,
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (stream, flags, len) in frames {
                wire.extend(frame(stream, flags, len));
                if flags & FLAG_RST != 0 {
                    expected.push((stream, End::Reset));
                } else if flags & FLAG_FIN != 0 {
                    expected.push((stream, End::Finished));
                }
            }
            prop_assert_eq!(scan_all(&wire, piece), expected.clone());
            prop_assert_eq!(scan_all(&wire, usize::MAX), expected);
        }
    }
}
