//! A byte stream over a WebSocket message stream: what the libp2p stack above (multistream-select,
//! Noise or TLS, yamux) reads and writes, as it would a TCP socket.
//!
//! Message boundaries carry no meaning (libp2p WebSocket spec): every write goes out as one or more
//! binary messages, text messages are read as their bytes, pings are answered by tungstenite, and
//! a close with code 1000 (normal) or none (1005) reads as the end of the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, Bytes};
use futures_util::{Sink as _, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The largest payload of one message we send: the frame limit our listeners and dialers
/// enforce (`MAX_FRAME`), so that a missive peer never refuses a missive frame.
pub(crate) const MAX_SEND: usize = super::MAX_FRAME;

/// Reads and writes the payloads of binary messages as one byte stream. At most one received
/// message is held (≤ [`super::MAX_MESSAGE`]), on top of tungstenite's bounded buffers.
#[derive(Debug)]
pub(crate) struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last message received.
    read: Bytes,
    /// The peer closed normally: every later read is the end of the stream.
    ended: bool,
}

impl<S> WsBytes<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            read: Bytes::new(),
            ended: false,
        }
    }

    /// The transport under the WebSocket.
    pub(crate) fn get_ref(&self) -> &S
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.ws.get_ref()
    }
}

/// An i/o error for a WebSocket error; the socket's own error when there is one.
pub(crate) fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed")
        }
        WsError::Capacity(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "websocket ended without a close frame",
        ),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.ended || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    this.ended = true;
                }
                Some(Ok(Message::Binary(b))) => this.read = b,
                Some(Ok(Message::Text(t))) => this.read = Bytes::from(t),
                // tungstenite queues the pong itself; a frame is never yielded on read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => match frame {
                    None => this.ended = true,
                    Some(f) if f.code == CloseCode::Normal || f.code == CloseCode::Status => {
                        this.ended = true;
                    }
                    Some(f) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!(
                                "websocket closed with code {}: {}",
                                u16::from(f.code),
                                f.reason
                            ),
                        )));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_SEND);
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One message for as many slices as fit: a yamux header and its body go out together.
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        let mut payload = Vec::with_capacity(total.min(MAX_SEND));
        for b in bufs {
            let room = MAX_SEND - payload.len();
            payload.extend_from_slice(&b[..b.len().min(room)]);
            if payload.len() == MAX_SEND {
                break;
            }
        }
        let n = payload.len();
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::from(payload)))
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
