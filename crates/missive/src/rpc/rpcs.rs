//! The server's table of running rpcs: wire ids → slots holding the work, with one reusable
//! waker per slot so that only the rpcs that were woken are polled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use super::calls::IdMap;

/// Indexes of woken slots, shared with the slot wakers.
#[derive(Debug, Default)]
struct ReadyQueue {
    inner: Mutex<ReadyInner>,
}

#[derive(Debug, Default)]
struct ReadyInner {
    ready: Vec<usize>,
    driver: Option<Waker>,
}

#[derive(Debug)]
struct SlotWaker {
    index: usize,
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let driver = match self.queue.inner.lock() {
            Ok(mut inner) => {
                inner.ready.push(self.index);
                inner.driver.clone()
            }
            Err(_) => None,
        };
        if let Some(w) = driver {
            w.wake();
        }
    }
}

/// One running rpc.
#[derive(Debug)]
pub(crate) struct Slot<W, X> {
    pub(crate) id: u64,
    pub(crate) work: Option<W>,
    /// Per-rpc extra state (the sender of its request stream).
    pub(crate) extra: Option<X>,
    waker: Waker,
    flag: Arc<SlotWaker>,
}

/// Running rpcs by wire id.
#[derive(Debug)]
pub(crate) struct Rpcs<W, X> {
    slots: Vec<Slot<W, X>>,
    free: Vec<usize>,
    ids: IdMap<usize>,
    queue: Arc<ReadyQueue>,
    /// Slots to poll, in order (woken, new, or deferred by the send budget).
    runnable: Vec<usize>,
}

impl<W, X> Rpcs<W, X> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ids: IdMap::default(),
            queue: Arc::new(ReadyQueue::default()),
            runnable: Vec::new(),
        }
    }

    /// Running rpcs.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The slot of rpc `id`.
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Slot<W, X>> {
        let &index = self.ids.get(&id)?;
        self.slots.get_mut(index)
    }

    /// Starts rpc `id` (its id must not run already) and polls it once with `f` right away;
    /// an rpc that finishes then never enters the id table.
    pub(crate) fn start(
        &mut self,
        id: u64,
        work: W,
        extra: Option<X>,
        f: impl FnOnce(u64, &mut W, &mut Context<'_>) -> Step,
    ) {
        let index = self.alloc(id);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        slot.flag.queued.store(false, Ordering::Release);
        let work = slot.work.insert(work);
        let mut cx = Context::from_waker(&slot.waker);
        match f(id, work, &mut cx) {
            Step::Finished => {
                slot.work = None;
                self.free.push(index);
            }
            Step::Pending => {
                slot.extra = extra;
                self.ids.insert(id, index);
            }
            Step::Defer => {
                slot.extra = extra;
                slot.flag.queued.store(true, Ordering::Release);
                self.ids.insert(id, index);
                self.runnable.push(index);
            }
        }
    }

    /// Starts rpc `id` (its id must not run already); it is polled at the next `run`.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, id: u64, work: W, extra: Option<X>) {
        let index = self.alloc(id);
        if let Some(slot) = self.slots.get_mut(index) {
            slot.work = Some(work);
            slot.extra = extra;
            slot.flag.queued.store(true, Ordering::Release);
        }
        self.ids.insert(id, index);
        self.runnable.push(index);
    }

    /// A free slot for rpc `id` (made when none is free).
    fn alloc(&mut self, id: u64) -> usize {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let index = self.slots.len();
                let flag = Arc::new(SlotWaker {
                    index,
                    queued: AtomicBool::new(false),
                    queue: self.queue.clone(),
                });
                self.slots.push(Slot {
                    id,
                    work: None,
                    extra: None,
                    waker: Waker::from(flag.clone()),
                    flag,
                });
                index
            }
        };
        if let Some(slot) = self.slots.get_mut(index) {
            slot.id = id;
        }
        index
    }

    /// Stops rpc `id` and drops its work. Returns whether it ran.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(index) = self.ids.remove(&id) else {
            return false;
        };
        if let Some(slot) = self.slots.get_mut(index) {
            slot.work = None;
            slot.extra = None;
        }
        self.free.push(index);
        true
    }

    /// Drops every rpc.
    pub(crate) fn clear(&mut self) {
        self.take_all();
    }

    /// Removes every rpc, dropping its work; returns their ids.
    pub(crate) fn take_all(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.ids.keys().copied().collect();
        for &id in &ids {
            self.remove(id);
        }
        ids
    }

    /// Calls `f` with the work of every running rpc.
    #[cfg(feature = "metrics")]
    pub(crate) fn for_each_work(&mut self, mut f: impl FnMut(&mut W)) {
        for &index in self.ids.values() {
            if let Some(work) = self
                .slots
                .get_mut(index)
                .and_then(|slot| slot.work.as_mut())
            {
                f(work);
            }
        }
    }

    /// Collects woken slots; registers the driver's waker for later wakes.
    pub(crate) fn collect_woken(&mut self, cx: &Context<'_>) {
        if let Ok(mut inner) = self.queue.inner.lock() {
            self.runnable.append(&mut inner.ready);
            match &inner.driver {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.driver = Some(cx.waker().clone()),
            }
        }
    }

    /// Whether some rpc waits to be polled.
    pub(crate) fn has_runnable(&self) -> bool {
        !self.runnable.is_empty()
    }

    /// Polls runnable rpcs in order: `f` gets each rpc's id, its work and its context, and
    /// says whether the rpc is still pending, finished (its slot is freed), or deferred (not
    /// polled: it and the rest stay runnable, first in line).
    /// Returns how many rpcs were polled.
    pub(crate) fn run(
        &mut self,
        mut f: impl FnMut(u64, &mut W, &mut Context<'_>) -> Step,
    ) -> usize {
        let mut done = 0;
        let mut polled = 0;
        let runnable = std::mem::take(&mut self.runnable);
        for &index in &runnable {
            let Some(slot) = self.slots.get_mut(index) else {
                done += 1;
                continue;
            };
            let id = slot.id;
            let Some(work) = slot.work.as_mut() else {
                done += 1;
                continue;
            };
            let mut cx = Context::from_waker(&slot.waker);
            slot.flag.queued.store(false, Ordering::Release);
            match f(id, work, &mut cx) {
                Step::Pending => polled += 1,
                Step::Finished => {
                    polled += 1;
                    self.remove(id);
                }
                Step::Defer => {
                    slot.flag.queued.store(true, Ordering::Release);
                    break;
                }
            }
            done += 1;
        }
        let mut rest: Vec<usize> = runnable.get(done..).unwrap_or_default().to_vec();
        rest.append(&mut self.runnable);
        self.runnable = rest;
        polled
    }
}

/// What became of one rpc in [`Rpcs::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Polled, still running.
    Pending,
    /// Polled, finished.
    Finished,
    /// Not polled; stop here.
    Defer,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    type Work = Pin<Box<dyn Future<Output = u32>>>;

    fn step_of<T>(p: Poll<T>) -> Step {
        if p.is_ready() {
            Step::Finished
        } else {
            Step::Pending
        }
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn new_rpcs_run_and_finished_ones_free_their_slot() {
        let mut rpcs: Rpcs<Work, ()> = Rpcs::new();
        rpcs.insert(5, Box::pin(async { 7 }), None);
        assert!(rpcs.get_mut(5).is_some());
        let mut out = Vec::new();
        rpcs.collect_woken(&noop_cx());
        rpcs.run(|id, w, cx| match w.as_mut().poll(cx) {
            Poll::Ready(v) => {
                out.push((id, v));
                Step::Finished
            }
            Poll::Pending => Step::Pending,
        });
        assert_eq!(out, vec![(5, 7)]);
        assert_eq!(rpcs.len(), 0);
        // The slot is reused.
        rpcs.insert(6, Box::pin(async { 8 }), None);
        assert_eq!(rpcs.slots.len(), 1);
    }

    #[test]
    fn pending_rpcs_run_again_only_when_woken() {
        let mut rpcs: Rpcs<Work, ()> = Rpcs::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        rpcs.insert(1, Box::pin(async move { rx.await.unwrap_or(0) }), None);
        let mut polls = 0;
        let mut step = |rpcs: &mut Rpcs<Work, ()>| {
            rpcs.collect_woken(&noop_cx());
            rpcs.run(|_, w, cx| {
                polls += 1;
                step_of(w.as_mut().poll(cx))
            });
        };
        step(&mut rpcs);
        step(&mut rpcs);
        assert_eq!(rpcs.len(), 1);
        tx.send(3).expect("send");
        step(&mut rpcs);
        assert_eq!(rpcs.len(), 0);
        assert_eq!(polls, 2);
    }

    #[test]
    fn removed_rpcs_drop_their_work() {
        let mut rpcs: Rpcs<Work, ()> = Rpcs::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        rpcs.insert(1, Box::pin(async move { rx.await.unwrap_or(0) }), None);
        assert!(rpcs.remove(1));
        assert!(tx.is_closed());
        assert!(!rpcs.remove(1));
    }

    #[test]
    fn budget_defers_the_rest_in_order() {
        let mut rpcs: Rpcs<Work, ()> = Rpcs::new();
        for id in 0..4 {
            rpcs.insert(id, Box::pin(async move { id as u32 }), None);
        }
        let mut seen = Vec::new();
        let mut left = 2;
        rpcs.run(|id, w, cx| {
            if left == 0 {
                return Step::Defer;
            }
            left -= 1;
            seen.push(id);
            step_of(w.as_mut().poll(cx))
        });
        assert_eq!(seen, vec![0, 1]);
        rpcs.run(|id, w, cx| {
            seen.push(id);
            step_of(w.as_mut().poll(cx))
        });
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }
}
