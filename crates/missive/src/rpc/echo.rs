//! A ready-made echo protocol (protobuf, protosocket-prost framing) for benchmarks, examples and
//! tests: the server answers a request with its body, once or `stream_count` times.
//!
//! The messages follow protosocket's prost convention: `Request { 1: uint64 request_id,
//! 2: uint32 code, … }`, `Response { 1: uint64 request_id, 2: uint32 code, … }`.

use std::future::{Ready, ready};

use bytes::Bytes;
use futures_util::stream::{self, Iter};

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
pub type ClientCodec = ProstCodec<Request, Response>;
/// The server side codec of the echo protocol.
pub type ServerCodec = ProstCodec<Response, Request>;

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
