//! torchvision's `gaussian_blur(img, [k, k], [sigma, sigma])` on a uint8 RGB image (DINOv2's
//! blur): a float32 kernel, reflect padding, rounding back to u8.
//!
//! (To be written.)

/// Per-worker buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct Scratch {}

/// torchvision's `gaussian_blur` with a `ksize x ksize` kernel of `sigma` (taken as f32, as
/// torchvision's kernel is) on an interleaved RGB image of `width x height`, in place.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    let _ = (pixels, width, height, ksize, sigma, scratch);
    todo!("torchvision's float Gaussian blur")
}
