//! The producer loop: epoch order -> per-sample decode and the recipe's views -> a [`BatchSink`].
//!
//! One batch at a time: the sink lends a destination (a free ring slot, a buffer in memory), the
//! worker pool fills its samples in parallel (each worker decodes a sample once with its
//! [`SampleMaker`] and writes every view straight into the destination, in CHW), and the sink
//! delivers it. A file that cannot be read or decoded is recorded once and
//! replaced by a deterministic substitute, so batches stay full and identical across worker counts.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use datasets::source::SampleSource;
use shared::{stat, Stats};
use views::params::{ViewConfig, ViewParams};
use views::recipe::Recipe;
use views::sample::{DecodeOptions, SampleKey, SampleMaker};

use crate::handoff::{BatchPlan, Handoff, PanicGuard};
use crate::sampler::Shard;
use crate::sink::{BadFile, BatchMeta, BatchSink, Flow, RunReport};

/// What the pipeline makes and how much of it.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// Every view of a sample: sizes, counts and augmentations ([`views::recipe`]).
    pub recipe: Recipe,
    /// Images declaring more pixels are refused before decoding.
    pub max_pixels: u64,
    /// Sleep this long before publishing each batch (to play a slow loader in tests/profiling).
    pub throttle: Duration,
    /// Which JPEG decoder, and whether to decode only the views' region (same bytes).
    pub decode: DecodeOptions,
}

/// The global steps of a run ([`Pipeline::plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps_per_epoch: u64,
    pub steps: Range<u64>,
}

const UNKNOWN: u8 = 0;
const BAD: u8 = 2;

/// The decode-and-augment engine over one sample source.
pub struct Pipeline<'s> {
    source: &'s dyn SampleSource,
    cfg: PipelineConfig,
    /// The recipe's views, expanded: (size, config) per view.
    views: Vec<(u32, ViewConfig)>,
    /// The view group of each view (for the per-group time statistics).
    view_group: Vec<usize>,
    workers: usize,
    status: Vec<AtomicU8>,
    bad: Mutex<BTreeMap<usize, BadFile>>,
}

impl<'s> Pipeline<'s> {
    /// Builds the worker pool. Fails if the source has fewer samples than one batch.
    pub fn new(source: &'s dyn SampleSource, cfg: PipelineConfig) -> anyhow::Result<Pipeline<'s>> {
        if cfg.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if source.len() < cfg.batch_size {
            bail!(
                "the dataset has {} images, fewer than one batch of {}; lower --batch-size",
                source.len(),
                cfg.batch_size
            );
        }
        let workers = match cfg.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        cfg.recipe.validate().map_err(anyhow::Error::msg)?;
        let status = (0..source.len()).map(|_| AtomicU8::new(UNKNOWN)).collect();
        let view_group = (cfg.recipe.groups().iter().enumerate())
            .flat_map(|(g, group)| std::iter::repeat_n(g, group.views as usize))
            .collect();
        Ok(Pipeline {
            source,
            view_group,
            views: cfg.recipe.expanded(),
            cfg,
            workers,
            status,
            bad: Mutex::new(BTreeMap::new()),
        })
    }

    /// What the pipeline makes.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Samples in the dataset (dataset indices are `0..len`).
    pub fn dataset_len(&self) -> usize {
        self.source.len()
    }

    /// Worker threads actually running.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Full batches per epoch for one shard (the last partial batch is dropped, so every batch
    /// has the same size for the batch-normalised loss). The same for every rank.
    pub fn steps_per_epoch(&self, shard: Shard) -> u64 {
        (shard.len(self.source.len()) / self.cfg.batch_size) as u64
    }

    /// The global steps a run makes for `shard`: `epochs` passes (or `steps` global steps), from
    /// epoch `start_epoch`, step `start_step` on. Refuses a shard smaller than one batch and a start
    /// at or past the end, with what to change.
    pub fn plan(
        &self,
        shard: Shard,
        epochs: u64,
        steps: Option<u64>,
        start_epoch: u64,
        start_step: u64,
    ) -> anyhow::Result<Plan> {
        let steps_per_epoch = self.steps_per_epoch(shard);
        if steps_per_epoch == 0 {
            bail!(
                "each of the {} ranks gets {} images per epoch, fewer than one batch of {}; lower --batch-size",
                shard.world_size,
                shard.len(self.source.len()),
                self.cfg.batch_size
            );
        }
        let total = steps.unwrap_or(epochs * steps_per_epoch);
        let first = start_epoch * steps_per_epoch + start_step;
        if first >= total {
            bail!("the start (global step {first}) is at or past the end ({total} steps); nothing to do");
        }
        Ok(Plan {
            steps_per_epoch,
            steps: first..total,
        })
    }

    /// The ring geometry of one slot per batch: the recipe's view groups (one slot; the caller
    /// picks the ring's count).
    pub fn geometry(&self) -> shared::Geometry {
        let groups: Vec<shared::ViewGroup> = self
            .cfg
            .recipe
            .groups()
            .iter()
            .map(|g| shared::ViewGroup {
                views: g.views,
                height: g.size,
                width: g.size,
            })
            .collect();
        shared::Geometry {
            slots: 1,
            batch_size: self.cfg.batch_size as u32,
            channels: 3,
            groups: shared::ViewGroups::new(&groups),
        }
    }

    /// A fingerprint of what decides the batches beyond the ring header's own fields (geometry,
    /// seed, dataset length, steps, shard): the recipe, the pixel cap and every
    /// sample's label. A loader taking over a ring must have the same ([`shared::RingInfo`]'s
    /// `stream_key`).
    pub fn stream_key(&self) -> u64 {
        let recipe = self.cfg.recipe.to_json().to_string();
        let mut h = shared::fnv1a64(recipe.as_bytes());
        h = shared::fnv1a64_update(h, &self.cfg.max_pixels.to_le_bytes());
        // The decoder decides the pixels (region decode does not: same bytes).
        h = shared::fnv1a64_update(h, self.cfg.decode.decoder.name().as_bytes());
        h = shared::fnv1a64_update(h, &(self.source.len() as u64).to_le_bytes());
        for i in 0..self.source.len() {
            h = shared::fnv1a64_update(h, &self.source.label(i).to_le_bytes());
        }
        h
    }

    /// Files found bad so far, in dataset order.
    pub fn bad_files(&self) -> Vec<BadFile> {
        self.bad.lock().unwrap().values().cloned().collect()
    }

    /// Produces global steps `steps` (e.g. `0..total`, or `resume_step..total`) into every lane of
    /// `sink` (each lane receiving its shard's batches), in lock step. The batches of a step are a
    /// function of (seed, step, shard) only, so a resumed run continues exactly where an
    /// uninterrupted one would be. A lane whose [`BatchSink::next_step`] is later (a ring taken
    /// over from a dead loader) skips the steps before it. Stops early when `stop` is set or the
    /// sink says [`Flow::Stop`] (the report says `interrupted`); calls [`BatchSink::finish`] at the
    /// end unless an error ends the run.
    pub fn run(
        &self,
        sink: &mut dyn BatchSink,
        steps: Range<u64>,
        stop: &AtomicBool,
    ) -> anyhow::Result<RunReport> {
        let started = Instant::now();
        let mut report = RunReport::default();
        let mut plans = self.plans(sink, steps)?.peekable();
        let handoff = Handoff::new(self.cfg.batch_size);
        let result = std::thread::scope(|scope| -> anyhow::Result<()> {
            for i in 0..self.workers {
                std::thread::Builder::new()
                    .name(format!("loader-worker-{i}"))
                    .spawn_scoped(scope, || self.work(&handoff))
                    .context("starting the worker threads")?;
            }
            let result = self.feed(sink, &mut plans, &handoff, stop, &mut report);
            handoff.shutdown();
            result
        });
        result?;
        report.elapsed = started.elapsed();
        report.bad_files = self.bad_files();
        sink.finish(&report, stop)?;
        Ok(report)
    }

    /// The batches of `steps`, lane by lane within a step, in the order the sink receives them:
    /// a lane whose [`BatchSink::next_step`] is later skips the steps before it.
    fn plans<'a>(
        &'a self,
        sink: &dyn BatchSink,
        steps: Range<u64>,
    ) -> anyhow::Result<impl Iterator<Item = BatchPlan> + 'a> {
        let shards = sink.shards();
        let mut next = Vec::with_capacity(shards.len());
        for lane in 0..shards.len() {
            let first = sink.next_step(lane).unwrap_or(steps.start);
            if first < steps.start {
                bail!(
                    "internal error: lane {lane} of the sink needs step {first} but the loader starts at step {}",
                    steps.start
                );
            }
            next.push(first);
        }
        let mut orders: Vec<Option<(u64, Arc<Vec<u32>>)>> = vec![None; shards.len()];
        let b = self.cfg.batch_size;
        let mut seq = 0u64;
        Ok(steps.flat_map(move |step| {
            let mut batch = Vec::new();
            for (lane, shard) in shards.iter().enumerate() {
                if next[lane] > step {
                    continue;
                }
                next[lane] = step + 1;
                let steps_per_epoch = self.steps_per_epoch(*shard);
                let epoch = step / steps_per_epoch;
                let cached = &mut orders[lane];
                if cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
                    let order = shard.epoch_indices(self.cfg.seed, epoch, self.source.len());
                    *cached = Some((epoch, Arc::new(order)));
                }
                let order = Arc::clone(&cached.as_ref().expect("just filled").1);
                batch.push(BatchPlan {
                    seq,
                    meta: BatchMeta {
                        lane,
                        epoch,
                        step,
                        count: b as u32,
                    },
                    order,
                    first: (step % steps_per_epoch) as usize * b,
                });
                seq += 1;
            }
            batch
        }))
    }

    /// The main thread: announces each batch one ahead (so workers overlap batches), lets the
    /// sink lend its destination, waits for the workers to fill it, and lets the sink deliver it.
    fn feed(
        &self,
        sink: &mut dyn BatchSink,
        plans: &mut std::iter::Peekable<impl Iterator<Item = BatchPlan>>,
        handoff: &Handoff,
        stop: &AtomicBool,
        report: &mut RunReport,
    ) -> anyhow::Result<()> {
        let b = self.cfg.batch_size;
        let mut current = plans.next();
        if let Some(plan) = current.as_ref() {
            handoff.announce(plan.clone());
        }
        while let Some(plan) = current {
            let next = plans.next();
            if let Some(next) = next.as_ref() {
                handoff.announce(next.clone());
            }
            let mut filled = false;
            let flow = sink.batch(plan.meta, stop, &mut |parts, stats| {
                handoff.open(parts, stats);
                handoff.wait_done().map_err(|why| anyhow::anyhow!(why))?;
                stats.set(stat::SKIPPED, self.bad.lock().unwrap().len() as u64);
                stats.set(stat::WORKERS, self.workers as u64);
                if !self.cfg.throttle.is_zero() {
                    std::thread::sleep(self.cfg.throttle);
                }
                filled = true;
                Ok(())
            })?;
            if filled {
                report.batches += 1;
                report.pairs += b as u64;
            }
            let last_of_step = !matches!(&next, Some(n) if n.meta.step == plan.meta.step);
            if flow == Flow::Stop || (last_of_step && stop.load(Ordering::Relaxed)) {
                report.interrupted = true;
                break;
            }
            current = next;
        }
        Ok(())
    }

    /// A worker: claims samples in order (of the open batch, or one batch ahead into its staging
    /// views), makes each with its [`SampleMaker`], and hands it over (see [`crate::handoff`]).
    fn work(&self, handoff: &Handoff) {
        let _guard = PanicGuard(handoff);
        let mut maker = SampleMaker::new(self.cfg.decode);
        let mut staged: Vec<Vec<u8>> = (self.views.iter())
            .map(|(size, _)| vec![0u8; 3 * (*size as usize).pow(2)])
            .collect();
        let mut params = vec![ViewParams::default(); self.views.len()];
        let mut group_ns = [0u64; shared::MAX_GROUPS];
        while let Some(task) = handoff.claim() {
            let Some(idx) = self.load_sample(&task.plan, task.k, &mut maker, &mut params) else {
                handoff.fail(format!(
                    "none of the {} images could be decoded (see the bad-file list)",
                    self.source.len()
                ));
                return;
            };
            let dest = match task.dest {
                Some(dest) => {
                    // SAFETY: the batch is open and sample k was claimed by this worker alone.
                    let mut s = unsafe { dest.sample(task.k) };
                    for (v, (p, (size, _))) in params.iter().zip(&self.views).enumerate() {
                        let t = Instant::now();
                        maker.make_view(p, *size, s.view(v));
                        group_ns[self.view_group[v]] += t.elapsed().as_nanos() as u64;
                    }
                    dest
                }
                None => {
                    for (v, ((p, (size, _)), out)) in
                        params.iter().zip(&self.views).zip(&mut staged).enumerate()
                    {
                        let t = Instant::now();
                        maker.make_view(p, *size, out);
                        group_ns[self.view_group[v]] += t.elapsed().as_nanos() as u64;
                    }
                    match handoff.wait_open(task.plan.seq) {
                        Some(dest) => dest,
                        None => return,
                    }
                }
            };
            // SAFETY: as above (a staged sample's batch is open now).
            let mut s = unsafe { dest.sample(task.k) };
            if task.dest.is_none() {
                for (v, bytes) in staged.iter().enumerate() {
                    s.view(v).copy_from_slice(bytes);
                }
            }
            *s.label = self.source.label(idx);
            *s.index = idx as u64;
            if let Some(kept) = s.params.as_deref_mut() {
                kept.copy_from_slice(&params);
            }
            record_times(&mut maker, &mut group_ns, s.stats);
            handoff.complete();
        }
    }

    /// Loads position `k` of a batch into `maker` and draws its views' parameters into `params`:
    /// the sample at `order[first + k]`, or, if that file is bad, the first good one among
    /// `order[p + B], order[p + 2B], ...` (wrapping). Returns the dataset index loaded; `None`
    /// only if no file decodes.
    fn load_sample(
        &self,
        plan: &BatchPlan,
        k: usize,
        maker: &mut SampleMaker,
        params: &mut [ViewParams],
    ) -> Option<usize> {
        let (b, order) = (self.cfg.batch_size, &plan.order);
        let n = order.len();
        for attempt in 0..n.div_ceil(b).max(1) * b {
            let idx = order[(plan.first + k + attempt * b) % n] as usize;
            if self.status[idx].load(Ordering::Relaxed) == BAD {
                continue;
            }
            let key = SampleKey::new(self.cfg.seed, plan.meta.epoch, idx as u64);
            if let Err(why) = maker.load_and_draw(
                |buf| self.source.read(idx, buf),
                self.cfg.max_pixels,
                key,
                &self.views,
                params,
            ) {
                self.record_bad(idx, why);
                continue;
            }
            return Some(idx);
        }
        None
    }

    fn record_bad(&self, index: usize, reason: String) {
        if self.status[index].swap(BAD, Ordering::Relaxed) != BAD {
            let name = self.source.name(index);
            self.bad.lock().unwrap().insert(
                index,
                BadFile {
                    index,
                    name,
                    reason,
                },
            );
        }
    }
}

/// Adds a maker's stage times and the per-group view times (then zeroed) to the sink's live
/// statistics.
fn record_times(maker: &mut SampleMaker, group_ns: &mut [u64; shared::MAX_GROUPS], stats: &Stats) {
    for (g, ns) in group_ns.iter_mut().enumerate() {
        if *ns > 0 {
            stats.add(stat::GROUP_NS + g, std::mem::take(ns));
        }
    }
    let t = maker.take_times();
    stats.add(stat::READ_NS, t.read_ns);
    stats.add(stat::DECODE_NS, t.decode_ns);
    stats.add(stat::CROP_NS, t.views.crop_ns);
    stats.add(stat::COLOR_NS, t.views.color_ns);
    stats.add(stat::BLUR_NS, t.views.blur_ns);
    stats.add(stat::WRITE_NS, t.views.write_ns);
}
