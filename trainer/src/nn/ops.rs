//! The op interface: what a device implements ([`NnDevice`]) and the taped ops the model calls.
//!
//! Each op here runs one device kernel forward, wraps its output buffer in a tensor, and records
//! one closure on dfdx's tape. In backward the closure
//! 1. **takes** its output's gradient out of [`Gradients`] (the producer's backward runs after all
//!    its consumers', so nothing else will add to it) and drops it when done: intermediate
//!    gradients live only between their consumer's and their producer's backward;
//! 2. takes each input's gradient out (or a zeroed one), lets the kernel **add** into it, and puts
//!    it back: an input used twice (a residual block's input feeds two convolutions, a weight
//!    serves both views) accumulates.
//!
//! What an op saves for backward is chosen for memory: a convolution its input (never an im2col
//! buffer on CUDA), BatchNorm its input and output (the output is the next layer's saved input
//! anyway, so it costs nothing extra) plus per-channel statistics, add+ReLU its output, max pool
//! its input and output.
//!
//! **Architecture invariant:** the model calls only the functions of this module (and dfdx's own
//! ops for the small projector and loss); which device runs them is decided by the `D: NnDevice`
//! type alone, so CPU and CUDA run the same model code.

use dfdx::prelude::*;
use dfdx::tensor::Tensorlike;

use super::profile::{self, Interval, OpKind};
use super::relu_masks;
use super::{ConvGeom, ConvShape, Flat, Fmap, Mat, PoolShape};

/// A device's f32 storage buffer (`CachableVec` on CPU, `CachableCudaSlice` on CUDA).
pub type Buf<D> = <D as Storage<f32>>::Vec;

/// Per-channel statistics of a training-mode BatchNorm forward, kept for its backward.
#[derive(Debug, Clone)]
pub struct BnStats<V> {
    /// Batch mean.
    pub mean: V,
    /// Biased batch variance (what normalises; the running variance gets the unbiased one).
    pub var: V,
    /// `1 / sqrt(var + eps)`.
    pub inv_std: V,
}

/// The kernels a device provides for the model's layers, on raw storage buffers.
///
/// Layouts: feature maps are channel-major `(C, B*H*W)` (see [`super::Fmap`]); convolution
/// weights `(cout, cin, k, k)` flat; BatchNorm works on the rows of a `(c, n)` matrix. Backward
/// kernels **add** into the gradient buffers they are given (never overwrite).
pub trait NnDevice: Device<f32> {
    /// `y = conv(x, w)`, a new `(cout, B*Ho*Wo)` buffer.
    fn conv2d_forward(
        &self,
        s: &ConvShape,
        x: &Buf<Self>,
        w: &Buf<Self>,
    ) -> Result<Buf<Self>, Self::Err>;

    /// Adds the weight gradient into `dw` and, when `dx` is given, the input gradient into it.
    fn conv2d_backward(
        &self,
        s: &ConvShape,
        x: &Buf<Self>,
        w: &Buf<Self>,
        dy: &Buf<Self>,
        dx: Option<&mut Buf<Self>>,
        dw: &mut Buf<Self>,
    ) -> Result<(), Self::Err>;

    /// Training-mode BatchNorm over the rows of a `(c, n)` matrix with batch statistics,
    /// optionally fused with a ReLU: `y = relu?(gamma * (x - mean) * inv_std + beta)`
    /// (`affine = None`: gamma 1, beta 0).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_forward(
        &self,
        c: usize,
        n: usize,
        x: &Buf<Self>,
        affine: Option<(&Buf<Self>, &Buf<Self>)>,
        eps: f32,
        relu: bool,
    ) -> Result<(Buf<Self>, BnStats<Buf<Self>>), Self::Err>;

    /// Adds the gradients of [`NnDevice::batch_norm_forward`] (batch statistics included) into
    /// `dx` and, with affine parameters, into `(dgamma, dbeta)`. `relu_out`: the forward's output
    /// when it was fused with a ReLU (its mask), else `None`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        c: usize,
        n: usize,
        x: &Buf<Self>,
        relu_out: Option<&Buf<Self>>,
        gamma: Option<&Buf<Self>>,
        stats: &BnStats<Buf<Self>>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
        daffine: Option<(&mut Buf<Self>, &mut Buf<Self>)>,
    ) -> Result<(), Self::Err>;

    /// `y = max(a + b, 0)` (a residual block's end).
    fn add_relu_forward(&self, a: &Buf<Self>, b: &Buf<Self>) -> Result<Buf<Self>, Self::Err>;

    /// Adds `dy * (y > 0)` into `dx` (the backward of a ReLU through its output).
    fn relu_backward(
        &self,
        y: &Buf<Self>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
    ) -> Result<(), Self::Err>;

    /// Max pool with `-inf` padding: a new `(C, B*Ho*Wo)` buffer.
    fn max_pool_forward(&self, s: &PoolShape, x: &Buf<Self>) -> Result<Buf<Self>, Self::Err>;

    /// Adds each output's gradient into the first input of its window that equals the output
    /// (PyTorch's choice at ties).
    fn max_pool_backward(
        &self,
        s: &PoolShape,
        x: &Buf<Self>,
        y: &Buf<Self>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
    ) -> Result<(), Self::Err>;

    /// u8 NCHW images with 3 channels -> normalised f32 channel-major `(3, n*plane)`:
    /// `(x / 255 - mean[c]) / std[c]` (torchvision `ToTensor` + `Normalize`), evaluated exactly
    /// so in f32 on every device. The bytes cross to the device as u8 (4x less than f32).
    fn normalize_u8(
        &self,
        pixels: &[u8],
        n: usize,
        plane: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Buf<Self>, Self::Err>;

    /// Starts timing the device work queued from now on; the returned stopper, called after
    /// that work is queued, gives the interval (see [`super::profile`]).
    fn start_timer(&self) -> Result<Stopper<Self>, Self::Err>;

    /// Bytes of device memory in use, sampled after each op while profiling to find a step's
    /// peak: the most in use since the previous sample where the device counts its allocations
    /// (the CPU: [`super::host_memory`]), else the present use; `None` where it cannot tell.
    fn memory_in_use(&self) -> Option<u64> {
        None
    }
}

/// Ends a timing started by [`NnDevice::start_timer`].
pub type Stopper<D> = Box<dyn FnOnce() -> Result<Interval, <D as HasErr>::Err>>;

/// Runs `f`, timing its device work as `kind` when profiling is on.
fn timed<D: NnDevice, R>(
    dev: &D,
    kind: OpKind,
    f: impl FnOnce() -> Result<R, D::Err>,
) -> Result<R, D::Err> {
    profile::timed_as(dev, kind, |e| e, f)
}

/// Takes the gradient of `t` out of `grads`, or a zeroed one when none is held yet.
fn take_grad<S: Shape, D: Storage<f32>>(
    grads: &mut Gradients<f32, D>,
    t: &impl Tensorlike<S, f32, D>,
) -> Result<Buf<D>, D::Err> {
    match grads.remove(t) {
        Some(g) => Ok(g),
        None => t.dev().try_alloc_len(t.len()),
    }
}

/// Wraps a kernel's output buffer as a `(rows, cols)` tensor.
fn wrap<D: NnDevice>(dev: &D, rows: usize, data: Buf<D>) -> Mat<D> {
    let cols = Storage::<f32>::len(dev, &data) / rows.max(1);
    Tensor::from_storage(dev, (rows, cols), data)
}

fn contiguous<D: Storage<f32>, T>(x: Mat<D, T>, what: &str) -> Mat<D, T> {
    assert!(x.is_contiguous(), "{what}: input must be contiguous");
    x
}

/// Convolution (no bias) of channel-major maps with a flat `(cout, cin, k, k)` weight.
/// `input_grad = false` skips the input gradient (the network's first layer).
pub fn conv2d<D: NnDevice, T: Tape<f32, D>>(
    x: Fmap<D, T>,
    weight: &Flat<D>,
    geom: &ConvGeom,
    input_grad: bool,
) -> Result<Fmap<D, T>, D::Err> {
    assert_eq!(x.channels(), geom.cin, "conv input channels");
    assert_eq!(weight.shape().0, geom.weight_len(), "conv weight size");
    let Fmap { x: xm, b, h, w } = x;
    let s = ConvShape {
        geom: *geom,
        b,
        h,
        w,
    };
    let (xm, mut tape) = contiguous(xm, "conv2d").split_tape();
    let dev = xm.device().clone();
    let y = timed(&dev, OpKind::ConvForward, || {
        dev.conv2d_forward(&s, xm.storage(), weight.storage())
    })?;
    let y = wrap(&dev, geom.cout, y);
    if T::OWNS_TAPE {
        let weight = weight.clone();
        let y_ghost = y.ghost();
        tape.add_backward_op(move |grads| {
            let Some(dy) = grads.remove(&y_ghost) else {
                return Ok(());
            };
            let mut dw = take_grad(grads, &weight)?;
            let mut dx = if input_grad {
                Some(take_grad(grads, &xm)?)
            } else {
                None
            };
            timed(&dev, OpKind::ConvBackward, || {
                dev.conv2d_backward(
                    &s,
                    xm.storage(),
                    weight.storage(),
                    &dy,
                    dx.as_mut(),
                    &mut dw,
                )
            })?;
            if let Some(dx) = dx {
                grads.insert(&xm, dx);
            }
            grads.insert(&weight, dw);
            Ok(())
        });
    }
    let (ho, wo) = s.out_hw();
    Ok(Fmap {
        x: y.put_tape(tape),
        b,
        h: ho,
        w: wo,
    })
}

/// Batch normalisation over axis 1 of a `(C, N)` tensor (BatchNorm2d on channel-major maps,
/// BatchNorm1d on feature-major vectors), optionally followed by a ReLU in the same op.
///
/// Training mode: batch mean and biased variance normalise, and the gradient flows through
/// both; the running statistics are updated like PyTorch's (`r = (1 - m) r + m stat`, the
/// variance unbiased). Evaluation mode: the running statistics normalise. `affine = None` is
/// `affine=False`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<D: NnDevice, T: Tape<f32, D>>(
    x: Mat<D, T>,
    affine: Option<(&Flat<D>, &Flat<D>)>,
    running: Option<(&mut Flat<D>, &mut Flat<D>)>,
    train: bool,
    relu: bool,
    momentum: f64,
    eps: f64,
) -> Result<Mat<D, T>, D::Err> {
    let (c, n) = *x.shape();
    if !train {
        let y = batch_norm_eval(x, affine, running, eps)?;
        return if relu { y.try_relu() } else { Ok(y) };
    }
    let (xm, mut tape) = contiguous(x, "batch_norm").split_tape();
    let dev = xm.device().clone();
    let (y, stats) = timed(&dev, OpKind::BatchNormForward, || {
        dev.batch_norm_forward(
            c,
            n,
            xm.storage(),
            affine.map(|(g, b)| (g.storage(), b.storage())),
            eps as f32,
            relu,
        )
    })?;
    let y = wrap(&dev, c, y);
    if relu && relu_masks::recording() {
        // `trainer step-dump`: the decisions' input is the same forward without the ReLU
        let (pre, _) = dev.batch_norm_forward(
            c,
            n,
            xm.storage(),
            affine.map(|(g, b)| (g.storage(), b.storage())),
            eps as f32,
            false,
        )?;
        let host = |v: &Buf<D>| Flat::<D>::from_storage(&dev, (c,), v.clone()).as_vec();
        let affine = affine.map(|(g, b)| (g.as_vec(), b.as_vec()));
        relu_masks::note_batch_norm(
            &y,
            &wrap(&dev, c, pre),
            &xm,
            &host(&stats.mean),
            &host(&stats.inv_std),
            affine.as_ref().map(|(g, b)| (g.as_slice(), b.as_slice())),
        );
    }
    if let Some((rm, rv)) = running {
        let unbias = if n > 1 {
            n as f64 / (n - 1) as f64
        } else {
            1.0
        };
        let mean = Tensor::from_storage(&dev, (c,), stats.mean.clone());
        let var = Tensor::from_storage(&dev, (c,), stats.var.clone());
        rm.try_axpy(1.0 - momentum, &mean, momentum)?;
        rv.try_axpy(1.0 - momentum, &var, momentum * unbias)?;
    }
    if T::OWNS_TAPE {
        let affine = affine.map(|(g, b)| (g.clone(), b.clone()));
        // the output's data is kept only for a fused ReLU's mask: without one, the output
        // (a bottleneck's widest map, before the residual add) is freed after its last use
        let y_id = y.ghost();
        let relu_out = relu.then(|| y.clone());
        tape.add_backward_op(move |grads| {
            let Some(dy) = grads.remove(&y_id) else {
                return Ok(());
            };
            let mut dx = take_grad(grads, &xm)?;
            let mut daffine = match &affine {
                Some((gamma, beta)) => Some((take_grad(grads, gamma)?, take_grad(grads, beta)?)),
                None => None,
            };
            timed(&dev, OpKind::BatchNormBackward, || {
                dev.batch_norm_backward(
                    c,
                    n,
                    xm.storage(),
                    relu_out.as_ref().map(|y| y.storage()),
                    affine.as_ref().map(|(g, _)| g.storage()),
                    &stats,
                    &dy,
                    &mut dx,
                    daffine.as_mut().map(|(g, b)| (g, b)),
                )
            })?;
            if let (Some((gamma, beta)), Some((dg, db))) = (&affine, daffine) {
                grads.insert(gamma, dg);
                grads.insert(beta, db);
            }
            grads.insert(&xm, dx);
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

/// Evaluation-mode BatchNorm: an affine map per row from the running statistics (dfdx ops).
fn batch_norm_eval<D: NnDevice, T: Tape<f32, D>>(
    x: Mat<D, T>,
    affine: Option<(&Flat<D>, &Flat<D>)>,
    running: Option<(&mut Flat<D>, &mut Flat<D>)>,
    eps: f64,
) -> Result<Mat<D, T>, D::Err> {
    let shape = *x.shape();
    let (rm, rv) = running.expect("evaluation-mode batch norm needs running statistics");
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

/// `relu(a + b)`: the end of a residual block (`a` the block's branch, `b` its shortcut).
pub fn add_relu<D: NnDevice, T: Tape<f32, D> + Merge<R>, R: Tape<f32, D>>(
    a: Mat<D, T>,
    b: Mat<D, R>,
) -> Result<Mat<D, T>, D::Err> {
    assert_eq!(a.shape(), b.shape(), "add_relu shapes");
    let c = a.shape().0;
    let (a, ta) = contiguous(a, "add_relu").split_tape();
    let (b, tb) = contiguous(b, "add_relu").split_tape();
    let mut tape = ta.merge(tb);
    let dev = a.device().clone();
    let y = timed(&dev, OpKind::PoolAddRelu, || {
        dev.add_relu_forward(a.storage(), b.storage())
    })?;
    let y = wrap(&dev, c, y);
    relu_masks::note_add(&y, &a, &b);
    if T::OWNS_TAPE {
        let (a, b) = (a.ghost(), b.ghost());
        let y_saved = y.clone();
        tape.add_backward_op(move |grads| {
            let Some(dy) = grads.remove(&y_saved) else {
                return Ok(());
            };
            for input in [&a, &b] {
                let mut dx = take_grad(grads, input)?;
                timed(&dev, OpKind::PoolAddRelu, || {
                    dev.relu_backward(y_saved.storage(), &dy, &mut dx)
                })?;
                grads.insert(input, dx);
            }
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

/// Max pool `k`x`k`, stride `s`, `-inf` padding `p` of channel-major maps.
pub fn max_pool2d<D: NnDevice, T: Tape<f32, D>>(
    x: Fmap<D, T>,
    k: usize,
    s: usize,
    p: usize,
) -> Result<Fmap<D, T>, D::Err> {
    assert!(p < k, "padding must be smaller than the window");
    let c = x.channels();
    let Fmap { x: xm, b, h, w } = x;
    let shape = PoolShape {
        c,
        b,
        h,
        w,
        k,
        s,
        p,
    };
    let (xm, mut tape) = contiguous(xm, "max_pool2d").split_tape();
    let dev = xm.device().clone();
    let y = timed(&dev, OpKind::PoolAddRelu, || {
        dev.max_pool_forward(&shape, xm.storage())
    })?;
    let y = wrap(&dev, c, y);
    if T::OWNS_TAPE {
        let y_saved = y.clone();
        tape.add_backward_op(move |grads| {
            let Some(dy) = grads.remove(&y_saved) else {
                return Ok(());
            };
            let mut dx = take_grad(grads, &xm)?;
            timed(&dev, OpKind::PoolAddRelu, || {
                dev.max_pool_backward(&shape, xm.storage(), y_saved.storage(), &dy, &mut dx)
            })?;
            grads.insert(&xm, dx);
            Ok(())
        });
    }
    let (ho, wo) = shape.out_hw();
    Ok(Fmap {
        x: y.put_tape(tape),
        b,
        h: ho,
        w: wo,
    })
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
