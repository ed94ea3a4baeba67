//! A training session fed by the ring: batches in, losses and timings out.
//!
//! Each step takes the next paired batch from the [`shared::Consumer`], converts both views to
//! normalised f32 with the ring header's mean/std, runs one optimizer step and releases the slot.
//! The time spent waiting for a batch and the time spent computing are kept apart, so the end
//! summary can say whether training was input-bound.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use dfdx::prelude::*;
use serde::Serialize;
use shared::{stat, Consumer};

use crate::input::normalize_batch;
use crate::model::TinyBarlow;

/// What to train and for how long.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Stop after this many steps (None: until the loader marks end of data).
    pub steps: Option<u64>,
    pub lambd: f32,
    pub lr: f64,
    pub weight_decay: f64,
    /// Print a stats line every this many steps (and at the last).
    pub print_freq: u64,
}

/// One line of training statistics (JSON on stdout, like the official `stats.txt`).
#[derive(Serialize, Debug, Clone)]
pub struct StepStats {
    pub epoch: u64,
    pub step: u64,
    pub lr: f64,
    pub loss: f32,
    /// Seconds since the session started.
    pub time: f64,
    /// Milliseconds this step waited for its batch.
    pub wait_ms: f64,
    /// Milliseconds this step computed.
    pub compute_ms: f64,
}

/// How a session went.
#[derive(Debug, Default)]
pub struct SessionSummary {
    pub steps: u64,
    pub samples: u64,
    pub losses: Vec<f32>,
    pub wait: Duration,
    pub compute: Duration,
    pub elapsed: Duration,
    pub end_of_data: bool,
    pub interrupted: bool,
}

impl SessionSummary {
    /// Fraction of wall time spent waiting for input.
    pub fn stall_fraction(&self) -> f64 {
        self.wait.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Trains the `tiny` model on `dev` from `consumer` until `cfg.steps`, end of data, or `stop`.
/// `out` receives one JSON [`StepStats`] line per printed step.
pub fn train_tiny<D>(
    dev: &D,
    consumer: &mut Consumer,
    cfg: &SessionConfig,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<SessionSummary>
where
    D: Device<f32>,
{
    let info = consumer.info().clone();
    let g = info.geometry;
    if g.channels != 3 {
        bail!(
            "the ring holds {}-channel images; the trainer expects RGB (3)",
            g.channels
        );
    }
    let (h, w) = (g.height as usize, g.width as usize);
    if h < 16 || w < 16 {
        bail!(
            "the ring's images are {h}x{w}; the model needs at least 16x16 (loader --image-size)"
        );
    }
    let mut model = TinyBarlow::<D>::new(dev);
    let mut opt = model.default_optimizer(cfg.lr, cfg.weight_decay);
    let started = Instant::now();
    let mut summary = SessionSummary::default();
    loop {
        if cfg.steps.is_some_and(|s| summary.steps >= s) || stop.load(Ordering::Relaxed) {
            summary.interrupted = stop.load(Ordering::Relaxed);
            break;
        }
        let t_wait = Instant::now();
        let batch = match consumer.next_until(stop) {
            Err(shared::RingError::Interrupted) => {
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
        let wait = t_wait.elapsed();
        let t_compute = Instant::now();
        let n = batch.count();
        if n < 2 {
            bail!("batch of {n} sample(s): the batch-normalised loss needs at least 2 (loader --batch-size)");
        }
        let sample = 3 * h * w;
        let a = normalize_batch(
            dev,
            &batch.view_a()[..n * sample],
            n,
            3,
            h,
            w,
            info.mean,
            info.std,
        );
        let b = normalize_batch(
            dev,
            &batch.view_b()[..n * sample],
            n,
            3,
            h,
            w,
            info.mean,
            info.std,
        );
        let (epoch, global_step) = (batch.epoch(), batch.step());
        batch.release();
        let loss = model.train_step(&mut opt, a, b, cfg.lambd)?;
        let compute = t_compute.elapsed();
        consumer
            .stats()
            .add(stat::TRAIN_NS, compute.as_nanos() as u64);
        if !loss.is_finite() {
            return Err(anyhow!(
                "loss became {loss} at step {global_step}; lower --lr"
            ));
        }
        summary.steps += 1;
        summary.samples += n as u64;
        summary.losses.push(loss);
        summary.wait += wait;
        summary.compute += compute;
        let last = cfg.steps == Some(summary.steps);
        if summary.steps % cfg.print_freq.max(1) == 0 || last || summary.steps == 1 {
            let line = StepStats {
                epoch,
                step: global_step,
                lr: cfg.lr,
                loss,
                time: started.elapsed().as_secs_f64(),
                wait_ms: wait.as_secs_f64() * 1e3,
                compute_ms: compute.as_secs_f64() * 1e3,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?).context("writing stats")?;
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}
