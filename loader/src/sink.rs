//! Where batches go: the one seam between *making* batches ([`crate::pipeline`]) and *delivering*
//! them. ripgrep's `Sink` is the model: the producer drives, the sink receives, and the sink's
//! answer says whether to go on.
//!
//! Three sinks exist: [`crate::ring_sink::RingSink`] (the shared-memory rings a trainer reads; it
//! owns their lifecycle: open or take over, end of data, linger, abort or hand-over, verdict),
//! [`MemorySink`] (batches in process memory: `loader bench`/`profile` and tests, no /dev/shm
//! needed) and `loader preview`'s PNG writer ([`crate::preview`]), which is a [`MemorySink`]
//! whose callback writes the pairs out.
//!
//! # Contract
//!
//! - The pipeline calls [`BatchSink::batch`] once per batch, in global-step order per lane. The
//!   sink lends a destination and calls `fill` on it exactly once; when `fill` returns `Ok` the
//!   batch is complete and the sink delivers it (a ring publishes the slot). Batches are never
//!   delivered half-written: if `fill` fails, the sink returns that error without delivering.
//! - **Stop:** `Ok(Flow::Stop)` ends the run cleanly after this call (the batch was delivered if
//!   `fill` ran, else not at all): a ring returns it when `stop` was set while it waited for a free
//!   slot; a memory sink when its callback has seen enough. The run then reports `interrupted`.
//! - **Error:** `Err` ends the run at once; the pipeline returns the error, and
//!   [`BatchSink::finish`] is not called (dropping a [`RingSink`](crate::ring_sink::RingSink)
//!   still removes its rings).
//! - [`BatchSink::finish`] is called once after the last batch (or a stop), with the run's report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shared::{stat, Geometry, SlotLayout, SlotParts, Stats};

use views::params::ViewParams;

use crate::sampler::Shard;

/// Which batch is being delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// Which of the sink's streams ([`BatchSink::shards`]) it belongs to.
    pub lane: usize,
    pub epoch: u64,
    /// Global step.
    pub step: u64,
    /// Samples in the batch (always the batch size).
    pub count: u32,
}

/// A sink's answer after a batch: go on, or end the run cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// A file the loader could not use, and why.
#[derive(Clone, Debug)]
pub struct BadFile {
    pub index: usize,
    pub name: String,
    pub reason: String,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct RunReport {
    pub batches: u64,
    pub pairs: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub bad_files: Vec<BadFile>,
}

/// What a sink lends for one batch: the slot's parts and, where the sink keeps them (in memory),
/// room for the parameters drawn for each view of each sample (so `loader preview` writes what
/// was drawn): sample `k`'s views at `k * views .. (k + 1) * views`.
pub struct Destination<'a> {
    pub parts: SlotParts<'a>,
    pub params: Option<&'a mut [ViewParams]>,
}

/// Fills a lent destination (and may add to the sink's live statistics).
pub type Fill<'f> = dyn FnMut(Destination<'_>, &Stats) -> anyhow::Result<()> + 'f;

/// A receiver of batches. See the module documentation for the stop and error semantics.
pub trait BatchSink {
    /// The shard of each lane (one per ring for a ring sink; one lane otherwise).
    fn shards(&self) -> Vec<Shard>;

    /// The global step lane `lane` needs next, if the sink has a position of its own (a ring taken
    /// over from a dead loader resumes where its trainer is); the pipeline skips the steps before
    /// it for that lane.
    fn next_step(&self, _lane: usize) -> Option<u64> {
        None
    }

    /// Lends the destination of batch `meta` to `fill` and delivers it (see the module docs).
    /// `stop` is the caller's stop flag, for a sink that has to wait.
    fn batch(
        &mut self,
        meta: BatchMeta,
        stop: &AtomicBool,
        fill: &mut Fill<'_>,
    ) -> anyhow::Result<Flow>;

    /// After the last batch or a stop.
    fn finish(&mut self, _report: &RunReport, _stop: &AtomicBool) -> anyhow::Result<()> {
        Ok(())
    }
}

/// One batch in process memory, laid out as a ring slot's payload.
#[derive(Clone, Debug)]
pub struct MemoryBatch {
    pub meta: Option<BatchMeta>,
    pub labels: Vec<u32>,
    pub indices: Vec<u64>,
    /// Every view's pixels, as a slot holds them from its first view on ([`MemoryBatch::view`]).
    pub pixels: Vec<u8>,
    /// Where the views lie (a slot's layout; `pixels` starts at `layout.pixels().start`).
    pub layout: SlotLayout,
    /// The parameters drawn for each view of each sample, sample after sample.
    pub params: Vec<ViewParams>,
}

impl MemoryBatch {
    /// Buffers for batches of `geometry` (its batch size, channels and view groups), allocated
    /// once.
    pub fn new(geometry: &Geometry) -> MemoryBatch {
        let layout = geometry.slot_layout();
        let b = geometry.batch_size as usize;
        MemoryBatch {
            meta: None,
            labels: vec![0; b],
            indices: vec![0; b],
            pixels: vec![0; layout.pixels().len()],
            layout,
            params: vec![Default::default(); b * layout.views()],
        }
    }

    /// Views per sample.
    pub fn views(&self) -> usize {
        self.layout.views()
    }

    /// View `v` of the whole batch (`count` samples of CHW u8, back to back).
    pub fn view(&self, v: usize) -> &[u8] {
        let (at, len) = self.layout.view(v).expect("a view of the batch");
        let start = at - self.layout.pixels().start;
        &self.pixels[start..start + len]
    }

    /// View `v` of sample `k` (CHW u8).
    pub fn sample_view(&self, k: usize, v: usize) -> &[u8] {
        let all = self.view(v);
        let n = all.len() / self.labels.len();
        &all[k * n..(k + 1) * n]
    }

    /// The parameters drawn for sample `k`'s views.
    pub fn sample_params(&self, k: usize) -> &[ViewParams] {
        let v = self.views();
        &self.params[k * v..(k + 1) * v]
    }

    fn destination(&mut self) -> Destination<'_> {
        Destination {
            parts: SlotParts {
                labels: &mut self.labels,
                indices: &mut self.indices,
                pixels: &mut self.pixels,
                layout: self.layout,
            },
            params: Some(&mut self.params),
        }
    }
}

/// Counters a [`MemorySink`] keeps where other threads can read them while a run goes on.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    /// Stage times and pairs, as a ring's statistics block counts them.
    pub stats: Stats,
    /// Batches delivered.
    pub delivered: AtomicU64,
}

/// What a [`MemorySink`] does with each complete batch.
pub type OnBatch<'a> = Box<dyn FnMut(&MemoryBatch) -> anyhow::Result<Flow> + 'a>;

/// Batches in memory: one buffer allocated up front and reused; each complete batch is handed to
/// a callback, which decides whether the run goes on.
pub struct MemorySink<'a> {
    shards: Vec<Shard>,
    batch: MemoryBatch,
    counters: Arc<MemoryCounters>,
    on_batch: OnBatch<'a>,
}

impl<'a> MemorySink<'a> {
    /// A sink of one lane (`shard`) for batches of `geometry` (a pipeline's
    /// [`crate::pipeline::Pipeline::geometry`]).
    pub fn new(
        shard: Shard,
        geometry: &Geometry,
        on_batch: impl FnMut(&MemoryBatch) -> anyhow::Result<Flow> + 'a,
    ) -> MemorySink<'a> {
        MemorySink {
            shards: vec![shard],
            batch: MemoryBatch::new(geometry),
            counters: Arc::default(),
            on_batch: Box::new(on_batch),
        }
    }

    /// A sink that drops every batch (what `loader bench` measures against).
    pub fn discard(shard: Shard, geometry: &Geometry) -> MemorySink<'a> {
        MemorySink::new(shard, geometry, |_| Ok(Flow::Continue))
    }

    /// The live counters (shareable with a sampling thread).
    pub fn counters(&self) -> Arc<MemoryCounters> {
        Arc::clone(&self.counters)
    }
}

impl BatchSink for MemorySink<'_> {
    fn shards(&self) -> Vec<Shard> {
        self.shards.clone()
    }

    fn batch(
        &mut self,
        meta: BatchMeta,
        stop: &AtomicBool,
        fill: &mut Fill<'_>,
    ) -> anyhow::Result<Flow> {
        if stop.load(Ordering::Relaxed) {
            return Ok(Flow::Stop);
        }
        fill(self.batch.destination(), &self.counters.stats)?;
        self.batch.meta = Some(meta);
        self.counters
            .stats
            .add(stat::PAIRS_WRITTEN, meta.count as u64);
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        (self.on_batch)(&self.batch)
    }
}
