//! MessagePack messages with protosocket-messagepack framing: `0xCE` ‖ u32 big-endian length ‖
//! rmp-serde payload (structs as arrays), and [`Envelope`], a message type that carries the id,
//! control code and status around any serde body.
//!
//! ```
//! use missive::rpc::msgpack::{Envelope, MessagePackCodec};
//! use missive::rpc::{Decoder, Encoder};
//!
//! let mut client = MessagePackCodec::<Envelope<String>, Envelope<String>>::default();
//! let mut server = MessagePackCodec::<Envelope<String>, Envelope<String>>::default();
//! let mut wire = client.encode(Envelope::new("hello".to_owned()))?;
//! let request = server.decode(&mut wire)?.ok_or("a whole frame")?;
//! assert_eq!(request.into_body().as_deref(), Some("hello"));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::codec::{DecodeError, Decoder, EncodeError, Encoder, check_and_reserve, framed_codec};
use super::message::{ControlCode, Message, Status, StatusCode};

/// The MessagePack `uint 32` marker that starts every frame.
const MARKER: u8 = 0xCE;
/// Marker and length.
const PREFIX: usize = 5;

framed_codec! {
    /// A codec that encodes `Out` and decodes `In` with rmp-serde, compatible with
    /// protosocket-messagepack.
    MessagePackCodec
}

impl<Out: Serialize, In> Encoder for MessagePackCodec<Out, In> {
    type Message = Out;
    type Serialized = BytesMut;

    fn encode(&mut self, message: Out) -> Result<BytesMut, EncodeError> {
        let mut buffer = self.pool.take(128);
        buffer.put_slice(&[MARKER, 0, 0, 0, 0]);
        let mut writer = (&mut buffer).writer();
        rmp_serde::encode::write(&mut writer, &message)
            .map_err(|e| EncodeError::Serialize(e.to_string()))?;
        let size = buffer.len() - PREFIX;
        let len = u32::try_from(size)
            .ok()
            .filter(|&l| l as usize <= self.max_message_size)
            .ok_or(EncodeError::TooLarge {
                size,
                max: self.max_message_size,
            })?;
        if let Some(prefix) = buffer.get_mut(1..PREFIX) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
        Ok(buffer)
    }

    fn return_buffer(&mut self, buffer: BytesMut) {
        self.pool.give(buffer);
    }
}

impl<Out, In: DeserializeOwned> Decoder for MessagePackCodec<Out, In> {
    type Message = In;

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<In>, DecodeError> {
        let Some(prefix) = buffer.get(..PREFIX) else {
            return Ok(None);
        };
        if prefix[0] != MARKER {
            return Err(DecodeError::BadPrefix(
                "expected the msgpack uint32 marker 0xCE",
            ));
        }
        let size = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        let Some(len) = check_and_reserve(buffer, PREFIX, u64::from(size), self.max_message_size)?
        else {
            return Ok(None);
        };
        let payload = buffer.get(PREFIX..PREFIX + len).unwrap_or_default();
        let message =
            rmp_serde::from_slice(payload).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        buffer.advance(PREFIX + len);
        Ok(Some(message))
    }
}

/// A message for users who do not want ids in their own types: the id, control code and an
/// optional status travel around any serde `body`.
///
/// With [`MessagePackCodec`] it is encoded as the array `[id, code, body, status]`, where
/// `status` is `nil` or `[code, message]`; a failed rpc carries its [`Status`] to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The rpc id.
    pub id: u64,
    /// The control code (see [`ControlCode`]).
    pub code: u8,
    /// The payload; `None` in Cancel and End messages.
    pub body: Option<T>,
    /// `(status code, message)` of a failed rpc.
    pub status: Option<(u32, String)>,
}

impl<T> Envelope<T> {
    /// A Normal message around `body` (the library sets the id).
    pub fn new(body: T) -> Self {
        Self {
            id: 0,
            code: ControlCode::Normal.as_u8(),
            body: Some(body),
            status: None,
        }
    }

    /// The payload.
    pub fn into_body(self) -> Option<T> {
        self.body
    }

    fn control(id: u64, code: ControlCode) -> Self {
        Self {
            id,
            code: code.as_u8(),
            body: None,
            status: None,
        }
    }
}

impl<T> Message for Envelope<T> {
    fn message_id(&self) -> u64 {
        self.id
    }
    fn control_code(&self) -> ControlCode {
        ControlCode::from_u8(self.code)
    }
    fn set_message_id(&mut self, message_id: u64) {
        self.id = message_id;
    }
    fn cancelled(message_id: u64) -> Self {
        Self::control(message_id, ControlCode::Cancel)
    }
    fn ended(message_id: u64) -> Self {
        Self::control(message_id, ControlCode::End)
    }
    fn failed(message_id: u64, status: Status) -> Self {
        Self {
            status: Some((status.code().as_u32(), status.message().to_owned())),
            ..Self::control(message_id, ControlCode::Cancel)
        }
    }
    fn status(&self) -> Option<Status> {
        self.status
            .as_ref()
            .map(|(code, message)| Status::new(StatusCode::from_u32(*code), message.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Codec = MessagePackCodec<Envelope<(String, Vec<u32>)>, Envelope<(String, Vec<u32>)>>;

    proptest! {
        #[test]
        fn msgpack_frames_round_trip(
            msgs in proptest::collection::vec(
                (any::<u64>(), 0u8..3, proptest::option::of((".{0,40}", proptest::collection::vec(any::<u32>(), 0..50))),
                 proptest::option::of((any::<u32>(), ".{0,20}"))),
                1..8)
        ) {
            let mut codec = Codec::default();
            let msgs: Vec<_> = msgs.into_iter().map(|(id, code, body, status)| Envelope { id, code, body, status }).collect();
            let mut wire = BytesMut::new();
            for m in &msgs {
                let frame = codec.encode(m.clone()).expect("encode");
                wire.extend_from_slice(&frame);
                codec.return_buffer(frame);
            }
            let cut = wire.len() / 3;
            let mut buffer = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            while let Some(m) = codec.decode(&mut buffer).expect("decode") { out.push(m); }
            buffer.extend_from_slice(&wire[cut..]);
            while let Some(m) = codec.decode(&mut buffer).expect("decode") { out.push(m); }
            prop_assert_eq!(out, msgs);
        }
    }

    #[test]
    fn msgpack_prefix_over_the_limit_is_refused_before_allocating() {
        let mut codec = Codec::default();
        let mut buffer = BytesMut::from(&[0xCE, 0xff, 0xff, 0xff, 0xff][..]);
        let cap = buffer.capacity();
        assert!(matches!(
            codec.decode(&mut buffer),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(buffer.capacity(), cap);
    }

    #[test]
    fn msgpack_wrong_marker_and_garbage_are_errors() {
        let mut codec = Codec::default();
        let mut buffer = BytesMut::from(&[0x00, 0, 0, 0, 1, 0][..]);
        assert!(matches!(
            codec.decode(&mut buffer),
            Err(DecodeError::BadPrefix(_))
        ));
        let mut buffer = BytesMut::from(&[0xCE, 0, 0, 0, 1, 0xc1][..]);
        assert!(matches!(
            codec.decode(&mut buffer),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn envelope_carries_status() {
        let m: Envelope<u8> = Envelope::failed(3, Status::new(StatusCode::Rejected, "no"));
        assert_eq!(m.control_code(), ControlCode::Cancel);
        assert_eq!(m.status(), Some(Status::new(StatusCode::Rejected, "no")));
    }
}
