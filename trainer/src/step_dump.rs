//! `trainer step-dump`: barlow's training steps from a seeded model on seeded batches, written out
//! for a comparison with the official PyTorch code (`reference/step_check.py`).
//!
//! The steps are the training loop's own ([`crate::session::train_step`]: both views forward and
//! backward, the loss, LARS at the schedule's learning rates, BatchNorm running statistics
//! updated per view), on u8 views normalised by [`crate::input::normalize_views`] with the
//! ImageNet mean and std, as the loader's ring batches are. Safetensors files, every tensor
//! under the official names (`backbone.layer1.0.conv1.weight`, `projector.0.weight`,
//! `backbone.bn1.running_mean`, ...):
//!
//! - `init.safetensors`: the state before the first step (every parameter and running
//!   statistic) and the batches, `views.a.<k>` / `views.b.<k>` (u8, `[batch, 3, size, size]`, the
//!   view fed first / second at step `k`), with the run's [`DumpInfo`] as JSON in the metadata
//!   key [`INFO_KEY`].
//! - `step<k>.safetensors` ([`step_file`]), one per step: the state after step `k` (parameters,
//!   running statistics, LARS momentum `lars.mu.<name>`: every step can be compared from the same
//!   state), the step's gradients `grad.<name>` and its ReLU decisions `relu.<i>` with their inputs
//!   (see [`RELU_PREFIX`]); the metadata holds the [`DumpInfo`] with the losses up to step `k`.

use std::collections::HashMap;
use std::path::Path;

use ::safetensors::tensor::Dtype;
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checkpoint::{f32_bytes, write_safetensors, NamedBytes, MU_PREFIX};
use crate::input::normalize_views;
use crate::lars::{Lars, LarsConfig, Schedule};
use crate::model::{Arch, BarlowModel};
use crate::nn::{relu_masks, NnDevice};
use crate::session::train_step;
use views::imagenet;

/// Metadata key of the JSON [`DumpInfo`] in both files.
pub const INFO_KEY: &str = "barlow.step_dump";
/// Name prefix of the gradients in a step's file: `grad.<name>`.
pub const GRAD_PREFIX: &str = "grad.";
/// Name prefix of the ReLU decisions in a step's file: `relu.<call i>`, u8 `[rows, cols]`
/// channel-major (`(C, B*H*W)` maps, `(F, B)` vectors), 1 where the input was above 0, in forward
/// order (backbone and projector of view a, then of view b); beside each, f32 of the same shape,
/// `relu.<i>.pre` the input itself and `relu.<i>.magnitude` its local magnitude (see
/// [`relu_masks::ReluMask`]).
pub const RELU_PREFIX: &str = "relu.";

/// The file of step `k` (counted from the dump's first step).
pub fn step_file(k: usize) -> String {
    format!("step{k}.safetensors")
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DumpConfig {
    pub arch: Arch,
    pub projector: Vec<usize>,
    pub batch: usize,
    pub size: usize,
    /// Seed of the weights and of the batches.
    pub seed: u64,
    /// Global step of the first step (the schedule's position: inside warm-up or after it).
    pub start_step: u64,
    /// Steps to run (each on a batch of its own).
    pub steps: usize,
    pub lambd: f32,
    pub lars: LarsConfig,
    /// The learning-rate schedule (its `batch_size` is `batch`).
    pub schedule: Schedule,
}

/// The run's description and results, as JSON in the files' metadata.
#[derive(Debug, Clone, Serialize)]
pub struct DumpInfo {
    pub arch: &'static str,
    pub projector: Vec<usize>,
    pub batch: usize,
    pub size: usize,
    pub seed: u64,
    pub start_step: u64,
    pub steps: usize,
    pub lambd: f32,
    pub momentum: f64,
    pub eta: f64,
    pub weight_decay: f64,
    pub steps_per_epoch: u64,
    pub epochs: f64,
    pub warmup_epochs: f64,
    pub base_lr_weights: f64,
    pub base_lr_biases: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// `(lr_weights, lr_biases)` of each step, from [`Schedule::lrs`].
    pub lrs: Vec<(f64, f64)>,
    /// The loss of each step (empty in `init.safetensors`).
    pub losses: Vec<f32>,
}

/// Every tensor of the model's store under its official name, plus `extra(i)`'s tensors for entry
/// `i` (gradients, momentum).
fn state_tensors<D: NnDevice>(
    model: &BarlowModel<D>,
    mut extra: impl FnMut(usize) -> Vec<NamedBytes>,
) -> Vec<NamedBytes> {
    let mut out = Vec::new();
    for (i, p) in model.store.params.iter().enumerate() {
        out.push((
            p.name.clone(),
            Dtype::F32,
            p.shape.clone(),
            f32_bytes(&p.t.as_vec()),
        ));
        out.extend(extra(i));
    }
    out
}

/// The model's tensors and LARS's momentum buffers (`lars.mu.<name>`).
fn state_with_momentum<D: NnDevice>(model: &BarlowModel<D>, opt: &Lars<D>) -> Vec<NamedBytes> {
    state_tensors(model, |i| {
        let p = &model.store.params[i];
        let mut v = Vec::new();
        if let Some(mu) = &opt.mu[i] {
            v.push((
                format!("{MU_PREFIX}{}", p.name),
                Dtype::F32,
                p.shape.clone(),
                f32_bytes(&mu.as_vec()),
            ));
        }
        v
    })
}

/// Runs `cfg.steps` training steps on `dev` and writes `init.safetensors` and each step's
/// [`step_file`] into `dir` (created if missing). Returns the run's [`DumpInfo`].
pub fn dump_steps<D: NnDevice>(dev: &D, cfg: &DumpConfig, dir: &Path) -> Result<DumpInfo> {
    anyhow::ensure!(cfg.steps >= 1, "at least one step");
    anyhow::ensure!(
        cfg.size >= cfg.arch.min_input(),
        "{} needs images of at least {}x{}",
        cfg.arch.name(),
        cfg.arch.min_input(),
        cfg.arch.min_input()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut model = BarlowModel::new(dev, cfg.arch, &cfg.projector, cfg.seed);
    let mut opt = Lars::new(&model.store, cfg.lars);
    let s = &cfg.schedule;
    let mut info = DumpInfo {
        arch: cfg.arch.name(),
        projector: cfg.projector.clone(),
        batch: cfg.batch,
        size: cfg.size,
        seed: cfg.seed,
        start_step: cfg.start_step,
        steps: cfg.steps,
        lambd: cfg.lambd,
        momentum: cfg.lars.momentum,
        eta: cfg.lars.eta,
        weight_decay: cfg.lars.weight_decay,
        steps_per_epoch: s.steps_per_epoch,
        epochs: s.epochs,
        warmup_epochs: s.warmup_epochs,
        base_lr_weights: s.lr_weights,
        base_lr_biases: s.lr_biases,
        mean: imagenet::MEAN,
        std: imagenet::STD,
        lrs: (0..cfg.steps as u64)
            .map(|k| s.lrs(cfg.start_step + k))
            .collect(),
        losses: vec![],
    };
    // the batches: uniform noise, view B a perturbed copy of view A (correlated, as two crops)
    let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed ^ 0x5eed_ba7c);
    let len = cfg.batch * 3 * cfg.size * cfg.size;
    let views: Vec<(Vec<u8>, Vec<u8>)> = (0..cfg.steps)
        .map(|_| {
            let a: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let b = a
                .iter()
                .map(|&p| p.saturating_add(rng.gen_range(0..64)))
                .collect();
            (a, b)
        })
        .collect();
    let meta = |info: &DumpInfo| -> Result<HashMap<String, String>> {
        Ok(HashMap::from([(
            INFO_KEY.to_string(),
            serde_json::to_string(info)?,
        )]))
    };
    let mut init = state_tensors(&model, |_| vec![]);
    let shape = vec![cfg.batch, 3, cfg.size, cfg.size];
    for (k, (a, b)) in views.iter().enumerate() {
        init.push((format!("views.a.{k}"), Dtype::U8, shape.clone(), a.clone()));
        init.push((format!("views.b.{k}"), Dtype::U8, shape.clone(), b.clone()));
    }
    write_safetensors(&dir.join("init.safetensors"), &init, meta(&info)?)?;
    drop(init);

    // one file per step, written when the step is done (an 8192 projector's state and gradients
    // are 1.8 GB a step)
    for (k, (a, b)) in views.iter().enumerate() {
        let (va, vb) = normalize_views(
            dev,
            a,
            b,
            cfg.batch,
            cfg.size,
            cfg.size,
            imagenet::MEAN,
            imagenet::STD,
        )?;
        let mut grads: Vec<NamedBytes> = Vec::new();
        let record = |m: &BarlowModel<_>, g: &dfdx::prelude::Gradients<f32, _>| {
            for (_, p) in m.store.trainable() {
                grads.push((
                    format!("{GRAD_PREFIX}{}", p.name),
                    Dtype::F32,
                    p.shape.clone(),
                    f32_bytes(&g.get(&p.t).as_vec()),
                ));
            }
        };
        let (sg, masks) = relu_masks::record(|| {
            train_step(&mut model, &mut opt, va, vb, cfg.lambd, info.lrs[k], record)
        });
        info.losses.push(sg?.loss());
        let mut step = state_with_momentum(&model, &opt);
        step.append(&mut grads);
        for (i, m) in masks.into_iter().enumerate() {
            let name = format!("{RELU_PREFIX}{i}");
            let shape = vec![m.rows, m.cols];
            step.push((name.clone(), Dtype::U8, shape.clone(), m.positive));
            let pre = f32_bytes(&m.pre);
            step.push((format!("{name}.pre"), Dtype::F32, shape.clone(), pre));
            let magnitude = f32_bytes(&m.magnitude);
            step.push((format!("{name}.magnitude"), Dtype::F32, shape, magnitude));
        }
        write_safetensors(&dir.join(step_file(k)), &step, meta(&info)?)?;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Kind;
    use ::safetensors::tensor::SafeTensors;
    use dfdx::prelude::*;

    #[test]
    fn dump_holds_every_tensor_under_official_names_and_is_the_training_step() {
        let dev = Cpu::default();
        let cfg = DumpConfig {
            arch: Arch::Tiny,
            projector: vec![16, 8],
            batch: 4,
            size: 16,
            seed: 3,
            start_step: 2,
            steps: 2,
            lambd: 0.0051,
            lars: LarsConfig::default(),
            schedule: Schedule {
                batch_size: 4,
                steps_per_epoch: 1,
                warmup_epochs: 10.0,
                epochs: 20.0,
                lr_weights: 0.2,
                lr_biases: 0.0048,
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let info = dump_steps(&dev, &cfg, dir.path()).unwrap();
        assert_eq!(info.losses.len(), 2);
        assert_eq!(info.lrs[0], cfg.schedule.lrs(2));

        // the same two steps by hand from the batches in the file give the same states
        let init = std::fs::read(dir.path().join("init.safetensors")).unwrap();
        let init = SafeTensors::deserialize(&init).unwrap();
        let files: Vec<Vec<u8>> = (0..2)
            .map(|k| std::fs::read(dir.path().join(step_file(k))).unwrap())
            .collect();
        let steps: Vec<SafeTensors> = files
            .iter()
            .map(|f| SafeTensors::deserialize(f).unwrap())
            .collect();
        assert!(!dir.path().join(step_file(2)).exists());
        let mut m = BarlowModel::new(&dev, cfg.arch, &cfg.projector, cfg.seed);
        for p in &m.store.params {
            let t0 = init.tensor(&p.name).unwrap();
            assert_eq!(t0.shape(), p.shape.as_slice(), "{}", p.name);
        }
        let mut opt = Lars::new(&m.store, cfg.lars);
        let mut losses = vec![];
        let floats = |t: ::safetensors::tensor::TensorView| crate::checkpoint::floats(t.data());
        for (k, step) in steps.iter().enumerate() {
            let a = init.tensor(&format!("views.a.{k}")).unwrap();
            let b = init.tensor(&format!("views.b.{k}")).unwrap();
            assert_eq!(a.shape(), &[4, 3, 16, 16]);
            let (va, vb) = normalize_views(
                &dev,
                a.data(),
                b.data(),
                4,
                16,
                16,
                imagenet::MEAN,
                imagenet::STD,
            )
            .unwrap();
            let mut g = m.loss_and_grads(va, vb, cfg.lambd).unwrap();
            let (lw, lb) = cfg.schedule.lrs(2 + k as u64);
            let grads: Vec<_> = m
                .store
                .params
                .iter()
                .map(|p| (p.kind != Kind::Buffer).then(|| g.grads.get(&p.t).as_vec()))
                .collect();
            opt.step(&mut m.store, &mut g.grads, lw, lb).unwrap();
            losses.push(g.loss());
            // the state after the step, its gradients and momentum
            for (i, p) in m.store.params.iter().enumerate() {
                assert_eq!(
                    floats(step.tensor(&p.name).unwrap()),
                    p.t.as_vec(),
                    "{}",
                    p.name
                );
                let grad = step.tensor(&format!("{GRAD_PREFIX}{}", p.name));
                assert_eq!(grad.ok().map(floats), grads[i], "{}", p.name);
                let mu = step.tensor(&format!("{MU_PREFIX}{}", p.name));
                let want = opt.mu[i].as_ref().map(|mu| mu.as_vec());
                assert_eq!(mu.ok().map(floats), want, "{}", p.name);
                assert_eq!(want.is_some(), p.kind != Kind::Buffer, "{}", p.name);
            }
        }
        assert_eq!(losses, info.losses);
        assert!(steps[1].tensor("backbone.bn1.running_var").is_ok());

        // tiny: 4 conv-bn-relu layers per view, then the projector's hidden layer
        for (k, step) in steps.iter().enumerate() {
            let relus = (0..)
                .take_while(|i| step.tensor(&format!("{RELU_PREFIX}{i}")).is_ok())
                .count();
            assert_eq!(relus, 2 * (4 + 1), "step {k}");
            let first = step.tensor(&format!("{RELU_PREFIX}0")).unwrap();
            assert_eq!(
                first.shape()[1],
                4 * 8 * 8,
                "(C, B*H*W) after the stride-2 stem"
            );
            let proj = step.tensor(&format!("{RELU_PREFIX}4")).unwrap();
            assert_eq!(
                proj.shape(),
                &[16, 4],
                "the projector's hidden layer, (F, B)"
            );
            assert!(first.data().iter().all(|&v| v <= 1));
            let pre = floats(step.tensor(&format!("{RELU_PREFIX}0.pre")).unwrap());
            let mag = floats(step.tensor(&format!("{RELU_PREFIX}0.magnitude")).unwrap());
            assert_eq!(
                (pre.len(), mag.len()),
                (first.data().len(), first.data().len())
            );
            for ((&p, &m), &on) in pre.iter().zip(&mag).zip(first.data()) {
                assert_eq!(p > 0.0, on == 1, "the decision is the sign of its input");
                assert!(m > 0.0 && p.abs() <= 10.0 * m, "{p} {m}");
            }
            assert!(first.data().iter().any(|&v| v == 1) && first.data().iter().any(|&v| v == 0));
        }
    }
}
