//! `trainer eval`: k-NN accuracy of a checkpoint's (or a random model's) backbone.

use std::path::PathBuf;

use super::model_args::ModelArgs;
use super::DeviceArg;
use crate::device::{run_on_device, DeviceSetup, DeviceTask, RunDevice};
use crate::eval::{eval_on, EvalOpts};
use crate::model::Arch;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
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
    /// JPEG decoder: turbo (libjpeg-turbo, Pillow's pixels byte for byte) or zune (zune-jpeg).
    #[arg(long, default_value_t = decode::Decoder::default(), value_parser = |s: &str| s.parse::<decode::Decoder>())]
    decoder: decode::Decoder,
    #[command(flatten)]
    device: DeviceArg,
}

impl EvalArgs {
    /// Evaluates and prints the report (JSON on stdout, a sentence on stderr).
    pub fn run(self) -> anyhow::Result<i32> {
        let random_model = ModelArgs::preset(self.arch).resolve()?;
        let opts = EvalOpts {
            checkpoint: self.checkpoint,
            random_init: self.random_init,
            arch: random_model.arch,
            projector: random_model.projector,
            seed: self.seed,
            dir: self.dir,
            image_size: self.image_size,
            k: self.k,
            batch_size: self.batch_size,
            decoder: self.decoder,
        };
        let setup = DeviceSetup {
            seed: 0,
            cache: true,
            tf32: None,
        };
        run_on_device(self.device.kind(), setup, EvalTask(&opts))
    }
}

struct EvalTask<'a>(&'a EvalOpts);

impl DeviceTask for EvalTask<'_> {
    type Output = i32;

    fn run<D: RunDevice>(self, dev: &D) -> anyhow::Result<i32> {
        eval_on(dev, self.0)
    }
}
