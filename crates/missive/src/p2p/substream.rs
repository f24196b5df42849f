//! One stream of a connection, on whichever multiplexer the connection has: a yamux stream
//! (TCP), a native bidirectional QUIC stream, or a WebTransport stream (QUIC, behind the
//! session's stream header). Everything above sees tokio
//! `AsyncRead + AsyncWrite`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream of a connection.
#[derive(Debug)]
pub(crate) enum Substream {
    Yamux(super::mux::Stream<super::upgrade::MuxIo>),
    Quic(QuicStream),
    /// A bidirectional stream of a WebTransport session (on QUIC, behind its stream header).
    #[cfg(feature = "webtransport")]
    WebTransport(Box<super::webtransport::WebTransportStream>),
}

/// Both halves of a QUIC bidirectional stream. Dropped before it finished sending, it resets
/// its send half and stops its receive half, as a dropped yamux stream does: a peer learns
/// that the stream was abandoned, not that it ended.
#[derive(Debug)]
pub(crate) struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    finished: bool,
}

impl QuicStream {
    pub(crate) fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send,
            recv,
            finished: false,
        }
    }
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.send.reset(0u32.into());
        }
        let _ = self.recv.stop(0u32.into());
    }
}

impl AsyncRead for Substream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Yamux(s) => Pin::new(s).poll_read(cx, buf),
            Self::Quic(s) => Pin::new(&mut s.recv).poll_read(cx, buf),
            #[cfg(feature = "webtransport")]
            Self::WebTransport(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Substream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Yamux(s) => Pin::new(s).poll_write(cx, buf),
            Self::Quic(s) => Pin::new(&mut s.send)
                .poll_write(cx, buf)
                .map_err(io::Error::from),
            #[cfg(feature = "webtransport")]
            Self::WebTransport(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Yamux(s) => Pin::new(s).poll_flush(cx),
            Self::Quic(s) => Pin::new(&mut s.send).poll_flush(cx),
            #[cfg(feature = "webtransport")]
            Self::WebTransport(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Yamux(s) => Pin::new(s).poll_shutdown(cx),
            Self::Quic(s) => {
                let done = Pin::new(&mut s.send).poll_shutdown(cx);
                if let Poll::Ready(Ok(())) = done {
                    s.finished = true;
                }
                done
            }
            #[cfg(feature = "webtransport")]
            Self::WebTransport(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
