//! `trainer`: Barlow Twins pre-training fed by `loader` through a shared-memory ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use shared::{ring_path, Consumer};
use trainer::dfdx::prelude::*;
use trainer::session::{train_tiny, SessionConfig, SessionSummary};

/// Train a backbone + projector with the Barlow Twins loss on paired views read from a ring that
/// `loader --shm NAME` fills. Batch size, image size and normalisation come from the ring.
///
/// Prints one JSON line of statistics per --print-freq steps on stdout and a summary on stderr.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Example:\n  loader --shm bt0 &\n  trainer --shm bt0 --steps 100"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: Args,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Run one training step of the tiny model on CPU and on CUDA from the same weights and inputs,
    /// and compare the loss and every parameter's gradient (exit 1 if they differ by more than the
    /// tolerance).
    CheckDevices {
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Largest relative error accepted on the loss and on each gradient.
        #[arg(long, default_value_t = 1e-3)]
        tolerance: f64,
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
    /// Stop after this many steps [default: until the loader's end of data].
    #[arg(long)]
    steps: Option<u64>,
    /// Weight of the off-diagonal (redundancy reduction) term.
    #[arg(long, default_value_t = trainer::loss::DEFAULT_LAMBDA)]
    lambd: f32,
    /// Backbone architecture.
    #[arg(long, value_enum, default_value_t = Arch::Tiny)]
    arch: Arch,
    /// Learning rate (SGD with momentum 0.9).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1.5e-6)]
    weight_decay: f64,
    /// Print a statistics line every K steps.
    #[arg(long, default_value_t = 10)]
    print_freq: u64,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device [default: cuda when built with it and a GPU is present, else cpu].
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Arch {
    /// A 4-conv network for CPU demos and tests (64 features, projector 128-128).
    Tiny,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    Cpu,
    Cuda,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.train),
        Some(Command::CheckDevices {
            batch_size,
            image_size,
            seed,
            tolerance,
        }) => check_devices(batch_size, image_size, seed, tolerance),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trainer: error: {e:#}");
            std::process::exit(1);
        }
    }
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
    let path = ring_path(&args.shm)?;
    eprintln!(
        "trainer: waiting up to {:.0}s for the ring {}",
        args.wait,
        path.display()
    );
    let mut consumer = Consumer::attach(&path, Duration::from_secs_f64(args.wait))?;
    let info = consumer.info().clone();
    let g = info.geometry;
    eprintln!(
        "trainer: attached: batches of {} x 2 views x {}x{}x{}, {} images, {} steps per epoch",
        g.batch_size, g.channels, g.height, g.width, info.dataset_len, info.steps_per_epoch
    );
    let cfg = SessionConfig {
        steps: args.steps,
        lambd: args.lambd,
        lr: args.lr,
        weight_decay: args.weight_decay,
        print_freq: args.print_freq,
    };
    let device = args
        .device
        .unwrap_or(if cfg!(feature = "cuda") && cuda_available() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        });
    let Arch::Tiny = args.arch;
    let mut stdout = std::io::stdout().lock();
    let summary = match device {
        DeviceKind::Cpu => {
            let dev = Cpu::seed_from_u64(args.seed);
            dev.enable_cache();
            eprintln!("trainer: arch {:?} on cpu", args.arch);
            train_tiny(&dev, &mut consumer, &cfg, &stop, &mut stdout)?
        }
        DeviceKind::Cuda => train_on_cuda(&args, &mut consumer, &cfg, &stop, &mut stdout)?,
    };
    print_summary(&summary);
    Ok(if summary.interrupted { 130 } else { 0 })
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
    eprintln!("trainer: arch {:?} on cuda", args.arch);
    train_tiny(&dev, consumer, cfg, stop, out)
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

#[cfg(feature = "cuda")]
fn check_devices(batch: usize, size: usize, seed: u64, tolerance: f64) -> anyhow::Result<i32> {
    let cpu = Cpu::seed_from_u64(seed);
    let cuda =
        Cuda::try_seed_from_u64(seed).map_err(|e| anyhow::anyhow!("opening the GPU: {e:?}"))?;
    let dir = std::env::temp_dir().join(format!("barlow-check-devices-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cmp = trainer::device_check::compare_devices(&cpu, &cuda, batch, size, seed, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let cmp = cmp?;
    println!("{}", serde_json::to_string(&cmp)?);
    let ok = cmp.within(tolerance);
    eprintln!(
        "trainer: cpu vs cuda: loss {} vs {} (rel {:.2e}); gradient rel err {:.2e} (worst tensor {:.2e}, {}) over {} tensors: {}",
        cmp.loss_a, cmp.loss_b, cmp.loss_rel_err, cmp.grad_rel_err, cmp.max_grad_rel_err, cmp.worst_tensor, cmp.tensors,
        if ok { "OK" } else { "MISMATCH" }
    );
    Ok(if ok { 0 } else { 1 })
}

#[cfg(not(feature = "cuda"))]
fn check_devices(_: usize, _: usize, _: u64, _: f64) -> anyhow::Result<i32> {
    anyhow::bail!("this trainer was built without CUDA; rebuild with `--features cuda` (see README, GPU build)")
}

fn print_summary(s: &SessionSummary) {
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    let k = s.losses.len().min(5);
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "trainer: done: {} steps, {} samples in {:.1}s = {:.1} pairs/s; loss {:.2} (first {k} steps) -> {:.2} (last {k}); \
         waited for input {:.0}% of the time{}",
        s.steps,
        s.samples,
        secs,
        s.samples as f64 / secs,
        mean(&s.losses[..k]),
        mean(&s.losses[s.losses.len() - k..]),
        100.0 * s.stall_fraction(),
        if s.stall_fraction() > 0.3 { " (input-bound: the loader needs more cores)" } else { " (compute-bound)" },
    );
}
