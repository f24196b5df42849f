//! The WebSocket transport (`/tcp/N/ws`, `/tcp/N/tls/ws`, `/tcp/N/tls/sni/<host>/ws` and the
//! older `/wss`): the transport browsers reach a node by.
//!
//! A WebSocket connection is one more byte stream under the node's usual stack: the HTTP
//! upgrade (over TLS for `wss`, with the project's rustls), then multistream-select, Noise or
//! libp2p-tls and yamux exactly as on TCP, carried in binary messages. Inbound connections go
//! through the same admission table and deadlines as TCP's; the upgrade request may be at most
//! 8 KiB, messages 1 MiB and frames 64 KiB.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//! use missive::transport::tls::SelfSigned;
//!
//! // A `wss` listener needs a certificate: from PEM files with `transport::tls::server_config`
//! // and `load_certs`/`load_private_key`, or a self-signed one for tests.
//! let cert = SelfSigned::generate(&["localhost", "127.0.0.1"])?;
//! let config = NodeConfig::default()
//!     .with_websocket_tls_server(cert.server_config()?)
//!     .with_websocket_tls_client(cert.client_config()?);
//! let a = Node::new(Keypair::generate(), config.clone()).await?;
//! let b = Node::new(Keypair::generate(), config).await?;
//! let ws = a.listen("/ip4/127.0.0.1/tcp/0/ws".parse()?).await?;
//! let wss = a.listen("/ip4/127.0.0.1/tcp/0/tls/ws".parse()?).await?;
//! assert_eq!(b.dial(ws).await?, a.peer_id());
//! b.dial(wss).await?;
//! # Ok(()) }
//! ```

mod bytes;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::events::ListenError;
use super::multiaddr::{DnsFamily, TcpHost, TcpTarget};
use super::node::Shared;
use super::{Multiaddr, Protocol};

pub(crate) use bytes::WsBytes;

/// The largest message accepted (limits.md: 1 MiB).
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// The largest frame accepted (64 KiB).
pub(crate) const MAX_FRAME: usize = 64 << 10;
/// The largest HTTP upgrade request a listener reads (8 KiB).
pub const MAX_UPGRADE_REQUEST: usize = 8 << 10;
/// Messages gathered before they are written out, and the most queued (a flush writes all).
const WRITE_BUFFER: usize = 64 << 10;
const MAX_WRITE_BUFFER: usize = 4 * WRITE_BUFFER;
/// Read buffer of tungstenite, allocated once per connection.
const READ_BUFFER: usize = 64 << 10;

/// A WebSocket connection as the node's stack sees it.
pub(crate) type WsConnection = WsBytes<Socket>;

/// Why a WebSocket connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// The peer's HTTP upgrade request did not end within [`MAX_UPGRADE_REQUEST`] bytes.
    #[error("the HTTP upgrade request is larger than {limit} bytes")]
    UpgradeRequestTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The HTTP upgrade request or response broke HTTP or RFC 6455.
    #[error("malformed WebSocket upgrade: {0}")]
    Malformed(String),
    /// The listener answered the upgrade request with another status than 101.
    #[error("the WebSocket upgrade was refused with HTTP status {0}")]
    Refused(u16),
    /// The TLS handshake of `wss` failed.
    #[error("wss TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// A `wss` address was dialed without [`NodeConfig::with_websocket_tls_client`](super::NodeConfig::with_websocket_tls_client).
    #[error("dialing wss needs NodeConfig::with_websocket_tls_client")]
    NoTlsClientConfig,
    /// The socket failed or closed during the upgrade.
    #[error("i/o error during the WebSocket upgrade: {0}")]
    Io(#[source] io::Error),
}

impl From<WebSocketError> for io::Error {
    fn from(e: WebSocketError) -> Self {
        match e {
            WebSocketError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Where a WebSocket address points.
#[derive(Debug, Clone)]
pub(crate) struct WsTarget {
    pub(crate) tcp: TcpTarget,
    /// `wss`, `/tls/ws` or `/tls/sni/<host>/ws`.
    pub(crate) tls: bool,
    /// The name for SNI and the Host header, from `/sni` (else the DNS name).
    pub(crate) sni: Option<String>,
    /// The address's WebSocket part as written, kept on the listen address.
    suffix: Vec<Protocol>,
}

/// The WebSocket target of `addr`: `/<host>/tcp/<port>` then `/ws`, `/wss`, `/tls/ws` or
/// `/tls/sni/<name>/ws`, optionally `/p2p/<peer>`.
pub(crate) fn target(addr: &Multiaddr) -> Option<WsTarget> {
    let mut it = addr.iter();
    let host = match it.next()? {
        Protocol::Ip4(ip) => TcpHost::Ip((*ip).into()),
        Protocol::Ip6(ip) => TcpHost::Ip((*ip).into()),
        Protocol::Dns(name) => TcpHost::Dns(name.clone(), DnsFamily::Any),
        Protocol::Dns4(name) => TcpHost::Dns(name.clone(), DnsFamily::V4),
        Protocol::Dns6(name) => TcpHost::Dns(name.clone(), DnsFamily::V6),
        _ => return None,
    };
    let Protocol::Tcp(port) = it.next()? else {
        return None;
    };
    let (tls, sni, suffix) = match it.next()? {
        Protocol::Ws => (false, None, vec![Protocol::Ws]),
        Protocol::Wss => (true, None, vec![Protocol::Wss]),
        Protocol::Tls => match it.next()? {
            Protocol::Ws => (true, None, vec![Protocol::Tls, Protocol::Ws]),
            Protocol::Sni(name) => {
                let Protocol::Ws = it.next()? else {
                    return None;
                };
                let suffix = vec![Protocol::Tls, Protocol::Sni(name.clone()), Protocol::Ws];
                (true, Some(name.clone()), suffix)
            }
            _ => return None,
        },
        _ => return None,
    };
    match it.next() {
        None | Some(Protocol::P2p(_)) if it.next().is_none() => {}
        _ => return None,
    }
    let sni = sni.or_else(|| match &host {
        TcpHost::Dns(name, _) => Some(name.clone()),
        TcpHost::Ip(_) => None,
    });
    Some(WsTarget {
        tcp: TcpTarget { host, port: *port },
        tls,
        sni,
        suffix,
    })
}

/// Whether `addr` is a WebSocket address the node dials and listens on (for the fuzz target).
#[doc(hidden)]
pub fn is_websocket_address_for_fuzzing(addr: &Multiaddr) -> bool {
    target(addr).is_some_and(|t| {
        // The listen form keeps the WebSocket part as written.
        let shown = t.address_of(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
        let suffix: Vec<_> = shown.iter().skip(2).collect();
        let written: Vec<_> = addr.iter().skip(2).take(suffix.len()).collect();
        assert_eq!(suffix, written, "{addr}");
        true
    })
}

impl WsTarget {
    /// `socket`'s address with this target's WebSocket part.
    pub(crate) fn address_of(&self, socket: SocketAddr) -> Multiaddr {
        let mut a = Multiaddr::from_socket_addr(socket);
        for p in &self.suffix {
            a.push(p.clone());
        }
        a
    }

    /// The `Host` header and URI authority.
    fn authority(&self) -> String {
        let port = self.tcp.port;
        match (&self.sni, &self.tcp.host) {
            (Some(name), _) | (None, TcpHost::Dns(name, _)) => format!("{name}:{port}"),
            (None, TcpHost::Ip(ip)) => SocketAddr::new(*ip, port).to_string(),
        }
    }
}

/// The tungstenite limits: messages 1 MiB, frames 64 KiB, bounded write buffer.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_FRAME))
}

/// The socket under a WebSocket: TCP, or TLS over TCP for `wss`. Until the upgrade is done it
/// refuses to read past [`MAX_UPGRADE_REQUEST`] bytes.
#[derive(Debug)]
pub(crate) struct Socket {
    io: SocketIo,
    /// Bytes still allowed before the upgrade completes; `None` once it has.
    upgrade_budget: Option<usize>,
}

#[derive(Debug)]
enum SocketIo {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// The marker inside the i/o error of a too large upgrade request.
#[derive(Debug, thiserror::Error)]
#[error("upgrade request over the limit")]
struct OverBudget;

impl Socket {
    fn new(io: SocketIo) -> Self {
        Self {
            io,
            upgrade_budget: Some(MAX_UPGRADE_REQUEST),
        }
    }

    fn upgraded(&mut self) {
        self.upgrade_budget = None;
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match &self.io {
            SocketIo::Tcp(t) => t,
            SocketIo::Tls(t) => t.get_ref().0,
        }
    }
}

macro_rules! io {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.io {
            SocketIo::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            SocketIo::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(budget) = this.upgrade_budget else {
            return io!(this, s => s.poll_read(cx, buf));
        };
        if budget == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OverBudget)));
        }
        let room = buf.remaining().min(budget);
        let mut limited = ReadBuf::new(&mut buf.initialize_unfilled()[..room]);
        let r = io!(this, s => s.poll_read(cx, &mut limited));
        let n = limited.filled().len();
        buf.advance(n);
        this.upgrade_budget = Some(budget - n);
        r
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        io!(this, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        io!(this, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        io!(this, s => s.poll_shutdown(cx))
    }
}

/// A typed error for a failed upgrade handshake.
fn handshake_error(e: WsError) -> WebSocketError {
    match e {
        WsError::Io(io) if io.get_ref().is_some_and(|r| r.is::<OverBudget>()) => {
            WebSocketError::UpgradeRequestTooLarge {
                limit: MAX_UPGRADE_REQUEST,
            }
        }
        WsError::Io(io) => WebSocketError::Io(io),
        WsError::Http(response) => WebSocketError::Refused(response.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            WebSocketError::Io(io::ErrorKind::UnexpectedEof.into())
        }
        other => WebSocketError::Malformed(other.to_string()),
    }
}

/// Answers the upgrade of an accepted connection (after TLS when `tls` is given).
pub(crate) async fn accept(
    tcp: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<WsConnection, WebSocketError> {
    let io = match tls {
        None => SocketIo::Tcp(tcp),
        Some(acceptor) => {
            let s = acceptor.accept(tcp).await.map_err(WebSocketError::Tls)?;
            SocketIo::Tls(Box::new(tokio_rustls::TlsStream::Server(s)))
        }
    };
    // Any path is accepted (no callback): libp2p dialers ask for `/`.
    let mut ws = tokio_tungstenite::accept_async_with_config(Socket::new(io), Some(ws_config()))
        .await
        .map_err(handshake_error)?;
    ws.get_mut().upgraded();
    Ok(WsBytes::new(ws))
}

/// Upgrades a dialed TCP connection to `target` (after TLS for `wss`).
pub(crate) async fn connect(
    tcp: TcpStream,
    target: &WsTarget,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<WsConnection, WebSocketError> {
    let _ = tcp.set_nodelay(true);
    let io = if target.tls {
        let config = tls.ok_or(WebSocketError::NoTlsClientConfig)?;
        let name = match (&target.sni, &target.tcp.host) {
            (Some(name), _) => ServerName::try_from(name.clone())
                .map_err(|e| WebSocketError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?,
            (None, TcpHost::Ip(ip)) => ServerName::IpAddress((*ip).into()),
            (None, TcpHost::Dns(..)) => unreachable!("a DNS host is its own SNI"),
        };
        let s = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(WebSocketError::Tls)?;
        SocketIo::Tls(Box::new(tokio_rustls::TlsStream::Client(s)))
    } else {
        SocketIo::Tcp(tcp)
    };
    let scheme = if target.tls { "wss" } else { "ws" };
    let uri = format!("{scheme}://{}/", target.authority());
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(uri, Socket::new(io), Some(ws_config()))
            .await
            .map_err(handshake_error)?;
    ws.get_mut().upgraded();
    Ok(WsBytes::new(ws))
}

/// What an inbound WebSocket connection needs before the libp2p upgrade.
#[derive(Clone)]
pub(crate) struct Listening {
    pub(crate) target: WsTarget,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("target", &self.target)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Shared {
    /// Binds a WebSocket listener; the caller announces it and runs its accept loop.
    pub(crate) async fn listen_websocket(
        self: &Arc<Self>,
        addr: &Multiaddr,
        target: WsTarget,
    ) -> Result<(TcpListener, Multiaddr, Listening), ListenError> {
        let TcpHost::Ip(ip) = target.tcp.host else {
            return Err(ListenError::UnsupportedAddress(addr.clone()));
        };
        let tls = if target.tls {
            let config = self
                .config
                .websocket_tls_server
                .clone()
                .ok_or_else(|| ListenError::NoCertificate(addr.clone()))?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        } else {
            None
        };
        let listener = TcpListener::bind(SocketAddr::new(ip, target.tcp.port))
            .await
            .map_err(ListenError::Io)?;
        let local = target.address_of(listener.local_addr().map_err(ListenError::Io)?);
        Ok((listener, local, Listening { target, tls }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(s: &str) -> Option<WsTarget> {
        target(&s.parse().expect("address"))
    }

    #[test]
    fn every_websocket_address_form_is_a_target() {
        let ws = t("/ip4/127.0.0.1/tcp/80/ws").expect("ws");
        assert!(!ws.tls && ws.sni.is_none());
        let tls = t("/ip6/::1/tcp/443/tls/ws").expect("tls/ws");
        assert!(tls.tls && tls.sni.is_none());
        assert_eq!(tls.authority(), "[::1]:443");
        let sni = t("/ip4/1.2.3.4/tcp/443/tls/sni/example.com/ws").expect("sni");
        assert_eq!(sni.sni.as_deref(), Some("example.com"));
        assert_eq!(sni.authority(), "example.com:443");
        let wss = t("/dns4/example.com/tcp/443/wss/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
            .expect("wss");
        assert!(wss.tls);
        assert_eq!(wss.sni.as_deref(), Some("example.com"));
        let listen = wss.address_of("10.0.0.1:9".parse().expect("socket"));
        assert_eq!(listen.to_string(), "/ip4/10.0.0.1/tcp/9/wss");
    }

    proptest! {
        #[test]
        fn every_host_and_websocket_form_is_a_target_that_keeps_its_form(
            host in prop_oneof![
                any::<[u8; 4]>().prop_map(|b| Protocol::Ip4(b.into())),
                any::<[u8; 16]>().prop_map(|b| Protocol::Ip6(b.into())),
                "[a-z]{1,12}\\.[a-z]{2,3}".prop_map(Protocol::Dns4),
            ],
            port in any::<u16>(),
            form in 0usize..4,
            sni in "[a-z]{1,12}\\.[a-z]{2,3}",
        ) {
            let parts: Vec<Protocol> = match form {
                0 => vec![Protocol::Ws],
                1 => vec![Protocol::Wss],
                2 => vec![Protocol::Tls, Protocol::Ws],
                _ => vec![Protocol::Tls, Protocol::Sni(sni.clone()), Protocol::Ws],
            };
            let mut addr = Multiaddr::empty().with(host).with(Protocol::Tcp(port));
            for p in parts {
                addr.push(p);
            }
            let t = target(&addr).expect("a target");
            prop_assert_eq!(t.tls, form != 0);
            prop_assert_eq!(t.tcp.port, port);
            if form == 3 {
                prop_assert_eq!(t.sni.as_deref(), Some(sni.as_str()));
            }
            prop_assert!(is_websocket_address_for_fuzzing(&addr));
            let reparsed: Multiaddr = addr.to_string().parse().expect("text form");
            prop_assert!(target(&reparsed).is_some());
        }
    }

    #[test]
    fn other_addresses_are_not_websocket_targets() {
        for s in [
            "/ip4/127.0.0.1/tcp/80",
            "/ip4/127.0.0.1/udp/80/quic-v1",
            "/ip4/127.0.0.1/tcp/80/tls",
            "/ip4/127.0.0.1/tcp/80/tls/sni/a.b",
            "/ip4/127.0.0.1/tcp/80/ws/ws",
            "/ip4/127.0.0.1/tcp/80/wss/tls",
            "/tcp/80/ws",
        ] {
            assert!(t(s).is_none(), "{s}");
        }
    }
}
