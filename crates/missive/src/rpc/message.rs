//! The message model: ids and control codes live inside the user's own messages.
//!
//! ```
//! use missive::rpc::{ControlCode, Message};
//!
//! /// A message of your own: the id and control code are two of its fields.
//! #[derive(Debug, Default)]
//! struct Ask {
//!     id: u64,
//!     code: u8,
//!     question: String,
//! }
//!
//! impl Message for Ask {
//!     fn message_id(&self) -> u64 { self.id }
//!     fn control_code(&self) -> ControlCode { ControlCode::from_u8(self.code) }
//!     fn set_message_id(&mut self, id: u64) { self.id = id }
//!     fn cancelled(id: u64) -> Self { Ask { id, code: ControlCode::Cancel.as_u8(), ..Ask::default() } }
//!     fn ended(id: u64) -> Self { Ask { id, code: ControlCode::End.as_u8(), ..Ask::default() } }
//! }
//!
//! assert_eq!(Ask::cancelled(3).control_code(), ControlCode::Cancel);
//! ```

use std::fmt;

/// What a message means for its rpc, besides its payload.
///
/// The numbers are the wire values of protosocket-rpc. A code that is not one of these is read as
/// [`ControlCode::Cancel`], as protosocket-rpc does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ControlCode {
    /// A request, a response, or one item of a stream.
    Normal = 0,
    /// The rpc is cancelled (client → server), or the cancellation is confirmed or the rpc
    /// failed (server → client).
    Cancel = 1,
    /// The stream of this rpc ends (after the last item).
    End = 2,
}

impl ControlCode {
    /// Reads a wire value; unknown values are [`ControlCode::Cancel`].
    pub fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Normal,
            2 => Self::End,
            _ => Self::Cancel,
        }
    }

    /// Reads a wider wire value (protobuf carries it as `uint32`); unknown values are
    /// [`ControlCode::Cancel`].
    pub fn from_u32(value: u32) -> Self {
        u8::try_from(value).map_or(Self::Cancel, Self::from_u8)
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A message of an rpc protocol: a request or a response type of the user.
///
/// The id correlates the messages of one rpc; the control code says whether the message carries
/// payload, cancels or ends the rpc. What is encoded is what goes on the wire: the library never
/// wraps a message in an envelope of its own.
pub trait Message: Sized {
    /// The id of the rpc this message belongs to.
    fn message_id(&self) -> u64;

    /// The control code of this message.
    fn control_code(&self) -> ControlCode;

    /// Sets the id (the library assigns ids to requests and copies them into responses).
    fn set_message_id(&mut self, message_id: u64);

    /// A message that cancels rpc `message_id` (or confirms its cancellation).
    fn cancelled(message_id: u64) -> Self;

    /// A message that ends the stream of rpc `message_id`.
    fn ended(message_id: u64) -> Self;

    /// A message that fails rpc `message_id` with `status`.
    ///
    /// Sent by a server when a handler fails, panics or rejects a call. The default is
    /// [`Message::cancelled`], which is all a protosocket-rpc peer understands; types that can
    /// carry a status override it together with [`Message::status`].
    fn failed(message_id: u64, status: Status) -> Self {
        let _ = status;
        Self::cancelled(message_id)
    }

    /// The status a [`ControlCode::Cancel`] message carries, if its type can carry one.
    fn status(&self) -> Option<Status> {
        None
    }
}

/// Why an rpc failed, as told by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    code: StatusCode,
    message: String,
}

impl Status {
    /// A status with a code and a human-readable message.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The code.
    pub fn code(&self) -> StatusCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::error::Error for Status {}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// The kind of failure a [`Status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    /// The server cancelled the rpc, or confirms the client's cancellation.
    Cancelled,
    /// The handler refused the request.
    Rejected,
    /// The handler failed (returned an error or panicked).
    Internal,
    /// The server is shutting down and takes no new rpcs.
    Unavailable,
    /// A limit of the server was reached (too many rpcs on the connection).
    ResourceExhausted,
    /// A code this version does not know.
    Unknown,
}

impl StatusCode {
    /// The wire value used by the serde envelope.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::Cancelled => 1,
            Self::Rejected => 2,
            Self::Internal => 3,
            Self::Unavailable => 4,
            Self::ResourceExhausted => 5,
            Self::Unknown => 0,
        }
    }

    /// Reads a wire value; unknown values are [`StatusCode::Unknown`].
    pub fn from_u32(value: u32) -> Self {
        match value {
            1 => Self::Cancelled,
            2 => Self::Rejected,
            3 => Self::Internal,
            4 => Self::Unavailable,
            5 => Self::ResourceExhausted,
            _ => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_control_codes_read_as_cancel() {
        assert_eq!(ControlCode::from_u8(0), ControlCode::Normal);
        assert_eq!(ControlCode::from_u8(1), ControlCode::Cancel);
        assert_eq!(ControlCode::from_u8(2), ControlCode::End);
        for v in 3..=255u8 {
            assert_eq!(ControlCode::from_u8(v), ControlCode::Cancel);
        }
        assert_eq!(ControlCode::from_u32(256), ControlCode::Cancel);
        assert_eq!(ControlCode::from_u32(2), ControlCode::End);
    }

    #[test]
    fn status_codes_round_trip() {
        for code in [
            StatusCode::Cancelled,
            StatusCode::Rejected,
            StatusCode::Internal,
            StatusCode::Unavailable,
            StatusCode::ResourceExhausted,
            StatusCode::Unknown,
        ] {
            assert_eq!(StatusCode::from_u32(code.as_u32()), code);
        }
    }
}
