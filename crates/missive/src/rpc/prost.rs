//! Protobuf messages with protosocket-prost framing: unsigned LEB128 length ‖ protobuf bytes.
//!
//! Decoding copies no body: each frame is split off the connection's read buffer, so `bytes`
//! fields declared with `bytes = "bytes"` are slices of it (as tokio-util's framed readers
//! hand out). A slice keeps the buffer it came from (16 KiB or more) alive; copy a body that
//! is kept long after its call (`Bytes::copy_from_slice`).
//!
//! ```
//! use missive::rpc::echo::{Request, Response};
//! use missive::rpc::prost::ProstCodec;
//! use missive::rpc::{Decoder, Encoder};
//!
//! let mut client = ProstCodec::<Request, Response>::default().with_max_message_size(1024 * 1024);
//! let mut server = ProstCodec::<Response, Request>::default();
//! let mut wire = client.encode(Request::unary("hi"))?;
//! assert_eq!(wire[0] as usize, wire.len() - 1); // a one-byte varint length, then protobuf
//! let request = server.decode(&mut wire)?.ok_or("a whole frame")?;
//! assert_eq!(&request.body[..], b"hi");
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use bytes::{Buf, BytesMut};

use super::codec::{
    DecodeError, Decoder, EncodeError, Encoder, check_and_reserve, framed_codec, read_varint,
    write_varint,
};

framed_codec! {
    /// A codec that encodes `Out` and decodes `In` as length-delimited protobuf, compatible with
    /// protosocket-prost.
    ProstCodec
}

impl<Out: prost::Message, In> Encoder for ProstCodec<Out, In> {
    type Message = Out;
    type Serialized = BytesMut;

    fn encode(&mut self, message: Out) -> Result<BytesMut, EncodeError> {
        let len = message.encoded_len();
        if len > self.max_message_size {
            return Err(EncodeError::TooLarge {
                size: len,
                max: self.max_message_size,
            });
        }
        let mut buffer = self.pool.take(len + 10);
        write_varint(len as u64, &mut buffer);
        message
            .encode(&mut buffer)
            .map_err(|e| EncodeError::Serialize(e.to_string()))?;
        Ok(buffer)
    }

    fn encode_into(
        &mut self,
        message: Out,
        out: &mut BytesMut,
        inline_below: usize,
    ) -> Result<Option<BytesMut>, EncodeError> {
        let len = message.encoded_len();
        if len + 10 >= inline_below {
            return self.encode(message).map(Some);
        }
        out.reserve(len + 10);
        write_varint(len as u64, out);
        // Encoded into a plain slice of the buffer: prost writes a slice with stores and one
        // bounds check per field, where `BytesMut` checks its capacity for every byte.
        let start = out.len();
        out.resize(start + len, 0);
        let mut rest = out.get_mut(start..).unwrap_or_default();
        let encoded = message.encode(&mut rest);
        if encoded.is_err() || !rest.is_empty() {
            // `encoded_len` and `encode` disagree: the message type's own fault.
            out.truncate(start);
            return Err(EncodeError::Serialize(
                "the message encoded to another length than it announced".to_owned(),
            ));
        }
        Ok(None)
    }

    fn return_buffer(&mut self, buffer: BytesMut) {
        self.pool.give(buffer);
    }
}

impl<Out, In: prost::Message + Default> Decoder for ProstCodec<Out, In> {
    type Message = In;

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<In>, DecodeError> {
        let Some((size, prefix)) = read_varint(buffer)? else {
            return Ok(None);
        };
        let Some(len) = check_and_reserve(buffer, prefix, size, self.max_message_size)? else {
            return Ok(None);
        };
        // The frame is split off the read buffer, not copied: `bytes` fields of the message
        // are slices of it (the buffer is shared until they are dropped).
        buffer.advance(prefix);
        let frame = buffer.split_to(len).freeze();
        In::decode(frame)
            .map(Some)
            .map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Msg {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(uint32, tag = "2")]
        code: u32,
        #[prost(bytes = "vec", tag = "3")]
        body: Vec<u8>,
    }

    proptest! {
        #[test]
        fn prost_frames_round_trip(
            msgs in proptest::collection::vec((any::<u64>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..6000)), 1..8)
        ) {
            let mut codec: ProstCodec<Msg, Msg> = ProstCodec::default();
            let mut wire = BytesMut::new();
            let msgs: Vec<Msg> = msgs.into_iter().map(|(id, code, body)| Msg { id, code, body }).collect();
            for m in &msgs {
                let frame = codec.encode(m.clone()).expect("encode");
                wire.extend_from_slice(&frame);
                codec.return_buffer(frame);
            }
            // Fed in two pieces: every complete frame decodes, in order.
            let cut = wire.len() / 2;
            let mut buffer = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            while let Some(m) = codec.decode(&mut buffer).expect("decode") { out.push(m); }
            buffer.extend_from_slice(&wire[cut..]);
            while let Some(m) = codec.decode(&mut buffer).expect("decode") { out.push(m); }
            prop_assert_eq!(out, msgs);
            prop_assert!(buffer.is_empty());
        }
    }

    #[test]
    fn a_small_frames_bytes_field_shares_the_read_buffer() {
        use crate::rpc::echo::{Request, Response};
        let mut client: ProstCodec<Request, Response> = ProstCodec::default();
        let mut server: ProstCodec<Response, Request> = ProstCodec::default();
        let mut wire = BytesMut::new();
        for body in [&b"first body of 64 bytes, or so"[..], &[7u8; 64][..]] {
            let frame = client
                .encode(Request::unary(body.to_vec()))
                .expect("encode");
            wire.extend_from_slice(&frame);
        }
        let range = wire.as_ptr_range();
        for _ in 0..2 {
            let request = server.decode(&mut wire).expect("decode").expect("a frame");
            assert!(
                range.contains(&request.body.as_ptr()),
                "the body was copied out of the read buffer"
            );
        }
        assert!(wire.is_empty());
    }

    proptest! {
        #[test]
        fn encoding_into_the_write_buffer_writes_the_same_frame(
            id in any::<u64>(),
            code in any::<u32>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            before in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let m = Msg { id, code, body };
            let mut codec: ProstCodec<Msg, Msg> = ProstCodec::default();
            let alone = codec.encode(m.clone()).expect("encode");
            let mut out = BytesMut::from(&before[..]);
            prop_assert!(codec.encode_into(m, &mut out, 4096).expect("encode").is_none());
            prop_assert_eq!(&out[..before.len()], &before[..]);
            prop_assert_eq!(&out[before.len()..], &alone[..]);
        }
    }

    #[test]
    fn prost_prefix_over_the_limit_is_refused_before_allocating() {
        let mut codec: ProstCodec<Msg, Msg> = ProstCodec::default().with_max_message_size(1024);
        let mut buffer = BytesMut::new();
        write_varint(4 << 30, &mut buffer);
        let cap = buffer.capacity();
        assert!(matches!(
            codec.decode(&mut buffer),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(buffer.capacity(), cap);
    }

    #[test]
    fn prost_garbage_payload_is_malformed() {
        let mut codec: ProstCodec<Msg, Msg> = ProstCodec::default();
        let mut buffer = BytesMut::from(&[3u8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            codec.decode(&mut buffer),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn prost_encoder_refuses_messages_over_the_limit() {
        let mut codec: ProstCodec<Msg, Msg> = ProstCodec::default().with_max_message_size(16);
        let m = Msg {
            id: 1,
            code: 0,
            body: vec![0; 64],
        };
        assert!(matches!(codec.encode(m), Err(EncodeError::TooLarge { .. })));
    }
}
