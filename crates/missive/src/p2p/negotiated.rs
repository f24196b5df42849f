//! Async drivers for the multistream-select machines, and [`Negotiated`], the byte stream that
//! results: it first yields bytes that arrived with the negotiation and, after a lazy (0-RTT)
//! selection, checks the listener's answer on the first read.
//!
//! Negotiation messages that need no answer before the stream is used wait in [`Negotiated`] and
//! go out with the first write (or flush, shutdown or read), so that they share one frame with
//! the protocol's first data: a lazy dialer's header and proposal travel with its first message,
//! and a listener whose dialer already sent data answers together with its first reply.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use super::negotiate::{
    DialerProgress, DialerSelect, ListenerProgress, ListenerSelect, NegotiationError, Version,
};

/// Bytes read per step while negotiating.
const READ_CHUNK: usize = 1024;

/// Why a negotiation over a byte stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// The peer broke the protocol, or none of the protocols is supported.
    #[error(transparent)]
    Protocol(#[from] NegotiationError),
    /// The stream failed or closed during the negotiation.
    #[error("i/o during protocol negotiation: {0}")]
    Io(#[from] io::Error),
}

/// Negotiates as the dialer, proposing `protocols` in order. With [`Version::V1Lazy`] and one
/// protocol it returns at once and the answer is checked on the first read of the result.
pub(crate) async fn dialer_select<T, I, S>(
    mut io: T,
    protocols: I,
    version: Version,
) -> Result<(String, Negotiated<T>), NegotiateError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut m = DialerSelect::new(protocols, version)?;
    let mut buf = [0u8; READ_CHUNK];
    loop {
        match m.poll()? {
            DialerProgress::Optimistic(p) => {
                // The header and the proposal go out with the first data.
                let out = m.take_transmit().unwrap_or_default();
                return Ok((p, Negotiated::pending(io, m, out)));
            }
            DialerProgress::Selected {
                protocol,
                remaining,
            } => {
                return Ok((protocol, Negotiated::ready(io, remaining, Vec::new())));
            }
            DialerProgress::NeedInput => {
                if let Some(out) = m.take_transmit() {
                    io.write_all(&out).await?;
                    io.flush().await?;
                }
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    return Err(NegotiateError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                m.input(&buf[..n]);
            }
        }
    }
}

/// Negotiates as the listener; `supported` decides each proposal.
pub(crate) async fn listener_select<T>(
    mut io: T,
    mut supported: impl FnMut(&str) -> bool,
) -> Result<(String, Negotiated<T>), NegotiateError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut m = ListenerSelect::new();
    let mut buf = [0u8; READ_CHUNK];
    loop {
        let progress = match m.poll() {
            Ok(progress) => progress,
            Err(e) => {
                // A lazy dialer's data after a refused proposal reads as a broken message: the
                // refusal (`na`) still goes out first, so the dialer learns why.
                if let Some(out) = m.take_transmit() {
                    let _ = io.write_all(&out).await;
                    let _ = io.flush().await;
                }
                return Err(e.into());
            }
        };
        match progress {
            ListenerProgress::Proposed(p) => {
                if supported(&p) {
                    let (p, remaining) = m.accept()?;
                    let out = m.take_transmit().unwrap_or_default();
                    if remaining.is_empty() {
                        // The dialer may wait for the answer before it sends anything.
                        if !out.is_empty() {
                            io.write_all(&out).await?;
                            io.flush().await?;
                        }
                        return Ok((p, Negotiated::ready(io, remaining, Vec::new())));
                    }
                    // A lazy dialer already sent data: it checks the answer only when it
                    // reads, so the answer can go out with the first reply.
                    return Ok((p, Negotiated::ready(io, remaining, out)));
                }
                m.reject()?;
            }
            ListenerProgress::NeedInput => {
                if let Some(out) = m.take_transmit() {
                    io.write_all(&out).await?;
                    io.flush().await?;
                }
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    return Err(NegotiateError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                m.input(&buf[..n]);
            }
        }
    }
}

/// Most bytes a [`Negotiated`] holds in its write buffer, negotiation messages included: the
/// part of a first write beyond it goes out in a frame of its own.
const COALESCE_LIMIT: usize = 16 * 1024;

/// A byte stream after protocol negotiation.
#[derive(Debug)]
pub(crate) struct Negotiated<T> {
    io: T,
    prefix: Vec<u8>,
    prefix_pos: usize,
    lazy: Option<Box<DialerSelect>>,
    /// Negotiation messages, and the first data written with them, not yet handed to `io`:
    /// `out[out_pos..]` is unsent.
    out: Vec<u8>,
    out_pos: usize,
    /// `out` was handed to `io` but `io` was not flushed since.
    flush_owed: bool,
}

impl<T> Negotiated<T> {
    fn ready(io: T, prefix: Vec<u8>, out: Vec<u8>) -> Self {
        Self {
            io,
            prefix,
            prefix_pos: 0,
            lazy: None,
            out,
            out_pos: 0,
            flush_owed: false,
        }
    }

    fn pending(io: T, m: DialerSelect, out: Vec<u8>) -> Self {
        Self {
            lazy: Some(Box::new(m)),
            ..Self::ready(io, Vec::new(), out)
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Negotiated<T> {
    /// Hands the buffered negotiation messages (and data written with them) to `io`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
            self.flush_owed = true;
        }
        if !self.out.is_empty() {
            self.out = Vec::new();
            self.out_pos = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends the buffered negotiation messages and flushes them.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        if self.flush_owed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.flush_owed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads the listener's answer to a lazy proposal until it is confirmed or refused.
    fn poll_confirm(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(m) = self.lazy.as_mut() {
            match m.poll() {
                Ok(DialerProgress::Selected { remaining, .. }) => {
                    self.prefix = remaining;
                    self.prefix_pos = 0;
                    self.lazy = None;
                }
                Ok(DialerProgress::NeedInput | DialerProgress::Optimistic(_)) => {
                    let mut chunk = [0u8; READ_CHUNK];
                    let mut rb = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
                    if rb.filled().is_empty() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            NotConfirmed,
                        )));
                    }
                    m.input(rb.filled());
                }
                Err(NegotiationError::Unsupported) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        ProtocolRefused,
                    )));
                }
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Negotiated<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The peer may wait for what is buffered before it says anything.
        if (!this.out.is_empty() || this.flush_owed)
            && let Err(e) = ready!(this.poll_send_buffered(cx))
        {
            // The peer stopped reading (a one-way sender that finished and left): what it
            // sent can still be read. The answer is dropped; later writes meet the error.
            tracing::trace!(error = %e, "negotiation answer not sent; reading on");
            this.out = Vec::new();
            this.out_pos = 0;
            this.flush_owed = false;
        }
        if this.lazy.is_some() {
            ready!(this.poll_confirm(cx))?;
        }
        if this.prefix_pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.prefix_pos);
            buf.put_slice(&this.prefix[this.prefix_pos..this.prefix_pos + n]);
            this.prefix_pos += n;
            if this.prefix_pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.prefix_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Negotiated<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.is_empty() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
            return Poll::Ready(Ok(n));
        }
        // Take (the start of) the first data into the buffer so that it leaves in the same
        // write as the negotiation messages.
        let taken = if this.out_pos == 0 {
            let n = buf.len().min(COALESCE_LIMIT.saturating_sub(this.out.len()));
            this.out.extend_from_slice(&buf[..n]);
            n
        } else {
            0
        };
        match this.poll_drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ if taken > 0 || buf.is_empty() => Poll::Ready(Ok(taken)),
            Poll::Ready(Ok(())) => {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.is_empty() {
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
            return Poll::Ready(Ok(n));
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(this).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.flush_owed = false;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.flush_owed = false;
        ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_deadline::within;

    #[tokio::test]
    async fn lazy_dialer_data_reaches_listener_and_answer_is_checked() {
        within(async {
            let (a, b) = tokio::io::duplex(4096);
            let dialer = async {
                let (p, mut s) = dialer_select(a, ["/echo/1.0.0"], Version::V1Lazy)
                    .await
                    .expect("optimistic");
                assert_eq!(p, "/echo/1.0.0");
                s.write_all(b"ping").await.expect("write");
                s.flush().await.expect("flush");
                let mut got = [0u8; 4];
                s.read_exact(&mut got).await.expect("read");
                got
            };
            let listener = async {
                let (p, mut s) = listener_select(b, |p| p == "/echo/1.0.0")
                    .await
                    .expect("select");
                assert_eq!(p, "/echo/1.0.0");
                let mut got = [0u8; 4];
                s.read_exact(&mut got).await.expect("read");
                s.write_all(&got).await.expect("echo");
                s.flush().await.expect("flush");
                s
            };
            let (got, _keep) = tokio::join!(dialer, listener);
            assert_eq!(&got, b"ping");
        })
        .await;
    }

    #[tokio::test]
    async fn lazy_dialer_sees_unsupported_on_first_read() {
        within(async {
            let (a, b) = tokio::io::duplex(4096);
            let dialer = async {
                let (_, mut s) = dialer_select(a, ["/nope"], Version::V1Lazy)
                    .await
                    .expect("optimistic");
                let mut got = [0u8; 1];
                s.read_exact(&mut got).await.expect_err("refused")
            };
            let listener = listener_select(b, |_| false);
            let (err, l) = tokio::join!(dialer, listener);
            assert_eq!(err.kind(), io::ErrorKind::Unsupported);
            assert!(l.is_err(), "listener sees the stream end");
        })
        .await;
    }

    /// An io that records what it is given and counts its flushes.
    #[derive(Default)]
    struct Recorder {
        written: Vec<u8>,
        flushes: usize,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn every_flush_reaches_the_io() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut s = Negotiated::ready(Recorder::default(), Vec::new(), Vec::new());
        let mut p = Pin::new(&mut s);
        assert!(matches!(
            p.as_mut().poll_write(&mut cx, b"x"),
            Poll::Ready(Ok(1))
        ));
        assert!(matches!(
            p.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(p.io.flushes, 1);
    }

    #[tokio::test]
    async fn lazy_proposal_and_first_write_leave_in_one_write() {
        within(async {
            let (_, mut s) = dialer_select(Recorder::default(), ["/echo/1.0.0"], Version::V1Lazy)
                .await
                .expect("optimistic");
            assert!(
                s.io.written.is_empty(),
                "nothing is sent before the first data"
            );
            s.write_all(b"request").await.expect("write");
            let mut expected = Vec::new();
            super::super::negotiate::encode_message(&mut expected, b"/multistream/1.0.0");
            super::super::negotiate::encode_message(&mut expected, b"/echo/1.0.0");
            expected.extend_from_slice(b"request");
            assert_eq!(s.io.written, expected);
        })
        .await;
    }

    /// The bytes of a dialer's header and proposal of `protocol`.
    fn proposal(protocol: &str) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::negotiate::encode_message(&mut out, b"/multistream/1.0.0");
        super::super::negotiate::encode_message(&mut out, protocol.as_bytes());
        out
    }

    #[tokio::test]
    async fn listener_answers_at_once_a_dialer_that_sent_only_its_proposal() {
        within(async {
            let (mut dialer, listener) = tokio::io::duplex(4096);
            dialer.write_all(&proposal("/echo")).await.expect("write");
            let (p, _s) = listener_select(listener, |p| p == "/echo")
                .await
                .expect("select");
            assert_eq!(p, "/echo");
            // A V1 dialer waits for this answer before it writes: it must come without any reply.
            let expected = proposal("/echo");
            let mut got = vec![0u8; expected.len()];
            dialer.read_exact(&mut got).await.expect("answer");
            assert_eq!(got, expected);
        })
        .await;
    }

    #[tokio::test]
    async fn listener_answers_a_lazy_dialer_with_its_first_reply() {
        within(async {
            let (mut dialer, listener) = tokio::io::duplex(4096);
            let mut first = proposal("/echo");
            first.extend_from_slice(b"ping");
            dialer.write_all(&first).await.expect("write");
            let (_, mut s) = listener_select(listener, |p| p == "/echo")
                .await
                .expect("select");
            let mut got = [0u8; 4];
            s.read_exact(&mut got)
                .await
                .expect("data after the proposal");
            assert_eq!(&got, b"ping");
            s.write_all(b"pong").await.expect("reply");
            s.flush().await.expect("flush");
            let mut expected = proposal("/echo");
            expected.extend_from_slice(b"pong");
            let mut answer = vec![0u8; expected.len()];
            dialer
                .read_exact(&mut answer)
                .await
                .expect("answer and reply");
            assert_eq!(answer, expected);
        })
        .await;
    }

    #[tokio::test]
    async fn listener_answer_goes_out_on_close_without_a_reply() {
        within(async {
            let (mut dialer, listener) = tokio::io::duplex(4096);
            let mut first = proposal("/note");
            first.extend_from_slice(b"fire and forget");
            dialer.write_all(&first).await.expect("write");
            let (_, mut s) = listener_select(listener, |p| p == "/note")
                .await
                .expect("select");
            s.shutdown().await.expect("close");
            let mut answer = Vec::new();
            dialer
                .read_to_end(&mut answer)
                .await
                .expect("answer then end");
            assert_eq!(answer, proposal("/note"));
        })
        .await;
    }

    #[tokio::test]
    async fn lazy_dialer_that_reads_first_sends_its_proposal() {
        within(async {
            let (a, b) = tokio::io::duplex(4096);
            let dialer = async {
                let (_, mut s) = dialer_select(a, ["/greet"], Version::V1Lazy)
                    .await
                    .expect("optimistic");
                let mut got = [0u8; 5];
                s.read_exact(&mut got).await.expect("greeting");
                got
            };
            let listener = async {
                let (_, mut s) = listener_select(b, |p| p == "/greet").await.expect("select");
                s.write_all(b"hello").await.expect("greet");
                s.flush().await.expect("flush");
                s
            };
            let (got, _keep) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                tokio::join!(dialer, listener)
            })
            .await
            .expect("no deadlock");
            assert_eq!(&got, b"hello");
        })
        .await;
    }
}

/// The error inside the `io::Error` a lazily negotiated stream gives when the remote turns out
/// to have refused its protocol, so that a refusal can be told from any other error of kind
/// `Unsupported` (a codec's, say).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the remote does not support the protocol")]
pub(crate) struct ProtocolRefused;

/// The error inside the `io::Error` a lazily negotiated stream gives when the remote closed it
/// without confirming the protocol: a listener that does not speak it may just hang up.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("stream closed before the protocol was confirmed")]
pub(crate) struct NotConfirmed;

/// Whether `e` is a lazily negotiated stream's protocol refusal.
#[cfg_attr(not(feature = "request-response"), allow(dead_code))]
pub(crate) fn is_protocol_refused(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ProtocolRefused>())
}

/// Whether `e` is a lazily negotiated stream that closed before its protocol was confirmed.
pub(crate) fn is_unconfirmed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotConfirmed>())
}
