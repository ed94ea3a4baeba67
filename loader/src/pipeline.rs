//! The producer loop: epoch order -> per-sample decode and two views -> a [`BatchSink`].
//!
//! One batch at a time: the sink lends a destination (a free ring slot, a buffer in memory), the
//! worker pool fills its samples in parallel (each worker makes a pair with its
//! [`PairMaker`], writing both views straight into the destination, in CHW), and the sink
//! delivers it. A file that cannot be read or decoded is recorded once and
//! replaced by a deterministic substitute, so batches stay full and identical across worker counts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rayon::prelude::*;
use shared::{stat, SlotParts, Stats};

use crate::augment::AugmentConfig;
use crate::pair::{PairKey, PairMaker};
use crate::sampler::Shard;
use crate::sink::{BatchMeta, BatchSink, Flow};
use crate::source::SampleSource;

/// What the pipeline makes and how much of it.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub batch_size: usize,
    /// Side of the square output views.
    pub image_size: u32,
    pub seed: u64,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// The two views' augmentation (defaults: the paper's `transform` / `transform_prime`).
    pub augment: AugmentConfig,
    /// Images declaring more pixels are refused before decoding.
    pub max_pixels: u64,
    /// Sleep this long before publishing each batch (to play a slow loader in tests/profiling).
    pub throttle: Duration,
}

/// The global steps of a run ([`Pipeline::plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps_per_epoch: u64,
    pub steps: Range<u64>,
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

thread_local! {
    /// Per-thread buffers, reused for every sample the thread makes.
    static MAKER: RefCell<PairMaker> = RefCell::new(PairMaker::default());
}

const UNKNOWN: u8 = 0;
const BAD: u8 = 2;

/// The decode-and-augment engine over one sample source.
pub struct Pipeline<'s> {
    source: &'s dyn SampleSource,
    cfg: PipelineConfig,
    pool: rayon::ThreadPool,
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
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.workers)
            .thread_name(|i| format!("loader-worker-{i}"))
            .build()
            .context("starting the worker threads")?;
        let status = (0..source.len()).map(|_| AtomicU8::new(UNKNOWN)).collect();
        Ok(Pipeline {
            source,
            cfg,
            pool,
            status,
            bad: Mutex::new(BTreeMap::new()),
        })
    }

    /// What the pipeline makes.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Worker threads actually running.
    pub fn workers(&self) -> usize {
        self.pool.current_num_threads()
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

    /// The ring geometry of one slot per batch (one slot; the caller picks the ring's count).
    pub fn geometry(&self) -> shared::Geometry {
        shared::Geometry {
            slots: 1,
            batch_size: self.cfg.batch_size as u32,
            channels: 3,
            height: self.cfg.image_size,
            width: self.cfg.image_size,
        }
    }

    /// A fingerprint of what decides the batches beyond the ring header's own fields (geometry,
    /// seed, dataset length, steps, shard): the augmentation settings, the pixel cap and every
    /// sample's label. A loader taking over a ring must have the same ([`shared::RingInfo`]'s
    /// `stream_key`).
    pub fn stream_key(&self) -> u64 {
        let augment = serde_json::to_string(&self.cfg.augment).unwrap_or_default();
        let mut h = shared::fnv1a64(augment.as_bytes());
        h = shared::fnv1a64_update(h, &self.cfg.max_pixels.to_le_bytes());
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
        let shards = sink.shards();
        let mut epoch_indices: Vec<Option<(u64, Vec<u32>)>> = vec![None; shards.len()];
        let b = self.cfg.batch_size;
        'steps: for step in steps {
            for (lane, (shard, cached)) in shards.iter().zip(epoch_indices.iter_mut()).enumerate() {
                match sink.next_step(lane) {
                    Some(next) if next > step => continue,
                    Some(next) if next < step => bail!(
                        "internal error: lane {lane} of the sink needs step {next} but the loader is at step {step}"
                    ),
                    _ => {}
                }
                let steps_per_epoch = self.steps_per_epoch(*shard);
                let epoch = step / steps_per_epoch;
                if cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
                    *cached = Some((
                        epoch,
                        shard.epoch_indices(self.cfg.seed, epoch, self.source.len()),
                    ));
                }
                let indices = &cached.as_ref().expect("just filled").1;
                let meta = BatchMeta {
                    lane,
                    epoch,
                    step,
                    count: b as u32,
                };
                let mut filled = false;
                let flow = sink.batch(meta, stop, &mut |parts, stats| {
                    self.fill_batch(epoch, step % steps_per_epoch, indices, parts, Some(stats))?;
                    stats.set(stat::SKIPPED, self.bad.lock().unwrap().len() as u64);
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
                if flow == Flow::Stop {
                    report.interrupted = true;
                    break 'steps;
                }
            }
            if stop.load(Ordering::Relaxed) {
                report.interrupted = true;
                break;
            }
        }
        report.elapsed = started.elapsed();
        report.bad_files = self.bad_files();
        sink.finish(&report, stop)?;
        Ok(report)
    }

    /// Fills one batch from an epoch's (shard's) `order`: position `k` of step `step_in_epoch`
    /// takes the sample at `order[step_in_epoch * B + k]`, or, if that file is bad, the first good
    /// one among `order[p + B], order[p + 2B], ...` (wrapping). Fails only if no file decodes.
    pub fn fill_batch(
        &self,
        epoch: u64,
        step_in_epoch: u64,
        order: &[u32],
        parts: SlotParts<'_>,
        stats: Option<&Stats>,
    ) -> anyhow::Result<()> {
        let b = self.cfg.batch_size;
        let sample_bytes = 3 * (self.cfg.image_size as usize).pow(2);
        let first = step_in_epoch as usize * b;
        let results: Vec<bool> = self.pool.install(|| {
            parts
                .view_a
                .par_chunks_mut(sample_bytes)
                .zip(parts.view_b.par_chunks_mut(sample_bytes))
                .zip(parts.labels.par_iter_mut())
                .zip(parts.indices.par_iter_mut())
                .enumerate()
                .map(|(k, (((view_a, view_b), label), index))| {
                    let n = order.len();
                    for attempt in 0..n.div_ceil(b).max(1) * b {
                        let idx = order[(first + k + attempt * b) % n] as usize;
                        if self.status[idx].load(Ordering::Relaxed) == BAD {
                            continue;
                        }
                        if self.make_pair(epoch, idx, view_a, view_b, stats) {
                            *label = self.source.label(idx);
                            *index = idx as u64;
                            return true;
                        }
                    }
                    false
                })
                .collect()
        });
        if results.iter().any(|ok| !ok) {
            bail!(
                "none of the {} images could be decoded (see the bad-file list)",
                self.source.len()
            );
        }
        Ok(())
    }

    /// Reads and decodes sample `idx` once and writes both views ([`PairMaker`]); false (and the
    /// file recorded as bad) if it cannot be read or decoded.
    fn make_pair(
        &self,
        epoch: u64,
        idx: usize,
        view_a: &mut [u8],
        view_b: &mut [u8],
        stats: Option<&Stats>,
    ) -> bool {
        MAKER.with(|maker| {
            let maker = &mut *maker.borrow_mut();
            let loaded = maker.load(self.source, idx, self.cfg.max_pixels);
            if let Err(why) = loaded {
                self.record_times(maker, stats);
                self.record_bad(idx, why);
                return false;
            }
            let key = PairKey {
                seed: self.cfg.seed,
                epoch,
                index: idx as u64,
            };
            maker.make_pair(key, &self.cfg.augment, self.cfg.image_size, view_a, view_b);
            self.record_times(maker, stats);
            true
        })
    }

    /// Adds the maker's stage times to the ring's live statistics.
    fn record_times(&self, maker: &mut PairMaker, stats: Option<&Stats>) {
        let t = maker.take_times();
        if let Some(stats) = stats {
            stats.add(stat::READ_NS, t.read_ns);
            stats.add(stat::DECODE_NS, t.decode_ns);
            stats.add(stat::CROP_NS, t.views.crop_ns);
            stats.add(stat::COLOR_NS, t.views.color_ns);
            stats.add(stat::BLUR_NS, t.views.blur_ns);
            stats.add(stat::WRITE_NS, t.views.write_ns);
        }
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
