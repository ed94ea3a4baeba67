//! `trainer step-dump`: training steps written out for `reference/step_check.py`.

use std::path::{Path, PathBuf};

use super::model_args::{ModelArgs, Preset};
use crate::device::{run_on_device, DeviceKind, DeviceSetup, DeviceTask, RunDevice};
use crate::lars::{LarsConfig, Schedule};
use crate::step_dump::{dump_steps, DumpConfig, DumpInfo};

#[derive(clap::Args, Debug)]
#[command(mut_arg("arch", |a| a.default_value("resnet18")))]
pub struct StepDumpArgs {
    /// Directory to write init.safetensors and after.safetensors into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
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
    #[arg(long, default_value_t = Preset::PAPER.warmup_epochs)]
    warmup_epochs: f64,
    /// Base learning rate of the weights (x batch/256).
    #[arg(long, default_value_t = Preset::PAPER.lr_weights)]
    lr_weights: f64,
    /// Base learning rate of biases and BatchNorm parameters (x batch/256).
    #[arg(long, default_value_t = Preset::PAPER.lr_biases)]
    lr_biases: f64,
    #[arg(long, default_value_t = 1.5e-6)]
    weight_decay: f64,
    #[arg(long, default_value_t = crate::loss::DEFAULT_LAMBDA)]
    lambd: f32,
}

impl StepDumpArgs {
    /// Runs the steps on the CPU, writes the files and prints the run's description as JSON.
    pub fn run(self) -> anyhow::Result<i32> {
        let model = self.model.resolve()?;
        let cfg = DumpConfig {
            arch: model.arch,
            projector: model.projector,
            batch: self.batch_size,
            size: self.image_size,
            seed: self.seed,
            start_step: self.start_step,
            steps: self.steps,
            lambd: self.lambd,
            lars: LarsConfig {
                weight_decay: self.weight_decay,
                ..Default::default()
            },
            schedule: Schedule {
                batch_size: self.batch_size,
                steps_per_epoch: self.steps_per_epoch,
                warmup_epochs: self.warmup_epochs,
                epochs: self.epochs,
                lr_weights: self.lr_weights,
                lr_biases: self.lr_biases,
            },
        };
        let setup = DeviceSetup {
            seed: self.seed,
            cache: true,
            tf32: None,
        };
        let task = DumpTask {
            cfg: &cfg,
            dir: &self.out,
        };
        let info = run_on_device(DeviceKind::Cpu, setup, task)?;
        println!("{}", serde_json::to_string(&info)?);
        Ok(0)
    }
}

struct DumpTask<'a> {
    cfg: &'a DumpConfig,
    dir: &'a Path,
}

impl DeviceTask for DumpTask<'_> {
    type Output = DumpInfo;

    fn run<D: RunDevice>(self, dev: &D) -> anyhow::Result<DumpInfo> {
        dump_steps(dev, self.cfg, self.dir)
    }
}
