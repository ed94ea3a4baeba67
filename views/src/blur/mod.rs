//! Gaussian blurs, each bit-exact (or within a stated bound) with the library a method's official
//! code blurs with: Pillow's extended box blur ([`pillow`]: Barlow Twins, MoCo v3, DINO), OpenCV's
//! fixed-point Gaussian ([`opencv`]: SwAV) and torchvision's float Gaussian ([`torchvision`]:
//! DINOv2). [`BlurFilter`] names one; [`Blurs::apply`] runs it.

pub mod opencv;
pub mod pillow;
pub mod torchvision;

pub use pillow::{box_radius, gaussian_blur, BlurScratch, BoxWeights};
