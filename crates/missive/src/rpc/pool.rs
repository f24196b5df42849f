//! A reconnecting pool of client connections with keyed selection.
//!
//! ```
//! # #[cfg(feature = "prost")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::rpc::echo::{self, EchoService, Request};
//! use missive::rpc::pool::Pool;
//! use missive::rpc::{Client, ClientConfig, Server};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let server = Server::default();
//! tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve_tcp(listener, |_| (echo::ServerCodec::default(), EchoService)).await }
//! });
//!
//! // Two connections, dialed when first needed and again after one dies.
//! let pool = Pool::new(2, move || {
//!     Client::connect_tcp(addr, echo::ClientCodec::default(), ClientConfig::default())
//! });
//! // A key always picks the same connection while it lives.
//! let response = pool.call("user-42", Request::unary("hi")).await?;
//! assert_eq!(&response.body[..], b"hi");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "prost"))]
//! # fn main() {}
//! ```

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::client::{CallError, Client};
use super::message::Message;

/// Why the pool could not hand out a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Connecting failed.
    #[error("connecting failed: {0}")]
    Connect(#[source] std::io::Error),
    /// Connecting did not finish within the pool's connect deadline.
    #[error("connecting did not finish within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// A call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A fixed number of connection slots; each slot holds one [`Client`] and reconnects it on
/// demand when it is gone. A key picks the slot, so calls with the same key share a connection
/// (and its ordering) while different keys spread over the connections.
///
/// `connect` makes a new client; it is called at most once at a time per slot, and no lock is
/// held while it runs. Callers that find a slot connecting share that dial and its deadline
/// ([`Pool::with_connect_timeout`], 10 s by default): a dial that hangs fails all of them once,
/// at the deadline, and the next caller dials again. When the caller running a dial gives up
/// (its future is dropped), a waiting caller takes the dial over at once.
pub struct Pool<Req, Resp, F> {
    slots: Vec<Slot<Req, Resp>>,
    connect: F,
    connect_timeout: Duration,
    hasher: std::collections::hash_map::RandomState,
}

struct Slot<Req, Resp> {
    state: Mutex<SlotState<Req, Resp>>,
    /// Woken when a dial of this slot ends, whichever way.
    dialed: Notify,
}

struct SlotState<Req, Resp> {
    client: Option<Client<Req, Resp>>,
    /// The dial under way, if any (its number).
    dialing: Option<u64>,
    /// Dials started so far.
    dials: u64,
    /// How the last failed dial failed: its number, and the error to give its waiters.
    failed: Option<(u64, Failure)>,
}

/// A failed dial, for every caller that waited on it (`io::Error` cannot be cloned).
#[derive(Debug, Clone)]
enum Failure {
    Io(std::io::ErrorKind, String),
    Timeout(Duration),
}

impl Failure {
    fn error(&self) -> PoolError {
        match self {
            Self::Io(kind, message) => {
                PoolError::Connect(std::io::Error::new(*kind, message.clone()))
            }
            Self::Timeout(d) => PoolError::ConnectTimeout(*d),
        }
    }
}

impl<Req, Resp, F> std::fmt::Debug for Pool<Req, Resp, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slots", &self.slots.len())
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp, F, Fut> Pool<Req, Resp, F>
where
    Req: Message,
    Resp: Message,
    F: Fn() -> Fut,
    Fut: Future<Output = std::io::Result<Client<Req, Resp>>>,
{
    /// A pool of `size` connections (at least one), made by `connect` when first needed.
    pub fn new(size: usize, connect: F) -> Self {
        Self {
            slots: (0..size.max(1))
                .map(|_| Slot {
                    state: Mutex::new(SlotState {
                        client: None,
                        dialing: None,
                        dials: 0,
                        failed: None,
                    }),
                    dialed: Notify::new(),
                })
                .collect(),
            connect,
            connect_timeout: crate::transport::DEFAULT_CONNECT_TIMEOUT,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// How long one dial of a slot may take, for every caller waiting on it (default 10 s);
    /// past it they get [`PoolError::ConnectTimeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connection slots.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The client of the slot `key` selects, reconnecting it if it is gone.
    ///
    /// # Errors
    /// [`PoolError::Connect`] when a new connection is needed and cannot be made;
    /// [`PoolError::ConnectTimeout`] when it is not made within the connect deadline.
    pub async fn client<K: Hash + ?Sized>(&self, key: &K) -> Result<Client<Req, Resp>, PoolError> {
        let index = (self.hasher.hash_one(key) % self.slots.len() as u64) as usize;
        self.client_at(index).await
    }

    /// The client of slot `index % size`, reconnecting it if it is gone.
    ///
    /// # Errors
    /// As [`Pool::client`].
    pub async fn client_at(&self, index: usize) -> Result<Client<Req, Resp>, PoolError> {
        let Some(slot) = self.slots.get(index % self.slots.len()) else {
            return Err(PoolError::Call(CallError::ConnectionClosed));
        };
        // Each round either returns, runs a dial, or waits for the dial under way to end.
        // Rounds are bounded by the dials that end meanwhile, each within the deadline.
        loop {
            let dialed = slot.dialed.notified();
            tokio::pin!(dialed);
            // Registered before the state is read, so the end of the dial is never missed.
            dialed.as_mut().enable();
            let step = next_step(&mut lock(slot));
            match step {
                Step::Ready(client) => return Ok(client),
                Step::Dial(dial) => return self.dial(slot, dial).await,
                Step::Wait(dial) => {
                    dialed.await;
                    let outcome = outcome_of(&lock(slot), dial);
                    if let Some(outcome) = outcome {
                        return outcome;
                    }
                    // The dialing caller gave up: take the dial over (or join a newer one).
                }
            }
        }
    }

    /// Runs dial number `dial` of `slot` and publishes its outcome to the callers waiting on it.
    async fn dial(
        &self,
        slot: &Slot<Req, Resp>,
        dial: u64,
    ) -> Result<Client<Req, Resp>, PoolError> {
        /// Ends the dial however this future ends (a dropped caller hands the dial over).
        struct Dialing<'a, Req, Resp>(&'a Slot<Req, Resp>, u64);
        impl<Req, Resp> Drop for Dialing<'_, Req, Resp> {
            fn drop(&mut self) {
                let mut state = lock(self.0);
                if state.dialing == Some(self.1) {
                    state.dialing = None;
                }
                drop(state);
                self.0.dialed.notify_waiters();
            }
        }
        let _dialing = Dialing(slot, dial);
        let outcome = match tokio::time::timeout(self.connect_timeout, (self.connect)()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(Failure::Io(e.kind(), e.to_string())),
            Err(_) => Err(Failure::Timeout(self.connect_timeout)),
        };
        let mut state = lock(slot);
        match outcome {
            Ok(client) => {
                state.client = Some(client.clone());
                Ok(client)
            }
            Err(failure) => {
                let error = failure.error();
                state.failed = Some((dial, failure));
                Err(error)
            }
        }
    }

    /// A unary call on the connection `key` selects.
    ///
    /// # Errors
    /// [`PoolError::Connect`], [`PoolError::ConnectTimeout`] or the call's [`CallError`].
    pub async fn call<K: Hash + ?Sized>(&self, key: &K, request: Req) -> Result<Resp, PoolError> {
        let client = self.client(key).await?;
        Ok(client.call(request).await?)
    }
}

/// What a caller of a slot does next.
enum Step<Req, Resp> {
    Ready(Client<Req, Resp>),
    /// Run dial number `n`.
    Dial(u64),
    /// Wait for dial number `n`, under way.
    Wait(u64),
}

fn next_step<Req, Resp>(state: &mut SlotState<Req, Resp>) -> Step<Req, Resp> {
    if let Some(c) = state.client.as_ref().filter(|c| c.is_alive()) {
        return Step::Ready(c.clone());
    }
    match state.dialing {
        Some(dial) => Step::Wait(dial),
        None => {
            state.dials += 1;
            state.dialing = Some(state.dials);
            Step::Dial(state.dials)
        }
    }
}

/// The outcome of dial `dial` for a caller that waited on it: `None` when it was abandoned.
fn outcome_of<Req, Resp>(
    state: &SlotState<Req, Resp>,
    dial: u64,
) -> Option<Result<Client<Req, Resp>, PoolError>> {
    if let Some(c) = state.client.as_ref().filter(|c| c.is_alive()) {
        return Some(Ok(c.clone()));
    }
    match &state.failed {
        Some((failed, failure)) if *failed == dial => Some(Err(failure.error())),
        _ => None,
    }
}

/// The slot's state; never held across an await. A panic while it was held leaves nothing
/// half-done that a later caller could trip on, so a poisoned lock is used as it is.
fn lock<Req, Resp>(slot: &Slot<Req, Resp>) -> std::sync::MutexGuard<'_, SlotState<Req, Resp>> {
    slot.state.lock().unwrap_or_else(|e| e.into_inner())
}
