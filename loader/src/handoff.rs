//! Batches that overlap: how the pipeline's main thread and its workers hand samples over.
//!
//! Work is a single sequence of sample tasks, batch after batch (task `t` is position `t % B` of
//! batch `t / B`). Workers claim tasks in order without waiting at the end of a batch: while the
//! batch whose destination is open (a ring slot the sink lent) still has samples in progress,
//! workers that are done take samples of the **next** batch. Such a sample is made into the
//! worker's own staging views (allocated once per worker, up front) and copied into the
//! destination when that batch opens; every other sample is written in place. A worker runs at
//! most one batch ahead, so at most one staged sample per worker exists.
//!
//! The main thread announces each batch before it opens ([`Handoff::announce`]), opens it with
//! the destination the sink lent ([`Handoff::open`]), waits until all its samples are written
//! ([`Handoff::wait_done`]), and the sink delivers it. Batches are therefore still delivered in
//! order and each sample's bytes are the same as without overlap: only *when* a sample is made
//! changes, never *what* it is.
//!
//! **Architecture invariant:** a destination is written only between its `open` and the
//! `wait_done` that closes it; that wait returns only when every one of its samples has been
//! written, so no worker holds a pointer into a delivered slot.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use shared::{Stats, MAX_VIEWS};
use views::params::ViewParams;

use crate::sink::{BatchMeta, Destination};

/// One batch of a run: what to fill and where in the epoch order.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    /// Sequence number of the batch in this run (0, 1, 2, ...).
    pub seq: u64,
    pub meta: BatchMeta,
    /// The shard's epoch order; position `k` starts at `order[first + k]`.
    pub order: Arc<Vec<u32>>,
    pub first: usize,
}

/// A lent destination, as raw parts (valid from `open` to the end of `wait_done`).
#[derive(Clone, Copy)]
pub struct Dest {
    labels: *mut u32,
    indices: *mut u64,
    /// Start of every view's pixels (the slot's [`shared::SlotLayout::pixels`]).
    pixels: *mut u8,
    /// Per view: offset of its batch block in `pixels`, and bytes of one sample's view.
    views: [(usize, usize); MAX_VIEWS as usize],
    view_count: usize,
    /// `view_count` parameter sets per sample; null when the sink keeps no parameters.
    params: *mut ViewParams,
    stats: *const Stats,
}

/// Where one sample of an open batch goes.
pub struct SampleDest<'a> {
    pub label: &'a mut u32,
    pub index: &'a mut u64,
    /// The parameters drawn for the sample's views, where the sink keeps them.
    pub params: Option<&'a mut [ViewParams]>,
    /// The sink's live statistics.
    pub stats: &'a Stats,
    dest: &'a Dest,
    k: usize,
}

impl SampleDest<'_> {
    /// This sample's view `v` (CHW u8).
    pub fn view(&mut self, v: usize) -> &mut [u8] {
        let (offset, n) = self.dest.views[v];
        // SAFETY: see `Dest::sample`: sample k's bytes of view v are this worker's alone, and
        // they lie inside the lent pixels (offsets from the validated slot layout).
        unsafe { std::slice::from_raw_parts_mut(self.dest.pixels.add(offset + self.k * n), n) }
    }

    /// Views per sample.
    pub fn views(&self) -> usize {
        self.dest.view_count
    }
}

// SAFETY: a `Dest` is only dereferenced by the worker that owns sample `k` of the open batch
// (disjoint regions), while the main thread keeps the destination alive in `wait_done`.
unsafe impl Send for Dest {}
unsafe impl Sync for Dest {}

impl Dest {
    /// The regions of sample `k`.
    ///
    /// # Safety
    /// The destination must still be open, and no other thread may use sample `k`.
    pub unsafe fn sample(&self, k: usize) -> SampleDest<'_> {
        let v = self.view_count;
        SampleDest {
            label: &mut *self.labels.add(k),
            index: &mut *self.indices.add(k),
            params: (!self.params.is_null())
                .then(|| std::slice::from_raw_parts_mut(self.params.add(k * v), v)),
            stats: &*self.stats,
            dest: self,
            k,
        }
    }
}

/// What a worker got to do.
pub struct Task {
    pub plan: Arc<BatchPlan>,
    /// Position in the batch.
    pub k: usize,
    /// The destination when the batch is already open (write in place), else `None` (stage it).
    pub dest: Option<Dest>,
}

struct State {
    /// Announced batches not yet closed, oldest first.
    plans: VecDeque<Arc<BatchPlan>>,
    /// Tasks `0..next_task` have been claimed.
    next_task: u64,
    /// Batches opened so far (the open one, if any, is `opened - 1`).
    opened: u64,
    open: Option<Dest>,
    /// Samples of the open batch written so far.
    done: usize,
    failed: Option<String>,
    shutdown: bool,
}

/// The state the main thread and the workers share (one mutex, one condition variable: a task
/// is milliseconds of work, so the lock is never contended for long).
pub struct Handoff {
    batch: usize,
    state: Mutex<State>,
    changed: Condvar,
}

impl Handoff {
    /// For batches of `batch` samples.
    pub fn new(batch: usize) -> Handoff {
        Handoff {
            batch,
            state: Mutex::new(State {
                plans: VecDeque::new(),
                next_task: 0,
                opened: 0,
                open: None,
                done: 0,
                failed: None,
                shutdown: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Makes batch `plan.seq` (the next in sequence) available to workers.
    pub fn announce(&self, plan: BatchPlan) {
        let mut st = self.lock();
        st.plans.push_back(Arc::new(plan));
        self.changed.notify_all();
    }

    /// Opens the next batch with the destination the sink lent.
    pub fn open(&self, dest: Destination<'_>, stats: &Stats) {
        let Destination { parts, params } = dest;
        let layout = parts.layout;
        let view_count = layout.views();
        let mut views = [(0, 0); MAX_VIEWS as usize];
        for (v, slot) in views.iter_mut().enumerate().take(view_count) {
            let (at, len) = layout.view(v).expect("a view of the layout");
            *slot = (at - layout.pixels().start, len / self.batch);
        }
        assert_eq!(
            parts.pixels.len(),
            layout.pixels().len(),
            "the whole pixels"
        );
        let params = match params {
            Some(params) => {
                assert_eq!(
                    params.len(),
                    self.batch * view_count,
                    "one parameter set per view"
                );
                params.as_mut_ptr()
            }
            None => std::ptr::null_mut(),
        };
        let mut st = self.lock();
        st.open = Some(Dest {
            labels: parts.labels.as_mut_ptr(),
            indices: parts.indices.as_mut_ptr(),
            pixels: parts.pixels.as_mut_ptr(),
            views,
            view_count,
            params,
            stats,
        });
        st.opened += 1;
        st.done = 0;
        self.changed.notify_all();
    }

    /// Waits until every sample of the open batch is written, then closes it. Err (the batch
    /// is incomplete) when a sample could not be made.
    pub fn wait_done(&self) -> Result<(), String> {
        let mut st = self.lock();
        while st.done < self.batch && st.failed.is_none() {
            st = self.wait(st);
        }
        st.open = None;
        st.plans.pop_front();
        match &st.failed {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Ends the run: workers return from [`Handoff::claim`] and [`Handoff::wait_open`].
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.changed.notify_all();
    }

    /// The next task, waiting while it belongs to a batch not yet announced or more than one
    /// batch beyond the last opened one; `None` once the run ends.
    pub fn claim(&self) -> Option<Task> {
        let mut st = self.lock();
        loop {
            if st.shutdown || st.failed.is_some() {
                return None;
            }
            let seq = st.next_task / self.batch as u64;
            let front = st.plans.front().map_or(seq, |p| p.seq);
            let announced = st.plans.get((seq - front) as usize).cloned();
            if let Some(plan) = announced.filter(|_| seq <= st.opened) {
                let k = (st.next_task % self.batch as u64) as usize;
                st.next_task += 1;
                let dest = if seq + 1 == st.opened { st.open } else { None };
                return Some(Task { plan, k, dest });
            }
            st = self.wait(st);
        }
    }

    /// Waits until batch `seq` is open (for a staged sample); `None` once the run ends.
    pub fn wait_open(&self, seq: u64) -> Option<Dest> {
        let mut st = self.lock();
        loop {
            if st.shutdown || st.failed.is_some() {
                return None;
            }
            if st.opened == seq + 1 {
                if let Some(dest) = st.open {
                    return Some(dest);
                }
            }
            st = self.wait(st);
        }
    }

    /// Sample written into the open batch.
    pub fn complete(&self) {
        let mut st = self.lock();
        st.done += 1;
        if st.done == self.batch {
            self.changed.notify_all();
        }
    }

    /// A sample could not be made: the run fails with `why`.
    pub fn fail(&self, why: String) {
        let mut st = self.lock();
        st.failed.get_or_insert(why);
        self.changed.notify_all();
    }
}

/// Fails the run if a worker panics, so the main thread does not wait for its sample forever.
pub struct PanicGuard<'a>(pub &'a Handoff);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("a loader worker panicked".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::SlotParts;

    fn plan(seq: u64) -> BatchPlan {
        BatchPlan {
            seq,
            meta: BatchMeta {
                lane: 0,
                epoch: 0,
                step: seq,
                count: 2,
            },
            order: Arc::new(vec![0, 1, 2, 3]),
            first: 2 * seq as usize,
        }
    }

    fn parts<'a>(
        labels: &'a mut [u32],
        indices: &'a mut [u64],
        pixels: &'a mut [u8],
    ) -> Destination<'a> {
        let layout = shared::Geometry::pairs(1, 2, 3, 1, 1).slot_layout();
        Destination {
            parts: SlotParts {
                labels,
                indices,
                pixels,
                layout,
            },
            params: None,
        }
    }

    #[test]
    fn workers_take_the_next_batch_before_the_open_one_is_done() {
        let h = Handoff::new(2);
        h.announce(plan(0));
        h.announce(plan(1));
        let stats = Stats::default();
        let (mut l, mut i, mut px) = ([0u32; 2], [0u64; 2], [0u8; 12]);
        h.open(parts(&mut l, &mut i, &mut px), &stats);
        let t0 = h.claim().unwrap();
        let t1 = h.claim().unwrap();
        assert!(
            t0.dest.is_some() && t1.dest.is_some(),
            "the open batch is written in place"
        );
        // Batch 0 is not done (nothing completed), yet the next task is handed out: no barrier.
        let t2 = h.claim().unwrap();
        assert_eq!((t2.plan.seq, t2.k), (1, 0));
        assert!(t2.dest.is_none(), "a sample of the next batch is staged");
        // Not two batches ahead: batch 2 is neither announced nor within one of the open one.
        h.announce(plan(2));
        let st = h.lock();
        assert_eq!(st.next_task, 3);
        drop(st);
        let t3 = h.claim().unwrap();
        assert_eq!(t3.plan.seq, 1);
        std::thread::scope(|s| {
            let blocked = s.spawn(|| h.claim().map(|t| t.plan.seq));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!blocked.is_finished(), "batch 2 waits until batch 1 opens");
            h.complete();
            h.complete();
            h.wait_done().unwrap();
            let (mut l, mut i, mut px) = ([0u32; 2], [0u64; 2], [0u8; 12]);
            h.open(parts(&mut l, &mut i, &mut px), &stats);
            assert!(
                h.wait_open(1).is_some(),
                "the staged sample finds its batch open"
            );
            assert_eq!(blocked.join().unwrap(), Some(2));
            h.complete();
            h.complete();
            h.wait_done().unwrap();
            h.shutdown();
        });
        assert!(h.claim().is_none(), "nothing after shutdown");
    }

    #[test]
    fn a_failed_sample_fails_the_open_batch_and_stops_the_workers() {
        let h = Handoff::new(2);
        h.announce(plan(0));
        let stats = Stats::default();
        let (mut l, mut i, mut px) = ([0u32; 2], [0u64; 2], [0u8; 12]);
        h.open(parts(&mut l, &mut i, &mut px), &stats);
        let _ = h.claim().unwrap();
        h.fail("no image decodes".into());
        assert_eq!(h.wait_done().unwrap_err(), "no image decodes");
        assert!(h.claim().is_none());
        assert!(h.wait_open(0).is_none());
    }
}
