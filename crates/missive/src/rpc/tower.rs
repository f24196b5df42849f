//! tower: the [`Client`] as a `tower::Service` of unary calls, and any `tower::Service` served
//! as an rpc [`Service`] with [`TowerService`], so tower's middleware (timeouts, concurrency
//! limits, retries, load balancing) stacks on either side.
//!
//! ```
//! # #[cfg(feature = "prost")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::rpc::echo::{self, Request, Response};
//! use missive::rpc::{Client, ClientConfig, Server, Status, TowerService};
//! use tower::ServiceExt;
//!
//! // A tower service: a closure that answers with the length of the body.
//! let service = tower::service_fn(|request: Request| async move {
//!     let body = request.body.len().to_string().into();
//!     Ok::<_, Status>(Response { body, ..Response::default() })
//! });
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! let server = Server::default();
//! tokio::spawn(server.connection(b, echo::ServerCodec::default(), TowerService::new(service)));
//!
//! let client = Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default());
//! let response = client.oneshot(Request::unary("four")).await?;
//! assert_eq!(&response.body[..], b"4");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prost"))]
//! # fn main() {}
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::client::{CallError, Client};
use super::message::{Message, Status, StatusCode};
use super::server::{CallContext, Reply, Service};

/// The boxed error type of tower's middleware (`tower::BoxError`).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Unary calls: `call(request)` is [`Client::call`]. Never waits in `poll_ready` (the in-flight
/// limit is waited for inside the call, as [`Client::call`] does) and fails it once the
/// connection is closed.
impl<Req, Resp> tower_service::Service<Req> for Client<Req, Resp>
where
    Req: Message + Send + 'static,
    Resp: Message + Send + 'static,
{
    type Response = Resp;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, CallError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        if self.is_alive() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(CallError::ConnectionClosed))
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.call(request).await })
    }
}

/// Serves a `tower::Service` as an rpc [`Service`] of unary calls.
///
/// Each rpc gets a clone of the service, waits for its `poll_ready` and calls it, as tower's
/// `oneshot` does. An error that is a [`Status`] goes back as that status; any other error
/// (a middleware's timeout, overload or the service's own) as [`StatusCode::Internal`] with
/// the error's text. The response's id is set by the server.
pub struct TowerService<S, Req> {
    inner: S,
    _requests: PhantomData<fn(Req)>,
}

impl<S: Clone, Req> Clone for TowerService<S, Req> {
    fn clone(&self) -> Self {
        TowerService::new(self.inner.clone())
    }
}

impl<S: fmt::Debug, Req> fmt::Debug for TowerService<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerService")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, Req> TowerService<S, Req> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        TowerService {
            inner,
            _requests: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service for TowerService<S, Req>
where
    S: tower_service::Service<Req> + Clone,
    S::Response: Message,
    S::Error: Into<BoxError>,
    Req: Message,
{
    type Request = Req;
    type Response = S::Response;
    type Unary = Oneshot<S, Req>;
    type Stream = futures_util::stream::Empty<Result<S::Response, Status>>;

    fn call(&mut self, request: Req, _: &mut CallContext<Req>) -> Reply<Self::Unary, Self::Stream> {
        Reply::Unary(Oneshot {
            state: State::Waiting(self.inner.clone(), Some(request)),
        })
    }
}

/// One rpc on a [`TowerService`]: waits for the service to be ready, then calls it.
pub struct Oneshot<S: tower_service::Service<Req>, Req> {
    state: State<S, Req>,
}

impl<S: tower_service::Service<Req>, Req> fmt::Debug for Oneshot<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Waiting(..) => "Oneshot(waiting for the service)",
            State::Called(_) => "Oneshot(called)",
        })
    }
}

enum State<S: tower_service::Service<Req>, Req> {
    Waiting(S, Option<Req>),
    Called(Pin<Box<S::Future>>),
}

impl<S, Req> Future for Oneshot<S, Req>
where
    S: tower_service::Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Waiting(service, request) => {
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(to_status(e.into())));
                    }
                    let Some(request) = request.take() else {
                        return Poll::Ready(Err(Status::new(
                            StatusCode::Internal,
                            "polled after completion",
                        )));
                    };
                    this.state = State::Called(Box::pin(service.call(request)));
                }
                State::Called(future) => {
                    return future.as_mut().poll(cx).map_err(|e| to_status(e.into()));
                }
            }
        }
    }
}

// Nothing of a `Oneshot` is pinned in place: the service and request move by value and the
// called future is boxed.
impl<S: tower_service::Service<Req>, Req> Unpin for Oneshot<S, Req> {}

fn to_status(error: BoxError) -> Status {
    match error.downcast::<Status>() {
        Ok(status) => *status,
        Err(other) => Status::new(StatusCode::Internal, other.to_string()),
    }
}
