//! OpenCV's `cv2.GaussianBlur(img, (k, k), sigma)` on an 8-bit RGB image, bit-exact (SwAV's blur).
//!
//! (To be written: the fixed-point kernel OpenCV builds for 8-bit images, its separable passes
//! and `BORDER_REFLECT_101` borders.)

/// Per-worker buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct Scratch {}

/// `cv2.GaussianBlur(pixels, (ksize, ksize), sigma)` (default border) on an interleaved RGB image
/// of `width x height`, in place.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    let _ = (pixels, width, height, ksize, sigma, scratch);
    todo!("OpenCV's fixed-point Gaussian blur")
}
