//! trainer: Barlow Twins pretraining in dfdx 0.13 (stable Rust, CPU now, CUDA via `--features
//! cuda`).
//!
//! - [`nn`]: the layers as custom ops with one interface ([`nn::NnDevice`]) and CPU and CUDA
//!   kernels behind it (dfdx's own conv/pool need its broken `nightly` feature);
//! - [`model`]: the tiny backbone, the projector presets and [`model::BarlowModel`] (train step,
//!   embed, save/load);
//! - [`loss`]: the Barlow Twins loss and an f64 reference;
//! - [`input`]: u8 NCHW batches -> normalised f32 tensors;
//! - [`session`]: the training loop fed by the ring, with wait/compute accounting, and the
//!   session's summary and verdict;
//! - [`cli`]: the `trainer` binary's arguments and what each subcommand runs;
//! - [`device`]: the one place a device is chosen and opened (and `cuda` is gated);
//! - [`device_check`]: one step on two devices (CPU vs CUDA), compared;
//! - [`bench`]: the time of one training step on random inputs (`trainer bench`);
//! - [`step_dump`]: training steps written out for the comparison with the official PyTorch code
//!   (`trainer step-dump`, `reference/step_check.py`).

pub mod input;
pub mod lars;
pub mod loss;
pub mod model;
pub mod nn;
pub mod params;

#[cfg(feature = "cuda")]
pub use cudarc;
pub use dfdx;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod device;
pub mod device_check;
pub mod dry_run;
pub mod eval;
pub mod session;
pub mod step_dump;
