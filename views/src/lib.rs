//! barlow's views: Pillow-exact augmented views of a decoded image, as the official Barlow Twins
//! pipeline (torchvision on PIL images) makes them.
//!
//! [`sample::SampleMaker`] is the one way to make a pair: decode (the `decode` crate), draw both
//! views' [`params`] from generators keyed by (seed, epoch, sample, view) ([`keyed_rng`]), and
//! make each with [`view::ViewMaker`]: crop + resize ([`resample`]), colour jitter and grayscale
//! ([`color`], with 256-entry tables in [`lut`]), Pillow's GaussianBlur ([`blur`]), then one
//! write that flips, solarizes and lays the view out as CHW ([`planar`]). [`simd`] picks the
//! kernels' instruction set at run time. [`imagenet`] holds the normalisation every consumer
//! applies; [`recipe`] names each method's two views (Barlow Twins', MoCo v3's).
//!
//! **Architecture invariant:** this crate depends only on `decode`: it knows nothing of files,
//! rings, batches or threads, so the loader, the fuzz target, benches and tests share one
//! definition of a view.

pub mod blur;
pub mod color;
pub mod imagenet;
pub mod keyed_rng;
pub mod lut;
pub mod params;
pub mod planar;
pub mod recipe;
pub mod resample;
pub mod sample;
pub mod simd;
pub mod view;
