//! Runtime-shaped layers on channel-major feature maps (what the models use).
//!
//! Activations are kept channel-major, `(C, B*H*W)` with `(B, H, W)` alongside ([`Fmap`]), and
//! feature vectors feature-major, `(F, B)`. In that layout every layer is a 2-D op without any
//! permute copy:
//!
//! - convolution: one `gather` (im2col, stride and padding folded into a cached index; its
//!   backward *adds*) + one 2-D matmul `W (O, C*K*K) x cols (C*K*K, B*Ho*Wo) = (O, B*Ho*Wo)`,
//!   already channel-major; 1x1 stride-1 convolutions are the matmul alone;
//! - batch norm: reductions along axis 1;
//! - max pool: one `gather` per tap and elementwise `maximum`;
//! - linear: `W (out, in) x x (in, B)`; global average pool: a mean over `H*W`.
//!
//! Weights are flat `(n,)` tensors owned by the model's [`crate::params::Store`] and viewed
//! (reshaped, no copy) at use, so their sizes are runtime values and the optimizer and the
//! checkpoints see plain vectors. Nothing here uses dfdx's `slice` (whose CPU backward overwrites
//! instead of adding) and every matmul is 2-D (dfdx's CUDA batched matmul asserts a non-zero
//! batch stride).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dfdx::prelude::*;

use super::conv::{append_const_column, out_size, window_index, IndexCache};

/// A runtime 2-D tensor.
pub type Mat<D, T = NoneTape> = Tensor<(usize, usize), f32, D, T>;
/// A flat parameter or buffer.
pub type Flat<D> = Tensor<(usize,), f32, D>;

/// Feature maps stored channel-major: `x` is `(C, B*H*W)`.
#[derive(Debug, Clone)]
pub struct Fmap<D: Storage<f32>, T = NoneTape> {
    pub x: Mat<D, T>,
    pub b: usize,
    pub h: usize,
    pub w: usize,
}

impl<D: Device<f32>, T: Tape<f32, D>> Fmap<D, T> {
    pub fn channels(&self) -> usize {
        self.x.shape().0
    }
    /// The same data with a fresh, empty tape (for a second use of a taped map: the gradient of
    /// both uses accumulates under the same tensor id).
    pub fn retaped(&self) -> Fmap<D, T> {
        Fmap {
            x: self.x.retaped::<T>(),
            b: self.b,
            h: self.h,
            w: self.w,
        }
    }
}

/// Shape of a convolution (no bias): `cin -> cout`, `k`x`k` kernel, stride `s`, zero padding `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl ConvGeom {
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![self.cout, self.cin, self.k, self.k]
    }
    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }
    pub fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            out_size(h, self.k, self.s, self.p),
            out_size(w, self.k, self.s, self.p),
        )
    }
}

/// Convolution of channel-major maps with a flat weight laid out `(cout, cin, k, k)` (PyTorch's
/// order). `cache` keeps the uploaded gather index per input shape.
pub fn conv2d<D: Device<f32>, T: Tape<f32, D>>(
    x: Fmap<D, T>,
    weight: &Flat<D>,
    g: &ConvGeom,
    cache: &IndexCache<D>,
) -> Result<Fmap<D, T>, D::Err> {
    assert_eq!(x.channels(), g.cin, "conv input channels");
    assert_eq!(weight.shape().0, g.weight_len(), "conv weight size");
    let Fmap { x: xm, b, h, w } = x;
    let (ho, wo) = g.output_hw(h, w);
    let ckk = g.cin * g.k * g.k;
    let dev = xm.device().clone();
    let cols: Mat<D, T> = if g.k == 1 && g.s == 1 && g.p == 0 {
        xm
    } else {
        let n_in = b * h * w;
        let src = if g.p > 0 {
            append_const_column(xm, 0.0)?
        } else {
            xm
        };
        let (k, s, p) = (g.k, g.s, g.p);
        let idx = cache.get_or_build(&dev, (b, h, w), || window_index(b, h, w, k, s, p, n_in).0)?;
        let n = idx.shape().0;
        let idx = idx.try_broadcast_like::<_, Axis<0>>(&(g.cin, n))?;
        let gathered: Mat<D, T> = src.try_gather(idx)?;
        gathered.try_reshape_like(&(ckk, b * ho * wo))?
    };
    let wmat = weight.retaped::<T>().try_reshape_like(&(g.cout, ckk))?;
    let y = wmat.try_matmul(cols)?;
    Ok(Fmap {
        x: y,
        b,
        h: ho,
        w: wo,
    })
}

/// Per-module cache of the max pool's per-tap gather indices, keyed by `(batch, height, width)`.
pub struct TapCache<D: Storage<usize>> {
    entries: Arc<Mutex<HashMap<(usize, usize, usize), Vec<Tensor<(usize,), usize, D>>>>>,
}

impl<D: Storage<usize>> Default for TapCache<D> {
    fn default() -> Self {
        Self {
            entries: Default::default(),
        }
    }
}

impl<D: Storage<usize>> Clone for TapCache<D> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<D: Storage<usize>> std::fmt::Debug for TapCache<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TapCache")
    }
}

/// Max pool `k`x`k`, stride `s`, `-inf` padding `p`, as `maximum` over `k*k` gathered taps.
/// Exact values; at exact ties dfdx's `maximum` splits the gradient (PyTorch picks one).
pub fn max_pool2d<D: Device<f32>, T: Tape<f32, D>>(
    x: Fmap<D, T>,
    k: usize,
    s: usize,
    p: usize,
    cache: &TapCache<D>,
) -> Result<Fmap<D, T>, D::Err> {
    assert!(p < k, "padding must be smaller than the window");
    let c = x.channels();
    let Fmap { x: xm, b, h, w } = x;
    let ho = out_size(h, k, s, p);
    let wo = out_size(w, k, s, p);
    let dev = xm.device().clone();
    let n_in = b * h * w;
    let m = b * ho * wo;
    let taps = {
        let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 4 {
            entries.clear();
        }
        match entries.get(&(b, h, w)) {
            Some(t) => t.clone(),
            None => {
                let (idx, _, _) = window_index(b, h, w, k, s, p, n_in);
                let mut taps = Vec::with_capacity(k * k);
                for t in 0..k * k {
                    taps.push(dev.try_tensor_from_vec(idx[t * m..(t + 1) * m].to_vec(), (m,))?);
                }
                entries.insert((b, h, w), taps.clone());
                taps
            }
        }
    };
    let src = if p > 0 {
        append_const_column(xm, f32::NEG_INFINITY)?
    } else {
        xm
    };
    let mut src = Some(src);
    let mut out: Option<Mat<D, T>> = None;
    for (t, tap) in taps.into_iter().enumerate() {
        let tap = tap.try_broadcast_like::<_, Axis<0>>(&(c, m))?;
        // all taps but the last read an untaped copy; the last carries the tape, so the history
        // of `x` is merged exactly once
        let s = if t + 1 < k * k {
            src.as_ref().unwrap().retaped::<T>()
        } else {
            src.take().unwrap()
        };
        let g: Mat<D, T> = s.try_gather(tap)?;
        out = Some(match out {
            None => g,
            Some(acc) => acc.try_maximum(g)?,
        });
    }
    Ok(Fmap {
        x: out.unwrap(),
        b,
        h: ho,
        w: wo,
    })
}

/// Batch normalisation over axis 1 of a `(C, N)` tensor (BatchNorm2d on channel-major maps,
/// BatchNorm1d on feature-major vectors).
///
/// Training mode: batch mean and biased variance normalise; the running statistics are updated
/// like PyTorch's (`momentum` = 0.1: `r = (1 - m) r + m stat`, the variance unbiased).
/// Evaluation mode: the running statistics normalise. `affine = None` is `affine=False`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<D: Device<f32>, T: Tape<f32, D>>(
    x: Mat<D, T>,
    affine: Option<(&Flat<D>, &Flat<D>)>,
    running: Option<(&mut Flat<D>, &mut Flat<D>)>,
    train: bool,
    momentum: f64,
    eps: f64,
) -> Result<Mat<D, T>, D::Err> {
    let shape = *x.shape();
    let (c, n) = shape;
    if train {
        let mean = x.retaped::<T>().try_mean::<(usize,), Axis<1>>()?;
        let mean_value = mean.retaped::<NoneTape>();
        // `mean` keeps its own tape (the backward of the mean) and hands it to `centered`: the
        // gradient must flow through the batch mean too, not treat it as a constant.
        let centered = x.try_sub(mean.try_broadcast_like::<_, Axis<1>>(&shape)?)?;
        let var = centered
            .retaped::<T>()
            .try_square()?
            .try_mean::<(usize,), Axis<1>>()?;
        if let Some((rm, rv)) = running {
            let unbias = if n > 1 {
                n as f64 / (n - 1) as f64
            } else {
                1.0
            };
            rm.try_axpy(1.0 - momentum, &mean_value, momentum)?;
            rv.try_axpy(
                1.0 - momentum,
                &var.retaped::<NoneTape>(),
                momentum * unbias,
            )?;
        }
        let inv_std = var.try_add(eps as f32)?.try_sqrt()?.try_recip()?;
        let scale = match affine {
            Some((gamma, _)) => inv_std.try_mul(gamma.retaped::<T>())?,
            None => inv_std,
        };
        let y = centered.try_mul(scale.try_broadcast_like::<_, Axis<1>>(&shape)?)?;
        match affine {
            Some((_, beta)) => y.try_add(
                beta.retaped::<T>()
                    .try_broadcast_like::<_, Axis<1>>(&shape)?,
            ),
            None => Ok(y),
        }
    } else {
        let (rm, rv) = running.expect("evaluation-mode batch norm needs running statistics");
        let dev = x.device().clone();
        let inv_std = rv.clone().try_add(eps as f32)?.try_sqrt()?.try_recip()?;
        let (scale, shift) = match affine {
            Some((gamma, beta)) => {
                let scale = inv_std.try_mul(gamma.clone())?;
                let shift = beta.clone().try_sub(rm.clone().try_mul(scale.clone())?)?;
                (scale, shift)
            }
            None => {
                let shift = rm.clone().try_mul(inv_std.clone())?.try_negate()?;
                (inv_std, shift)
            }
        };
        let _ = (c, dev);
        x.try_mul(
            scale
                .retaped::<T>()
                .try_broadcast_like::<_, Axis<1>>(&shape)?,
        )?
        .try_add(
            shift
                .retaped::<T>()
                .try_broadcast_like::<_, Axis<1>>(&shape)?,
        )
    }
}

/// Linear without bias on feature-major vectors: `W (out, in) x x (in, B) = (out, B)`.
pub fn linear<D: Device<f32>, T: Tape<f32, D>>(
    x: Mat<D, T>,
    weight: &Flat<D>,
    out: usize,
) -> Result<Mat<D, T>, D::Err> {
    let inp = x.shape().0;
    assert_eq!(weight.shape().0, out * inp, "linear weight size");
    weight
        .retaped::<T>()
        .try_reshape_like(&(out, inp))?
        .try_matmul(x)
}

/// Global average pool: channel-major maps `(C, B*H*W)` -> feature-major `(C, B)`.
pub fn global_avg_pool<D: Device<f32>, T: Tape<f32, D>>(
    x: Fmap<D, T>,
) -> Result<Mat<D, T>, D::Err> {
    let c = x.channels();
    x.x.try_reshape_like(&(c, x.b, x.h * x.w))?
        .try_mean::<(usize, usize), Axis<2>>()
}
