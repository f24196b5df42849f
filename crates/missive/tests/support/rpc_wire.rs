//! A small rpc wire for tests that need no optional codec feature: each message is
//! `u32 BE length | u64 BE id | u8 control code | body`, the length counting id, code and body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use missive::rpc::{ControlCode, DecodeError, Decoder, EncodeError, Encoder, Message};

/// One message, request or response.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Msg {
    pub(crate) id: u64,
    pub(crate) code: u8,
    pub(crate) body: Bytes,
}

impl Msg {
    /// A message with this body (the library sets the id).
    pub(crate) fn body(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }
}

impl Message for Msg {
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
        Self {
            id: message_id,
            code: ControlCode::Cancel.as_u8(),
            body: Bytes::new(),
        }
    }
    fn ended(message_id: u64) -> Self {
        Self {
            id: message_id,
            code: ControlCode::End.as_u8(),
            body: Bytes::new(),
        }
    }
}

/// The largest message (length field), sent or received.
pub(crate) const RPC_MAX: usize = 1 << 20;

/// Encodes and decodes [`Msg`]; a length over [`RPC_MAX`] is refused before anything is read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WireCodec;

impl Encoder for WireCodec {
    type Message = Msg;
    type Serialized = Bytes;

    fn encode(&mut self, m: Msg) -> Result<Bytes, EncodeError> {
        let len = 9 + m.body.len();
        if len > RPC_MAX {
            return Err(EncodeError::TooLarge {
                size: len,
                max: RPC_MAX,
            });
        }
        let mut out = BytesMut::with_capacity(4 + len);
        out.put_u32(u32::try_from(len).expect("under the limit"));
        out.put_u64(m.id);
        out.put_u8(m.code);
        out.put_slice(&m.body);
        Ok(out.freeze())
    }
}

impl Decoder for WireCodec {
    type Message = Msg;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Msg>, DecodeError> {
        let Some(prefix) = buffer.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
        if len > RPC_MAX {
            return Err(DecodeError::TooLarge {
                size: len as u64,
                max: RPC_MAX,
            });
        }
        if len < 9 {
            return Err(DecodeError::BadPrefix("shorter than its id and code"));
        }
        if buffer.len() < 4 + len {
            return Ok(None);
        }
        buffer.advance(4);
        let id = buffer.get_u64();
        let code = buffer.get_u8();
        let body = buffer.split_to(len - 9).freeze();
        Ok(Some(Msg { id, code, body }))
    }
}
