//! `trainer check-devices`: one training step on the CPU and on CUDA, compared.

use dfdx::prelude::*;

use super::model_args::{ModelArgs, ModelChoice};
use crate::device::{run_on_device, DeviceKind, DeviceSetup, DeviceTask, RunDevice};
use crate::device_check::compare_devices;

#[derive(clap::Args, Debug)]
#[command(mut_arg("arch", |a| a.help("Backbone to compare")))]
pub struct CheckDevicesArgs {
    #[command(flatten)]
    model: ModelArgs,
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
}

impl CheckDevicesArgs {
    /// Compares the step on both devices; exit code 1 when they differ beyond the tolerance.
    pub fn run(self) -> anyhow::Result<i32> {
        let task = CompareWithCpu {
            model: self.model.resolve()?,
            batch: self.batch_size,
            size: self.image_size,
            seed: self.seed,
            tf32: self.tf32,
            tolerance: self
                .tolerance
                .unwrap_or(if self.tf32 { 3e-2 } else { 1e-3 }),
        };
        let setup = DeviceSetup {
            seed: self.seed,
            cache: false,
            tf32: Some(self.tf32),
        };
        run_on_device(DeviceKind::Cuda, setup, task)
    }
}

/// The step on a fresh CPU device and on the device it runs on, compared.
struct CompareWithCpu {
    model: ModelChoice,
    batch: usize,
    size: usize,
    seed: u64,
    tf32: bool,
    tolerance: f64,
}

impl DeviceTask for CompareWithCpu {
    type Output = i32;

    fn run<D: RunDevice>(self, gpu: &D) -> anyhow::Result<i32> {
        let CompareWithCpu {
            model: ModelChoice {
                arch, projector, ..
            },
            batch,
            size,
            seed,
            tf32,
            tolerance,
        } = self;
        let cpu = Cpu::seed_from_u64(seed);
        let cmp = compare_devices(&cpu, gpu, arch, &projector, batch, size, seed)?;
        let cudnn = gpu.cudnn()?.unwrap_or_default();
        let mut json = serde_json::to_value(&cmp)?;
        json["arch"] = arch.name().into();
        json["batch"] = batch.into();
        json["precision"] = (if tf32 { "tf32" } else { "fp32" }).into();
        json["tolerance"] = tolerance.into();
        json["cudnn"] = cudnn.clone().into();
        println!("{json}");
        let ok = cmp.within(tolerance);
        eprintln!(
            "trainer: {} cpu vs cuda ({cudnn}, {}): loss {} vs {} (rel {:.2e}); gradient rel err {:.2e} (worst tensor {:.2e}, {}) over {} tensors; running stats rel err {:.2e}; bound {tolerance:.0e}: {}",
            arch.name(), if tf32 { "TF32" } else { "FP32" },
            cmp.loss_a, cmp.loss_b, cmp.loss_rel_err, cmp.grad_rel_err, cmp.max_grad_rel_err, cmp.worst_tensor, cmp.tensors,
            cmp.running_stats_rel_err,
            if ok { "OK" } else { "MISMATCH" }
        );
        Ok(if ok { 0 } else { 1 })
    }
}
