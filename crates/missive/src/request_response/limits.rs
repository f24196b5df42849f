//! In-flight counting: request-response streams per connection and requests per peer.
//!
//! Plain counters under one lock; a guard gives its slot back when dropped. Outbound requests
//! waiting for a per-peer slot queue per peer: a freed slot goes straight to the first one
//! still waiting, so waiters are served in order and no newcomer overtakes them, and a release
//! wakes only the one waiter it serves.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

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
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashMap<Slot, usize>,
    overrides: HashMap<PeerId, usize>,
    /// Outbound requests waiting for a slot of their peer, in arrival order. A send hands a
    /// slot over (already counted).
    waiters: HashMap<PeerId, VecDeque<oneshot::Sender<()>>>,
}

impl State {
    fn peer_limit(&self, peer: PeerId, default: usize) -> usize {
        self.overrides.get(&peer).copied().unwrap_or(default)
    }

    /// Whether requests to `peer` wait in line (those that gave up are removed first).
    fn has_waiters(&mut self, peer: PeerId) -> bool {
        let Some(queue) = self.waiters.get_mut(&peer) else {
            return false;
        };
        queue.retain(|tx| !tx.is_closed());
        if queue.is_empty() {
            self.waiters.remove(&peer);
            return false;
        }
        true
    }

    /// Hands a counted slot of `peer` to its first live waiter; `false` when none is waiting.
    fn hand_over(&mut self, peer: PeerId) -> bool {
        let Some(queue) = self.waiters.get_mut(&peer) else {
            return false;
        };
        let mut served = false;
        while let Some(tx) = queue.pop_front() {
            if tx.send(()).is_ok() {
                served = true;
                break;
            }
        }
        if queue.is_empty() {
            self.waiters.remove(&peer);
        }
        served
    }
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
                overrides,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or with `None` removes) the per-peer override of `peer`. A raised limit serves
    /// waiters at once.
    pub(crate) fn set_peer_limit(&self, peer: PeerId, limit: Option<usize>) {
        let mut st = self.lock();
        match limit {
            Some(n) => st.overrides.insert(peer, n.max(1)),
            None => st.overrides.remove(&peer),
        };
        let limit = st.peer_limit(peer, self.per_peer);
        let slot = Slot::Outbound(peer);
        while st.in_flight.get(&slot).copied().unwrap_or(0) < limit {
            // Count first: the waiter owns the slot from the moment it is sent.
            *st.in_flight.entry(slot).or_insert(0) += 1;
            if !st.hand_over(peer) {
                st.release_count(slot);
                break;
            }
        }
    }

    /// A stream slot on `connection`, if one is free.
    pub(crate) fn try_connection(self: &Arc<Self>, connection: ConnectionId) -> Option<SlotGuard> {
        let mut st = self.lock();
        self.try_take(&mut st, Slot::Connection(connection), self.per_connection)
    }

    /// An inbound request slot for `peer`, if one is free.
    pub(crate) fn try_inbound(self: &Arc<Self>, peer: PeerId) -> Option<SlotGuard> {
        let mut st = self.lock();
        let limit = st.peer_limit(peer, self.per_peer);
        self.try_take(&mut st, Slot::Inbound(peer), limit)
    }

    /// An outbound request slot for `peer`, if one is free and nobody waits for one.
    pub(crate) fn try_outbound(self: &Arc<Self>, peer: PeerId) -> Option<SlotGuard> {
        let mut st = self.lock();
        if st.has_waiters(peer) {
            return None;
        }
        let limit = st.peer_limit(peer, self.per_peer);
        self.try_take(&mut st, Slot::Outbound(peer), limit)
    }

    /// Waits, in line behind earlier waiters, for an outbound request slot for `peer`.
    ///
    /// # Cancel safety
    /// Dropping the future takes no slot: one handed over meanwhile goes on to the next waiter.
    pub(crate) async fn outbound(self: &Arc<Self>, peer: PeerId) -> SlotGuard {
        loop {
            let rx = {
                let mut st = self.lock();
                if !st.has_waiters(peer) {
                    let limit = st.peer_limit(peer, self.per_peer);
                    if let Some(g) = self.try_take(&mut st, Slot::Outbound(peer), limit) {
                        return g;
                    }
                }
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(peer).or_default().push_back(tx);
                rx
            };
            let mut waiting = Waiting {
                limits: self.clone(),
                peer,
                rx: Some(rx),
            };
            let handed = match waiting.rx.as_mut() {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            waiting.rx = None;
            if handed {
                return SlotGuard {
                    limits: self.clone(),
                    slot: Slot::Outbound(peer),
                };
            }
        }
    }

    fn try_take(self: &Arc<Self>, st: &mut State, slot: Slot, limit: usize) -> Option<SlotGuard> {
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

    /// Gives a slot back: to the peer's first waiter if the limit still allows, else to the
    /// count.
    fn release(&self, slot: Slot) {
        let mut st = self.lock();
        // Without waiters (the usual case) the count is all there is: one map lookup.
        if let Slot::Outbound(peer) = slot
            && !st.waiters.is_empty()
        {
            let held = st.in_flight.get(&slot).copied().unwrap_or(0);
            if held <= st.peer_limit(peer, self.per_peer) && st.hand_over(peer) {
                return;
            }
        }
        st.release_count(slot);
    }
}

impl State {
    fn release_count(&mut self, slot: Slot) {
        if let Entry::Occupied(mut n) = self.in_flight.entry(slot) {
            if *n.get() <= 1 {
                n.remove();
            } else {
                *n.get_mut() -= 1;
            }
        }
    }
}

/// A place in a peer's line of waiters. Dropped with a slot handed over but not yet taken, it
/// gives the slot back (and so to the next waiter).
struct Waiting {
    limits: Arc<Limits>,
    peer: PeerId,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.limits.release(Slot::Outbound(self.peer));
            }
        }
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
        self.limits.release(self.slot);
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

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_first_waiter_not_to_a_newcomer() {
        let a = Keypair::generate().peer_id();
        let limits = Arc::new(Limits::new(10, 1, HashMap::new()));
        let first = limits.try_outbound(a).expect("first");
        let l1 = limits.clone();
        let w1 = tokio::spawn(async move { l1.outbound(a).await });
        tokio::task::yield_now().await;
        let l2 = limits.clone();
        let w2 = tokio::spawn(async move { l2.outbound(a).await });
        tokio::task::yield_now().await;
        drop(first);
        assert!(
            limits.try_outbound(a).is_none(),
            "a newcomer took the slot a waiter was promised"
        );
        let g1 = tokio::time::timeout(std::time::Duration::from_secs(5), w1)
            .await
            .expect("the first waiter is served")
            .expect("task");
        tokio::task::yield_now().await;
        assert!(!w2.is_finished(), "the second waiter waits its turn");
        drop(g1);
        let _g2 = tokio::time::timeout(std::time::Duration::from_secs(5), w2)
            .await
            .expect("then the second")
            .expect("task");
    }

    #[tokio::test]
    async fn a_waiter_cancelled_after_its_slot_was_handed_over_passes_it_on() {
        let a = Keypair::generate().peer_id();
        let limits = Arc::new(Limits::new(10, 1, HashMap::new()));
        let first = limits.try_outbound(a).expect("first");
        let l1 = limits.clone();
        let w1 = tokio::spawn(async move { l1.outbound(a).await });
        tokio::task::yield_now().await;
        let l2 = limits.clone();
        let w2 = tokio::spawn(async move { l2.outbound(a).await });
        tokio::task::yield_now().await;
        // The slot goes to `w1`, which is cancelled before it runs again.
        drop(first);
        w1.abort();
        let _g2 = tokio::time::timeout(std::time::Duration::from_secs(5), w2)
            .await
            .expect("the slot reached the next waiter")
            .expect("task");
        assert!(limits.try_outbound(a).is_none(), "one slot, held by w2");
    }
}
