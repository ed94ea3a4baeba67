//! Does one training step give the same answer on two devices?
//!
//! Both devices build the same model (the initial weights come from a seeded host RNG, so they are
//! identical everywhere), take the same pair of random view batches, and compute the loss and
//! every parameter's gradient; the BatchNorm running statistics updated by the forward passes are
//! compared too. Any architecture and projector can be checked.

use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::input::normalize_views;
use crate::model::{Arch, BarlowModel};
use crate::nn::NnDevice;
use crate::params::Kind;
use views::imagenet;

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
    /// Parameters compared (those with a non-zero gradient).
    pub tensors: usize,
    /// ||stats_a - stats_b|| / ||stats_a|| over all BatchNorm running statistics after the step.
    pub running_stats_rel_err: f64,
}

impl DeviceComparison {
    /// Within `tol` on the loss, the whole gradient and the running statistics.
    pub fn within(&self, tol: f64) -> bool {
        self.loss_rel_err <= tol && self.grad_rel_err <= tol && self.running_stats_rel_err <= tol
    }
}

/// Loss, per-parameter gradients (host copies, `None` for buffers) and buffers after one step.
type StepResult = (
    f32,
    Vec<Option<Vec<f32>>>,
    Vec<Option<Vec<f32>>>,
    Vec<String>,
);

fn one_step<D: NnDevice>(
    dev: &D,
    arch: Arch,
    projector: &[usize],
    seed: u64,
    a: &[u8],
    b: &[u8],
    n: usize,
    size: usize,
) -> anyhow::Result<StepResult> {
    let mut model = BarlowModel::new(dev, arch, projector, seed);
    let (va, vb) = normalize_views(dev, a, b, n, size, size, imagenet::MEAN, imagenet::STD)?;
    let sg = model.loss_and_grads(va, vb, crate::loss::DEFAULT_LAMBDA)?;
    let mut grads = Vec::new();
    let mut bufs = Vec::new();
    let mut names = Vec::new();
    for p in &model.store.params {
        names.push(p.name.clone());
        if p.kind == Kind::Buffer {
            grads.push(None);
            bufs.push(Some(p.t.as_vec()));
        } else {
            grads.push(Some(sg.grads.get(&p.t).as_vec()));
            bufs.push(None);
        }
    }
    Ok((sg.loss(), grads, bufs, names))
}

/// Runs the same step on `dev_a` and `dev_b` (weights and inputs from `seed`) and compares.
#[allow(clippy::too_many_arguments)]
pub fn compare_devices<A: NnDevice, B: NnDevice>(
    dev_a: &A,
    dev_b: &B,
    arch: Arch,
    projector: &[usize],
    batch: usize,
    size: usize,
    seed: u64,
) -> anyhow::Result<DeviceComparison> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let pixels = batch * 3 * size * size;
    let a: Vec<u8> = (0..pixels).map(|_| rng.gen()).collect();
    let b: Vec<u8> = (0..pixels).map(|_| rng.gen()).collect();
    let (loss_a, ga, ba, names) =
        one_step(dev_a, arch, projector, seed, &a, &b, batch, size).context("first device")?;
    let (loss_b, gb, bb, _) =
        one_step(dev_b, arch, projector, seed, &a, &b, batch, size).context("second device")?;
    let mut cmp = DeviceComparison {
        loss_a,
        loss_b,
        loss_rel_err: ((loss_a - loss_b) as f64).abs() / (loss_a as f64).abs().max(1e-12),
        grad_rel_err: 0.0,
        max_grad_rel_err: 0.0,
        worst_tensor: String::new(),
        tensors: 0,
        running_stats_rel_err: 0.0,
    };
    let diff = |x: &[f32], y: &[f32]| -> (f64, f64) {
        x.iter().zip(y).fold((0.0, 0.0), |(d, n), (&p, &q)| {
            (d + (p as f64 - q as f64).powi(2), n + (p as f64).powi(2))
        })
    };
    let (mut total_diff, mut total_norm) = (0.0f64, 0.0f64);
    let (mut sd, mut sn) = (0.0f64, 0.0f64);
    for i in 0..names.len() {
        if let (Some(x), Some(y)) = (&ga[i], &gb[i]) {
            let (d, n) = diff(x, y);
            if n == 0.0 {
                continue; // a parameter without gradient at this point (none in practice)
            }
            total_diff += d;
            total_norm += n;
            cmp.tensors += 1;
            let rel = (d / n).sqrt();
            if rel > cmp.max_grad_rel_err {
                cmp.max_grad_rel_err = rel;
                cmp.worst_tensor = names[i].clone();
            }
        }
        if let (Some(x), Some(y)) = (&ba[i], &bb[i]) {
            let (d, n) = diff(x, y);
            sd += d;
            sn += n;
        }
    }
    cmp.grad_rel_err = (total_diff / total_norm.max(f64::MIN_POSITIVE)).sqrt();
    cmp.running_stats_rel_err = (sd / sn.max(f64::MIN_POSITIVE)).sqrt();
    Ok(cmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;

    #[test]
    fn a_device_agrees_with_itself_and_the_check_sees_every_tensor() {
        let dev = Cpu::seed_from_u64(1);
        let cmp = compare_devices(&dev, &dev, Arch::Tiny, &[32, 16], 4, 16, 7).unwrap();
        assert!(cmp.within(1e-6), "{cmp:?}");
        assert!(cmp.loss_a.is_finite() && cmp.loss_a > 0.0);
        // 4 convs + 4 BN (gamma, beta) + 2 linears + 1 projector BN (gamma, beta)
        assert_eq!(cmp.tensors, 4 + 8 + 2 + 2, "{cmp:?}");
    }
}
