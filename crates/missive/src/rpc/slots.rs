//! Where unary calls wait for their result: one reusable slot per call in a table shared by a
//! client's handles and its driver, instead of one allocated channel per call.
//!
//! A slot is taken when a call starts and given back once both sides are done with it: the
//! driver's [`SlotSender`] (completed or dropped) and the caller's [`SlotReceiver`] (result
//! taken or dropped). Handles carry the slot's generation, so a stale one never touches a slot
//! that was reused.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::client::CallError;

enum State<R> {
    /// Free for the next call.
    Free,
    /// The call is in flight; the caller's waker once it polled.
    Waiting(Option<Waker>),
    /// The result, until the caller takes it.
    Done(Result<R, CallError>),
    /// The caller is gone; the driver's side gives the slot back.
    Abandoned,
}

struct Entry<R> {
    generation: u64,
    state: State<R>,
}

struct Table<R> {
    entries: Vec<Entry<R>>,
    free: Vec<usize>,
}

impl<R> Table<R> {
    fn entry(&mut self, index: usize, generation: u64) -> Option<&mut Entry<R>> {
        self.entries
            .get_mut(index)
            .filter(|e| e.generation == generation)
    }

    /// Gives slot `index` back; returns what it held, to be dropped outside the lock.
    fn release(&mut self, index: usize) -> Option<State<R>> {
        let entry = self.entries.get_mut(index)?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        Some(std::mem::replace(&mut entry.state, State::Free))
    }
}

/// The slots of one client.
pub(crate) struct Slots<R> {
    table: Mutex<Table<R>>,
}

impl<R> std::fmt::Debug for Slots<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots").finish_non_exhaustive()
    }
}

impl<R> Slots<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table {
                entries: Vec::new(),
                free: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table<R>> {
        // Nothing panics while holding the lock; a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a new call: the driver's end and the caller's end.
    pub(crate) fn open(self: &Arc<Self>) -> (SlotSender<R>, SlotReceiver<'_, R>) {
        let (index, generation) = {
            let mut table = self.lock();
            let index = match table.free.pop() {
                Some(index) => index,
                None => {
                    table.entries.push(Entry {
                        generation: 0,
                        state: State::Free,
                    });
                    table.entries.len() - 1
                }
            };
            let generation = match table.entries.get_mut(index) {
                Some(entry) => {
                    entry.state = State::Waiting(None);
                    entry.generation
                }
                None => 0,
            };
            (index, generation)
        };
        (
            SlotSender {
                slots: self.clone(),
                index,
                generation,
                sent: false,
            },
            SlotReceiver {
                slots: self,
                index,
                generation,
                done: false,
            },
        )
    }
}

/// The driver's end of a slot. Dropping it unsent fails the call with
/// [`CallError::ConnectionClosed`].
pub(crate) struct SlotSender<R> {
    slots: Arc<Slots<R>>,
    index: usize,
    generation: u64,
    sent: bool,
}

impl<R> SlotSender<R> {
    /// Completes the call.
    pub(crate) fn send(mut self, result: Result<R, CallError>) {
        self.sent = true;
        self.complete(result);
    }

    fn complete(&mut self, result: Result<R, CallError>) {
        let (waker, dropped) = {
            let mut table = self.slots.lock();
            let Some(entry) = table.entry(self.index, self.generation) else {
                return;
            };
            match std::mem::replace(&mut entry.state, State::Done(result)) {
                State::Waiting(waker) => (waker, None),
                State::Abandoned => (None, table.release(self.index)),
                // Completed twice cannot happen; keep the first result.
                other => (None, Some(std::mem::replace(&mut entry.state, other))),
            }
        };
        drop(dropped);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<R> Drop for SlotSender<R> {
    fn drop(&mut self) {
        if !self.sent {
            self.sent = true;
            self.complete(Err(CallError::ConnectionClosed));
        }
    }
}

/// The caller's end of a slot: resolves to the call's result.
pub(crate) struct SlotReceiver<'a, R> {
    slots: &'a Slots<R>,
    index: usize,
    generation: u64,
    done: bool,
}

impl<R> SlotReceiver<'_, R> {
    /// Gives the slot up before the result was taken. Returns whether the call was still
    /// waiting for its result (so that it should be cancelled on the server).
    pub(crate) fn abandon(&mut self) -> bool {
        if self.done {
            return false;
        }
        self.done = true;
        let (pending, dropped) = {
            let mut table = self.slots.lock();
            let Some(entry) = table.entry(self.index, self.generation) else {
                return false;
            };
            match entry.state {
                State::Waiting(_) => (
                    true,
                    Some(std::mem::replace(&mut entry.state, State::Abandoned)),
                ),
                _ => (false, table.release(self.index)),
            }
        };
        drop(dropped);
        pending
    }
}

impl<R> Future for SlotReceiver<'_, R> {
    type Output = Result<R, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.done {
            return Poll::Ready(Err(CallError::ConnectionClosed));
        }
        let (index, generation) = (self.index, self.generation);
        let mut table = self.slots.lock();
        let Some(entry) = table.entry(index, generation) else {
            drop(table);
            self.done = true;
            return Poll::Ready(Err(CallError::ConnectionClosed));
        };
        match &mut entry.state {
            State::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            State::Done(_) => {
                let result = match table.release(index) {
                    Some(State::Done(result)) => result,
                    _ => Err(CallError::ConnectionClosed),
                };
                drop(table);
                self.done = true;
                Poll::Ready(result)
            }
            State::Free | State::Abandoned => {
                drop(table);
                self.done = true;
                Poll::Ready(Err(CallError::ConnectionClosed))
            }
        }
    }
}

impl<R> Drop for SlotReceiver<'_, R> {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn a_result_reaches_its_caller_and_the_slot_is_reused() {
        let slots = Slots::<u32>::new();
        let (tx, mut rx) = slots.open();
        assert!(poll_once(&mut rx).is_pending());
        tx.send(Ok(7));
        assert!(matches!(poll_once(&mut rx), Poll::Ready(Ok(7))));
        drop(rx);
        let (_tx, _rx) = slots.open();
        assert_eq!(slots.lock().entries.len(), 1);
    }

    #[test]
    fn a_dropped_sender_fails_the_call() {
        let slots = Slots::<u32>::new();
        let (tx, mut rx) = slots.open();
        drop(tx);
        assert!(matches!(
            poll_once(&mut rx),
            Poll::Ready(Err(CallError::ConnectionClosed))
        ));
    }

    #[test]
    fn an_abandoned_slot_is_freed_by_the_sender_and_stale_handles_do_nothing() {
        let slots = Slots::<u32>::new();
        let (tx, mut rx) = slots.open();
        assert!(rx.abandon());
        assert!(slots.lock().free.is_empty());
        tx.send(Ok(1));
        assert_eq!(slots.lock().free.len(), 1);
        // The slot is reused; the old receiver's drop must not touch the new call.
        let (tx2, mut rx2) = slots.open();
        drop(rx);
        tx2.send(Ok(2));
        assert!(matches!(poll_once(&mut rx2), Poll::Ready(Ok(2))));
    }

    #[test]
    fn abandoning_after_the_result_arrived_needs_no_cancel() {
        let slots = Slots::<u32>::new();
        let (tx, mut rx) = slots.open();
        tx.send(Ok(3));
        assert!(!rx.abandon());
        assert_eq!(slots.lock().free.len(), 1);
    }
}
