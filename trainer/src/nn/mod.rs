//! The layers the models are made of, as custom dfdx ops with one interface and a CPU and a CUDA
//! implementation behind it.
//!
//! - [`ops`]: the op interface. [`ops::NnDevice`] is what a device implements (forward and
//!   backward kernels on raw storage: convolution, BatchNorm(+ReLU), residual add+ReLU, max
//!   pool); the functions next to it (`conv2d`, `batch_norm`, `add_relu`, `max_pool2d`, ...) are
//!   what the model calls: they run the device's forward, record one backward op on dfdx's tape
//!   (`Tape::add_backward_op`) and, in backward, **free their output's gradient** as soon as they
//!   have used it (a producer's backward runs after all its consumers').
//! - [`relu_masks`]: records each ReLU's decisions during a forward pass (`trainer step-dump`).
//! - [`host_memory`]: the heap counted by a global allocator: the CPU device's memory use.
//! - [`cpu`]: the CPU kernels (im2col + `gemm`, per-channel loops).
//! - `cuda` (feature `cuda`): cuDNN convolutions (own minimal FFI, loaded at run time), NVRTC
//!   kernels for BatchNorm+ReLU, add+ReLU and max pool, TF32 through the math mode.
//!
//! Activations are kept channel-major, `(C, B*H*W)` with `(B, H, W)` alongside ([`Fmap`]), and
//! feature vectors feature-major, `(F, B)`. In that layout a convolution's output is already the
//! next layer's input, BatchNorm is a per-row reduction, and the projector's BatchNorm1d is the
//! same op as BatchNorm2d. Weights are flat `(n,)` tensors owned by the model's
//! [`crate::params::Store`].

use dfdx::prelude::*;

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod host_memory;
pub mod ops;
pub mod profile;
pub mod relu_masks;

pub use ops::NnDevice;

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

/// Shape of a convolution (no bias): `cin -> cout`, `k`x`k` kernel, stride `s`, zero padding `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A convolution applied to a batch: the geometry plus the input's `(B, H, W)`. The key of the
/// CUDA side's per-shape plans (algorithms, descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub geom: ConvGeom,
    pub b: usize,
    pub h: usize,
    pub w: usize,
}

impl ConvShape {
    /// Output `(Ho, Wo)`.
    pub fn out_hw(&self) -> (usize, usize) {
        self.geom.output_hw(self.h, self.w)
    }
    /// Input elements `C * B * H * W`.
    pub fn in_len(&self) -> usize {
        self.geom.cin * self.b * self.h * self.w
    }
    /// Output elements `O * B * Ho * Wo`.
    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.geom.cout * self.b * ho * wo
    }
}

/// A max pool applied to a batch: `k`x`k` window, stride `s`, `-inf` padding `p`, over `c`
/// channels of `(B, H, W)` maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolShape {
    pub c: usize,
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl PoolShape {
    /// Output `(Ho, Wo)`.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            out_size(self.h, self.k, self.s, self.p),
            out_size(self.w, self.k, self.s, self.p),
        )
    }
    /// Output elements `C * B * Ho * Wo`.
    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.c * self.b * ho * wo
    }
}

#[cfg(test)]
mod tests;
