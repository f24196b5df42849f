//! The client's call table, without I/O: wire ids → pending completions.
//!
//! Every call has a `key` unique for the life of the client (its handle uses it to cancel) and a
//! wire id. Library-chosen ids equal the key unless that id is taken by a caller-chosen id in
//! flight, in which case the table picks a free one and remembers the alias; caller-chosen ids
//! that are already in flight are refused.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Entry_;
use std::hash::{BuildHasher, Hasher};

use tokio::time::Instant;

use super::message::{ControlCode, Message};

/// A map keyed by ids that cheaply mixes a per-table secret into the id.
pub(crate) type IdMap<V> = HashMap<u64, V, IdHasherBuilder>;

/// Builds [`IdHasher`]s with a per-table random seed (ids may come from the peer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdHasherBuilder(u64);

impl Default for IdHasherBuilder {
    fn default() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6d69_7373_6976_6500);
        Self(h.finish() | 1)
    }
}

impl BuildHasher for IdHasherBuilder {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0, 0)
    }
}

/// A multiply-rotate hasher for `u64` ids.
#[derive(Debug)]
pub(crate) struct IdHasher(u64, u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let x = (self.1 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29) ^ self.0.rotate_left(17)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.1 = (self.1.rotate_left(8)) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.1 = i;
    }
}

/// What the driver does with a response after the table looked at it.
#[derive(Debug)]
pub(crate) enum Delivery<C, R> {
    /// Hand `R` to completion `C` (a unary call, now removed).
    Deliver {
        /// The call's completion.
        completion: C,
        /// The response.
        response: R,
    },
    /// The stream ended: the completion is dropped (the consumer sees the end).
    Ended(C),
    /// The server cancelled or failed the call.
    Cancelled(C, R),
    /// An item for streaming call: deliver it through [`ClientCalls::stream`].
    StreamItem(R),
    /// No call with this id is in flight (late answer to a cancelled call): ignored.
    Unknown,
}

/// Whether a completion takes one response or many.
pub(crate) trait CompletionKind {
    /// A stream takes many responses until End.
    fn is_stream(&self) -> bool;
}

#[derive(Debug)]
struct Entry<C> {
    key: u64,
    completion: C,
    expiry: Option<Instant>,
}

/// The client's calls in flight.
#[derive(Debug)]
pub(crate) struct ClientCalls<C> {
    calls: IdMap<Entry<C>>,
    aliases: HashMap<u64, u64>,
    next_alias: u64,
}

/// A caller-chosen id is already in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DuplicateId(pub(crate) u64);

impl<C: CompletionKind> ClientCalls<C> {
    pub(crate) fn new() -> Self {
        Self {
            calls: IdMap::default(),
            aliases: HashMap::new(),
            next_alias: u64::MAX,
        }
    }

    /// Calls in flight.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Registers a call. `caller_id` is the id the caller chose, or `None` for a library id
    /// (then the key is used when free). Returns the wire id.
    #[cfg(test)]
    pub(crate) fn register(
        &mut self,
        key: u64,
        caller_id: Option<u64>,
        completion: C,
    ) -> Result<u64, (DuplicateId, C)> {
        self.register_until(key, caller_id, completion, None)
    }

    /// As `register`, for a call that expires at `expiry` (see [`ClientCalls::expire`]).
    pub(crate) fn register_until(
        &mut self,
        key: u64,
        caller_id: Option<u64>,
        completion: C,
        expiry: Option<Instant>,
    ) -> Result<u64, (DuplicateId, C)> {
        let id = match caller_id {
            Some(id) => {
                if self.calls.contains_key(&id) {
                    return Err((DuplicateId(id), completion));
                }
                id
            }
            None if !self.calls.contains_key(&key) => key,
            None => {
                // Rare: a caller-chosen id occupies our key. Take free ids from the top.
                while self.calls.contains_key(&self.next_alias) {
                    self.next_alias = self.next_alias.wrapping_sub(1);
                }
                let id = self.next_alias;
                self.next_alias = self.next_alias.wrapping_sub(1);
                self.aliases.insert(key, id);
                id
            }
        };
        self.calls.insert(
            id,
            Entry {
                key,
                completion,
                expiry,
            },
        );
        Ok(id)
    }

    /// Removes every call whose expiry is at or before `now` into `expired` (wire id and
    /// completion), and returns the earliest expiry still pending. O(calls in flight); the
    /// driver runs it only when its single timer fires.
    pub(crate) fn expire(&mut self, now: Instant, expired: &mut Vec<(u64, C)>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut due = Vec::new();
        for (&id, e) in &self.calls {
            match e.expiry {
                Some(t) if t <= now => due.push(id),
                Some(t) => next = Some(next.map_or(t, |n| n.min(t))),
                None => {}
            }
        }
        for id in due {
            if let Some(e) = self.remove(id) {
                expired.push((id, e.completion));
            }
        }
        next
    }

    /// The wire id of the call `key` if it is still in flight.
    pub(crate) fn wire_id(&self, key: u64, id: u64) -> Option<u64> {
        let id = match self.calls.get(&id) {
            Some(e) if e.key == key => return Some(id),
            _ => *self.aliases.get(&key)?,
        };
        self.calls.get(&id).filter(|e| e.key == key).map(|_| id)
    }

    /// Forgets call `key` (its handle was dropped). Returns the wire id to send Cancel for.
    pub(crate) fn cancel(&mut self, key: u64, id: u64) -> Option<u64> {
        let id = self.wire_id(key, id)?;
        self.remove(id);
        Some(id)
    }

    /// Removes call `key` and returns its wire id and completion.
    pub(crate) fn take(&mut self, key: u64, id: u64) -> Option<(u64, C)> {
        let id = self.wire_id(key, id)?;
        self.remove(id).map(|e| (id, e.completion))
    }

    fn remove(&mut self, id: u64) -> Option<Entry<C>> {
        let e = self.calls.remove(&id)?;
        if e.key != id && !self.aliases.is_empty() {
            self.aliases.remove(&e.key);
        }
        Some(e)
    }

    /// Routes a response from the server.
    pub(crate) fn on_response<R: Message>(&mut self, response: R) -> Delivery<C, R> {
        let id = response.message_id();
        match response.control_code() {
            ControlCode::Normal => match self.calls.entry(id) {
                Entry_::Occupied(e) if e.get().completion.is_stream() => {
                    Delivery::StreamItem(response)
                }
                Entry_::Occupied(e) => {
                    let e = e.remove();
                    if e.key != id && !self.aliases.is_empty() {
                        self.aliases.remove(&e.key);
                    }
                    Delivery::Deliver {
                        completion: e.completion,
                        response,
                    }
                }
                Entry_::Vacant(_) => Delivery::Unknown,
            },
            ControlCode::End => match self.remove(id) {
                Some(e) => Delivery::Ended(e.completion),
                None => Delivery::Unknown,
            },
            ControlCode::Cancel => match self.remove(id) {
                Some(e) => Delivery::Cancelled(e.completion, response),
                None => Delivery::Unknown,
            },
        }
    }

    /// The key and completion of streaming call `id`, for delivering one item without removing
    /// it.
    pub(crate) fn stream(&mut self, id: u64) -> Option<(u64, &mut C)> {
        self.calls
            .get_mut(&id)
            .map(|e| (e.key, &mut e.completion))
            .filter(|(_, c)| c.is_stream())
    }

    /// Removes every call (the connection is gone).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = C> + '_ {
        self.aliases.clear();
        self.calls.drain().map(|(_, e)| e.completion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::message::Status;

    #[derive(Debug, PartialEq)]
    struct M {
        id: u64,
        code: u8,
    }
    impl Message for M {
        fn message_id(&self) -> u64 {
            self.id
        }
        fn control_code(&self) -> ControlCode {
            ControlCode::from_u8(self.code)
        }
        fn set_message_id(&mut self, id: u64) {
            self.id = id;
        }
        fn cancelled(id: u64) -> Self {
            M { id, code: 1 }
        }
        fn ended(id: u64) -> Self {
            M { id, code: 2 }
        }
        fn failed(id: u64, _: Status) -> Self {
            M { id, code: 1 }
        }
    }
    #[derive(Debug, PartialEq)]
    struct C(bool, u32);
    impl CompletionKind for C {
        fn is_stream(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn library_ids_equal_keys_and_responses_complete_them() {
        let mut t = ClientCalls::new();
        assert_eq!(t.register(7, None, C(false, 1)), Ok(7));
        match t.on_response(M { id: 7, code: 0 }) {
            Delivery::Deliver { completion, .. } => {
                assert_eq!(completion, C(false, 1));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn duplicate_caller_id_in_flight_is_refused() {
        let mut t = ClientCalls::new();
        assert_eq!(t.register(1, Some(42), C(false, 1)), Ok(42));
        assert!(matches!(
            t.register(2, Some(42), C(false, 2)),
            Err((DuplicateId(42), C(false, 2)))
        ));
        // After it completes the id is free again.
        assert!(matches!(
            t.on_response(M { id: 42, code: 0 }),
            Delivery::Deliver { .. }
        ));
        assert_eq!(t.register(3, Some(42), C(false, 3)), Ok(42));
    }

    #[test]
    fn library_id_colliding_with_caller_id_gets_an_alias() {
        let mut t = ClientCalls::new();
        assert_eq!(t.register(1, Some(5), C(false, 1)), Ok(5));
        let id = t.register(5, None, C(false, 2)).expect("alias");
        assert_ne!(id, 5);
        assert_eq!(t.wire_id(5, 5), Some(id));
        // Cancelling the library call by its key removes the aliased entry only.
        assert_eq!(t.cancel(5, 5), Some(id));
        assert_eq!(t.len(), 1);
        assert_eq!(t.wire_id(1, 5), Some(5));
    }

    #[test]
    fn cancel_of_a_finished_call_is_ignored() {
        let mut t = ClientCalls::new();
        t.register(9, None, C(false, 1)).expect("register");
        assert!(matches!(
            t.on_response(M { id: 9, code: 0 }),
            Delivery::Deliver { .. }
        ));
        assert_eq!(t.cancel(9, 9), None);
        // A stale cancel must not hit a later call that reuses the id with another key.
        t.register(10, Some(9), C(false, 2)).expect("register");
        assert_eq!(t.cancel(9, 9), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expired_calls_are_removed_and_the_next_expiry_reported() {
        let mut t = ClientCalls::new();
        let now = Instant::now();
        let s = std::time::Duration::from_secs(1);
        t.register_until(1, None, C(false, 1), Some(now + s))
            .expect("register");
        t.register_until(2, None, C(false, 2), Some(now + 3 * s))
            .expect("register");
        t.register_until(3, None, C(false, 3), None)
            .expect("register");
        let mut out = Vec::new();
        assert_eq!(t.expire(now, &mut out), Some(now + s));
        assert!(out.is_empty());
        assert_eq!(t.expire(now + 2 * s, &mut out), Some(now + 3 * s));
        assert_eq!(out, vec![(1, C(false, 1))]);
        out.clear();
        assert_eq!(t.expire(now + 9 * s, &mut out), None);
        assert_eq!(out, vec![(2, C(false, 2))]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn streams_stay_until_end_or_cancel() {
        let mut t = ClientCalls::new();
        t.register(1, None, C(true, 1)).expect("register");
        assert!(t.stream(1).is_some());
        assert!(matches!(
            t.on_response(M { id: 1, code: 0 }),
            Delivery::StreamItem(M { id: 1, code: 0 })
        ));
        assert!(matches!(
            t.on_response(M { id: 1, code: 2 }),
            Delivery::Ended(C(true, 1))
        ));
        assert!(t.stream(1).is_none());
        t.register(2, None, C(true, 2)).expect("register");
        assert!(matches!(
            t.on_response(M { id: 2, code: 9 }),
            Delivery::Cancelled(C(true, 2), _)
        ));
        assert!(matches!(
            t.on_response(M { id: 2, code: 1 }),
            Delivery::Unknown
        ));
    }
}
