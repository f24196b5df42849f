//! A [`Behaviour`] as a `tower::Service<(PeerId, Request)>`: `call((peer, request))` is
//! [`Behaviour::request`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Behaviour, Codec, OutboundFailure};
use crate::p2p::PeerId;

/// Requests to peers. Always ready: the per-peer and per-connection limits are waited for
/// (or refused) inside the request, under its timeout, as [`Behaviour::request`] does.
impl<C: Codec> tower_service::Service<(PeerId, C::Request)> for Behaviour<C> {
    type Response = C::Response;
    type Error = OutboundFailure;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, OutboundFailure>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OutboundFailure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (peer, request): (PeerId, C::Request)) -> Self::Future {
        let behaviour = self.clone();
        Box::pin(async move { behaviour.request(peer, request).await })
    }
}
