//! The node's yamux (`/yamux/1.0.0`): a sans-io [`session::Session`] and the thin async layer
//! that moves its frames.
//!
//! The secured stream, the session and the read buffer sit behind one lock that the
//! connection's task and the streams share. A stream's task frames its own writes straight into
//! the secured stream's send buffer (Noise gathers plaintext there and seals it in place), so a
//! write is copied once before the cipher; the connection's task flushes what was written, reads,
//! and hands out each decrypted data body as a slice of the buffer it was read into. Windows
//! bound what a stream buffers, the pending output bounds what writers and the peer's pings can
//! queue, and the peer's streams are capped before anything is allocated for them.

mod buffers;
pub(crate) mod frame;
pub(crate) mod session;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use frame::Header;
pub use session::ProtocolError;
pub(crate) use session::{Config, Mode, OpenError};
use session::{Output, Read, Session, Write};

/// Frames waiting for the secured stream beyond this stop the writers until they are out.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// Frames waiting beyond this stop the reading of more input: the peer is sending what must
/// be answered (pings) and is not reading the answers. It sits above what the writers alone
/// can queue (the limit and one frame), so that two sides that both write and read never wait
/// on each other.
const READ_STOP: usize = 2 * OUTPUT_LIMIT;
/// Bytes asked of the secured stream per read when no frame needs more.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per poll of the connection before it lets other tasks run.
const READS_PER_POLL: usize = 16;
/// Frames processed per turn of the connection before the tasks they woke run. The turns
/// interleave the two sides: the answers to the first requests of a burst leave while the
/// rest are being served, instead of the whole burst waiting for the slowest.
const FRAMES_PER_TURN: usize = 16;

/// Why a yamux connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MuxError {
    /// The peer broke yamux.
    #[error("peer broke yamux: {0}")]
    Protocol(#[from] ProtocolError),
    /// The secured stream failed.
    #[error("connection i/o failed: {0}")]
    Io(#[from] io::Error),
}

/// The error a stream's reader gets when its connection ended before the peer finished the
/// stream: the data read so far may be incomplete.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the connection closed before the peer finished the stream")]
pub(crate) struct ConnectionLost;

/// Whether `e` says that a stream's connection ended under it.
#[cfg_attr(not(feature = "request-response"), allow(dead_code))]
pub(crate) fn is_connection_lost(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ConnectionLost>())
}

fn lost() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, ConnectionLost)
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the peer reset the stream")
}

struct Inner<T> {
    session: Session,
    /// `None` once the connection's task has ended: the socket closes with it, not with the
    /// last stream handle.
    io: Option<T>,
    /// Frames the secured stream did not take yet, in order; written before anything else.
    pending: Vec<u8>,
    /// The secured stream holds frames it was not asked to flush yet.
    unflushed: bool,
    failed: bool,
    rbuf: BytesMut,
    driver: Option<Waker>,
    /// Writers stopped by [`OUTPUT_LIMIT`].
    blocked: Vec<Waker>,
    /// What every read of the secured stream registers, whoever reads.
    read_waker: Waker,
    read_wakers: Arc<ReadWakers>,
    /// How a read by a stream's task ended the input, for the connection's task to act on.
    read_end: Option<ReadEnd>,
}

/// An end of the input that a stream's reader found.
enum ReadEnd {
    Closed,
    Failed(MuxError),
}

/// The waker the secured stream's reads register. A stream's reader with nothing buffered reads
/// the socket itself (no hop through the connection's task), so the socket's one read waker
/// must reach both the reader that read last and the connection's task: a reader that stopped
/// waiting (its read cancelled) then leaves the connection's task to read, not no one.
#[derive(Default)]
struct ReadWakers {
    reader: Mutex<Option<Waker>>,
    driver: Mutex<Option<Waker>>,
}

impl ReadWakers {
    fn set(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl std::task::Wake for ReadWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.reader, &self.driver] {
            let w = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

impl<T> Inner<T> {
    fn wake_driver(&mut self) {
        if let Some(w) = self.driver.take() {
            w.wake();
        }
    }
}

impl<T: AsyncWrite + Unpin> Inner<T> {
    /// Processes up to `max_frames` complete frames of the read buffer, their answers written
    /// as any frame is; `true` when complete frames are left.
    fn receive(&mut self, max_frames: usize) -> Result<bool, ProtocolError> {
        let mut out = Frames {
            io: self.io.as_mut(),
            pending: &mut self.pending,
            unflushed: &mut self.unflushed,
            failed: &mut self.failed,
        };
        self.session
            .receive_some(&mut self.rbuf, &mut out, max_frames)
    }
}

/// The end of the input: clean between frames, an error inside one.
fn input_closed(rbuf: &BytesMut) -> Result<Option<u32>, MuxError> {
    if rbuf.is_empty() {
        return Ok(None);
    }
    Err(MuxError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed in the middle of a yamux frame",
    )))
}

/// Writes frames into the secured stream's buffer without waiting: what it does not take at
/// once is kept, in order, for the connection's task.
struct Frames<'a, T> {
    io: Option<&'a mut T>,
    pending: &'a mut Vec<u8>,
    unflushed: &'a mut bool,
    failed: &'a mut bool,
}

impl<T: AsyncWrite + Unpin> Frames<'_, T> {
    fn put(&mut self, mut bytes: &[u8]) {
        if self.pending.is_empty()
            && let Some(io) = self.io.as_deref_mut()
        {
            // A waker that does nothing: the connection's task is woken after every frame
            // and flushes with its own, which is also the one the socket keeps.
            let mut cx = Context::from_waker(Waker::noop());
            while !bytes.is_empty() {
                match Pin::new(&mut *io).poll_write(&mut cx, bytes) {
                    Poll::Ready(Ok(n)) if n > 0 => bytes = &bytes[n..],
                    Poll::Ready(Ok(_)) | Poll::Ready(Err(_)) => {
                        *self.failed = true;
                        return;
                    }
                    Poll::Pending => break,
                }
            }
        }
        self.pending.extend_from_slice(bytes);
    }
}

impl<T: AsyncWrite + Unpin> Output for Frames<'_, T> {
    fn frame(&mut self, header: &Header, body: &[u8]) {
        if *self.failed {
            return;
        }
        *self.unflushed = true;
        self.put(&header.encode());
        self.put(body);
    }
}

macro_rules! frames {
    ($inner:ident) => {
        Frames {
            io: $inner.io.as_mut(),
            pending: &mut $inner.pending,
            unflushed: &mut $inner.unflushed,
            failed: &mut $inner.failed,
        }
    };
}

type Shared<T> = Arc<Mutex<Inner<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, Inner<T>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A yamux connection; its owner (the connection's task) polls it for inbound streams, which
/// is also what reads and flushes.
pub(crate) struct Connection<T> {
    shared: Shared<T>,
}

/// Opens streams on a [`Connection`] from any task.
pub(crate) struct Control<T> {
    shared: Shared<T>,
}

impl<T> Clone for Control<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Control<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

/// One yamux stream.
pub(crate) struct Stream<T: AsyncWrite + Unpin> {
    shared: Shared<T>,
    id: u32,
}

impl<T: AsyncWrite + Unpin> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// Runs yamux over `io`.
    pub(crate) fn new(io: T, mode: Mode, config: Config) -> Self {
        let read_wakers = Arc::new(ReadWakers::default());
        Self {
            shared: Arc::new(Mutex::new(Inner {
                session: Session::new(mode, config),
                io: Some(io),
                pending: Vec::new(),
                unflushed: false,
                failed: false,
                rbuf: BytesMut::new(),
                driver: None,
                blocked: Vec::new(),
                read_waker: Waker::from(read_wakers.clone()),
                read_wakers,
                read_end: None,
            })),
        }
    }

    /// A handle that opens streams.
    pub(crate) fn control(&self) -> Control<T> {
        Control {
            shared: self.shared.clone(),
        }
    }

    /// Flushes, reads and processes frames; returns the next stream the peer opened, or `None`
    /// once the peer closed the connection cleanly.
    pub(crate) fn poll_next_inbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Stream<T>, MuxError>>> {
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        match poll_connection(inner, cx) {
            Poll::Ready(Ok(Some(id))) => Poll::Ready(Some(Ok(Stream {
                shared: self.shared.clone(),
                id,
            }))),
            Poll::Ready(Ok(None)) => {
                inner.session.connection_lost();
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                if let MuxError::Protocol(_) = e {
                    inner.session.protocol_error(&mut frames!(inner));
                    let _ = poll_flush_output(inner, cx);
                }
                inner.session.connection_lost();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Says go-away, flushes and closes the secured stream's sending side; the streams still
    /// open learn that the connection is gone.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        inner
            .session
            .go_away(frame::go_away::NORMAL, &mut frames!(inner));
        inner.session.connection_lost();
        ready!(poll_flush_output(inner, cx))?;
        match inner.io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        let mut inner = lock(&self.shared);
        inner.session.connection_lost();
        inner.io = None;
        inner.pending = Vec::new();
        inner.rbuf = BytesMut::new();
        for w in inner.blocked.drain(..) {
            w.wake();
        }
    }
}

/// Writes the frames kept for later, then flushes the secured stream.
fn poll_flush_output<T: AsyncWrite + Unpin>(
    inner: &mut Inner<T>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let Some(io) = inner.io.as_mut() else {
        return Poll::Ready(Err(lost()));
    };
    let mut written = 0;
    while written < inner.pending.len() {
        match Pin::new(&mut *io).poll_write(cx, &inner.pending[written..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => written += n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    inner.pending.drain(..written);
    if inner.pending.len() < OUTPUT_LIMIT {
        for w in inner.blocked.drain(..) {
            w.wake();
        }
    }
    if !inner.pending.is_empty() {
        return Poll::Pending;
    }
    if inner.unflushed {
        ready!(Pin::new(io).poll_flush(cx))?;
        inner.unflushed = false;
    }
    Poll::Ready(Ok(()))
}

/// Reads once from the secured stream into the read buffer, registering the shared read waker.
fn read_some<T: AsyncRead + Unpin>(inner: &mut Inner<T>) -> Poll<io::Result<usize>> {
    let Some(io) = inner.io.as_mut() else {
        return Poll::Ready(Ok(0));
    };
    // The session refused a data header past its windows as soon as it was read, so `need`
    // is bounded by the receive window.
    let need = frame_end(&inner.rbuf).saturating_sub(inner.rbuf.len());
    buffers::make_room(&mut inner.rbuf, READ_CHUNK.max(need));
    let mut cx = Context::from_waker(&inner.read_waker);
    let read = tokio_util::io::poll_read_buf(Pin::new(io), &mut cx, &mut inner.rbuf);
    if read.is_pending() && inner.rbuf.is_empty() {
        // A connection waiting for input holds no read buffer.
        buffers::give_back(std::mem::take(&mut inner.rbuf));
    }
    read
}

/// Where the frame that starts `input` ends, once its header is there (a header's length
/// before that), so that a large data frame is read into room made for all of it at once.
fn frame_end(input: &[u8]) -> usize {
    match input.get(..frame::HEADER_LEN) {
        Some(h) if h[1] == 0 => {
            frame::HEADER_LEN + u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize
        }
        _ => frame::HEADER_LEN,
    }
}

/// One turn of the connection: flush, then read and process until the input runs dry.
fn poll_connection<T: AsyncRead + AsyncWrite + Unpin>(
    inner: &mut Inner<T>,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<u32>, MuxError>> {
    if !inner
        .driver
        .as_ref()
        .is_some_and(|w| w.will_wake(cx.waker()))
    {
        inner.driver = Some(cx.waker().clone());
    }
    if let Some(id) = inner.session.take_inbound() {
        return Poll::Ready(Ok(Some(id)));
    }
    match inner.read_end.take() {
        Some(ReadEnd::Failed(e)) => return Poll::Ready(Err(e)),
        Some(ReadEnd::Closed) => return Poll::Ready(input_closed(&inner.rbuf)),
        None => {}
    }
    for _ in 0..READS_PER_POLL {
        if inner.failed {
            return Poll::Ready(Err(MuxError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the secured stream failed",
            ))));
        }
        if let Poll::Ready(Err(e)) = poll_flush_output(inner, cx) {
            return Poll::Ready(Err(e.into()));
        }
        if inner.pending.len() >= READ_STOP {
            // The peer does not read what it asks for: read no more of it until the output
            // is out (the flush above waits on the socket).
            return Poll::Pending;
        }
        let more = inner.receive(FRAMES_PER_TURN)?;
        if let Some(id) = inner.session.take_inbound() {
            let _ = poll_flush_output(inner, cx);
            return Poll::Ready(Ok(Some(id)));
        }
        if more {
            // Let the tasks these frames woke run; the rest waits in the buffer.
            break;
        }
        if inner.io.is_none() {
            return Poll::Ready(Ok(None));
        }
        ReadWakers::set(&inner.read_wakers.driver, cx.waker());
        let n = match read_some(inner) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r?,
        };
        if n == 0 {
            return Poll::Ready(input_closed(&inner.rbuf));
        }
    }
    // More may be waiting: come back after the other tasks had their turn.
    if let Poll::Ready(Err(e)) = poll_flush_output(inner, cx) {
        return Poll::Ready(Err(e.into()));
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

impl<T: AsyncRead + AsyncWrite + Unpin> Control<T> {
    /// Opens a stream; waits while the peer has too many of ours unacknowledged.
    pub(crate) fn poll_open(&self, cx: &mut Context<'_>) -> Poll<Result<Stream<T>, OpenError>> {
        let mut inner = lock(&self.shared);
        if inner.io.is_none() {
            return Poll::Ready(Err(OpenError::Closed));
        }
        match inner.session.open() {
            Ok(id) => Poll::Ready(Ok(Stream {
                shared: self.shared.clone(),
                id,
            })),
            Err(OpenError::Backlog) => {
                inner.session.wait_to_open(cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Opens a stream.
    pub(crate) async fn open(&self) -> Result<Stream<T>, OpenError> {
        std::future::poll_fn(|cx| self.poll_open(cx)).await
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        // First what is buffered; with nothing buffered, the socket, read from this task
        // (its frames for other streams wake their readers); then wait.
        for waker in [Waker::noop(), cx.waker()] {
            let dst = buf.initialize_unfilled();
            let read = inner.session.read(self.id, dst, waker, &mut frames!(inner));
            match read {
                Read::Data(n) => {
                    buf.advance(n);
                    if inner.unflushed {
                        inner.wake_driver();
                    }
                    return Poll::Ready(Ok(()));
                }
                Read::Finished => return Poll::Ready(Ok(())),
                Read::Reset => return Poll::Ready(Err(reset())),
                Read::Lost => return Poll::Ready(Err(lost())),
                Read::Pending if waker.will_wake(cx.waker()) => return Poll::Pending,
                Read::Pending => {}
            }
            if !read_for_the_connection(inner, cx.waker()) {
                // Waiting on the connection's task: register with the session and wait.
                let dst = buf.initialize_unfilled();
                let read = inner
                    .session
                    .read(self.id, dst, cx.waker(), &mut frames!(inner));
                return match read {
                    Read::Data(n) => {
                        buf.advance(n);
                        Poll::Ready(Ok(()))
                    }
                    Read::Finished => Poll::Ready(Ok(())),
                    Read::Reset => Poll::Ready(Err(reset())),
                    Read::Lost => Poll::Ready(Err(lost())),
                    Read::Pending => Poll::Pending,
                };
            }
        }
        Poll::Pending
    }
}

/// Reads and processes input from a stream's task; `false` when it may not (the connection's
/// task has an end to act on, or the output is over its stop) or the socket had nothing (then
/// the shared read waker is registered). After a read that got bytes the connection's task is
/// woken to read on, accept, flush and end what only it can.
fn read_for_the_connection<T: AsyncRead + AsyncWrite + Unpin>(
    inner: &mut Inner<T>,
    waker: &Waker,
) -> bool {
    if inner.io.is_none() || inner.read_end.is_some() || inner.failed {
        return false;
    }
    if inner.pending.len() >= READ_STOP {
        inner.wake_driver();
        return false;
    }
    ReadWakers::set(&inner.read_wakers.reader, waker);
    match read_some(inner) {
        Poll::Pending => false,
        Poll::Ready(Ok(n)) if n > 0 => {
            if let Err(e) = inner.receive(usize::MAX) {
                inner.read_end = Some(ReadEnd::Failed(e.into()));
                inner.wake_driver();
                return false;
            }
            // The socket may hold more, and no read has registered for it since this one
            // succeeded: the connection's task reads on until it waits (and accepts, flushes).
            inner.wake_driver();
            true
        }
        Poll::Ready(Ok(_)) => {
            inner.read_end = Some(ReadEnd::Closed);
            inner.wake_driver();
            false
        }
        Poll::Ready(Err(e)) => {
            inner.read_end = Some(ReadEnd::Failed(e.into()));
            inner.wake_driver();
            false
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        if inner.failed {
            return Poll::Ready(Err(lost()));
        }
        if inner.pending.len() >= OUTPUT_LIMIT && inner.io.is_some() {
            if !inner.blocked.iter().any(|w| w.will_wake(cx.waker())) {
                inner.blocked.push(cx.waker().clone());
            }
            inner.wake_driver();
            return Poll::Pending;
        }
        let written = inner
            .session
            .write(self.id, buf, cx.waker(), &mut frames!(inner));
        match written {
            Write::Written(n) => {
                inner.wake_driver();
                Poll::Ready(Ok(n))
            }
            Write::Pending => Poll::Pending,
            Write::Finished => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream was closed for writing",
            ))),
            Write::Reset => Poll::Ready(Err(reset())),
            Write::Lost => Poll::Ready(Err(lost())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written frames are the connection's to send; its task was woken for them.
        let inner = lock(&self.shared);
        if inner.failed || (inner.io.is_none() && inner.session.is_lost()) {
            return Poll::Ready(Err(lost()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        let done = inner.session.finish(self.id, &mut frames!(inner));
        match done {
            Write::Written(_) => {
                inner.wake_driver();
                Poll::Ready(Ok(()))
            }
            Write::Reset => Poll::Ready(Err(reset())),
            Write::Lost | Write::Pending | Write::Finished => Poll::Ready(Err(lost())),
        }
    }
}

impl<T: AsyncWrite + Unpin> Drop for Stream<T> {
    fn drop(&mut self) {
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        inner.session.drop_stream(self.id, &mut frames!(inner));
        if inner.unflushed {
            inner.wake_driver();
        }
    }
}

#[cfg(test)]
mod tests;
