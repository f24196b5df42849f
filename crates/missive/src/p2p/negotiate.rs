//! multistream-select 1.0 as sans-io state machines.
//!
//! A message is `uvarint(len) ‖ bytes ‖ '\n'` where `len` counts the newline. Both sides first
//! exchange the header `/multistream/1.0.0`; the dialer then proposes protocols one at a time and
//! the listener echoes the one it accepts or answers `na`.
//!
//! [`DialerSelect`] and [`ListenerSelect`] take bytes in ([`DialerSelect::input`]), hand bytes
//! out ([`DialerSelect::take_transmit`]) and report progress ([`DialerSelect::poll`]); the async
//! drivers that move bytes between them and a socket live with the node's streams and the
//! connection upgrade.
//!
//! With [`Version::V1Lazy`] and a single proposal the dialer considers the protocol selected as
//! soon as its proposal is written, so that its first data follows without waiting a round trip;
//! the listener's confirmation is checked when the dialer first reads.
//!
//! ```
//! use missive::p2p::negotiate::{DialerProgress, DialerSelect, ListenerProgress, ListenerSelect, Version};
//!
//! let mut dialer = DialerSelect::new(["/chat/2", "/chat/1"], Version::V1)?;
//! let mut listener = ListenerSelect::new();
//! // Move bytes between the two by hand, as a socket would: no I/O here.
//! let mut selected = None;
//! for _ in 0..8 {
//!     if let Some(bytes) = dialer.take_transmit() {
//!         listener.input(&bytes);
//!     }
//!     match listener.poll()? {
//!         ListenerProgress::Proposed(p) if p == "/chat/1" => drop(listener.accept()?),
//!         ListenerProgress::Proposed(_) => listener.reject()?,
//!         _ => {}
//!     }
//!     if let Some(bytes) = listener.take_transmit() {
//!         dialer.input(&bytes);
//!     }
//!     if let DialerProgress::Selected { protocol, .. } = dialer.poll()? {
//!         selected = Some(protocol);
//!         break;
//!     }
//! }
//! assert_eq!(selected.as_deref(), Some("/chat/1"));
//! # Ok::<_, missive::p2p::negotiate::NegotiationError>(())
//! ```

use std::collections::VecDeque;
use std::ops::Range;

use super::identity::{read_uvarint, write_uvarint};

/// Largest message, newline included (rust-libp2p's cap: a 2-byte varint).
pub const MAX_MESSAGE_LEN: usize = 16_383;
/// Most protocols listed in an `ls` answer.
pub const MAX_LS_PROTOCOLS: usize = 1_000;
/// Most proposals a listener answers with `na` before it gives up on the stream.
pub const MAX_REJECTED_PROPOSALS: usize = 64;

const HEADER: &[u8] = b"/multistream/1.0.0";
const NA: &[u8] = b"na";
const LS: &[u8] = b"ls";
/// Room reserved for the messages to send: the header, a proposal or its echo, and the start
/// of the first data, which [`Negotiated`](super::negotiated::Negotiated) sends with them.
const OUT_CAPACITY: usize = 256;

/// Which variant of the dialer's side of the protocol to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Version {
    /// Wait for the listener's answer before using the stream.
    #[default]
    V1,
    /// With a single proposal, use the stream at once (0-RTT) and check the answer on first read.
    V1Lazy,
}

/// Why a negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The listener answered `na` to every proposal.
    #[error("the remote supports none of the proposed protocols")]
    Unsupported,
    /// The peer sent a message longer than [`MAX_MESSAGE_LEN`].
    #[error("peer sent a multistream-select message longer than {MAX_MESSAGE_LEN} bytes")]
    MessageTooLong,
    /// The peer sent bytes that are not multistream-select 1.0.
    #[error("peer violated multistream-select: {0}")]
    Protocol(&'static str),
    /// The peer proposed more protocols than this side answers with `na`.
    #[error("peer proposed more than {MAX_REJECTED_PROPOSALS} unsupported protocols")]
    TooManyProposals,
    /// No protocol was given to propose, or a name is invalid.
    #[error("invalid local protocol list: {0}")]
    InvalidLocal(&'static str),
}

/// Progress of a [`DialerSelect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialerProgress {
    /// More input is needed (after sending [`DialerSelect::take_transmit`]).
    NeedInput,
    /// [`Version::V1Lazy`]: the protocol counts as selected; the answer is still to be checked.
    Optimistic(String),
    /// The listener confirmed the protocol; `remaining` bytes already belong to the protocol.
    Selected {
        /// The selected protocol.
        protocol: String,
        /// Bytes received after the confirmation.
        remaining: Vec<u8>,
    },
}

/// Progress of a [`ListenerSelect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerProgress {
    /// More input is needed (after sending [`ListenerSelect::take_transmit`]).
    NeedInput,
    /// The dialer proposes this protocol: answer with [`ListenerSelect::accept`] or
    /// [`ListenerSelect::reject`].
    Proposed(String),
}

/// The dialer's side of multistream-select.
#[derive(Debug)]
pub struct DialerSelect {
    protocols: VecDeque<String>,
    version: Version,
    state: DialerState,
    reader: MessageReader,
    out: Vec<u8>,
    optimistic_reported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialerState {
    AwaitHeader,
    AwaitAnswer,
    Done,
}

impl DialerSelect {
    /// Starts a negotiation proposing `protocols` in order; the header and the first proposal
    /// are ready in [`DialerSelect::take_transmit`]. Lazy mode applies only to a single proposal.
    pub fn new<I, S>(protocols: I, version: Version) -> Result<Self, NegotiationError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let protocols: VecDeque<String> = protocols.into_iter().map(Into::into).collect();
        if protocols.is_empty() {
            return Err(NegotiationError::InvalidLocal("no protocol to propose"));
        }
        if protocols.iter().any(|p| !valid_protocol(p.as_bytes())) {
            return Err(NegotiationError::InvalidLocal(
                "a protocol name must start with '/' and fit in a message",
            ));
        }
        let version = if protocols.len() == 1 {
            version
        } else {
            Version::V1
        };
        let mut d = Self {
            protocols,
            version,
            state: DialerState::AwaitHeader,
            reader: MessageReader::default(),
            out: Vec::with_capacity(OUT_CAPACITY),
            optimistic_reported: false,
        };
        encode_message(&mut d.out, HEADER);
        if let Some(first) = d.protocols.front() {
            encode_message(&mut d.out, first.as_bytes());
        }
        Ok(d)
    }

    /// Bytes to send to the listener, if any.
    pub fn take_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Feeds bytes received from the listener.
    pub fn input(&mut self, data: &[u8]) {
        self.reader.extend(data);
    }

    /// Advances the negotiation with the input received so far.
    pub fn poll(&mut self) -> Result<DialerProgress, NegotiationError> {
        if self.version == Version::V1Lazy && !self.optimistic_reported {
            self.optimistic_reported = true;
            if let Some(p) = self.protocols.front() {
                return Ok(DialerProgress::Optimistic(p.clone()));
            }
        }
        loop {
            if self.state == DialerState::AwaitHeader {
                self.reader.check_header_prefix()?;
            }
            let Some(at) = self.reader.next_message()? else {
                return Ok(DialerProgress::NeedInput);
            };
            let msg = &self.reader.buf[at];
            match self.state {
                DialerState::AwaitHeader => {
                    if msg != HEADER {
                        return Err(NegotiationError::Protocol(
                            "expected the multistream header",
                        ));
                    }
                    self.state = DialerState::AwaitAnswer;
                }
                DialerState::AwaitAnswer => {
                    let Some(current) = self.protocols.front() else {
                        return Err(NegotiationError::Protocol("answer without a proposal"));
                    };
                    if msg == current.as_bytes() {
                        self.state = DialerState::Done;
                        let protocol = self.protocols.pop_front().unwrap_or_default();
                        return Ok(DialerProgress::Selected {
                            protocol,
                            remaining: self.reader.take_remaining(),
                        });
                    } else if msg == NA {
                        self.protocols.pop_front();
                        match self.protocols.front() {
                            Some(next) if self.version == Version::V1 => {
                                encode_message(&mut self.out, next.as_bytes());
                            }
                            _ => return Err(NegotiationError::Unsupported),
                        }
                    } else {
                        return Err(NegotiationError::Protocol(
                            "answer is neither the proposal nor na",
                        ));
                    }
                }
                DialerState::Done => {
                    return Err(NegotiationError::Protocol("negotiation already finished"));
                }
            }
        }
    }
}

/// The listener's side of multistream-select.
#[derive(Debug)]
pub struct ListenerSelect {
    state: ListenerState,
    reader: MessageReader,
    out: Vec<u8>,
    rejected: usize,
    pending: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListenerState {
    AwaitHeader,
    AwaitProposal,
    Done,
}

impl Default for ListenerSelect {
    fn default() -> Self {
        Self::new()
    }
}

impl ListenerSelect {
    /// Starts the listener's side; it answers the header when the dialer's arrives.
    pub fn new() -> Self {
        Self {
            state: ListenerState::AwaitHeader,
            reader: MessageReader::default(),
            out: Vec::new(),
            rejected: 0,
            pending: None,
        }
    }

    /// Bytes to send to the dialer, if any.
    pub fn take_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Feeds bytes received from the dialer.
    pub fn input(&mut self, data: &[u8]) {
        self.reader.extend(data);
    }

    /// Advances the negotiation. After [`ListenerProgress::Proposed`], call
    /// [`ListenerSelect::accept`] or [`ListenerSelect::reject`] before polling again.
    pub fn poll(&mut self) -> Result<ListenerProgress, NegotiationError> {
        if let Some(p) = &self.pending {
            return Ok(ListenerProgress::Proposed(p.clone()));
        }
        loop {
            if self.state == ListenerState::AwaitHeader {
                self.reader.check_header_prefix()?;
            }
            let Some(at) = self.reader.next_message()? else {
                return Ok(ListenerProgress::NeedInput);
            };
            let msg = &self.reader.buf[at];
            match self.state {
                ListenerState::AwaitHeader => {
                    if msg != HEADER {
                        return Err(NegotiationError::Protocol(
                            "expected the multistream header",
                        ));
                    }
                    self.out.reserve(OUT_CAPACITY);
                    encode_message(&mut self.out, HEADER);
                    self.state = ListenerState::AwaitProposal;
                }
                ListenerState::AwaitProposal => {
                    if msg == LS {
                        // This node does not advertise its protocols: an empty list.
                        encode_message(&mut self.out, b"");
                    } else if msg == HEADER {
                        return Err(NegotiationError::Protocol("header sent twice"));
                    } else if valid_protocol(msg) {
                        let p = std::str::from_utf8(msg)
                            .map_err(|_| NegotiationError::Protocol("protocol is not UTF-8"))?
                            .to_owned();
                        self.pending = Some(p.clone());
                        return Ok(ListenerProgress::Proposed(p));
                    } else {
                        self.reject_message()?;
                    }
                }
                ListenerState::Done => {
                    return Err(NegotiationError::Protocol("negotiation already finished"));
                }
            }
        }
    }

    /// Accepts the pending proposal: queues its echo and returns it with the bytes that followed
    /// it (a lazy dialer's first data).
    pub fn accept(&mut self) -> Result<(String, Vec<u8>), NegotiationError> {
        let p = self
            .pending
            .take()
            .ok_or(NegotiationError::InvalidLocal("no pending proposal"))?;
        encode_message(&mut self.out, p.as_bytes());
        self.state = ListenerState::Done;
        Ok((p, self.reader.take_remaining()))
    }

    /// Rejects the pending proposal with `na`.
    pub fn reject(&mut self) -> Result<(), NegotiationError> {
        if self.pending.take().is_none() {
            return Err(NegotiationError::InvalidLocal("no pending proposal"));
        }
        self.reject_message()
    }

    fn reject_message(&mut self) -> Result<(), NegotiationError> {
        self.rejected += 1;
        if self.rejected > MAX_REJECTED_PROPOSALS {
            return Err(NegotiationError::TooManyProposals);
        }
        encode_message(&mut self.out, NA);
        Ok(())
    }
}

/// Appends one message (`payload` without its newline).
pub fn encode_message(out: &mut Vec<u8>, payload: &[u8]) {
    write_uvarint(out, payload.len() as u64 + 1);
    out.extend_from_slice(payload);
    out.push(b'\n');
}

/// Decodes one message from the front of `buf`: `Ok(None)` when incomplete, otherwise the
/// payload (without newline) and the number of bytes consumed.
pub fn decode_message(buf: &[u8]) -> Result<Option<(&[u8], usize)>, NegotiationError> {
    // MAX_MESSAGE_LEN fits in two varint bytes: a third byte means too long.
    let head = &buf[..buf.len().min(2)];
    let (len, prefix) = match read_uvarint(head) {
        Some((v, after)) => (v, head.len() - after.len()),
        None if buf.len() >= 2 => return Err(NegotiationError::MessageTooLong),
        None => return Ok(None),
    };
    let len = len as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(NegotiationError::MessageTooLong);
    }
    if len == 0 {
        return Err(NegotiationError::Protocol("empty message"));
    }
    let rest = &buf[prefix..];
    if rest.len() < len {
        return Ok(None);
    }
    let (payload, newline) = rest[..len].split_at(len - 1);
    if newline != b"\n" {
        return Err(NegotiationError::Protocol(
            "message does not end with a newline",
        ));
    }
    Ok(Some((payload, prefix + len)))
}

fn valid_protocol(p: &[u8]) -> bool {
    p.first() == Some(&b'/') && p.len() < MAX_MESSAGE_LEN
}

/// Buffers input and cuts it into messages; holds the unread input and, until more arrives, the
/// message read last.
#[derive(Debug, Default)]
struct MessageReader {
    buf: Vec<u8>,
    /// Where the next message starts: messages are read in place, and the bytes before are
    /// dropped only when more input arrives.
    start: usize,
}

impl MessageReader {
    fn extend(&mut self, data: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(data);
    }

    /// Fails fast when the buffered bytes cannot begin with the multistream header, so that
    /// garbage is refused without waiting for the length it seems to announce.
    fn check_header_prefix(&self) -> Result<(), NegotiationError> {
        const ENCODED: &[u8] = b"\x13/multistream/1.0.0\n";
        let unread = &self.buf[self.start..];
        let n = unread.len().min(ENCODED.len());
        if unread[..n] != ENCODED[..n] {
            return Err(NegotiationError::Protocol(
                "expected the multistream header",
            ));
        }
        Ok(())
    }

    /// Where the next complete message's payload lies in `buf`.
    fn next_message(&mut self) -> Result<Option<Range<usize>>, NegotiationError> {
        match decode_message(&self.buf[self.start..])? {
            Some((payload, used)) => {
                let end = self.start + used - 1; // the newline
                let payload = end - payload.len()..end;
                self.start += used;
                Ok(Some(payload))
            }
            None => Ok(None),
        }
    }

    fn take_remaining(&mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.start = 0;
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs both machines against each other; `supported` decides the listener's answers.
    fn run(
        proposals: &[&str],
        version: Version,
        supported: &[&str],
    ) -> (Result<String, NegotiationError>, Option<String>) {
        let mut d = DialerSelect::new(proposals.iter().copied(), version).expect("valid");
        let mut l = ListenerSelect::new();
        let mut dialer_result = None;
        let mut listener_result = None;
        for _ in 0..100 {
            if let Some(b) = d.take_transmit() {
                l.input(&b);
            }
            while let Ok(ListenerProgress::Proposed(p)) = l.poll() {
                if supported.contains(&p.as_str()) {
                    listener_result = Some(l.accept().expect("pending").0);
                    break;
                }
                l.reject().expect("pending");
            }
            if let Some(b) = l.take_transmit() {
                d.input(&b);
            }
            match d.poll() {
                Ok(DialerProgress::Selected { protocol, .. }) => {
                    dialer_result = Some(Ok(protocol));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    dialer_result = Some(Err(e));
                    break;
                }
            }
        }
        (
            dialer_result.expect("bounded run finishes"),
            listener_result,
        )
    }

    #[test]
    fn dialer_selects_second_protocol_after_na() {
        let (d, l) = run(&["/a", "/b"], Version::V1, &["/b"]);
        assert_eq!(d, Ok("/b".to_owned()));
        assert_eq!(l.as_deref(), Some("/b"));
    }

    #[test]
    fn dialer_reports_unsupported_when_all_refused() {
        let (d, l) = run(&["/a", "/b"], Version::V1, &["/c"]);
        assert_eq!(d, Err(NegotiationError::Unsupported));
        assert_eq!(l, None);
    }

    #[test]
    fn lazy_dialer_is_optimistic_then_confirmed() {
        let mut d = DialerSelect::new(["/echo"], Version::V1Lazy).expect("valid");
        assert_eq!(d.poll(), Ok(DialerProgress::Optimistic("/echo".to_owned())));
        let mut first = d.take_transmit().expect("header and proposal");
        first.extend_from_slice(b"data!");
        let mut l = ListenerSelect::new();
        l.input(&first);
        assert_eq!(l.poll(), Ok(ListenerProgress::Proposed("/echo".to_owned())));
        let (p, rest) = l.accept().expect("pending");
        assert_eq!((p.as_str(), rest.as_slice()), ("/echo", &b"data!"[..]));
        let mut answer = l.take_transmit().expect("answer");
        answer.extend_from_slice(b"reply");
        d.input(&answer);
        assert_eq!(
            d.poll(),
            Ok(DialerProgress::Selected {
                protocol: "/echo".to_owned(),
                remaining: b"reply".to_vec()
            })
        );
    }

    #[test]
    fn lazy_dialer_fails_on_na() {
        let mut d = DialerSelect::new(["/echo"], Version::V1Lazy).expect("valid");
        let _ = d.poll();
        let mut answer = Vec::new();
        encode_message(&mut answer, HEADER);
        encode_message(&mut answer, NA);
        d.input(&answer);
        assert_eq!(d.poll(), Err(NegotiationError::Unsupported));
    }

    #[test]
    fn listener_refuses_garbage() {
        let mut l = ListenerSelect::new();
        l.input(b"GET / HTTP/1.1\r\n\r\n");
        assert!(l.poll().is_err());
    }

    #[test]
    fn oversized_message_is_refused_before_buffering() {
        let mut header = Vec::new();
        encode_message(&mut header, HEADER);
        let mut l = ListenerSelect::new();
        l.input(&header);
        l.input(&[0xff, 0xff, 0x03]);
        assert_eq!(l.poll(), Err(NegotiationError::MessageTooLong));
        let mut l = ListenerSelect::new();
        l.input(&header);
        // 16,384 = 0x80 0x80 0x01: too long on the second byte already.
        l.input(&[0x80, 0x80]);
        assert_eq!(l.poll(), Err(NegotiationError::MessageTooLong));
        // Garbage in place of the header is refused at its first byte.
        let mut l = ListenerSelect::new();
        l.input(&[0xff]);
        assert!(l.poll().is_err());
    }

    #[test]
    fn listener_bounds_rejected_proposals() {
        let mut l = ListenerSelect::new();
        let mut input = Vec::new();
        encode_message(&mut input, HEADER);
        for _ in 0..=MAX_REJECTED_PROPOSALS {
            encode_message(&mut input, b"/nope");
        }
        l.input(&input);
        let mut result = Ok(ListenerProgress::NeedInput);
        for _ in 0..=MAX_REJECTED_PROPOSALS + 1 {
            result = l.poll();
            match &result {
                Ok(ListenerProgress::Proposed(_)) => {
                    if let Err(e) = l.reject() {
                        result = Err(e);
                        break;
                    }
                }
                _ => break,
            }
        }
        assert_eq!(result, Err(NegotiationError::TooManyProposals));
    }

    #[test]
    fn na_bytes_match_the_spec() {
        let mut out = Vec::new();
        encode_message(&mut out, NA);
        assert_eq!(out, [0x03, b'n', b'a', b'\n']);
    }

    proptest! {
        #[test]
        fn message_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..MAX_MESSAGE_LEN)) {
            let mut out = Vec::new();
            encode_message(&mut out, &payload);
            let (decoded, used) = decode_message(&out).expect("valid").expect("complete");
            prop_assert_eq!(decoded, &payload[..]);
            prop_assert_eq!(used, out.len());
        }

        #[test]
        fn negotiation_agrees_on_first_supported(
            names in proptest::collection::vec("/[a-z]{1,8}", 1..5),
            supported_mask in any::<u8>(),
        ) {
            let proposals: Vec<&str> = names.iter().map(String::as_str).collect();
            let supported: Vec<&str> = proposals.iter().enumerate()
                .filter(|(i, _)| supported_mask & (1 << i) != 0).map(|(_, p)| *p).collect();
            let (d, l) = run(&proposals, Version::V1, &supported);
            match proposals.iter().find(|p| supported.contains(p)) {
                Some(first) => {
                    prop_assert_eq!(d, Ok((*first).to_owned()));
                    prop_assert_eq!(l.as_deref(), Some(*first));
                }
                None => prop_assert_eq!(d, Err(NegotiationError::Unsupported)),
            }
        }

        /// A lazy dialer's header, proposal and first data reach the listener in pieces of any
        /// size, and the listener's answer reaches the dialer likewise: both agree, and the bytes
        /// after the negotiation come out whole on each side.
        #[test]
        fn negotiation_is_the_same_whatever_the_input_pieces(
            name in "/[a-z]{1,12}",
            data in proptest::collection::vec(any::<u8>(), 0..64),
            answer_data in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(1usize..9, 1..40),
        ) {
            let mut d = DialerSelect::new([name.as_str()], Version::V1Lazy).expect("valid");
            let mut to_listener = d.take_transmit().expect("header and proposal");
            to_listener.extend_from_slice(&data);
            let mut l = ListenerSelect::new();
            let mut sizes = cuts.iter().cycle();
            let mut fed = 0;
            let (proposed, remaining) = loop {
                prop_assert!(fed < to_listener.len(), "the listener needs more than was sent");
                let n = (*sizes.next().expect("cycle")).min(to_listener.len() - fed);
                l.input(&to_listener[fed..fed + n]);
                fed += n;
                match l.poll().expect("valid input") {
                    ListenerProgress::NeedInput => continue,
                    ListenerProgress::Proposed(p) => {
                        let (accepted, mut rest) = l.accept().expect("pending");
                        prop_assert_eq!(&accepted, &p);
                        rest.extend_from_slice(&to_listener[fed..]);
                        break (p, rest);
                    }
                }
            };
            prop_assert_eq!(&proposed, &name);
            prop_assert_eq!(&remaining, &data);

            let mut to_dialer = l.take_transmit().expect("header and echo");
            to_dialer.extend_from_slice(&answer_data);
            prop_assert_eq!(d.poll(), Ok(DialerProgress::Optimistic(name.clone())));
            let mut fed = 0;
            let remaining = loop {
                prop_assert!(fed < to_dialer.len(), "the dialer needs more than was answered");
                let n = (*sizes.next().expect("cycle")).min(to_dialer.len() - fed);
                d.input(&to_dialer[fed..fed + n]);
                fed += n;
                match d.poll().expect("valid answer") {
                    DialerProgress::NeedInput => continue,
                    DialerProgress::Selected { protocol, mut remaining } => {
                        prop_assert_eq!(&protocol, &name);
                        remaining.extend_from_slice(&to_dialer[fed..]);
                        break remaining;
                    }
                    other => {
                        return Err(TestCaseError::fail(format!("unexpected {other:?}")));
                    }
                }
            };
            prop_assert_eq!(&remaining, &answer_data);
        }

        #[test]
        fn machines_never_panic_on_arbitrary_input(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut l = ListenerSelect::new();
            l.input(&data);
            for _ in 0..8 {
                match l.poll() {
                    Ok(ListenerProgress::Proposed(_)) => { let _ = l.reject(); }
                    _ => break,
                }
            }
            let mut d = DialerSelect::new(["/x"], Version::V1).expect("valid");
            d.input(&data);
            let _ = d.poll();
        }
    }
}
