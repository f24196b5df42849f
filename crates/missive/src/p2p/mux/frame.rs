//! yamux frame headers: twelve bytes, big-endian — version (0), type, flags, stream id, length.
//! For a data frame the length is the body's; for a window update it is the credit added; for a
//! ping its opaque value; for a go-away its error code. No other frame has a body.

/// The length of every frame header.
pub(crate) const HEADER_LEN: usize = 12;

/// The only yamux version there is.
const VERSION: u8 = 0;

/// The four frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Stream data; the length is the body's.
    Data,
    /// Credit for a stream's sender, and stream flags without data.
    WindowUpdate,
    /// A liveness check (SYN) or its answer (ACK), on stream 0.
    Ping,
    /// The end of the session, with a reason code.
    GoAway,
}

/// Header flags.
pub(crate) mod flags {
    /// Opens a stream.
    pub(crate) const SYN: u16 = 0x1;
    /// Acknowledges a stream the peer opened.
    pub(crate) const ACK: u16 = 0x2;
    /// Ends the sender's side of a stream.
    pub(crate) const FIN: u16 = 0x4;
    /// Aborts a stream.
    pub(crate) const RST: u16 = 0x8;
}

/// Go-away reason codes.
pub(crate) mod go_away {
    /// A normal end of the session.
    pub(crate) const NORMAL: u32 = 0;
    /// The peer broke the protocol.
    pub(crate) const PROTOCOL_ERROR: u32 = 1;
}

/// One frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The frame's type.
    pub(crate) kind: Kind,
    /// SYN, ACK, FIN and RST, as a bit set.
    pub(crate) flags: u16,
    /// The stream (0: the session itself).
    pub(crate) stream: u32,
    /// Body length, credit, ping value or go-away code, by type.
    pub(crate) length: u32,
}

/// A header that is not yamux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FrameError {
    /// The version byte is not 0.
    #[error("yamux frame of unknown version {0}")]
    Version(u8),
    /// The type byte is none of the four types.
    #[error("yamux frame of unknown type {0}")]
    Kind(u8),
}

impl Header {
    /// A data header for `length` body bytes.
    pub(crate) fn data(stream: u32, flags: u16, length: u32) -> Self {
        Self {
            kind: Kind::Data,
            flags,
            stream,
            length,
        }
    }

    /// A window update adding `credit`.
    pub(crate) fn window_update(stream: u32, flags: u16, credit: u32) -> Self {
        Self {
            kind: Kind::WindowUpdate,
            flags,
            stream,
            length: credit,
        }
    }

    /// The answer to a ping of `value`.
    pub(crate) fn pong(value: u32) -> Self {
        Self {
            kind: Kind::Ping,
            flags: flags::ACK,
            stream: 0,
            length: value,
        }
    }

    /// A go-away with `code`.
    pub(crate) fn go_away(code: u32) -> Self {
        Self {
            kind: Kind::GoAway,
            flags: 0,
            stream: 0,
            length: code,
        }
    }

    /// Whether the header has every flag of `f`.
    pub(crate) fn has(&self, f: u16) -> bool {
        self.flags & f == f
    }

    /// The header's wire form.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let kind = match self.kind {
            Kind::Data => 0,
            Kind::WindowUpdate => 1,
            Kind::Ping => 2,
            Kind::GoAway => 3,
        };
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = kind;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Reads a header. Unknown flag bits are kept and ignored, as the spec leaves them.
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        if b[0] != VERSION {
            return Err(FrameError::Version(b[0]));
        }
        let kind = match b[1] {
            0 => Kind::Data,
            1 => Kind::WindowUpdate,
            2 => Kind::Ping,
            3 => Kind::GoAway,
            k => return Err(FrameError::Kind(k)),
        };
        Ok(Self {
            kind,
            flags: u16::from_be_bytes([b[2], b[3]]),
            stream: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_data_header_has_the_spec_layout() {
        let h = Header::data(0x0102_0304, flags::SYN | flags::FIN, 0x0a0b_0c0d);
        assert_eq!(h.encode(), [0, 0, 0, 5, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
    }

    #[test]
    fn unknown_versions_and_types_are_refused() {
        let mut b = Header::go_away(0).encode();
        b[0] = 1;
        assert_eq!(Header::decode(&b), Err(FrameError::Version(1)));
        let mut b = Header::go_away(0).encode();
        b[1] = 4;
        assert_eq!(Header::decode(&b), Err(FrameError::Kind(4)));
    }

    proptest! {
        #[test]
        fn headers_round_trip(kind in 0u8..4, flags: u16, stream: u32, length: u32) {
            let mut b = [0u8; HEADER_LEN];
            b[1] = kind;
            b[2..4].copy_from_slice(&flags.to_be_bytes());
            b[4..8].copy_from_slice(&stream.to_be_bytes());
            b[8..12].copy_from_slice(&length.to_be_bytes());
            let h = Header::decode(&b).expect("step succeeds");
            prop_assert_eq!(h.encode(), b);
        }

        #[test]
        fn decoding_never_panics(b: [u8; HEADER_LEN]) {
            if let Ok(h) = Header::decode(&b) {
                prop_assert_eq!(h.encode(), b);
            }
        }
    }
}
