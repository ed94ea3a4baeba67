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
//! Here the same float32 kernel is applied separably in **float64** (columns, then rows) and the
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
    /// The image before blurring (the output overwrites it row by row).
    source: Vec<u8>,
    /// One row after the column pass, padded by `k / 2` pixels each side.
    column: Vec<f64>,
    /// One output row's sums.
    acc: Vec<f64>,
    /// Where each tap's source row starts, for the current output row.
    rows: Vec<usize>,
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
/// torchvision's bytes (see the module's notes). Row by row: the column pass into one padded row,
/// then the row pass, so the working set stays in cache.
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
    let Scratch {
        kernel,
        source,
        column,
        acc,
        rows,
    } = scratch;
    kernel.clear();
    kernel.extend(self::kernel(ksize, sigma).iter().map(|&k| k as f64));
    let line = 3 * width;
    source.clear();
    source.extend_from_slice(pixels);
    column.resize(3 * (width + 2 * r), 0.0);
    acc.resize(line, 0.0);
    rows.resize(ksize, 0);
    for (y, out) in pixels.chunks_exact_mut(line).enumerate() {
        for (t, row) in rows.iter_mut().enumerate() {
            *row = line * reflect(y as isize + t as isize - r as isize, height);
        }
        column_pass(&mut column[3 * r..3 * r + line], source, rows, kernel);
        for x in (0..r).chain(r + width..width + 2 * r) {
            let from = 3 * (r + reflect(x as isize - r as isize, width));
            column.copy_within(from..from + 3, 3 * x);
        }
        row_pass(acc, column, kernel);
        round_to_u8(acc, out);
    }
}

/// Elements per block of the passes: each block's sums stay in registers through every tap.
const BLOCK: usize = 16;

crate::simd::multiversion! {
    /// The column pass for one output row: `out[i] = sum over taps t of kernel[t] *
    /// source[rows[t] + i]`, taps in order, [`BLOCK`] elements at a time.
    fn column_pass(out: &mut [f64], source: &[u8], rows: &[usize], kernel: &[f64]) {
        let n = out.len();
        let mut i = 0;
        while i + BLOCK <= n {
            let mut sums = [0.0f64; BLOCK];
            for (&row, &k) in rows.iter().zip(kernel) {
                let px: &[u8; BLOCK] = source[row + i..row + i + BLOCK].try_into().unwrap();
                for (s, &p) in sums.iter_mut().zip(px) {
                    *s += k * p as f64;
                }
            }
            out[i..i + BLOCK].copy_from_slice(&sums);
            i += BLOCK;
        }
        for (j, o) in out.iter_mut().enumerate().skip(i) {
            let mut s = 0.0;
            for (&row, &k) in rows.iter().zip(kernel) {
                s += k * source[row + j] as f64;
            }
            *o = s;
        }
    }
}

crate::simd::multiversion! {
    /// The row pass: `out[i] = sum over taps t of kernel[t] * column[i + 3t]`, taps in order,
    /// [`BLOCK`] elements at a time.
    fn row_pass(out: &mut [f64], column: &[f64], kernel: &[f64]) {
        let n = out.len();
        let mut i = 0;
        while i + BLOCK <= n {
            let mut sums = [0.0f64; BLOCK];
            for (t, &k) in kernel.iter().enumerate() {
                let v: &[f64; BLOCK] = column[i + 3 * t..i + 3 * t + BLOCK].try_into().unwrap();
                for (s, &c) in sums.iter_mut().zip(v) {
                    *s += k * c;
                }
            }
            out[i..i + BLOCK].copy_from_slice(&sums);
            i += BLOCK;
        }
        for (j, o) in out.iter_mut().enumerate().skip(i) {
            let mut s = 0.0;
            for (t, &k) in kernel.iter().enumerate() {
                s += k * column[j + 3 * t];
            }
            *o = s;
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
    #[allow(clippy::excessive_precision)]
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
