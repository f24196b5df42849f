//! Encoders and decoders: what you encode is what is on the wire.
//!
//! An [`Encoder`] turns a message into one framed buffer (length prefix included) and gets the
//! buffer back after it was written, so it can reuse the allocation. A [`Decoder`] takes complete
//! frames off the front of the read buffer, one per call; the connection calls it until it returns
//! `Ok(None)`, so every complete frame of one read is decoded before the next read.
//!
//! ```
//! # #[cfg(feature = "prost")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::rpc::echo::{Request, Response};
//! use missive::rpc::prost::ProstCodec;
//! use missive::rpc::{Decoder, Encoder};
//!
//! // The client's codec encodes requests; the server's decodes them.
//! let mut client = ProstCodec::<Request, Response>::default();
//! let mut server = ProstCodec::<Response, Request>::default();
//! let mut wire = client.encode(Request::unary("hi"))?;
//! let request = server.decode(&mut wire)?.ok_or("a whole frame")?;
//! assert_eq!(&request.body[..], b"hi");
//! assert!(server.decode(&mut wire)?.is_none()); // nothing left
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prost"))]
//! # fn main() {}
//! ```

use bytes::{Buf, BytesMut};

/// The default largest message, in bytes, that a codec encodes or accepts: 4 MiB (as tonic and
/// the protosocket-rpc client).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The most a decoder reserves ahead of the bytes that arrived: a peer's length prefix is a
/// claim, and memory follows what actually arrives.
pub(crate) const RESERVE_STEP: usize = 64 * 1024;

/// Turns messages into framed bytes.
pub trait Encoder {
    /// The messages this encoder takes.
    type Message;
    /// The framed bytes of one message, written (vectored) as they are.
    type Serialized: Buf;

    /// Encodes one message with its framing.
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] when the message exceeds the codec's limit, or
    /// [`EncodeError::Serialize`] when the format cannot represent it.
    fn encode(&mut self, message: Self::Message) -> Result<Self::Serialized, EncodeError>;

    /// Encodes one message with its framing, straight into `out` (the connection's write
    /// buffer) when the frame is shorter than `inline_below` bytes; otherwise returns it as
    /// [`Encoder::encode`] does. On error nothing is left in `out`.
    ///
    /// The default encodes and copies small frames; codecs that know the size up front
    /// override it to skip the copy.
    ///
    /// # Errors
    /// As [`Encoder::encode`].
    fn encode_into(
        &mut self,
        message: Self::Message,
        out: &mut BytesMut,
        inline_below: usize,
    ) -> Result<Option<Self::Serialized>, EncodeError> {
        let mut frame = self.encode(message)?;
        if frame.remaining() < inline_below {
            bytes::BufMut::put(out, &mut frame);
            self.return_buffer(frame);
            Ok(None)
        } else {
            Ok(Some(frame))
        }
    }

    /// Hands a written buffer back for reuse. The default drops it.
    fn return_buffer(&mut self, buffer: Self::Serialized) {
        drop(buffer);
    }
}

/// Takes framed messages off the front of a read buffer.
pub trait Decoder {
    /// The messages this decoder produces.
    type Message;

    /// Decodes the first complete frame of `buffer` and removes it; `Ok(None)` when the buffer
    /// holds no complete frame yet (the decoder may reserve room for the next bytes of the
    /// frame, after checking its length against its limit; [`check_and_reserve`] does both).
    ///
    /// # Errors
    /// A [`DecodeError`] is a fault of the peer; the connection is closed with it.
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Self::Message>, DecodeError>;

    /// The largest message this decoder accepts, without its length prefix (default 4 MiB,
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]). The connection holds at most this plus
    /// [`MAX_PREFIX_LEN`] bytes that do not make a complete frame yet; a peer that sends more
    /// without completing one is disconnected with [`DecodeError::Unframed`], whatever the
    /// decoder does.
    fn max_message_size(&self) -> usize {
        DEFAULT_MAX_MESSAGE_SIZE
    }
}

/// The room a frame's header may take besides the message, in the connection's read-buffer cap
/// (see [`Decoder::max_message_size`]): a ten-byte varint or a five-byte msgpack prefix, and
/// some to spare.
pub const MAX_PREFIX_LEN: usize = 16;

/// A message could not be encoded (a fault of the local caller).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded message is larger than the codec's limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The format cannot represent the message.
    #[error("message cannot be serialized: {0}")]
    Serialize(String),
}

/// Bytes from the peer could not be decoded (a fault of the peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix announces a message over the limit; nothing was allocated for it.
    #[error("peer announced a message of {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The length prefix is malformed.
    #[error("malformed length prefix: {0}")]
    BadPrefix(&'static str),
    /// The peer sent more bytes than the largest frame without completing one (the connection's
    /// read-buffer cap, [`Decoder::max_message_size`] plus [`MAX_PREFIX_LEN`]).
    #[error("{buffered} bytes received without a complete message, over the limit of {max} bytes")]
    Unframed {
        /// The bytes buffered.
        buffered: usize,
        /// The cap.
        max: usize,
    },
    /// The frame's payload is not a valid message.
    #[error("undecodable message: {0}")]
    Malformed(String),
}

/// Reads an unsigned LEB128 varint from the front of `bytes`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((value, length)))` otherwise.
///
/// # Errors
/// [`DecodeError::BadPrefix`] for a varint longer than ten bytes or over `u64::MAX`.
pub fn read_varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, DecodeError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return Err(DecodeError::BadPrefix("varint overflows u64"));
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 10 {
        Err(DecodeError::BadPrefix("varint longer than ten bytes"))
    } else {
        Ok(None)
    }
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn write_varint(mut value: u64, out: &mut BytesMut) {
    // Written whole into a stack buffer, then appended once (one capacity check, not one per
    // byte).
    let mut bytes = [0u8; 10];
    let mut n = 0;
    for byte in &mut bytes {
        n += 1;
        if value < 0x80 {
            *byte = value as u8;
            break;
        }
        *byte = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
    }
    out.extend_from_slice(bytes.get(..n).unwrap_or_default());
}

/// For codecs: checks a peer-announced payload length against `max` *before* anything is
/// allocated, then makes room for the next bytes of the frame: at most 64 KiB ahead of what has
/// arrived, so that memory follows the bytes the peer actually sent, not the size it announced.
/// Returns the payload length when the whole frame (`prefix` bytes of header, then the payload)
/// is in `buffer`, `Ok(None)` when more bytes are needed.
///
/// # Errors
/// [`DecodeError::TooLarge`] when the length exceeds `max`.
pub fn check_and_reserve(
    buffer: &mut BytesMut,
    prefix: usize,
    size: u64,
    max: usize,
) -> Result<Option<usize>, DecodeError> {
    let len = usize::try_from(size)
        .ok()
        .filter(|&l| l <= max)
        .ok_or(DecodeError::TooLarge { size, max })?;
    let total = prefix + len;
    if buffer.len() < total {
        buffer.reserve((total - buffer.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    Ok(Some(len))
}

/// Declares a codec struct with a message size limit and a [`BufferPool`]: its `Debug`,
/// `Default` (limit [`DEFAULT_MAX_MESSAGE_SIZE`]) and `with_max_message_size`.
#[cfg(any(feature = "prost", feature = "msgpack"))]
macro_rules! framed_codec {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<Out, In> {
            pub(super) max_message_size: usize,
            pub(super) pool: $crate::rpc::codec::BufferPool,
            _types: ::std::marker::PhantomData<fn(Out) -> In>,
        }

        impl<Out, In> ::std::fmt::Debug for $name<Out, In> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("max_message_size", &self.max_message_size)
                    .finish_non_exhaustive()
            }
        }

        impl<Out, In> Default for $name<Out, In> {
            fn default() -> Self {
                Self {
                    max_message_size: $crate::rpc::codec::DEFAULT_MAX_MESSAGE_SIZE,
                    pool: $crate::rpc::codec::BufferPool::default(),
                    _types: ::std::marker::PhantomData,
                }
            }
        }

        impl<Out, In> $name<Out, In> {
            /// The largest message encoded or accepted, without its length prefix (default
            /// 4 MiB). A peer announcing more is disconnected before anything is allocated for
            /// it.
            pub fn with_max_message_size(mut self, bytes: usize) -> Self {
                self.max_message_size = bytes;
                self
            }
        }
    };
}
#[cfg(any(feature = "prost", feature = "msgpack"))]
pub(crate) use framed_codec;

/// For codecs: a small pool of encode buffers, so steady traffic reuses allocations.
///
/// Small buffers (up to 64 KiB) are kept up to 64 of them; large ones up to 8 MiB in total, so
/// that a connection carrying large messages does not allocate (and fault in) fresh memory for
/// every one of them.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<BytesMut>,
    large: Vec<BytesMut>,
    large_bytes: usize,
}

impl BufferPool {
    /// Small buffers kept at most.
    const KEEP: usize = 64;
    /// Buffers up to this capacity are small.
    const KEEP_CAPACITY: usize = 64 * 1024;
    /// Total capacity of the large buffers kept.
    const KEEP_LARGE_BYTES: usize = 8 * 1024 * 1024;

    /// A cleared buffer with room for at least `capacity` bytes.
    pub fn take(&mut self, capacity: usize) -> BytesMut {
        let kept = if capacity > Self::KEEP_CAPACITY {
            self.large
                .pop()
                .inspect(|b| self.large_bytes = self.large_bytes.saturating_sub(b.capacity()))
        } else {
            self.free.pop()
        };
        match kept {
            Some(mut b) => {
                b.reserve(capacity);
                b
            }
            None => BytesMut::with_capacity(capacity.max(128)),
        }
    }

    /// Keeps `buffer` for reuse (unless the pool is full).
    pub fn give(&mut self, mut buffer: BytesMut) {
        buffer.clear();
        // A written buffer has been advanced to its end: reclaiming the space before its start
        // tells a large buffer from a small one (and makes the whole of it usable again).
        if buffer.try_reclaim(Self::KEEP_CAPACITY + 1) {
            let capacity = buffer.capacity();
            if self.large_bytes + capacity <= Self::KEEP_LARGE_BYTES {
                self.large_bytes += capacity;
                self.large.push(buffer);
            }
        } else if self.free.len() < Self::KEEP {
            self.free.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<u64>()) {
            let mut b = BytesMut::new();
            write_varint(v, &mut b);
            prop_assert_eq!(read_varint(&b), Ok(Some((v, b.len()))));
            // Every strict prefix asks for more bytes.
            for cut in 0..b.len() {
                prop_assert_eq!(read_varint(&b[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        assert!(read_varint(&[0xff; 11]).is_err());
        assert!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err()
        );
    }

    #[test]
    fn pool_reuses_a_written_large_buffer() {
        let mut pool = BufferPool::default();
        let mut b = pool.take(1 << 20);
        b.extend_from_slice(&vec![7u8; 1 << 20]);
        let ptr = b.as_ptr();
        // Written out: advanced to its end, as the write queue hands it back.
        b.advance(1 << 20);
        pool.give(b);
        let again = pool.take(1 << 20);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
    }

    #[test]
    fn pool_keeps_large_buffers_within_its_budget() {
        let mut pool = BufferPool::default();
        let big: Vec<BytesMut> = (0..16).map(|_| pool.take(1 << 20)).collect();
        for b in big {
            pool.give(b);
        }
        assert!(pool.large_bytes <= BufferPool::KEEP_LARGE_BYTES);
        assert!(pool.large.len() < 16);
        // Small buffers go to their own list.
        pool.give(BytesMut::with_capacity(256));
        assert_eq!(pool.free.len(), 1);
    }

    #[test]
    fn a_header_alone_reserves_what_may_arrive_next_not_what_it_announces() {
        // 4 MiB announced, five bytes arrived: the buffer grows by a read's worth at most.
        let mut b = BytesMut::new();
        write_varint(4 << 20, &mut b);
        b.extend_from_slice(&[1]);
        assert_eq!(check_and_reserve(&mut b, 3, 4 << 20, 4 << 20), Ok(None));
        assert!(
            b.capacity() <= 2 * RESERVE_STEP,
            "reserved {}",
            b.capacity()
        );
        // As bytes arrive the reservation follows them, a step at a time.
        let arrived = 3 * RESERVE_STEP;
        b.resize(arrived, 0);
        assert_eq!(check_and_reserve(&mut b, 3, 4 << 20, 4 << 20), Ok(None));
        assert!(
            b.capacity() <= 2 * (arrived + RESERVE_STEP),
            "reserved {}",
            b.capacity()
        );
        assert!(b.capacity() - b.len() >= RESERVE_STEP.min((4 << 20) + 3 - arrived));
    }

    #[test]
    fn length_over_limit_fails_before_reserving() {
        let mut b = BytesMut::new();
        let before = b.capacity();
        assert_eq!(
            check_and_reserve(&mut b, 5, u64::from(u32::MAX), 1024),
            Err(DecodeError::TooLarge {
                size: u64::from(u32::MAX),
                max: 1024
            })
        );
        assert_eq!(b.capacity(), before);
    }
}
