//! In-flight counting: request-response streams per connection and requests per peer.
//!
//! Plain counters under one lock; a guard gives its slot back when dropped. Outbound requests
//! waiting for a per-peer slot are woken through a [`Notify`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::p2p::{ConnectionId, PeerId};

/// Which counter a slot was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Connection(ConnectionId),
    Outbound(PeerId),
    Inbound(PeerId),
}

/// The counters and limits of one behaviour.
#[derive(Debug)]
pub(crate) struct Limits {
    per_connection: usize,
    per_peer: usize,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashMap<Slot, usize>,
    overrides: HashMap<PeerId, usize>,
}

impl Limits {
    pub(crate) fn new(
        per_connection: usize,
        per_peer: usize,
        overrides: HashMap<PeerId, usize>,
    ) -> Self {
        Self {
            per_connection,
            per_peer,
            state: Mutex::new(State {
                in_flight: HashMap::new(),
                overrides,
            }),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or with `None` removes) the per-peer override of `peer`.
    pub(crate) fn set_peer_limit(&self, peer: PeerId, limit: Option<usize>) {
        let mut st = self.lock();
        match limit {
            Some(n) => st.overrides.insert(peer, n.max(1)),
            None => st.overrides.remove(&peer),
        };
        drop(st);
        self.freed.notify_waiters();
    }

    /// A stream slot on `connection`, if one is free.
    pub(crate) fn try_connection(self: &Arc<Self>, connection: ConnectionId) -> Option<SlotGuard> {
        self.try_take(Slot::Connection(connection), self.per_connection)
    }

    /// An inbound request slot for `peer`, if one is free.
    pub(crate) fn try_inbound(self: &Arc<Self>, peer: PeerId) -> Option<SlotGuard> {
        let limit = self.peer_limit(peer);
        self.try_take(Slot::Inbound(peer), limit)
    }

    /// An outbound request slot for `peer`, if one is free.
    pub(crate) fn try_outbound(self: &Arc<Self>, peer: PeerId) -> Option<SlotGuard> {
        let limit = self.peer_limit(peer);
        self.try_take(Slot::Outbound(peer), limit)
    }

    /// Waits for an outbound request slot for `peer`.
    ///
    /// # Cancel safety
    /// Dropping the future takes no slot.
    pub(crate) async fn outbound(self: &Arc<Self>, peer: PeerId) -> SlotGuard {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(g) = self.try_outbound(peer) {
                return g;
            }
            freed.await;
        }
    }

    fn peer_limit(&self, peer: PeerId) -> usize {
        self.lock()
            .overrides
            .get(&peer)
            .copied()
            .unwrap_or(self.per_peer)
    }

    fn try_take(self: &Arc<Self>, slot: Slot, limit: usize) -> Option<SlotGuard> {
        let mut st = self.lock();
        let n = st.in_flight.entry(slot).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                st.in_flight.remove(&slot);
            }
            return None;
        }
        *n += 1;
        Some(SlotGuard {
            limits: self.clone(),
            slot,
        })
    }
}

/// One taken slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    limits: Arc<Limits>,
    slot: Slot,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut st = self.limits.lock();
        if let Some(n) = st.in_flight.get_mut(&self.slot) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.in_flight.remove(&self.slot);
            }
        }
        drop(st);
        if matches!(self.slot, Slot::Outbound(_)) {
            self.limits.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::Keypair;

    #[test]
    fn a_peer_override_replaces_the_default_and_slots_come_back() {
        let a = Keypair::generate().peer_id();
        let b = Keypair::generate().peer_id();
        let limits = Arc::new(Limits::new(10, 2, HashMap::from([(b, 1)])));
        let a1 = limits.try_outbound(a).expect("first");
        let _a2 = limits.try_outbound(a).expect("second");
        assert!(limits.try_outbound(a).is_none(), "default of 2");
        let _b1 = limits.try_outbound(b).expect("first of b");
        assert!(limits.try_outbound(b).is_none(), "override of 1");
        assert!(limits.try_inbound(b).is_some(), "directions counted apart");
        drop(a1);
        assert!(limits.try_outbound(a).is_some(), "slot given back");
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_slot_freed_by_another() {
        let a = Keypair::generate().peer_id();
        let limits = Arc::new(Limits::new(10, 1, HashMap::new()));
        let first = limits.try_outbound(a).expect("first");
        let l2 = limits.clone();
        let waiter = tokio::spawn(async move { l2.outbound(a).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let _second = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
    }
}
