//! barlow's NVRTC kernels (`kernels.cu`): compiled once per process on first use, launched on
//! the device's stream with raw device pointers. Also CUDA events for `--profile-ops`.

use std::sync::OnceLock;

use cudarc::driver::sys::{CUdevice_attribute, CUevent, CUevent_flags};
use cudarc::driver::{result, CudaFunction, LaunchAsync, LaunchConfig};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use dfdx::prelude::*;
use dfdx::tensor::CudaError;

use crate::nn::PoolShape;

const SOURCE: &str = include_str!("kernels.cu");
const MODULE: &str = "barlow_nn";
const NAMES: [&str; 11] = [
    "bn_stats",
    "bn_finalize",
    "bn_apply",
    "bn_backward_sums",
    "bn_backward_dx",
    "bn_backward_affine",
    "add_relu",
    "relu_backward",
    "max_pool_forward",
    "max_pool_backward",
    "normalize_u8",
];
const THREADS: u32 = 256;

/// The loaded kernels, in [`NAMES`]' order.
pub struct Kernels {
    f: Vec<CudaFunction>,
}

/// The kernels, compiled and loaded into the device on the first call.
pub fn get(dev: &Cuda) -> Result<&'static Kernels, CudaError> {
    static KERNELS: OnceLock<Result<Kernels, String>> = OnceLock::new();
    KERNELS
        .get_or_init(|| load(dev))
        .as_ref()
        .map_err(|e| CudaError::Op(e.clone()))
}

fn load(dev: &Cuda) -> Result<Kernels, String> {
    let cu = dev.cuda_device();
    let cap = |a| {
        cu.attribute(a)
            .map_err(|e| format!("reading the GPU's compute capability: {e:?}"))
    };
    let major = cap(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = cap(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    // PTX for this GPU's virtual architecture (the driver compiles it); leaked once per process
    let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
    let opts = CompileOptions {
        arch: Some(arch),
        // exact IEEE division and square root, no flush to zero: the same numbers as the CPU's
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(SOURCE, opts)
        .map_err(|e| format!("compiling barlow's CUDA kernels with NVRTC: {e:?}"))?;
    cu.load_ptx(ptx, MODULE, &NAMES)
        .map_err(|e| format!("loading barlow's CUDA kernels: {e:?}"))?;
    let f = NAMES
        .iter()
        .map(|n| {
            cu.get_func(MODULE, n)
                .ok_or(format!("kernel {n} missing after load"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Kernels { f })
}

/// Blocks per row for a `(c, n)` reduction or map: enough blocks in all to fill the GPU, rows
/// split when there are few channels.
fn row_grid(c: usize, n: usize) -> LaunchConfig {
    let per_row = n
        .div_ceil(THREADS as usize * 4)
        .clamp(1, (2048 / c.max(1)).max(1));
    LaunchConfig {
        grid_dim: (per_row as u32, c as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A grid-stride launch over `len` elements.
fn flat_grid(len: usize) -> LaunchConfig {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 65_536);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn small_grid(c: usize) -> LaunchConfig {
    flat_grid(c)
}

impl Kernels {
    fn func(&self, name: &str) -> CudaFunction {
        let i = NAMES.iter().position(|n| *n == name).expect("known kernel");
        self.f[i].clone()
    }

    /// Statistics, then `y`. `stats` = `[mean, var, inv_std]`; `acc` is `2c` zeroed doubles.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_forward(
        &self,
        c: usize,
        n: usize,
        x: u64,
        gamma: u64,
        beta: u64,
        eps: f32,
        relu: bool,
        acc: u64,
        stats: [u64; 3],
        y: u64,
    ) -> Result<(), CudaError> {
        let n64 = n as i64;
        // SAFETY: every pointer is a live device buffer of the length the kernel reads or
        // writes (x and y: c*n floats, stats: c floats, acc: 2c doubles; gamma/beta c floats or
        // null), all on the device's stream.
        unsafe {
            self.func("bn_stats")
                .launch(row_grid(c, n), (x, n64, acc))?;
            self.func("bn_finalize").launch(
                small_grid(c),
                (acc, x, n64, c as i32, eps, stats[0], stats[1], stats[2]),
            )?;
            self.func("bn_apply").launch(
                row_grid(c, n),
                (x, gamma, beta, stats[0], stats[2], y, n64, relu as i32),
            )?;
        }
        Ok(())
    }

    /// Sums, then `dx` (and `dgamma`, `dbeta`). `xyd` = `[x, y, dy]`, `stats` = `[mean, inv_std]`.
    #[allow(clippy::too_many_arguments)]
    pub fn bn_backward(
        &self,
        c: usize,
        n: usize,
        xyd: [u64; 3],
        gamma: u64,
        stats: [u64; 2],
        relu: bool,
        acc: u64,
        dx: u64,
        daffine: Option<(u64, u64)>,
    ) -> Result<(), CudaError> {
        let n64 = n as i64;
        let [x, y, dy] = xyd;
        let [mean, inv_std] = stats;
        // SAFETY: as in `bn_forward`; dx is c*n floats, dgamma/dbeta c floats.
        unsafe {
            self.func("bn_backward_sums").launch(
                row_grid(c, n),
                (x, y, dy, mean, inv_std, n64, relu as i32, acc),
            )?;
            self.func("bn_backward_dx").launch(
                row_grid(c, n),
                (x, y, dy, gamma, mean, inv_std, acc, n64, relu as i32, dx),
            )?;
            if let Some((dg, db)) = daffine {
                self.func("bn_backward_affine")
                    .launch(small_grid(c), (acc, c as i32, dg, db))?;
            }
        }
        Ok(())
    }

    pub fn add_relu(&self, a: u64, b: u64, y: u64, len: usize) -> Result<(), CudaError> {
        // SAFETY: a, b, y are live buffers of `len` floats.
        unsafe {
            self.func("add_relu")
                .launch(flat_grid(len), (a, b, y, len as i64))?
        };
        Ok(())
    }

    pub fn relu_backward(&self, y: u64, dy: u64, dx: u64, len: usize) -> Result<(), CudaError> {
        // SAFETY: y, dy, dx are live buffers of `len` floats.
        unsafe {
            self.func("relu_backward")
                .launch(flat_grid(len), (y, dy, dx, len as i64))?
        };
        Ok(())
    }

    /// `(planes = C * B, h, w, ho, wo, k, s, p)`.
    fn pool_args(s: &PoolShape) -> (i32, i32, i32, i32, i32, i32, i32, i32) {
        let (ho, wo) = s.out_hw();
        let i = |v: usize| v as i32;
        (
            i(s.c * s.b),
            i(s.h),
            i(s.w),
            i(ho),
            i(wo),
            i(s.k),
            i(s.s),
            i(s.p),
        )
    }

    pub fn max_pool_forward(&self, s: &PoolShape, x: u64, y: u64) -> Result<(), CudaError> {
        let (planes, h, w, ho, wo, k, st, p) = Self::pool_args(s);
        // SAFETY: x holds c*b*h*w floats, y c*b*ho*wo.
        unsafe {
            self.func("max_pool_forward").launch(
                flat_grid(s.out_len()),
                (x, y, planes, h, w, ho, wo, k, st, p),
            )?
        };
        Ok(())
    }

    /// `xyd` = `[x, y, dy]`.
    pub fn max_pool_backward(
        &self,
        s: &PoolShape,
        xyd: [u64; 3],
        dx: u64,
    ) -> Result<(), CudaError> {
        let (planes, h, w, ho, wo, k, st, p) = Self::pool_args(s);
        let [x, y, dy] = xyd;
        // SAFETY: x and dx hold c*b*h*w floats, y and dy c*b*ho*wo.
        unsafe {
            self.func("max_pool_backward").launch(
                flat_grid(s.out_len()),
                (x, y, dy, dx, planes, h, w, ho, wo, k, st, p),
            )?
        };
        Ok(())
    }
}

impl Kernels {
    /// `px` holds `n * 3 * plane` bytes on the device; `out` as many floats.
    pub fn normalize_u8(
        &self,
        px: u64,
        out: u64,
        n: usize,
        plane: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<(), CudaError> {
        let (n64, p64) = (n as i64, plane as i64);
        // SAFETY: px holds 3*n*plane bytes and out 3*n*plane floats, both live device buffers.
        unsafe {
            self.func("normalize_u8").launch(
                flat_grid(3 * n * plane),
                (
                    px, out, n64, p64, mean[0], mean[1], mean[2], std[0], std[1], std[2],
                ),
            )?
        };
        Ok(())
    }
}

/// A CUDA event recorded on the device's stream (for `--profile-ops`).
pub struct Event(CUevent);

// SAFETY: an event handle may be used from any thread of the context that made it.
unsafe impl Send for Event {}

impl Event {
    pub fn record(dev: &Cuda) -> Result<Event, CudaError> {
        dev.cuda_device().bind_to_thread()?;
        let e = result::event::create(CUevent_flags::CU_EVENT_DEFAULT)?;
        // SAFETY: a fresh event, recorded on the device's stream.
        unsafe { result::event::record(e, *dev.cuda_device().cu_stream()) }?;
        Ok(Event(e))
    }

    /// Milliseconds from `self` to `end` (both must have completed: call after a synchronize);
    /// 0 when the driver cannot tell.
    pub fn elapsed_ms(self, end: &Event) -> f64 {
        // SAFETY: both events were recorded and have completed.
        unsafe { result::event::elapsed(self.0, end.0) }.map_or(0.0, |ms| ms as f64)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event is not used after this.
        unsafe {
            let _ = result::event::destroy(self.0);
        }
    }
}
