//! A reconnecting pool of client connections with keyed selection.

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use super::client::{CallError, Client};
use super::message::Message;

/// Why the pool could not hand out a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Connecting failed.
    #[error("connecting failed: {0}")]
    Connect(#[source] std::io::Error),
    /// A call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A fixed number of connection slots; each slot holds one [`Client`] and reconnects it on
/// demand when it is gone. A key picks the slot, so calls with the same key share a connection
/// (and its ordering) while different keys spread over the connections.
///
/// `connect` makes a new client; it is called at most once at a time per slot.
pub struct Pool<Req, Resp, F> {
    slots: Vec<Slot<Req, Resp>>,
    connect: F,
    hasher: std::collections::hash_map::RandomState,
}

struct Slot<Req, Resp> {
    client: Mutex<Option<Client<Req, Resp>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl<Req, Resp, F> std::fmt::Debug for Pool<Req, Resp, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slots", &self.slots.len())
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
                    client: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                })
                .collect(),
            connect,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Connection slots.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The client of the slot `key` selects, reconnecting it if it is gone.
    ///
    /// # Errors
    /// [`PoolError::Connect`] when a new connection is needed and cannot be made.
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
        if let Some(c) = alive(slot) {
            return Ok(c);
        }
        let _connecting = slot.connecting.lock().await;
        // Someone else may have reconnected while we waited.
        if let Some(c) = alive(slot) {
            return Ok(c);
        }
        let client = (self.connect)().await.map_err(PoolError::Connect)?;
        if let Ok(mut guard) = slot.client.lock() {
            *guard = Some(client.clone());
        }
        Ok(client)
    }

    /// A unary call on the connection `key` selects.
    ///
    /// # Errors
    /// [`PoolError::Connect`] or the call's [`CallError`].
    pub async fn call<K: Hash + ?Sized>(&self, key: &K, request: Req) -> Result<Resp, PoolError> {
        let client = self.client(key).await?;
        Ok(client.call(request).await?)
    }
}

fn alive<Req, Resp>(slot: &Slot<Req, Resp>) -> Option<Client<Req, Resp>> {
    let guard = slot.client.lock().ok()?;
    guard.as_ref().filter(|c| c.is_alive()).cloned()
}
