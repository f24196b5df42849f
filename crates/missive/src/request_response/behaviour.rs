//! [`Behaviour`]: the cloneable request-response handle and the per-request tasks behind it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures_util::FutureExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::codec::Codec;
use super::config::{Config, OnPeerLimit};
use super::event_queue::{EventQueue, Events};
use super::events::{
    Event, InboundFailure, InboundRequestId, Message, OutboundFailure, OutboundRequestId,
    ResponseChannel,
};
use super::limits::{Limits, SlotGuard};
use crate::p2p::mux::is_connection_lost;
use crate::p2p::negotiated::is_protocol_refused;
use crate::p2p::{ConnectionId, Multiaddr, Node, PeerId};
use crate::stream::{
    AlreadyRegistered, InlineRegistration, InvalidProtocol, OpenStreamError, Stream, StreamProtocol,
};

/// In which directions a protocol is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolSupport {
    /// Requests are accepted; the protocol is never proposed on outbound streams.
    Inbound,
    /// Requests are sent; the protocol is answered `na` on inbound streams.
    Outbound,
    /// Both.
    Full,
}

impl ProtocolSupport {
    /// Whether inbound requests are accepted.
    pub fn inbound(self) -> bool {
        matches!(self, Self::Inbound | Self::Full)
    }

    /// Whether outbound requests are sent.
    pub fn outbound(self) -> bool {
        matches!(self, Self::Outbound | Self::Full)
    }
}

/// Why a [`Behaviour`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewBehaviourError {
    /// A protocol name is not a valid stream protocol (caller's mistake).
    #[error(transparent)]
    InvalidProtocol(#[from] InvalidProtocol),
    /// Another handler already accepts one of the inbound protocols on this node.
    #[error(transparent)]
    AlreadyRegistered(#[from] AlreadyRegistered),
}

/// The event stream was already taken by [`Behaviour::events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event stream of this behaviour was already taken")]
pub struct EventsTaken;

/// [`Behaviour::serve`] was called before: a behaviour has one handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this behaviour already serves its requests with a handler")]
pub struct AlreadyServing;

/// A request-response protocol (or protocol family) on a [`Node`]: send requests, receive them,
/// answer them. Cheap to clone; every clone drives the same protocol. Dropping the last clone
/// stops accepting requests (later proposals are answered `na`).
///
/// Each request runs on a new stream: the requester writes the request and closes its write
/// side, then reads the response to the end; the responder reads the request to the end,
/// writes the response and closes — the wire of rust-libp2p's request-response.
pub struct Behaviour<C: Codec> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Behaviour<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Codec> fmt::Debug for Behaviour<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behaviour")
            .field("peer_id", &self.inner.node.peer_id())
            .field(
                "outbound",
                &self
                    .inner
                    .core
                    .outbound
                    .iter()
                    .map(|(p, _)| p)
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.inner.core.config)
            .finish_non_exhaustive()
    }
}

type EventOf<C> = Event<<C as Codec>::Request, <C as Codec>::Response>;

/// A request handler set by [`Behaviour::serve`].
type Handler<C> = Arc<
    dyn Fn(
            PeerId,
            <C as Codec>::Request,
        ) -> Pin<Box<dyn Future<Output = <C as Codec>::Response> + Send>>
        + Send
        + Sync,
>;

struct Inner<C: Codec> {
    node: Node,
    core: Arc<Core<C>>,
    /// The inbound protocols; dropped with the behaviour, which deregisters them.
    _serving: Vec<InlineRegistration>,
}

/// What the per-request tasks share (no node handle: they must not keep the node alive).
struct Core<C: Codec> {
    /// Cloned for each request; behind a lock only so that `Core` is `Sync` for any codec.
    codec: Mutex<C>,
    config: Config,
    outbound: Vec<(StreamProtocol, C::Protocol)>,
    outbound_names: Vec<StreamProtocol>,
    limits: Arc<Limits>,
    next_id: AtomicU64,
    pending_outbound: Mutex<HashMap<u64, PeerId>>,
    pending_inbound: Mutex<HashMap<u64, PeerId>>,
    events: Arc<EventQueue<EventOf<C>>>,
    handler: OnceLock<Handler<C>>,
    #[cfg(feature = "metrics")]
    metrics: Arc<crate::metrics::request_response::RrHandles>,
}

impl<C: Codec> Drop for Core<C> {
    fn drop(&mut self) {
        // The behaviour and every task of it are gone: the reader sees the end.
        self.events.close();
    }
}

impl<C: Codec> Behaviour<C> {
    /// A behaviour with a `Default` codec. `protocols` lists the protocol names with the
    /// directions they are supported in; outbound requests propose the outbound ones in order.
    pub fn new(
        node: &Node,
        protocols: impl IntoIterator<Item = (C::Protocol, ProtocolSupport)>,
        config: Config,
    ) -> Result<Self, NewBehaviourError>
    where
        C: Default,
    {
        Self::with_codec(node, C::default(), protocols, config)
    }

    /// A behaviour with the given codec instance (for example one with other size limits).
    pub fn with_codec(
        node: &Node,
        codec: C,
        protocols: impl IntoIterator<Item = (C::Protocol, ProtocolSupport)>,
        config: Config,
    ) -> Result<Self, NewBehaviourError> {
        let control = node.stream_control();
        let mut outbound = Vec::new();
        let mut inbound = Vec::new();
        for (protocol, support) in protocols {
            let name = StreamProtocol::try_from_owned(protocol.as_ref().to_owned())?;
            if support.outbound() {
                outbound.push((name.clone(), protocol.clone()));
            }
            if support.inbound() {
                inbound.push((name, protocol));
            }
        }
        let events = Arc::new(EventQueue::new(config.event_capacity));
        #[cfg(feature = "metrics")]
        let metrics = config.metrics.for_protocol(
            outbound
                .first()
                .or(inbound.first())
                .map_or("", |(name, _)| name.as_ref()),
        );
        let core = Arc::new(Core {
            #[cfg(feature = "metrics")]
            metrics,
            codec: Mutex::new(codec),
            limits: Arc::new(Limits::new(
                config.max_concurrent_streams,
                config.max_requests_per_peer,
                config.peer_limits.clone(),
            )),
            config,
            outbound_names: outbound.iter().map(|(n, _)| n.clone()).collect(),
            outbound,
            next_id: AtomicU64::new(1),
            pending_outbound: Mutex::new(HashMap::new()),
            pending_inbound: Mutex::new(HashMap::new()),
            events,
            handler: OnceLock::new(),
        });
        // Each request is admitted (or refused, with its event) in the task that negotiated its
        // stream, and answered there.
        let serving = inbound
            .into_iter()
            .map(|(name, protocol)| {
                let core = core.clone();
                control.serve_inline(name, move |peer, stream| {
                    core.clone().admit(peer, stream, protocol.clone())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                node: node.clone(),
                core,
                _serving: serving,
            }),
        })
    }

    /// Sends `request` to `peer` (dialing a known address first when not connected) and
    /// returns at once; the outcome arrives as an [`Event`]: `Message::Response` or
    /// `OutboundFailure`.
    pub fn send_request(&self, peer: PeerId, request: C::Request) -> OutboundRequestId {
        self.send_request_with_addresses(peer, request, Vec::new())
    }

    /// Like [`Behaviour::send_request`], dialing `addresses` when not connected.
    pub fn send_request_with_addresses(
        &self,
        peer: PeerId,
        request: C::Request,
        addresses: Vec<Multiaddr>,
    ) -> OutboundRequestId {
        let core = self.inner.core.clone();
        let node = self.inner.node.clone();
        let id = core.track_outbound(peer);
        // On the node's runtime, so that a caller outside any runtime can send requests too.
        let runtime = node.shared().runtime().clone();
        let span = tracing::debug_span!("rr_request", id = id.0, %peer);
        let send = async move {
            let event = match core.outbound(&node, peer, &addresses, request).await {
                Ok((connection_id, response)) => Event::Message {
                    peer,
                    connection_id,
                    message: Message::Response {
                        request_id: id,
                        response,
                    },
                },
                Err((connection_id, error)) => Event::OutboundFailure {
                    peer,
                    connection_id,
                    request_id: id,
                    error,
                },
            };
            core.untrack_outbound(id);
            core.emit(event);
        };
        runtime.spawn(tracing::Instrument::instrument(send, span));
        id
    }

    /// Sends `request` to `peer` and waits for the response (or the failure). No event is
    /// emitted for it.
    ///
    /// # Cancel safety
    /// Dropping the future resets the request's stream; the responder sees its stream fail.
    pub async fn request(
        &self,
        peer: PeerId,
        request: C::Request,
    ) -> Result<C::Response, OutboundFailure> {
        self.request_with_addresses(peer, request, &[]).await
    }

    /// Like [`Behaviour::request`], dialing `addresses` when not connected.
    pub async fn request_with_addresses(
        &self,
        peer: PeerId,
        request: C::Request,
        addresses: &[Multiaddr],
    ) -> Result<C::Response, OutboundFailure> {
        let core = &self.inner.core;
        let id = core.track_outbound(peer);
        let _untrack = Untrack(core, id);
        let span = tracing::debug_span!("rr_request", id = id.0, %peer);
        let outbound = core.outbound(&self.inner.node, peer, addresses, request);
        tracing::Instrument::instrument(outbound, span)
            .await
            .map(|(_, r)| r)
            .map_err(|(_, e)| e)
    }

    /// Answers an inbound request. Gives the response back when the channel is closed (the
    /// request timed out or its connection closed).
    pub fn send_response(
        &self,
        channel: ResponseChannel<C::Response>,
        response: C::Response,
    ) -> Result<(), C::Response> {
        channel.tx.send(response)
    }

    /// The event stream. There is one: the first call takes it. Inbound requests reach the
    /// application through it unless [`Behaviour::serve`] answers them; the outcomes of
    /// [`Behaviour::send_request`], failures and refusals always come here.
    ///
    /// Protocol work never waits for the application to read: the last
    /// [`Config::with_event_capacity`] events are kept (also before the stream is taken), and
    /// when a new one does not fit the oldest is dropped and counted in [`Events::dropped`]. Once
    /// the stream is taken and dropped, no events are kept at all.
    pub fn events(&self) -> Result<Events<C::Request, C::Response>, EventsTaken> {
        Events::take(&self.inner.core.events).ok_or(EventsTaken)
    }

    /// Answers every inbound request with `handler(peer, request)`, in the request's own task,
    /// until the behaviour is dropped. Inbound requests no longer appear on the event stream;
    /// their failures and `ResponseSent` still do, with everything else (see
    /// [`Behaviour::events`]). A handler that panics, in its future or before returning it,
    /// fails only its request, as [`InboundFailure::ResponseOmission`] (the requester sees its
    /// stream reset); serving goes on.
    pub fn serve<F, Fut>(&self, handler: F) -> Result<(), AlreadyServing>
    where
        F: Fn(PeerId, C::Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = C::Response> + Send + 'static,
    {
        let handler: Handler<C> = Arc::new(move |peer, request| Box::pin(handler(peer, request)));
        self.inner
            .core
            .handler
            .set(handler)
            .map_err(|_| AlreadyServing)
    }

    /// `true` when a connection to `peer` is open.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.inner.node.is_connected(peer)
    }

    /// `true` while the outbound request `id` to `peer` has no outcome yet.
    pub fn is_pending_outbound(&self, peer: &PeerId, id: &OutboundRequestId) -> bool {
        lock(&self.inner.core.pending_outbound).get(&id.0) == Some(peer)
    }

    /// `true` while the inbound request `id` from `peer` has not been answered or failed.
    pub fn is_pending_inbound(&self, peer: &PeerId, id: &InboundRequestId) -> bool {
        lock(&self.inner.core.pending_inbound).get(&id.0) == Some(peer)
    }

    /// Sets (`Some`) or removes (`None`) the in-flight limit of `peer`, overriding
    /// [`Config::with_max_requests_per_peer`].
    pub fn set_peer_limit(&self, peer: PeerId, limit: Option<usize>) {
        self.inner.core.limits.set_peer_limit(peer, limit);
    }

    /// The node this behaviour runs on.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes an outbound request from the pending set when its future ends or is dropped.
struct Untrack<'a, C: Codec>(&'a Core<C>, OutboundRequestId);

impl<C: Codec> Drop for Untrack<'_, C> {
    fn drop(&mut self) {
        self.0.untrack_outbound(self.1);
    }
}

/// Removes an inbound request from the pending set when its task ends, however it ends (a
/// handler that panics, a runtime that shuts down).
struct UntrackInbound<C: Codec>(Arc<Core<C>>, InboundRequestId);

impl<C: Codec> Drop for UntrackInbound<C> {
    fn drop(&mut self) {
        lock(&self.0.pending_inbound).remove(&(self.1).0);
    }
}

impl<C: Codec> Core<C> {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn track_outbound(&self, peer: PeerId) -> OutboundRequestId {
        let id = self.next_id();
        lock(&self.pending_outbound).insert(id, peer);
        OutboundRequestId(id)
    }

    fn untrack_outbound(&self, id: OutboundRequestId) {
        lock(&self.pending_outbound).remove(&id.0);
    }

    /// Never waits: see [`EventQueue`].
    fn emit(&self, event: EventOf<C>) {
        #[cfg(feature = "metrics")]
        match &event {
            Event::ResponseSent { .. } => self.metrics.inbound_ended(None),
            Event::InboundFailure { error, .. } => {
                self.metrics.inbound_ended(Some(error));
            }
            _ => {}
        }
        let _dropped = self.events.push(event);
        #[cfg(feature = "metrics")]
        if _dropped {
            self.metrics.events_dropped.inc();
        }
    }

    /// One outbound request from start to response, within the request timeout.
    async fn outbound(
        &self,
        node: &Node,
        peer: PeerId,
        addresses: &[Multiaddr],
        request: C::Request,
    ) -> Result<(ConnectionId, C::Response), (Option<ConnectionId>, OutboundFailure)> {
        #[cfg(feature = "metrics")]
        let record = self.metrics.outbound();
        let result = self.outbound_exchange(node, peer, addresses, request).await;
        match &result {
            Ok((connection, _)) => tracing::debug!(connection = connection.0, "response received"),
            Err((_, error)) => tracing::debug!(%error, "request failed"),
        }
        #[cfg(feature = "metrics")]
        record.end(result.as_ref().err().map(|(_, e)| e));
        result
    }

    /// [`Core::outbound`] without its metrics.
    async fn outbound_exchange(
        &self,
        node: &Node,
        peer: PeerId,
        addresses: &[Multiaddr],
        request: C::Request,
    ) -> Result<(ConnectionId, C::Response), (Option<ConnectionId>, OutboundFailure)> {
        if self.outbound_names.is_empty() {
            return Err((None, OutboundFailure::UnsupportedProtocols));
        }
        let deadline = Instant::now() + self.config.request_timeout;
        let mut connection = None;
        // One deadline from the first step to the response: waiting for the peer limit,
        // dialing, opening the stream and the exchange itself.
        let outcome = tokio::time::timeout_at(deadline, async {
            let _peer_slot = match self.config.on_peer_limit {
                OnPeerLimit::Fail => self
                    .limits
                    .try_outbound(peer)
                    .ok_or(OutboundFailure::PeerLimit)?,
                _ => self.limits.outbound(peer).await,
            };
            let shared = node.shared();
            let mut open = shared.live_connections(peer);
            if open.is_empty() {
                let dialed = shared
                    .connection_to(peer, addresses)
                    .await
                    .map_err(OutboundFailure::DialFailure)?;
                open.push(dialed);
            }
            connection = open.first().map(|h| h.id);
            // The stream slot is taken before opening, so that a request over the limit never
            // reaches the peer; any connection to the peer with a free slot will do.
            let (handle, _stream_slot) = open
                .into_iter()
                .find_map(|h| self.limits.try_connection(h.id).map(|slot| (h, slot)))
                .ok_or(OutboundFailure::TooManyStreams)?;
            connection = Some(handle.id);
            let (mut stream, chosen) = shared
                .open_stream_on(&handle, &self.outbound_names, self.config.version)
                .await
                .map_err(open_failure)?;
            let protocol = self
                .outbound
                .iter()
                .find(|(n, _)| *n == chosen)
                .map(|(_, p)| p.clone())
                .ok_or(OutboundFailure::UnsupportedProtocols)?;
            let mut codec = lock(&self.codec).clone();
            let closed = stream.connection_closed();
            let exchange = async {
                codec.write_request(&protocol, &mut stream, request).await?;
                stream.shutdown().await?;
                let mut counted = CountingReader {
                    inner: &mut stream,
                    read: 0,
                };
                match codec.read_response(&protocol, &mut counted).await {
                    // Whatever the codec makes of an empty stream, the responder sent nothing:
                    // it refused the request (a limit) or dropped it without an answer.
                    Err(e)
                        if counted.read == 0
                            && !is_protocol_refused(&e)
                            && !is_connection_lost(&e) =>
                    {
                        Err(io::Error::new(io::ErrorKind::UnexpectedEof, NoResponse(e)))
                    }
                    r => r,
                }
            };
            let result = tokio::select! {
                biased;
                r = exchange => r,
                () = closed => return Err(OutboundFailure::ConnectionClosed),
            };
            // A lazy negotiation learns of a refusal at the first read; any other error is the
            // codec's or the stream's, whatever its kind.
            let response = result.map_err(|e| match e {
                e if is_protocol_refused(&e) => OutboundFailure::UnsupportedProtocols,
                e if is_connection_lost(&e) || stream.is_connection_closed() => {
                    tracing::debug!(%peer, error = %e, "request failed as its connection closed");
                    OutboundFailure::ConnectionClosed
                }
                e => OutboundFailure::Io(Arc::new(e)),
            })?;
            Ok((handle.id, response))
        })
        .await;
        match outcome {
            Ok(Ok(answered)) => Ok(answered),
            Ok(Err(e)) => Err((connection, e)),
            Err(_) => Err((connection, OutboundFailure::Timeout)),
        }
    }
}

fn open_failure(e: OpenStreamError) -> OutboundFailure {
    match e {
        OpenStreamError::UnsupportedProtocol(_) | OpenStreamError::NoProtocol => {
            OutboundFailure::UnsupportedProtocols
        }
        OpenStreamError::Dial(e) => OutboundFailure::DialFailure(e),
        OpenStreamError::Timeout => OutboundFailure::Timeout,
        OpenStreamError::ConnectionClosed => OutboundFailure::ConnectionClosed,
        OpenStreamError::TooManyStreams => OutboundFailure::TooManyStreams,
        OpenStreamError::Io(e) => OutboundFailure::Io(Arc::new(e)),
        other => OutboundFailure::Io(Arc::new(io::Error::new(
            io::ErrorKind::InvalidData,
            other.to_string(),
        ))),
    }
}

impl<C: Codec> Core<C> {
    /// Admits one inbound request within the per-connection and per-peer limits and answers
    /// it, or refuses it with an event.
    async fn admit(self: Arc<Self>, peer: PeerId, stream: Stream, protocol: C::Protocol) {
        let connection_id = stream.connection_id();
        let request_id = InboundRequestId(self.next_id());
        let slots = self.limits.try_connection(connection_id).map_or(
            Err(InboundFailure::TooManyStreams),
            |c| {
                self.limits
                    .try_inbound(peer)
                    .map(|p| (c, p))
                    .ok_or(InboundFailure::PeerLimit)
            },
        );
        match slots {
            Ok(slots) => {
                lock(&self.pending_inbound).insert(request_id.0, peer);
                let untrack = UntrackInbound(self.clone(), request_id);
                #[cfg(feature = "metrics")]
                let _in_flight = self.metrics.inbound();
                let span = tracing::debug_span!("rr_inbound", id = request_id.0, %peer, protocol = stream.protocol().as_str());
                let inbound = self.inbound(peer, (stream, slots), protocol, untrack);
                tracing::Instrument::instrument(inbound, span).await;
            }
            Err(error) => {
                drop(stream); // resets it
                tracing::debug!(%peer, %error, "inbound request refused");
                self.emit(Event::InboundFailure {
                    peer,
                    connection_id,
                    request_id,
                    error,
                });
            }
        }
    }
}

impl<C: Codec> Core<C> {
    /// One inbound request from its stream to the written response, within the timeout.
    /// The stream and its slots are released, and the request is no longer pending, before
    /// the closing event is emitted: an application slow to take events holds nothing.
    async fn inbound(
        &self,
        peer: PeerId,
        (mut stream, slots): (Stream, (SlotGuard, SlotGuard)),
        protocol: C::Protocol,
        untrack: UntrackInbound<C>,
    ) {
        let request_id = untrack.1;
        let connection_id = stream.connection_id();
        let deadline = Instant::now() + self.config.request_timeout;
        let closed = stream.connection_closed();
        let mut codec = lock(&self.codec).clone();
        let exchange = async {
            let request = codec
                .read_request(&protocol, &mut stream)
                .await
                .map_err(Failure::Io)?;
            let response = match self.handler.get() {
                // A handler that panics gives no response; the request fails like one whose
                // channel was dropped, and the behaviour goes on serving.
                Some(handler) => {
                    let call =
                        std::panic::catch_unwind(AssertUnwindSafe(|| handler(peer, request)))
                            .map_err(|_| Failure::Omission)?;
                    AssertUnwindSafe(call)
                        .catch_unwind()
                        .await
                        .map_err(|_| Failure::Omission)?
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    self.emit(Event::Message {
                        peer,
                        connection_id,
                        message: Message::Request {
                            request_id,
                            request,
                            channel: ResponseChannel {
                                request_id,
                                peer,
                                tx,
                            },
                        },
                    });
                    rx.await.map_err(|_| Failure::Omission)?
                }
            };
            codec
                .write_response(&protocol, &mut stream, response)
                .await
                .map_err(Failure::Io)?;
            stream.shutdown().await.map_err(Failure::Io)
        };
        let result = tokio::select! {
            biased;
            r = tokio::time::timeout_at(deadline, exchange) => r,
            () = closed => Ok(Err(Failure::Closed)),
        };
        let error = match result {
            Ok(Ok(())) => {
                drop((untrack, stream, slots));
                self.emit(Event::ResponseSent {
                    peer,
                    connection_id,
                    request_id,
                });
                return;
            }
            Ok(Err(Failure::Omission)) => InboundFailure::ResponseOmission,
            Ok(Err(Failure::Closed)) => InboundFailure::ConnectionClosed,
            Ok(Err(Failure::Io(e))) if is_connection_lost(&e) || stream.is_connection_closed() => {
                InboundFailure::ConnectionClosed
            }
            Ok(Err(Failure::Io(e))) => InboundFailure::Io(Arc::new(e)),
            Err(_) => InboundFailure::Timeout,
        };
        drop((untrack, stream, slots));
        self.emit(Event::InboundFailure {
            peer,
            connection_id,
            request_id,
            error,
        });
    }
}

/// The responder closed or reset its stream before sending any byte of a response.
#[derive(Debug, thiserror::Error)]
#[error("the responder closed the stream without a response ({0})")]
struct NoResponse(#[source] io::Error);

/// Counts the bytes a codec reads, to tell an empty response from a malformed one.
struct CountingReader<'a, R> {
    inner: &'a mut R,
    read: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingReader<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        this.read += buf.filled().len() - before;
        polled
    }
}

/// How an inbound exchange ended early.
enum Failure {
    Io(io::Error),
    Omission,
    Closed,
}

#[cfg(all(test, feature = "cbor"))]
mod tests {
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;
    use crate::p2p::{Keypair, NodeConfig};
    use crate::request_response::cbor;

    type Cbor = cbor::Codec<String, String>;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_panicking_handler_fails_its_request_and_leaves_nothing_pending() {
        let a = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let b = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let addr = a
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        b.add_address(a.peer_id(), addr);
        let protocols = [("/panics/1".to_owned(), ProtocolSupport::Full)];
        let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (e, r) = (entered.clone(), release.clone());
        server
            .serve(move |_, request: String| {
                let (e, r) = (e.clone(), r.clone());
                async move {
                    match request.as_str() {
                        "boom" => panic!("a handler bug"),
                        "hold" => {
                            e.notify_one();
                            r.notified().await;
                        }
                        _ => {}
                    }
                    request
                }
            })
            .expect("serve");
        let client = Behaviour::<Cbor>::new(&b, protocols, Config::default()).expect("rr");
        let requester = b.peer_id();

        // The server numbers its inbound requests 1, 2, 3…
        let failed = tokio::time::timeout(DEADLINE, client.request(a.peer_id(), "boom".into()))
            .await
            .expect("an outcome in time");
        assert!(failed.is_err(), "{failed:?}");
        assert!(
            !server.is_pending_inbound(&requester, &InboundRequestId(1)),
            "the request whose handler panicked is still pending"
        );

        // The behaviour goes on serving, and a request in its handler is pending.
        let held = tokio::spawn({
            let client = client.clone();
            let peer = a.peer_id();
            async move { client.request(peer, "hold".into()).await }
        });
        tokio::time::timeout(DEADLINE, entered.notified())
            .await
            .expect("the second request reached its handler");
        assert!(server.is_pending_inbound(&requester, &InboundRequestId(2)));
        release.notify_one();
        let answer = tokio::time::timeout(DEADLINE, held)
            .await
            .expect("answered in time")
            .expect("task");
        assert_eq!(answer.expect("response"), "hold");
        assert!(!server.is_pending_inbound(&requester, &InboundRequestId(2)));
    }
}
