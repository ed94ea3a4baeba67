//! The CUDA kernels of [`NnDevice`]: cuDNN convolutions and barlow's own NVRTC kernels for
//! BatchNorm(+ReLU), add+ReLU, ReLU backward and max pool.
//!
//! - Convolutions run on the channel-major maps in place: a `(C, B*H*W)` buffer is the NCHW
//!   tensor `[B, C, H, W]` with strides `[H*W, B*H*W, W, 1]`, which cuDNN's legacy API takes as
//!   is. Each shape gets a plan once ([`conv::Plan`]: descriptors and the fastest algorithm of
//!   each direction, measured with `cudnnFind*AlgorithmEx` within a capped workspace) and keeps it;
//!   one workspace buffer is shared by all convolutions. Backward uses beta = 1: it accumulates.
//! - TF32 ([`set_tf32`]): cuDNN's default math type (tensor cores allowed) and cuBLAS's
//!   `CUBLAS_TF32_TENSOR_OP_MATH` on dfdx's handle (the projector, the loss), or full FP32.
//! - Every kernel runs on the device's stream (cudarc's `CudaDevice` uses the legacy default
//!   stream, as do cuDNN handles by default), so it is ordered with dfdx's own kernels and a
//!   buffer freed in backward is never freed under a running kernel.

use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::{DevicePtr, DevicePtrMut, DeviceSlice};
use dfdx::prelude::*;
use dfdx::tensor::CudaError;

use super::ops::{BnStats, Buf, NnDevice, Stopper};
use super::{ConvShape, PoolShape};

mod conv;
pub mod cudnn;
mod kernels;

static TF32: AtomicBool = AtomicBool::new(false);

/// Whether convolutions and dfdx's matrix products may use TF32 tensor cores.
pub fn tf32() -> bool {
    TF32.load(Ordering::Relaxed)
}

/// Allows or forbids TF32 for cuDNN convolutions (their math type; plans made before keep theirs
/// and are re-made) and for dfdx's cuBLAS matrix products (the handle's math mode).
pub fn set_tf32(dev: &Cuda, on: bool) -> Result<(), CudaError> {
    use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode, cublasStatus_t};
    TF32.store(on, Ordering::Relaxed);
    conv::forget_plans();
    let mode = if on {
        cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
    } else {
        cublasMath_t::CUBLAS_DEFAULT_MATH
    };
    // SAFETY: the handle is dfdx's live cuBLAS handle; setting its math mode has no other effect.
    let status = unsafe { cublasSetMathMode(*dev.cublas().handle(), mode) };
    if status != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        return Err(CudaError::Op(format!("cublasSetMathMode: {status:?}")));
    }
    Ok(())
}

/// cuDNN's version (`9.x.y`), or why it cannot be loaded.
pub fn cudnn_version() -> Result<String, String> {
    cudnn::api().map(cudnn::version_string)
}

/// A device pointer of a buffer, for kernel and cuDNN arguments.
fn ptr(buf: &Buf<Cuda>) -> u64 {
    *buf.device_ptr()
}

fn ptr_mut(buf: &mut Buf<Cuda>) -> u64 {
    *buf.device_ptr_mut()
}

/// An uninitialised buffer of `len` floats (every kernel writing one fills all of it).
fn alloc_uninit(dev: &Cuda, len: usize) -> Result<Buf<Cuda>, CudaError> {
    // SAFETY: the caller's kernel writes every element before anything reads it.
    let slice = unsafe { dev.alloc_empty::<f32>(len) }?;
    Ok(dev.wrap_slice(slice))
}

impl NnDevice for Cuda {
    fn conv2d_forward(
        &self,
        s: &ConvShape,
        x: &Buf<Self>,
        w: &Buf<Self>,
    ) -> Result<Buf<Self>, Self::Err> {
        let mut y = alloc_uninit(self, s.out_len())?;
        let (x, w, y_ptr) = (ptr(x), ptr(w), ptr_mut(&mut y));
        conv::run(self, s, conv::Direction::Forward { x, w, y: y_ptr })?;
        Ok(y)
    }

    fn conv2d_backward(
        &self,
        s: &ConvShape,
        x: &Buf<Self>,
        w: &Buf<Self>,
        dy: &Buf<Self>,
        dx: Option<&mut Buf<Self>>,
        dw: &mut Buf<Self>,
    ) -> Result<(), Self::Err> {
        let (x, w, dy) = (ptr(x), ptr(w), ptr(dy));
        if let Some(dx) = dx {
            conv::run(
                self,
                s,
                conv::Direction::BackwardData {
                    w,
                    dy,
                    dx: ptr_mut(dx),
                },
            )?;
        }
        conv::run(
            self,
            s,
            conv::Direction::BackwardFilter {
                x,
                dy,
                dw: ptr_mut(dw),
            },
        )
    }

    fn batch_norm_forward(
        &self,
        c: usize,
        n: usize,
        x: &Buf<Self>,
        affine: Option<(&Buf<Self>, &Buf<Self>)>,
        eps: f32,
        relu: bool,
    ) -> Result<(Buf<Self>, BnStats<Buf<Self>>), Self::Err> {
        let k = kernels::get(self)?;
        let acc = Storage::<f64>::try_alloc_len(self, 2 * c)?;
        let mut y = alloc_uninit(self, c * n)?;
        let mut stats = BnStats {
            mean: alloc_uninit(self, c)?,
            var: alloc_uninit(self, c)?,
            inv_std: alloc_uninit(self, c)?,
        };
        let (gamma, beta) = affine.map_or((0, 0), |(g, b)| (ptr(g), ptr(b)));
        k.bn_forward(
            c,
            n,
            ptr(x),
            gamma,
            beta,
            eps,
            relu,
            *acc.device_ptr(),
            [
                ptr_mut(&mut stats.mean),
                ptr_mut(&mut stats.var),
                ptr_mut(&mut stats.inv_std),
            ],
            ptr_mut(&mut y),
        )?;
        Ok((y, stats))
    }

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
    ) -> Result<(), Self::Err> {
        let k = kernels::get(self)?;
        let acc = Storage::<f64>::try_alloc_len(self, 2 * c)?;
        k.bn_backward(
            c,
            n,
            // without a ReLU the kernel never reads `y` (`relu && y[i] <= 0`)
            [ptr(x), relu_out.map_or(0, ptr), ptr(dy)],
            gamma.map_or(0, ptr),
            [ptr(&stats.mean), ptr(&stats.inv_std)],
            relu_out.is_some(),
            *acc.device_ptr(),
            ptr_mut(dx),
            daffine.map(|(g, b)| (ptr_mut(g), ptr_mut(b))),
        )
    }

    fn add_relu_forward(&self, a: &Buf<Self>, b: &Buf<Self>) -> Result<Buf<Self>, Self::Err> {
        let len = a.len();
        let mut y = alloc_uninit(self, len)?;
        kernels::get(self)?.add_relu(ptr(a), ptr(b), ptr_mut(&mut y), len)?;
        Ok(y)
    }

    fn relu_backward(
        &self,
        y: &Buf<Self>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
    ) -> Result<(), Self::Err> {
        kernels::get(self)?.relu_backward(ptr(y), ptr(dy), ptr_mut(dx), y.len())
    }

    fn max_pool_forward(&self, s: &PoolShape, x: &Buf<Self>) -> Result<Buf<Self>, Self::Err> {
        let mut y = alloc_uninit(self, s.out_len())?;
        kernels::get(self)?.max_pool_forward(s, ptr(x), ptr_mut(&mut y))?;
        Ok(y)
    }

    fn max_pool_backward(
        &self,
        s: &PoolShape,
        x: &Buf<Self>,
        y: &Buf<Self>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
    ) -> Result<(), Self::Err> {
        kernels::get(self)?.max_pool_backward(s, [ptr(x), ptr(y), ptr(dy)], ptr_mut(dx))
    }

    fn normalize_u8(
        &self,
        pixels: &[u8],
        n: usize,
        plane: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Buf<Self>, Self::Err> {
        let px = self.cuda_device().htod_sync_copy(pixels)?;
        let mut out = alloc_uninit(self, pixels.len())?;
        kernels::get(self)?.normalize_u8(
            *px.device_ptr(),
            ptr_mut(&mut out),
            n,
            plane,
            mean,
            std,
        )?;
        Ok(out)
    }

    fn memory_in_use(&self) -> Option<u64> {
        let (free, total) = cudarc::driver::result::mem_get_info().ok()?;
        Some(total.saturating_sub(free) as u64)
    }

    fn start_timer(&self) -> Result<Stopper<Self>, Self::Err> {
        let start = kernels::Event::record(self)?;
        let dev = self.clone();
        Ok(Box::new(move || {
            let end = kernels::Event::record(&dev)?;
            Ok(Box::new(move || start.elapsed_ms(&end)))
        }))
    }
}
