//! [`OneWay`]: turns any codec into a one-way protocol (requests only, `()` responses).

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::Codec;

/// A one-way protocol made from codec `C`: requests are read and written by `C`, the response is
/// `()` and nothing of it goes on the wire.
///
/// The requester's response (`Ok(())`) comes as soon as the request is written and its write
/// side closed; the responder may simply drop the
/// [`ResponseChannel`](super::ResponseChannel) (an
/// [`InboundFailure::ResponseOmission`](super::InboundFailure::ResponseOmission) event is then
/// raised, which a one-way application may ignore). The wire is that of libp2p one-way codecs.
///
/// With the default lazy negotiation the requester does not wait for the peer to accept the
/// protocol either, so a peer that refuses it goes unnoticed;
/// [`Config::with_version`](super::Config::with_version)`(Version::V1)` makes such a request
/// fail with [`OutboundFailure::UnsupportedProtocols`](super::OutboundFailure::UnsupportedProtocols).
#[derive(Debug, Clone, Default)]
pub struct OneWay<C>(pub C);

impl<C: Codec> Codec for OneWay<C> {
    type Protocol = C::Protocol;
    type Request = C::Request;
    type Response = ();

    async fn read_request<T>(
        &mut self,
        protocol: &C::Protocol,
        io: &mut T,
    ) -> io::Result<C::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.0.read_request(protocol, io).await
    }

    async fn read_response<T>(&mut self, _: &C::Protocol, _: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        protocol: &C::Protocol,
        io: &mut T,
        request: C::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.0.write_request(protocol, io, request).await
    }

    async fn write_response<T>(&mut self, _: &C::Protocol, _: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}
