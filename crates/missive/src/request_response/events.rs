//! Request ids, events and failures of a request-response [`Behaviour`](super::Behaviour).

use std::fmt;
use std::io;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::p2p::{ConnectionId, DialError, PeerId};

/// The id of a request this node sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboundRequestId(pub(crate) u64);

/// The id of a request this node received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundRequestId(pub(crate) u64);

impl fmt::Display for OutboundRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "out-{}", self.0)
    }
}

impl fmt::Display for InboundRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in-{}", self.0)
    }
}

/// An event of a request-response [`Behaviour`](super::Behaviour).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<Req, Resp> {
    /// A request arrived, or a response to one of ours.
    Message {
        /// The remote.
        peer: PeerId,
        /// The connection it came on.
        connection_id: ConnectionId,
        /// The request or response.
        message: Message<Req, Resp>,
    },
    /// An outbound request failed.
    OutboundFailure {
        /// The remote.
        peer: PeerId,
        /// The connection, when one was reached.
        connection_id: Option<ConnectionId>,
        /// The request.
        request_id: OutboundRequestId,
        /// What went wrong.
        error: OutboundFailure,
    },
    /// An inbound request failed (or was refused by a limit).
    InboundFailure {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection_id: ConnectionId,
        /// The request.
        request_id: InboundRequestId,
        /// What went wrong.
        error: InboundFailure,
    },
    /// A response was written and the stream closed.
    ResponseSent {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection_id: ConnectionId,
        /// The request answered.
        request_id: InboundRequestId,
    },
}

/// A request or a response.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message<Req, Resp> {
    /// A request to answer through `channel` with [`Behaviour::send_response`](super::Behaviour::send_response).
    Request {
        /// Its id.
        request_id: InboundRequestId,
        /// The request.
        request: Req,
        /// Where the response goes. Dropping it closes the stream without a response
        /// ([`InboundFailure::ResponseOmission`]).
        channel: ResponseChannel<Resp>,
    },
    /// The response to one of our requests.
    Response {
        /// The request it answers.
        request_id: OutboundRequestId,
        /// The response.
        response: Resp,
    },
}

/// The way back to the requester of an inbound request.
pub struct ResponseChannel<Resp> {
    pub(crate) request_id: InboundRequestId,
    pub(crate) peer: PeerId,
    pub(crate) tx: oneshot::Sender<Resp>,
}

impl<Resp> ResponseChannel<Resp> {
    /// `false` once the request timed out or its stream failed: a response would go nowhere.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The request this channel answers.
    pub fn request_id(&self) -> InboundRequestId {
        self.request_id
    }

    /// The requester.
    pub fn peer(&self) -> PeerId {
        self.peer
    }
}

impl<Resp> fmt::Debug for ResponseChannel<Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseChannel")
            .field("request_id", &self.request_id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Why an outbound request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundFailure {
    /// There was no connection and dialing failed.
    #[error("could not connect to the peer: {0}")]
    DialFailure(#[source] DialError),
    /// No response within the request timeout.
    #[error("the request timed out")]
    Timeout,
    /// The connection closed before the response arrived.
    #[error("the connection closed before the response arrived")]
    ConnectionClosed,
    /// The peer supports none of the outbound protocols.
    #[error("the peer supports none of the protocols")]
    UnsupportedProtocols,
    /// The connection already has the maximum of request-response streams (local limit).
    #[error("the connection has reached its limit of concurrent request-response streams")]
    TooManyStreams,
    /// The peer already has the maximum of requests in flight and the config says fail
    /// (local limit).
    #[error("the peer already has the maximum of requests in flight")]
    PeerLimit,
    /// Reading or writing failed: a stream error, a malformed response, or a message over its
    /// size limit ([`MessageTooLarge::find`](super::MessageTooLarge::find) tells).
    #[error("i/o error: {0}")]
    Io(#[source] Arc<io::Error>),
}

/// Why an inbound request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InboundFailure {
    /// No response within the request timeout.
    #[error("the request timed out")]
    Timeout,
    /// The connection closed before the response was sent.
    #[error("the connection closed before the response was sent")]
    ConnectionClosed,
    /// The peer proposed none of our inbound protocols. (Our node answers such proposals
    /// with `na` during negotiation, so no inbound stream reaches us for them; the variant is
    /// kept for rust-libp2p parity.)
    #[error("the peer proposed no supported protocol")]
    UnsupportedProtocols,
    /// The response channel was dropped without a response.
    #[error("the response channel was dropped without a response")]
    ResponseOmission,
    /// The connection already had the maximum of request-response streams: the stream was
    /// reset (local limit).
    #[error("refused: the connection has reached its limit of concurrent request-response streams")]
    TooManyStreams,
    /// The peer already had the maximum of inbound requests in flight: the stream was reset
    /// (local limit).
    #[error("refused: the peer already has the maximum of requests in flight")]
    PeerLimit,
    /// Reading or writing failed: a stream error, a malformed request, or a message over its
    /// size limit ([`MessageTooLarge::find`](super::MessageTooLarge::find) tells).
    #[error("i/o error: {0}")]
    Io(#[source] Arc<io::Error>),
}
