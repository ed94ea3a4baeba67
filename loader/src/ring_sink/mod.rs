//! The rings a trainer reads, as a [`BatchSink`]: the whole ring lifecycle of a `loader` run.
//!
//! [`RingSink::open`] creates each ring or takes one over from a dead loader ([`restart`]);
//! [`BatchSink::batch`] waits for a free slot (a stop while waiting is [`Flow::Stop`]), lends it,
//! publishes it and moves the progress bar; [`BatchSink::finish`] marks end of data and lingers
//! until the trainer has taken every batch, or, after a stop, hands each ring to a successor when
//! its trainer waits for one (else marks it aborted). Dropping the sink removes the ring files
//! that were not handed over. [`RingSink::summary`] is the run's verdict ([`shared::Verdict`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shared::{stat, Geometry, RingInfo, Stats};

use crate::pipeline::{Pipeline, Plan};
use crate::sampler::Shard;
use crate::sink::{BatchMeta, BatchSink, Destination, Fill, Flow, RunReport};
use restart::{open_feeds, stop_feeds, RingFeed};
use watch::ConsumerWatch;

mod restart;
mod watch;

/// What the rings saw of a finished run.
#[derive(Clone, Copy, Debug)]
pub struct RingSummary {
    /// Batches taken by the trainers, summed over rings.
    pub consumed: u64,
    /// Fraction of the run the loader waited for free slots (averaged over rings).
    pub producer_wait: f64,
    /// Fraction of the run the trainers waited for batches (averaged over rings).
    pub consumer_wait: f64,
    pub verdict: shared::Verdict,
}

/// The rings of a run, with their progress bar and trainer watch.
pub struct RingSink {
    feeds: Vec<RingFeed>,
    linger: Duration,
    bar: Option<ProgressBar>,
    watch: Option<ConsumerWatch>,
    published: u64,
    pairs_per_step: f64,
    summary: Option<RingSummary>,
}

impl RingSink {
    /// The header every ring of a run declares (rank and world size are set per ring when it
    /// opens): the pipeline's geometry with `slots` batches, the recipe's name and normalisation, and what
    /// decides the batches (dataset, seed, the plan's steps, the stream key).
    pub fn ring_info(pipeline: &Pipeline<'_>, plan: &Plan, slots: u32) -> RingInfo {
        RingInfo {
            geometry: Geometry {
                slots,
                ..pipeline.geometry()
            },
            mean: pipeline.config().recipe.mean,
            std: pipeline.config().recipe.std,
            dataset_len: pipeline.dataset_len() as u64,
            steps_per_epoch: plan.steps_per_epoch,
            seed: pipeline.config().seed,
            total_steps: plan.steps.end,
            first_step: plan.steps.start,
            stream_key: pipeline.stream_key(),
            rank: 0,
            world_size: 1,
            recipe: pipeline.config().recipe.name.clone(),
        }
    }

    /// Opens (creates, or takes over from a dead loader) ring `i` at `paths[i]` for shard
    /// `shards[i]`, each declaring [`RingSink::ring_info`] with its rank and world size. After the
    /// last batch the sink waits up to `linger` for the trainers to take what is left.
    pub fn open(
        paths: &[PathBuf],
        shards: &[Shard],
        pipeline: &Pipeline<'_>,
        plan: &Plan,
        slots: u32,
        linger: Duration,
    ) -> anyhow::Result<RingSink> {
        let info = Self::ring_info(pipeline, plan, slots);
        let feeds = open_feeds(paths, shards, &info)?;
        Ok(RingSink {
            feeds,
            linger,
            bar: None,
            watch: None,
            published: 0,
            pairs_per_step: (info.geometry.batch_size as usize * paths.len()) as f64,
            summary: None,
        })
    }

    /// The first global step any ring needs (a ring taken over resumes at its trainer's position,
    /// which may be behind or ahead of the command's start).
    pub fn resume_step(&self) -> Option<u64> {
        self.feeds.iter().map(|f| f.producer.next_step()).min()
    }

    /// Shows a progress bar of `steps` steps and tells the user when trainers attach and leave.
    pub fn show_progress(&mut self, steps: u64) {
        let bar = ProgressBar::new(steps).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
            )
            .expect("valid template"),
        );
        let paths = self.feeds.iter().map(|f| f.producer.path().to_path_buf());
        self.watch = Some(ConsumerWatch::spawn(paths.collect(), bar.clone()));
        self.bar = Some(bar);
    }

    /// Bytes of each ring file.
    pub fn file_bytes(&self) -> usize {
        self.feeds
            .first()
            .map_or(0, |f| f.producer.info().geometry.file_bytes())
    }

    /// The rings' verdict, once [`BatchSink::finish`] ran.
    pub fn summary(&self) -> Option<RingSummary> {
        self.summary
    }

    fn judge(&self, elapsed: Duration) -> RingSummary {
        let secs = elapsed.as_secs_f64().max(1e-9) * self.feeds.len().max(1) as f64;
        let waited = |i: usize| {
            self.feeds
                .iter()
                .map(|f| f.producer.stats().get(i))
                .sum::<u64>() as f64
                / 1e9
                / secs
        };
        let (producer_wait, consumer_wait) = (
            waited(stat::PRODUCER_WAIT_NS),
            waited(stat::CONSUMER_WAIT_NS),
        );
        RingSummary {
            consumed: self.feeds.iter().map(|f| f.producer.consumed()).sum(),
            producer_wait,
            consumer_wait,
            verdict: shared::Verdict::judge(consumer_wait, producer_wait, None, true),
        }
    }

    fn tick(&mut self) {
        self.published += 1;
        let Some(bar) = &self.bar else { return };
        if self.published % self.feeds.len() as u64 == 0 {
            bar.inc(1);
            let secs = bar.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{:.0} pairs/s",
                bar.position() as f64 * self.pairs_per_step / secs
            ));
        }
    }
}

impl BatchSink for RingSink {
    fn shards(&self) -> Vec<Shard> {
        self.feeds.iter().map(|f| f.shard).collect()
    }

    fn next_step(&self, lane: usize) -> Option<u64> {
        Some(self.feeds[lane].producer.next_step())
    }

    fn batch(
        &mut self,
        meta: BatchMeta,
        stop: &AtomicBool,
        fill: &mut Fill<'_>,
    ) -> anyhow::Result<Flow> {
        let mut slot = match self.feeds[meta.lane].producer.acquire(stop) {
            Ok(slot) => slot,
            Err(shared::RingError::Interrupted) => return Ok(Flow::Stop),
            Err(e) => return Err(e.into()),
        };
        slot.set_meta(meta.epoch, meta.step, meta.count);
        let stats: &Stats = slot.stats();
        fill(
            Destination {
                parts: slot.parts_mut(),
                params: None,
            },
            stats,
        )?;
        let t = Instant::now();
        slot.publish();
        stats.add(stat::WRITE_NS, t.elapsed().as_nanos() as u64);
        stats.add(stat::PAIRS_WRITTEN, meta.count as u64);
        self.tick();
        Ok(Flow::Continue)
    }

    fn finish(&mut self, report: &RunReport, stop: &AtomicBool) -> anyhow::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let interrupted = report.interrupted || stop.load(std::sync::atomic::Ordering::Relaxed);
        if !interrupted {
            for feed in &mut self.feeds {
                let producer = &mut feed.producer;
                producer.finish();
                let left = producer.written() - producer.consumed();
                if left > 0 {
                    eprintln!(
                        "loader: all batches written; waiting up to {}s for the trainer on {} to take the last {left}",
                        self.linger.as_secs(),
                        producer.path().display()
                    );
                }
                if !producer.wait_drained(stop, self.linger) {
                    eprintln!(
                        "loader: {} batches were never taken by a trainer",
                        producer.written() - producer.consumed()
                    );
                }
            }
        }
        self.watch = None;
        self.summary = Some(self.judge(report.elapsed));
        if interrupted {
            stop_feeds(std::mem::take(&mut self.feeds));
        }
        Ok(())
    }
}
