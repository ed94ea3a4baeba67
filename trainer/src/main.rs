//! `trainer`: Barlow Twins pre-training fed by `loader` through a shared-memory ring.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use shared::{ring_path, Consumer, ProducerEvent};
use trainer::dfdx::prelude::*;
use trainer::dry_run::{dry_run, DryRunConfig};
use trainer::lars::LarsConfig;
use trainer::model::{parse_projector, Arch as ModelArch};
use trainer::nn::NnDevice;
use trainer::session::{train, SessionConfig, SessionSummary};

/// Learning-rate defaults of the `tiny` preset: the recipe that learns over long runs on the demo
/// data (the k-NN check's, scripts/knn-check.sh) and still shows the loss falling in the demo's
/// 60 steps. (The paper's values are for ResNet-50 at batch 2048 over 1000 epochs.)
const TINY_LR_WEIGHTS: f64 = 5.0;
const TINY_LR_BIASES: f64 = 0.05;
const TINY_WARMUP_EPOCHS: f64 = 5.0;

/// Train a backbone + projector with the Barlow Twins loss on paired views read from a ring that
/// `loader --shm NAME` fills. Batch size, image size, normalisation and epoch length come from
/// the ring.
///
/// Prints one JSON line of statistics (epoch, step, lr_weights, lr_biases, loss, time, wait_ms,
/// compute_ms) per --print-freq steps on stdout (and in DIR/stats.jsonl with --checkpoint-dir)
/// and a summary on stderr. Optimizer: LARS as in the official code (momentum 0.9, eta 0.001,
/// weight decay and trust ratio on weights only), learning rates scaled by batch/256, linear
/// warm-up then cosine decay to 0.001x.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Presets: --arch tiny defaults to --projector 128-128, --lr-weights 5, --lr-biases 0.05, \
--warmup-epochs 5 (what learns on the demo data over long runs, and shows the loss falling in a demo of a few dozen steps); resnet18/resnet50 default to the \
paper's --projector 8192-8192-8192, --lr-weights 0.2, --lr-biases 0.0048, --warmup-epochs 10.\n\n\
Examples:\n  loader --shm bt0 &\n  trainer --shm bt0 --steps 100\n  \
trainer --shm bt0 --arch resnet50 --epochs 1000 --checkpoint-dir runs/r50 --resume\n  \
trainer eval --checkpoint runs/r50/checkpoint.safetensors --dir /data/val\n  \
trainer export --checkpoint runs/r50/checkpoint.safetensors --out r50.safetensors\n  \
trainer step-dump --out /tmp/r18 && python3 reference/step_check.py  (one step vs the official code)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: Args,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Run one training step on CPU and on CUDA from the same weights and inputs, and compare the
    /// loss, every parameter's gradient and the BatchNorm running statistics (exit 1 if they
    /// differ by more than the tolerance).
    CheckDevices {
        /// Backbone to compare.
        #[arg(long, value_enum, default_value_t = Arch::Tiny)]
        arch: Arch,
        /// Projector sizes [default: the architecture's preset].
        #[arg(long)]
        projector: Option<String>,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Let CUDA use TF32 tensor cores (convolutions and matrix products), as training does
        /// by default; the comparison is then against FP32 on the CPU, with a looser bound.
        #[arg(long)]
        tf32: bool,
        /// Largest relative error accepted on the loss, the whole gradient and the running stats
        /// [default: 1e-3; with --tf32: 3e-2].
        #[arg(long)]
        tolerance: Option<f64>,
    },
    /// Time training steps (both views forward and backward, loss, LARS) on random inputs
    /// already on the device, and print one JSON line: ms per step (median), the device time
    /// per kind of op and the peak device memory (what scripts/gpu-check.sh compares with
    /// PyTorch).
    Bench {
        #[arg(long, value_enum, default_value_t = Arch::Resnet50)]
        arch: Arch,
        /// Projector sizes [default: the architecture's preset].
        #[arg(long)]
        projector: Option<String>,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        #[arg(long, default_value_t = 224)]
        image_size: usize,
        /// Timed steps (after the warm-up).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed, profiled steps first (the cuDNN algorithm search happens in the first).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// On CUDA: full FP32 instead of TF32 tensor cores.
        #[arg(long)]
        no_tf32: bool,
        /// Compute device [default: cuda when built with it and a GPU is present, else cpu].
        #[arg(long, value_enum)]
        device: Option<DeviceKind>,
    },
    /// Run barlow's training step(s) on the CPU from a seeded model on seeded random batches and
    /// write the state before and after as safetensors under the official parameter names: what
    /// `reference/step_check.py` loads into the official PyTorch code (torchvision ResNet, the
    /// official projector, loss and LARS) to compare the loss, every gradient, the updated
    /// parameters, the LARS momentum and the BatchNorm running statistics.
    ///
    /// DIR/init.safetensors: every parameter and running statistic before the first step, and the
    /// batches (`views.a.<k>`, `views.b.<k>`: u8 [batch, 3, size, size]); DIR/after.safetensors:
    /// the state after the last step, the LARS momentum (`lars.mu.<name>`) and every step's
    /// gradients (`grad.<k>.<name>`, k = 0, 1, ...). Both carry the run's settings, learning rates and losses as
    /// JSON in the metadata key `barlow.step_dump`, also printed on stdout.
    #[command(
        after_help = "Example (step 25: after the 10-epoch warm-up at 2 steps per epoch):\n  \
trainer step-dump --arch resnet18 --projector 64-64-64 --steps 3 --start-step 25 --out /tmp/r18\n  \
python3 reference/step_check.py --help"
    )]
    StepDump {
        /// Directory to write init.safetensors and after.safetensors into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Arch::Resnet18)]
        arch: Arch,
        /// Projector sizes [default: the architecture's preset].
        #[arg(long)]
        projector: Option<String>,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        /// Seed of the weights and of the batches.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Training steps to run, each on a batch of its own.
        #[arg(long, default_value_t = 1)]
        steps: usize,
        /// Global step of the first step: its place in the learning-rate schedule.
        #[arg(long, default_value_t = 5)]
        start_step: u64,
        /// Steps per epoch of the schedule (the official warm-up is 10 epochs of these).
        #[arg(long, default_value_t = 2)]
        steps_per_epoch: u64,
        /// Planned epochs (the cosine schedule's length).
        #[arg(long, default_value_t = 100.0)]
        epochs: f64,
        #[arg(long, default_value_t = 10.0)]
        warmup_epochs: f64,
        /// Base learning rate of the weights (x batch/256).
        #[arg(long, default_value_t = 0.2)]
        lr_weights: f64,
        /// Base learning rate of biases and BatchNorm parameters (x batch/256).
        #[arg(long, default_value_t = 0.0048)]
        lr_biases: f64,
        #[arg(long, default_value_t = 1.5e-6)]
        weight_decay: f64,
        #[arg(long, default_value_t = trainer::loss::DEFAULT_LAMBDA)]
        lambd: f32,
    },
    /// Write the backbone of a checkpoint as safetensors with torchvision's parameter names
    /// (load with `torchvision.models.resnet50().load_state_dict(sd, strict=False)`; fc is absent).
    Export {
        /// A checkpoint written by training (DIR/checkpoint.safetensors).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// k-NN (cosine, leave-one-out, similarity-weighted vote) top-1 accuracy of the backbone's
    /// features on a labelled folder root/<class>/<image>, centre crop, no augmentation.
    Eval {
        /// A checkpoint written by training; without it, a randomly initialised --arch model.
        #[arg(long, required_unless_present = "random_init")]
        checkpoint: Option<PathBuf>,
        /// Evaluate a freshly initialised model (a baseline) instead of a checkpoint.
        #[arg(long, conflicts_with = "checkpoint")]
        random_init: bool,
        /// Architecture of --random-init.
        #[arg(long, value_enum, default_value_t = Arch::Tiny)]
        arch: Arch,
        /// Seed of --random-init.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Labelled folder [default: the built-in demo dataset, created if missing].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Side of the centre crop [default: the checkpoint's training size, else 64].
        #[arg(long)]
        image_size: Option<usize>,
        /// Neighbours.
        #[arg(long, default_value_t = 20)]
        k: usize,
        /// Images per forward pass.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Compute device [default: cuda when built with it and a GPU is present, else cpu].
        #[arg(long, value_enum)]
        device: Option<DeviceKind>,
    },
}

/// Training options (the default command).
#[derive(clap::Args, Debug)]
struct Args {
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
    #[arg(long, default_value_t = trainer::loss::DEFAULT_LAMBDA)]
    lambd: f32,
    /// Backbone architecture.
    #[arg(long, value_enum, default_value_t = Arch::Tiny)]
    arch: Arch,
    /// Projector sizes, dash-separated (Linear-BN-ReLU between, last Linear without BN)
    /// [default: 8192-8192-8192; 128-128 for tiny].
    #[arg(long)]
    projector: Option<String>,
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
    /// Compute device [default: cuda when built with it and a GPU is present, else cpu].
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
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

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Arch {
    /// A 4-conv network for CPU demos and tests (64 features).
    Tiny,
    /// torchvision ResNet-18 without fc (512 features).
    Resnet18,
    /// torchvision ResNet-50 without fc (2048 features), as in the paper.
    Resnet50,
}

impl Arch {
    fn model(self) -> ModelArch {
        match self {
            Arch::Tiny => ModelArch::Tiny,
            Arch::Resnet18 => ModelArch::Resnet18,
            Arch::Resnet50 => ModelArch::Resnet50,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    Cpu,
    Cuda,
}

fn pick_device(d: Option<DeviceKind>) -> DeviceKind {
    d.unwrap_or(if cfg!(feature = "cuda") && cuda_available() {
        DeviceKind::Cuda
    } else {
        DeviceKind::Cpu
    })
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.train),
        Some(Command::CheckDevices {
            arch,
            projector,
            batch_size,
            image_size,
            seed,
            tf32,
            tolerance,
        }) => (|| {
            let arch = arch.model();
            let projector =
                parse_projector(projector.as_deref().unwrap_or(arch.default_projector()))?;
            let tolerance = tolerance.unwrap_or(if tf32 { 3e-2 } else { 1e-3 });
            let shape = CheckShape {
                batch: batch_size,
                size: image_size,
                seed,
            };
            check_devices(arch, &projector, shape, tf32, tolerance)
        })(),
        Some(Command::Bench {
            arch,
            projector,
            batch_size,
            image_size,
            steps,
            warmup,
            no_tf32,
            device,
        }) => (|| {
            let arch = arch.model();
            let cfg = trainer::bench::BenchConfig {
                arch,
                projector: parse_projector(
                    projector.as_deref().unwrap_or(arch.default_projector()),
                )?,
                batch: batch_size,
                size: image_size,
                steps,
                warmup,
            };
            let result = match pick_device(device) {
                DeviceKind::Cpu => {
                    let dev = Cpu::seed_from_u64(0);
                    dev.enable_cache();
                    trainer::bench::bench(&dev, &cfg, "cpu", "fp32")?
                }
                DeviceKind::Cuda => bench_on_cuda(&cfg, !no_tf32)?,
            };
            println!("{}", serde_json::to_string(&result)?);
            Ok(0)
        })(),
        Some(Command::StepDump {
            out,
            arch,
            projector,
            batch_size,
            image_size,
            seed,
            steps,
            start_step,
            steps_per_epoch,
            epochs,
            warmup_epochs,
            lr_weights,
            lr_biases,
            weight_decay,
            lambd,
        }) => (|| {
            let arch = arch.model();
            let cfg = trainer::step_dump::DumpConfig {
                arch,
                projector: parse_projector(
                    projector.as_deref().unwrap_or(arch.default_projector()),
                )?,
                batch: batch_size,
                size: image_size,
                seed,
                start_step,
                steps,
                lambd,
                lars: LarsConfig {
                    weight_decay,
                    ..Default::default()
                },
                schedule: trainer::lars::Schedule {
                    batch_size,
                    steps_per_epoch,
                    warmup_epochs,
                    epochs,
                    lr_weights,
                    lr_biases,
                },
            };
            let dev = Cpu::seed_from_u64(seed);
            dev.enable_cache();
            let info = trainer::step_dump::dump_steps(&dev, &cfg, &out)?;
            println!("{}", serde_json::to_string(&info)?);
            Ok(0)
        })(),
        Some(Command::Export { checkpoint, out }) => {
            trainer::checkpoint::export_torchvision(&checkpoint, &out).map(|n| {
                eprintln!("trainer: wrote {n} tensors to {}", out.display());
                0
            })
        }
        Some(Command::Eval {
            checkpoint,
            random_init,
            arch,
            seed,
            dir,
            image_size,
            k,
            batch_size,
            device,
        }) => {
            let opts = EvalOpts {
                checkpoint,
                random_init,
                arch: arch.model(),
                seed,
                dir,
                image_size,
                k,
                batch_size,
            };
            match pick_device(device) {
                DeviceKind::Cpu => {
                    let dev = Cpu::seed_from_u64(0);
                    dev.enable_cache();
                    eval_on(&dev, &opts)
                }
                DeviceKind::Cuda => eval_on_cuda(&opts),
            }
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            std::process::exit(1);
        }
    }
}

struct EvalOpts {
    checkpoint: Option<PathBuf>,
    random_init: bool,
    arch: ModelArch,
    seed: u64,
    dir: Option<PathBuf>,
    image_size: Option<usize>,
    k: usize,
    batch_size: usize,
}

fn eval_on<D: NnDevice>(dev: &D, o: &EvalOpts) -> anyhow::Result<i32> {
    use views::imagenet;
    let (mut model, mean, std, size, what) = match (&o.checkpoint, o.random_init) {
        (Some(p), _) => {
            let (model, _, st) = trainer::checkpoint::load(p, dev)?;
            let size = o.image_size.unwrap_or(st.image_hw.0);
            (
                model,
                st.mean,
                st.std,
                size,
                format!("{} at step {}", p.display(), st.step),
            )
        }
        (None, _) => {
            let model = trainer::model::BarlowModel::new(
                dev,
                o.arch,
                &parse_projector(o.arch.default_projector())?,
                o.seed,
            );
            let what = format!("random {} (seed {})", o.arch.name(), o.seed);
            (
                model,
                imagenet::MEAN,
                imagenet::STD,
                o.image_size.unwrap_or(64),
                what,
            )
        }
    };
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => datasets::demo::ensure_demo(&datasets::demo::default_demo_dir())?,
    };
    let t = std::time::Instant::now();
    let set = trainer::eval::load_folder(&dir, size)?;
    for (name, why) in set.skipped.iter().take(5) {
        eprintln!("trainer: skipped {name}: {why}");
    }
    let report = trainer::eval::evaluate(&mut model, &set, mean, std, o.k, o.batch_size)?;
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "trainer: {what}: k-NN (k={}) top-1 {:.1}% on {} images of {} classes at {size}x{size} from {} (majority class {:.1}%), {:.1}s",
        report.k,
        100.0 * report.top1,
        report.images,
        report.classes,
        dir.display(),
        100.0 * report.majority_baseline,
        t.elapsed().as_secs_f64()
    );
    Ok(0)
}

#[cfg(feature = "cuda")]
fn eval_on_cuda(o: &EvalOpts) -> anyhow::Result<i32> {
    let dev = Cuda::try_seed_from_u64(0).map_err(|e| anyhow::anyhow!("opening the GPU: {e:?}"))?;
    dev.enable_cache();
    eval_on(&dev, o)
}

#[cfg(not(feature = "cuda"))]
fn eval_on_cuda(_: &EvalOpts) -> anyhow::Result<i32> {
    anyhow::bail!("this trainer was built without CUDA; rebuild with `--features cuda` (see README, GPU build)")
}

fn run(args: Args) -> anyhow::Result<i32> {
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
    let arch = args.arch.model();
    let tiny = arch == ModelArch::Tiny;
    let projector = parse_projector(
        args.projector
            .as_deref()
            .unwrap_or(arch.default_projector()),
    )?;
    let path = ring_path(&args.shm)?;
    let restart_wait = Duration::try_from_secs_f64(args.loader_restart_wait).map_err(|_| {
        anyhow::anyhow!(
            "--loader-restart-wait must be a number of seconds, 0 or more (got {})",
            args.loader_restart_wait
        )
    })?;
    shared::ownership::allow_other_owner(args.allow_foreign_ring);
    if args.resume {
        print_resume_hint(args.checkpoint_dir.as_deref(), &args.shm);
    }
    eprintln!(
        "trainer: waiting up to {:.0}s for the ring {}",
        args.wait,
        path.display()
    );
    let mut consumer = Consumer::attach(&path, Duration::from_secs_f64(args.wait))?;
    if !restart_wait.is_zero() {
        consumer.set_restart_wait(restart_wait, report_loader_restart);
    }
    let info = consumer.info().clone();
    let g = info.geometry;
    eprintln!(
        "trainer: attached: batches of {} x 2 views x {}x{}x{}, {} images, {} steps per epoch",
        g.batch_size, g.channels, g.height, g.width, info.dataset_len, info.steps_per_epoch
    );
    if args.dry_run {
        let cfg = DryRunConfig {
            steps: args.steps,
            throttle: Duration::from_millis(args.throttle_ms),
            digest: args.digest,
        };
        let loader_wait = LoaderWait::start(&consumer);
        let summary = dry_run(&mut consumer, &cfg, &stop, &mut std::io::stdout().lock())?;
        print_summary(&summary, loader_wait.fraction(&consumer, &summary));
        return Ok(if summary.interrupted { 130 } else { 0 });
    }
    let cfg = SessionConfig {
        arch,
        projector,
        seed: args.seed,
        steps: args.steps,
        epochs: args.epochs,
        lambd: args.lambd,
        lr_weights: args
            .lr_weights
            .unwrap_or(if tiny { TINY_LR_WEIGHTS } else { 0.2 }),
        lr_biases: args
            .lr_biases
            .unwrap_or(if tiny { TINY_LR_BIASES } else { 0.0048 }),
        warmup_epochs: args
            .warmup_epochs
            .unwrap_or(if tiny { TINY_WARMUP_EPOCHS } else { 10.0 }),
        lars: LarsConfig {
            weight_decay: args.weight_decay,
            ..Default::default()
        },
        print_freq: args.print_freq,
        checkpoint_dir: args.checkpoint_dir.clone(),
        resume: args.resume,
        progress: !args.no_progress,
    };
    trainer::nn::profile::set_enabled(args.profile_ops);
    let mut stdout = std::io::stdout().lock();
    let loader_wait = LoaderWait::start(&consumer);
    let summary = match pick_device(args.device) {
        DeviceKind::Cpu => {
            let dev = Cpu::seed_from_u64(args.seed);
            dev.enable_cache();
            eprintln!("trainer: arch {} on cpu", arch.name());
            train(&dev, &mut consumer, &cfg, &stop, &mut stdout)?
        }
        DeviceKind::Cuda => train_on_cuda(&args, &mut consumer, &cfg, &stop, &mut stdout)?,
    };
    print_summary(&summary, loader_wait.fraction(&consumer, &summary));
    Ok(if summary.interrupted { 130 } else { 0 })
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

#[cfg(feature = "cuda")]
fn cuda_available() -> bool {
    std::panic::catch_unwind(|| Cuda::try_seed_from_u64(0).is_ok()).unwrap_or(false)
}

#[cfg(not(feature = "cuda"))]
fn cuda_available() -> bool {
    false
}

#[cfg(feature = "cuda")]
fn train_on_cuda(
    args: &Args,
    consumer: &mut Consumer,
    cfg: &SessionConfig,
    stop: &AtomicBool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<SessionSummary> {
    let dev = Cuda::try_seed_from_u64(args.seed)
        .map_err(|e| anyhow::anyhow!("opening the GPU: {e:?}"))?;
    dev.enable_cache();
    trainer::nn::cuda::set_tf32(&dev, !args.no_tf32)
        .map_err(|e| anyhow::anyhow!("setting the math mode: {e:?}"))?;
    eprintln!(
        "trainer: arch {} on cuda ({}, {})",
        cfg.arch.name(),
        cudnn_description()?,
        if args.no_tf32 {
            "FP32"
        } else {
            "TF32 tensor cores"
        }
    );
    train(&dev, consumer, cfg, stop, out)
}

#[cfg(feature = "cuda")]
fn bench_on_cuda(
    cfg: &trainer::bench::BenchConfig,
    tf32: bool,
) -> anyhow::Result<trainer::bench::BenchResult> {
    let dev = Cuda::try_seed_from_u64(0).map_err(|e| anyhow::anyhow!("opening the GPU: {e:?}"))?;
    dev.enable_cache();
    trainer::nn::cuda::set_tf32(&dev, tf32)
        .map_err(|e| anyhow::anyhow!("setting the math mode: {e:?}"))?;
    let name = gpu_name(&dev);
    eprintln!("trainer: bench on {name} ({})", cudnn_description()?);
    trainer::bench::bench(&dev, cfg, &name, if tf32 { "tf32" } else { "fp32" })
}

/// The GPU's name, as the driver reports it.
#[cfg(feature = "cuda")]
fn gpu_name(dev: &Cuda) -> String {
    use trainer::cudarc::driver::sys::{cuDeviceGetName, CUresult};
    let mut buf = [0 as std::ffi::c_char; 128];
    let cu = *dev.cuda_device().cu_device();
    // SAFETY: the buffer holds 128 bytes, the length passed; the driver NUL-terminates it.
    if unsafe { cuDeviceGetName(buf.as_mut_ptr(), buf.len() as i32, cu) } != CUresult::CUDA_SUCCESS
    {
        return "cuda".into();
    }
    // SAFETY: NUL-terminated by the driver (checked success above).
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(not(feature = "cuda"))]
fn bench_on_cuda(
    _: &trainer::bench::BenchConfig,
    _: bool,
) -> anyhow::Result<trainer::bench::BenchResult> {
    anyhow::bail!("this trainer was built without CUDA; rebuild with `--features cuda` (see README, GPU build)")
}

/// "cuDNN 9.x.y", or an error that says how to install it.
#[cfg(feature = "cuda")]
fn cudnn_description() -> anyhow::Result<String> {
    trainer::nn::cuda::cudnn_version()
        .map(|v| format!("cuDNN {v}"))
        .map_err(|e| anyhow::anyhow!(e))
}

#[cfg(not(feature = "cuda"))]
fn train_on_cuda(
    _: &Args,
    _: &mut Consumer,
    _: &SessionConfig,
    _: &AtomicBool,
    _: &mut dyn std::io::Write,
) -> anyhow::Result<SessionSummary> {
    anyhow::bail!("this trainer was built without CUDA; rebuild with `--features cuda` (see README, GPU build)")
}

/// The batch of `trainer check-devices`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct CheckShape {
    batch: usize,
    size: usize,
    seed: u64,
}

#[cfg(feature = "cuda")]
fn check_devices(
    arch: ModelArch,
    projector: &[usize],
    shape: CheckShape,
    tf32: bool,
    tolerance: f64,
) -> anyhow::Result<i32> {
    let CheckShape { batch, size, seed } = shape;
    let cpu = Cpu::seed_from_u64(seed);
    let cuda =
        Cuda::try_seed_from_u64(seed).map_err(|e| anyhow::anyhow!("opening the GPU: {e:?}"))?;
    trainer::nn::cuda::set_tf32(&cuda, tf32)
        .map_err(|e| anyhow::anyhow!("setting the math mode: {e:?}"))?;
    let cmp =
        trainer::device_check::compare_devices(&cpu, &cuda, arch, projector, batch, size, seed)?;
    let mut json = serde_json::to_value(&cmp)?;
    json["arch"] = arch.name().into();
    json["batch"] = batch.into();
    json["precision"] = (if tf32 { "tf32" } else { "fp32" }).into();
    json["tolerance"] = tolerance.into();
    json["cudnn"] = cudnn_description()?.into();
    println!("{json}");
    let ok = cmp.within(tolerance);
    eprintln!(
        "trainer: {} cpu vs cuda ({}, {}): loss {} vs {} (rel {:.2e}); gradient rel err {:.2e} (worst tensor {:.2e}, {}) over {} tensors; running stats rel err {:.2e}; bound {tolerance:.0e}: {}",
        arch.name(), cudnn_description()?, if tf32 { "TF32" } else { "FP32" },
        cmp.loss_a, cmp.loss_b, cmp.loss_rel_err, cmp.grad_rel_err, cmp.max_grad_rel_err, cmp.worst_tensor, cmp.tensors,
        cmp.running_stats_rel_err,
        if ok { "OK" } else { "MISMATCH" }
    );
    Ok(if ok { 0 } else { 1 })
}

#[cfg(not(feature = "cuda"))]
fn check_devices(_: ModelArch, _: &[usize], _: CheckShape, _: bool, _: f64) -> anyhow::Result<i32> {
    anyhow::bail!("this trainer was built without CUDA; rebuild with `--features cuda` (see README, GPU build)")
}

/// The loader's time waiting for free slots during this session, from the ring's statistics.
struct LoaderWait(u64);

impl LoaderWait {
    fn start(consumer: &Consumer) -> LoaderWait {
        LoaderWait(consumer.stats().get(shared::stat::PRODUCER_WAIT_NS))
    }

    /// Fraction of the session's wall time the loader waited for free slots.
    fn fraction(&self, consumer: &Consumer, s: &SessionSummary) -> f64 {
        let ns = consumer
            .stats()
            .get(shared::stat::PRODUCER_WAIT_NS)
            .saturating_sub(self.0);
        (ns as f64 / 1e9 / s.elapsed.as_secs_f64().max(1e-9)).min(1.0)
    }
}

/// Who held the session back, by the one definition every binary uses ([`shared::Verdict`]): the
/// trainer's waiting fraction against the loader's.
fn run_verdict(trainer_wait: f64, loader_wait: f64, steps: u64) -> shared::Verdict {
    shared::Verdict::judge(trainer_wait, loader_wait, None, steps > 0)
}

fn print_summary(s: &SessionSummary, loader_wait: f64) {
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    let k = s.losses.len().min(5);
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let loss = if k == 0 {
        String::new()
    } else {
        format!(
            "; loss {:.2} (first {k} steps) -> {:.2} (last {k})",
            mean(&s.losses[..k]),
            mean(&s.losses[s.losses.len() - k..])
        )
    };
    eprintln!(
        "trainer: done: {} steps, {} samples in {:.1}s = {:.1} pairs/s{loss}",
        s.steps,
        s.samples,
        secs,
        s.samples as f64 / secs,
    );
    let verdict = run_verdict(s.stall_fraction(), loader_wait, s.steps);
    eprintln!(
        "trainer: verdict: {verdict} (trainer waited for batches {:.0}% of the time, loader waited for free slots {:.0}%): {}",
        100.0 * s.stall_fraction(),
        100.0 * loader_wait,
        verdict.advice()
    );
    if let Some((totals, compute_ms)) = &s.op_totals {
        let steps = s.steps.max(1) as f64;
        let named: f64 = totals.iter().sum();
        let mut parts: Vec<String> = trainer::nn::profile::OpKind::ALL
            .iter()
            .zip(totals)
            .map(|(k, t)| format!("{} {:.1}", k.key(), t / steps))
            .collect();
        parts.push(format!(
            "other {:.1}",
            ((compute_ms - named) / steps).max(0.0)
        ));
        eprintln!(
            "trainer: device ms per step: {} (of {:.1} computing){}",
            parts.join(", "),
            compute_ms / steps,
            s.peak_memory.map_or(String::new(), |b| format!(
                "; peak device memory {:.1} GiB",
                b as f64 / (1u64 << 30) as f64
            ))
        );
    }
}

/// Before attaching on `--resume`: the loader command that continues the data stream exactly where
/// the checkpoint left it (a loader started from step 0 works too; its batches up to the
/// checkpoint are skipped, at the cost of decoding them again).
fn print_resume_hint(checkpoint_dir: Option<&std::path::Path>, shm: &str) {
    let Some(dir) = checkpoint_dir else { return };
    let path = dir.join(trainer::checkpoint::CHECKPOINT_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let Ok(st) = trainer::checkpoint::read_state(&bytes) else {
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

#[cfg(test)]
mod tests {
    use super::run_verdict;
    use shared::Verdict;

    #[test]
    fn the_verdict_is_the_shared_definition() {
        // A 25% stall is input-bound by the shared 20% threshold (a private 30% rule said
        // compute-bound here).
        assert_eq!(run_verdict(0.25, 0.0, 10), Verdict::InputBound);
        assert_eq!(
            run_verdict(0.25, 0.0, 10),
            Verdict::judge(0.25, 0.0, None, true)
        );
        assert_eq!(run_verdict(0.05, 0.6, 10), Verdict::ComputeBound);
        // Neither side waits: balanced, not "compute-bound".
        assert_eq!(run_verdict(0.1, 0.1, 10), Verdict::Balanced);
        assert_eq!(run_verdict(0.0, 0.0, 0), Verdict::Idle);
    }
}
