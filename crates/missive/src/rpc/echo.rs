//! A ready-made echo protocol (protobuf, protosocket-prost framing) for benchmarks, examples and
//! tests: the server answers a request with its body, once or `stream_count` times.
//!
//! The messages follow protosocket's prost convention: `Request { 1: uint64 request_id,
//! 2: uint32 code, … }`, `Response { 1: uint64 request_id, 2: uint32 code, … }`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use missive::rpc::echo::{self, EchoService, Request};
//! use missive::rpc::{Client, ClientConfig, Server};
//!
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! tokio::spawn(Server::default().connection(b, echo::ServerCodec::default(), EchoService));
//! let client = Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
//! let echoes = client.server_stream(Request::stream("hi", 4)).await?.count().await;
//! assert_eq!(echoes, 4);
//! # Ok(())
//! # }
//! ```

use std::future::{Ready, ready};

use bytes::buf::Chain;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::{self, Iter};

use super::codec::{DecodeError, Decoder, EncodeError, Encoder, write_varint};

use super::message::{ControlCode, Message, Status, StatusCode};
use super::prost::ProstCodec;
use super::server::{CallContext, Reply, Service};

/// An echo request.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Request {
    /// The rpc id.
    #[prost(uint64, tag = "1")]
    pub request_id: u64,
    /// The control code (see [`ControlCode`]).
    #[prost(uint32, tag = "2")]
    pub code: u32,
    /// The bytes to echo.
    #[prost(bytes = "bytes", tag = "3")]
    pub body: Bytes,
    /// 0: a unary answer; n > 0: a stream of n answers.
    #[prost(uint32, tag = "4")]
    pub stream_count: u32,
}

/// An echo response.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Response {
    /// The rpc id.
    #[prost(uint64, tag = "1")]
    pub request_id: u64,
    /// The control code (see [`ControlCode`]).
    #[prost(uint32, tag = "2")]
    pub code: u32,
    /// The echoed bytes.
    #[prost(bytes = "bytes", tag = "3")]
    pub body: Bytes,
    /// The [`StatusCode`] of a failed rpc (0: none).
    #[prost(uint32, tag = "4")]
    pub status_code: u32,
    /// The status message of a failed rpc.
    #[prost(string, tag = "5")]
    pub status_message: String,
}

impl Request {
    /// A unary echo request.
    pub fn unary(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// A request for `count` echoes as a stream.
    pub fn stream(body: impl Into<Bytes>, count: u32) -> Self {
        Self {
            body: body.into(),
            stream_count: count,
            ..Self::default()
        }
    }
}

/// The id and control-code half of [`Message`], the same for both echo messages.
macro_rules! id_and_code {
    () => {
        fn message_id(&self) -> u64 {
            self.request_id
        }
        fn control_code(&self) -> ControlCode {
            ControlCode::from_u32(self.code)
        }
        fn set_message_id(&mut self, message_id: u64) {
            self.request_id = message_id;
        }
        fn cancelled(message_id: u64) -> Self {
            Self {
                request_id: message_id,
                code: ControlCode::Cancel as u32,
                ..Self::default()
            }
        }
        fn ended(message_id: u64) -> Self {
            Self {
                request_id: message_id,
                code: ControlCode::End as u32,
                ..Self::default()
            }
        }
    };
}

impl Message for Request {
    id_and_code!();
}

impl Message for Response {
    id_and_code!();
    fn failed(message_id: u64, status: Status) -> Self {
        Self {
            request_id: message_id,
            code: ControlCode::Cancel as u32,
            status_code: status.code().as_u32(),
            status_message: status.message().to_owned(),
            ..Self::default()
        }
    }
    fn status(&self) -> Option<Status> {
        (self.status_code != 0).then(|| {
            Status::new(
                StatusCode::from_u32(self.status_code),
                self.status_message.clone(),
            )
        })
    }
}

/// The client side codec of the echo protocol.
pub type ClientCodec = Codec<Request, Response>;
/// The server side codec of the echo protocol.
pub type ServerCodec = Codec<Response, Request>;

/// Bodies from this size on are written from the message's own `Bytes`, without a copy.
const ZERO_COPY_FROM: usize = 4 * 1024;

/// The echo protocol's codec: protosocket-prost framing, as [`ProstCodec`], except that a large
/// body is not copied while encoding. Its frame is the other fields followed by the body field,
/// written as two pieces (protobuf fields may come in any order), so an echo costs no copy of
/// the body on either side: decoding shares the read buffer, encoding writes the body as is.
pub struct Codec<Out, In> {
    inner: ProstCodec<Out, In>,
}

impl<Out, In> std::fmt::Debug for Codec<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("max_message_size", &self.inner.max_message_size)
            .finish_non_exhaustive()
    }
}

impl<Out, In> Default for Codec<Out, In> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<Out, In> Codec<Out, In> {
    /// The largest message encoded or accepted, without its length prefix (default 4 MiB).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.inner = self.inner.with_max_message_size(bytes);
        self
    }
}

/// One encoded echo frame: the prefix and the fields other than a large body, then that body.
pub type Frame = Chain<BytesMut, Bytes>;

/// The Encoder of one echo message type (both have their body in field 3).
macro_rules! echo_encoder {
    ($out:ty, $in:ty) => {
        impl Encoder for Codec<$out, $in> {
            type Message = $out;
            type Serialized = Frame;

            fn encode(&mut self, mut message: $out) -> Result<Frame, EncodeError> {
                if message.body.len() < ZERO_COPY_FROM {
                    return self.inner.encode(message).map(|b| b.chain(Bytes::new()));
                }
                let body = std::mem::take(&mut message.body);
                let body_len = body.len();
                let body_field =
                    1 + ::prost::encoding::encoded_len_varint(body_len as u64) + body_len;
                let len = ::prost::Message::encoded_len(&message) + body_field;
                let max = self.inner.max_message_size;
                if len > max {
                    return Err(EncodeError::TooLarge { size: len, max });
                }
                let mut head = self.inner.pool.take(len - body_len + 10);
                write_varint(len as u64, &mut head);
                ::prost::Message::encode(&message, &mut head)
                    .map_err(|e| EncodeError::Serialize(e.to_string()))?;
                // Field 3, length-delimited.
                head.put_u8(3 << 3 | 2);
                write_varint(body_len as u64, &mut head);
                Ok(head.chain(body))
            }

            fn encode_into(
                &mut self,
                message: $out,
                out: &mut BytesMut,
                inline_below: usize,
            ) -> Result<Option<Frame>, EncodeError> {
                if message.body.len() < ZERO_COPY_FROM {
                    let frame = self.inner.encode_into(message, out, inline_below)?;
                    return Ok(frame.map(|b| b.chain(Bytes::new())));
                }
                self.encode(message).map(Some)
            }

            fn return_buffer(&mut self, frame: Frame) {
                let (head, _body) = frame.into_inner();
                self.inner.return_buffer(head);
            }
        }
    };
}

echo_encoder!(Request, Response);
echo_encoder!(Response, Request);

impl<Out, In: ::prost::Message + Default> Decoder for Codec<Out, In> {
    type Message = In;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<In>, DecodeError> {
        self.inner.decode(buffer)
    }

    fn max_message_size(&self) -> usize {
        self.inner.max_message_size
    }
}

/// Answers every request with its body (unary), or `stream_count` times (a stream).
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoService;

type Echoes = Iter<std::iter::RepeatN<Result<Response, Status>>>;

impl Service for EchoService {
    type Request = Request;
    type Response = Response;
    type Unary = Ready<Result<Response, Status>>;
    type Stream = Echoes;

    fn call(
        &mut self,
        request: Request,
        _context: &mut CallContext<Request>,
    ) -> Reply<Self::Unary, Self::Stream> {
        let response = Response {
            body: request.body,
            ..Response::default()
        };
        match request.stream_count {
            0 => Reply::Unary(ready(Ok(response))),
            n => Reply::Stream(stream::iter(std::iter::repeat_n(Ok(response), n as usize))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(frame: &mut Frame) -> BytesMut {
        let mut out = BytesMut::new();
        out.put(frame);
        out
    }

    proptest! {
        #[test]
        fn echo_frames_of_every_body_size_decode_to_the_same_message(
            id in any::<u64>(),
            len in prop_oneof![0..64usize, (ZERO_COPY_FROM - 2)..(ZERO_COPY_FROM + 2), 10_000..20_000usize],
            status in any::<u32>(),
        ) {
            let body = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let response = Response {
                request_id: id,
                body,
                status_code: status,
                status_message: "m".into(),
                ..Response::default()
            };
            let mut server = ServerCodec::default();
            let mut frame = server.encode(response.clone()).expect("encode");
            let mut bytes = wire(&mut frame);
            server.return_buffer(frame);
            // A plain protobuf codec (as a protosocket peer) reads the same message.
            let mut plain: ProstCodec<Request, Response> = ProstCodec::default();
            prop_assert_eq!(plain.decode(&mut bytes.clone()).expect("decode"), Some(response.clone()));
            let mut client = ClientCodec::default();
            prop_assert_eq!(client.decode(&mut bytes).expect("decode"), Some(response));
            prop_assert!(bytes.is_empty());
        }
    }

    #[test]
    fn a_large_body_is_written_without_a_copy() {
        let body = Bytes::from(vec![7u8; 64 * 1024]);
        let mut codec = ClientCodec::default();
        let frame = codec.encode(Request::unary(body.clone())).expect("encode");
        let (head, sent) = frame.into_inner();
        assert_eq!(sent.as_ptr(), body.as_ptr());
        assert!(head.len() < 32);
    }

    #[test]
    fn a_large_message_over_the_limit_is_refused() {
        let mut codec = ClientCodec::default().with_max_message_size(8 * 1024);
        let request = Request::unary(Bytes::from(vec![0u8; 16 * 1024]));
        assert!(matches!(
            codec.encode(request),
            Err(EncodeError::TooLarge { .. })
        ));
    }
}
