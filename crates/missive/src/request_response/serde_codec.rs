//! A [`Codec`] for any serde message type, in a pluggable format, with size limits on both sides.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::codec::{Codec, MessageKind, check_outgoing, read_to_end_limited};

/// Default limit for a request: 1 MiB, as rust-libp2p's codecs.
pub const DEFAULT_REQUEST_LIMIT: u64 = 1024 * 1024;
/// Default limit for a response: 10 MiB, as rust-libp2p's codecs.
pub const DEFAULT_RESPONSE_LIMIT: u64 = 10 * 1024 * 1024;

/// A serde serialization format: turns a value into bytes and back.
pub trait Format: Send + Sync + 'static {
    /// Serializes `value`.
    fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>>;
    /// Deserializes a whole message.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T>;
}

/// Ties the type parameters to the codec without owning values of them (so it stays `Send + Sync`).
type Marker<F, Req, Resp, P> = PhantomData<fn() -> (F, Req, Resp, P)>;

/// A codec that writes each message whole in format `F` with no length prefix and reads to the end of
/// the stream: the wire of rust-libp2p's `request_response::cbor` and `::json`.
///
/// A message over its limit is refused before it is written (the sender gets the error, nothing goes
/// on the wire) and when it is read (the reader stops one byte past the limit); either way the error
/// is a [`MessageTooLarge`](super::codec::MessageTooLarge) inside an `io::Error`, not a truncated
/// message.
pub struct SerdeCodec<F, Req, Resp, P = String> {
    request_limit: u64,
    response_limit: u64,
    marker: Marker<F, Req, Resp, P>,
}

impl<F, Req, Resp, P> SerdeCodec<F, Req, Resp, P> {
    /// Sets the largest request accepted or sent, in bytes (default 1 MiB).
    pub fn with_request_limit(mut self, bytes: u64) -> Self {
        self.request_limit = bytes;
        self
    }

    /// Sets the largest response accepted or sent, in bytes (default 10 MiB).
    pub fn with_response_limit(mut self, bytes: u64) -> Self {
        self.response_limit = bytes;
        self
    }

    /// The request limit in bytes.
    pub fn request_limit(&self) -> u64 {
        self.request_limit
    }

    /// The response limit in bytes.
    pub fn response_limit(&self) -> u64 {
        self.response_limit
    }
}

impl<F, Req, Resp, P> Default for SerdeCodec<F, Req, Resp, P> {
    fn default() -> Self {
        SerdeCodec {
            request_limit: DEFAULT_REQUEST_LIMIT,
            response_limit: DEFAULT_RESPONSE_LIMIT,
            marker: PhantomData,
        }
    }
}

impl<F, Req, Resp, P> Clone for SerdeCodec<F, Req, Resp, P> {
    fn clone(&self) -> Self {
        SerdeCodec {
            request_limit: self.request_limit,
            response_limit: self.response_limit,
            marker: PhantomData,
        }
    }
}

impl<F, Req, Resp, P> fmt::Debug for SerdeCodec<F, Req, Resp, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerdeCodec")
            .field("format", &std::any::type_name::<F>())
            .field("request_limit", &self.request_limit)
            .field("response_limit", &self.response_limit)
            .finish()
    }
}

impl<F, Req, Resp, P> Codec for SerdeCodec<F, Req, Resp, P>
where
    F: Format,
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
    P: AsRef<str> + Clone + Send + Sync + 'static,
{
    type Protocol = P;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &P, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_to_end_limited(io, self.request_limit, MessageKind::Request).await?;
        F::decode(&bytes)
    }

    async fn read_response<T>(&mut self, _: &P, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_to_end_limited(io, self.response_limit, MessageKind::Response).await?;
        F::decode(&bytes)
    }

    async fn write_request<T>(&mut self, _: &P, io: &mut T, request: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = F::encode(&request)?;
        check_outgoing(bytes.len(), self.request_limit, MessageKind::Request)?;
        io.write_all(&bytes).await
    }

    async fn write_response<T>(&mut self, _: &P, io: &mut T, response: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = F::encode(&response)?;
        check_outgoing(bytes.len(), self.response_limit, MessageKind::Response)?;
        io.write_all(&bytes).await
    }
}
