//! Backbone + projector architectures and the [`BarlowModel`] training wrapper.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use dfdx::nn::builders::{AvgPoolGlobal, BatchNorm1D, BatchNorm2D, ReLU, UnbiasedLinear};
use dfdx::optim::{Momentum, Sgd, SgdConfig, WeightDecay};
use dfdx::prelude::*;

use crate::input::ImageBatch;
use crate::loss::barlow_twins;
use crate::nn::builders::Conv2d;

/// conv3x3 (no bias) + BatchNorm2d + ReLU.
pub type ConvBnRelu<const I: usize, const O: usize, const S: usize> =
    (Conv2d<I, O, 3, S, 1>, BatchNorm2D<O>, ReLU);

/// Tiny CPU backbone: 3->16 /2, 16->32 /2, 32->64 /2, 64->64, global average pool -> 64 features.
/// Any input of at least 16x16 works (e.g. 64x64, 224x224).
pub type TinyBackbone = (
    ConvBnRelu<3, 16, 2>,
    ConvBnRelu<16, 32, 2>,
    ConvBnRelu<32, 64, 2>,
    ConvBnRelu<64, 64, 1>,
    AvgPoolGlobal,
);
/// Feature width of [`TinyBackbone`].
pub const TINY_FEATURES: usize = 64;

/// Barlow Twins projector: Linear(F->P1, no bias), BN1d, ReLU, Linear(P1->P2, no bias).
pub type Projector<const F: usize, const P1: usize, const P2: usize> = (
    UnbiasedLinear<F, P1>,
    BatchNorm1D<P1>,
    ReLU,
    UnbiasedLinear<P1, P2>,
);

/// Small projector preset for the tiny backbone: 64-128-128.
pub type TinyProjector = Projector<TINY_FEATURES, 128, 128>;

/// The tiny model: `BarlowModel<TinyBackbone, TinyProjector, 64, 128, D>`.
pub type TinyBarlow<D> = BarlowModel<TinyBackbone, TinyProjector, TINY_FEATURES, 128, D>;

/// The built network: `(backbone, projector)`, a dfdx tuple module (a `TensorCollection`, so it
/// works with optimizers, `alloc_grads`, `SaveToSafetensors`, ...).
pub type Net<B, P, D> = (
    <B as BuildOnDevice<D, f32>>::Built,
    <P as BuildOnDevice<D, f32>>::Built,
);

/// Default optimizer for now: SGD, momentum 0.9 (LARS comes later; `train_step` takes any dfdx
/// `Optimizer`).
pub type DefaultOptimizer<B, P, D> = Sgd<Net<B, P, D>, f32, D>;

type Taped<D> = OwnedTape<f32, D>;
type Feat<const F: usize, D, T = NoneTape> = Tensor<(usize, Const<F>), f32, D, T>;

/// Backbone `B` (builder type, image batch -> `(n, F)`) + projector `P` (`(n, F)` -> `(n, Z)`)
/// built on device `D`, plus the reusable gradient buffers.
pub struct BarlowModel<B, P, const F: usize, const Z: usize, D>
where
    D: Device<f32>,
    B: BuildOnDevice<D, f32>,
    P: BuildOnDevice<D, f32>,
{
    /// `(backbone, projector)`.
    pub net: Net<B, P, D>,
    /// Gradients allocated once (`alloc_grads`) and zeroed after every update.
    grads: Option<Gradients<f32, D>>,
}

impl<B, P, const F: usize, const Z: usize, D> BarlowModel<B, P, F, Z, D>
where
    D: Device<f32>,
    B: BuildOnDevice<D, f32>,
    P: BuildOnDevice<D, f32>,
    B::Built: ModuleMut<ImageBatch<D, Taped<D>>, Output = Feat<F, D, Taped<D>>, Error = D::Err>
        + Module<ImageBatch<D>, Output = Feat<F, D>, Error = D::Err>,
    P::Built: ModuleMut<Feat<F, D, Taped<D>>, Output = Feat<Z, D, Taped<D>>, Error = D::Err>
        + Module<Feat<F, D>, Output = Feat<Z, D>, Error = D::Err>,
{
    /// Build with fresh (random) weights on `dev`. Seed the device for reproducibility
    /// (`Cpu::seed_from_u64`).
    pub fn new(dev: &D) -> Self {
        let net = <(B, P) as BuildOnDevice<D, f32>>::build_on_device(dev);
        Self { net, grads: None }
    }

    /// The default optimizer: SGD with momentum 0.9 and L2 weight decay `weight_decay`.
    pub fn default_optimizer(&self, lr: f64, weight_decay: f64) -> DefaultOptimizer<B, P, D> {
        Sgd::new(
            &self.net,
            SgdConfig {
                lr,
                momentum: Some(Momentum::Classic(0.9)),
                weight_decay: (weight_decay > 0.0).then_some(WeightDecay::L2(weight_decay)),
            },
        )
    }

    /// One training step: forward both views (BatchNorm in training mode; each view gets its own
    /// batch statistics, as in the official code), Barlow Twins loss, backward, `opt.update`.
    /// Returns the loss value (before the update).
    pub fn train_step<O>(
        &mut self,
        opt: &mut O,
        view_a: ImageBatch<D>,
        view_b: ImageBatch<D>,
        lambd: f32,
    ) -> Result<f32>
    where
        O: Optimizer<Net<B, P, D>, D, f32>,
    {
        let grads = match self.grads.take() {
            Some(g) => g,
            None => self
                .net
                .try_alloc_grads()
                .map_err(|e| anyhow!("alloc_grads: {e:?}"))?,
        };
        let dev_err = |e: D::Err| anyhow!("forward/backward: {e:?}");
        let za = self
            .net
            .0
            .try_forward_mut(view_a.traced(grads))
            .map_err(dev_err)?;
        let za = self.net.1.try_forward_mut(za).map_err(dev_err)?;
        let (za, tape) = za.split_tape();
        let zb = self
            .net
            .0
            .try_forward_mut(view_b.put_tape(tape))
            .map_err(dev_err)?;
        let zb = self.net.1.try_forward_mut(zb).map_err(dev_err)?;
        let loss = barlow_twins(zb, za, lambd).map_err(dev_err)?;
        let value = loss.as_vec()[0];
        let mut grads = loss.try_backward().map_err(dev_err)?;
        opt.update(&mut self.net, &grads)
            .map_err(|e| anyhow!("optimizer update: {e:?}"))?;
        self.net.try_zero_grads(&mut grads).map_err(dev_err)?;
        self.grads = Some(grads);
        Ok(value)
    }

    /// Backbone features `(n, F)` in eval mode (BatchNorm uses running statistics), untaped.
    pub fn embed(&self, x: ImageBatch<D>) -> Feat<F, D> {
        self.net.0.forward(x)
    }

    /// Projector output `(n, Z)` in eval mode, untaped.
    pub fn project(&self, x: ImageBatch<D>) -> Feat<Z, D> {
        self.net.1.forward(self.net.0.forward(x))
    }

    /// Save all weights and BatchNorm running statistics.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.net
            .save_safetensors(path)
            .map_err(|e| anyhow!("{e:?}"))
            .with_context(|| format!("saving {}", path.display()))
    }

    /// Load weights saved by [`Self::save`] (same architecture).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.net
            .load_safetensors(path)
            .map_err(|e| anyhow!("{e:?}"))
            .with_context(|| format!("loading {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{normalize_batch, IMAGENET_MEAN, IMAGENET_STD};
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    fn random_views(n: usize, h: usize, w: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let a: Vec<u8> = (0..n * 3 * h * w).map(|_| rng.gen()).collect();
        // second view: the first, perturbed (a crude "augmentation")
        let b = a
            .iter()
            .map(|&p| p.saturating_add(rng.gen_range(0..40)))
            .collect();
        (a, b)
    }

    #[test]
    fn train_steps_reduce_loss_on_fixed_batch() {
        let dev = Cpu::seed_from_u64(0);
        let mut model = TinyBarlow::<Cpu>::new(&dev);
        let mut opt = model.default_optimizer(0.05, 0.0);
        let (n, h, w) = (16, 32, 32);
        let (a, b) = random_views(n, h, w, 1);
        let mut losses = Vec::new();
        for _ in 0..6 {
            let va = normalize_batch(&dev, &a, n, 3, h, w, IMAGENET_MEAN, IMAGENET_STD);
            let vb = normalize_batch(&dev, &b, n, 3, h, w, IMAGENET_MEAN, IMAGENET_STD);
            losses.push(model.train_step(&mut opt, va, vb, 0.0051).unwrap());
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(
            losses.last().unwrap() < &(0.9 * losses[0]),
            "loss did not fall: {losses:?}"
        );
    }

    #[test]
    fn train_step_updates_all_parameters_and_running_stats() {
        let dev = Cpu::seed_from_u64(1);
        let mut model = TinyBarlow::<Cpu>::new(&dev);
        let mut opt = model.default_optimizer(0.01, 0.0);
        let w0 = model.net.0 .0 .0.weight.as_vec();
        let rm0 = model.net.0 .0 .1.running_mean.as_vec();
        let p0 = model.net.1 .0.weight.as_vec();
        let (a, b) = random_views(8, 16, 16, 2);
        let va = normalize_batch(&dev, &a, 8, 3, 16, 16, IMAGENET_MEAN, IMAGENET_STD);
        let vb = normalize_batch(&dev, &b, 8, 3, 16, 16, IMAGENET_MEAN, IMAGENET_STD);
        model.train_step(&mut opt, va, vb, 0.0051).unwrap();
        assert_ne!(
            model.net.0 .0 .0.weight.as_vec(),
            w0,
            "first conv not updated"
        );
        assert_ne!(
            model.net.0 .0 .1.running_mean.as_vec(),
            rm0,
            "BN running mean not updated"
        );
        assert_ne!(model.net.1 .0.weight.as_vec(), p0, "projector not updated");
    }

    #[test]
    fn safetensors_round_trip_gives_identical_embeddings() {
        let dev = Cpu::seed_from_u64(2);
        let mut model = TinyBarlow::<Cpu>::new(&dev);
        let mut opt = model.default_optimizer(0.05, 1e-4);
        let (n, h, w) = (8, 24, 24);
        let (a, b) = random_views(n, h, w, 3);
        let view = |p: &[u8]| normalize_batch(&dev, p, n, 3, h, w, IMAGENET_MEAN, IMAGENET_STD);
        // a couple of steps so the BN running statistics are non-trivial
        for _ in 0..2 {
            model
                .train_step(&mut opt, view(&a), view(&b), 0.0051)
                .unwrap();
        }
        let e0 = model.embed(view(&a)).as_vec();
        let p0 = model.project(view(&a)).as_vec();
        assert_eq!(e0.len(), n * TINY_FEATURES);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.safetensors");
        model.save(&path).unwrap();
        let mut other = TinyBarlow::<Cpu>::new(&Cpu::seed_from_u64(99));
        assert_ne!(other.embed(view(&a)).as_vec(), e0);
        other.load(&path).unwrap();
        assert_eq!(other.embed(view(&a)).as_vec(), e0);
        assert_eq!(other.project(view(&a)).as_vec(), p0);
    }

    #[test]
    fn tiny_backbone_accepts_various_sizes() {
        let dev = Cpu::seed_from_u64(3);
        let model = TinyBarlow::<Cpu>::new(&dev);
        for (n, h, w) in [(2, 16, 16), (3, 64, 64), (1, 37, 50)] {
            let x: ImageBatch<Cpu> = dev.sample_normal_like(&(n, Const::<3>, h, w));
            let e = model.embed(x);
            assert_eq!(*e.shape(), (n, Const::<TINY_FEATURES>));
            assert!(e.as_vec().iter().all(|v| v.is_finite()));
        }
    }

    /// `cargo test -p trainer --release -- --ignored --nocapture step_timing`
    #[test]
    #[ignore]
    fn step_timing() {
        let dev = Cpu::seed_from_u64(0);
        dev.enable_cache();
        let mut model = TinyBarlow::<Cpu>::new(&dev);
        let mut opt = model.default_optimizer(0.05, 1e-6);
        let sizes: Vec<usize> = std::env::var("BARLOW_BENCH_SIZES")
            .ok()
            .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![64]);
        for hw in sizes {
            let n = 32;
            let (a, b) = random_views(n, hw, hw, 4);
            let steps = if hw <= 64 { 10 } else { 3 };
            for i in 0..steps + 1 {
                let t = std::time::Instant::now();
                let va = normalize_batch(&dev, &a, n, 3, hw, hw, IMAGENET_MEAN, IMAGENET_STD);
                let vb = normalize_batch(&dev, &b, n, 3, hw, hw, IMAGENET_MEAN, IMAGENET_STD);
                let loss = model.train_step(&mut opt, va, vb, 0.0051).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                println!(
                    "tiny {hw}x{hw} batch {n} step {i}{}: {ms:.1} ms/step, loss {loss:.3}",
                    if i == 0 { " (warm-up)" } else { "" }
                );
            }
        }
    }
}
