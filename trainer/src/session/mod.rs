//! A training session fed by the ring: batches in, LARS steps, statistics and checkpoints out.
//!
//! Each step takes the next paired batch from the [`shared::Consumer`], converts both views to
//! normalised f32 with the ring header's mean/std, computes the loss and gradients, applies one
//! LARS step at the scheduled learning rates ([`crate::lars::Schedule`], epoch length from the
//! ring header) and releases the slot. Input wait and compute time are kept apart, so the end
//! summary can say whether training was input-bound. A checkpoint is written at every epoch end
//! and when the session ends (also on Ctrl-C and when the loader dies).

mod summary;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use indicatif::ProgressBar;
use serde::Serialize;
use shared::{stat, Consumer, RingInfo};

use crate::checkpoint::{self, TrainState, CHECKPOINT_FILE};
use crate::input::normalize_views;
use crate::lars::{Lars, LarsConfig, Schedule};
use crate::model::{projector_spec, Arch, BarlowModel, StepGrads};
use crate::nn::profile::{self, OpKind};
use crate::nn::{Fmap, NnDevice};

pub use summary::{LoaderWait, SessionSummary};

/// What to train and for how long.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub arch: Arch,
    pub projector: Vec<usize>,
    /// Seed of the weight initialisation.
    pub seed: u64,
    /// Stop when the global step reaches this (None: see `epochs`, else end of data).
    pub steps: Option<u64>,
    /// Planned epochs: the cosine schedule's length, and a stop at `epochs * steps_per_epoch`.
    pub epochs: Option<f64>,
    pub lambd: f32,
    pub lr_weights: f64,
    pub lr_biases: f64,
    pub warmup_epochs: f64,
    pub lars: LarsConfig,
    /// Print a stats line every this many steps (and the first and last).
    pub print_freq: u64,
    /// Where checkpoints and `stats.jsonl` go (None: nowhere).
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from `checkpoint_dir/checkpoint.safetensors` if it exists.
    pub resume: bool,
    /// Show a progress bar (stderr must be a terminal too).
    pub progress: bool,
}

/// One line of training statistics (JSON on stdout and in `DIR/stats.jsonl`, like the official
/// `stats.txt`).
#[derive(Serialize, Debug, Clone)]
pub struct StepStats {
    pub epoch: u64,
    /// Global step (the learning-rate schedule's step).
    pub step: u64,
    pub lr_weights: f64,
    pub lr_biases: f64,
    pub loss: f32,
    /// Seconds since the session started.
    pub time: f64,
    /// Milliseconds this step waited for its batch.
    pub wait_ms: f64,
    /// Milliseconds this step computed.
    pub compute_ms: f64,
    /// With `--profile-ops`: device milliseconds of this step per kind of op (`conv_fwd`,
    /// `conv_bwd`, `bn_fwd`, `bn_bwd`, `pool_add_relu`, `optimizer`, and `other`: the rest of
    /// the step, i.e. the projector's matrix products, the loss and input conversion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_ms: Option<std::collections::BTreeMap<&'static str, f64>>,
    /// With `--profile-ops` on a GPU: the largest device memory in use seen so far (GiB,
    /// sampled after every op; includes dfdx's allocation cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_mem_gib: Option<f64>,
}

/// One training step, as every caller runs it (the session, `trainer bench`, `trainer
/// step-dump`): both views forward and backward with the loss ([`BarlowModel::loss_and_grads`]),
/// then the LARS update at `(lr_weights, lr_biases)`, timed as the optimizer's op kind. The loss
/// stays on the device ([`StepGrads::loss`] reads it): read it after queueing the next work.
pub fn train_step<D: NnDevice>(
    model: &mut BarlowModel<D>,
    opt: &mut Lars<D>,
    a: Fmap<D>,
    b: Fmap<D>,
    lambd: f32,
    (lr_weights, lr_biases): (f64, f64),
    inspect: impl FnOnce(&BarlowModel<D>, &dfdx::prelude::Gradients<f32, D>),
) -> anyhow::Result<StepGrads<D>> {
    let mut sg = model.loss_and_grads(a, b, lambd)?;
    // LARS takes the gradients out: whoever wants to see them looks now
    inspect(model, &sg.grads);
    let dev = sg.loss_tensor.device().clone();
    profile::timed(&dev, OpKind::Optimizer, || {
        opt.step(&mut model.store, &mut sg.grads, lr_weights, lr_biases)
    })?;
    Ok(sg)
}

/// Trains from `consumer` on `dev` until the configured step/epoch, end of data, or `stop`.
/// `out` receives the JSON [`StepStats`] lines.
pub fn train<D: NnDevice>(
    dev: &D,
    consumer: &mut Consumer,
    cfg: &SessionConfig,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<SessionSummary> {
    let mut session = Session::open(dev, consumer.info(), cfg)?;
    let result = loop {
        match session.step(consumer, stop, out) {
            Ok(ControlFlow::Continue(())) => {}
            Ok(ControlFlow::Break(())) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    session.finish(result)
}

/// A session between two steps: the model, its optimizer and where training stands.
struct Session<'a, D: NnDevice> {
    dev: &'a D,
    cfg: &'a SessionConfig,
    info: RingInfo,
    /// The ring's image height and width.
    hw: (usize, usize),
    steps_per_epoch: u64,
    schedule: Schedule,
    /// The global step to stop at (None: end of data).
    stop_at: Option<u64>,
    checkpoint_path: Option<PathBuf>,
    model: BarlowModel<D>,
    opt: Lars<D>,
    /// The global step of the next step.
    step: u64,
    /// The epoch and loader step of the last batch trained on.
    epoch: u64,
    loader_step: Option<u64>,
    /// After a resume: the loader's steps up to this one were trained on already.
    skip_until: Option<u64>,
    skipped: u64,
    stats_file: Option<File>,
    bar: Option<ProgressBar>,
    started: Instant,
    summary: SessionSummary,
}

/// The model and optimizer a session starts from, and at which global step.
struct Start<D: NnDevice> {
    model: BarlowModel<D>,
    opt: Lars<D>,
    step: u64,
    skip_until: Option<u64>,
}

impl<'a, D: NnDevice> Session<'a, D> {
    /// Checks the ring's geometry against the model, resumes from the checkpoint (with
    /// `cfg.resume`) or starts fresh, and plans the schedule, the stats file and the progress bar.
    fn open(dev: &'a D, info: &RingInfo, cfg: &'a SessionConfig) -> anyhow::Result<Self> {
        let info = info.clone();
        let g = info.geometry;
        if g.channels != 3 {
            bail!(
                "the ring holds {}-channel images; the trainer expects RGB (3)",
                g.channels
            );
        }
        let two_views = g.groups.len() == 1 && g.groups[0].views == 2;
        if !two_views {
            bail!(
                "the ring carries the {} recipe's views ({} per sample: {}, views x height x width); \
                 Barlow Twins trains on two views of one size: run the loader with --recipe \
                 barlow-twins (or moco-v3), or read this ring from Python (barlow.torch.RingLoader \
                 yields every crop); trainer --dry-run reads any ring",
                if info.recipe.is_empty() { "unnamed" } else { &info.recipe },
                g.views(),
                g.shape()
            );
        }
        let (h, w) = (g.groups[0].height as usize, g.groups[0].width as usize);
        let min = cfg.arch.min_input();
        if h < min || w < min {
            bail!(
                "the ring's images are {h}x{w}; {} needs at least {min}x{min} (loader --image-size)",
                cfg.arch.name()
            );
        }
        let batch_size = g.batch_size as usize;
        let steps_per_epoch = if info.steps_per_epoch > 0 {
            info.steps_per_epoch
        } else if info.dataset_len > 0 {
            info.dataset_len.div_ceil(batch_size as u64)
        } else {
            eprintln!("trainer: the ring does not say its epoch length; using 1000 steps per epoch for the schedule");
            1000
        };
        let checkpoint_path = cfg.checkpoint_dir.as_ref().map(|d| d.join(CHECKPOINT_FILE));
        let start = resume_or_start(dev, cfg, &info, checkpoint_path.as_deref())?;
        eprintln!(
            "trainer: {} + projector {} ({} trainable parameters)",
            cfg.arch.name(),
            projector_spec(&cfg.projector),
            start.model.store.num_trainable()
        );

        let stop_at = cfg.steps.or_else(|| {
            cfg.epochs
                .map(|e| (e * steps_per_epoch as f64).round() as u64)
        });
        let epochs = cfg
            .epochs
            .unwrap_or_else(|| match (cfg.steps, info.total_steps) {
                (Some(s), _) => s as f64 / steps_per_epoch as f64,
                (None, t) if t > 0 => t as f64 / steps_per_epoch as f64,
                _ => 1000.0,
            });
        let schedule = Schedule {
            batch_size,
            steps_per_epoch,
            warmup_epochs: cfg.warmup_epochs,
            epochs,
            lr_weights: cfg.lr_weights,
            lr_biases: cfg.lr_biases,
        };
        eprintln!(
            "trainer: LARS lr-weights {} lr-biases {} x batch {batch_size}/256, {} warm-up epochs, cosine over {:.2} epochs of {steps_per_epoch} steps",
            cfg.lr_weights, cfg.lr_biases, cfg.warmup_epochs, epochs
        );
        let stats_file = open_stats_file(cfg)?;
        let bar = progress_bar(cfg, stop_at, start.step);
        Ok(Session {
            dev,
            cfg,
            info,
            hw: (h, w),
            steps_per_epoch,
            schedule,
            stop_at,
            checkpoint_path,
            model: start.model,
            opt: start.opt,
            step: start.step,
            epoch: 0,
            loader_step: None,
            skip_until: start.skip_until,
            skipped: 0,
            stats_file,
            bar,
            started: Instant::now(),
            summary: SessionSummary::default(),
        })
    }

    /// Takes the next batch and trains on it (a batch trained on before a resume is skipped);
    /// `Break` when the session should end: the step or epoch reached, `stop`, end of data.
    fn step(
        &mut self,
        consumer: &mut Consumer,
        stop: &AtomicBool,
        out: &mut dyn Write,
    ) -> anyhow::Result<ControlFlow<()>> {
        if self.stop_at.is_some_and(|s| self.step >= s) || stop.load(Ordering::Relaxed) {
            self.summary.interrupted = stop.load(Ordering::Relaxed);
            return Ok(ControlFlow::Break(()));
        }
        let t_wait = Instant::now();
        let batch = match consumer.next_until(stop) {
            Err(shared::RingError::Interrupted) => {
                self.summary.interrupted = true;
                return Ok(ControlFlow::Break(()));
            }
            Err(e) => return Err(e.into()),
            Ok(Some(batch)) => batch,
            Ok(None) => {
                self.summary.end_of_data = true;
                return Ok(ControlFlow::Break(()));
            }
        };
        if let Some(until) = self.skip_until.filter(|&s| batch.step() <= s) {
            // a restarted loader replays from its start: skip what the checkpoint has seen
            if self.skipped == 0 {
                eprintln!(
                    "trainer: skipping the loader's batches up to its step {until} (already trained on)"
                );
            }
            self.skipped += 1;
            return Ok(ControlFlow::Continue(()));
        }
        let wait = t_wait.elapsed();
        let t_compute = Instant::now();
        let n = batch.count();
        if n < 2 {
            bail!("batch of {n} sample(s): the batch-normalised loss needs at least 2 (loader --batch-size)");
        }
        let (h, w) = self.hw;
        let sample = 3 * h * w;
        let (a, b) = normalize_views(
            self.dev,
            &batch.view(0)[..n * sample],
            &batch.view(1)[..n * sample],
            n,
            h,
            w,
            self.info.mean,
            self.info.std,
        )?;
        self.epoch = batch.epoch();
        self.loader_step = Some(batch.step());
        batch.release();
        let lrs = self.schedule.lrs(self.step);
        let sg = train_step(
            &mut self.model,
            &mut self.opt,
            a,
            b,
            self.cfg.lambd,
            lrs,
            |_, _| {},
        )?;
        // the one wait for the device per step: everything is queued by now
        let loss = sg.loss();
        drop(sg);
        if !loss.is_finite() {
            return Err(anyhow!(
                "loss became {loss} at step {}; lower --lr-weights/--lr-biases",
                self.step
            ));
        }
        let compute = t_compute.elapsed();
        consumer
            .stats()
            .add(stat::TRAIN_NS, compute.as_nanos() as u64);
        self.record(n, loss, lrs, (wait, compute), out)?;
        // (`u64::is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.86)
        #[allow(clippy::manual_is_multiple_of)]
        let epoch_end = self.step % self.steps_per_epoch == 0;
        if epoch_end {
            self.summary.checkpoint = self.save()?;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Counts a step of `n` pairs in the summary, advances the global step, and writes the
    /// stats line (every `print_freq` steps, the first and the last) and the progress bar.
    fn record(
        &mut self,
        n: usize,
        loss: f32,
        (lr_weights, lr_biases): (f64, f64),
        (wait, compute): (Duration, Duration),
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let summary = &mut self.summary;
        let ops_ms = profile::enabled().then(|| {
            let totals = profile::take_totals();
            let compute_ms = compute.as_secs_f64() * 1e3;
            let acc = summary.op_totals.get_or_insert(([0.0; 6], 0.0));
            for (a, t) in acc.0.iter_mut().zip(totals) {
                *a += t;
            }
            acc.1 += compute_ms;
            profile::breakdown(totals, compute_ms)
        });
        let peak = profile::peak_memory();
        if peak > 0 {
            summary.peak_memory = Some(peak);
        }
        summary.steps += 1;
        summary.samples += n as u64;
        summary.losses.push(loss);
        summary.wait += wait;
        summary.compute += compute;
        let this_step = self.step;
        self.step += 1;
        let last = self.stop_at == Some(self.step);
        #[allow(clippy::manual_is_multiple_of)] // as in `step`
        let print = summary.steps % self.cfg.print_freq.max(1) == 0 || last || summary.steps == 1;
        if print {
            let line = serde_json::to_string(&StepStats {
                epoch: self.epoch,
                step: this_step,
                lr_weights,
                lr_biases,
                loss,
                time: self.started.elapsed().as_secs_f64(),
                wait_ms: wait.as_secs_f64() * 1e3,
                compute_ms: compute.as_secs_f64() * 1e3,
                ops_ms,
                peak_mem_gib: summary.peak_memory.map(|b| b as f64 / (1u64 << 30) as f64),
            })?;
            writeln!(out, "{line}").context("writing stats")?;
            if let Some(f) = self.stats_file.as_mut() {
                writeln!(f, "{line}").context("writing stats.jsonl")?;
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position(self.step);
            bar.set_message(format!("loss {loss:.3}"));
        }
        Ok(())
    }

    /// Writes the checkpoint (model, optimizer, where the data stands); None without
    /// `--checkpoint-dir`.
    fn save(&self) -> anyhow::Result<Option<PathBuf>> {
        let Some(p) = &self.checkpoint_path else {
            return Ok(None);
        };
        let (cfg, info) = (self.cfg, &self.info);
        let st = TrainState {
            format: 1,
            arch: cfg.arch.name().into(),
            projector: cfg.projector.clone(),
            step: self.step,
            epoch: self.epoch,
            loader_step: self.loader_step,
            loader_seed: info.seed,
            batch_size: self.schedule.batch_size,
            image_hw: self.hw,
            mean: info.mean,
            std: info.std,
            lambd: cfg.lambd,
            momentum: cfg.lars.momentum,
            eta: cfg.lars.eta,
            weight_decay: cfg.lars.weight_decay,
        };
        checkpoint::save(p, &self.model, Some(&self.opt), &st)?;
        Ok(Some(p.clone()))
    }

    /// Ends the session however `result` says it ended: clears the bar and writes the
    /// checkpoint (the model is consistent between steps; a failed save after an error is only
    /// reported).
    fn finish(mut self, result: anyhow::Result<()>) -> anyhow::Result<SessionSummary> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.summary.steps > 0 {
            match self.save() {
                Ok(p) => {
                    if let Some(p) = &p {
                        eprintln!("trainer: checkpoint at step {}: {}", self.step, p.display());
                    }
                    self.summary.checkpoint = p;
                }
                Err(e) if result.is_err() => {
                    eprintln!("trainer: could not save a checkpoint: {e:#}")
                }
                Err(e) => return Err(e),
            }
        }
        result?;
        self.summary.global_step = self.step;
        self.summary.elapsed = self.started.elapsed();
        Ok(self.summary)
    }
}

/// The checkpoint's model and optimizer with `cfg.resume` when there is one (checked against
/// `cfg`'s architecture and projector), else a fresh model from `cfg.seed` at step 0.
fn resume_or_start<D: NnDevice>(
    dev: &D,
    cfg: &SessionConfig,
    info: &RingInfo,
    checkpoint_path: Option<&Path>,
) -> anyhow::Result<Start<D>> {
    let resumed = match checkpoint_path {
        Some(p) if cfg.resume && p.exists() => Some((p, checkpoint::load(p, dev)?)),
        Some(p) if cfg.resume => {
            eprintln!(
                "trainer: --resume: no checkpoint at {} yet, starting fresh",
                p.display()
            );
            None
        }
        _ => None,
    };
    let Some((path, (model, mut opt, st))) = resumed else {
        let model = BarlowModel::new(dev, cfg.arch, &cfg.projector, cfg.seed);
        let opt = Lars::new(&model.store, cfg.lars);
        return Ok(Start {
            model,
            opt,
            step: 0,
            skip_until: None,
        });
    };
    if model.arch != cfg.arch || model.projector != cfg.projector {
        bail!(
            "the checkpoint holds {} with projector {}, but this run asks for {} with projector {}; pass the same --arch/--projector",
            st.arch,
            projector_spec(&st.projector),
            cfg.arch.name(),
            projector_spec(&cfg.projector)
        );
    }
    opt.cfg = cfg.lars;
    let skip_until = (st.loader_seed == info.seed)
        .then_some(st.loader_step)
        .flatten();
    eprintln!(
        "trainer: resumed from {} at step {} (epoch {}, loader step {:?})",
        path.display(),
        st.step,
        st.epoch,
        st.loader_step
    );
    if st.loader_seed != info.seed {
        eprintln!(
            "trainer: the loader's seed changed ({} -> {}); not skipping batches",
            st.loader_seed, info.seed
        );
    }
    Ok(Start {
        model,
        opt,
        step: st.step,
        skip_until,
    })
}

/// `DIR/stats.jsonl`, opened for appending (the directory created), with `--checkpoint-dir`.
fn open_stats_file(cfg: &SessionConfig) -> anyhow::Result<Option<File>> {
    let Some(d) = &cfg.checkpoint_dir else {
        return Ok(None);
    };
    std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    let p = d.join("stats.jsonl");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    Ok(Some(file))
}

/// A bar up to the step to stop at (a spinner without one), when asked for and stderr is a
/// terminal.
fn progress_bar(cfg: &SessionConfig, stop_at: Option<u64>, step: u64) -> Option<ProgressBar> {
    if !cfg.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match stop_at {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(step);
    Some(bar)
}
