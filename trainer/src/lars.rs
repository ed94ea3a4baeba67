//! LARS and the learning-rate schedule, exactly as the official Barlow Twins code
//! (facebookresearch/barlowtwins, `main.py`):
//!
//! ```text
//! for p in params:                       # two groups: weights (ndim > 1), biases/BN (ndim == 1)
//!     dp = p.grad
//!     if p is a weight: dp = dp + weight_decay * p                       # weight_decay_filter
//!     if p is a weight:                                                   # lars_adaptation_filter
//!         q = eta * ||p|| / ||dp||  if ||p|| > 0 and ||dp|| > 0  else 1
//!         dp = dp * q
//!     mu = momentum * mu + dp
//!     p = p - lr_group * mu
//! ```
//!
//! with `momentum = 0.9`, `eta = 0.001`, and the schedule of `adjust_learning_rate`: linear
//! warm-up from 0 over `warmup_epochs` epochs, then cosine decay to 0.001x, times
//! `batch_size / 256`, times `--lr-weights` / `--lr-biases` for the two groups.

use anyhow::{anyhow, bail, Result};
use dfdx::prelude::*;

use crate::nn::Flat;
use crate::params::{Kind, Store};

/// LARS hyper-parameters (the official defaults).
#[derive(Debug, Clone, Copy)]
pub struct LarsConfig {
    pub momentum: f64,
    pub eta: f64,
    pub weight_decay: f64,
}

impl Default for LarsConfig {
    fn default() -> Self {
        LarsConfig {
            momentum: 0.9,
            eta: 0.001,
            weight_decay: 1.5e-6,
        }
    }
}

/// The optimizer state: one momentum buffer per trainable tensor of a [`Store`].
#[derive(Debug, Clone)]
pub struct Lars<D: Device<f32>> {
    pub cfg: LarsConfig,
    /// `mu[i]` for `store.params[i]`; `None` for buffers and before the first step.
    pub mu: Vec<Option<Flat<D>>>,
}

impl<D: Device<f32>> Lars<D> {
    pub fn new(store: &Store<D>, cfg: LarsConfig) -> Self {
        Lars {
            cfg,
            mu: vec![None; store.params.len()],
        }
    }

    /// One update of every trainable tensor of `store` from `grads` (as produced by
    /// [`crate::model::BarlowModel::loss_and_grads`]), with the two groups' learning rates.
    ///
    /// Takes each parameter's gradient out of `grads` (no copy) and never waits for the device:
    /// the trust ratio `eta * ||p|| / ||dp||` (1 when either norm is 0) is computed and applied
    /// on the device.
    pub fn step(
        &mut self,
        store: &mut Store<D>,
        grads: &mut Gradients<f32, D>,
        lr_weights: f64,
        lr_biases: f64,
    ) -> Result<()> {
        let err = |e: D::Err| anyhow!("LARS step: {e:?}");
        let c = self.cfg;
        for (i, p) in store.params.iter_mut().enumerate() {
            let lr = match p.kind {
                Kind::Buffer => continue,
                Kind::Weight => lr_weights,
                Kind::Bias => lr_biases,
            };
            let dev = p.t.device().clone();
            let shape = *p.t.shape();
            let g: Flat<D> = match grads.remove(&p.t) {
                Some(buf) => Tensor::from_storage(&dev, shape, buf),
                None => bail!("LARS step: no gradient for {}", p.name),
            };
            let dp = if p.kind == Kind::Weight {
                let mut dp = g;
                if c.weight_decay != 0.0 {
                    dp.try_axpy(1.0, &p.t, c.weight_decay).map_err(err)?;
                }
                let sq = |t: &Flat<D>| two_level_sum(t.clone().try_square()?);
                let (pn, un) = (sq(&p.t).map_err(err)?, sq(&dp).map_err(err)?);
                // both squared norms > 0 <=> their product > 0 (neither is negative)
                let both = pn
                    .clone()
                    .try_mul(un.clone())
                    .map_err(err)?
                    .try_gt(0.0)
                    .map_err(err)?;
                let ratio = pn
                    .try_div(un)
                    .map_err(err)?
                    .try_sqrt()
                    .map_err(err)?
                    .try_mul(c.eta as f32)
                    .map_err(err)?;
                let one = dev.try_ones_like(&()).map_err(err)?;
                let q = both.try_choose(ratio, one).map_err(err)?;
                dp.try_mul(q.try_broadcast_like(&shape).map_err(err)?)
                    .map_err(err)?
            } else {
                g
            };
            let mu = match self.mu[i].take() {
                // mu starts at zero: 0.9 * 0 + dp = dp
                None => dp,
                Some(mut mu) => {
                    mu.try_axpy(c.momentum, &dp, 1.0).map_err(err)?;
                    mu
                }
            };
            p.t.try_axpy(1.0, &mu, -lr).map_err(err)?;
            self.mu[i] = Some(mu);
        }
        Ok(())
    }
}

/// The sum of a flat tensor as rows of about `sqrt(len)` (the largest divisor of the length up
/// to its square root), each row summed first and then the row sums: a sequential f32 sum over
/// millions of terms (a ResNet-50 conv, the 8192-wide projector's 67M weights) loses about 1e-4
/// of its value, enough to move LARS's trust ratio off the official one (found by
/// `reference/step_check.py`).
fn two_level_sum<D: Device<f32>>(t: Flat<D>) -> Result<Tensor<Rank0, f32, D>, D::Err> {
    let n = t.shape().0;
    let cols = (1..=(n as f64).sqrt() as usize)
        .rev()
        .find(|c| n % c == 0)
        .unwrap_or(1);
    t.try_reshape_like(&(n / cols, cols))?
        .try_sum::<(usize,), Axis<1>>()?
        .try_sum::<Rank0, _>()
}

/// The official learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub batch_size: usize,
    /// Steps per epoch (`len(loader)`; from the ring header).
    pub steps_per_epoch: u64,
    pub warmup_epochs: f64,
    /// Planned epochs (`max_steps = epochs * steps_per_epoch`).
    pub epochs: f64,
    pub lr_weights: f64,
    pub lr_biases: f64,
}

impl Schedule {
    pub fn max_steps(&self) -> f64 {
        self.epochs * self.steps_per_epoch as f64
    }

    /// `(lr_weights, lr_biases)` at global step `step` (0-based, `epoch * len(loader) + i`).
    pub fn lrs(&self, step: u64) -> (f64, f64) {
        let f = self.factor(step);
        (f * self.lr_weights, f * self.lr_biases)
    }

    /// The learning-rate multiplier before the group factors.
    pub fn factor(&self, step: u64) -> f64 {
        let mut max_steps = self.max_steps();
        let warmup_steps = self.warmup_epochs * self.steps_per_epoch as f64;
        let base_lr = self.batch_size as f64 / 256.0;
        let mut step = step as f64;
        if step < warmup_steps {
            base_lr * step / warmup_steps
        } else {
            step -= warmup_steps;
            max_steps -= warmup_steps;
            let q = if max_steps > 0.0 {
                0.5 * (1.0 + (std::f64::consts::PI * (step / max_steps).min(1.0)).cos())
            } else {
                0.0
            };
            let end_lr = base_lr * 0.001;
            base_lr * q + end_lr * (1.0 - q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The official update, by hand in f64, for one tensor.
    fn official(
        p: &[f64],
        g: &[f64],
        mu: &mut [f64],
        weight: bool,
        cfg: &LarsConfig,
        lr: f64,
    ) -> Vec<f64> {
        let mut dp: Vec<f64> = g.to_vec();
        if weight {
            for (d, x) in dp.iter_mut().zip(p) {
                *d += cfg.weight_decay * x;
            }
            let pn = p.iter().map(|x| x * x).sum::<f64>().sqrt();
            let un = dp.iter().map(|x| x * x).sum::<f64>().sqrt();
            let q = if pn > 0.0 && un > 0.0 {
                cfg.eta * pn / un
            } else {
                1.0
            };
            dp.iter_mut().for_each(|d| *d *= q);
        }
        for (m, d) in mu.iter_mut().zip(&dp) {
            *m = cfg.momentum * *m + d;
        }
        p.iter().zip(mu.iter()).map(|(x, m)| x - lr * m).collect()
    }

    #[test]
    fn two_lars_steps_equal_the_official_update() {
        let dev: Cpu = Default::default();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let mut store = Store::<Cpu>::new();
        let w: Vec<f32> = (0..24).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..6).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let iw = store.add(&dev, "w", vec![4, 6], Kind::Weight, w.clone());
        let ib = store.add(&dev, "b", vec![6], Kind::Bias, b.clone());
        let iz = store.add(&dev, "z", vec![3], Kind::Weight, vec![0.0; 3]); // ||p|| = 0 -> q = 1
        let ir = store.add(&dev, "r", vec![6], Kind::Buffer, vec![1.0; 6]);
        // a weight decay large enough to matter
        let cfg = LarsConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = Lars::new(&store, cfg);
        let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let (mut pw, mut pb, mut pz) = (to64(&w), to64(&b), vec![0.0; 3]);
        let (mut mw, mut mb, mut mz) = (vec![0.0; 24], vec![0.0; 6], vec![0.0; 3]);
        let (lr_w, lr_b) = (0.7, 0.03);
        for step in 0..2 {
            // a loss whose gradient is known: sum(c * p) + 0.5 * sum(p^2)
            let cw: Vec<f32> = (0..24).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let cb: Vec<f32> = (0..6).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let cz: Vec<f32> = (0..3).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let tw = store.get(iw).clone().leaky_traced();
            let tb = store.get(ib).clone();
            let tz = store.get(iz).clone();
            let lw = (tw.retaped::<OwnedTape<f32, Cpu>>() * dev.tensor_from_vec(cw.clone(), (24,)))
                .sum()
                + tw.square().sum() * 0.5;
            let lb = (tb.retaped::<OwnedTape<f32, Cpu>>() * dev.tensor_from_vec(cb.clone(), (6,)))
                .sum()
                + tb.retaped::<OwnedTape<f32, Cpu>>().square().sum() * 0.5;
            let lz =
                (tz.retaped::<OwnedTape<f32, Cpu>>() * dev.tensor_from_vec(cz.clone(), (3,))).sum();
            let mut g = (lw + lb + lz).backward();
            let gw: Vec<f64> = pw.iter().zip(&cw).map(|(p, c)| p + *c as f64).collect();
            let gb: Vec<f64> = pb.iter().zip(&cb).map(|(p, c)| p + *c as f64).collect();
            let gz: Vec<f64> = to64(&cz);
            opt.step(&mut store, &mut g, lr_w, lr_b).unwrap();
            pw = official(&pw, &gw, &mut mw, true, &cfg, lr_w);
            pb = official(&pb, &gb, &mut mb, false, &cfg, lr_b);
            pz = official(&pz, &gz, &mut mz, true, &cfg, lr_w);
            for (name, i, want) in [("w", iw, &pw), ("b", ib, &pb), ("z", iz, &pz)] {
                let got = store.get(i).as_vec();
                for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() < 1e-6 * (1.0 + w.abs()),
                        "step {step} {name}[{k}]: {g} vs {w}"
                    );
                }
            }
            assert_eq!(store.get(ir).as_vec(), vec![1.0; 6], "buffers untouched");
        }
    }

    #[test]
    fn schedule_equals_the_official_formula() {
        let s = Schedule {
            batch_size: 2048,
            steps_per_epoch: 625,
            warmup_epochs: 10.0,
            epochs: 1000.0,
            lr_weights: 0.2,
            lr_biases: 0.0048,
        };
        // by hand from adjust_learning_rate (batch 2048 -> base_lr 8)
        let official = |step: f64| -> f64 {
            let (max_steps, warmup) = (1000.0 * 625.0, 10.0 * 625.0);
            let base = 2048.0 / 256.0;
            if step < warmup {
                base * step / warmup
            } else {
                let q = 0.5
                    * (1.0 + (std::f64::consts::PI * (step - warmup) / (max_steps - warmup)).cos());
                base * q + base * 0.001 * (1.0 - q)
            }
        };
        for step in [
            0u64, 1, 3125, 6249, 6250, 6251, 100_000, 320_000, 624_999, 625_000,
        ] {
            let (w, b) = s.lrs(step);
            let want = official(step as f64);
            assert!(
                (w - 0.2 * want).abs() < 1e-12,
                "step {step}: {w} vs {}",
                0.2 * want
            );
            assert!((b - 0.0048 * want).abs() < 1e-12);
        }
        assert_eq!(s.lrs(0), (0.0, 0.0));
        assert!((s.factor(6250) - 8.0).abs() < 1e-12);
        assert!((s.factor(625_000) - 0.008).abs() < 1e-12);
    }

    /// The squared norm of a projector-sized weight (2048 x 8192) within 1e-5 of the f64 sum
    /// (a sequential f32 sum is ~2e-2 off there; PyTorch 2.14's CPU `torch.norm`, 5.6e-4).
    #[test]
    fn two_level_sum_of_16m_squares_is_accurate() {
        let dev = Cpu::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = 2048 * 8192;
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-0.011f32..0.011)).collect();
        let exact: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let t: Flat<Cpu> = dev.tensor_from_vec(v, (n,));
        let got = two_level_sum(t.square()).unwrap().array() as f64;
        let err = (got - exact).abs() / exact;
        assert!(err < 1e-5, "relative error {err:.2e}");
    }
}
