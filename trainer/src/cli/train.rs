//! `trainer` without a subcommand: attach to the ring, then train (or `--dry-run`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::{ring_path, Consumer, ProducerEvent};

use super::model_args::ModelArgs;
use super::DeviceArg;
use crate::device::{run_on_device, DeviceSetup, DeviceTask, RunDevice};
use crate::dry_run::{dry_run, DryRunConfig};
use crate::lars::LarsConfig;
use crate::session::{train, LoaderWait, SessionConfig, SessionSummary};

/// Training options (the default command).
#[derive(clap::Args, Debug)]
#[command(
    mut_arg("arch", |a| a.help("Backbone architecture")),
    mut_arg("projector", |a| a.help(
        "Projector sizes, dash-separated (Linear-BN-ReLU between, last Linear without BN) \
         [default: 8192-8192-8192; 128-128 for tiny]"
    ))
)]
pub struct TrainArgs {
    /// Ring name in /dev/shm (1-64 of [A-Za-z0-9._-]) or an absolute file path.
    #[arg(long, default_value = "barlow")]
    shm: String,
    /// Seconds to wait for the ring to appear (start the loader before or after the trainer).
    #[arg(long, default_value_t = 60.0)]
    wait: f64,
    /// If the loader dies, wait this many seconds for a new loader to take the ring over (start
    /// it again with the same command) instead of exiting: training then goes on with exactly the
    /// batch an uninterrupted run would have given, model and optimizer state untouched. The
    /// default, 0, exits at once as before: only a loader that something restarts (an operator,
    /// a supervisor, a job script) can come back, and without one, waiting idles the GPU and
    /// delays the job's restart from its checkpoint. With one, set about the time a restart
    /// takes plus a margin (e.g. 120).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    loader_restart_wait: f64,
    /// Accept a ring file owned by another user (e.g. root training from a ring a service
    /// account's loader made). Without it every user, root included, refuses a ring that is not
    /// their own; a ring writable by group or others is refused regardless.
    #[arg(long)]
    allow_foreign_ring: bool,
    /// Stop when the global step reaches N (counted from the checkpoint's step with --resume);
    /// also the schedule's length when --epochs is not given [default: until end of data].
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Train this many epochs (epoch length from the ring header); the cosine schedule's length
    /// [default: --steps, else the loader's planned steps, else 1000 epochs as the paper].
    #[arg(long)]
    epochs: Option<f64>,
    /// Weight of the off-diagonal (redundancy reduction) term.
    #[arg(long, default_value_t = crate::loss::DEFAULT_LAMBDA)]
    lambd: f32,
    #[command(flatten)]
    model: ModelArgs,
    /// Base learning rate of the weights (x batch/256) [default: 0.2; tiny: 5].
    #[arg(long)]
    lr_weights: Option<f64>,
    /// Base learning rate of biases and BatchNorm parameters (x batch/256) [default: 0.0048;
    /// tiny: 0.05].
    #[arg(long)]
    lr_biases: Option<f64>,
    /// LARS weight decay (weights only).
    #[arg(long, default_value_t = 1.5e-6)]
    weight_decay: f64,
    /// Linear warm-up length in epochs [default: 10; tiny: 5].
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Print a statistics line every K steps.
    #[arg(long, default_value_t = 10)]
    print_freq: u64,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArg,
    /// Write DIR/checkpoint.safetensors every epoch and at exit, and DIR/stats.jsonl.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Continue from DIR/checkpoint.safetensors (step, learning rate, momentum, data position).
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
    /// No progress bar (it is only drawn on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Take and release batches without a model: the fastest the ring can be drained.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: hold each batch this many milliseconds (a simulated slow trainer).
    #[arg(long, default_value_t = 0, requires = "dry_run")]
    throttle_ms: u64,
    /// With --dry-run: print `step <global step> <hash>` per batch and `total <hash>` at the end.
    #[arg(long, requires = "dry_run")]
    digest: bool,
    /// On CUDA: full FP32 convolutions and matrix products. By default they use TF32 tensor
    /// cores (10-bit mantissa products, FP32 sums), as PyTorch does for convolutions.
    #[arg(long)]
    no_tf32: bool,
    /// Measure the device time of every op (CUDA events on a GPU) and report it per kind
    /// (conv forward/backward, BatchNorm, pool/add/ReLU, optimizer, other) in each stats line and
    /// the summary, with the peak device memory. Adds a little overhead per op.
    #[arg(long)]
    profile_ops: bool,
}

impl TrainArgs {
    /// Attaches to the ring and trains (or drains it, `--dry-run`); the exit code.
    pub fn run(self) -> anyhow::Result<i32> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\ntrainer: interrupted, stopping after the current step (Ctrl-C again to force)"
            );
        })
        .context("installing the Ctrl-C handler")?;
        let model = self.model.resolve()?;
        let path = ring_path(&self.shm)?;
        let restart_wait = Duration::try_from_secs_f64(self.loader_restart_wait).map_err(|_| {
            anyhow::anyhow!(
                "--loader-restart-wait must be a number of seconds, 0 or more (got {})",
                self.loader_restart_wait
            )
        })?;
        shared::ownership::allow_other_owner(self.allow_foreign_ring);
        if self.resume {
            print_resume_hint(self.checkpoint_dir.as_deref(), &self.shm);
        }
        eprintln!(
            "trainer: waiting up to {:.0}s for the ring {}",
            self.wait,
            path.display()
        );
        let mut consumer = Consumer::attach(&path, Duration::from_secs_f64(self.wait))?;
        if !restart_wait.is_zero() {
            consumer.set_restart_wait(restart_wait, report_loader_restart);
        }
        let info = consumer.info();
        let g = info.geometry;
        eprintln!(
            "trainer: attached: {} recipe, batches of {} x ({}) views of {} channels, {} images, {} steps per epoch",
            if info.recipe.is_empty() { "an unnamed" } else { &info.recipe },
            g.batch_size, g.shape(), g.channels, info.dataset_len, info.steps_per_epoch
        );
        let mut stdout = std::io::stdout().lock();
        let summary = if self.dry_run {
            let cfg = DryRunConfig {
                steps: self.steps,
                throttle: Duration::from_millis(self.throttle_ms),
                digest: self.digest,
            };
            let loader_wait = LoaderWait::start(&consumer);
            let summary = dry_run(&mut consumer, &cfg, &stop, &mut stdout)?;
            summary.print(loader_wait.fraction(&consumer, &summary));
            summary
        } else {
            let cfg = SessionConfig {
                arch: model.arch,
                projector: model.projector,
                seed: self.seed,
                steps: self.steps,
                epochs: self.epochs,
                lambd: self.lambd,
                lr_weights: self.lr_weights.unwrap_or(model.preset.lr_weights),
                lr_biases: self.lr_biases.unwrap_or(model.preset.lr_biases),
                warmup_epochs: self.warmup_epochs.unwrap_or(model.preset.warmup_epochs),
                lars: LarsConfig {
                    weight_decay: self.weight_decay,
                    ..Default::default()
                },
                print_freq: self.print_freq,
                checkpoint_dir: self.checkpoint_dir.clone(),
                resume: self.resume,
                progress: !self.no_progress,
            };
            crate::nn::profile::set_enabled(self.profile_ops);
            let loader_wait = LoaderWait::start(&consumer);
            let setup = DeviceSetup {
                seed: self.seed,
                cache: true,
                tf32: Some(!self.no_tf32),
            };
            let task = TrainTask {
                consumer: &mut consumer,
                cfg: &cfg,
                stop: &stop,
                out: &mut stdout,
                tf32: !self.no_tf32,
            };
            let summary = run_on_device(self.device.kind(), setup, task)?;
            summary.print(loader_wait.fraction(&consumer, &summary));
            summary
        };
        Ok(if summary.interrupted { 130 } else { 0 })
    }
}

/// A training session on the chosen device.
struct TrainTask<'a> {
    consumer: &'a mut Consumer,
    cfg: &'a SessionConfig,
    stop: &'a AtomicBool,
    out: &'a mut dyn std::io::Write,
    /// Only names the math mode in the message ([`DeviceSetup::tf32`] sets it).
    tf32: bool,
}

impl DeviceTask for TrainTask<'_> {
    type Output = SessionSummary;

    fn run<D: RunDevice>(self, dev: &D) -> anyhow::Result<SessionSummary> {
        let arch = self.cfg.arch.name();
        match dev.cudnn()? {
            None => eprintln!("trainer: arch {arch} on cpu"),
            Some(cudnn) => eprintln!(
                "trainer: arch {arch} on cuda ({cudnn}, {})",
                if self.tf32 {
                    "TF32 tensor cores"
                } else {
                    "FP32"
                }
            ),
        }
        train(dev, self.consumer, self.cfg, self.stop, self.out)
    }
}

/// Tells the user, once each, that the loader died and that a new one took over.
fn report_loader_restart(event: &ProducerEvent) {
    match event {
        ProducerEvent::Died { pid, wait } => eprintln!(
            "trainer: the loader (pid {pid}) is gone; waiting up to {:.0}s for a new loader to take the ring over \
             (start it again with the same command); model and optimizer state are kept",
            wait.as_secs_f64()
        ),
        ProducerEvent::Back {
            pid,
            waited,
            position,
        } => eprintln!(
            "trainer: a loader (pid {pid}) took the ring over after {:.1}s; continuing with the ring's batch {position}",
            waited.as_secs_f64()
        ),
    }
}

/// Before attaching on `--resume`: the loader command that continues the data stream exactly where
/// the checkpoint left it (a loader started from step 0 works too; its batches up to the
/// checkpoint are skipped, at the cost of decoding them again).
fn print_resume_hint(checkpoint_dir: Option<&Path>, shm: &str) {
    let Some(dir) = checkpoint_dir else { return };
    let path = dir.join(crate::checkpoint::CHECKPOINT_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let Ok(st) = crate::checkpoint::read_state(&bytes) else {
        return;
    };
    if let Some(last) = st.loader_step {
        eprintln!(
            "trainer: resuming after the loader's step {last}; start (or restart) the loader with\n  \
             loader --shm {shm} --seed {} --batch-size {} --image-size {} --start-step {} [your other options]",
            st.loader_seed,
            st.batch_size,
            st.image_hw.0,
            last + 1
        );
    }
}
