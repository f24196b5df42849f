//! The yamux session as a state machine without i/o: frames in ([`Session::receive`]), frames
//! out (through an [`Output`]), stream operations in between. It keeps every stream's windows,
//! buffered data, flags and ends, and the wakers of the tasks waiting on them; the async layer
//! around it ([`super::Connection`]) only moves bytes.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::task::Waker;

use bytes::{Buf as _, Bytes, BytesMut};

use super::frame::{FrameError, HEADER_LEN, Header, Kind, flags, go_away};

/// The window every stream starts with, in both directions (the spec's 256 KiB).
pub(crate) const INITIAL_WINDOW: u32 = 256 * 1024;

/// Which side of the connection the session is: the dialer opens odd stream ids, the listener
/// even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The dialer (yamux's client).
    Client,
    /// The listener (yamux's server).
    Server,
}

/// A session's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Inbound streams kept at once; a SYN beyond them is answered with a RST before anything
    /// is allocated for it.
    pub(crate) max_inbound_streams: usize,
    /// Outbound streams the peer has not acknowledged yet; opening more waits (as rust-libp2p's
    /// yamux does, which waits at 256).
    pub(crate) max_unacknowledged: usize,
    /// The largest receive window a stream grows to. A stream starts at [`INITIAL_WINDOW`] and
    /// doubles its window when its reader has emptied the buffer by the time half the window
    /// was read (the window, not the reader, was what held the sender back).
    pub(crate) max_receive_window: u32,
    /// What the streams' windows may add up to beyond [`INITIAL_WINDOW`] each, for the whole
    /// connection: with it, a peer can make the session buffer at most
    /// `max_inbound_streams × INITIAL_WINDOW + window_budget` bytes.
    pub(crate) window_budget: u64,
    /// The largest data frame body this side sends.
    pub(crate) max_frame: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_inbound_streams: 512,
            max_unacknowledged: 256,
            max_receive_window: 16 * 1024 * 1024,
            window_budget: 64 * 1024 * 1024,
            max_frame: 64 * 1024,
        }
    }
}

/// Where frames go: the async layer writes them into the secured stream's send buffer.
pub(crate) trait Output {
    /// Sends one frame: its header, then its body (empty but for data frames).
    fn frame(&mut self, header: &Header, body: &[u8]);
}

/// A peer that broke yamux; the session answers with a go-away (protocol error) and ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The version byte of a frame is not 0.
    #[error("yamux frame of unknown version {0}")]
    Version(u8),
    /// The type byte of a frame is none of the four types.
    #[error("yamux frame of unknown type {0}")]
    UnknownType(u8),
    /// A data frame longer than any window this side grants.
    #[error("yamux data frame of {0} bytes exceeds the receive window")]
    FrameTooLarge(u32),
    /// Data beyond what the stream's window allowed.
    #[error("yamux stream {0} received more data than its window allowed")]
    WindowExceeded(u32),
    /// A window update that takes the send window past 2³² − 1.
    #[error("yamux stream {0} window update overflows the window")]
    WindowOverflow(u32),
    /// A SYN on an id of the wrong parity, or on stream 0.
    #[error("yamux stream id {0} is not the peer's to open")]
    InvalidStreamId(u32),
    /// A SYN for a stream that is open.
    #[error("yamux stream {0} opened twice")]
    DuplicateStream(u32),
}

impl From<FrameError> for ProtocolError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Version(v) => Self::Version(v),
            FrameError::Kind(k) => Self::UnknownType(k),
        }
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Too many streams wait for the peer's acknowledgement: wait for one.
    Backlog,
    /// The session ended, or the peer sent a go-away.
    Closed,
    /// The stream ids are used up.
    NoMoreIds,
}

/// How a read went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Bytes were copied.
    Data(usize),
    /// The stream's end: the peer's FIN.
    Finished,
    /// The peer reset the stream.
    Reset,
    /// The connection ended before the peer finished the stream.
    Lost,
    /// Nothing yet; the waker is kept.
    Pending,
}

/// How a write went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// Bytes were framed.
    Written(usize),
    /// No send window; the waker is kept.
    Pending,
    /// This side already sent its FIN.
    Finished,
    /// The peer reset the stream.
    Reset,
    /// The connection ended.
    Lost,
}

/// Which flag the stream's next frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    None,
    /// The stream opens lazily: its first frame carries the SYN.
    Syn,
    /// The peer's stream is acknowledged with our first frame on it.
    Ack,
}

impl Flag {
    fn take(&mut self) -> u16 {
        match std::mem::replace(self, Flag::None) {
            Flag::None => 0,
            Flag::Syn => flags::SYN,
            Flag::Ack => flags::ACK,
        }
    }
}

#[derive(Debug)]
struct StreamState {
    outbound: bool,
    flag: Flag,
    /// Outbound only: the peer acknowledged the stream.
    acknowledged: bool,
    send_window: u32,
    /// What the peer may still send.
    recv_credit: u32,
    /// The stream's receive window: credit, buffered and consumed add up to it.
    window: u32,
    /// Read by the application since the last window update.
    consumed: u32,
    recv: VecDeque<Bytes>,
    sent_fin: bool,
    remote_fin: bool,
    remote_reset: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl StreamState {
    fn new(outbound: bool, send_window: u32) -> Self {
        Self {
            outbound,
            flag: if outbound { Flag::Syn } else { Flag::Ack },
            acknowledged: !outbound,
            send_window,
            recv_credit: INITIAL_WINDOW,
            window: INITIAL_WINDOW,
            consumed: 0,
            recv: VecDeque::new(),
            sent_fin: false,
            remote_fin: false,
            remote_reset: false,
            reader: None,
            writer: None,
        }
    }

    fn wake_all(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// Stream ids come in sequence: a multiplicative hash spreads them with no SipHash rounds.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A yamux session.
#[derive(Debug)]
pub(crate) struct Session {
    mode: Mode,
    config: Config,
    next_id: u32,
    streams: HashMap<u32, StreamState, BuildHasherDefault<IdHasher>>,
    inbound: usize,
    unacknowledged: usize,
    /// The streams' windows beyond [`INITIAL_WINDOW`], together.
    window_growth: u64,
    /// Streams the peer opened since the last [`Session::take_inbound`].
    new_inbound: VecDeque<u32>,
    open_waiters: Vec<Waker>,
    /// The peer's go-away code, once received.
    remote_go_away: Option<u32>,
    local_go_away: bool,
    lost: bool,
}

impl Session {
    /// A new session. `config.max_receive_window` below [`INITIAL_WINDOW`] is raised to it.
    pub(crate) fn new(mode: Mode, mut config: Config) -> Self {
        config.max_receive_window = config.max_receive_window.max(INITIAL_WINDOW);
        config.max_frame = config.max_frame.max(1);
        Self {
            mode,
            config,
            next_id: match mode {
                Mode::Client => 1,
                Mode::Server => 2,
            },
            streams: HashMap::default(),
            inbound: 0,
            unacknowledged: 0,
            window_growth: 0,
            new_inbound: VecDeque::new(),
            open_waiters: Vec::new(),
            remote_go_away: None,
            local_go_away: false,
            lost: false,
        }
    }

    /// Streams open in the table (inbound and outbound).
    #[cfg(test)]
    pub(crate) fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether the connection ended ([`Session::connection_lost`]).
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// The next stream the peer opened, in order.
    pub(crate) fn take_inbound(&mut self) -> Option<u32> {
        self.new_inbound.pop_front()
    }

    /// Processes every complete frame at the start of `input` and leaves the rest. Data bodies
    /// are split off `input` as they are, so the stream's reader gets the very bytes that were
    /// decrypted. Checks a data frame's length against the windows as soon as its header is
    /// there, so that nothing past a window is ever buffered.
    pub(crate) fn receive(
        &mut self,
        input: &mut BytesMut,
        out: &mut impl Output,
    ) -> Result<(), ProtocolError> {
        self.receive_some(input, out, usize::MAX).map(|_| ())
    }

    /// [`Session::receive`], but of at most `max_frames` frames; `true` when complete frames
    /// are left for the next call.
    pub(crate) fn receive_some(
        &mut self,
        input: &mut BytesMut,
        out: &mut impl Output,
        max_frames: usize,
    ) -> Result<bool, ProtocolError> {
        let mut frames = 0;
        while input.len() >= HEADER_LEN {
            let raw: &[u8; HEADER_LEN] =
                input[..HEADER_LEN].try_into().expect("checked the length");
            let header = Header::decode(raw)?;
            let body = if header.kind == Kind::Data {
                if header.length > self.config.max_receive_window {
                    return Err(ProtocolError::FrameTooLarge(header.length));
                }
                header.length as usize
            } else {
                0
            };
            if input.len() < HEADER_LEN + body {
                return Ok(false);
            }
            if frames == max_frames {
                return Ok(true);
            }
            frames += 1;
            input.advance(HEADER_LEN);
            let data = if body > 0 {
                input.split_to(body).freeze()
            } else {
                Bytes::new()
            };
            self.on_frame(header, data, out)?;
        }
        Ok(false)
    }

    fn on_frame(
        &mut self,
        h: Header,
        data: Bytes,
        out: &mut impl Output,
    ) -> Result<(), ProtocolError> {
        match h.kind {
            Kind::Ping => {
                if h.has(flags::SYN) {
                    out.frame(&Header::pong(h.length), &[]);
                }
                return Ok(());
            }
            Kind::GoAway => {
                self.remote_go_away = Some(h.length);
                for w in self.open_waiters.drain(..) {
                    w.wake();
                }
                return Ok(());
            }
            Kind::Data | Kind::WindowUpdate => {}
        }
        let id = h.stream;
        if h.has(flags::SYN) {
            return self.on_syn(h, data, out);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            // A stream this side already dropped (or never knew): its frames are late, not
            // wrong, and the peer learns the end from the RST or FIN the drop sent.
            return Ok(());
        };
        if h.has(flags::ACK) && s.outbound && !s.acknowledged {
            s.acknowledged = true;
            self.unacknowledged -= 1;
            for w in self.open_waiters.drain(..) {
                w.wake();
            }
        }
        if h.has(flags::RST) {
            s.remote_reset = true;
            s.wake_all();
            return Ok(());
        }
        match h.kind {
            Kind::Data => {
                if h.length > s.recv_credit {
                    return Err(ProtocolError::WindowExceeded(id));
                }
                s.recv_credit -= h.length;
                if !data.is_empty() && !s.remote_fin && !s.remote_reset {
                    s.recv.push_back(data);
                }
            }
            _ => {
                s.send_window = s
                    .send_window
                    .checked_add(h.length)
                    .ok_or(ProtocolError::WindowOverflow(id))?;
                if h.length > 0
                    && let Some(w) = s.writer.take()
                {
                    w.wake();
                }
            }
        }
        if h.has(flags::FIN) {
            s.remote_fin = true;
        }
        if ((h.kind == Kind::Data && h.length > 0) || h.has(flags::FIN))
            && let Some(w) = s.reader.take()
        {
            w.wake();
        }
        Ok(())
    }

    fn on_syn(
        &mut self,
        h: Header,
        data: Bytes,
        out: &mut impl Output,
    ) -> Result<(), ProtocolError> {
        let id = h.stream;
        let theirs = match self.mode {
            Mode::Client => id.is_multiple_of(2),
            Mode::Server => !id.is_multiple_of(2),
        };
        if id == 0 || !theirs {
            return Err(ProtocolError::InvalidStreamId(id));
        }
        if self.streams.contains_key(&id) {
            return Err(ProtocolError::DuplicateStream(id));
        }
        if h.kind == Kind::Data && h.length > INITIAL_WINDOW {
            return Err(ProtocolError::WindowExceeded(id));
        }
        if h.has(flags::RST) {
            return Ok(());
        }
        if self.inbound >= self.config.max_inbound_streams || self.local_go_away || self.lost {
            // Refused before anything is allocated; the connection goes on.
            out.frame(&Header::window_update(id, flags::RST, 0), &[]);
            return Ok(());
        }
        let send_window = match h.kind {
            Kind::WindowUpdate => INITIAL_WINDOW
                .checked_add(h.length)
                .ok_or(ProtocolError::WindowOverflow(id))?,
            _ => INITIAL_WINDOW,
        };
        let mut s = StreamState::new(false, send_window);
        if h.kind == Kind::Data {
            s.recv_credit -= h.length;
            if !data.is_empty() {
                s.recv.push_back(data);
            }
        }
        s.remote_fin = h.has(flags::FIN);
        self.streams.insert(id, s);
        self.inbound += 1;
        self.new_inbound.push_back(id);
        Ok(())
    }

    /// Opens an outbound stream. Nothing is sent until its first frame, which carries the SYN.
    pub(crate) fn open(&mut self) -> Result<u32, OpenError> {
        if self.lost || self.local_go_away || self.remote_go_away.is_some() {
            return Err(OpenError::Closed);
        }
        if self.unacknowledged >= self.config.max_unacknowledged {
            return Err(OpenError::Backlog);
        }
        let id = self.next_id;
        self.next_id = id.checked_add(2).ok_or(OpenError::NoMoreIds)?;
        self.streams
            .insert(id, StreamState::new(true, INITIAL_WINDOW));
        self.unacknowledged += 1;
        Ok(id)
    }

    /// Keeps `waker` until an open may succeed.
    pub(crate) fn wait_to_open(&mut self, waker: &Waker) {
        if !self.open_waiters.iter().any(|w| w.will_wake(waker)) {
            self.open_waiters.push(waker.clone());
        }
    }

    /// Copies buffered data of stream `id` into `dst`; grants the peer credit for it once half
    /// the window was read, and grows the window when the reader outran it.
    pub(crate) fn read(
        &mut self,
        id: u32,
        dst: &mut [u8],
        waker: &Waker,
        out: &mut impl Output,
    ) -> Read {
        let lost = self.lost;
        let Some(s) = self.streams.get_mut(&id) else {
            return Read::Lost;
        };
        if dst.is_empty() {
            return Read::Data(0);
        }
        let mut n = 0;
        while n < dst.len() {
            let Some(front) = s.recv.front_mut() else {
                break;
            };
            let take = front.len().min(dst.len() - n);
            dst[n..n + take].copy_from_slice(&front[..take]);
            front.advance(take);
            if front.is_empty() {
                s.recv.pop_front();
            }
            n += take;
        }
        if n > 0 {
            s.consumed = s.consumed.saturating_add(n as u32);
            if s.consumed >= s.window / 2 && !s.remote_fin && !s.remote_reset && !lost {
                let mut grow = 0;
                if s.recv.is_empty() {
                    let room = self.config.window_budget.saturating_sub(self.window_growth);
                    let room = u32::try_from(room).unwrap_or(u32::MAX);
                    grow = s
                        .window
                        .min(self.config.max_receive_window - s.window)
                        .min(room);
                    s.window += grow;
                    self.window_growth += u64::from(grow);
                }
                let credit = std::mem::take(&mut s.consumed) + grow;
                s.recv_credit += credit;
                out.frame(&Header::window_update(id, s.flag.take(), credit), &[]);
            }
            return Read::Data(n);
        }
        if s.remote_fin {
            Read::Finished
        } else if s.remote_reset {
            Read::Reset
        } else if lost {
            Read::Lost
        } else {
            if !s.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
                s.reader = Some(waker.clone());
            }
            Read::Pending
        }
    }

    /// Frames as much of `src` as stream `id`'s send window and the frame size allow.
    pub(crate) fn write(
        &mut self,
        id: u32,
        src: &[u8],
        waker: &Waker,
        out: &mut impl Output,
    ) -> Write {
        let lost = self.lost;
        let max_frame = self.config.max_frame;
        let Some(s) = self.streams.get_mut(&id) else {
            return Write::Lost;
        };
        if s.remote_reset {
            return Write::Reset;
        }
        if lost {
            return Write::Lost;
        }
        if s.sent_fin {
            return Write::Finished;
        }
        if src.is_empty() {
            return Write::Written(0);
        }
        if s.send_window == 0 {
            if !s.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
                s.writer = Some(waker.clone());
            }
            return Write::Pending;
        }
        let n = src.len().min(s.send_window.min(max_frame) as usize);
        s.send_window -= n as u32;
        out.frame(&Header::data(id, s.flag.take(), n as u32), &src[..n]);
        Write::Written(n)
    }

    /// Ends this side of stream `id` (FIN). Repeating it does nothing.
    pub(crate) fn finish(&mut self, id: u32, out: &mut impl Output) -> Write {
        let lost = self.lost;
        let Some(s) = self.streams.get_mut(&id) else {
            return Write::Lost;
        };
        if s.sent_fin {
            return Write::Written(0);
        }
        if s.remote_reset {
            return Write::Reset;
        }
        if lost {
            return Write::Lost;
        }
        s.sent_fin = true;
        out.frame(&Header::data(id, s.flag.take() | flags::FIN, 0), &[]);
        Write::Written(0)
    }

    /// Forgets stream `id`, whose handle is gone: a stream still open is reset, one the peer
    /// finished is finished in turn, one never announced is not mentioned at all.
    pub(crate) fn drop_stream(&mut self, id: u32, out: &mut impl Output) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        self.window_growth -= u64::from(s.window - INITIAL_WINDOW);
        if s.outbound {
            if !s.acknowledged {
                self.unacknowledged -= 1;
                for w in self.open_waiters.drain(..) {
                    w.wake();
                }
            }
        } else {
            self.inbound -= 1;
        }
        if self.lost || s.remote_reset || s.sent_fin || s.flag == Flag::Syn {
            return;
        }
        let mut flag = s.flag;
        let end = if s.remote_fin { flags::FIN } else { flags::RST };
        out.frame(&Header::data(id, flag.take() | end, 0), &[]);
    }

    /// Announces the session's end; the peer's new streams are refused from now on.
    pub(crate) fn go_away(&mut self, code: u32, out: &mut impl Output) {
        if !self.local_go_away && !self.lost {
            self.local_go_away = true;
            out.frame(&Header::go_away(code), &[]);
        }
    }

    /// Announces a protocol error (go-away code 1).
    pub(crate) fn protocol_error(&mut self, out: &mut impl Output) {
        self.go_away(go_away::PROTOCOL_ERROR, out);
    }

    /// The connection under the session ended: every stream learns it.
    pub(crate) fn connection_lost(&mut self) {
        if self.lost {
            return;
        }
        self.lost = true;
        for s in self.streams.values_mut() {
            s.wake_all();
        }
        for w in self.open_waiters.drain(..) {
            w.wake();
        }
    }
}

/// Feeds `input` to a listener's session in pieces of `piece` bytes, then reads, answers,
/// finishes and drops every stream the peer opened; returns the bytes of the frames the session
/// sent, or the protocol error that ended it. The outcome must not depend on `piece`.
#[doc(hidden)]
pub fn session_for_fuzzing(input: &[u8], piece: usize) -> Result<Vec<u8>, ProtocolError> {
    struct Frames(Vec<u8>);
    impl Output for Frames {
        fn frame(&mut self, header: &Header, body: &[u8]) {
            self.0.extend_from_slice(&header.encode());
            self.0.extend_from_slice(body);
        }
    }
    let mut session = Session::new(Mode::Server, Config::default());
    let mut out = Frames(Vec::new());
    let mut buf = BytesMut::new();
    for chunk in input.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        session.receive(&mut buf, &mut out)?;
    }
    let mut read = vec![0u8; 4096];
    let waker = Waker::noop();
    while let Some(id) = session.take_inbound() {
        while let Read::Data(_) = session.read(id, &mut read, waker, &mut out) {}
        session.write(id, b"answer", waker, &mut out);
        session.finish(id, &mut out);
        session.drop_stream(id, &mut out);
    }
    session.connection_lost();
    Ok(out.0)
}

#[cfg(test)]
mod tests;
