//! The WebTransport listener (`/ip4|ip6/<ip>/udp/<port>/quic-v1/webtransport/certhash/…`),
//! so that browsers can dial the node.
//!
//! It shares the UDP socket of the node's QUIC listener: the QUIC handshake's ALPN tells the
//! two apart (`libp2p` for QUIC, `h3` for HTTP/3) and chooses the certificate: the
//! libp2p-tls one, or a short-lived ECDSA P-256 one (14 days, rotated an hour before it
//! expires) whose SHA-256 hash, with the next one's, the listen address announces as
//! `/certhash/…`, since that is how a browser accepts a self-signed certificate. On an `h3`
//! connection the session is HTTP/3 with h3 and
//! h3-webtransport: one extended CONNECT to `/.well-known/libp2p-webtransport?type=noise`
//! (404 for another path, 400 without exactly one `type=noise`), then the Noise XX handshake
//! as responder on the client's first bidirectional stream, with the certificate hashes in
//! the extensions of message 2. Each later bidirectional stream of the session is one libp2p
//! stream, negotiated with multistream-select as on QUIC; there is no Noise encryption and no
//! yamux after the handshake. Everything up to the end of the Noise handshake runs under the
//! connection setup deadline (10 s by default) and in the pending-handshake table.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig, Protocol};
//!
//! let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let quic = node.listen("/ip4/127.0.0.1/udp/0/quic-v1".parse()?).await?;
//! // The same UDP port now also serves browsers; the address carries the certhashes.
//! let web = node.listen(quic.with(Protocol::WebTransport)).await?;
//! println!("browsers dial {}", web.with(Protocol::P2p(node.peer_id())));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use h3::quic::{RecvStream as _, SendStream as _};
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::connection::{CloseCause, Command, Driver, Muxed, StreamOpenFailure, on_inbound};
use super::events::ListenError;
use super::node::Shared;
use super::substream::Substream;
use super::upgrade::UpgradeError;
use super::webtransport_certs::{ALPN_H3, Certificates};
use super::{Multiaddr, PeerId, Protocol};

/// The path of the libp2p WebTransport endpoint.
pub(crate) const PATH: &str = "/.well-known/libp2p-webtransport";

/// Most HTTP requests a connection may make before its session (refused ones included).
const MAX_REQUESTS_BEFORE_SESSION: usize = 8;

/// WebTransport's application error code 0 in HTTP/3's code space (draft-ietf-webtrans-http3
/// §4.3), which streams are reset with, as go does.
const RESET_CODE: u64 = 0x52e4_a40f_a8db;

type Session = WebTransportSession<h3_quinn::Connection, Bytes>;
type BidiStream = h3_webtransport::stream::BidiStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Why a WebTransport session could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebTransportError {
    /// The HTTP/3 layer failed (settings, framing, a closed connection).
    #[error("HTTP/3: {0}")]
    Http3(String),
    /// The client sent requests that were refused (wrong path or `type`) until it gave up
    /// or reached the limit.
    #[error("no valid WebTransport CONNECT request (last answer {status})")]
    NoSession {
        /// The HTTP status of the last answer.
        status: u16,
    },
    /// The session ended before its first stream, on which Noise runs, was opened.
    #[error("the session ended before the Noise handshake stream opened")]
    NoHandshakeStream,
}

/// `true` when the QUIC handshake of `conn` chose HTTP/3.
pub(crate) fn is_h3(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN_H3)
}

/// The listen address of a WebTransport socket, with the hashes of `certificates`.
pub(crate) fn multiaddr(addr: SocketAddr, certificates: &Certificates) -> Multiaddr {
    let mut a = super::quic::multiaddr(addr).with(Protocol::WebTransport);
    for hash in certificates.announced() {
        a.push(Protocol::Certhash(hash));
    }
    a
}

/// The socket address of `/ip4|ip6/<ip>/udp/<port>/quic-v1/webtransport`, with any
/// `/certhash` and a `/p2p` after it.
pub(crate) fn target(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(v4) => (*v4).into(),
        Protocol::Ip6(v6) => (*v6).into(),
        _ => return None,
    };
    let (Protocol::Udp(port), Protocol::QuicV1, Protocol::WebTransport) =
        (parts.next()?, parts.next()?, parts.next()?)
    else {
        return None;
    };
    let mut rest = parts.skip_while(|p| matches!(p, Protocol::Certhash(_)));
    match (rest.next(), rest.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Some(SocketAddr::new(ip, *port)),
        _ => None,
    }
}

/// Checks a request against the libp2p endpoint: `Err` holds the status to answer with.
fn check_request<T>(req: &http::Request<T>) -> Result<(), http::StatusCode> {
    if req.uri().path() != PATH {
        return Err(http::StatusCode::NOT_FOUND);
    }
    let is_webtransport = req.method() == http::Method::CONNECT
        && req.extensions().get::<h3::ext::Protocol>() == Some(&h3::ext::Protocol::WEB_TRANSPORT);
    let types: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("type="))
        .collect();
    if !is_webtransport || types != ["noise"] {
        return Err(http::StatusCode::BAD_REQUEST);
    }
    Ok(())
}

/// A WebTransport session the node drives as one connection.
pub(crate) struct WebTransportConnection {
    quic: quinn::Connection,
    session: Arc<Session>,
    /// The Noise stream, our side finished, kept until the connection ends: dropping it would
    /// stop the client's side with STOP_SENDING, which a browser may see before it has finished
    /// its own side, and then report as a failed handshake.
    _handshake: WebTransportStream,
}

/// Sets up the session of an `h3` connection: HTTP/3, the CONNECT request, then Noise as
/// responder on the first stream. The caller applies the setup deadline.
pub(crate) async fn accept_session(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    certificates: &Certificates,
) -> Result<(Muxed, PeerId), UpgradeError> {
    let http3 = |e: &dyn std::fmt::Display| {
        UpgradeError::WebTransport(WebTransportError::Http3(e.to_string()))
    };
    let mut h3_conn = h3::server::builder()
        .enable_webtransport(true)
        .enable_extended_connect(true)
        .enable_datagram(true)
        .max_webtransport_sessions(1)
        .send_grease(true)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| http3(&e))?;
    let mut status = http::StatusCode::OK;
    let mut accepted = None;
    for _ in 0..MAX_REQUESTS_BEFORE_SESSION {
        let Some(resolver) = h3_conn.accept().await.map_err(|e| http3(&e))? else {
            break;
        };
        let (req, mut stream) = resolver.resolve_request().await.map_err(|e| http3(&e))?;
        match check_request(&req) {
            Ok(()) => {
                accepted = Some((req, stream));
                break;
            }
            Err(refusal) => {
                status = refusal;
                let response = http::Response::builder()
                    .status(refusal)
                    .body(())
                    .map_err(|e| http3(&e))?;
                // The answer is best effort: a client that stops reading only loses it.
                if stream.send_response(response).await.is_ok() {
                    let _ = stream.finish().await;
                }
            }
        }
    }
    let Some((req, stream)) = accepted else {
        return Err(UpgradeError::WebTransport(WebTransportError::NoSession {
            status: status.as_u16(),
        }));
    };
    let session = WebTransportSession::accept(req, stream, h3_conn)
        .await
        .map_err(|e| http3(&e))?;
    let session_id = session.session_id();
    let mut first = loop {
        match session.accept_bi().await.map_err(|e| http3(&e))? {
            Some(AcceptedBi::BidiStream(id, s)) if id == session_id => {
                break WebTransportStream::new(s);
            }
            // A stream of another session, or another request: refused, one session only.
            Some(AcceptedBi::BidiStream(_, s)) => drop(WebTransportStream::new(s)),
            Some(AcceptedBi::Request(_, mut s)) => {
                s.stop_stream(h3::error::Code::H3_REQUEST_REJECTED);
            }
            None => {
                return Err(UpgradeError::WebTransport(
                    WebTransportError::NoHandshakeStream,
                ));
            }
        }
    };
    let peer = shared
        .security
        .noise
        .handshake_webtransport(&mut first, false, None, &certificates.for_handshake())
        .await
        .map_err(UpgradeError::Noise)?;
    // The handshake stream has served its purpose; go closes our side of it too.
    let _ = first.shutdown().await;
    Ok((
        Muxed::WebTransport(Box::new(WebTransportConnection {
            quic: conn,
            session: Arc::new(session),
            _handshake: first,
        })),
        peer,
    ))
}

impl Shared {
    /// Serves WebTransport on the UDP socket `addr`: on the QUIC listener already there, or
    /// on a new one (which serves QUIC too). Returns the address with its certhashes.
    pub(crate) fn listen_webtransport(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<Multiaddr, ListenError> {
        let certificates = self.webtransport_certificates()?;
        let local = self.listen_quic_with_webtransport(addr, certificates.clone())?;
        Ok(multiaddr(local, &certificates))
    }

    /// The node's WebTransport certificates, made on first use with the task that rotates
    /// them and updates the listen addresses.
    fn webtransport_certificates(self: &Arc<Self>) -> Result<Arc<Certificates>, ListenError> {
        let (certificates, made) = self
            .quic
            .webtransport_certificates(|| Certificates::new(SystemTime::now()))
            .map_err(|e| ListenError::Io(io::Error::other(e)))?;
        if made {
            let task = tokio::spawn(rotate(self.clone(), certificates.clone()));
            self.track_task(task);
        }
        Ok(certificates)
    }
}

/// Rotates the certificates when due and puts the new hashes into the listen addresses.
async fn rotate(shared: Arc<Shared>, certificates: Arc<Certificates>) {
    loop {
        let wait = certificates
            .rotation_due()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::select! {
            _ = shared.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match certificates.rotate_if_due(SystemTime::now()) {
            Ok(true) => shared.replace_certhashes(&certificates.announced()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "WebTransport certificate not made; retrying in a minute");
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        }
    }
}

/// Puts `hashes` in place of the certhashes of a WebTransport address.
pub(crate) fn with_certhashes(addr: &Multiaddr, hashes: &[Vec<u8>]) -> Multiaddr {
    let mut out = Multiaddr::empty();
    let mut placed = false;
    for p in addr.iter() {
        match p {
            Protocol::Certhash(_) => {}
            Protocol::WebTransport => {
                out.push(Protocol::WebTransport);
                for h in hashes {
                    out.push(Protocol::Certhash(h.clone()));
                }
                placed = true;
            }
            other => out.push(other.clone()),
        }
    }
    debug_assert!(placed, "a WebTransport address");
    out
}

/// One bidirectional stream of a WebTransport session. Dropped before it finished sending,
/// it resets its send half and stops its receive half, as a QUIC stream does.
pub(crate) struct WebTransportStream {
    inner: BidiStream,
    finished: bool,
    /// A read is under way: h3-quinn then holds the receive half inside its read and would
    /// panic on STOP_SENDING; dropping that read stops the stream all the same.
    reading: bool,
}

impl std::fmt::Debug for WebTransportStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebTransportStream")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl WebTransportStream {
    fn new(inner: BidiStream) -> Self {
        Self {
            inner,
            finished: false,
            reading: false,
        }
    }
}

impl Drop for WebTransportStream {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.reset(RESET_CODE);
        }
        if !self.reading {
            self.inner.stop_sending(RESET_CODE);
        }
    }
}

/// The error kinds a QUIC stream reports: a reset as `ConnectionReset`, a lost connection as
/// `ConnectionAborted` (h3 reports both as `Other`).
fn stream_error(e: io::Error) -> io::Error {
    let kind = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<h3::quic::StreamErrorIncoming>())
    {
        Some(h3::quic::StreamErrorIncoming::StreamTerminated { .. }) => {
            io::ErrorKind::ConnectionReset
        }
        Some(h3::quic::StreamErrorIncoming::ConnectionErrorIncoming { .. }) => {
            io::ErrorKind::ConnectionAborted
        }
        _ => return e,
    };
    io::Error::new(kind, e.to_string())
}

impl AsyncRead for WebTransportStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.reading = read.is_pending();
        read.map_err(stream_error)
    }
}

impl AsyncWrite for WebTransportStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_write(cx, buf)
            .map_err(stream_error)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(stream_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.inner)
            .poll_shutdown(cx)
            .map_err(stream_error);
        if let Poll::Ready(Ok(())) = done {
            this.finished = true;
        }
        done
    }
}

type Opening = Pin<
    Box<
        dyn Future<
                Output = (
                    oneshot::Sender<Result<Substream, StreamOpenFailure>>,
                    Result<BidiStream, h3::error::StreamError>,
                ),
            > + Send,
    >,
>;

type Accepting = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Option<AcceptedBi<h3_quinn::Connection, Bytes>>,
                    h3::error::StreamError,
                >,
            > + Send,
    >,
>;

/// The next stream or request of the session. Kept across polls: h3-webtransport reads a
/// stream's header inside the accept, which is not cancel-safe.
fn accept_next(session: Arc<Session>) -> Accepting {
    Box::pin(async move { session.accept_bi().await })
}

impl Driver {
    /// Runs a WebTransport session: opens the streams asked for, admits the peer's, closes
    /// when idle, on request or at shutdown; the same shape as [`Driver::drive_quic`].
    pub(crate) async fn drive_webtransport(
        &mut self,
        shared: &Arc<Shared>,
        wt: &WebTransportConnection,
    ) -> CloseCause {
        let idle_timeout = shared.config.idle_timeout;
        let idle_timer = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle_timer);
        let cancelled = self.handle.close.clone().cancelled_owned();
        tokio::pin!(cancelled);
        let session_id = wt.session.session_id();
        let mut opening: FuturesUnordered<Opening> = FuturesUnordered::new();
        let mut accepting = accept_next(wt.session.clone());
        let mut commands_open = true;
        let cause = loop {
            tokio::select! {
                () = &mut cancelled => {
                    break if shared.is_shutting_down() {
                        CloseCause::Shutdown
                    } else {
                        CloseCause::LocalClose
                    };
                }
                command = self.commands.recv(), if commands_open => match command {
                    Some(Command::Open(tx)) => {
                        let session = wt.session.clone();
                        opening.push(Box::pin(async move {
                            (tx, session.open_bi(session_id).await)
                        }));
                    }
                    None => commands_open = false,
                },
                Some((tx, opened)) = opening.next() => match opened {
                    // A caller that gave up drops the stream, which resets it.
                    Ok(s) => {
                        let s = Substream::WebTransport(Box::new(WebTransportStream::new(s)));
                        let _ = tx.send(Ok(s));
                    }
                    Err(e) => break close_cause(&wt.quic, &e),
                },
                accepted = &mut accepting => {
                    accepting = accept_next(wt.session.clone());
                    match accepted {
                        Ok(Some(AcceptedBi::BidiStream(id, s))) if id == session_id => {
                            let s = Substream::WebTransport(Box::new(WebTransportStream::new(s)));
                            on_inbound(shared, &self.handle, s);
                        }
                        // Another session's stream, or a second CONNECT: one session only.
                        Ok(Some(AcceptedBi::BidiStream(_, s))) => drop(WebTransportStream::new(s)),
                        Ok(Some(AcceptedBi::Request(_, mut s))) => {
                            s.stop_stream(h3::error::Code::H3_REQUEST_REJECTED);
                        }
                        Ok(None) => break CloseCause::RemoteClosed,
                        Err(e) => break close_cause(&wt.quic, &e),
                    }
                }
                () = &mut idle_timer => {
                    match self.handle.activity.idle_since() {
                        Some(since) if opening.is_empty() => {
                            let deadline = since + idle_timeout;
                            if Instant::now() >= deadline {
                                break CloseCause::IdleTimeout;
                            }
                            idle_timer.as_mut().reset(deadline);
                        }
                        _ => idle_timer.as_mut().reset(Instant::now() + idle_timeout),
                    }
                }
            }
        };
        if matches!(
            cause,
            CloseCause::IdleTimeout | CloseCause::LocalClose | CloseCause::Shutdown
        ) {
            // H3_NO_ERROR: the session and its connection end together.
            wt.quic.close(0x100u32.into(), b"");
        }
        cause
    }
}

/// Why the session ended, from the QUIC connection's own reason when it has one.
fn close_cause(quic: &quinn::Connection, e: &h3::error::StreamError) -> CloseCause {
    match quic.close_reason() {
        Some(reason) => super::quic::close_cause(reason),
        None => CloseCause::Error(Arc::new(io::Error::other(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webtransport_addresses_give_their_socket_address_and_others_none() {
        let hash = "uEiABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fIA";
        for (text, want) in [
            ("/ip4/127.0.0.1/udp/4001/quic-v1/webtransport", true),
            (
                &format!(
                    "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport/certhash/{hash}/certhash/{hash}"
                ) as &str,
                true,
            ),
            ("/ip6/::1/udp/4001/quic-v1/webtransport", true),
            ("/ip4/127.0.0.1/udp/4001/quic-v1", false),
            ("/ip4/127.0.0.1/tcp/4001/ws", false),
            ("/dns4/localhost/udp/4001/quic-v1/webtransport", false),
            ("/ip4/127.0.0.1/udp/4001/quic-v1/webtransport/ws", false),
        ] {
            let a: Multiaddr = text.parse().expect("addr");
            assert_eq!(target(&a).is_some(), want, "{text}");
        }
        let a: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport"
            .parse()
            .expect("addr");
        assert_eq!(target(&a), Some("127.0.0.1:4001".parse().expect("socket")));
    }

    #[test]
    fn certhashes_are_replaced_in_place() {
        let a: Multiaddr = format!(
            "/ip4/127.0.0.1/udp/1/quic-v1/webtransport/certhash/{}",
            super::super::multibase::encode_base64url(&[0x12, 0x01, 7])
        )
        .parse()
        .expect("addr");
        let b = with_certhashes(&a, &[vec![0x12, 0x01, 8], vec![0x12, 0x01, 9]]);
        let hashes: Vec<_> = b
            .iter()
            .filter_map(|p| match p {
                Protocol::Certhash(h) => Some(h.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(hashes, [vec![0x12, 0x01, 8], vec![0x12, 0x01, 9]]);
        assert_eq!(target(&b), target(&a));
    }

    #[test]
    fn requests_other_than_the_libp2p_connect_are_refused_with_their_status() {
        let connect = |uri: &str| {
            let mut r = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(uri)
                .body(())
                .expect("request");
            r.extensions_mut().insert(h3::ext::Protocol::WEB_TRANSPORT);
            r
        };
        assert_eq!(
            check_request(&connect(
                "https://h/.well-known/libp2p-webtransport?type=noise"
            )),
            Ok(())
        );
        for (uri, status) in [
            ("https://h/other?type=noise", 404),
            ("https://h/.well-known/libp2p-webtransport", 400),
            ("https://h/.well-known/libp2p-webtransport?type=tls", 400),
            (
                "https://h/.well-known/libp2p-webtransport?type=noise&type=noise",
                400,
            ),
        ] {
            assert_eq!(
                check_request(&connect(uri)).map_err(|s| s.as_u16()),
                Err(status),
                "{uri}"
            );
        }
        let get = http::Request::builder()
            .uri("https://h/.well-known/libp2p-webtransport?type=noise")
            .body(())
            .expect("request");
        assert_eq!(check_request(&get), Err(http::StatusCode::BAD_REQUEST));
    }
}
