//! ImageNet's per-channel statistics: the normalisation `(x / 255 - mean) / std` that the
//! official pipeline's `transforms.Normalize` applies, declared in every ring header by the
//! loader and used by the trainer's k-NN evaluation. The one definition.

/// Channel means (RGB, 0..1 scale).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Channel standard deviations (RGB, 0..1 scale).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];
