//! QUIC (`/ip4|ip6/<ip>/udp/<port>/quic-v1`) with quinn: libp2p-tls certificates in the QUIC
//! handshake, native QUIC streams (no yamux), multistream-select per stream as on TCP.
//!
//! Each listen address has one UDP socket (a quinn endpoint) that also dials: a peer sees our
//! connections come from the port we listen on, as libp2p peers expect. A node that listens on
//! no UDP address dials from one client endpoint per IP family, made on first use. Inbound
//! handshakes are admitted like TCP's ([`crate::transport::pending`]): a newcomer always gets
//! a place, the oldest handshake of a full table yields, and each has the connection setup
//! deadline. As in rust-libp2p, a dial does not name the expected peer to TLS: the peer's
//! certificate is verified during the handshake and its PeerId compared after it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::time::Instant;

use super::connection::{CloseCause, Driver, Muxed, on_inbound};
use super::events::{DialError, IncomingError, ListenError, NodeEvent};
use super::node::Shared;
use super::substream::{QuicStream, Substream};
use super::tls::{RefusalSlot, TlsConfig};
use super::upgrade::UpgradeError;
use super::{Multiaddr, NodeConfig, PeerId, Protocol};
use crate::transport::pending::PendingSlot;

/// The server name a dial passes to TLS (libp2p-tls sends no SNI; rust-libp2p passes `l`).
const SERVER_NAME: &str = "l";

/// How often an open connection sends a keep-alive, below the idle timeout of both sides.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The UDP sockets of a node.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    state: Mutex<EndpointState>,
}

#[derive(Debug, Default)]
struct EndpointState {
    listening: Vec<quinn::Endpoint>,
    client_v4: Option<quinn::Endpoint>,
    client_v6: Option<quinn::Endpoint>,
    /// The certificates of WebTransport, once a socket serves it.
    #[cfg(feature = "webtransport")]
    webtransport: Option<Arc<super::webtransport_certs::Certificates>>,
}

impl Endpoints {
    fn lock(&self) -> MutexGuard<'_, EndpointState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint to dial `to` from: a listening one of the same family, else the family's
    /// client endpoint.
    fn for_dial(&self, to: SocketAddr, config: &NodeConfig) -> std::io::Result<quinn::Endpoint> {
        let mut st = self.lock();
        let same_family =
            |e: &quinn::Endpoint| e.local_addr().is_ok_and(|a| a.is_ipv4() == to.is_ipv4());
        if let Some(e) = st.listening.iter().find(|e| same_family(e)) {
            return Ok(e.clone());
        }
        let slot = if to.is_ipv4() {
            &mut st.client_v4
        } else {
            &mut st.client_v6
        };
        if let Some(e) = slot {
            return Ok(e.clone());
        }
        let any: IpAddr = if to.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let e = super::quic_socket::endpoint(SocketAddr::new(any, 0), None, config)?;
        *slot = Some(e.clone());
        Ok(e)
    }

    /// The node's WebTransport certificates, made by `make` the first time; `true` with
    /// them when they were made now.
    #[cfg(feature = "webtransport")]
    pub(crate) fn webtransport_certificates<E>(
        &self,
        make: impl FnOnce() -> Result<super::webtransport_certs::Certificates, E>,
    ) -> Result<(Arc<super::webtransport_certs::Certificates>, bool), E> {
        let mut st = self.lock();
        if let Some(c) = &st.webtransport {
            return Ok((c.clone(), false));
        }
        let c = Arc::new(make()?);
        st.webtransport = Some(c.clone());
        Ok((c, true))
    }

    /// The WebTransport certificates, if a socket serves WebTransport.
    #[cfg(feature = "webtransport")]
    fn certificates(&self) -> Option<Arc<super::webtransport_certs::Certificates>> {
        self.lock().webtransport.clone()
    }

    /// Closes every socket (at shutdown).
    pub(crate) fn close_all(&self) {
        let st = self.lock();
        for e in st
            .listening
            .iter()
            .chain(st.client_v4.iter())
            .chain(st.client_v6.iter())
        {
            e.close(0u32.into(), b"shutdown");
        }
    }
}

/// The QUIC settings of the node: stream and window limits as rust-libp2p's, keep-alive
/// while open, and the node's idle timeout as QUIC's own.
fn transport_config(config: &NodeConfig) -> Arc<quinn::TransportConfig> {
    Arc::new(transport_settings(config))
}

fn transport_settings(config: &NodeConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let streams = u32::try_from(config.max_streams_per_connection.min(256)).unwrap_or(256);
    t.max_concurrent_bidi_streams(streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(10_000_000u32.into())
        .receive_window(15_000_000u32.into())
        .keep_alive_interval(Some(KEEP_ALIVE));
    let idle = config.idle_timeout.max(KEEP_ALIVE * 2);
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    t
}

fn server_config(tls: &TlsConfig, config: &NodeConfig) -> Result<quinn::ServerConfig, ListenError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config())
        .map_err(|e| ListenError::Io(std::io::Error::other(e)))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config(config));
    Ok(server)
}

/// The server configuration of a socket that also serves WebTransport: two more
/// bidirectional streams, for the session's CONNECT and its Noise stream, three unidirectional streams of each side
/// for HTTP/3 (control, QPACK encoder and decoder), and datagrams,
/// which are buffered little since nothing here reads them. A `libp2p` connection gets its
/// unidirectional credit taken back after the handshake.
#[cfg(feature = "webtransport")]
fn webtransport_server_config(
    tls: &TlsConfig,
    config: &NodeConfig,
    certificates: Arc<super::webtransport_certs::Certificates>,
) -> Result<quinn::ServerConfig, ListenError> {
    let local = |e: &dyn std::fmt::Display| ListenError::Io(std::io::Error::other(e.to_string()));
    let rustls = tls
        .server_config_with_webtransport(certificates)
        .map_err(|e| local(&e))?;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(rustls).map_err(|e| local(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = transport_settings(config);
    // The session's CONNECT stream and its Noise stream stay open as long as it; the node's
    // own limit (checked per stream) still holds for a QUIC peer that gets the extra credit.
    let streams = u32::try_from(config.max_streams_per_connection.min(256)).unwrap_or(256);
    t.max_concurrent_bidi_streams((streams + 2).into())
        .max_concurrent_uni_streams(8u32.into())
        .datagram_receive_buffer_size(Some(64 * 1024));
    server.transport_config(Arc::new(t));
    Ok(server)
}

/// The configuration of one dial, and where its verifier records a refusal.
fn client_config(
    tls: &TlsConfig,
    config: &NodeConfig,
) -> Result<(quinn::ClientConfig, RefusalSlot), String> {
    let (rustls, refusal) = tls.client_config_recording(None);
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(rustls).map_err(|e| e.to_string())?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config(config));
    Ok((client, refusal))
}

/// `/ip4|ip6/<ip>/udp/<port>/quic-v1` of `addr`.
pub(crate) fn multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => Protocol::Ip4(v4),
        IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    Multiaddr::from(ip)
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

/// The socket address of an `/ip4|ip6/<ip>/udp/<port>/quic-v1[/p2p/<peer>]` address.
pub(crate) fn target(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(v4) => (*v4).into(),
        Protocol::Ip6(v6) => (*v6).into(),
        _ => return None,
    };
    let Protocol::Udp(port) = parts.next()? else {
        return None;
    };
    let Protocol::QuicV1 = parts.next()? else {
        return None;
    };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => Some(SocketAddr::new(ip, *port)),
        Some(_) => None,
    }
}

/// The PeerId proven by the certificate of a QUIC connection's peer.
fn peer_of(conn: &quinn::Connection) -> Result<PeerId, UpgradeError> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| quic_error("the peer presented no certificate"))?;
    let [cert] = certs.as_slice() else {
        return Err(quic_error(
            "the peer did not present exactly one certificate",
        ));
    };
    // The handshake's verifier checked the certificate and both its signatures; only the host
    // key is read again here (checking twice cost a sixth of a dial's CPU).
    super::tls::certificate::parse(cert)
        .and_then(|c| c.host_key())
        .map(|key| key.to_peer_id())
        .map_err(|e| UpgradeError::Tls(super::tls::TlsError::Certificate(e)))
}

fn quic_error(e: impl std::fmt::Display) -> UpgradeError {
    UpgradeError::Quic(std::io::Error::other(e.to_string()))
}

impl Shared {
    /// Binds a QUIC endpoint at `addr` and serves it until shutdown.
    pub(crate) fn listen_quic(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<Multiaddr, ListenError> {
        let config = server_config(&self.security.tls, &self.config)?;
        Ok(multiaddr(self.bind_quic(addr, config)?))
    }

    /// Serves WebTransport next to QUIC at `addr`: on the node's QUIC socket there if it
    /// has one (its configuration replaced, connections kept), else on a new one.
    #[cfg(feature = "webtransport")]
    pub(crate) fn listen_quic_with_webtransport(
        self: &Arc<Self>,
        addr: SocketAddr,
        certificates: Arc<super::webtransport_certs::Certificates>,
    ) -> Result<SocketAddr, ListenError> {
        let config = webtransport_server_config(&self.security.tls, &self.config, certificates)?;
        let existing = (addr.port() != 0)
            .then(|| {
                let st = self.quic.lock();
                st.listening
                    .iter()
                    .find(|e| e.local_addr().is_ok_and(|a| a == addr))
                    .cloned()
            })
            .flatten();
        match existing {
            Some(endpoint) => {
                endpoint.set_server_config(Some(config));
                Ok(addr)
            }
            None => self.bind_quic(addr, config),
        }
    }

    fn bind_quic(
        self: &Arc<Self>,
        addr: SocketAddr,
        config: quinn::ServerConfig,
    ) -> Result<SocketAddr, ListenError> {
        let endpoint = super::quic_socket::endpoint(addr, Some(config), &self.config)
            .map_err(ListenError::Io)?;
        let local = endpoint.local_addr().map_err(ListenError::Io)?;
        self.quic.lock().listening.push(endpoint.clone());
        let task = tokio::spawn(accept_loop(self.clone(), endpoint, multiaddr(local)));
        self.track_task(task);
        Ok(local)
    }

    /// Dials `to` over QUIC and returns the connection with the peer's proven PeerId.
    pub(crate) async fn dial_quic(
        &self,
        addr: &Multiaddr,
        to: SocketAddr,
    ) -> Result<(Muxed, PeerId), DialError> {
        let transport = |e: std::io::Error| DialError::Transport {
            addr: addr.clone(),
            error: Arc::new(e),
        };
        let upgrade = |e: UpgradeError| DialError::Upgrade {
            addr: addr.clone(),
            error: Arc::new(e),
        };
        let endpoint = self.quic.for_dial(to, &self.config).map_err(transport)?;
        let (config, refusal) = client_config(&self.security.tls, &self.config)
            .map_err(|e| transport(std::io::Error::other(e)))?;
        let connecting = endpoint
            .connect_with(config, to, SERVER_NAME)
            .map_err(|e| transport(std::io::Error::other(e)))?;
        let conn = connecting.await.map_err(|e| {
            // quinn passes a verifier's error on as text; the slot has it typed.
            upgrade(match refusal.take() {
                Some(tls) => UpgradeError::Tls(tls),
                None => UpgradeError::Quic(std::io::Error::other(e)),
            })
        })?;
        let peer = peer_of(&conn).map_err(upgrade)?;
        Ok((Muxed::Quic(conn), peer))
    }
}

/// Accepts QUIC connections on `endpoint` until the node shuts down.
async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint, local: Multiaddr) {
    loop {
        let incoming = tokio::select! {
            _ = shared.cancelled() => return,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else {
            shared.emit(NodeEvent::ListenerError {
                address: local,
                error: Arc::new(std::io::Error::other("the QUIC endpoint closed")),
            });
            return;
        };
        let remote = incoming.remote_address();
        // With the table full, a place goes only to an address that proved it receives our
        // packets: over UDP a sender's address can be forged, and forged Initials would push
        // honest handshakes out. Retry costs an honest client one round trip, only then.
        if shared.pending().is_full()
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            if let Err(e) = incoming.retry() {
                tracing::debug!(error = %e, "QUIC retry not sent");
            }
            continue;
        }
        // An Initial packet has arrived: the connection has spoken.
        let slot = shared.pending().admit(remote.ip());
        slot.progressed();
        #[cfg(feature = "metrics")]
        let pending = shared.config.metrics.inner.inbound_handshake();
        let setup = handshake(shared.clone(), incoming, multiaddr(remote), slot);
        let task = tokio::spawn(async move {
            setup.await;
            #[cfg(feature = "metrics")]
            drop(pending);
        });
        shared.track_task(task);
    }
}

/// Completes one inbound QUIC handshake within the setup deadline and hands the connection
/// to the node.
async fn handshake(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    remote_addr: Multiaddr,
    slot: PendingSlot,
) {
    let evicted = slot.evicted();
    let setup = async {
        let connecting = incoming
            .accept()
            .map_err(|e| IncomingError::Upgrade(quic_error(e)))?;
        let conn = connecting
            .await
            .map_err(|e| IncomingError::Upgrade(quic_error(e)))?;
        #[cfg(feature = "webtransport")]
        if let Some(certificates) = shared.quic.certificates() {
            if super::webtransport::is_h3(&conn) {
                return super::webtransport::accept_session(&shared, conn, &certificates)
                    .await
                    .map_err(IncomingError::Upgrade);
            }
            // Only HTTP/3 uses unidirectional streams; a libp2p peer gets none.
            conn.set_max_concurrent_uni_streams(0u32.into());
        }
        let peer = peer_of(&conn).map_err(IncomingError::Upgrade)?;
        Ok::<_, IncomingError>((Muxed::Quic(conn), peer))
    };
    let result = tokio::select! {
        _ = shared.cancelled() => return,
        () = evicted.cancelled() => Err(IncomingError::TooManyPendingHandshakes),
        r = tokio::time::timeout(shared.config.connection_setup_timeout, setup) => {
            r.unwrap_or(Err(IncomingError::Upgrade(UpgradeError::Timeout)))
        }
    };
    drop(slot);
    shared.inbound_done(result, remote_addr).await;
}

impl Driver {
    /// Runs a QUIC connection: admits the peer's streams, closes when idle, on request or at
    /// shutdown. Outbound streams open without it ([`super::connection::ConnectionHandle::open`]).
    pub(crate) async fn drive_quic(
        &mut self,
        shared: &Arc<Shared>,
        conn: quinn::Connection,
    ) -> CloseCause {
        let idle_timeout = shared.config.idle_timeout;
        let idle_timer = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle_timer);
        let cancelled = self.handle.close.clone().cancelled_owned();
        tokio::pin!(cancelled);
        let cause = loop {
            tokio::select! {
                () = &mut cancelled => {
                    break if shared.is_shutting_down() {
                        CloseCause::Shutdown
                    } else {
                        CloseCause::LocalClose
                    };
                }
                accepted = conn.accept_bi() => match accepted {
                    Ok((send, recv)) => on_inbound(
                        shared,
                        &self.handle,
                        Substream::Quic(QuicStream::new(send, recv)),
                    ),
                    Err(e) => break close_cause(e),
                },
                () = &mut idle_timer => {
                    match self.handle.activity.idle_since() {
                        Some(since) => {
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
            conn.close(0u32.into(), b"");
        }
        cause
    }
}

pub(crate) fn close_cause(e: quinn::ConnectionError) -> CloseCause {
    match e {
        quinn::ConnectionError::ApplicationClosed(_)
        | quinn::ConnectionError::ConnectionClosed(_) => CloseCause::RemoteClosed,
        quinn::ConnectionError::LocallyClosed => CloseCause::LocalClose,
        quinn::ConnectionError::TimedOut => CloseCause::Error(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the QUIC connection timed out",
        ))),
        other => CloseCause::Error(Arc::new(std::io::Error::other(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_addresses_give_their_socket_address_and_others_none() {
        let a: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().expect("addr");
        assert_eq!(target(&a), Some("127.0.0.1:4001".parse().expect("socket")));
        assert_eq!(multiaddr("127.0.0.1:4001".parse().expect("socket")), a);
        let with_peer = a
            .clone()
            .with(Protocol::P2p(crate::p2p::Keypair::generate().peer_id()));
        assert!(target(&with_peer).is_some());
        for other in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/udp/4001",
            "/ip6/::1/udp/1/quic-v1/ws",
            "/dns4/localhost/udp/1/quic-v1",
        ] {
            let m: Multiaddr = other.parse().expect("addr");
            assert_eq!(target(&m), None, "{other}");
        }
    }
}
