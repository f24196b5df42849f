//! The rpc server: a per-connection [`Service`] answers each initiating request with a unary
//! future, a response stream, or a rejection; one driver per connection runs them.
//!
//! ```
//! # #[cfg(feature = "prost")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::future::{Ready, ready};
//! use futures_util::stream::Empty;
//! use missive::rpc::echo::{self, Request, Response};
//! use missive::rpc::{CallContext, Client, ClientConfig, Reply, Server, Service, Status, StatusCode};
//!
//! /// Answers with the request's body in capitals; refuses empty bodies.
//! struct Shout;
//!
//! impl Service for Shout {
//!     type Request = Request;
//!     type Response = Response;
//!     type Unary = Ready<Result<Response, Status>>;
//!     type Stream = Empty<Result<Response, Status>>;
//!
//!     fn call(&mut self, request: Request, _: &mut CallContext<Request>) -> Reply<Self::Unary, Self::Stream> {
//!         if request.body.is_empty() {
//!             return Reply::Reject(Status::new(StatusCode::Rejected, "nothing to shout"));
//!         }
//!         let body = request.body.to_ascii_uppercase().into();
//!         Reply::Unary(ready(Ok(Response { body, ..Response::default() })))
//!     }
//! }
//!
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! let server = Server::default();
//! tokio::spawn(server.connection(b, echo::ServerCodec::default(), Shout));
//! let client = Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
//! assert_eq!(&client.call(Request::unary("hey")).await?.body[..], b"HEY");
//! assert!(client.call(Request::unary("")).await.is_err());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prost"))]
//! # fn main() {}
//! ```

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::codec::{DecodeError, Decoder, Encoder};
use super::io::{WriteQueue, check_unframed, poll_read_into};
use super::message::{ControlCode, Message, Status, StatusCode};
use super::rpcs::{Rpcs, Step};

/// The server side of an rpc protocol, one value per connection.
///
/// `call` gets every message that starts an rpc (a Normal message with an id not in flight)
/// and decides what runs. Nothing here needs `Send`: a `!Send` service runs on a
/// current-thread runtime or a `LocalSet`.
pub trait Service {
    /// The requests.
    type Request: Message;
    /// The responses.
    type Response: Message;
    /// The future of a unary rpc.
    type Unary: Future<Output = Result<Self::Response, Status>>;
    /// The responses of a streaming rpc; an `Err` ends the stream with that status.
    type Stream: Stream<Item = Result<Self::Response, Status>>;

    /// Starts an rpc. The library copies the rpc's id into every response. To take the
    /// further requests of a client-streaming or bidirectional rpc, call
    /// [`CallContext::requests`].
    fn call(
        &mut self,
        request: Self::Request,
        context: &mut CallContext<Self::Request>,
    ) -> Reply<Self::Unary, Self::Stream>;
}

/// What a [`Service`] does with a new rpc.
#[derive(Debug)]
pub enum Reply<U, S> {
    /// One response from a future.
    Unary(U),
    /// A stream of responses, then End.
    Stream(S),
    /// No work: the client gets the status (a Cancel message for protosocket-rpc peers).
    Reject(Status),
}

/// Information about an rpc being started, and access to its further requests.
#[derive(Debug)]
pub struct CallContext<Req> {
    id: u64,
    buffer: usize,
    sender: Option<futures_channel::mpsc::Sender<Req>>,
}

impl<Req> CallContext<Req> {
    /// The rpc's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The further requests of this rpc (client-streaming and bidirectional calls), ending at
    /// the client's End. Without this call, further Normal messages with this id are protocol
    /// violations and are ignored.
    pub fn requests(&mut self) -> RequestStream<Req> {
        let (tx, rx) = futures_channel::mpsc::channel(self.buffer);
        self.sender = Some(tx);
        RequestStream { rx }
    }
}

/// The further requests of a client-streaming or bidirectional rpc.
///
/// The connection stops reading while this stream's buffer is full (bounded memory).
#[derive(Debug)]
pub struct RequestStream<Req> {
    rx: futures_channel::mpsc::Receiver<Req>,
}

impl<Req> Stream for RequestStream<Req> {
    type Item = Req;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Req>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// Server settings, per connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    max_rpcs: usize,
    send_budget: usize,
    request_stream_buffer: usize,
    shutdown_grace: Duration,
    max_pending_handshakes: usize,
    first_bytes_timeout: Duration,
    #[cfg(feature = "tcp")]
    socket: crate::transport::tcp::SocketOptions,
    idle_timeout: Option<Duration>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::RpcMetrics,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_rpcs: 4096,
            send_budget: 1024 * 1024,
            request_stream_buffer: 16,
            shutdown_grace: Duration::from_secs(10),
            max_pending_handshakes: 64,
            first_bytes_timeout: crate::transport::DEFAULT_FIRST_BYTES_TIMEOUT,
            #[cfg(feature = "tcp")]
            socket: crate::transport::tcp::SocketOptions::default(),
            idle_timeout: None,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::RpcMetrics::default(),
        }
    }
}

impl ServerConfig {
    /// Rpcs running at once per connection (default 4,096). A request that would start one
    /// more is refused with [`StatusCode::ResourceExhausted`] (a Cancel message for
    /// protosocket-rpc peers); the connection and the running rpcs go on.
    pub fn with_max_rpcs(mut self, max: usize) -> Self {
        self.max_rpcs = max.max(1);
        self
    }

    /// Bytes of responses queued for the socket at most (default 1 MiB). Above it, rpcs are
    /// not polled and requests are not read: a peer that stops reading stops its rpcs.
    pub fn with_send_budget(mut self, bytes: usize) -> Self {
        self.send_budget = bytes.max(1);
        self
    }

    /// Requests buffered per client stream (default 16).
    pub fn with_request_stream_buffer(mut self, requests: usize) -> Self {
        self.request_stream_buffer = requests.max(1);
        self
    }

    /// How long [`Server::shutdown`] lets running rpcs finish (default 10 s). After it, every
    /// rpc still open is failed with [`StatusCode::Unavailable`] and its connection closed.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// TLS handshakes `Server::serve_tls` runs at once (default 64, as the queue listener);
    /// past that, a new connection is still accepted and the least advanced handshake in
    /// progress (one whose client has sent nothing, before one that has; the oldest first) is
    /// closed to make room, as is the oldest of one IP address holding half of them. So clients
    /// that never speak cannot lock honest ones out.
    pub fn with_max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending_handshakes = n.max(1);
        self
    }

    /// How long a new TLS connection of `Server::serve_tls` may stay silent before its client
    /// hello (default 3 s); one that has sent nothing by then is closed, without waiting for the
    /// acceptor's whole handshake deadline.
    pub fn with_first_bytes_timeout(mut self, timeout: Duration) -> Self {
        self.first_bytes_timeout = timeout;
        self
    }

    /// The first-bytes deadline of TLS connections.
    pub fn first_bytes_timeout(&self) -> Duration {
        self.first_bytes_timeout
    }

    /// TCP keepalive on the connections `Server::serve_tcp` and `serve_tls` accept (default:
    /// probes after 30 s without traffic; `None` turns it off). It notices a peer that vanished
    /// without closing, at the cost of a few probe packets per idle connection.
    #[cfg(feature = "tcp")]
    pub fn with_tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.socket = self.socket.with_keepalive(idle);
        self
    }

    /// The TCP options set on every connection `Server::serve_tcp` and `serve_tls` accept
    /// (defaults: [`SocketOptions`](crate::transport::tcp::SocketOptions)); replaces the
    /// keepalive of [`Self::with_tcp_keepalive`]. The listener's own options (backlog,
    /// `SO_REUSEADDR`) are those it was bound with: see
    /// [`tcp::bind_with`](crate::transport::tcp::bind_with).
    #[cfg(feature = "tcp")]
    pub fn with_socket_options(mut self, options: crate::transport::tcp::SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// Closes a connection that has had no rpc running and received nothing for this long
    /// (default `None`: never). A connection with an rpc in flight, a stream for instance, is
    /// never idle.
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Where the connections of this server record their metrics (default:
    /// [`RpcMetrics::default`](crate::metrics::RpcMetrics), in the crate's default registry).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: crate::metrics::RpcMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// The cap on TLS handshakes at once.
    pub fn max_pending_handshakes(&self) -> usize {
        self.max_pending_handshakes
    }

    /// The TCP keepalive of accepted connections.
    #[cfg(feature = "tcp")]
    pub fn tcp_keepalive(&self) -> Option<Duration> {
        self.socket.keepalive()
    }

    /// The TCP options of accepted connections.
    #[cfg(feature = "tcp")]
    pub fn socket_options(&self) -> &crate::transport::tcp::SocketOptions {
        &self.socket
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// Why a server connection stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid message (peer's fault).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A server: settings, and graceful shutdown of the connections it made.
#[derive(Debug, Clone)]
pub struct Server {
    config: ServerConfig,
    shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: connections fail what is still open.
    abort: CancellationToken,
    connections: Arc<watch::Sender<()>>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new(ServerConfig::default())
    }
}

impl Server {
    /// A server with these settings.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
            connections: Arc::new(watch::channel(()).0),
        }
    }

    /// The driver of one connection, running `service` over `io`. Spawn it (`tokio::spawn`
    /// when everything is `Send`, `spawn_local` otherwise) or await it.
    pub fn connection<T, C, S>(&self, io: T, codec: C, service: S) -> ServerConnection<T, C, S>
    where
        T: AsyncRead + AsyncWrite + Unpin,
        S: Service,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request>,
    {
        ServerConnection {
            io,
            codec,
            service,
            config: self.config.clone(),
            read_buf: BytesMut::with_capacity(16 * 1024),
            wq: WriteQueue::new(),
            rpcs: Rpcs::new(),
            spare_unary: Vec::new(),
            parked: None,
            read_closed: false,
            shutdown: Some(Box::pin(self.shutdown.clone().cancelled_owned())),
            abort: Box::pin(self.abort.clone().cancelled_owned()),
            shutting_down: false,
            idle: self.config.idle_timeout.map(|timeout| Idle {
                timeout,
                since: tokio::time::Instant::now(),
                busy: false,
                timer: Box::pin(tokio::time::sleep(timeout)),
            }),
            shedding: false,
            _alive: self.connections.subscribe(),
            #[cfg(feature = "metrics")]
            tally: ServerTally::new(&self.config.metrics),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A token that [`Server::shutdown`] waits for, as for a connection.
    #[cfg(feature = "tls")]
    pub(super) fn track(&self) -> watch::Receiver<()> {
        self.connections.subscribe()
    }

    /// TCP options of an accepted connection (`ServerConfig::with_socket_options`). A failure
    /// is logged: the connection works without them.
    #[cfg(feature = "tcp")]
    pub(super) fn prepare_accepted(&self, socket: &tokio::net::TcpStream) {
        if let Err(e) = self.config.socket.apply(socket) {
            tracing::debug!(error = %e, "rpc connection: socket options not set");
        }
    }

    /// Resolves once [`Server::shutdown`] has begun; accept loops stop on it.
    #[cfg(any(feature = "tcp", feature = "unix"))]
    pub(super) fn stopping(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Stops taking new rpcs on every connection, lets the running ones finish for the grace
    /// period (`ServerConfig::with_shutdown_grace`, 10 s by default), and waits until every
    /// connection made by this server has flushed and closed. When the grace period is over,
    /// every rpc still open is failed with [`StatusCode::Unavailable`] and its connection is
    /// closed at once (what the socket does not take then is dropped).
    ///
    /// Connections must be running (spawned or awaited) to close; accept loops stop at once.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, self.connections.closed())
            .await
            .is_err()
        {
            tracing::debug!(?grace, "rpc shutdown grace period over: failing open rpcs");
            self.abort.cancel();
            self.connections.closed().await;
        }
    }
}

type RequestSender<Req> = futures_channel::mpsc::Sender<Req>;

type RpcTable<S> = Rpcs<
    Work<<S as Service>::Unary, <S as Service>::Stream>,
    RequestSender<<S as Service>::Request>,
>;

/// An rpc's work, and with metrics on, its record.
struct Work<U, St> {
    body: Body<U, St>,
    #[cfg(feature = "metrics")]
    record: RpcRecord,
}

enum Body<U, St> {
    /// A unary rpc's future; emptied in place when it completes, so that its allocation can
    /// carry the next one.
    Unary(UnaryBox<U>),
    Stream(Pin<Box<St>>),
    /// A unary rpc that completed (its box went back to the connection's spares).
    Done,
}

/// The allocation of a unary future, reused from rpc to rpc ([`Pin::set`] drops the old
/// future in place and moves the new one in).
type UnaryBox<U> = Pin<Box<Option<U>>>;

/// Emptied unary boxes kept per connection for the next rpcs.
const SPARE_UNARY_BOXES: usize = 64;

/// What one poll of an rpc produced.
enum Outcome<R> {
    Item(R),
    Done(R),
    End,
    Failed(Status),
}

/// The driver of one server connection: owns the socket, starts and polls the rpcs, and writes
/// their responses in one vectored write per wake-up.
pub struct ServerConnection<T, C: Encoder, S: Service> {
    io: T,
    codec: C,
    service: S,
    config: ServerConfig,
    read_buf: BytesMut,
    wq: WriteQueue<<C as Encoder>::Serialized>,
    rpcs: RpcTable<S>,
    /// Emptied boxes of finished unary rpcs, at most [`SPARE_UNARY_BOXES`].
    spare_unary: Vec<UnaryBox<S::Unary>>,
    /// A request whose rpc's buffer is full, with the rpc's id: reading stops until the handler
    /// takes one, or drops its request stream, or the rpc ends. It waits on the rpc's own sender
    /// (a clone of a futures-channel sender always has a slot of its own, so it would bound
    /// nothing).
    parked: Option<(u64, S::Request)>,
    read_closed: bool,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    abort: Pin<Box<WaitForCancellationFutureOwned>>,
    shutting_down: bool,
    idle: Option<Idle>,
    /// The connection was idle past its timeout: it only closes now.
    shedding: bool,
    _alive: watch::Receiver<()>,
    #[cfg(feature = "metrics")]
    tally: ServerTally,
}

/// The idle timeout of a server connection: idle means no rpc running, nothing to write and
/// nothing received, since `since`.
struct Idle {
    timeout: Duration,
    since: tokio::time::Instant,
    busy: bool,
    /// Fires no earlier than the timeout after `since`; reset only when it fires early.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    /// Whether the connection has been idle for the timeout (registers for a wake-up if not).
    fn poll_expired(&mut self, busy: bool, cx: &mut Context<'_>) -> bool {
        if busy {
            self.busy = true;
            return false;
        }
        if self.busy {
            self.busy = false;
            self.since = tokio::time::Instant::now();
        }
        let due = self.since + self.timeout;
        while self.timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
        false
    }
}

impl<T, C: Encoder, S: Service> std::fmt::Debug for ServerConnection<T, C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("rpcs", &self.rpcs.len())
            .field("write_queue", &self.wq)
            .finish_non_exhaustive()
    }
}

// The driver never pins its fields: rpcs are boxed, and io is `Unpin`.
impl<T, C: Encoder, S: Service> Unpin for ServerConnection<T, C, S> {}

/// Iterations of the driver loop before it yields to the runtime.
const DRIVER_BUDGET: usize = 32;

impl<T, C, S> ServerConnection<T, C, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service,
    C: Encoder<Message = S::Response> + Decoder<Message = S::Request>,
{
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        for _ in 0..DRIVER_BUDGET {
            let mut progress = false;
            if let Some(signal) = &mut self.shutdown
                && signal.as_mut().poll(cx).is_ready()
            {
                self.shutdown = None;
                self.shutting_down = true;
            }
            if self.shutting_down && self.abort.as_mut().poll(cx).is_ready() {
                return self.abort_open_rpcs(cx);
            }
            if self.parked.is_some() && self.poll_parked(cx) {
                progress = true;
            }
            // Input: decode what is buffered, read more while under every limit.
            if self.may_take_input()
                && let Err(e) = self.decode_buffered()
            {
                return Poll::Ready(Err(e.into()));
            }
            let read_skipped = !self.read_closed && !self.may_take_input();
            #[cfg(feature = "metrics")]
            self.tally
                .note_budget(self.wq.queued() >= self.config.send_budget);
            if !self.read_closed && self.may_take_input() {
                match poll_read_into(&mut self.io, &mut self.read_buf, cx) {
                    Poll::Ready(Ok(0)) => {
                        // The client closed: nobody will read the answers.
                        self.read_closed = true;
                        self.rpcs.clear();
                        self.parked = None;
                        if !self.read_buf.is_empty() {
                            tracing::debug!("rpc connection closed in the middle of a message");
                        }
                        progress = true;
                    }
                    Poll::Ready(Ok(_n)) => {
                        progress = true;
                        #[cfg(feature = "metrics")]
                        self.tally.side.received_bytes.inc_by(_n as u64);
                        if let Some(idle) = &mut self.idle {
                            idle.since = tokio::time::Instant::now();
                        }
                        if let Err(e) = self.decode_buffered() {
                            return Poll::Ready(Err(e.into()));
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => {}
                }
            }
            // Rpcs: poll the woken ones while the send budget allows.
            self.rpcs.collect_woken(cx);
            if self.rpcs.has_runnable()
                && self.wq.queued() < self.config.send_budget
                && self.run_rpcs() > 0
            {
                progress = true;
            }
            // Output: one vectored write of everything queued.
            if !self.wq.is_empty() {
                #[cfg(feature = "metrics")]
                let queued = self.wq.queued();
                let written = self.wq.poll_write(&mut self.io, &mut self.codec, cx);
                #[cfg(feature = "metrics")]
                self.tally
                    .side
                    .sent_bytes
                    .inc_by((queued - self.wq.queued()) as u64);
                match written {
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Ready(Ok(())) => {
                        if self.rpcs.has_runnable() {
                            progress = true;
                        }
                    }
                    Poll::Pending => {}
                }
            }
            // Input was held back by a limit that writing or finishing rpcs lifted: read now
            // (no read interest was registered while it was held back).
            if read_skipped && self.may_take_input() {
                progress = true;
            }
            let busy = self.rpcs.len() > 0 || !self.wq.is_empty() || self.parked.is_some();
            if !self.shedding
                && let Some(idle) = &mut self.idle
                && idle.poll_expired(busy, cx)
            {
                tracing::debug!(timeout = ?idle.timeout, "rpc connection idle: closing it");
                self.shedding = true;
            }
            if (self.read_closed || self.shutting_down || self.shedding)
                && self.rpcs.len() == 0
                && self.wq.is_empty()
            {
                return match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Ready(_) => Poll::Ready(Ok(())),
                    Poll::Pending => Poll::Pending,
                };
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The shutdown grace period is over: fails every open rpc, writes what the socket takes
    /// now, and closes.
    fn abort_open_rpcs(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        #[cfg(feature = "metrics")]
        self.rpcs
            .for_each_work(|work| work.record.end("unavailable"));
        let open = self.rpcs.take_all();
        self.parked = None;
        if !open.is_empty() {
            tracing::debug!(
                rpcs = open.len(),
                "rpcs failed at the end of the shutdown grace"
            );
        }
        for id in open {
            let status = Status::new(StatusCode::Unavailable, "server shut down");
            self.send(S::Response::failed(id, status));
        }
        if let Poll::Ready(Ok(())) = self.wq.poll_write(&mut self.io, &mut self.codec, cx) {
            let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Hands the parked request to its rpc once its buffer has room; drops it when the rpc is
    /// gone or no longer takes requests. True when the connection may read again.
    fn poll_parked(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((id, _)) = &self.parked else {
            return true;
        };
        let ready = match self.rpcs.get_mut(*id).and_then(|slot| slot.extra.as_mut()) {
            Some(sender) => sender.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        };
        let Poll::Ready(ready) = ready else {
            return false;
        };
        if let Some((id, request)) = self.parked.take()
            && ready.is_ok()
            && let Some(sender) = self.rpcs.get_mut(id).and_then(|slot| slot.extra.as_mut())
        {
            let _ = sender.start_send(request);
        }
        true
    }

    fn may_take_input(&self) -> bool {
        self.parked.is_none() && self.wq.queued() < self.config.send_budget
    }

    fn decode_buffered(&mut self) -> Result<(), DecodeError> {
        while self.may_take_input() {
            match self.codec.decode(&mut self.read_buf)? {
                Some(request) => self.on_request(request),
                None => return check_unframed(&self.read_buf, self.codec.max_message_size()),
            }
        }
        Ok(())
    }

    fn on_request(&mut self, request: S::Request) {
        let id = request.message_id();
        match request.control_code() {
            ControlCode::Normal => {
                if let Some(slot) = self.rpcs.get_mut(id) {
                    match &mut slot.extra {
                        Some(sender) => {
                            if let Err(e) = sender.try_send(request)
                                && e.is_full()
                            {
                                self.parked = Some((id, e.into_inner()));
                            }
                        }
                        None => tracing::debug!(id, "request for an rpc in flight ignored"),
                    }
                } else if self.shutting_down {
                    #[cfg(feature = "metrics")]
                    self.tally.refused(StatusCode::Unavailable);
                    let status = Status::new(StatusCode::Unavailable, "server shutting down");
                    self.send(S::Response::failed(id, status));
                } else if self.rpcs.len() >= self.config.max_rpcs {
                    // Refused, visibly; reading goes on so that Cancel and End still arrive.
                    #[cfg(feature = "metrics")]
                    self.tally.refused(StatusCode::ResourceExhausted);
                    let status = Status::new(StatusCode::ResourceExhausted, "too many rpcs");
                    self.send(S::Response::failed(id, status));
                } else {
                    self.start(id, request);
                }
            }
            ControlCode::Cancel => {
                tracing::debug!(id, "rpc cancelled by the client");
                #[cfg(feature = "metrics")]
                {
                    self.tally.side.cancels.inc();
                    if let Some(work) = self.rpcs.get_mut(id).and_then(|slot| slot.work.as_mut()) {
                        work.record.end("cancelled");
                    }
                }
                if self.rpcs.remove(id) {
                    self.send(S::Response::cancelled(id));
                }
            }
            ControlCode::End => {
                if let Some(slot) = self.rpcs.get_mut(id) {
                    slot.extra = None;
                }
            }
        }
    }

    fn start(&mut self, id: u64, request: S::Request) {
        tracing::debug!(id, "rpc started");
        let mut context = CallContext {
            id,
            buffer: self.config.request_stream_buffer,
            sender: None,
        };
        let service = &mut self.service;
        let work = match catch_unwind(AssertUnwindSafe(|| service.call(request, &mut context))) {
            Ok(Reply::Unary(f)) => Body::Unary(match self.spare_unary.pop() {
                Some(mut spare) => {
                    spare.as_mut().set(Some(f));
                    spare
                }
                None => Box::pin(Some(f)),
            }),
            Ok(Reply::Stream(s)) => Body::Stream(Box::pin(s)),
            Ok(Reply::Reject(status)) => {
                #[cfg(feature = "metrics")]
                self.tally.refused(status.code());
                return self.send(S::Response::failed(id, status));
            }
            Err(_) => {
                #[cfg(feature = "metrics")]
                self.tally.refused(StatusCode::Internal);
                tracing::warn!(id, "rpc handler panicked");
                let status = Status::new(StatusCode::Internal, "handler panicked");
                return self.send(S::Response::failed(id, status));
            }
        };
        #[cfg(feature = "metrics")]
        let record = self.tally.record(&work, context.sender.is_some());
        let work = Work {
            body: work,
            #[cfg(feature = "metrics")]
            record,
        };
        // Poll it right away: an rpc that is ready at once never enters the id table.
        let budget = self.config.send_budget;
        let wq = &mut self.wq;
        let codec = &mut self.codec;
        let spare = &mut self.spare_unary;
        self.rpcs.start(id, work, context.sender, |id, work, cx| {
            drive_rpc::<S, C>(id, work, cx, wq, codec, spare, budget)
        });
    }

    fn run_rpcs(&mut self) -> usize {
        let budget = self.config.send_budget;
        let wq = &mut self.wq;
        let codec = &mut self.codec;
        let spare = &mut self.spare_unary;
        self.rpcs
            .run(|id, work, cx| drive_rpc::<S, C>(id, work, cx, wq, codec, spare, budget))
    }

    fn send(&mut self, message: S::Response) {
        match self.wq.encode(message, &mut self.codec) {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "rpc control message not encodable"),
        }
    }
}

/// The metrics of one server connection.
#[cfg(feature = "metrics")]
struct ServerTally {
    side: Arc<crate::metrics::rpc::SideMetrics>,
    /// Input is held back by the send budget (a pause is counted when it starts).
    paused: bool,
}

#[cfg(feature = "metrics")]
impl ServerTally {
    fn new(metrics: &crate::metrics::RpcMetrics) -> Self {
        let side = metrics.server();
        side.connections.inc();
        ServerTally {
            side,
            paused: false,
        }
    }

    /// An rpc refused before any work started.
    fn refused(&self, code: StatusCode) {
        self.side
            .failed(crate::metrics::rpc::CallKind::Unknown, code);
    }

    fn record<U, St>(&self, body: &Body<U, St>, takes_requests: bool) -> RpcRecord {
        use crate::metrics::rpc::CallKind;
        let kind = match (body, takes_requests) {
            (Body::Unary(_), false) => CallKind::Unary,
            (Body::Unary(_), true) => CallKind::ClientStream,
            (Body::Stream(_), false) => CallKind::ServerStream,
            (Body::Stream(_), true) => CallKind::Bidi,
            (Body::Done, _) => CallKind::Unknown,
        };
        RpcRecord::new(self.side.clone(), kind)
    }

    fn note_budget(&mut self, over: bool) {
        if over && !self.paused {
            self.side.budget_pauses.inc();
        }
        self.paused = over;
    }
}

/// One rpc's kind, start and end for the metrics: in flight from its making until it ends or
/// is dropped; one dropped without an end lost its client (`disconnected`).
#[cfg(feature = "metrics")]
struct RpcRecord {
    side: Arc<crate::metrics::rpc::SideMetrics>,
    kind: crate::metrics::rpc::CallKind,
    started: std::time::Instant,
    ended: bool,
}

#[cfg(feature = "metrics")]
impl RpcRecord {
    fn new(
        side: Arc<crate::metrics::rpc::SideMetrics>,
        kind: crate::metrics::rpc::CallKind,
    ) -> Self {
        side.in_flight.inc();
        RpcRecord {
            side,
            kind,
            started: std::time::Instant::now(),
            ended: false,
        }
    }

    fn ok(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.side.in_flight.dec();
            self.side.ok(self.kind, self.started);
        }
    }

    fn end(&mut self, status: &'static str) {
        if !std::mem::replace(&mut self.ended, true) {
            self.side.in_flight.dec();
            self.side.ended(self.kind, status);
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for RpcRecord {
    fn drop(&mut self) {
        self.end("disconnected");
    }
}

/// Polls one rpc once and queues what it produced; says what became of it.
fn drive_rpc<S, C>(
    id: u64,
    work: &mut Work<S::Unary, S::Stream>,
    cx: &mut Context<'_>,
    wq: &mut WriteQueue<<C as Encoder>::Serialized>,
    codec: &mut C,
    spare: &mut Vec<UnaryBox<S::Unary>>,
    budget: usize,
) -> Step
where
    S: Service,
    C: Encoder<Message = S::Response>,
{
    if wq.queued() >= budget {
        return Step::Defer;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| poll_work(work, cx)));
    if !matches!(outcome, Ok(Poll::Pending | Poll::Ready(Outcome::Item(_))))
        && let Body::Unary(mut done) = std::mem::replace(&mut work.body, Body::Done)
    {
        // Finished (or panicked): the future is dropped now, its allocation kept.
        done.as_mut().set(None);
        if spare.len() < SPARE_UNARY_BOXES {
            spare.push(done);
        }
    }
    let (message, finished) = match outcome {
        Ok(Poll::Pending) => return Step::Pending,
        Ok(Poll::Ready(Outcome::Item(mut r))) => {
            r.set_message_id(id);
            (r, false)
        }
        Ok(Poll::Ready(Outcome::Done(mut r))) => {
            r.set_message_id(id);
            #[cfg(feature = "metrics")]
            work.record.ok();
            (r, true)
        }
        Ok(Poll::Ready(Outcome::End)) => {
            #[cfg(feature = "metrics")]
            work.record.ok();
            (S::Response::ended(id), true)
        }
        Ok(Poll::Ready(Outcome::Failed(status))) => {
            #[cfg(feature = "metrics")]
            work.record
                .end(crate::metrics::rpc::status_label(status.code()));
            (S::Response::failed(id, status), true)
        }
        Err(_) => {
            #[cfg(feature = "metrics")]
            work.record.end("internal");
            tracing::warn!(id, "rpc handler panicked");
            let status = Status::new(StatusCode::Internal, "handler panicked");
            (S::Response::failed(id, status), true)
        }
    };
    if let Err(e) = wq.encode(message, codec) {
        tracing::warn!(id, error = %e, "rpc response not encodable");
        let status = Status::new(StatusCode::Internal, e.to_string());
        let _ = wq.encode(S::Response::failed(id, status), codec);
        return Step::Finished;
    }
    if finished {
        tracing::debug!(id, "rpc ended");
        Step::Finished
    } else {
        // A stream: poll it again soon (the budget check comes first).
        cx.waker().wake_by_ref();
        Step::Pending
    }
}

fn poll_work<U, St, R>(work: &mut Work<U, St>, cx: &mut Context<'_>) -> Poll<Outcome<R>>
where
    U: Future<Output = Result<R, Status>>,
    St: Stream<Item = Result<R, Status>>,
{
    match &mut work.body {
        Body::Unary(f) => match f.as_mut().as_pin_mut() {
            Some(f) => f.poll(cx).map(|r| match r {
                Ok(r) => Outcome::Done(r),
                Err(s) => Outcome::Failed(s),
            }),
            // Not reached: a finished rpc leaves the table and is not polled again.
            None => Poll::Pending,
        },
        Body::Stream(s) => s.as_mut().poll_next(cx).map(|r| match r {
            Some(Ok(r)) => Outcome::Item(r),
            Some(Err(s)) => Outcome::Failed(s),
            None => Outcome::End,
        }),
        Body::Done => Poll::Pending,
    }
}

impl<T, C, S> Future for ServerConnection<T, C, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service,
    C: Encoder<Message = S::Response> + Decoder<Message = S::Request>,
{
    type Output = Result<(), ServeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_drive(cx)
    }
}
