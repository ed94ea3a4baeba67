//! torchvision's `gaussian_blur(img, [k, k], [sigma, sigma])` on a uint8 RGB image (DINOv2's
//! `transforms.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))` on a PIL image: torchvision turns it
//! into a uint8 tensor, blurs it in float32 and rounds back).
//!
//! torchvision builds a float32 kernel: `x = linspace(-(k-1)/2, (k-1)/2, k)` (whole numbers for an
//! odd `k`), `pdf = exp(-0.5 * (x / sigma)^2)`, `kernel = pdf / pdf.sum()`, with `sigma` a float32
//! (its `get_params` draws it as one); the 2-D kernel is the outer product, also float32. It pads
//! the image by `k / 2` with `"reflect"` (mirror without repeating the edge), convolves each
//! channel with `conv2d` in float32, rounds half to even (`torch.round`) and casts to uint8.
//!
//! Here the same float32 kernel is applied separably in **float64** (rows, then columns) and the
//! result rounded half to even. conv2d's float32 sum of 81 products, in an order of its own, is
//! off the exact value by up to about 1e-4; float64 is off by far less. So a byte differs from
//! torchvision's only where the exact value lies within that float32 error of a half-integer: by
//! 1, in a few bytes per million. The stated bound, tested against torchvision itself in
//! `python/tests/test_torchvision_blur.py`: no byte off by more than 1, at most 1e-4 of the bytes
//! off at all (measured: 5.9e-6, every one within 2.2e-4 of a tie). A bit-exact match would need
//! conv2d's summation order, which depends on torch's CPU kernels.
//!
//! torch refuses reflect padding as wide as the image (a side of at most `k / 2`); here the
//! reflection folds again (OpenCV's `BORDER_REFLECT_101`, what torch's mirror gives where it
//! runs), and a side of 1 repeats its one pixel. Every level gives the same bytes: each output is
//! the same sequence of f64 multiplies and adds (Rust never fuses them).

use crate::blur::reflect_101 as reflect;

/// Per-worker buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct Scratch {
    kernel: Vec<f64>,
    /// One source row, converted to f64 and padded by `k / 2` pixels each side.
    padded: Vec<f64>,
    /// The image after the row pass.
    rows: Vec<f64>,
    /// One output row's sums in the column pass.
    acc: Vec<f64>,
}

/// torchvision's float32 kernel (`_get_gaussian_kernel1d`) for an odd `ksize` and `sigma` (taken
/// as f32, as torchvision's is).
pub fn kernel(ksize: usize, sigma: f64) -> Vec<f32> {
    assert!(
        ksize % 2 == 1,
        "torchvision's kernel size must be odd, not {ksize}"
    );
    let sigma = sigma as f32;
    let half = (ksize / 2) as f32;
    let pdf: Vec<f32> = (0..ksize)
        .map(|i| {
            let t = (i as f32 - half) / sigma;
            (-0.5f32 * (t * t)).exp()
        })
        .collect();
    let sum: f32 = pdf.iter().sum();
    pdf.iter().map(|p| p / sum).collect()
}

/// torchvision's `gaussian_blur` with a `ksize x ksize` kernel of `sigma` (taken as f32, as
/// torchvision's kernel is) on an interleaved RGB image of `width x height`, in place; within 1 of
/// torchvision's bytes (see the module's notes).
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    assert_eq!(pixels.len(), 3 * width * height);
    if width == 0 || height == 0 {
        return;
    }
    let r = ksize / 2;
    scratch.kernel.clear();
    scratch
        .kernel
        .extend(kernel(ksize, sigma).iter().map(|&k| k as f64));
    let line = 3 * width;
    scratch.padded.resize(3 * (width + 2 * r), 0.0);
    scratch.rows.resize(line * height, 0.0);
    scratch.acc.resize(line, 0.0);
    let Scratch {
        kernel,
        padded,
        rows,
        acc,
    } = scratch;
    for (src, out) in pixels.chunks_exact(line).zip(rows.chunks_exact_mut(line)) {
        for (x, p) in padded.chunks_exact_mut(3).enumerate() {
            let s = 3 * reflect(x as isize - r as isize, width);
            for c in 0..3 {
                p[c] = src[s + c] as f64;
            }
        }
        row_pass(padded, kernel, out);
    }
    for (y, out) in pixels.chunks_exact_mut(line).enumerate() {
        acc.fill(0.0);
        for (t, &k) in kernel.iter().enumerate() {
            let sy = reflect(y as isize + t as isize - r as isize, height);
            accumulate(acc, &rows[sy * line..(sy + 1) * line], k);
        }
        round_to_u8(acc, out);
    }
}

crate::simd::multiversion! {
    /// One row: `out[i] = sum over taps t of kernel[t] * padded[i + 3t]`, taps in order.
    fn row_pass(padded: &[f64], kernel: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (t, &k) in kernel.iter().enumerate() {
            for (o, &p) in out.iter_mut().zip(&padded[3 * t..]) {
                *o += k * p;
            }
        }
    }
}

crate::simd::multiversion! {
    /// `acc[i] += k * line[i]`: one tap of the column pass over a whole line.
    fn accumulate(acc: &mut [f64], line: &[f64], k: f64) {
        for (a, &v) in acc.iter_mut().zip(line) {
            *a += k * v;
        }
    }
}

crate::simd::multiversion! {
    /// `torch.round` (half to even) and the cast back to u8 (the sums stay within 0..=255 up to
    /// float error; clamped).
    fn round_to_u8(acc: &[f64], out: &mut [u8]) {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = a.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole blur at every SIMD level against the portable code, over sizes around the vector
    /// widths, tiny images (folded reflection) and kernels from 1 to wider than the image.
    #[test]
    fn every_level_blurs_like_the_portable_code() {
        for (w, h) in [
            (224usize, 224usize),
            (96, 96),
            (5, 3),
            (17, 33),
            (40, 1),
            (1, 21),
            (2, 2),
            (100, 37),
        ] {
            let src: Vec<u8> = (0..3 * w * h).map(|i| ((i * 7919) >> 3) as u8).collect();
            for (ksize, sigma) in [
                (9usize, 0.1f64),
                (9, 1.0),
                (9, 2.0),
                (3, 0.7),
                (23, 1.9),
                (1, 1.0),
            ] {
                let run = || {
                    let mut px = src.clone();
                    gaussian_blur(&mut px, w, h, ksize, sigma, &mut Scratch::default());
                    px
                };
                let reference = crate::simd::at_level(crate::simd::SCALAR, run).unwrap();
                for (name, level) in crate::simd::LEVELS {
                    match crate::simd::at_level(level, run) {
                        Some(px) => {
                            assert!(px == reference, "{name}: {w}x{h} k {ksize} sigma {sigma}")
                        }
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
    }

    #[test]
    fn the_kernel_is_torchvisions() {
        // torchvision 0.29.2: _get_gaussian_kernel1d(9, 1.0, torch.float32, "cpu").tolist()
        let want = [
            0.0001338306174147874f32,
            0.004431861452758312,
            0.05399112403392792,
            0.2419714331626892,
            0.3989434540271759,
            0.2419714331626892,
            0.05399112403392792,
            0.004431861452758312,
            0.0001338306174147874,
        ];
        for (k, w) in kernel(9, 1.0).iter().zip(want) {
            assert!((k - w).abs() <= 2.0 * f32::EPSILON * w, "{k} vs {w}");
        }
        assert_eq!(kernel(1, 0.5), [1.0]);
    }

    #[test]
    fn flat_images_stay_flat_and_borders_reflect() {
        let mut px = vec![77u8; 3 * 20 * 9];
        gaussian_blur(&mut px, 20, 9, 9, 1.7, &mut Scratch::default());
        assert!(px.iter().all(|&v| v == 77));
        assert_eq!(
            (0..8).map(|i| reflect(i - 3, 4)).collect::<Vec<_>>(),
            [3, 2, 1, 0, 1, 2, 3, 2]
        );
        assert_eq!(reflect(-7, 2), 1);
        assert_eq!(reflect(5, 1), 0);
    }
}
