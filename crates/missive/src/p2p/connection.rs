//! One task per connection: it drives the multiplexer (yamux's reads and flushes, QUIC's and
//! WebTransport's accepts), hands inbound streams to protocol negotiation, and closes the
//! connection when idle, on request or on node shutdown. Outbound streams open on the caller's
//! task.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::node::Shared;
use super::substream::{QuicStream, Substream};
use super::upgrade::{Endpoint, MuxConnection, MuxIo};
use super::{Multiaddr, NodeEvent, PeerId};

/// Identifies one connection of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

/// Why a connection closed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseCause {
    /// No stream was open for the idle timeout.
    IdleTimeout,
    /// [`super::Node::close_peer`] or a local decision closed it.
    LocalClose,
    /// The node shut down.
    Shutdown,
    /// The remote closed the connection.
    RemoteClosed,
    /// The connection failed (socket error or a remote that broke yamux).
    Error(Arc<std::io::Error>),
}

/// Inbound yamux streams a connection's task accepts per poll before the ones accepted run:
/// a burst of requests is served in turns, whose answers leave while the rest is read.
const INBOUND_PER_TURN: usize = 8;

/// A request to a connection's task (a WebTransport session opens its streams there).
#[derive(Debug)]
#[cfg_attr(not(feature = "webtransport"), allow(dead_code))]
pub(crate) enum Command {
    Open(oneshot::Sender<Result<Substream, StreamOpenFailure>>),
}

/// Why the connection could not open a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamOpenFailure {
    TooManyStreams,
    Closed,
}

/// Stream accounting shared between a connection's task and its streams.
#[derive(Debug)]
pub(crate) struct Activity {
    id: ConnectionId,
    /// Read by request-response, whose waits race the connection's close.
    #[cfg_attr(not(feature = "request-response"), allow(dead_code))]
    closed: CancellationToken,
    streams: AtomicUsize,
    negotiating: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// The remote address of the connection (identify sends it back as the observed address).
    remote_addr: Multiaddr,
}

impl Activity {
    fn new(id: ConnectionId, closed: CancellationToken, remote_addr: Multiaddr) -> Self {
        Self {
            id,
            closed,
            remote_addr,
            streams: AtomicUsize::new(0),
            negotiating: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// When the connection last became idle; `None` while streams are open.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        if self.streams() > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Counts one open stream of a connection for as long as it lives.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Activity>);

impl StreamGuard {
    /// Counts a new stream unless `max` are open already. Checked and counted in one step,
    /// since outbound opens and the connection's task count streams from different threads.
    pub(crate) fn try_new(activity: &Arc<Activity>, max: usize) -> Option<Self> {
        activity
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Self(activity.clone()))
    }
}

impl StreamGuard {
    /// The connection the stream belongs to.
    pub(crate) fn connection_id(&self) -> ConnectionId {
        self.0.id
    }

    /// The remote address of the stream's connection.
    pub(crate) fn remote_addr(&self) -> &Multiaddr {
        &self.0.remote_addr
    }

    /// Cancelled once the stream's connection has closed.
    #[cfg(feature = "request-response")]
    pub(crate) fn connection_closed(&self) -> &CancellationToken {
        &self.0.closed
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

/// Counts one inbound stream in negotiation.
#[derive(Debug)]
pub(crate) struct NegotiatingGuard(Arc<Activity>);

impl Drop for NegotiatingGuard {
    fn drop(&mut self) {
        self.0.negotiating.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the node keeps of a live connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionHandle {
    pub(crate) id: ConnectionId,
    pub(crate) peer: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    /// A QUIC connection opens its streams on the caller's task: quinn's connection is
    /// shared, so the hop through the connection's task (a command, a wake-up and a reply
    /// per stream) buys nothing there.
    pub(crate) quic: Option<quinn::Connection>,
    /// yamux streams open on the caller's task too, under the connection's lock.
    pub(crate) yamux: Option<super::mux::Control<MuxIo>>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) close: CancellationToken,
}

impl ConnectionHandle {
    pub(crate) fn is_alive(&self) -> bool {
        !self.commands.is_closed() && !self.close.is_cancelled()
    }

    /// Opens a stream; the guard counts it against the connection's stream limit.
    pub(crate) async fn open(
        &self,
        max_streams: usize,
    ) -> Result<(Substream, StreamGuard), StreamOpenFailure> {
        let guard = StreamGuard::try_new(&self.activity, max_streams)
            .ok_or(StreamOpenFailure::TooManyStreams)?;
        if !self.is_alive() {
            return Err(StreamOpenFailure::Closed);
        }
        let s = if let Some(control) = &self.yamux {
            // Waits only while the peer has 256 of our streams unacknowledged; the caller's
            // negotiation deadline bounds it.
            let s = control.open().await.map_err(|e| match e {
                super::mux::OpenError::NoMoreIds => StreamOpenFailure::TooManyStreams,
                _ => StreamOpenFailure::Closed,
            })?;
            Substream::Yamux(s)
        } else if let Some(conn) = &self.quic {
            // Waits for the peer's stream credit; a connection that closes meanwhile
            // fails it, and the driver learns the close from its own accept.
            let (send, recv) = conn
                .open_bi()
                .await
                .map_err(|_| StreamOpenFailure::Closed)?;
            Substream::Quic(QuicStream::new(send, recv))
        } else {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(Command::Open(tx))
                .await
                .map_err(|_| StreamOpenFailure::Closed)?;
            rx.await.map_err(|_| StreamOpenFailure::Closed)??
        };
        Ok((s, guard))
    }
}

/// The parts a connection's task runs with.
pub(crate) struct Driver {
    pub(crate) handle: ConnectionHandle,
    pub(crate) endpoint: Endpoint,
    pub(crate) conn: Muxer,
    #[cfg_attr(not(feature = "webtransport"), allow(dead_code))]
    pub(crate) commands: mpsc::Receiver<Command>,
}

/// A secured, multiplexed connection as a transport hands it to the node.
pub(crate) enum Muxed {
    /// yamux over a secured byte stream (TCP, WebSocket).
    Yamux(Box<MuxConnection>),
    /// A QUIC connection: its own streams, its own security.
    Quic(quinn::Connection),
    /// A WebTransport session: QUIC streams behind HTTP/3, identities proven by Noise.
    #[cfg(feature = "webtransport")]
    WebTransport(Box<super::webtransport::WebTransportConnection>),
}

/// The multiplexer a connection's task drives.
pub(crate) enum Muxer {
    /// Taken by the running driver.
    #[cfg_attr(not(feature = "webtransport"), allow(dead_code))]
    Closed,
    Yamux(Box<MuxConnection>),
    Quic(quinn::Connection),
    #[cfg(feature = "webtransport")]
    WebTransport(Box<super::webtransport::WebTransportConnection>),
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.handle.id)
            .finish_non_exhaustive()
    }
}

/// Creates the handle and the task state of a new connection.
pub(crate) fn new_connection(
    id: ConnectionId,
    peer: PeerId,
    endpoint: Endpoint,
    muxed: Muxed,
    remote_addr: Multiaddr,
    close: CancellationToken,
) -> Driver {
    let (tx, rx) = mpsc::channel(32);
    let (conn, quic, yamux) = match muxed {
        Muxed::Yamux(conn) => {
            let control = conn.control();
            (Muxer::Yamux(conn), None, Some(control))
        }
        Muxed::Quic(conn) => (Muxer::Quic(conn.clone()), Some(conn), None),
        #[cfg(feature = "webtransport")]
        Muxed::WebTransport(wt) => (Muxer::WebTransport(wt), None, None),
    };
    Driver {
        handle: ConnectionHandle {
            id,
            peer,
            commands: tx,
            quic,
            yamux,
            activity: Arc::new(Activity::new(id, close.clone(), remote_addr)),
            close,
        },
        endpoint,
        conn,
        commands: rx,
    }
}

impl Driver {
    /// Runs the connection until it closes; reports the close to the node.
    pub(crate) async fn run(mut self, shared: Arc<Shared>) {
        let cause = self.drive(&shared).await;
        shared.connection_closed(&self.handle, self.endpoint, cause);
    }

    async fn drive(&mut self, shared: &Arc<Shared>) -> CloseCause {
        match &self.conn {
            Muxer::Yamux(_) => self.drive_yamux(shared).await,
            Muxer::Quic(conn) => {
                let conn = conn.clone();
                self.drive_quic(shared, conn).await
            }
            #[cfg(feature = "webtransport")]
            Muxer::WebTransport(_) => {
                let Muxer::WebTransport(wt) = std::mem::replace(&mut self.conn, Muxer::Closed)
                else {
                    unreachable!("matched above");
                };
                self.drive_webtransport(shared, &wt).await
            }
            Muxer::Closed => CloseCause::LocalClose,
        }
    }

    async fn drive_yamux(&mut self, shared: &Arc<Shared>) -> CloseCause {
        let Self { handle, conn, .. } = self;
        let Muxer::Yamux(conn) = conn else {
            unreachable!("drive_yamux runs yamux connections");
        };
        let idle_timeout = shared.config.idle_timeout;
        let mut idle_timer = Box::pin(tokio::time::sleep(idle_timeout));
        let mut cancelled = Box::pin(handle.close.clone().cancelled_owned());
        let cause = poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(if shared.is_shutting_down() {
                    CloseCause::Shutdown
                } else {
                    CloseCause::LocalClose
                });
            }
            for accepted in 0.. {
                if accepted == INBOUND_PER_TURN {
                    // Let the streams accepted so far run before taking more.
                    cx.waker().wake_by_ref();
                    break;
                }
                match conn.poll_next_inbound(cx) {
                    Poll::Ready(Some(Ok(s))) => on_inbound(shared, handle, Substream::Yamux(s)),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(close_cause(e)),
                    Poll::Ready(None) => return Poll::Ready(CloseCause::RemoteClosed),
                    Poll::Pending => break,
                }
            }
            poll_idle(&mut idle_timer, &handle.activity, idle_timeout, cx)
        })
        .await;
        // Close politely (go-away, then the secured stream's close), bounded.
        if matches!(
            cause,
            CloseCause::IdleTimeout | CloseCause::LocalClose | CloseCause::Shutdown
        ) {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                poll_fn(|cx| conn.poll_close(cx)),
            )
            .await;
        }
        cause
    }
}

/// Closes an idle connection: ready with the cause once no stream was open for
/// `idle_timeout`.
fn poll_idle(
    timer: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
    activity: &Activity,
    idle_timeout: std::time::Duration,
    cx: &mut std::task::Context<'_>,
) -> Poll<CloseCause> {
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match activity.idle_since() {
            Some(since) => {
                let deadline = since + idle_timeout;
                if Instant::now() >= deadline {
                    return Poll::Ready(CloseCause::IdleTimeout);
                }
                timer.as_mut().reset(deadline);
            }
            None => timer.as_mut().reset(Instant::now() + idle_timeout),
        }
    }
}

/// Admits an inbound stream within the connection's limits and negotiates it in a task of its
/// own.
pub(crate) fn on_inbound(shared: &Arc<Shared>, handle: &ConnectionHandle, s: Substream) {
    let activity = &handle.activity;
    let config = &shared.config;
    let Some(guard) = StreamGuard::try_new(activity, config.max_streams_per_connection) else {
        shared.emit(NodeEvent::InboundStreamRefused {
            peer: handle.peer,
            reason: StreamRefusal::TooManyStreams,
        });
        return; // dropping `s` resets it
    };
    if activity.negotiating.load(Ordering::Acquire) >= config.max_negotiating_inbound_streams {
        shared.emit(NodeEvent::InboundStreamRefused {
            peer: handle.peer,
            reason: StreamRefusal::TooManyNegotiating,
        });
        return;
    }
    activity.negotiating.fetch_add(1, Ordering::AcqRel);
    let negotiating = NegotiatingGuard(activity.clone());
    let shared = shared.clone();
    let peer = handle.peer;
    let serve = async move {
        shared.serve_inbound(peer, s, guard, negotiating).await;
    };
    tokio::spawn(tracing::Instrument::in_current_span(serve));
}

/// Why an inbound stream was reset without reaching the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamRefusal {
    /// The connection already has its maximum of open streams.
    TooManyStreams,
    /// The connection already has its maximum of streams in negotiation.
    TooManyNegotiating,
    /// The application's backlog for this protocol is full.
    BacklogFull(String),
}

fn close_cause(e: super::mux::MuxError) -> CloseCause {
    match e {
        super::mux::MuxError::Io(io) => CloseCause::Error(Arc::new(io)),
        protocol => CloseCause::Error(Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            protocol,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads open and close streams as fast as they can against a limit of one: the
    /// count taken at each open never exceeds the limit.
    #[test]
    fn the_stream_limit_holds_under_concurrent_opens() {
        let activity = Arc::new(Activity::new(
            ConnectionId(1),
            CancellationToken::new(),
            Multiaddr::from_socket_addr(([127, 0, 0, 1], 1).into()),
        ));
        let overshoots = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..200_000 {
                        if let Some(guard) = StreamGuard::try_new(&activity, 1) {
                            if activity.streams() > 1 {
                                overshoots.fetch_add(1, Ordering::Relaxed);
                            }
                            drop(guard);
                        }
                    }
                });
            }
        });
        assert_eq!(overshoots.load(Ordering::Relaxed), 0);
        assert_eq!(activity.streams(), 0);
    }
}
