//! The datagram and its frame codec, without I/O.
//!
//! A frame is `u32 BE size | u16 BE version | u16 BE tag | payload`, where `size` counts the version,
//! the tag and the payload (4 + payload length) but not itself: the frame of connect 0.2.4, and the
//! framing of tokio-util's default `LengthDelimitedCodec` with the version and tag as the first four
//! bytes of each frame.
//!
//! ```
//! use bytes::BytesMut;
//! use missive::queue::datagram::{Datagram, Decoder};
//!
//! let mut wire = BytesMut::new();
//! Datagram::new(7, "hi").encode(&mut wire);
//! assert_eq!(&wire[..], &[0, 0, 0, 6, 0, 1, 0, 7, b'h', b'i']);
//!
//! let decoder = Decoder::new(1024);
//! let datagram = decoder.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!((datagram.tag(), &datagram.payload()[..]), (7, &b"hi"[..]));
//! assert!(decoder.decode(&mut wire)?.is_none());
//! # Ok::<_, missive::queue::FrameError>(())
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The version every datagram is sent with (connect 0.2.4 sends 1 and ignores it on receipt).
pub const VERSION: u16 = 1;

/// Bytes before the payload: size (4), version (2), tag (2).
pub const HEADER_LEN: usize = 8;

/// Bytes the size field counts besides the payload: version and tag.
const SIZE_OVERHEAD: usize = 4;

/// The most the decoder reserves ahead of the bytes that arrived: the size field is the peer's
/// claim, and memory follows what actually arrives.
const RESERVE_STEP: usize = 64 * 1024;

/// The header of a frame: size (the payload's length and [`SIZE_OVERHEAD`]), version, tag.
pub(crate) fn frame_header(version: u16, tag: u16, payload_len: usize) -> [u8; HEADER_LEN] {
    let size = u32::try_from(payload_len + SIZE_OVERHEAD)
        .expect("payload length is checked against the frame limit before encoding");
    (u64::from(size) << 32 | u64::from(version) << 16 | u64::from(tag)).to_be_bytes()
}

/// One message of the queue: a payload labelled with a tag chosen by the application.
///
/// The payload is [`Bytes`], so a received datagram is a view into the connection's read buffer and
/// cloning one is cheap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datagram {
    version: u16,
    tag: u16,
    payload: Bytes,
}

impl Datagram {
    /// A datagram with `tag` and `payload`, at the current [`VERSION`].
    pub fn new(tag: u16, payload: impl Into<Bytes>) -> Self {
        Datagram {
            version: VERSION,
            tag,
            payload: payload.into(),
        }
    }

    /// A datagram with an explicit version. Receivers refuse versions other than [`VERSION`] unless
    /// configured to accept any (`QueueConfig::with_any_version`).
    pub fn with_version(version: u16, tag: u16, payload: impl Into<Bytes>) -> Self {
        Datagram {
            version,
            tag,
            payload: payload.into(),
        }
    }

    /// The application's label.
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// The frame version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload, dropping the tag and version.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The length of this datagram's frame on the wire.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the 8-byte frame header for this datagram (size, version, tag) into `dst`.
    ///
    /// # Panics
    /// If the payload is longer than `u32::MAX - 4` bytes; the writer refuses such a datagram
    /// long before that.
    pub fn encode_header(&self, dst: &mut impl BufMut) {
        dst.put_slice(&self.header());
    }

    /// The 8-byte frame header (size, version, tag), built in a register and written with one
    /// copy instead of three.
    ///
    /// # Panics
    /// As [`Datagram::encode_header`].
    pub(crate) fn header(&self) -> [u8; HEADER_LEN] {
        frame_header(self.version, self.tag, self.payload.len())
    }

    /// Writes the whole frame (header and payload) into `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        self.encode_header(dst);
        dst.put_slice(&self.payload);
    }
}

/// Why a frame could not be decoded. Each of these is the peer's fault; the connection cannot be
/// resynchronised after one, so the reader ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The size field is smaller than the version and tag it must include.
    #[error("frame size field {size} is shorter than the 4-byte version and tag")]
    TooShort {
        /// The size field as received.
        size: u32,
    },
    /// The size field exceeds the receive limit; nothing was allocated for it.
    #[error("frame of {size} bytes exceeds the receive limit of {limit} bytes")]
    TooLarge {
        /// The size field as received.
        size: u32,
        /// The configured limit.
        limit: usize,
    },
    /// The version is not one this receiver accepts.
    #[error("frame version {version} is not supported (expected {VERSION})")]
    UnsupportedVersion {
        /// The version as received.
        version: u16,
    },
}

/// Decodes frames from a byte buffer that the caller fills from the network.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame_len: usize,
    any_version: bool,
}

impl Decoder {
    /// A decoder that accepts frames whose size field is at most `max_frame_len` (so payloads of at
    /// most `max_frame_len - 4` bytes) and only version [`VERSION`].
    pub fn new(max_frame_len: usize) -> Self {
        Decoder {
            max_frame_len,
            any_version: false,
        }
    }

    /// Accept every version instead of only [`VERSION`].
    pub fn with_any_version(mut self, any: bool) -> Self {
        self.any_version = any;
        self
    }

    /// Takes one complete frame off the front of `src`.
    ///
    /// Returns `Ok(None)` when `src` does not yet hold a whole frame; in that case nothing is consumed
    /// and `src` has room for the next bytes of the frame (at most 64 KiB more than it holds, and only
    /// after the size field was checked against the limit: the buffer grows with the bytes that
    /// arrive, never by the size a peer announces). On `Ok(Some(_))` the frame's bytes are consumed and the payload shares `src`'s
    /// allocation.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Datagram>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            // The size field alone is enough to reject a frame early.
            if let Some(size) = src.get(..4) {
                self.check_size(u32::from_be_bytes([size[0], size[1], size[2], size[3]]))?;
            }
            return Ok(None);
        };
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let payload_len = self.check_size(size)?;
        let version = u16::from_be_bytes([header[4], header[5]]);
        if !self.any_version && version != VERSION {
            return Err(FrameError::UnsupportedVersion { version });
        }
        let tag = u16::from_be_bytes([header[6], header[7]]);
        let frame_len = HEADER_LEN + payload_len;
        if src.len() < frame_len {
            // Room for the next bytes, not for the whole announced frame: memory follows the
            // bytes that arrive.
            src.reserve((frame_len - src.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        // One split of the whole frame, then the header is skipped on the frozen view: advancing
        // a `Bytes` is a pointer bump, advancing the `BytesMut` first costs a second split.
        let mut payload = src.split_to(frame_len).freeze();
        payload.advance(HEADER_LEN);
        Ok(Some(Datagram {
            version,
            tag,
            payload,
        }))
    }

    /// Validates a size field and returns the payload length it announces.
    fn check_size(&self, size: u32) -> Result<usize, FrameError> {
        let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
        if size_usize > self.max_frame_len {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame_len,
            });
        }
        size_usize
            .checked_sub(SIZE_OVERHEAD)
            .ok_or(FrameError::TooShort { size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_with_tag_1_matches_connects_bytes() {
        let mut buf = BytesMut::new();
        Datagram::new(1, &b"hello"[..]).encode(&mut buf);
        assert_eq!(
            &buf[..],
            &[0, 0, 0, 9, 0, 1, 0, 1, b'h', b'e', b'l', b'l', b'o']
        );
    }

    #[test]
    fn the_header_is_size_version_and_tag_big_endian() {
        let d = Datagram::with_version(0x0102, 0x0304, vec![0u8; 0x0506 - 4]);
        assert_eq!(d.header(), [0, 0, 0x05, 0x06, 0x01, 0x02, 0x03, 0x04]);
    }

    #[test]
    fn size_fields_below_four_are_too_short() {
        for size in 0u32..4 {
            let mut buf = BytesMut::new();
            buf.put_u32(size);
            buf.put_slice(&[0, 1, 0, 1]);
            assert_eq!(
                Decoder::new(1024).decode(&mut buf),
                Err(FrameError::TooShort { size })
            );
        }
    }

    #[test]
    fn four_gib_claim_is_refused_before_any_allocation() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let capacity = buf.capacity();
        assert_eq!(
            Decoder::new(8 << 20).decode(&mut buf),
            Err(FrameError::TooLarge {
                size: u32::MAX,
                limit: 8 << 20
            })
        );
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn a_header_alone_reserves_what_may_arrive_next_not_what_it_announces() {
        // The largest frame announced, only its header arrived: no 8 MiB allocation.
        let max = 8 << 20;
        let mut buf = BytesMut::new();
        buf.put_u32(max as u32);
        buf.put_slice(&[0, 1, 0, 1]);
        assert_eq!(Decoder::new(max).decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() <= 2 * RESERVE_STEP,
            "reserved {}",
            buf.capacity()
        );
        // The reservation follows the bytes that arrive.
        let arrived = 3 * RESERVE_STEP;
        buf.resize(arrived, 0);
        assert_eq!(Decoder::new(max).decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() <= 2 * (arrived + RESERVE_STEP),
            "reserved {}",
            buf.capacity()
        );
        assert!(buf.capacity() - buf.len() >= RESERVE_STEP);
    }

    #[test]
    fn unknown_version_is_refused_unless_any_is_accepted() {
        let mut buf = BytesMut::new();
        Datagram::with_version(7, 3, &b"x"[..]).encode(&mut buf);
        let mut copy = buf.clone();
        assert_eq!(
            Decoder::new(64).decode(&mut buf),
            Err(FrameError::UnsupportedVersion { version: 7 })
        );
        let d = Decoder::new(64).with_any_version(true).decode(&mut copy);
        assert_eq!(d, Ok(Some(Datagram::with_version(7, 3, &b"x"[..]))));
    }

    #[test]
    fn empty_payload_is_a_valid_frame() {
        let mut buf = BytesMut::from(&[0, 0, 0, 4, 0, 1, 0, 9][..]);
        assert_eq!(
            Decoder::new(64).decode(&mut buf),
            Ok(Some(Datagram::new(9, Bytes::new())))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn frame_at_exactly_the_limit_is_accepted() {
        let mut buf = BytesMut::new();
        Datagram::new(1, vec![7u8; 60]).encode(&mut buf);
        assert!(Decoder::new(64).decode(&mut buf).is_ok_and(|d| d.is_some()));
    }

    fn datagram() -> impl Strategy<Value = Datagram> {
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(v, t, p)| Datagram::with_version(v, t, p))
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity_at_any_split(
            datagrams in proptest::collection::vec(datagram(), 1..20),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for d in &datagrams {
                d.encode(&mut wire);
            }
            let decoder = Decoder::new(1024).with_any_version(true);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(d) = decoder.decode(&mut buf).expect("valid frames") {
                    out.push(d);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, datagrams);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let decoder = Decoder::new(32);
            for _ in 0..bytes.len() + 1 {
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
