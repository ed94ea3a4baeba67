//! 2-D convolution (no bias) built only from dfdx's stable tensor ops.
//!
//! dfdx 0.13 hides `conv2d`/`Conv2D` behind its `nightly` feature, which no longer builds, so
//! this is an im2col convolution expressed with ops that exist on stable and on every device:
//!
//! 1. the NCHW input is viewed channel-major, `(C, B*H*W)` (permute + reshape; a copy unless the
//!    input already is channel-major in memory), and, when there is padding, one zero column is
//!    appended (`concat_along`), so that every padded tap can point at it;
//! 2. **one** `gather` along the last axis with a precomputed index (shape `(K*K*B*Ho*Wo,)`,
//!    broadcast over channels, cached per input shape) builds the column matrix
//!    `(C*K*K, B*Ho*Wo)`; stride and padding are both folded into that index;
//! 3. **one** 2-D matmul with the weight viewed as `(O, C*K*K)` gives `(O, B*Ho*Wo)`, which is
//!    reshaped/permuted back to `(B, O, Ho, Wo)`.
//!
//! `gather`'s backward *accumulates* (`+=` on CPU, `atomicAdd` on CUDA), unlike dfdx 0.13's CPU
//! `slice` backward, which overwrites the input gradient and so silently drops gradient from any
//! other consumer of the sliced tensor. Nothing here slices.
//!
//! 1x1 stride-1 unpadded convolutions skip the gather (the channel-major input already is the
//! column matrix).

use std::sync::{Arc, Mutex};

use dfdx::prelude::*;

/// Output size of a convolution/pool along one spatial axis: `floor((n + 2p - k) / s) + 1`.
///
/// Panics when the padded input is smaller than the kernel.
pub fn out_size(n: usize, k: usize, s: usize, p: usize) -> usize {
    assert!(s >= 1, "stride must be >= 1");
    assert!(
        n + 2 * p >= k,
        "input size {n} (+2*{p} padding) is smaller than the kernel {k}"
    );
    (n + 2 * p - k) / s + 1
}

/// Gather index for the channel-major im2col: for every tap `(kh, kw)`, image `b` and output
/// position `(oh, ow)` (in that order, outermost first), the flat index `b*H*W + ih*W + iw` of the
/// input pixel, or `pad_idx` (the appended constant column) when the tap falls into the padding.
pub(crate) fn window_index(
    b: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    pad_idx: usize,
) -> (Vec<usize>, usize, usize) {
    let ho = out_size(h, k, s, p);
    let wo = out_size(w, k, s, p);
    let mut idx = Vec::with_capacity(k * k * b * ho * wo);
    for kh in 0..k {
        for kw in 0..k {
            for bi in 0..b {
                let base = bi * h * w;
                for oh in 0..ho {
                    let ih = (oh * s + kh) as isize - p as isize;
                    let row_ok = ih >= 0 && (ih as usize) < h;
                    for ow in 0..wo {
                        let iw = (ow * s + kw) as isize - p as isize;
                        if row_ok && iw >= 0 && (iw as usize) < w {
                            idx.push(base + ih as usize * w + iw as usize);
                        } else {
                            idx.push(pad_idx);
                        }
                    }
                }
            }
        }
    }
    (idx, ho, wo)
}

/// Per-module cache of uploaded gather indices, keyed by `(batch, height, width)`.
///
/// Shared between clones (indices are immutable, so sharing is harmless). Holds at most
/// [`IndexCache::CAPACITY`] shapes; the oldest is dropped first.
pub struct IndexCache<D: Storage<usize>> {
    entries: Arc<Mutex<Vec<((usize, usize, usize), Tensor<(usize,), usize, D>)>>>,
}

impl<D: Storage<usize>> IndexCache<D> {
    pub const CAPACITY: usize = 4;

    /// The index for `key`, building (with `make`) and uploading it on a miss.
    pub(crate) fn get_or_build<F>(
        &self,
        dev: &D,
        key: (usize, usize, usize),
        make: F,
    ) -> Result<Tensor<(usize,), usize, D>, D::Err>
    where
        D: TensorFromVec<usize>,
        F: FnOnce() -> Vec<usize>,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = entries.iter().find(|(k, _)| *k == key) {
            return Ok(t.clone());
        }
        let v = make();
        let n = v.len();
        let t = dev.try_tensor_from_vec(v, (n,))?;
        if entries.len() >= Self::CAPACITY {
            entries.remove(0);
        }
        entries.push((key, t.clone()));
        Ok(t)
    }
}

impl<D: Storage<usize>> Default for IndexCache<D> {
    fn default() -> Self {
        Self {
            entries: Default::default(),
        }
    }
}

impl<D: Storage<usize>> Clone for IndexCache<D> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<D: Storage<usize>> std::fmt::Debug for IndexCache<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        write!(f, "IndexCache({n} shapes)")
    }
}

/// View an NCHW tensor channel-major as `(C, B*H*W)`.
pub(crate) fn to_channel_major<B: Dim, C: Dim, H: Dim, W: Dim, D: Device<f32>, T: Tape<f32, D>>(
    x: Tensor<(B, C, H, W), f32, D, T>,
) -> Result<Tensor<(C, usize), f32, D, T>, D::Err> {
    let (b, c, h, w) = *x.shape();
    let n = b.size() * h.size() * w.size();
    x.try_permute::<(C, B, H, W), Axes4<1, 0, 2, 3>>()?
        .try_reshape_like(&(c, n))
}

/// Append one constant column (`value`) to a `(C, N)` tensor: `(C, N + 1)`.
pub(crate) fn append_const_column<C: Dim, D: Device<f32>, T: Tape<f32, D>>(
    x: Tensor<(C, usize), f32, D, T>,
    value: f32,
) -> Result<Tensor<(C, usize), f32, D, T>, D::Err> {
    let c = x.shape().0;
    let col: Tensor<(C, usize), f32, D> = if value == 0.0 {
        x.device().try_zeros_like(&(c, 1usize))?
    } else {
        x.device().try_ones_like(&(c, 1usize))?.try_mul(value)?
    };
    (x, col).try_concat_along(Axis::<1>)
}

pub mod builder {
    /// Builder for [`super::Conv2d`]: `I` input channels, `O` output channels, `K`x`K` kernel,
    /// stride `S`, zero padding `P`. No bias.
    #[derive(Debug, Copy, Clone, Eq, PartialEq, Default)]
    pub struct Conv2d<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize = 1,
        const P: usize = 0,
    >;
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Device<f32>,
    > BuildOnDevice<D, f32> for builder::Conv2d<I, O, K, S, P>
where
    Conv2d<I, O, K, S, P, f32, D>: BuildModule<D, f32>,
{
    type Built = Conv2d<I, O, K, S, P, f32, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// 2-D convolution without bias (like torchvision's ResNet convs).
///
/// Weight `(O, I, K, K)`, initialised like `kaiming_normal_(mode="fan_out",
/// nonlinearity="relu")`: normal with std `sqrt(2 / (O*K*K))`.
///
/// Forward takes `(batch, I, H, W)` with runtime batch and spatial sizes, taped or not, and
/// returns `(batch, O, Ho, Wo)` with `Ho = floor((H + 2P - K)/S) + 1`. The output is a permuted
/// (non-contiguous) view; every dfdx op accepts that.
#[derive(Debug, Clone)]
pub struct Conv2d<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    E: Dtype,
    D: Storage<E> + Storage<usize>,
> {
    pub weight: Tensor<Rank4<O, I, K, K>, E, D>,
    idx_cache: IndexCache<D>,
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        E: Dtype,
        D,
    > NonMutableModule for Conv2d<I, O, K, S, P, E, D>
where
    D: Storage<E> + Storage<usize>,
{
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Device<f32>,
    > TensorCollection<f32, D> for Conv2d<I, O, K, S, P, f32, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2d<I, O, K, S, P, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, f32, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "weight",
                |s| &s.weight,
                |s| &mut s.weight,
                TensorOptions::reset_with(|t| {
                    let std = (2.0 / (O * K * K) as f64).sqrt() as f32;
                    t.try_fill_with_distr(rand_distr::Normal::new(0.0f32, std).unwrap())
                }),
            ),
            |weight| Conv2d {
                weight,
                idx_cache: Default::default(),
            },
        )
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Device<f32>,
    > Conv2d<I, O, K, S, P, f32, D>
{
    /// Build from an explicit weight (tests, imports).
    pub fn from_weight(weight: Tensor<Rank4<O, I, K, K>, f32, D>) -> Self {
        Self {
            weight,
            idx_cache: Default::default(),
        }
    }

    /// Output spatial size for an `h` x `w` input.
    pub fn output_hw(h: usize, w: usize) -> (usize, usize) {
        (out_size(h, K, S, P), out_size(w, K, S, P))
    }

    /// The convolution; see the type's docs.
    pub fn try_conv<T: Tape<f32, D>>(
        &self,
        x: Tensor<(usize, Const<I>, usize, usize), f32, D, T>,
    ) -> Result<Tensor<(usize, Const<O>, usize, usize), f32, D, T>, D::Err> {
        let (b, _, h, w) = *x.shape();
        let (ho, wo) = Self::output_hw(h, w);
        let dev = x.device().clone();
        let xc = to_channel_major(x)?; // (I, b*h*w)
        let cols: Tensor<(usize, usize), f32, D, T> = if K == 1 && S == 1 && P == 0 {
            xc.try_reshape_like(&(I, b * h * w))?
        } else {
            let n_in = b * h * w;
            let src = if P > 0 {
                append_const_column(xc, 0.0)?
            } else {
                xc
            };
            let idx = self
                .idx_cache
                .get_or_build(&dev, (b, h, w), || window_index(b, h, w, K, S, P, n_in).0)?;
            let n = idx.shape().0;
            let idx = idx.try_broadcast_like(&(Const::<I>, n))?;
            let g: Tensor<(Const<I>, usize), f32, D, T> = src.try_gather(idx)?;
            g.try_reshape_like(&(I * K * K, b * ho * wo))?
        };
        let wmat = self
            .weight
            .retaped::<T>()
            .try_reshape_like(&(O, I * K * K))?;
        let y = wmat.try_matmul(cols)?; // (O, b*ho*wo)
        y.try_reshape_like(&(Const::<O>, b, ho, wo))?
            .try_permute::<_, Axes4<1, 0, 2, 3>>()
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize, D, T>
    Module<Tensor<(usize, Const<I>, usize, usize), f32, D, T>> for Conv2d<I, O, K, S, P, f32, D>
where
    D: Device<f32>,
    T: Tape<f32, D>,
{
    type Output = Tensor<(usize, Const<O>, usize, usize), f32, D, T>;
    type Error = D::Err;

    fn try_forward(
        &self,
        x: Tensor<(usize, Const<I>, usize, usize), f32, D, T>,
    ) -> Result<Self::Output, D::Err> {
        self.try_conv(x)
    }
}
