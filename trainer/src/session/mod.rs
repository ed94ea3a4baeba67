//! A training session fed by the ring: batches in, LARS steps, statistics and checkpoints out.
//!
//! Each step takes the next paired batch from the [`shared::Consumer`], converts both views to
//! normalised f32 with the ring header's mean/std, computes the loss and gradients, applies one
//! LARS step at the scheduled learning rates ([`crate::lars::Schedule`], epoch length from the
//! ring header) and releases the slot. Input wait and compute time are kept apart, so the end
//! summary can say whether training was input-bound. A checkpoint is written at every epoch end
//! and when the session ends (also on Ctrl-C and when the loader dies).

mod summary;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use shared::{stat, Consumer};

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
    let info = consumer.info().clone();
    let g = info.geometry;
    if g.channels != 3 {
        bail!(
            "the ring holds {}-channel images; the trainer expects RGB (3)",
            g.channels
        );
    }
    let (h, w) = (g.height as usize, g.width as usize);
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
    let ckpt_path = cfg.checkpoint_dir.as_ref().map(|d| d.join(CHECKPOINT_FILE));

    // the model: resumed or fresh
    let resumed = match &ckpt_path {
        Some(p) if cfg.resume && p.exists() => Some(checkpoint::load(p, dev)?),
        Some(p) if cfg.resume => {
            eprintln!(
                "trainer: --resume: no checkpoint at {} yet, starting fresh",
                p.display()
            );
            None
        }
        _ => None,
    };
    let (mut model, mut opt, mut step, skip_until) = match resumed {
        Some((model, mut opt, st)) => {
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
            let skip = (st.loader_seed == info.seed)
                .then_some(st.loader_step)
                .flatten();
            eprintln!(
                "trainer: resumed from {} at step {} (epoch {}, loader step {:?})",
                ckpt_path.as_ref().unwrap().display(),
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
            (model, opt, st.step, skip)
        }
        None => {
            let model = BarlowModel::new(dev, cfg.arch, &cfg.projector, cfg.seed);
            let opt = Lars::new(&model.store, cfg.lars);
            (model, opt, 0, None)
        }
    };
    eprintln!(
        "trainer: {} + projector {} ({} trainable parameters)",
        cfg.arch.name(),
        projector_spec(&cfg.projector),
        model.store.num_trainable()
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
    let mut stats_file = match &cfg.checkpoint_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            let p = d.join("stats.jsonl");
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .with_context(|| format!("opening {}", p.display()))?,
            )
        }
        None => None,
    };
    let bar = if cfg.progress && std::io::stderr().is_terminal() {
        let bar = match stop_at {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(step);
        Some(bar)
    } else {
        None
    };

    let started = Instant::now();
    let mut summary = SessionSummary::default();
    let mut epoch = 0u64;
    let mut loader_step: Option<u64> = None;
    let mut skipped = 0u64;
    let save = |model: &BarlowModel<D>,
                opt: &Lars<D>,
                step: u64,
                epoch: u64,
                loader_step: Option<u64>|
     -> anyhow::Result<Option<PathBuf>> {
        let Some(p) = &ckpt_path else { return Ok(None) };
        let st = TrainState {
            format: 1,
            arch: cfg.arch.name().into(),
            projector: cfg.projector.clone(),
            step,
            epoch,
            loader_step,
            loader_seed: info.seed,
            batch_size,
            image_hw: (h, w),
            mean: info.mean,
            std: info.std,
            lambd: cfg.lambd,
            momentum: cfg.lars.momentum,
            eta: cfg.lars.eta,
            weight_decay: cfg.lars.weight_decay,
        };
        checkpoint::save(p, model, Some(opt), &st)?;
        Ok(Some(p.clone()))
    };
    let result: anyhow::Result<()> = (|| {
        loop {
            if stop_at.is_some_and(|s| step >= s) || stop.load(Ordering::Relaxed) {
                summary.interrupted = stop.load(Ordering::Relaxed);
                return Ok(());
            }
            let t_wait = Instant::now();
            let batch = match consumer.next_until(stop) {
                Err(shared::RingError::Interrupted) => {
                    summary.interrupted = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    summary.end_of_data = true;
                    return Ok(());
                }
            };
            if skip_until.is_some_and(|s| batch.step() <= s) {
                // a restarted loader replays from its start: skip what the checkpoint has seen
                if skipped == 0 {
                    eprintln!(
                        "trainer: skipping the loader's batches up to its step {} (already trained on)",
                        skip_until.unwrap()
                    );
                }
                skipped += 1;
                continue;
            }
            let wait = t_wait.elapsed();
            let t_compute = Instant::now();
            let n = batch.count();
            if n < 2 {
                bail!("batch of {n} sample(s): the batch-normalised loss needs at least 2 (loader --batch-size)");
            }
            let sample = 3 * h * w;
            let (a, b) = normalize_views(
                dev,
                &batch.view_a()[..n * sample],
                &batch.view_b()[..n * sample],
                n,
                h,
                w,
                info.mean,
                info.std,
            )?;
            epoch = batch.epoch();
            loader_step = Some(batch.step());
            batch.release();
            let (lr_w, lr_b) = schedule.lrs(step);
            let sg = train_step(
                &mut model,
                &mut opt,
                a,
                b,
                cfg.lambd,
                (lr_w, lr_b),
                |_, _| {},
            )?;
            // the one wait for the device per step: everything is queued by now
            let loss = sg.loss();
            drop(sg);
            if !loss.is_finite() {
                return Err(anyhow!(
                    "loss became {loss} at step {step}; lower --lr-weights/--lr-biases"
                ));
            }
            let compute = t_compute.elapsed();
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
            consumer
                .stats()
                .add(stat::TRAIN_NS, compute.as_nanos() as u64);
            summary.steps += 1;
            summary.samples += n as u64;
            summary.losses.push(loss);
            summary.wait += wait;
            summary.compute += compute;
            let this_step = step;
            step += 1;
            let last = stop_at == Some(step);
            if summary.steps % cfg.print_freq.max(1) == 0 || last || summary.steps == 1 {
                let line = serde_json::to_string(&StepStats {
                    epoch,
                    step: this_step,
                    lr_weights: lr_w,
                    lr_biases: lr_b,
                    loss,
                    time: started.elapsed().as_secs_f64(),
                    wait_ms: wait.as_secs_f64() * 1e3,
                    compute_ms: compute.as_secs_f64() * 1e3,
                    ops_ms,
                    peak_mem_gib: summary.peak_memory.map(|b| b as f64 / (1u64 << 30) as f64),
                })?;
                writeln!(out, "{line}").context("writing stats")?;
                if let Some(f) = stats_file.as_mut() {
                    writeln!(f, "{line}").context("writing stats.jsonl")?;
                }
            }
            if let Some(bar) = &bar {
                bar.set_position(step);
                bar.set_message(format!("loss {loss:.3}"));
            }
            if step % steps_per_epoch == 0 {
                summary.checkpoint = save(&model, &opt, step, epoch, loader_step)?;
            }
        }
    })();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // checkpoint at exit, whatever ended the session (the model is consistent between steps)
    if summary.steps > 0 {
        match save(&model, &opt, step, epoch, loader_step) {
            Ok(p) => {
                if let Some(p) = &p {
                    eprintln!("trainer: checkpoint at step {step}: {}", p.display());
                }
                summary.checkpoint = p;
            }
            Err(e) if result.is_err() => eprintln!("trainer: could not save a checkpoint: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    result?;
    summary.global_step = step;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
