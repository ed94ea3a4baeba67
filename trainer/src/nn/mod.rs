//! Layers dfdx 0.13 only offers behind its (broken) `nightly` feature, rebuilt from stable ops.
//!
//! Both are ordinary dfdx modules: they implement `TensorCollection` (so optimizers, gradient
//! allocation and `SaveToSafetensors`/`LoadFromSafetensors` see their weights), build through
//! `BuildOnDevice`, and compose in dfdx's tuple sequentials next to `BatchNorm2D`, `ReLU`, ...

pub mod conv;
pub mod pool;
pub mod rt;

pub use conv::{out_size, Conv2d};
pub use pool::MaxPool2d;

/// Builder types, to be used in architecture type aliases (`builders::Conv2d<3, 16, 3, 2, 1>`).
pub mod builders {
    pub use super::conv::builder::Conv2d;
    pub use super::pool::MaxPool2d;
}

#[cfg(test)]
mod tests;
