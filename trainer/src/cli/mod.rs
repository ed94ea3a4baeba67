//! The `trainer` command line: the argument structs (clap) and, per subcommand, what it runs.
//! Each subcommand opens its device through [`crate::device::run_on_device`].

mod bench;
mod check_devices;
mod eval;
mod model_args;
mod step_dump;
mod train;

use std::path::PathBuf;

use clap::Parser;

use crate::device::DeviceKind;

pub use bench::BenchArgs;
pub use check_devices::CheckDevicesArgs;
pub use eval::EvalArgs;
pub use model_args::{ModelArgs, ModelChoice, Preset};
pub use step_dump::StepDumpArgs;
pub use train::TrainArgs;

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run one training step on CPU and on CUDA from the same weights and inputs, and compare the
    /// loss, every parameter's gradient and the BatchNorm running statistics (exit 1 if they
    /// differ by more than the tolerance).
    CheckDevices(CheckDevicesArgs),
    /// Time training steps (both views forward and backward, loss, LARS) on random inputs
    /// already on the device, and print one JSON line: ms per step (median), the device time
    /// per kind of op and the peak device memory (what scripts/gpu-check.sh compares with
    /// PyTorch).
    Bench(BenchArgs),
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
    StepDump(StepDumpArgs),
    /// Write the backbone of a checkpoint as safetensors with torchvision's parameter names
    /// (load with `torchvision.models.resnet50().load_state_dict(sd, strict=False)`; fc is absent).
    Export(ExportArgs),
    /// k-NN (cosine, leave-one-out, similarity-weighted vote) top-1 accuracy of the backbone's
    /// features on a labelled folder root/<class>/<image>, centre crop, no augmentation.
    Eval(EvalArgs),
}

/// `--device`, for the subcommands that run on either device.
#[derive(clap::Args, Debug)]
pub struct DeviceArg {
    /// Compute device [default: cuda when built with it and a GPU is present, else cpu].
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
}

impl DeviceArg {
    /// The device asked for, else the default ([`DeviceKind::choose`]).
    pub fn kind(&self) -> DeviceKind {
        DeviceKind::choose(self.device)
    }
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint written by training (DIR/checkpoint.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

impl ExportArgs {
    /// Writes the torchvision file.
    pub fn run(self) -> anyhow::Result<i32> {
        let n = crate::checkpoint::export_torchvision(&self.checkpoint, &self.out)?;
        eprintln!("trainer: wrote {n} tensors to {}", self.out.display());
        Ok(0)
    }
}
