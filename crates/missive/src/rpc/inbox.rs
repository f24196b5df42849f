//! The queue from a client's handles to its connection driver: one lock per command, and the
//! driver takes every queued command at once per wake-up.
//!
//! It has no capacity of its own because its users bound it by construction (see
//! `client::Command`): every command either holds a permit that only the driver gives back, or
//! is sent at most once per handle that the caller holds.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

struct State<T> {
    queue: Vec<T>,
    /// The driver's waker, taken by the first command after the driver found the queue empty.
    waker: Option<Waker>,
    /// Live [`Sender`]s; none left and nothing queued ends the driver's commands.
    senders: usize,
    /// The driver is gone or failed: commands are refused.
    closed: bool,
}

struct Inbox<T> {
    state: Mutex<State<T>>,
}

impl<T> Inbox<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned lock still holds a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A queue with one sender and its receiver.
pub(crate) fn inbox<T>() -> (Sender<T>, Receiver<T>) {
    let inbox = Arc::new(Inbox {
        state: Mutex::new(State {
            queue: Vec::new(),
            waker: None,
            senders: 1,
            closed: false,
        }),
    });
    (
        Sender {
            inbox: inbox.clone(),
        },
        Receiver { inbox },
    )
}

/// The handles' end. Cloning adds a sender.
pub(crate) struct Sender<T> {
    inbox: Arc<Inbox<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` and wakes the driver if it waits; gives it back when the driver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = self.inbox.lock();
            if state.closed {
                return Err(item);
            }
            state.queue.push(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the driver is gone or failed.
    pub(crate) fn is_closed(&self) -> bool {
        self.inbox.lock().closed
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.inbox.lock().senders += 1;
        Self {
            inbox: self.inbox.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.inbox.lock();
            state.senders = state.senders.saturating_sub(1);
            if state.senders == 0 {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The driver's end. Dropping it closes the queue.
pub(crate) struct Receiver<T> {
    inbox: Arc<Inbox<T>>,
}

impl<T> Receiver<T> {
    /// Moves every queued command into `out` (which must be empty, so that its allocation is
    /// swapped in and reused): `Ready(true)` when some were taken, `Ready(false)` when every
    /// sender is gone and nothing is queued, `Pending` otherwise (the task is woken by the next
    /// command or the last sender's drop).
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>, out: &mut Vec<T>) -> Poll<bool> {
        let mut state = self.inbox.lock();
        if !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, out);
            return Poll::Ready(true);
        }
        if state.senders == 0 || state.closed {
            return Poll::Ready(false);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Refuses further commands and drops the queued ones.
    pub(crate) fn close(&self) {
        let queued = {
            let mut state = self.inbox.lock();
            state.closed = true;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: commands hold completions whose drop wakes callers.
        drop(queued);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn commands_are_drained_in_order_and_the_first_one_wakes_the_driver() {
        let (tx, rx) = inbox::<u32>();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert_eq!(rx.poll_drain(&mut cx, &mut out), Poll::Pending);
        for i in 0..5 {
            tx.send(i).expect("open");
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_drain(&mut cx, &mut out), Poll::Ready(true));
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_last_sender_ends_the_queue_after_its_commands() {
        let (tx, rx) = inbox::<u32>();
        let tx2 = tx.clone();
        tx.send(1).expect("open");
        drop(tx);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        assert_eq!(rx.poll_drain(&mut cx, &mut out), Poll::Ready(true));
        out.clear();
        assert_eq!(rx.poll_drain(&mut cx, &mut out), Poll::Pending);
        drop(tx2);
        assert_eq!(rx.poll_drain(&mut cx, &mut out), Poll::Ready(false));
    }

    #[test]
    fn a_closed_queue_refuses_commands() {
        let (tx, rx) = inbox::<u32>();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(7), Err(7));
    }
}
