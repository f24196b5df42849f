//! The event buffer of a [`Behaviour`](super::Behaviour) and [`Events`], its reading end.
//!
//! Protocol work never waits for the application: an event is pushed, never sent with a wait.
//! The buffer keeps the newest [`Config::with_event_capacity`](super::Config::with_event_capacity)
//! events; when a new one does not fit, the oldest is dropped and counted, as a lagging
//! `tokio::sync::broadcast` receiver skips. Once the [`Events`] handle has been taken and
//! dropped, nobody can read events any more and none are kept.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::Event;

/// The shared buffer.
pub(crate) struct EventQueue<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    events: VecDeque<T>,
    dropped: u64,
    reader: Reader,
    waker: Option<Waker>,
    /// No producer is left: the behaviour and all its tasks are gone.
    closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Not taken yet: events are kept for whoever takes them.
    Unclaimed,
    Held,
    /// Taken and dropped: nobody will read again.
    Gone,
}

impl<T> EventQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                events: VecDeque::new(),
                dropped: 0,
                reader: Reader::Unclaimed,
                waker: None,
                closed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `event` without waiting; the oldest event makes room when the buffer is full.
    /// A dropped event is dropped after the lock is released: dropping a request's event drops
    /// its response channel, which fails that request.
    /// Says whether an event was dropped to make room.
    pub(crate) fn push(&self, event: T) -> bool {
        let mut st = self.lock();
        if st.reader == Reader::Gone {
            drop(st);
            drop(event);
            return false;
        }
        let evicted = if st.events.len() >= self.capacity {
            st.dropped += 1;
            st.events.pop_front()
        } else {
            None
        };
        st.events.push_back(event);
        let waker = st.waker.take();
        let dropped = st.dropped;
        drop(st);
        if evicted.is_some() && dropped.is_power_of_two() {
            tracing::warn!(
                dropped,
                "request-response events are not read fast enough; the oldest are dropped"
            );
        }
        let dropped_one = evicted.is_some();
        drop(evicted);
        if let Some(w) = waker {
            w.wake();
        }
        dropped_one
    }

    /// Marks the end of the events: the reader sees `None` once it has read the rest.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Claims the reading end; `false` when it was claimed before.
    fn claim(&self) -> bool {
        let mut st = self.lock();
        if st.reader != Reader::Unclaimed {
            return false;
        }
        st.reader = Reader::Held;
        true
    }

    fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.lock();
        if let Some(e) = st.events.pop_front() {
            return Poll::Ready(Some(e));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn release(&self) {
        let mut st = self.lock();
        st.reader = Reader::Gone;
        st.waker = None;
        let unread = std::mem::take(&mut st.events);
        drop(st);
        drop(unread);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().events.len()
    }
}

/// The events of a [`Behaviour`](super::Behaviour): a `futures` `Stream` of [`Event`]s.
///
/// The behaviour keeps at most [`Config::with_event_capacity`](super::Config::with_event_capacity)
/// unread events (default 256) and never waits for the application: when a new event does not
/// fit, the oldest one is dropped and counted in [`Events::dropped`]. A dropped
/// `Message::Request` drops its response channel, so that request fails for its sender as if
/// it had not been answered. Dropping `Events` stops the keeping of events altogether; inbound
/// requests that only the event stream could answer then fail at once.
pub struct Events<Req, Resp> {
    queue: Arc<EventQueue<Event<Req, Resp>>>,
}

impl<Req, Resp> Events<Req, Resp> {
    /// The reading end of `queue`, unless it was taken before.
    pub(crate) fn take(queue: &Arc<EventQueue<Event<Req, Resp>>>) -> Option<Self> {
        queue.claim().then(|| Self {
            queue: queue.clone(),
        })
    }

    /// The next event; `None` once the behaviour and its tasks are gone.
    pub async fn next(&mut self) -> Option<Event<Req, Resp>> {
        std::future::poll_fn(|cx| self.queue.poll_pop(cx)).await
    }

    /// How many events were dropped because the buffer was full, since the behaviour was made.
    pub fn dropped(&self) -> u64 {
        self.queue.lock().dropped
    }
}

impl<Req, Resp> Drop for Events<Req, Resp> {
    fn drop(&mut self) {
        self.queue.release();
    }
}

impl<Req, Resp> fmt::Debug for Events<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> futures_core::Stream for Events<Req, Resp> {
    type Item = Event<Req, Resp>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.queue.poll_pop(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    fn pop<T>(queue: &EventQueue<T>) -> Poll<Option<T>> {
        queue.poll_pop(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_full_buffer_drops_its_oldest_events_and_counts_them() {
        let queue = EventQueue::new(3);
        for i in 0..10 {
            queue.push(i);
        }
        assert!(queue.claim(), "first claim");
        assert!(!queue.claim(), "one reader");
        assert_eq!(queue.lock().dropped, 7);
        queue.close();
        let kept: Vec<i32> = std::iter::from_fn(|| match pop(&queue) {
            Poll::Ready(e) => e,
            Poll::Pending => panic!("closed"),
        })
        .collect();
        assert_eq!(kept, [7, 8, 9]);
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_push_and_ends_at_close() {
        let queue = Arc::new(EventQueue::new(4));
        let q = queue.clone();
        let reader = tokio::spawn(async move {
            let first = poll_fn(|cx| q.poll_pop(cx)).await;
            let end = poll_fn(|cx| q.poll_pop(cx)).await;
            (first, end)
        });
        tokio::task::yield_now().await;
        queue.push("hello");
        queue.close();
        let (first, end) = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!((first, end), (Some("hello"), None));
    }

    #[test]
    fn nothing_is_kept_once_the_reader_is_gone() {
        let queue = EventQueue::new(4);
        let marker = Arc::new(());
        queue.push(marker.clone());
        assert!(queue.claim());
        queue.release();
        assert_eq!(
            Arc::strong_count(&marker),
            1,
            "unread events are dropped with the reader"
        );
        queue.push(marker.clone());
        assert_eq!(queue.len(), 0);
        assert_eq!(Arc::strong_count(&marker), 1);
    }
}
