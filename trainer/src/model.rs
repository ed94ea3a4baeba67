//! Backbones (torchvision ResNet-18/50 layouts and a tiny CPU net), the Barlow Twins projector,
//! and [`BarlowModel`]: forward, loss, gradients, embeddings.
//!
//! Parameters live in a runtime [`Store`] under the official code's names
//! (`backbone.conv1.weight`, `backbone.layer1.0.bn1.running_mean`, `projector.0.weight`, ...), so
//! the projector sizes and the architecture are runtime configuration and the torchvision export
//! is a prefix strip.

use anyhow::{bail, Context, Result};
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64;

use crate::loss::barlow_twins;
use crate::nn::ops;
use crate::nn::{ConvGeom, Flat, Fmap, Mat, NnDevice};
use crate::params::{Kind, Store};

/// BatchNorm epsilon and momentum (PyTorch defaults).
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// Backbone architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// 4 conv-BN-ReLU layers (3->16/2, 16->32/2, 32->64/2, 64->64), avg pool: 64 features.
    Tiny,
    /// torchvision `resnet18` without fc: 512 features.
    Resnet18,
    /// torchvision `resnet50` without fc: 2048 features.
    Resnet50,
}

impl Arch {
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Tiny => "tiny",
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
        }
    }
    pub fn parse(s: &str) -> Result<Arch> {
        Ok(match s {
            "tiny" => Arch::Tiny,
            "resnet18" => Arch::Resnet18,
            "resnet50" => Arch::Resnet50,
            _ => bail!("unknown architecture {s:?} (tiny, resnet18, resnet50)"),
        })
    }
    /// Backbone output width.
    pub fn features(&self) -> usize {
        match self {
            Arch::Tiny => 64,
            Arch::Resnet18 => 512,
            Arch::Resnet50 => 2048,
        }
    }
    /// Smallest input side that keeps every feature map non-empty.
    pub fn min_input(&self) -> usize {
        match self {
            Arch::Tiny => 8,
            _ => 32,
        }
    }
}

/// Parses a dash-separated projector spec (`8192-8192-8192`).
pub fn parse_projector(s: &str) -> Result<Vec<usize>> {
    let sizes: Vec<usize> = s
        .split('-')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("projector {s:?}: expected sizes like 8192-8192-8192"))?;
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("projector {s:?}: needs at least one positive size");
    }
    Ok(sizes)
}

/// Formats projector sizes back (`8192-8192-8192`).
pub fn projector_spec(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

#[derive(Debug, Clone, Copy)]
struct Bn {
    gamma: usize,
    beta: usize,
    mean: usize,
    var: usize,
}

#[derive(Debug, Clone)]
struct ConvBn {
    weight: usize,
    geom: ConvGeom,
    bn: Bn,
}

/// A residual block: its convolutions (each followed by BatchNorm, all but the last by ReLU),
/// the shortcut's downsampling conv-BN if any, then add + ReLU.
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<ConvBn>,
    down: Option<ConvBn>,
}

#[derive(Debug, Clone)]
struct Backbone {
    /// `tiny`: its 4 conv-bn-relu layers; resnets: the 7x7 stem.
    stem: Vec<ConvBn>,
    /// The resnets' 3x3/2 max pool after the stem.
    maxpool: bool,
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
struct Projector {
    /// `sizes[0]` is the backbone width.
    sizes: Vec<usize>,
    linears: Vec<usize>,
    bns: Vec<Bn>,
}

/// Builds parameters with a seeded host RNG, so every device starts from identical weights.
struct Init<'a, D: Device<f32>> {
    dev: &'a D,
    store: Store<D>,
    rng: Pcg64,
}

impl<D: Device<f32>> Init<'_, D> {
    /// kaiming_normal_(mode="fan_out", nonlinearity="relu"), as torchvision's ResNet.
    fn conv(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> (usize, ConvGeom) {
        let geom = ConvGeom { cin, cout, k, s, p };
        let std = (2.0 / (cout * k * k) as f64).sqrt() as f32;
        let normal = Normal::new(0.0f32, std).unwrap();
        let data = (0..geom.weight_len())
            .map(|_| normal.sample(&mut self.rng))
            .collect();
        let i = self.store.add(
            self.dev,
            format!("{name}.weight"),
            geom.weight_shape(),
            Kind::Weight,
            data,
        );
        (i, geom)
    }
    /// gamma = 1 (0 with `zero_gamma`), beta = 0, running mean 0, running var 1.
    fn bn(&mut self, name: &str, c: usize, zero_gamma: bool) -> Bn {
        let g = if zero_gamma { 0.0 } else { 1.0 };
        let gamma = self.store.add(
            self.dev,
            format!("{name}.weight"),
            vec![c],
            Kind::Bias,
            vec![g; c],
        );
        let beta = self.store.add(
            self.dev,
            format!("{name}.bias"),
            vec![c],
            Kind::Bias,
            vec![0.0; c],
        );
        let mean = self.store.add(
            self.dev,
            format!("{name}.running_mean"),
            vec![c],
            Kind::Buffer,
            vec![0.0; c],
        );
        let var = self.store.add(
            self.dev,
            format!("{name}.running_var"),
            vec![c],
            Kind::Buffer,
            vec![1.0; c],
        );
        Bn {
            gamma,
            beta,
            mean,
            var,
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        conv_name: &str,
        bn_name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        s: usize,
        p: usize,
        zero_gamma: bool,
    ) -> ConvBn {
        let (weight, geom) = self.conv(conv_name, cin, cout, k, s, p);
        let bn = self.bn(bn_name, cout, zero_gamma);
        ConvBn { weight, geom, bn }
    }
    /// nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)); no bias.
    fn linear(&mut self, name: &str, inp: usize, out: usize) -> usize {
        let bound = 1.0 / (inp as f32).sqrt();
        let data = (0..inp * out)
            .map(|_| self.rng.gen_range(-bound..bound))
            .collect();
        self.store.add(
            self.dev,
            format!("{name}.weight"),
            vec![out, inp],
            Kind::Weight,
            data,
        )
    }
}

fn build_backbone<D: Device<f32>>(init: &mut Init<D>, arch: Arch) -> Backbone {
    let pre = "backbone";
    match arch {
        Arch::Tiny => {
            let chans = [(3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1)];
            let stem = chans
                .iter()
                .enumerate()
                .map(|(i, &(cin, cout, s))| {
                    init.conv_bn(
                        &format!("{pre}.conv{}", i + 1),
                        &format!("{pre}.bn{}", i + 1),
                        cin,
                        cout,
                        3,
                        s,
                        1,
                        false,
                    )
                })
                .collect();
            Backbone {
                stem,
                maxpool: false,
                blocks: vec![],
            }
        }
        Arch::Resnet18 | Arch::Resnet50 => {
            let stem = vec![init.conv_bn(
                &format!("{pre}.conv1"),
                &format!("{pre}.bn1"),
                3,
                64,
                7,
                2,
                3,
                false,
            )];
            let (layers, bottleneck) = match arch {
                Arch::Resnet18 => ([2, 2, 2, 2], false),
                _ => ([3, 4, 6, 3], true),
            };
            let expansion = if bottleneck { 4 } else { 1 };
            let mut inplanes = 64;
            let mut blocks = Vec::new();
            for (li, &n) in layers.iter().enumerate() {
                let planes = 64 << li;
                for bi in 0..n {
                    let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                    let name = format!("{pre}.layer{}.{bi}", li + 1);
                    let out = planes * expansion;
                    let mut convs = Vec::new();
                    if bottleneck {
                        // torchvision v1.5: the stride sits on the 3x3 conv
                        let c = |i: usize| (format!("{name}.conv{i}"), format!("{name}.bn{i}"));
                        let (c1, b1) = c(1);
                        convs.push(init.conv_bn(&c1, &b1, inplanes, planes, 1, 1, 0, false));
                        let (c2, b2) = c(2);
                        convs.push(init.conv_bn(&c2, &b2, planes, planes, 3, stride, 1, false));
                        let (c3, b3) = c(3);
                        convs.push(init.conv_bn(&c3, &b3, planes, out, 1, 1, 0, true));
                    } else {
                        let c = |i: usize| (format!("{name}.conv{i}"), format!("{name}.bn{i}"));
                        let (c1, b1) = c(1);
                        convs.push(init.conv_bn(&c1, &b1, inplanes, planes, 3, stride, 1, false));
                        let (c2, b2) = c(2);
                        convs.push(init.conv_bn(&c2, &b2, planes, planes, 3, 1, 1, true));
                    }
                    let down = (stride != 1 || inplanes != out).then(|| {
                        init.conv_bn(
                            &format!("{name}.downsample.0"),
                            &format!("{name}.downsample.1"),
                            inplanes,
                            out,
                            1,
                            stride,
                            0,
                            false,
                        )
                    });
                    inplanes = out;
                    blocks.push(Block { convs, down });
                }
            }
            Backbone {
                stem,
                maxpool: true,
                blocks,
            }
        }
    }
}

fn build_projector<D: Device<f32>>(
    init: &mut Init<D>,
    features: usize,
    sizes: &[usize],
) -> Projector {
    let mut all = vec![features];
    all.extend_from_slice(sizes);
    let mut linears = Vec::new();
    let mut bns = Vec::new();
    for i in 0..all.len() - 1 {
        linears.push(init.linear(&format!("projector.{}", 3 * i), all[i], all[i + 1]));
        if i + 2 < all.len() {
            bns.push(init.bn(&format!("projector.{}", 3 * i + 1), all[i + 1], false));
        }
    }
    Projector {
        sizes: all,
        linears,
        bns,
    }
}

fn bn_apply<D: NnDevice, T: Tape<f32, D>>(
    store: &mut Store<D>,
    bn: &Bn,
    x: Mat<D, T>,
    train: bool,
    relu: bool,
) -> Result<Mat<D, T>, D::Err> {
    let gamma = store.get(bn.gamma).clone();
    let beta = store.get(bn.beta).clone();
    let (rm, rv) = store.pair_mut(bn.mean, bn.var);
    ops::batch_norm(
        x,
        Some((&gamma, &beta)),
        Some((rm, rv)),
        train,
        relu,
        BN_MOMENTUM,
        BN_EPS,
    )
}

/// Convolution, BatchNorm (fused with the ReLU when `relu`). `input_grad = false` for the
/// network's first layer, whose input needs no gradient.
fn conv_bn<D: NnDevice, T: Tape<f32, D>>(
    store: &mut Store<D>,
    cb: &ConvBn,
    x: Fmap<D, T>,
    relu: bool,
    train: bool,
    input_grad: bool,
) -> Result<Fmap<D, T>, D::Err> {
    let w: Flat<D> = store.get(cb.weight).clone();
    let y = ops::conv2d(x, &w, &cb.geom, input_grad)?;
    let z = bn_apply(store, &cb.bn, y.x, train, relu)?;
    Ok(Fmap { x: z, ..y })
}

fn backbone_forward<D: NnDevice, T: Tape<f32, D>>(
    bb: &Backbone,
    store: &mut Store<D>,
    x: Fmap<D, T>,
    train: bool,
) -> Result<Mat<D, T>, D::Err> {
    let mut x = x;
    for (i, cb) in bb.stem.iter().enumerate() {
        x = conv_bn(store, cb, x, true, train, i > 0)?;
    }
    if bb.maxpool {
        x = ops::max_pool2d(x, 3, 2, 1)?;
    }
    for block in &bb.blocks {
        let identity = match &block.down {
            Some(d) => conv_bn(store, d, x.retaped(), false, train, true)?,
            None => x.retaped(),
        };
        let mut y = x;
        let last = block.convs.len() - 1;
        for (i, cb) in block.convs.iter().enumerate() {
            y = conv_bn(store, cb, y, i != last, train, true)?;
        }
        let s = ops::add_relu(y.x, identity.x)?;
        x = Fmap { x: s, ..y };
    }
    ops::global_avg_pool(x)
}

fn projector_forward<D: NnDevice, T: Tape<f32, D>>(
    pj: &Projector,
    store: &mut Store<D>,
    x: Mat<D, T>,
    train: bool,
) -> Result<Mat<D, T>, D::Err> {
    let mut x = x;
    for (i, &w) in pj.linears.iter().enumerate() {
        let wt = store.get(w).clone();
        x = ops::linear(x, &wt, pj.sizes[i + 1])?;
        if let Some(bn) = pj.bns.get(i) {
            x = bn_apply(store, bn, x, train, true)?;
        }
    }
    Ok(x)
}

/// Backbone + projector with their parameters.
#[derive(Debug, Clone)]
pub struct BarlowModel<D: NnDevice> {
    pub arch: Arch,
    /// Projector sizes after the backbone (`[8192, 8192, 8192]`).
    pub projector: Vec<usize>,
    /// All parameters and buffers, official names.
    pub store: Store<D>,
    backbone: Backbone,
    proj: Projector,
}

/// Loss and parameter gradients of one step (gradients keyed like `store.params`).
pub struct StepGrads<D: Device<f32>> {
    /// The loss, still on the device: reading it ([`StepGrads::loss`]) waits for the device, so
    /// the training loop reads it after queueing the optimizer step, not between forward and
    /// backward.
    pub loss_tensor: Tensor<Rank0, f32, D>,
    pub grads: Gradients<f32, D>,
}

impl<D: Device<f32>> StepGrads<D> {
    /// The loss value (copies it to the host).
    pub fn loss(&self) -> f32 {
        self.loss_tensor.as_vec()[0]
    }
}

impl<D: NnDevice> BarlowModel<D> {
    /// A fresh model; the weights come from a host RNG seeded with `seed`, so they are the same
    /// on every device.
    pub fn new(dev: &D, arch: Arch, projector: &[usize], seed: u64) -> Self {
        let mut init = Init {
            dev,
            store: Store::new(),
            rng: Pcg64::seed_from_u64(seed),
        };
        let backbone = build_backbone(&mut init, arch);
        let proj = build_projector(&mut init, arch.features(), projector);
        BarlowModel {
            arch,
            projector: projector.to_vec(),
            store: init.store,
            backbone,
            proj,
        }
    }

    pub fn features(&self) -> usize {
        self.arch.features()
    }

    /// Embedding width (last projector size).
    pub fn embedding_dim(&self) -> usize {
        *self.proj.sizes.last().unwrap()
    }

    /// Forward both views in training mode (each view its own batch statistics, as the official
    /// code), the Barlow Twins loss, backward. Updates the BatchNorm running statistics (twice,
    /// once per view, like PyTorch). Returns the loss and gradients; apply them with
    /// [`crate::lars::Lars::step`].
    pub fn loss_and_grads(&mut self, a: Fmap<D>, b: Fmap<D>, lambd: f32) -> Result<StepGrads<D>> {
        let err = |e: D::Err| anyhow::anyhow!("forward/backward: {e:?}");
        let n = a.b;
        anyhow::ensure!(n == b.b, "both views need the same batch size");
        anyhow::ensure!(n >= 2, "batch statistics need at least 2 samples");
        let mut grads = Gradients::leaky();
        for p in &self.store.params {
            if p.kind != Kind::Buffer {
                grads.try_alloc_for(&p.t).map_err(err)?;
            }
        }
        let xa = Fmap {
            x: a.x.traced(grads),
            b: a.b,
            h: a.h,
            w: a.w,
        };
        let za = backbone_forward(&self.backbone, &mut self.store, xa, true).map_err(err)?;
        let za = projector_forward(&self.proj, &mut self.store, za, true).map_err(err)?;
        // View B records on a tape of its own: both embeddings must stay taped into the loss,
        // whose batch standardisation of each view has to be recorded for gradients to reach
        // that view's branch. (Moving A's tape onto B left A untaped: its branch got no gradient
        // through the loss.) The loss merges the two tapes.
        let xb = Fmap {
            x: b.x.traced(Gradients::leaky()),
            b: b.b,
            h: b.h,
            w: b.w,
        };
        let zb = backbone_forward(&self.backbone, &mut self.store, xb, true).map_err(err)?;
        let zb = projector_forward(&self.proj, &mut self.store, zb, true).map_err(err)?;
        let loss = barlow_twins(zb, za, lambd).map_err(err)?;
        let loss_tensor = loss.retaped::<NoneTape>();
        let grads = loss.try_backward().map_err(err)?;
        Ok(StepGrads { loss_tensor, grads })
    }

    /// Backbone features `(F, n)` (feature-major) in evaluation mode (running statistics).
    pub fn embed(&mut self, x: Fmap<D>) -> Result<Mat<D>> {
        backbone_forward(&self.backbone, &mut self.store, x, false)
            .map_err(|e| anyhow::anyhow!("forward: {e:?}"))
    }

    /// Projector output `(Z, n)` (feature-major) in evaluation mode.
    pub fn project(&mut self, x: Fmap<D>) -> Result<Mat<D>> {
        let f = self.embed(x)?;
        projector_forward(&self.proj, &mut self.store, f, false)
            .map_err(|e| anyhow::anyhow!("forward: {e:?}"))
    }
}

/// Helpers shared by the tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use rand::{Rng, SeedableRng};

    /// Random u8 views; the second is the first perturbed (a crude "augmentation").
    pub(crate) fn random_views(n: usize, h: usize, w: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let a: Vec<u8> = (0..n * 3 * h * w).map(|_| rng.gen()).collect();
        let b = a
            .iter()
            .map(|&p| p.saturating_add(rng.gen_range(0..40)))
            .collect();
        (a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::normalize_views;
    use crate::lars::{Lars, LarsConfig};
    use views::imagenet;

    use super::tests_support::random_views;

    fn names(arch: Arch) -> Vec<String> {
        let dev = Cpu::default();
        BarlowModel::new(&dev, arch, &[32, 32], 0)
            .store
            .params
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    #[test]
    fn resnet_layouts_match_torchvision() {
        // torchvision resnet18: 62 tensors in conv/bn (excluding fc and num_batches_tracked)
        let dev = Cpu::default();
        for (arch, n_tensors, n_params) in [
            (Arch::Resnet18, 100, 11_176_512usize),
            (Arch::Resnet50, 265, 23_508_032),
        ] {
            let m = BarlowModel::new(&dev, arch, &[16], 0);
            let backbone: Vec<_> = m
                .store
                .params
                .iter()
                .filter(|p| p.name.starts_with("backbone."))
                .collect();
            // torchvision state_dict sizes minus fc.weight/fc.bias and num_batches_tracked
            assert_eq!(backbone.len(), n_tensors, "{arch:?} tensor count");
            let trainable: usize = backbone
                .iter()
                .filter(|p| p.kind != Kind::Buffer)
                .map(|p| p.len())
                .sum();
            assert_eq!(
                trainable, n_params,
                "{arch:?} parameter count (torchvision minus fc)"
            );
        }
        let n18 = names(Arch::Resnet18);
        for want in [
            "backbone.conv1.weight",
            "backbone.bn1.running_var",
            "backbone.layer1.0.conv1.weight",
            "backbone.layer2.0.downsample.0.weight",
            "backbone.layer4.1.bn2.weight",
            "projector.0.weight",
            "projector.1.running_mean",
            "projector.3.weight",
        ] {
            assert!(n18.iter().any(|n| n == want), "missing {want}");
        }
        let n50 = names(Arch::Resnet50);
        assert!(n50
            .iter()
            .any(|n| n == "backbone.layer1.0.downsample.1.weight"));
        assert!(n50.iter().any(|n| n == "backbone.layer3.5.conv3.weight"));
        assert!(!n50.iter().any(|n| n == "backbone.layer3.6.conv1.weight"));
    }

    #[test]
    fn zero_init_residual_and_shapes() {
        let dev = Cpu::default();
        let m = BarlowModel::new(&dev, Arch::Resnet50, &[16], 0);
        for p in &m.store.params {
            let v = p.t.as_vec();
            if p.name.ends_with("bn3.weight") {
                assert!(v.iter().all(|&x| x == 0.0), "{} not zero", p.name);
            } else if p.name.ends_with("bn1.weight") {
                assert!(v.iter().all(|&x| x == 1.0), "{} not one", p.name);
            }
        }
        let i = m.store.index_of("backbone.layer2.0.conv2.weight").unwrap();
        assert_eq!(m.store.params[i].shape, vec![128, 128, 3, 3]);
        let i = m
            .store
            .index_of("backbone.layer2.0.downsample.0.weight")
            .unwrap();
        assert_eq!(m.store.params[i].shape, vec![512, 256, 1, 1]);
    }

    #[test]
    fn resnet18_forward_shapes_and_train_step() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = BarlowModel::new(&dev, Arch::Resnet18, &[64, 32], 0);
        let (a, b) = random_views(4, 32, 32, 1);
        let (va, vb) =
            normalize_views(&dev, &a, &b, 4, 32, 32, imagenet::MEAN, imagenet::STD).unwrap();
        let f = m.embed(va.clone()).unwrap();
        assert_eq!(*f.shape(), (512, 4));
        let mut opt = Lars::new(&m.store, LarsConfig::default());
        let before = m.store.params[0].t.as_vec();
        let mut g = m.loss_and_grads(va, vb, 0.0051).unwrap();
        assert!(g.loss().is_finite() && g.loss() > 0.0);
        opt.step(&mut m.store, &mut g.grads, 0.2, 0.0048).unwrap();
        assert_ne!(m.store.params[0].t.as_vec(), before);
    }

    /// After a step the gradients held are the parameters' plus those of dfdx's own ops
    /// (pooling, projector, loss: 26 here): every backbone op freed its output's gradient
    /// (ResNet-18 has 49 such outputs per view; kept, they would add 98 activation-sized entries).
    #[test]
    fn a_step_keeps_no_backbone_intermediate_gradients() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = BarlowModel::new(&dev, Arch::Resnet18, &[16, 16], 0);
        let (a, b) = random_views(2, 32, 32, 1);
        let (va, vb) =
            normalize_views(&dev, &a, &b, 2, 32, 32, imagenet::MEAN, imagenet::STD).unwrap();
        let g = m.loss_and_grads(va, vb, 0.0051).unwrap();
        let trainable = m
            .store
            .params
            .iter()
            .filter(|p| p.kind != Kind::Buffer)
            .count();
        let extra = g.grads.num_held() - trainable;
        eprintln!(
            "held {} = {trainable} parameters + {extra}",
            g.grads.num_held()
        );
        assert!(
            extra <= 30,
            "{extra} gradients beyond the parameters' are held"
        );
    }

    #[test]
    fn tiny_loss_falls_on_a_fixed_batch_with_lars() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = BarlowModel::new(&dev, Arch::Tiny, &[128, 128], 0);
        let mut opt = Lars::new(&m.store, LarsConfig::default());
        let (n, h, w) = (16, 32, 32);
        let (a, b) = random_views(n, h, w, 1);
        let mut losses = vec![];
        for _ in 0..6 {
            let (va, vb) =
                normalize_views(&dev, &a, &b, n, h, w, imagenet::MEAN, imagenet::STD).unwrap();
            let mut g = m.loss_and_grads(va, vb, 0.0051).unwrap();
            losses.push(g.loss());
            opt.step(&mut m.store, &mut g.grads, 20.0, 0.2).unwrap();
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(losses[5] < 0.9 * losses[0], "loss did not fall: {losses:?}");
    }

    #[test]
    fn train_step_updates_parameters_and_running_stats() {
        let dev = Cpu::seed_from_u64(1);
        let mut m = BarlowModel::new(&dev, Arch::Tiny, &[32, 16], 3);
        let before: Vec<Vec<f32>> = m.store.params.iter().map(|p| p.t.as_vec()).collect();
        let mut opt = Lars::new(&m.store, LarsConfig::default());
        let (a, b) = random_views(8, 16, 16, 2);
        let (va, vb) =
            normalize_views(&dev, &a, &b, 8, 16, 16, imagenet::MEAN, imagenet::STD).unwrap();
        let mut g = m.loss_and_grads(va, vb, 0.0051).unwrap();
        opt.step(&mut m.store, &mut g.grads, 1.0, 0.1).unwrap();
        for (p, b) in m.store.params.iter().zip(&before) {
            assert_ne!(&p.t.as_vec(), b, "{} did not change", p.name);
        }
    }

    /// The whole model's gradient against central finite differences, for parameters on both
    /// sides of the loss: the first conv (used by both views), a BatchNorm gamma, and the
    /// projector. Each check is a directional derivative along a fixed pseudo-random direction
    /// over the whole tensor, which averages out the ReLU kinks that make single-entry finite
    /// differences noisy. Catches a view whose branch gets no gradient, and a BatchNorm whose
    /// backward treats the batch mean as a constant (both were bugs).
    #[test]
    fn model_gradient_matches_finite_differences() {
        let dev = Cpu::default();
        let (n, h, w) = (6, 16, 16);
        let (a, b) = random_views(n, h, w, 11);
        let views =
            || normalize_views(&dev, &a, &b, n, h, w, imagenet::MEAN, imagenet::STD).unwrap();
        let mut m = BarlowModel::new(&dev, Arch::Tiny, &[16, 16], 5);
        // zero-initialised BN gammas would hide whole paths: give every gamma a generic value
        for i in 0..m.store.params.len() {
            let p = &m.store.params[i];
            if p.kind == Kind::Bias && p.name.ends_with("weight") {
                let len = p.len();
                m.store
                    .set(i, (0..len).map(|k| 0.5 + 0.1 * (k % 7) as f32).collect())
                    .unwrap();
            }
        }
        let loss_at = |m: &mut BarlowModel<Cpu>| {
            let (va, vb) = views();
            m.loss_and_grads(va, vb, 0.0051).unwrap().loss() as f64
        };
        let (va, vb) = views();
        let g = m.loss_and_grads(va, vb, 0.0051).unwrap();
        let find = |kind: Kind| {
            m.store
                .params
                .iter()
                .find(|p| p.name.starts_with("backbone.") && p.kind == kind)
                .unwrap()
                .name
                .clone()
        };
        let (first_conv, first_bn) = (find(Kind::Weight), find(Kind::Bias));
        let perturbed = |m: &mut BarlowModel<Cpu>, i: usize, values: Vec<f32>| {
            m.store.set(i, values).unwrap();
            loss_at(m)
        };
        // Backbone: a directional derivative over the whole tensor along a fixed pseudo-random
        // direction (single entries of the first layers sit on too many ReLU kinks); eps small
        // enough that few kinks are crossed (the differences converge to the analytic values from
        // both sides as eps shrinks) and large against f32 rounding.
        for name in [first_conv.as_str(), first_bn.as_str()] {
            let i = m.store.index_of(name).unwrap();
            let analytic = g.grads.get(&m.store.params[i].t).as_vec();
            let base = m.store.params[i].t.as_vec();
            let dir: Vec<f32> = (0..base.len())
                .map(|k| ((k * 7919 + 13) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let along = |t: f32| {
                base.iter()
                    .zip(&dir)
                    .map(|(x, d)| x + t * d)
                    .collect::<Vec<f32>>()
            };
            let eps = 3e-4f32;
            let numeric = (perturbed(&mut m, i, along(eps)) - perturbed(&mut m, i, along(-eps)))
                / (2.0 * eps as f64);
            perturbed(&mut m, i, base.clone());
            let an: f64 = analytic
                .iter()
                .zip(&dir)
                .map(|(g, d)| (*g as f64) * (*d as f64))
                .sum();
            assert!(
                (numeric - an).abs() <= 0.1 * numeric.abs().max(an.abs()),
                "{name}: directional derivative analytic {an}, finite difference {numeric}"
            );
        }
        // Projector: single entries, central differences.
        for name in [
            "projector.0.weight",
            "projector.1.weight",
            "projector.3.weight",
        ] {
            let i = m.store.index_of(name).unwrap();
            let analytic = g.grads.get(&m.store.params[i].t).as_vec();
            let base = m.store.params[i].t.as_vec();
            for k in [0, base.len() / 3, base.len() - 1] {
                let eps = 1e-2f32;
                let mut plus = base.clone();
                plus[k] += eps;
                let mut minus = base.clone();
                minus[k] -= eps;
                let numeric =
                    (perturbed(&mut m, i, plus) - perturbed(&mut m, i, minus)) / (2.0 * eps as f64);
                perturbed(&mut m, i, base.clone());
                let an = analytic[k] as f64;
                assert!(
                    (numeric - an).abs() <= 0.02 * numeric.abs().max(an.abs()) + 1e-4,
                    "{name}[{k}]: analytic {an}, finite difference {numeric}"
                );
            }
        }
    }

    #[test]
    fn projector_spec_round_trip() {
        assert_eq!(parse_projector("8192-8192-8192").unwrap(), vec![8192; 3]);
        assert_eq!(projector_spec(&[64, 32]), "64-32");
        assert!(parse_projector("8192-x").is_err());
        assert!(parse_projector("0").is_err());
    }
}
