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

#[cfg(test)]
mod tests {
    use crate::test_deadline::within;
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

    use super::*;

    /// Our byte stream as the server of a WebSocket, and a raw tungstenite client to drive it.
    async fn pair() -> (WsBytes<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let config = super::super::ws_config();
        let ours = WebSocketStream::from_raw_socket(a, Role::Server, Some(config)).await;
        let theirs = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsBytes::new(ours), theirs)
    }

    #[tokio::test]
    async fn text_and_binary_messages_read_as_one_byte_stream_and_pings_are_answered() {
        within(async {
            let (mut ours, mut theirs) = pair().await;
            theirs
                .send(Message::binary(&b"hel"[..]))
                .await
                .expect("send");
            theirs
                .send(Message::Ping(Bytes::from_static(b"p")))
                .await
                .expect("ping");
            theirs.send(Message::text("lo ")).await.expect("send");
            theirs
                .send(Message::binary(&b"world"[..]))
                .await
                .expect("send");
            let mut got = [0u8; 11];
            ours.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"hello world");
            // The pong goes out with our next write.
            ours.write_all(b"x").await.expect("write");
            ours.flush().await.expect("flush");
            let mut seen = Vec::new();
            for _ in 0..2 {
                seen.push(theirs.next().await.expect("message").expect("ok"));
            }
            assert!(
                seen.contains(&Message::Pong(Bytes::from_static(b"p"))),
                "{seen:?}"
            );
            assert!(seen.contains(&Message::binary(&b"x"[..])), "{seen:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn close_with_code_1000_or_none_is_the_end_of_the_stream() {
        within(async {
            for frame in [
                None,
                Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "closed".into(),
                }),
            ] {
                let (mut ours, mut theirs) = pair().await;
                theirs
                    .send(Message::binary(&b"last"[..]))
                    .await
                    .expect("send");
                theirs.close(frame).await.expect("close");
                let mut all = Vec::new();
                ours.read_to_end(&mut all).await.expect("a clean end");
                assert_eq!(all, b"last");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn close_with_another_code_is_an_error() {
        within(async {
            let (mut ours, mut theirs) = pair().await;
            theirs
                .close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "go away".into(),
                }))
                .await
                .expect("close");
            let err = ours.read(&mut [0u8; 8]).await.expect_err("not a clean end");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            assert!(err.to_string().contains("1008"), "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn writes_are_binary_messages_of_at_most_one_frame_limit() {
        within(async {
            let (mut ours, mut theirs) = pair().await;
            let data = vec![7u8; MAX_SEND + 10];
            ours.write_all(&data).await.expect("write");
            ours.flush().await.expect("flush");
            let first = theirs.next().await.expect("message").expect("ok");
            let second = theirs.next().await.expect("message").expect("ok");
            assert!(matches!(&first, Message::Binary(b) if b.len() == MAX_SEND));
            assert!(matches!(&second, Message::Binary(b) if b.len() == 10));
        })
        .await;
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused() {
        within(async {
            let (mut ours, mut theirs) = pair().await;
            // Within the frame limit each, past the message limit together.
            use tokio_tungstenite::tungstenite::protocol::frame::{
                Frame,
                coding::{Data, OpCode},
            };
            let chunk = vec![0u8; 60 << 10];
            let frames = super::super::MAX_MESSAGE / chunk.len() + 2;
            // Sent while we read: the pipe holds less than the whole message.
            tokio::spawn(async move {
                for i in 0..frames {
                    let op = if i == 0 { Data::Binary } else { Data::Continue };
                    let frame = Frame::message(chunk.clone(), OpCode::Data(op), i + 1 == frames);
                    if theirs.send(Message::Frame(frame)).await.is_err() {
                        break;
                    }
                }
            });
            let mut sink = vec![0u8; 1 << 16];
            let err = loop {
                match ours.read(&mut sink).await {
                    Ok(0) => panic!("a clean end instead of a refusal"),
                    Ok(_) => {}
                    Err(e) => break e,
                }
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused() {
        within(async {
            let (mut ours, mut theirs) = pair().await;
            theirs
                .send(Message::binary(vec![0u8; super::super::MAX_FRAME + 1]))
                .await
                .expect("send");
            let err = ours.read(&mut [0u8; 16]).await.expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        })
        .await;
    }
}
