//! A model-free consumer: takes batches from the ring and releases them.
//!
//! `trainer --dry-run` measures the fastest the ring can be drained (the loader's ceiling as the
//! trainer sees it); `--throttle-ms` holds each batch to play a slow trainer; `--digest` prints a
//! hash of every batch so that two runs can be compared batch by batch.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shared::{fnv1a64_update, stat, Batch, Consumer, Geometry, RingError};

use crate::session::SessionSummary;

/// What a dry run does with each batch.
#[derive(Clone, Debug, Default)]
pub struct DryRunConfig {
    /// Stop after this many batches (None: until end of data).
    pub steps: Option<u64>,
    /// Hold each batch this long before releasing it (a simulated training step).
    pub throttle: Duration,
    /// Print `step <global step> <hash>` per batch and `total <hash>` at the end.
    pub digest: bool,
}

/// FNV-1a over a batch's valid samples: every view in order (for two views: view A, view B),
/// then labels and dataset indices (little-endian), so two runs that agree on every pixel and
/// label print the same digest. `geometry` is the ring's.
pub fn batch_digest(batch: &Batch<'_>, geometry: &Geometry) -> u64 {
    let n = batch.count();
    let mut h = shared::checksum::FNV1A64_INIT;
    let mut v = 0;
    for (g, group) in geometry.groups.iter().enumerate() {
        let sample = geometry.sample_bytes(g);
        for _ in 0..group.views {
            h = fnv1a64_update(h, &batch.view(v)[..n * sample]);
            v += 1;
        }
    }
    for (&label, &index) in batch.labels().iter().zip(batch.indices()) {
        h = fnv1a64_update(h, &label.to_le_bytes());
        h = fnv1a64_update(h, &index.to_le_bytes());
    }
    h
}

/// Consumes batches until `cfg.steps`, end of data or `stop`, writing digests to `out`.
pub fn dry_run(
    consumer: &mut Consumer,
    cfg: &DryRunConfig,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<SessionSummary> {
    let started = Instant::now();
    let mut summary = SessionSummary::default();
    let mut total = shared::checksum::FNV1A64_INIT;
    let geometry = consumer.info().geometry;
    loop {
        if cfg.steps.is_some_and(|s| summary.steps >= s) || stop.load(Ordering::Relaxed) {
            summary.interrupted = stop.load(Ordering::Relaxed);
            break;
        }
        let t_wait = Instant::now();
        let batch = match consumer.next_until(stop) {
            Err(RingError::Interrupted) => {
                summary.interrupted = true;
                break;
            }
            Err(e) => return Err(e.into()),
            Ok(Some(batch)) => batch,
            Ok(None) => {
                summary.end_of_data = true;
                break;
            }
        };
        summary.wait += t_wait.elapsed();
        let t_hold = Instant::now();
        if cfg.digest {
            let h = batch_digest(&batch, &geometry);
            total = fnv1a64_update(total, &h.to_le_bytes());
            writeln!(out, "step {} {h:016x}", batch.step())?;
        }
        summary.samples += batch.count() as u64;
        summary.steps += 1;
        if !cfg.throttle.is_zero() {
            std::thread::sleep(cfg.throttle.saturating_sub(t_hold.elapsed()));
        }
        batch.release();
        let held = t_hold.elapsed();
        summary.compute += held;
        // What a profiler of the ring reads as this consumer's compute time (issue 16).
        consumer.stats().add(stat::TRAIN_NS, held.as_nanos() as u64);
    }
    if cfg.digest {
        writeln!(out, "total {total:016x}")?;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}
