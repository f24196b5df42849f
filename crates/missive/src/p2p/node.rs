//! [`Node`]: listens, dials, keeps one pool of connections per peer and routes inbound
//! streams to the protocols registered through [`crate::stream::Control`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{
    CloseCause, ConnectionHandle, ConnectionId, NegotiatingGuard, StreamGuard, StreamOpenFailure,
    StreamRefusal, new_connection,
};
use super::events::{DialError, Events, IncomingError, ListenError, NewNodeError, NodeEvent};
use super::inbound::{Transport, accept_loop};
use super::multiaddr::{DnsFamily, TcpHost};
use super::negotiate::{NegotiationError, Version};
use super::negotiated::{NegotiateError, dialer_select, listener_select};
use super::noise::{NoiseConfig, NoiseError};
use super::streams::{AlreadyRegistered, IncomingStreams, OpenStreamError, Stream, StreamProtocol};
use super::substream::Substream;
use super::tls::{TlsConfig, TlsError};
use super::upgrade::{Endpoint, SecurityConfigs, UpgradeError, Wire, refused_security, upgrade};
use super::{Keypair, Multiaddr, NodeConfig, PeerId};
use crate::transport::pending::Pending;

/// A libp2p-compatible node: TCP + Noise or libp2p-tls + Yamux, one task per connection.
///
/// `Node` is a cheap, cloneable handle. When the last handle (including every
/// [`Control`](crate::stream::Control)) is dropped the node shuts down; [`Node::shutdown`] does it explicitly and
/// waits for the connections to close.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    _alive: Arc<ShutdownOnDrop>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.shared.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node that serves no protocol yet. [`Node::new`], defined with the standard protocols
    /// it installs (`crate::protocols`), builds on it.
    pub(crate) fn bare(keypair: &Keypair, config: NodeConfig) -> Result<Self, NewNodeError> {
        let security = SecurityConfigs {
            noise: NoiseConfig::new(keypair).map_err(NewNodeError::Noise)?,
            tls: TlsConfig::new(keypair).map_err(NewNodeError::Tls)?,
        };
        let (events, _) = broadcast::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            peer_id: keypair.peer_id(),
            pending: Arc::new(Pending::new(
                config.max_pending_incoming,
                config.max_pending_incoming_per_ip,
            )),
            config,
            security,
            quic: super::quic::Endpoints::default(),
            state: Mutex::new(State::default()),
            router: Mutex::new(HashMap::new()),
            events,
            cancel: CancellationToken::new(),
            next_id: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
        });
        Ok(Self {
            _alive: Arc::new(ShutdownOnDrop(shared.clone())),
            shared,
        })
    }

    /// This node's identity.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Subscribes to node events from now on.
    pub fn events(&self) -> Events {
        Events::new(self.shared.events.subscribe())
    }

    /// Listens on a `/ip4|ip6/<ip>/tcp/<port>` address, `/ip4|ip6/<ip>/udp/<port>/quic-v1`,
    /// (feature `websocket`) `/tcp/<port>/ws`, `/tls/ws` or `/wss`, or (feature `webtransport`)
    /// `/ip4|ip6/<ip>/udp/<port>/quic-v1/webtransport` (port 0 picks one) and returns the actual
    /// address. WebTransport shares the QUIC socket of the same port when the node has one; its
    /// address carries the `/certhash` of the certificates it presents (see
    /// [`super::webtransport`]).
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, ListenError> {
        #[cfg(feature = "webtransport")]
        let webtransport = super::webtransport::target(&addr);
        #[cfg(not(feature = "webtransport"))]
        let webtransport: Option<SocketAddr> = None;
        let quic = super::quic::target(&addr);
        if let Some(udp) = webtransport.or(quic) {
            if self.shared.cancel.is_cancelled() {
                return Err(ListenError::ShuttingDown);
            }
            #[cfg(feature = "webtransport")]
            let local = if webtransport.is_some() {
                self.shared.listen_webtransport(udp)?
            } else {
                self.shared.listen_quic(udp)?
            };
            #[cfg(not(feature = "webtransport"))]
            let local = self.shared.listen_quic(udp)?;
            self.shared.lock_state().listen_addrs.push(local.clone());
            self.shared.emit(NodeEvent::NewListenAddr {
                address: local.clone(),
            });
            return Ok(local);
        }
        #[cfg(feature = "websocket")]
        if let Some(ws) = super::websocket::target(&addr) {
            if self.shared.cancel.is_cancelled() {
                return Err(ListenError::ShuttingDown);
            }
            let (listener, local, listening) = self.shared.listen_websocket(&addr, ws).await?;
            let transport = Transport::WebSocket(Arc::new(listening));
            return Ok(self.shared.serve_listener(listener, local, transport));
        }
        let target = addr
            .tcp_target()
            .ok_or_else(|| ListenError::UnsupportedAddress(addr.clone()))?;
        let TcpHost::Ip(ip) = target.host else {
            return Err(ListenError::UnsupportedAddress(addr));
        };
        if self.shared.cancel.is_cancelled() {
            return Err(ListenError::ShuttingDown);
        }
        let bound = SocketAddr::new(ip, target.port);
        let listener = crate::transport::tcp::bind_with(bound, &self.shared.config.socket)
            .await
            .map_err(ListenError::Io)?;
        let local = Multiaddr::from_socket_addr(listener.local_addr().map_err(ListenError::Io)?);
        Ok(self.shared.serve_listener(listener, local, Transport::Tcp))
    }

    /// The addresses this node listens on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared.listen_addrs()
    }

    /// Dials `addr`; a trailing `/p2p/<peer>` is checked against the remote's proven identity
    /// and reuses an existing connection to that peer. Returns the remote's PeerId.
    ///
    /// Dials to the same PeerId share one attempt, which tries the peer's known addresses a few
    /// at a time (staggered by 250 ms) and keeps the first connection made. The whole attempt
    /// (TCP, Noise, Yamux, every address) has the
    /// [`NodeConfig::with_connection_setup_timeout`] deadline; addresses that fail are forgotten.
    ///
    /// # Cancel safety
    /// The dial runs in its own task: dropping this future stops waiting for it but not the
    /// dial, and the connection, once made, stays in the pool.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, DialError> {
        match addr.peer_id() {
            Some(peer) => {
                self.add_address(peer, addr.without_peer_id());
                let addrs = [addr.without_peer_id()];
                self.shared
                    .connection_to(peer, &addrs)
                    .await
                    .map(|h| h.peer)
            }
            None => self.shared.dial_unknown(addr).await.map(|h| h.peer),
        }
    }

    /// Connects to `peer` with the addresses in the address book, unless already connected.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<(), DialError> {
        self.shared.connection_to(peer, &[]).await.map(|_| ())
    }

    /// Adds an address of `peer` to the address book (at most 16 per peer are kept).
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        self.shared.add_address(peer, addr);
    }

    /// The addresses of `peer` in the address book, oldest first. An address is added by
    /// [`Node::add_address`] and by dials, and forgotten when a dial to it fails.
    pub fn addresses_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.shared
            .lock_state()
            .addresses
            .get(peer)
            .cloned()
            .unwrap_or_default()
    }

    /// `true` when at least one connection to `peer` is open.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.shared
            .lock_state()
            .connections
            .get(peer)
            .is_some_and(|c| c.iter().any(ConnectionHandle::is_alive))
    }

    /// The peers with at least one open connection.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.shared
            .lock_state()
            .connections
            .iter()
            .filter(|(_, c)| c.iter().any(ConnectionHandle::is_alive))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Closes every connection to `peer`.
    pub fn close_peer(&self, peer: &PeerId) {
        if let Some(conns) = self.shared.lock_state().connections.get(peer) {
            for c in conns {
                c.close.cancel();
            }
        }
    }

    /// Stops listening, closes every connection (yamux GoAway) and waits, at most 5 s, for
    /// the connection tasks to end.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.lock_router().clear();
        let tasks = std::mem::take(&mut self.shared.lock_state().tasks);
        let all = futures_util::future::join_all(tasks);
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
        // After the connections said goodbye: closing a socket drops what it still sends.
        self.shared.quic.close_all();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Shuts the node down when the last handle goes: connections and listeners stop, and the
/// protocol registrations end so that tasks serving them finish.
#[derive(Debug)]
struct ShutdownOnDrop(Arc<Shared>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.cancel.cancel();
        self.0.lock_router().clear();
    }
}

/// Addresses of one peer dialed at once.
const DIAL_CONCURRENCY: usize = 3;

/// How long a dial waits for the addresses it tries before it starts another one.
const DIAL_STAGGER: Duration = Duration::from_millis(250);

/// Most addresses kept per peer in the address book.
const MAX_ADDRESSES_PER_PEER: usize = 16;

type DialWaiter = oneshot::Sender<Result<ConnectionHandle, DialError>>;

/// State shared by the node's handles and tasks.
pub(crate) struct Shared {
    pub(crate) peer_id: PeerId,
    pub(crate) config: NodeConfig,
    /// Noise and libp2p-tls, for TCP; QUIC uses the TLS one too.
    pub(crate) security: SecurityConfigs,
    /// The node's UDP sockets.
    pub(crate) quic: super::quic::Endpoints,
    state: Mutex<State>,
    router: Mutex<HashMap<String, Registration>>,
    events: broadcast::Sender<NodeEvent>,
    pending: Arc<Pending>,
    cancel: CancellationToken,
    next_id: AtomicU64,
    /// The runtime the node was made on, where work started from outside it runs.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    connections: HashMap<PeerId, Vec<ConnectionHandle>>,
    dials: HashMap<PeerId, Vec<DialWaiter>>,
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    listen_addrs: Vec<Multiaddr>,
    tasks: Vec<JoinHandle<()>>,
}

struct Registration {
    id: u64,
    sink: Sink,
}

/// Where a registered protocol's negotiated inbound streams go. Cloned out of the router so
/// that no stream is handed over with the router locked.
#[derive(Clone)]
enum Sink {
    /// Queued for an [`IncomingStreams`], up to its backlog.
    Queue {
        tx: mpsc::Sender<(PeerId, Stream)>,
        overflow: Arc<AtomicU64>,
    },
    /// Run at once, in the task that negotiated the stream: no queue and no second task between
    /// the stream's first bytes and its handler.
    Inline(InlineHandler),
}

/// Takes one negotiated inbound stream and serves it to the end.
pub(crate) type InlineHandler = Arc<
    dyn Fn(PeerId, Stream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_router(&self) -> MutexGuard<'_, HashMap<String, Registration>> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        tracing::debug!(?event, "node event");
        #[cfg(feature = "metrics")]
        self.config.metrics.inner.observe(&event);
        let _ = self.events.send(event);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The runtime the node runs on.
    #[cfg_attr(not(feature = "request-response"), allow(dead_code))]
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The open connections to `peer`, oldest first.
    #[cfg_attr(not(feature = "request-response"), allow(dead_code))]
    pub(crate) fn live_connections(&self, peer: PeerId) -> Vec<ConnectionHandle> {
        self.lock_state()
            .connections
            .get(&peer)
            .map(|c| c.iter().filter(|h| h.is_alive()).cloned().collect())
            .unwrap_or_default()
    }

    /// Completes when the node shuts down.
    pub(crate) fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// The inbound connections in their handshake.
    pub(crate) fn pending(&self) -> &Arc<Pending> {
        &self.pending
    }

    /// Keeps `task` for shutdown to wait for, dropping the handles of finished ones.
    pub(crate) fn track_task(&self, task: JoinHandle<()>) {
        let mut st = self.lock_state();
        st.tasks.retain(|t| !t.is_finished());
        st.tasks.push(task);
    }

    /// Announces a bound TCP listener and starts its accept loop.
    fn serve_listener(
        self: &Arc<Self>,
        listener: TcpListener,
        local: Multiaddr,
        transport: Transport,
    ) -> Multiaddr {
        self.lock_state().listen_addrs.push(local.clone());
        self.emit(NodeEvent::NewListenAddr {
            address: local.clone(),
        });
        let task = tokio::spawn(accept_loop(
            self.clone(),
            listener,
            local.clone(),
            transport,
        ));
        self.lock_state().tasks.push(task);
        local
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        let mut st = self.lock_state();
        let list = st.addresses.entry(peer).or_default();
        if !list.contains(&addr) {
            if list.len() >= MAX_ADDRESSES_PER_PEER {
                list.remove(0);
            }
            list.push(addr);
        }
    }

    /// An open connection to `peer`, or a new one through a single shared dial.
    pub(crate) async fn connection_to(
        self: &Arc<Self>,
        peer: PeerId,
        extra: &[Multiaddr],
    ) -> Result<ConnectionHandle, DialError> {
        for a in extra {
            self.add_address(peer, a.without_peer_id());
        }
        let rx = {
            let mut st = self.lock_state();
            if let Some(h) = st
                .connections
                .get(&peer)
                .and_then(|c| c.iter().find(|h| h.is_alive()))
            {
                return Ok(h.clone());
            }
            if self.cancel.is_cancelled() {
                return Err(DialError::ShuttingDown);
            }
            let (tx, rx) = oneshot::channel();
            if let Some(waiters) = st.dials.get_mut(&peer) {
                waiters.push(tx);
            } else {
                st.dials.insert(peer, vec![tx]);
                let addrs = st.addresses.get(&peer).cloned().unwrap_or_default();
                let shared = self.clone();
                let task = tokio::spawn(async move { shared.dial_task(peer, addrs).await });
                st.tasks.retain(|t| !t.is_finished());
                st.tasks.push(task);
            }
            rx
        };
        rx.await.map_err(|_| DialError::ShuttingDown)?
    }

    /// Dials an address without a known PeerId (no deduplication).
    async fn dial_unknown(
        self: &Arc<Self>,
        addr: Multiaddr,
    ) -> Result<ConnectionHandle, DialError> {
        if self.cancel.is_cancelled() {
            return Err(DialError::ShuttingDown);
        }
        let (tx, rx) = oneshot::channel();
        let shared = self.clone();
        let task = tokio::spawn(async move {
            match shared.attempt(&addr, None).await {
                Ok((driver_parts, peer)) => {
                    shared.add_address(peer, addr.without_peer_id());
                    shared
                        .establish(driver_parts, peer, Endpoint::Dialer, addr, false, vec![tx])
                        .await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        {
            let mut st = self.lock_state();
            st.tasks.retain(|t| !t.is_finished());
            st.tasks.push(task);
        }
        rx.await.map_err(|_| DialError::ShuttingDown)?
    }

    /// Dials `addrs` a few at a time under one deadline; answers every waiter; then runs the
    /// connection.
    async fn dial_task(self: Arc<Self>, peer: PeerId, addrs: Vec<Multiaddr>) {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let error = match self.dial_any(peer, &addrs).await {
            Ok((muxed, addr)) => {
                #[cfg(feature = "metrics")]
                self.config.metrics.inner.dialed(started);
                self.establish(muxed, peer, Endpoint::Dialer, addr, true, Vec::new())
                    .await;
                return;
            }
            Err(e) => e,
        };
        let waiters = self.lock_state().dials.remove(&peer).unwrap_or_default();
        for w in waiters {
            let _ = w.send(Err(error.clone()));
        }
    }

    /// The first of `addrs` to give a secured, multiplexed connection. Up to
    /// [`DIAL_CONCURRENCY`] are tried at once; the next one starts when one fails, or
    /// [`DIAL_STAGGER`] after the last start while all are still trying. The whole dial has the
    /// connection setup deadline. An address that failed, or was still trying at the deadline,
    /// is forgotten.
    async fn dial_any(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
    ) -> Result<(super::connection::Muxed, Multiaddr), DialError> {
        let deadline = Instant::now() + self.config.connection_setup_timeout;
        let mut waiting = addrs.iter();
        let mut trying: Vec<Multiaddr> = Vec::new();
        let mut running = FuturesUnordered::new();
        let mut last = DialError::NoAddresses(peer);
        loop {
            if running.len() < DIAL_CONCURRENCY
                && let Some(addr) = waiting.next()
            {
                trying.push(addr.clone());
                running.push(async move { (addr, self.attempt(addr, Some(peer)).await) });
            }
            if running.is_empty() {
                return Err(last);
            }
            let may_start = waiting.len() > 0 && running.len() < DIAL_CONCURRENCY;
            tokio::select! {
                Some((addr, result)) = running.next() => {
                    trying.retain(|a| a != addr);
                    match result {
                        Ok((muxed, _)) => return Ok((muxed, addr.clone())),
                        Err(DialError::ShuttingDown) => return Err(DialError::ShuttingDown),
                        Err(e) => {
                            tracing::debug!(%peer, %addr, error = %e, "address failed; forgotten");
                            self.forget_address(peer, addr);
                            last = e;
                        }
                    }
                }
                () = tokio::time::sleep(DIAL_STAGGER), if may_start => {}
                () = tokio::time::sleep_until(deadline) => {
                    for addr in &trying {
                        self.forget_address(peer, addr);
                    }
                    return Err(DialError::Timeout {
                        peer,
                        tried: addrs.len() - waiting.len(),
                    });
                }
            }
        }
    }

    fn forget_address(&self, peer: PeerId, addr: &Multiaddr) {
        let mut st = self.lock_state();
        if let Some(list) = st.addresses.get_mut(&peer) {
            list.retain(|a| a != addr);
            if list.is_empty() {
                st.addresses.remove(&peer);
            }
        }
    }

    /// TCP connect + upgrade within the setup deadline.
    async fn attempt(
        &self,
        addr: &Multiaddr,
        expected: Option<PeerId>,
    ) -> Result<(super::connection::Muxed, PeerId), DialError> {
        if expected == Some(self.peer_id) {
            return Err(DialError::LocalPeer);
        }
        let quic = super::quic::target(addr);
        let tcp_target = addr.tcp_target();
        #[cfg(feature = "websocket")]
        let ws_target = super::websocket::target(addr);
        #[cfg(not(feature = "websocket"))]
        let ws_target: Option<std::convert::Infallible> = None;
        if quic.is_none() && tcp_target.is_none() && ws_target.is_none() {
            return Err(DialError::UnsupportedAddress(addr.clone()));
        }
        #[cfg(feature = "metrics")]
        self.config.metrics.inner.outbound_handshake();
        let work = async {
            let secured = match (quic, tcp_target, ws_target) {
                (Some(udp), _, _) => self.dial_quic(addr, udp).await?,
                (None, Some(target), _) => {
                    self.dial_stream(addr, expected, Connect::Tcp(&target))
                        .await?
                }
                #[cfg(feature = "websocket")]
                (None, None, Some(ws)) => {
                    self.dial_stream(addr, expected, Connect::WebSocket(&ws))
                        .await?
                }
                _ => return Err(DialError::UnsupportedAddress(addr.clone())),
            };
            let (muxed, peer) = secured;
            if peer == self.peer_id {
                return Err(DialError::LocalPeer);
            }
            if let Some(expected) = expected
                && peer != expected
            {
                return Err(DialError::WrongPeer {
                    expected,
                    actual: peer,
                });
            }
            Ok((muxed, peer))
        };
        let result = tokio::select! {
            _ = self.cancel.cancelled() => Err(DialError::ShuttingDown),
            r = tokio::time::timeout(self.config.connection_setup_timeout, work) => match r {
                Ok(r) => r,
                Err(_) => Err(DialError::Upgrade {
                    addr: addr.clone(),
                    error: Arc::new(UpgradeError::Timeout),
                }),
            },
        };
        #[cfg(feature = "metrics")]
        if let Err(e) = &result {
            self.config.metrics.inner.outbound_failed(e);
        }
        result
    }

    /// Connects a byte stream (TCP, or a WebSocket over it), then security and yamux.
    async fn dial_stream(
        &self,
        addr: &Multiaddr,
        expected: Option<PeerId>,
        target: Connect<'_>,
    ) -> Result<(super::connection::Muxed, PeerId), DialError> {
        let transport = |e: io::Error| DialError::Transport {
            addr: addr.clone(),
            error: Arc::new(e),
        };
        // The first protocol goes alone, lazily; a refusal costs a new connection for the next.
        let mut last = None;
        for &proposal in &self.config.security {
            let wire = target.connect(&self.config).await.map_err(transport)?;
            match upgrade(
                wire,
                &self.security,
                &self.config,
                Endpoint::Dialer,
                expected,
                Some(proposal),
            )
            .await
            {
                Ok(done) => return Ok(done),
                Err(e) if refused_security(&e) => {
                    tracing::debug!(%addr, ?proposal, "security protocol refused; trying the next");
                    last = Some(e);
                }
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        Err(match last {
            Some(
                UpgradeError::Noise(NoiseError::PeerIdMismatch { expected, actual })
                | UpgradeError::Tls(TlsError::PeerIdMismatch { expected, actual }),
            ) => DialError::WrongPeer { expected, actual },
            Some(e) => DialError::Upgrade {
                addr: addr.clone(),
                error: Arc::new(e),
            },
            None => DialError::UnsupportedAddress(addr.clone()),
        })
    }

    /// Registers a new connection (within the per-peer limit), answers the waiters (those of
    /// the shared dial to `peer` too when `dial_waiters`), announces it and starts the task that
    /// runs it until it closes.
    pub(crate) async fn establish(
        self: &Arc<Self>,
        muxed: super::connection::Muxed,
        peer: PeerId,
        endpoint: Endpoint,
        remote_addr: Multiaddr,
        dial_waiters: bool,
        mut waiters: Vec<DialWaiter>,
    ) {
        let driver = {
            let mut st = self.lock_state();
            if dial_waiters {
                waiters.extend(st.dials.remove(&peer).unwrap_or_default());
            }
            let conns = st.connections.entry(peer).or_default();
            conns.retain(ConnectionHandle::is_alive);
            if conns.len() >= self.config.max_connections_per_peer || self.cancel.is_cancelled() {
                drop(st);
                let err = if self.cancel.is_cancelled() {
                    DialError::ShuttingDown
                } else {
                    DialError::ConnectionLimit(peer)
                };
                if endpoint == Endpoint::Listener {
                    self.emit(NodeEvent::IncomingConnectionError {
                        remote_addr,
                        error: Arc::new(IncomingError::ConnectionLimit(peer)),
                    });
                }
                for w in waiters {
                    let _ = w.send(Err(err.clone()));
                }
                return;
            }
            let id = ConnectionId(self.next_id());
            let driver = new_connection(
                id,
                peer,
                endpoint,
                muxed,
                remote_addr.clone(),
                self.cancel.child_token(),
            );
            conns.push(driver.handle.clone());
            driver
        };
        self.emit(NodeEvent::ConnectionEstablished {
            peer,
            connection: driver.handle.id,
            endpoint,
            remote_addr,
        });
        for w in waiters {
            let _ = w.send(Ok(driver.handle.clone()));
        }
        // The connection runs in a task of its own, so that the setup's state (the upgrade
        // future and its task) is freed now. During shutdown the driver runs here instead,
        // in a task that shutdown already waits for.
        let mut st = self.lock_state();
        if self.cancel.is_cancelled() {
            drop(st);
            driver.run(self.clone()).await;
            return;
        }
        let span = tracing::debug_span!(
            "connection",
            id = driver.handle.id.0,
            peer = %driver.handle.peer,
            endpoint = ?endpoint,
        );
        let task = tokio::spawn(tracing::Instrument::instrument(
            driver.run(self.clone()),
            span,
        ));
        st.tasks.retain(|t| !t.is_finished());
        st.tasks.push(task);
    }

    pub(crate) fn connection_closed(
        &self,
        handle: &ConnectionHandle,
        endpoint: Endpoint,
        cause: CloseCause,
    ) {
        handle.close.cancel();
        {
            let mut st = self.lock_state();
            if let Some(conns) = st.connections.get_mut(&handle.peer) {
                conns.retain(|c| c.id != handle.id);
                if conns.is_empty() {
                    st.connections.remove(&handle.peer);
                }
            }
        }
        self.emit(NodeEvent::ConnectionClosed {
            peer: handle.peer,
            connection: handle.id,
            endpoint,
            cause,
        });
    }

    /// Puts `hashes` into every WebTransport listen address (after a certificate rotation)
    /// and announces the new addresses.
    #[cfg(feature = "webtransport")]
    pub(crate) fn replace_certhashes(&self, hashes: &[Vec<u8>]) {
        let changed: Vec<Multiaddr> = {
            let mut st = self.lock_state();
            st.listen_addrs
                .iter_mut()
                .filter(|a| a.iter().any(|p| matches!(p, super::Protocol::WebTransport)))
                .map(|a| {
                    *a = super::webtransport::with_certhashes(a, hashes);
                    a.clone()
                })
                .collect()
        };
        for address in changed {
            self.emit(NodeEvent::NewListenAddr { address });
        }
    }

    /// The addresses the node listens on.
    pub(crate) fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.lock_state().listen_addrs.clone()
    }

    /// The protocols registered for inbound streams, in name order.
    pub(crate) fn protocols(&self) -> Vec<StreamProtocol> {
        let mut names: Vec<StreamProtocol> = self
            .lock_router()
            .keys()
            .filter_map(|name| StreamProtocol::try_from_owned(name.clone()).ok())
            .collect();
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names
    }

    /// Registers `protocol` with a backlog of the node's configured size.
    pub(crate) fn register(
        self: &Arc<Self>,
        protocol: StreamProtocol,
    ) -> Result<IncomingStreams, AlreadyRegistered> {
        let (tx, rx) = mpsc::channel(self.config.inbound_backlog.max(1));
        let overflow = Arc::new(AtomicU64::new(0));
        let sink = Sink::Queue {
            tx,
            overflow: overflow.clone(),
        };
        let id = self.insert_route(&protocol, sink)?;
        Ok(IncomingStreams {
            rx,
            protocol,
            registration: id,
            overflow,
            shared: self.clone(),
        })
    }

    /// Registers `protocol` with a handler run in each stream's negotiation task. Returns the
    /// registration's id, for [`Shared::deregister`].
    pub(crate) fn register_inline(
        &self,
        protocol: &StreamProtocol,
        handler: InlineHandler,
    ) -> Result<u64, AlreadyRegistered> {
        self.insert_route(protocol, Sink::Inline(handler))
    }

    fn insert_route(
        &self,
        protocol: &StreamProtocol,
        sink: Sink,
    ) -> Result<u64, AlreadyRegistered> {
        let mut router = self.lock_router();
        if router.contains_key(protocol.as_str()) {
            return Err(AlreadyRegistered(protocol.clone()));
        }
        let id = self.next_id();
        router.insert(protocol.as_str().to_owned(), Registration { id, sink });
        Ok(id)
    }

    pub(crate) fn deregister(&self, protocol: &StreamProtocol, id: u64) {
        let mut router = self.lock_router();
        if router.get(protocol.as_str()).is_some_and(|r| r.id == id) {
            router.remove(protocol.as_str());
        }
    }

    /// Negotiates an inbound stream and hands it to its protocol's backlog.
    pub(crate) async fn serve_inbound(
        self: Arc<Self>,
        peer: PeerId,
        s: Substream,
        guard: StreamGuard,
        negotiating: NegotiatingGuard,
    ) {
        let selected = tokio::time::timeout(
            self.config.negotiation_timeout,
            listener_select(s, |p| self.lock_router().contains_key(p)),
        )
        .await;
        drop(negotiating);
        let Ok(Ok((protocol, io))) = selected else {
            return; // dropping the stream resets it
        };
        let Ok(protocol) = StreamProtocol::try_from_owned(protocol) else {
            return;
        };
        tracing::debug!(%peer, %protocol, "inbound stream negotiated");
        #[cfg(feature = "metrics")]
        self.config
            .metrics
            .inner
            .stream(Endpoint::Listener, protocol.as_str());
        let stream = Stream::new(io, protocol.clone(), peer, guard);
        let Some(sink) = self
            .lock_router()
            .get(protocol.as_str())
            .map(|reg| reg.sink.clone())
        else {
            return;
        };
        match sink {
            // A handler may look at the routes (identify does).
            Sink::Inline(handler) => handler(peer, stream).await,
            Sink::Queue { tx, overflow } => {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send((peer, stream)) {
                    overflow.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, %protocol, "inbound stream backlog full; stream reset");
                    self.emit(NodeEvent::InboundStreamRefused {
                        peer,
                        reason: StreamRefusal::BacklogFull(protocol.as_str().to_owned()),
                    });
                }
            }
        }
    }

    /// Opens and negotiates an outbound stream, dialing first when there is no connection.
    pub(crate) async fn open_stream(
        self: &Arc<Self>,
        peer: PeerId,
        addresses: &[Multiaddr],
        protocols: &[StreamProtocol],
        version: Version,
    ) -> Result<(Stream, StreamProtocol), OpenStreamError> {
        if protocols.is_empty() {
            return Err(OpenStreamError::NoProtocol);
        }
        let handle = self
            .connection_to(peer, addresses)
            .await
            .map_err(OpenStreamError::Dial)?;
        tokio::time::timeout(
            self.config.negotiation_timeout,
            self.open_stream_on(&handle, protocols, version),
        )
        .await
        .map_err(|_| OpenStreamError::Timeout)?
    }

    /// Opens and negotiates an outbound stream on `connection`, with no deadline of its own.
    pub(crate) async fn open_stream_on(
        &self,
        connection: &ConnectionHandle,
        protocols: &[StreamProtocol],
        version: Version,
    ) -> Result<(Stream, StreamProtocol), OpenStreamError> {
        if protocols.is_empty() {
            return Err(OpenStreamError::NoProtocol);
        }
        let (s, guard) = connection
            .open(self.config.max_streams_per_connection)
            .await
            .map_err(|e| match e {
                StreamOpenFailure::TooManyStreams => OpenStreamError::TooManyStreams,
                StreamOpenFailure::Closed => OpenStreamError::ConnectionClosed,
            })?;
        let names = protocols.iter().map(|p| p.as_str().to_owned());
        let (chosen, io) = dialer_select(s, names, version)
            .await
            .map_err(|e| match e {
                NegotiateError::Protocol(NegotiationError::Unsupported) => {
                    OpenStreamError::UnsupportedProtocol(protocols.to_vec())
                }
                NegotiateError::Protocol(e) => OpenStreamError::Protocol(e),
                NegotiateError::Io(e) => OpenStreamError::Io(e),
            })?;
        let protocol = protocols
            .iter()
            .find(|p| p.as_str() == chosen)
            .cloned()
            .ok_or(OpenStreamError::Protocol(NegotiationError::Protocol(
                "peer selected a protocol that was not proposed",
            )))?;
        #[cfg(feature = "metrics")]
        self.config
            .metrics
            .inner
            .stream(Endpoint::Dialer, protocol.as_str());
        tracing::debug!(peer = %connection.peer, connection = connection.id.0, %protocol, "outbound stream negotiated");
        let stream = Stream::new(io, protocol.clone(), connection.peer, guard);
        Ok((stream, protocol))
    }
}

/// What a dial connects before the libp2p upgrade.
enum Connect<'a> {
    Tcp(&'a super::multiaddr::TcpTarget),
    #[cfg(feature = "websocket")]
    WebSocket(&'a super::websocket::WsTarget),
}

impl Connect<'_> {
    #[cfg_attr(not(feature = "websocket"), allow(unused_variables))]
    async fn connect(&self, config: &NodeConfig) -> io::Result<Wire> {
        match self {
            Connect::Tcp(t) => Ok(Wire::from(connect(&t.host, t.port).await?)),
            #[cfg(feature = "websocket")]
            Connect::WebSocket(ws) => {
                let tcp = connect(&ws.tcp.host, ws.tcp.port).await?;
                let tls = config.websocket_tls_client.as_ref();
                let ws = super::websocket::connect(tcp, ws, tls).await?;
                Ok(Wire::websocket(ws))
            }
        }
    }
}

async fn connect(host: &TcpHost, port: u16) -> io::Result<TcpStream> {
    match host {
        TcpHost::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, port)).await,
        TcpHost::Dns(name, family) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
            let addrs = tokio::net::lookup_host((name.as_str(), port)).await?;
            for a in addrs.take(8) {
                let ok = match family {
                    DnsFamily::Any => true,
                    DnsFamily::V4 => a.is_ipv4(),
                    DnsFamily::V6 => a.is_ipv6(),
                };
                if !ok {
                    continue;
                }
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Future as _, poll_fn};
    use std::task::Poll;

    use futures_util::StreamExt as _;

    use super::*;

    const PROTOCOL: StreamProtocol = StreamProtocol::new("/cancel-safety/1.0.0");
    const DEADLINE: Duration = Duration::from_secs(20);

    /// Dropping `open_stream` futures at every stage of their progress leaves the connection's
    /// stream slots free: with one slot, the next open succeeds and a second one is refused.
    #[tokio::test]
    async fn dropped_open_stream_futures_release_their_stream_slot() {
        let server = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("server");
        let mut incoming = server.stream_control().accept(PROTOCOL).expect("register");
        tokio::spawn(async move { while incoming.next().await.is_some() {} });
        let addr = server
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        let client = Node::new(
            Keypair::generate(),
            NodeConfig::default().with_max_streams_per_connection(1),
        )
        .await
        .expect("client");
        let peer = tokio::time::timeout(DEADLINE, client.dial(addr))
            .await
            .expect("dial in time")
            .expect("dial");
        let control = client.stream_control();
        let body = async {
            for polls in 0..12 {
                let mut open = Box::pin(control.open_stream(peer, PROTOCOL));
                for _ in 0..=polls {
                    let done = poll_fn(|cx| Poll::Ready(open.as_mut().poll(cx).is_ready())).await;
                    if done {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                drop(open);
            }
            let kept = control
                .open_stream(peer, PROTOCOL)
                .await
                .expect("the slot is free");
            let refused = control.open_stream(peer, PROTOCOL).await;
            assert!(matches!(refused, Err(OpenStreamError::TooManyStreams)));
            drop(kept);
        };
        tokio::time::timeout(DEADLINE, body).await.expect("in time");
    }
}
