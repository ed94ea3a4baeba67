//! `trainer bench`: the time of a training step on random inputs already on the device.

use super::model_args::ModelArgs;
use super::DeviceArg;
use crate::bench::{bench, BenchConfig};
use crate::device::{run_on_device, DeviceSetup, DeviceTask, RunDevice};

#[derive(clap::Args, Debug)]
#[command(mut_arg("arch", |a| a.default_value("resnet50")))]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
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
    #[command(flatten)]
    device: DeviceArg,
}

impl BenchArgs {
    /// Times the steps and prints the result as one JSON line.
    pub fn run(self) -> anyhow::Result<i32> {
        let model = self.model.resolve()?;
        let cfg = BenchConfig {
            arch: model.arch,
            projector: model.projector,
            batch: self.batch_size,
            size: self.image_size,
            steps: self.steps,
            warmup: self.warmup,
        };
        let setup = DeviceSetup {
            seed: 0,
            cache: true,
            tf32: Some(!self.no_tf32),
        };
        let task = BenchTask {
            cfg: &cfg,
            tf32: !self.no_tf32,
        };
        let result = run_on_device(self.device.kind(), setup, task)?;
        println!("{}", serde_json::to_string(&result)?);
        Ok(0)
    }
}

struct BenchTask<'a> {
    cfg: &'a BenchConfig,
    /// Only labels the result ([`DeviceSetup::tf32`] sets the math mode).
    tf32: bool,
}

impl DeviceTask for BenchTask<'_> {
    type Output = crate::bench::BenchResult;

    fn run<D: RunDevice>(self, dev: &D) -> anyhow::Result<Self::Output> {
        let name = dev.label();
        let precision = match dev.cudnn()? {
            None => "fp32",
            Some(cudnn) => {
                eprintln!("trainer: bench on {name} ({cudnn})");
                if self.tf32 {
                    "tf32"
                } else {
                    "fp32"
                }
            }
        };
        bench(dev, self.cfg, &name, precision)
    }
}
