//! The rpc client: a cheap-to-clone handle and one driver per connection.
//!
//! ```
//! # #[cfg(feature = "prost")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use missive::rpc::echo::{self, EchoService, Request};
//! use missive::rpc::{CallOptions, Client, ClientConfig, InFlightPolicy, Server};
//!
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! tokio::spawn(Server::default().connection(b, echo::ServerCodec::default(), EchoService));
//! let config = ClientConfig::default()
//!     .with_max_in_flight(256)
//!     .with_in_flight_policy(InFlightPolicy::FailFast);
//! let client = Client::spawn(a, echo::ClientCodec::default(), config);
//! let options = CallOptions::default().with_deadline(Some(Duration::from_secs(1)));
//! let response = client.call_with(Request::unary("ping"), options).await?;
//! assert_eq!(&response.body[..], b"ping");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prost"))]
//! # fn main() {}
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use super::calls::{ClientCalls, CompletionKind, Delivery};
use super::codec::{DecodeError, Decoder, EncodeError, Encoder};
use super::inbox;
use super::io::{WriteQueue, check_unframed, poll_read_into};
use super::message::{Message, Status};
use super::slots::{SlotReceiver, SlotSender, Slots};

/// What the caller does when [`ClientConfig::max_in_flight`] calls are already in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InFlightPolicy {
    /// Wait until a call finishes (backpressure).
    #[default]
    Wait,
    /// Fail at once with [`CallError::TooManyInFlight`].
    FailFast,
}

/// Client settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    max_in_flight: usize,
    in_flight_policy: InFlightPolicy,
    deadline: Option<Duration>,
    stream_buffer: usize,
    queued_stream_requests: usize,
    send_budget: usize,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    #[cfg(feature = "tcp")]
    socket: crate::transport::tcp::SocketOptions,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::RpcMetrics,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 4096,
            in_flight_policy: InFlightPolicy::Wait,
            deadline: Some(Duration::from_secs(10)),
            stream_buffer: 64,
            queued_stream_requests: 1024,
            send_budget: 1024 * 1024,
            connect_timeout: crate::transport::DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: Duration::from_secs(10),
            #[cfg(feature = "tcp")]
            socket: crate::transport::tcp::SocketOptions::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::RpcMetrics::default(),
        }
    }
}

impl ClientConfig {
    /// Where clients made with this configuration record their metrics (default:
    /// [`RpcMetrics::default`](crate::metrics::RpcMetrics), in the crate's default registry).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: crate::metrics::RpcMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The TCP options of the sockets `Client::connect_tcp` and `connect_tls` dial with
    /// (defaults: [`SocketOptions`](crate::transport::tcp::SocketOptions): `TCP_NODELAY`,
    /// keepalive after 30 s, the system's buffer sizes).
    #[cfg(feature = "tcp")]
    pub fn with_socket_options(mut self, options: crate::transport::tcp::SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// The TCP options of dialed sockets.
    #[cfg(feature = "tcp")]
    pub fn socket_options(&self) -> &crate::transport::tcp::SocketOptions {
        &self.socket
    }

    /// Calls in flight on one connection at most (default 4,096). Each costs one table entry
    /// and, on the server, one running rpc.
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// What a call does when the in-flight limit is reached (default: wait).
    pub fn with_in_flight_policy(mut self, policy: InFlightPolicy) -> Self {
        self.in_flight_policy = policy;
        self
    }

    /// Default deadline of unary and client-streaming calls (default 10 s; `None`: no
    /// deadline). Server-streaming and bidirectional calls only have the deadline given in
    /// their [`CallOptions`]. A call past its deadline is cancelled on the server.
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Responses buffered per response stream (default 64). A consumer that falls behind by
    /// more stops the connection's reads until it catches up: memory stays bounded (this many
    /// responses, plus one the connection holds back), and the server, whose writes then wait,
    /// stops producing. The other calls of the connection wait meanwhile; dropping the stream
    /// cancels it and frees the connection.
    pub fn with_stream_buffer(mut self, responses: usize) -> Self {
        self.stream_buffer = responses.max(1);
        self
    }

    /// Client-streaming requests queued for the connection at most, over all calls (default
    /// 1,024); `RequestSink::send` waits beyond.
    pub fn with_queued_stream_requests(mut self, requests: usize) -> Self {
        self.queued_stream_requests = requests.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Bytes queued for the socket above which streamed requests wait (default 1 MiB):
    /// `RequestSink::send` waits while the peer does not take what is already queued, so a
    /// server that stops reading stops the senders instead of growing the client's memory.
    pub fn with_send_budget(mut self, bytes: usize) -> Self {
        self.send_budget = bytes.max(1);
        self
    }

    /// How long `Client::connect_tcp`, `connect_tls` and `connect_unix` wait for the connection
    /// to be made (default 10 s). Past it: an error of kind `TimedOut` (TCP, Unix) or
    /// `TlsError::ConnectTimeout`.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long `Client::connect_tls` waits for the server to finish the TLS handshake (default
    /// 10 s). Past it: `TlsError::HandshakeTimeout`.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The connect deadline.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The TLS handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The in-flight limit.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    deadline: Option<Option<Duration>>,
    caller_id: bool,
}

impl CallOptions {
    /// This call's deadline (`None`: none), instead of the client's default.
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Keep the id already set in the request (protosocket-rpc style) instead of letting the
    /// library choose one. A caller-chosen id that is in flight already fails the call with
    /// [`CallError::DuplicateId`].
    pub fn with_caller_id(mut self, caller_id: bool) -> Self {
        self.caller_id = caller_id;
        self
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The connection closed (peer closed it, an I/O error, or a peer protocol violation).
    #[error("connection closed")]
    ConnectionClosed,
    /// The call's deadline passed; it was cancelled on the server.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The in-flight limit is reached and the policy is fail-fast (local limit).
    #[error("too many calls in flight")]
    TooManyInFlight,
    /// The caller-chosen id is already in flight (caller's fault).
    #[error("message id {0} is already in flight")]
    DuplicateId(u64),
    /// The server cancelled the call without a status.
    #[error("cancelled by the server")]
    Cancelled,
    /// The server failed the call with a status.
    #[error("failed: {0}")]
    Failed(Status),
    /// The request could not be encoded (caller's fault).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The server ended a unary call without a response (peer's fault).
    #[error("the server ended a unary call without a response")]
    UnexpectedEnd,
}

/// Why a client connection stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid message (peer's fault).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

type StreamItem<R> = Result<Option<R>, CallError>;

pub(crate) enum Completion<R> {
    /// A unary call's slot.
    Call(SlotSender<R>),
    /// A client-streaming call's single response.
    Unary(oneshot::Sender<Result<R, CallError>>),
    Stream(StreamSender<R>),
}

impl<R> CompletionKind for Completion<R> {
    fn is_stream(&self) -> bool {
        matches!(self, Self::Stream(_))
    }
}

impl<R> std::fmt::Debug for Completion<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Call(_) | Self::Unary(_) => "Unary",
            Self::Stream(_) => "Stream",
        })
    }
}

impl<R> Completion<R> {
    fn fail(self, error: CallError) {
        match self {
            Self::Call(tx) => tx.send(Err(error)),
            Self::Unary(tx) => {
                let _ = tx.send(Err(error));
            }
            Self::Stream(mut tx) => {
                // A full buffer drops the error; the consumer then sees the channel close
                // without End, which it reports as ConnectionClosed.
                let _ = tx.try_send(Err(error));
            }
        }
    }
}

/// What the handles ask of the driver.
///
/// The queue of commands has no capacity of its own; it is bounded by construction. A `Call`
/// holds an in-flight permit, which only the driver gives back (when the call completes, fails
/// or is cancelled); a `Message` holds a streamed-request permit, given back when the driver
/// takes it; a `Cancel` is sent at most once per call handle and an `End` at most once per
/// [`RequestSink`]. So the queue never holds more than `max_in_flight` calls,
/// `queued_stream_requests` messages, and one Cancel or End per handle the caller still holds
/// or just dropped.
pub(crate) enum Command<Req, Resp> {
    Call {
        key: u64,
        caller_id: Option<u64>,
        request: Req,
        completion: Completion<Resp>,
        deadline: Option<Duration>,
    },
    Message {
        key: u64,
        id: u64,
        request: Req,
    },
    End {
        key: u64,
        id: u64,
    },
    Cancel {
        key: u64,
        id: u64,
    },
}

#[derive(Debug)]
struct Shared {
    permits: Semaphore,
    stream_permits: Semaphore,
    next_key: AtomicU64,
    config: ClientConfig,
    #[cfg(feature = "metrics")]
    metrics: Arc<crate::metrics::rpc::SideMetrics>,
}

/// A handle to one rpc connection. Cheap to clone; every clone shares the connection.
///
/// # Cancel safety
/// Dropping a call's future, response stream or response future before it completes sends
/// Cancel for its id; the server drops the work.
pub struct Client<Req, Resp> {
    tx: inbox::Sender<Command<Req, Resp>>,
    shared: Arc<Shared>,
    slots: Arc<Slots<Resp>>,
}

impl<Req, Resp> Clone for Client<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            slots: self.slots.clone(),
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> Client<Req, Resp> {
    /// Whether the connection still runs (its driver has not stopped).
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }
}

impl<Req: Message, Resp: Message> Client<Req, Resp> {
    /// A client over `io` and the connection driver that must be polled (spawned) for it to
    /// work. Use this on a current-thread runtime or `LocalSet` with `spawn_local` when the
    /// codec or stream is not `Send`.
    pub fn new<T, C>(io: T, codec: C, config: ClientConfig) -> (Self, ClientConnection<T, C>)
    where
        T: AsyncRead + AsyncWrite + Unpin,
        C: Encoder<Message = Req> + Decoder<Message = Resp>,
    {
        let (tx, rx) = inbox::inbox();
        let shared = Arc::new(Shared {
            permits: Semaphore::new(config.max_in_flight),
            stream_permits: Semaphore::new(config.queued_stream_requests),
            next_key: AtomicU64::new(1),
            #[cfg(feature = "metrics")]
            metrics: config.metrics.client(),
            config,
        });
        #[cfg(feature = "metrics")]
        shared.metrics.connections.inc();
        let driver = ClientConnection {
            io,
            codec,
            rx,
            commands: Vec::new(),
            calls: ClientCalls::new(),
            read_buf: BytesMut::with_capacity(16 * 1024),
            wq: WriteQueue::new(),
            shared: shared.clone(),
            parked: None,
            owed_stream_permits: 0,
            commands_closed: false,
            freed: 0,
            timer: None,
            timer_at: None,
            now: None,
            #[cfg(feature = "metrics")]
            in_flight: crate::metrics::GaugeShare::new(shared.metrics.in_flight.clone()),
        };
        (
            Self {
                tx,
                shared,
                slots: Slots::new(),
            },
            driver,
        )
    }

    /// A client whose driver runs as a task on the current tokio runtime.
    pub fn spawn<T, C>(io: T, codec: C, config: ClientConfig) -> Self
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        C: Encoder<Message = Req> + Decoder<Message = Resp> + Send + 'static,
        C::Serialized: Send,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let (client, driver) = Self::new(io, codec, config);
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let span = tracing::debug_span!("rpc_client", id = NEXT.fetch_add(1, Ordering::Relaxed));
        let run = async move {
            match driver.await {
                Ok(()) => tracing::debug!("rpc client connection closed"),
                Err(e) => tracing::debug!(error = %e, "rpc client connection ended"),
            }
        };
        tokio::spawn(tracing::Instrument::instrument(run, span));
        client
    }

    /// A unary call: one request, one response.
    ///
    /// # Errors
    /// See [`CallError`].
    pub fn call(&self, request: Req) -> impl Future<Output = Result<Resp, CallError>> + '_ {
        self.call_with(request, CallOptions::default())
    }

    /// A unary call with options.
    ///
    /// # Errors
    /// See [`CallError`].
    pub async fn call_with(&self, request: Req, options: CallOptions) -> Result<Resp, CallError> {
        #[cfg(feature = "metrics")]
        let mut record =
            CallRecord::new(&self.shared.metrics, crate::metrics::rpc::CallKind::Unary);
        let result = self.unary(request, options).await;
        #[cfg(feature = "metrics")]
        record.finish(&result);
        result
    }

    async fn unary(&self, request: Req, options: CallOptions) -> Result<Resp, CallError> {
        self.permit().await?;
        let deadline = options.deadline.unwrap_or(self.shared.config.deadline);
        let (tx, rx) = self.slots.open();
        let (key, id) = self.submit(request, &options, Completion::Call(tx), deadline)?;
        let mut call = PendingCall {
            tx: &self.tx,
            key,
            id,
            rx,
        };
        // The connection fails the call with DeadlineExceeded (and cancels it on the server)
        // when its deadline passes: one timer per connection, not one per call.
        (&mut call.rx).await
    }

    /// A server-streaming call: one request, a stream of responses that ends at End.
    ///
    /// # Errors
    /// Fails before sending when the connection is closed or the in-flight limit is reached
    /// under [`InFlightPolicy::FailFast`].
    pub async fn server_stream(
        &self,
        request: Req,
    ) -> Result<ResponseStream<Req, Resp>, CallError> {
        self.server_stream_with(request, CallOptions::default())
            .await
    }

    /// A server-streaming call with options.
    ///
    /// # Errors
    /// As [`Client::server_stream`].
    pub async fn server_stream_with(
        &self,
        request: Req,
        options: CallOptions,
    ) -> Result<ResponseStream<Req, Resp>, CallError> {
        #[cfg(feature = "metrics")]
        let mut record = CallRecord::new(
            &self.shared.metrics,
            crate::metrics::rpc::CallKind::ServerStream,
        );
        let submitted = self.open_stream(request, &options).await;
        #[cfg(feature = "metrics")]
        if let Err(e) = &submitted {
            record.end(Some(e));
        }
        let (rx, key, id) = submitted?;
        Ok(ResponseStream {
            rx,
            cancel: Some(OwnedCancel {
                tx: self.tx.clone(),
                key,
                id,
            }),
            #[cfg(feature = "metrics")]
            record,
        })
    }

    async fn open_stream(
        &self,
        request: Req,
        options: &CallOptions,
    ) -> Result<(futures_channel::mpsc::Receiver<StreamItem<Resp>>, u64, u64), CallError> {
        self.permit().await?;
        let (tx, rx) = futures_channel::mpsc::channel(self.shared.config.stream_buffer);
        let deadline = options.deadline.flatten();
        let (key, id) = self.submit(request, options, Completion::Stream(tx), deadline)?;
        Ok((rx, key, id))
    }

    /// A client-streaming call: the first request opens it, more follow through the
    /// [`RequestSink`], and the server answers once.
    ///
    /// # Errors
    /// As [`Client::server_stream`].
    pub async fn client_stream(
        &self,
        request: Req,
    ) -> Result<(RequestSink<Req, Resp>, ResponseFuture<Req, Resp>), CallError> {
        self.client_stream_with(request, CallOptions::default())
            .await
    }

    /// A client-streaming call with options: a deadline of its own (from the first request to
    /// the answer; the client's default otherwise) or the caller's id.
    ///
    /// # Errors
    /// As [`Client::server_stream`].
    pub async fn client_stream_with(
        &self,
        request: Req,
        options: CallOptions,
    ) -> Result<(RequestSink<Req, Resp>, ResponseFuture<Req, Resp>), CallError> {
        #[cfg(feature = "metrics")]
        let mut record = CallRecord::new(
            &self.shared.metrics,
            crate::metrics::rpc::CallKind::ClientStream,
        );
        let submitted = async {
            self.permit().await?;
            let deadline = options.deadline.unwrap_or(self.shared.config.deadline);
            let (tx, rx) = oneshot::channel();
            let (key, id) = self.submit(request, &options, Completion::Unary(tx), deadline)?;
            Ok::<_, CallError>((rx, key, id))
        }
        .await;
        #[cfg(feature = "metrics")]
        if let Err(e) = &submitted {
            record.end(Some(e));
        }
        let (rx, key, id) = submitted?;
        Ok((
            self.sink(key, id),
            ResponseFuture {
                rx,
                cancel: Some(OwnedCancel {
                    tx: self.tx.clone(),
                    key,
                    id,
                }),
                #[cfg(feature = "metrics")]
                record,
            },
        ))
    }

    /// A bidirectional-streaming call: requests through the [`RequestSink`], responses
    /// through the [`ResponseStream`].
    ///
    /// # Errors
    /// As [`Client::server_stream`].
    pub async fn bidi_stream(
        &self,
        request: Req,
    ) -> Result<(RequestSink<Req, Resp>, ResponseStream<Req, Resp>), CallError> {
        self.bidi_stream_with(request, CallOptions::default()).await
    }

    /// A bidirectional-streaming call with options; as [`Client::server_stream_with`], it has
    /// no deadline unless the options give one.
    ///
    /// # Errors
    /// As [`Client::server_stream`].
    pub async fn bidi_stream_with(
        &self,
        request: Req,
        options: CallOptions,
    ) -> Result<(RequestSink<Req, Resp>, ResponseStream<Req, Resp>), CallError> {
        #[cfg_attr(not(feature = "metrics"), allow(unused_mut))]
        let mut stream = self.server_stream_with(request, options).await?;
        #[cfg(feature = "metrics")]
        {
            stream.record.kind = crate::metrics::rpc::CallKind::Bidi;
        }
        let cancel = stream
            .cancel
            .as_ref()
            .map(|c| (c.key, c.id))
            .ok_or(CallError::ConnectionClosed)?;
        Ok((self.sink(cancel.0, cancel.1), stream))
    }

    fn sink(&self, key: u64, id: u64) -> RequestSink<Req, Resp> {
        RequestSink {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            key,
            id,
            finished: false,
        }
    }

    /// Takes one in-flight permit. Waiting is the slow path: its future is boxed, so that
    /// the future of every call stays small when permits are available.
    async fn permit(&self) -> Result<(), CallError> {
        match self.shared.permits.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(())
            }
            Err(tokio::sync::TryAcquireError::Closed) => Err(CallError::ConnectionClosed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match self.shared.config.in_flight_policy {
                    InFlightPolicy::FailFast => Err(CallError::TooManyInFlight),
                    InFlightPolicy::Wait => {
                        let acquire: Pin<Box<dyn Future<Output = _> + Send + '_>> =
                            Box::pin(self.shared.permits.acquire());
                        acquire
                            .await
                            .map_err(|_| CallError::ConnectionClosed)?
                            .forget();
                        Ok(())
                    }
                }
            }
        }
    }

    /// Queues a call that holds a permit. Returns its key and wire id.
    fn submit(
        &self,
        mut request: Req,
        options: &CallOptions,
        completion: Completion<Resp>,
        deadline: Option<Duration>,
    ) -> Result<(u64, u64), CallError> {
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let (caller_id, id) = if options.caller_id {
            let id = request.message_id();
            (Some(id), id)
        } else {
            request.set_message_id(key);
            (None, key)
        };
        if self
            .tx
            .send(Command::Call {
                key,
                caller_id,
                request,
                completion,
                deadline,
            })
            .is_err()
        {
            self.shared.permits.add_permits(1);
            return Err(CallError::ConnectionClosed);
        }
        Ok((key, id))
    }
}

/// One call's outcome for the metrics: its kind, when it started, and whether it ended (a call
/// whose future, stream or response was dropped first is `abandoned`).
#[cfg(feature = "metrics")]
struct CallRecord {
    side: Arc<crate::metrics::rpc::SideMetrics>,
    kind: crate::metrics::rpc::CallKind,
    started: std::time::Instant,
    ended: bool,
}

#[cfg(feature = "metrics")]
impl CallRecord {
    fn new(
        side: &Arc<crate::metrics::rpc::SideMetrics>,
        kind: crate::metrics::rpc::CallKind,
    ) -> Self {
        CallRecord {
            side: side.clone(),
            kind,
            started: std::time::Instant::now(),
            ended: false,
        }
    }

    fn finish<R>(&mut self, result: &Result<R, CallError>) {
        self.end(result.as_ref().err());
    }

    /// The call ended: `None` when it ended well.
    fn end(&mut self, error: Option<&CallError>) {
        use crate::metrics::rpc::status_label;
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let status = match error {
            None => return self.side.ok(self.kind, self.started),
            Some(CallError::ConnectionClosed) => "connection_closed",
            Some(CallError::DeadlineExceeded) => "deadline_exceeded",
            Some(CallError::TooManyInFlight) => "too_many_in_flight",
            Some(CallError::DuplicateId(_)) => "duplicate_id",
            Some(CallError::Cancelled) => "cancelled",
            Some(CallError::Failed(status)) => status_label(status.code()),
            Some(CallError::Encode(_)) => "encode",
            Some(CallError::UnexpectedEnd) => "unexpected_end",
        };
        self.side.ended(self.kind, status);
    }
}

#[cfg(feature = "metrics")]
impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.ended {
            self.side.ended(self.kind, "abandoned");
        }
    }
}

/// A unary call waiting for its result; dropped before the result arrived, it cancels the
/// call on the server.
struct PendingCall<'a, Req, Resp> {
    tx: &'a inbox::Sender<Command<Req, Resp>>,
    key: u64,
    id: u64,
    rx: SlotReceiver<'a, Resp>,
}

impl<Req, Resp> Drop for PendingCall<'_, Req, Resp> {
    fn drop(&mut self) {
        if self.rx.abandon() {
            let _ = self.tx.send(Command::Cancel {
                key: self.key,
                id: self.id,
            });
        }
    }
}

struct OwnedCancel<Req, Resp> {
    tx: inbox::Sender<Command<Req, Resp>>,
    key: u64,
    id: u64,
}

impl<Req, Resp> OwnedCancel<Req, Resp> {
    fn cancel(self) {
        let _ = self.tx.send(Command::Cancel {
            key: self.key,
            id: self.id,
        });
    }
}

/// The responses of a server-streaming or bidirectional call.
///
/// Yields `Ok(response)` per item and ends after the server's End; an error ends it too.
/// Dropping it before the end cancels the call on the server.
pub struct ResponseStream<Req, Resp> {
    rx: futures_channel::mpsc::Receiver<StreamItem<Resp>>,
    cancel: Option<OwnedCancel<Req, Resp>>,
    #[cfg(feature = "metrics")]
    record: CallRecord,
}

impl<Req, Resp> std::fmt::Debug for ResponseStream<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("finished", &self.cancel.is_none())
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> Stream for ResponseStream<Req, Resp> {
    type Item = Result<Resp, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(_) = this.cancel else {
            return Poll::Ready(None);
        };
        let end = match Pin::new(&mut this.rx).poll_next(cx) {
            Poll::Ready(Some(Ok(Some(r)))) => return Poll::Ready(Some(Ok(r))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(None))) => Ok(()),
            Poll::Ready(Some(Err(e))) => Err(e),
            Poll::Ready(None) => Err(CallError::ConnectionClosed),
        };
        this.cancel = None;
        #[cfg(feature = "metrics")]
        this.record.finish(&end);
        Poll::Ready(end.err().map(Err))
    }
}

impl<Req, Resp> Drop for ResponseStream<Req, Resp> {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            c.cancel();
        }
    }
}

/// The single response of a client-streaming call. Dropping it before it completes cancels
/// the call on the server.
pub struct ResponseFuture<Req, Resp> {
    rx: oneshot::Receiver<Result<Resp, CallError>>,
    cancel: Option<OwnedCancel<Req, Resp>>,
    #[cfg(feature = "metrics")]
    record: CallRecord,
}

impl<Req, Resp> std::fmt::Debug for ResponseFuture<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<Req, Resp> Future for ResponseFuture<Req, Resp> {
    type Output = Result<Resp, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(r) = Pin::new(&mut this.rx).poll(cx) {
            this.cancel = None;
            let result = r.unwrap_or(Err(CallError::ConnectionClosed));
            #[cfg(feature = "metrics")]
            this.record.finish(&result);
            return Poll::Ready(result);
        }
        Poll::Pending
    }
}

impl<Req, Resp> Drop for ResponseFuture<Req, Resp> {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            c.cancel();
        }
    }
}

/// The request side of a client-streaming or bidirectional call.
///
/// [`RequestSink::finish`] (or dropping the sink) sends End: the server's request stream ends.
pub struct RequestSink<Req, Resp> {
    tx: inbox::Sender<Command<Req, Resp>>,
    shared: Arc<Shared>,
    key: u64,
    id: u64,
    finished: bool,
}

impl<Req, Resp> std::fmt::Debug for RequestSink<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSink")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<Req: Message, Resp> RequestSink<Req, Resp> {
    /// The wire id of the call (as the caller asked it; the library's alias if it had to pick
    /// another is applied by the connection).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends one more request of this call. Waits while the connection's queue of streamed
    /// requests is full.
    ///
    /// # Errors
    /// [`CallError::ConnectionClosed`] when the connection is gone. Requests sent after the
    /// call completed are discarded.
    pub async fn send(&mut self, mut request: Req) -> Result<(), CallError> {
        self.shared
            .stream_permits
            .acquire()
            .await
            .map_err(|_| CallError::ConnectionClosed)?
            .forget();
        request.set_message_id(self.id);
        self.tx
            .send(Command::Message {
                key: self.key,
                id: self.id,
                request,
            })
            .map_err(|_| CallError::ConnectionClosed)
    }

    /// Ends the request stream.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.tx.send(Command::End {
                key: self.key,
                id: self.id,
            });
        }
    }
}

impl<Req, Resp> Drop for RequestSink<Req, Resp> {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.tx.send(Command::End {
                key: self.key,
                id: self.id,
            });
        }
    }
}

/// The driver of one client connection: owns the socket, encodes queued calls and writes them
/// in one vectored write per wake-up, and decodes every complete response per read.
///
/// Resolves when every [`Client`] handle and call is gone, or the connection fails.
pub struct ClientConnection<T, C: Encoder + Decoder> {
    io: T,
    codec: C,
    rx: inbox::Receiver<Command<<C as Encoder>::Message, <C as Decoder>::Message>>,
    /// The commands taken at one wake-up (kept for its allocation).
    commands: Vec<Command<<C as Encoder>::Message, <C as Decoder>::Message>>,
    calls: ClientCalls<Completion<<C as Decoder>::Message>>,
    read_buf: BytesMut,
    wq: WriteQueue<C::Serialized>,
    shared: Arc<Shared>,
    parked: Option<Parked<<C as Decoder>::Message>>,
    /// Streamed-request permits held back while the write queue is over the send budget.
    owed_stream_permits: usize,
    commands_closed: bool,
    freed: usize,
    /// The one timer of this connection, armed at the earliest deadline of the calls.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    timer_at: Option<Instant>,
    /// The time, read once per wake-up.
    now: Option<Instant>,
    /// This connection's share of the calls-in-flight gauge.
    #[cfg(feature = "metrics")]
    in_flight: crate::metrics::GaugeShare,
}

impl<T, C: Encoder + Decoder> std::fmt::Debug for ClientConnection<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("in_flight", &self.calls.len())
            .field("write_queue", &self.wq)
            .finish_non_exhaustive()
    }
}

/// A stream item waiting for room in its consumer's buffer (the connection stops reading
/// meanwhile).
///
/// It waits on the call's own sender: a futures-channel sender has one slot of its own beyond
/// the shared buffer, so a clone would always take one more item and bound nothing.
enum Parked<R> {
    /// An item of a stream that is still in the call table (call `key`, wire id `id`).
    InTable {
        key: u64,
        id: u64,
        item: StreamItem<R>,
    },
    /// The last item (End or an error) of a stream already out of the table.
    Owned(StreamSender<R>, StreamItem<R>),
}

type StreamSender<R> = futures_channel::mpsc::Sender<StreamItem<R>>;

// The driver never pins its fields: it only hands `Pin::new(&mut io)` (io is `Unpin`) out.
impl<T, C: Encoder + Decoder> Unpin for ClientConnection<T, C> {}

/// Iterations of the driver loop before it yields to the runtime.
const DRIVER_BUDGET: usize = 32;

impl<T, C, Req, Resp> ClientConnection<T, C>
where
    T: AsyncRead + AsyncWrite + Unpin,
    C: Encoder<Message = Req> + Decoder<Message = Resp>,
    Req: Message,
    Resp: Message,
{
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        self.now = None;
        for _ in 0..DRIVER_BUDGET {
            let mut progress = false;
            if self.timer_at.is_some()
                && let Some(timer) = &mut self.timer
                && timer.as_mut().poll(cx).is_ready()
            {
                self.expire();
                progress = true;
            }
            if !self.commands_closed {
                let mut commands = std::mem::take(&mut self.commands);
                match self.rx.poll_drain(cx, &mut commands) {
                    Poll::Ready(true) => {
                        progress = true;
                        for cmd in commands.drain(..) {
                            self.command(cmd);
                        }
                    }
                    Poll::Ready(false) => self.commands_closed = true,
                    Poll::Pending => {}
                }
                self.commands = commands;
            }
            if self.parked.is_some() && self.poll_parked(cx) {
                progress = true;
            }
            if self.parked.is_none()
                && let Err(e) = self.decode_buffered()
            {
                return Poll::Ready(Err(self.fail(e.into())));
            }
            if self.parked.is_none() {
                match poll_read_into(&mut self.io, &mut self.read_buf, cx) {
                    Poll::Ready(Ok(0)) => {
                        self.fail_calls();
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Ok(_n)) => {
                        progress = true;
                        #[cfg(feature = "metrics")]
                        self.shared.metrics.received_bytes.inc_by(_n as u64);
                        if let Err(e) = self.decode_buffered() {
                            return Poll::Ready(Err(self.fail(e.into())));
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e.into()))),
                    Poll::Pending => {}
                }
            }
            if !self.wq.is_empty() {
                #[cfg(feature = "metrics")]
                let queued = self.wq.queued();
                let written = self.wq.poll_write(&mut self.io, &mut self.codec, cx);
                #[cfg(feature = "metrics")]
                self.shared
                    .metrics
                    .sent_bytes
                    .inc_by((queued - self.wq.queued()) as u64);
                if let Poll::Ready(Err(e)) = written {
                    return Poll::Ready(Err(self.fail(e.into())));
                }
            }
            if self.owed_stream_permits > 0 && self.wq.queued() < self.shared.config.send_budget {
                self.shared
                    .stream_permits
                    .add_permits(std::mem::take(&mut self.owed_stream_permits));
            }
            if self.freed > 0 {
                self.shared.permits.add_permits(self.freed);
                self.freed = 0;
            }
            if self.commands_closed && self.calls.len() == 0 && self.wq.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn command(&mut self, cmd: Command<Req, Resp>) {
        match cmd {
            Command::Call {
                key,
                caller_id,
                mut request,
                completion,
                deadline,
            } => {
                let expiry = deadline.map(|d| self.arm_timer(d));
                match self
                    .calls
                    .register_until(key, caller_id, completion, expiry)
                {
                    Ok(id) => {
                        tracing::debug!(id, "call sent");
                        if id != request.message_id() {
                            request.set_message_id(id);
                        }
                        self.encode_for(key, id, request);
                    }
                    Err((dup, completion)) => {
                        self.freed += 1;
                        completion.fail(CallError::DuplicateId(dup.0));
                    }
                }
            }
            Command::Message {
                key,
                id,
                mut request,
            } => {
                // The permit goes back once the socket has taken what is queued (the sender
                // waits meanwhile).
                if self.wq.queued() < self.shared.config.send_budget {
                    self.shared.stream_permits.add_permits(1);
                } else {
                    #[cfg(feature = "metrics")]
                    if self.owed_stream_permits == 0 {
                        self.shared.metrics.budget_pauses.inc();
                    }
                    self.owed_stream_permits += 1;
                }
                if let Some(id) = self.calls.wire_id(key, id) {
                    request.set_message_id(id);
                    self.encode_for(key, id, request);
                }
            }
            Command::End { key, id } => {
                if let Some(id) = self.calls.wire_id(key, id) {
                    self.encode_for(key, id, Req::ended(id));
                }
            }
            Command::Cancel { key, id } => {
                if let Some(id) = self.calls.cancel(key, id) {
                    tracing::debug!(id, "call dropped by its caller: cancelled");
                    #[cfg(feature = "metrics")]
                    self.shared.metrics.cancels.inc();
                    self.freed += 1;
                    let _ = self.wq.encode(Req::cancelled(id), &mut self.codec);
                }
            }
        }
    }

    /// The expiry of a call with deadline `d` from now; makes sure the timer fires by then.
    fn arm_timer(&mut self, d: Duration) -> Instant {
        let now = *self.now.get_or_insert_with(Instant::now);
        let expiry = now + d;
        if self.timer_at.is_none_or(|t| expiry < t) {
            self.set_timer(Some(expiry));
        }
        expiry
    }

    fn set_timer(&mut self, at: Option<Instant>) {
        self.timer_at = at;
        if let Some(at) = at {
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(at),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
    }

    /// Fails the calls past their deadline and cancels them on the server.
    fn expire(&mut self) {
        let mut expired = Vec::new();
        let next = self.calls.expire(Instant::now(), &mut expired);
        for (id, completion) in expired {
            tracing::debug!(id, "call deadline passed: cancelled");
            self.freed += 1;
            #[cfg(feature = "metrics")]
            self.shared.metrics.cancels.inc();
            let _ = self.wq.encode(Req::cancelled(id), &mut self.codec);
            completion.fail(CallError::DeadlineExceeded);
        }
        self.set_timer(next);
    }

    /// Encodes a message of call `key`; an encoding failure fails that call.
    fn encode_for(&mut self, key: u64, id: u64, message: Req) {
        match self.wq.encode(message, &mut self.codec) {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(error = %e, id, "rpc request not encodable");
                if let Some((id, completion)) = self.calls.take(key, id) {
                    self.freed += 1;
                    // The server may have seen earlier messages of this call.
                    let _ = self.wq.encode(Req::cancelled(id), &mut self.codec);
                    completion.fail(CallError::Encode(e));
                }
            }
        }
    }

    fn decode_buffered(&mut self) -> Result<(), DecodeError> {
        while self.parked.is_none() {
            match self.codec.decode(&mut self.read_buf)? {
                Some(response) => self.dispatch(response),
                None => return check_unframed(&self.read_buf, self.codec.max_message_size()),
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, response: Resp) {
        match self.calls.on_response(response) {
            Delivery::Deliver {
                completion,
                response,
                ..
            } => {
                self.freed += 1;
                match completion {
                    Completion::Call(tx) => tx.send(Ok(response)),
                    Completion::Unary(tx) => {
                        let _ = tx.send(Ok(response));
                    }
                    Completion::Stream(tx) => self.deliver_to_stream(tx, Ok(Some(response))),
                }
            }
            Delivery::StreamItem(response) => {
                let id = response.message_id();
                if let Some((key, Completion::Stream(tx))) = self.calls.stream(id)
                    && let Err(e) = tx.try_send(Ok(Some(response)))
                    && e.is_full()
                {
                    // A disconnected consumer dropped the stream; its Cancel is on its way.
                    self.parked = Some(Parked::InTable {
                        key,
                        id,
                        item: e.into_inner(),
                    });
                }
            }
            Delivery::Ended(completion) => {
                self.freed += 1;
                match completion {
                    Completion::Call(tx) => tx.send(Err(CallError::UnexpectedEnd)),
                    Completion::Unary(tx) => {
                        let _ = tx.send(Err(CallError::UnexpectedEnd));
                    }
                    Completion::Stream(tx) => self.deliver_to_stream(tx, Ok(None)),
                }
            }
            Delivery::Cancelled(completion, response) => {
                self.freed += 1;
                let error = match response.status() {
                    Some(status) => CallError::Failed(status),
                    None => CallError::Cancelled,
                };
                match completion {
                    Completion::Call(tx) => tx.send(Err(error)),
                    Completion::Unary(tx) => {
                        let _ = tx.send(Err(error));
                    }
                    Completion::Stream(tx) => self.deliver_to_stream(tx, Err(error)),
                }
            }
            Delivery::Unknown => {}
        }
    }

    /// Delivers the last item of a stream that has left the call table.
    fn deliver_to_stream(&mut self, mut tx: StreamSender<Resp>, item: StreamItem<Resp>) {
        if let Err(e) = tx.try_send(item) {
            // A disconnected consumer dropped the stream; its Cancel is on its way.
            if e.is_full() {
                self.parked = Some(Parked::Owned(tx, e.into_inner()));
            }
        }
    }

    /// Hands the parked item over once its stream has room; drops it when the stream is gone
    /// (the consumer dropped it, or the call was cancelled or expired). True when the
    /// connection may read again.
    fn poll_parked(&mut self, cx: &mut Context<'_>) -> bool {
        let ready = match &mut self.parked {
            None => return true,
            Some(Parked::InTable { key, id, .. }) => match self.calls.stream(*id) {
                Some((k, Completion::Stream(tx))) if k == *key => tx.poll_ready(cx),
                _ => Poll::Ready(Ok(())),
            },
            Some(Parked::Owned(tx, _)) => tx.poll_ready(cx),
        };
        let Poll::Ready(ready) = ready else {
            return false;
        };
        match self.parked.take() {
            Some(Parked::InTable { key, id, item }) if ready.is_ok() => {
                if let Some((k, Completion::Stream(tx))) = self.calls.stream(id)
                    && k == key
                {
                    let _ = tx.start_send(item);
                }
            }
            Some(Parked::Owned(mut tx, item)) if ready.is_ok() => {
                let _ = tx.start_send(item);
            }
            _ => {}
        }
        true
    }

    fn fail_calls(&mut self) {
        for completion in self.calls.drain() {
            self.freed += 1;
            completion.fail(CallError::ConnectionClosed);
        }
        self.parked = None;
        self.shared.permits.close();
        self.shared.stream_permits.close();
        self.rx.close();
    }

    fn fail(&mut self, error: ConnectionError) -> ConnectionError {
        tracing::debug!(%error, "rpc client connection failed");
        self.fail_calls();
        error
    }
}

impl<T, C, Req, Resp> Future for ClientConnection<T, C>
where
    T: AsyncRead + AsyncWrite + Unpin,
    C: Encoder<Message = Req> + Decoder<Message = Resp>,
    Req: Message,
    Resp: Message,
{
    type Output = Result<(), ConnectionError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = this.poll_drive(cx);
        #[cfg(feature = "metrics")]
        this.in_flight.set(this.calls.len());
        result
    }
}
