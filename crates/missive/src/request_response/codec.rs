//! How requests and responses are read from and written to a stream.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Defines a request-response protocol (or a family of protocols sharing message types): the protocol
/// names, the message types, and how each message is read from and written to a stream.
///
/// Each request travels on a stream of its own. The requester writes the request and closes its write
/// side; the responder reads the request, writes the response and closes. So a codec may read to the
/// end of the stream, as the [`cbor`](super::cbor) and [`json`](super::json) codecs do, and needs no
/// length prefix — which is what rust-libp2p's codecs put on the wire.
///
/// For a one-way protocol, make `Response = ()` and let `read_response` / `write_response` do
/// nothing: the requester then gets its response right after the request is written.
pub trait Codec: Clone + Send + 'static {
    /// The protocol name type; use an enum for a protocol family.
    type Protocol: AsRef<str> + Clone + Send + Sync + 'static;
    /// The request type.
    type Request: Send + 'static;
    /// The response type.
    type Response: Send + 'static;

    /// Reads a request from a stream negotiated for `protocol`.
    fn read_request<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
    ) -> impl Future<Output = io::Result<Self::Request>> + Send
    where
        T: AsyncRead + Unpin + Send;

    /// Reads a response from a stream negotiated for `protocol`.
    fn read_response<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
    ) -> impl Future<Output = io::Result<Self::Response>> + Send
    where
        T: AsyncRead + Unpin + Send;

    /// Writes a request. The caller closes the write side afterwards.
    fn write_request<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
        request: Self::Request,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send;

    /// Writes a response. The caller closes the write side afterwards.
    fn write_response<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
        response: Self::Response,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send;
}

/// Which message broke a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// A request.
    Request,
    /// A response.
    Response,
}

/// A message larger than the configured limit. Carried inside the `io::Error` a codec returns
/// (kind `InvalidData`); [`MessageTooLarge::find`] gets it back out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} larger than the limit of {limit} bytes{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
pub struct MessageTooLarge {
    /// Request or response.
    pub kind: MessageKind,
    /// The configured limit in bytes.
    pub limit: u64,
    /// The message's size, when known (it is when sending; a receiver stops reading at the limit).
    pub size: Option<u64>,
}

impl MessageTooLarge {
    /// The size-limit error inside `error`, if that is what it is.
    pub fn find(error: &io::Error) -> Option<&MessageTooLarge> {
        error.get_ref()?.downcast_ref::<MessageTooLarge>()
    }

    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Capacity of the buffer [`read_to_end_limited`] starts with.
const FIRST_READ: u64 = 512;

/// Reads `io` to its end, refusing to hold more than `limit` bytes.
///
/// Memory grows with what actually arrives, never with what a peer claims; one byte past the limit
/// is a [`MessageTooLarge`] error rather than a silently truncated message.
pub async fn read_to_end_limited<T>(
    io: &mut T,
    limit: u64,
    kind: MessageKind,
) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    // A small first buffer, whatever the limit: most messages fit it and are read in one call;
    // larger ones grow it as their bytes arrive.
    let first = limit.saturating_add(1).min(FIRST_READ) as usize;
    let mut buf = Vec::with_capacity(first);
    (&mut *io)
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .await?;
    if buf.len() as u64 > limit {
        return Err(MessageTooLarge {
            kind,
            limit,
            size: None,
        }
        .into_io());
    }
    Ok(buf)
}

/// Checks an encoded message against `limit` before it is written.
pub(crate) fn check_outgoing(len: usize, limit: u64, kind: MessageKind) -> io::Result<()> {
    if len as u64 > limit {
        return Err(MessageTooLarge {
            kind,
            limit,
            size: Some(len as u64),
        }
        .into_io());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_deadline::within;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_message_at_the_limit_is_read_whole() {
        within(async {
            let (mut a, mut b) = tokio::io::duplex(64);
            a.write_all(&[7; 10]).await.expect("write");
            drop(a);
            let got = read_to_end_limited(&mut b, 10, MessageKind::Request)
                .await
                .expect("read");
            assert_eq!(got, vec![7; 10]);
        })
        .await;
    }

    #[tokio::test]
    async fn one_byte_past_the_limit_is_too_large_not_truncated() {
        within(async {
            let (mut a, mut b) = tokio::io::duplex(64);
            a.write_all(&[7; 11]).await.expect("write");
            drop(a);
            let err = read_to_end_limited(&mut b, 10, MessageKind::Response)
                .await
                .expect_err("too large");
            assert_eq!(
                MessageTooLarge::find(&err),
                Some(&MessageTooLarge {
                    kind: MessageKind::Response,
                    limit: 10,
                    size: None
                })
            );
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        })
        .await;
    }

    #[test]
    fn outgoing_check_reports_the_size() {
        let err = check_outgoing(11, 10, MessageKind::Request).expect_err("too large");
        let found = MessageTooLarge::find(&err).expect("typed");
        assert_eq!(found.size, Some(11));
        assert!(
            err.to_string().contains("limit of 10 bytes (11 bytes)"),
            "{err}"
        );
        assert!(check_outgoing(10, 10, MessageKind::Request).is_ok());
    }
}
