//! Does one training step give the same answer on two devices?
//!
//! Both devices start from the same weights (saved on the first, loaded on the second), take one
//! SGD step on the same pair of view batches, and save the result. With momentum starting at zero
//! and no weight decay, each parameter moves by `-lr * gradient`, so comparing the two moves
//! compares the gradients. BatchNorm running statistics are compared the same way.

use std::path::Path;

use anyhow::Context;
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::input::normalize_batch;
use crate::model::TinyBarlow;

/// Learning rate of the compared step (large enough that the moves dwarf f32 rounding).
const LR: f64 = 1.0;

/// The outcome of a comparison.
#[derive(Debug, Serialize)]
pub struct DeviceComparison {
    pub loss_a: f32,
    pub loss_b: f32,
    /// |loss_a - loss_b| / |loss_a|.
    pub loss_rel_err: f64,
    /// ||grad_a - grad_b|| / ||grad_a|| over all parameters together (the pass criterion).
    pub grad_rel_err: f64,
    /// Largest per-parameter ||grad_a - grad_b|| / ||grad_a||: a tensor whose gradient is a sum
    /// with heavy cancellation (e.g. a BatchNorm bias) shows f32 summation-order noise here.
    pub max_grad_rel_err: f64,
    /// The parameter with that error.
    pub worst_tensor: String,
    pub tensors: usize,
}

impl DeviceComparison {
    /// Within `tol` on both the loss and the whole gradient.
    pub fn within(&self, tol: f64) -> bool {
        self.loss_rel_err <= tol && self.grad_rel_err <= tol
    }
}

/// One step of the tiny model on `dev`, starting from `init`, saving the result to `out`.
fn one_step<D: Device<f32>>(
    dev: &D,
    init: &Path,
    a: &[u8],
    b: &[u8],
    n: usize,
    size: usize,
    out: &Path,
) -> anyhow::Result<f32> {
    let mut model = TinyBarlow::<D>::new(dev);
    model.load(init)?;
    let mut opt = model.default_optimizer(LR, 0.0);
    let mean = crate::input::IMAGENET_MEAN;
    let std = crate::input::IMAGENET_STD;
    let va = normalize_batch(dev, a, n, 3, size, size, mean, std);
    let vb = normalize_batch(dev, b, n, 3, size, size, mean, std);
    let loss = model.train_step(&mut opt, va, vb, crate::loss::DEFAULT_LAMBDA)?;
    model.save(out)?;
    Ok(loss)
}

fn parse(bytes: &[u8]) -> anyhow::Result<::safetensors::tensor::SafeTensors<'_>> {
    ::safetensors::tensor::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("reading a checkpoint back: {e:?}"))
}

/// Runs the same step on `dev_a` and `dev_b` (random weights and inputs from `seed`) and compares.
pub fn compare_devices<A: Device<f32>, B: Device<f32>>(
    dev_a: &A,
    dev_b: &B,
    batch: usize,
    size: usize,
    seed: u64,
    work_dir: &Path,
) -> anyhow::Result<DeviceComparison> {
    let init = work_dir.join("init.safetensors");
    TinyBarlow::<A>::new(dev_a).save(&init)?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let pixels = batch * 3 * size * size;
    let a: Vec<u8> = (0..pixels).map(|_| rng.gen()).collect();
    let b: Vec<u8> = (0..pixels).map(|_| rng.gen()).collect();
    let (out_a, out_b) = (
        work_dir.join("after_a.safetensors"),
        work_dir.join("after_b.safetensors"),
    );
    let loss_a = one_step(dev_a, &init, &a, &b, batch, size, &out_a)?;
    let loss_b = one_step(dev_b, &init, &a, &b, batch, size, &out_b)?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (init, after_a, after_b) = (read(&init)?, read(&out_a)?, read(&out_b)?);
    let (init, after_a, after_b) = (parse(&init)?, parse(&after_a)?, parse(&after_b)?);
    let floats = |bytes: &[u8]| -> Vec<f64> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect()
    };
    let mut cmp = DeviceComparison {
        loss_a,
        loss_b,
        loss_rel_err: ((loss_a - loss_b) as f64).abs() / (loss_a as f64).abs().max(1e-12),
        grad_rel_err: 0.0,
        max_grad_rel_err: 0.0,
        worst_tensor: String::new(),
        tensors: 0,
    };
    let (mut total_diff, mut total_norm) = (0.0f64, 0.0f64);
    for (name, t0) in init.tensors() {
        let (x0, xa, xb) = (
            floats(t0.data()),
            floats(
                after_a
                    .tensor(&name)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    .data(),
            ),
            floats(
                after_b
                    .tensor(&name)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    .data(),
            ),
        );
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for ((x0, xa), xb) in x0.iter().zip(&xa).zip(&xb) {
            let (ma, mb) = (xa - x0, xb - x0);
            diff += (ma - mb).powi(2);
            norm += ma.powi(2);
        }
        if norm == 0.0 {
            continue; // a parameter the step does not move (e.g. a zero-initialised one)
        }
        total_diff += diff;
        total_norm += norm;
        let rel = (diff / norm).sqrt();
        cmp.tensors += 1;
        if rel > cmp.max_grad_rel_err {
            cmp.max_grad_rel_err = rel;
            cmp.worst_tensor = name;
        }
    }
    cmp.grad_rel_err = (total_diff / total_norm.max(f64::MIN_POSITIVE)).sqrt();
    Ok(cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_agrees_with_itself_and_the_check_sees_every_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Cpu::seed_from_u64(1);
        let cmp = compare_devices(&dev, &dev, 4, 16, 7, dir.path()).unwrap();
        assert!(cmp.within(1e-6), "{cmp:?}");
        assert!(cmp.loss_a.is_finite() && cmp.loss_a > 0.0);
        assert!(
            cmp.tensors >= 10,
            "convs, BNs and linears all moved: {cmp:?}"
        );
    }
}
