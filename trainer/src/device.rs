//! The one place a compute device is chosen and opened, and the only place the binary's code
//! depends on the `cuda` feature: every subcommand runs its work as a [`DeviceTask`] through
//! [`run_on_device`], generic over the device.

use dfdx::prelude::*;

use crate::nn::NnDevice;

/// `--device`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl DeviceKind {
    /// The device asked for; by default cuda when built with it and a GPU is present, else cpu.
    pub fn choose(asked: Option<DeviceKind>) -> DeviceKind {
        asked.unwrap_or(if cfg!(feature = "cuda") && cuda::available() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        })
    }
}

/// How a device is opened.
#[derive(Clone, Copy, Debug)]
pub struct DeviceSetup {
    /// The device's own random generator (weights come from a host RNG of their own).
    pub seed: u64,
    /// dfdx's allocation cache.
    pub cache: bool,
    /// On CUDA: allow TF32 tensor cores or forbid them ([`crate::nn::cuda::set_tf32`]); None
    /// leaves the math mode as it is.
    pub tf32: Option<bool>,
}

/// A device work runs on: its kernels, and what messages call it.
pub trait RunDevice: NnDevice {
    /// `cpu`, or the GPU's name as the driver reports it.
    fn label(&self) -> String;
    /// None on the CPU; on CUDA "cuDNN 9.x.y", or an error that says how to install it.
    fn cudnn(&self) -> anyhow::Result<Option<String>>;
}

/// Work that runs on whichever device was chosen (a closure cannot be generic over it).
pub trait DeviceTask {
    type Output;
    fn run<D: RunDevice>(self, dev: &D) -> anyhow::Result<Self::Output>;
}

/// Opens `kind` as `setup` says and runs `task` on it.
pub fn run_on_device<T: DeviceTask>(
    kind: DeviceKind,
    setup: DeviceSetup,
    task: T,
) -> anyhow::Result<T::Output> {
    match kind {
        DeviceKind::Cpu => {
            let dev = Cpu::seed_from_u64(setup.seed);
            if setup.cache {
                dev.enable_cache();
            }
            task.run(&dev)
        }
        DeviceKind::Cuda => cuda::run(setup, task),
    }
}

impl RunDevice for Cpu {
    fn label(&self) -> String {
        "cpu".into()
    }
    fn cudnn(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use dfdx::prelude::*;

    use super::{DeviceSetup, DeviceTask, RunDevice};

    pub fn available() -> bool {
        std::panic::catch_unwind(|| Cuda::try_seed_from_u64(0).is_ok()).unwrap_or(false)
    }

    pub fn run<T: DeviceTask>(setup: DeviceSetup, task: T) -> anyhow::Result<T::Output> {
        let dev = Cuda::try_seed_from_u64(setup.seed)
            .map_err(|e| anyhow::anyhow!("opening the GPU: {e:?}"))?;
        if setup.cache {
            dev.enable_cache();
        }
        if let Some(tf32) = setup.tf32 {
            crate::nn::cuda::set_tf32(&dev, tf32)
                .map_err(|e| anyhow::anyhow!("setting the math mode: {e:?}"))?;
        }
        task.run(&dev)
    }

    impl RunDevice for Cuda {
        /// The GPU's name, as the driver reports it.
        fn label(&self) -> String {
            use cudarc::driver::sys::{cuDeviceGetName, CUresult};
            let mut buf = [0 as std::ffi::c_char; 128];
            let cu = *self.cuda_device().cu_device();
            // SAFETY: the buffer holds 128 bytes, the length passed; the driver NUL-terminates it.
            if unsafe { cuDeviceGetName(buf.as_mut_ptr(), buf.len() as i32, cu) }
                != CUresult::CUDA_SUCCESS
            {
                return "cuda".into();
            }
            // SAFETY: NUL-terminated by the driver (checked success above).
            unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        }

        /// "cuDNN 9.x.y", or an error that says how to install it.
        fn cudnn(&self) -> anyhow::Result<Option<String>> {
            crate::nn::cuda::cudnn_version()
                .map(|v| Some(format!("cuDNN {v}")))
                .map_err(|e| anyhow::anyhow!(e))
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::{DeviceSetup, DeviceTask};

    pub fn available() -> bool {
        false
    }

    pub fn run<T: DeviceTask>(_: DeviceSetup, _: T) -> anyhow::Result<T::Output> {
        anyhow::bail!("this trainer was built without CUDA; rebuild with `--features cuda` (see README, GPU build)")
    }
}
