//! OpenCV's `cv2.GaussianBlur(img, (k, k), sigma)` on an 8-bit RGB image, bit-exact (SwAV's blur:
//! `RandomGaussianBlur` calls it with `(23, 23)` and a sigma in (0.1, 2)).
//!
//! For 8-bit images with the default border OpenCV takes its bit-exact path
//! (`GaussianBlurFixedPoint`, smooth.dispatch.cpp), integer arithmetic end to end:
//! - **The kernel**, from `getGaussianKernelBitExact`: `t_i = exp(-0.125 / sigma^2 * x_i^2)` at
//!   `x_i = 2i - (k-1)` (so `exp(-d^2 / (2 sigma^2))` at distance `d`), each half's values
//!   summed, doubled, plus 1 for the centre, and every value multiplied by the reciprocal of that
//!   sum. Every step is a softdouble (IEEE binary64, round to nearest even) operation, which are
//!   the same as native f64 operations in the same order, except `exp`, which is OpenCV's own
//!   (`f64_exp` in softfloat.cpp: a 64-entry table of `2^(j/64)` and a degree-5 polynomial); it is
//!   reproduced here operation for operation ([`softdouble_exp`]). (Over the tested cases libm's
//!   `exp` gives the same 8-bit kernels; OpenCV's is kept for the rounding boundaries.)
//! - **Fixed point**, from `getGaussianKernelFixedPoint_ED`: each half's values times 256 rounded
//!   with error diffusion (the rounding error carried into the next value), the centre taking what
//!   makes the kernel sum exactly 256 (`ufixedpoint16`, 8 fraction bits).
//! - **Passes**: rows first (`u8 * u16` products summed: at most 255 * 256, exact in u16), then
//!   columns (`u16 * u16` products summed in u32), rounded `(sum + 2^15) >> 16` and saturated to
//!   u8. Every sum is exact, so the order of its terms (OpenCV's SIMD paths; the columns-first
//!   order used here) cannot change a byte.
//! - **Borders**: `BORDER_REFLECT_101` (mirror without repeating the edge), folding again where
//!   the kernel is wider than the image (`borderInterpolate`); a side of 1 pixel repeats it (OpenCV
//!   sets that side's kernel to 1 tap, which gives the same bytes).
//!
//! Tested against opencv-python-headless in `python/tests/test_opencv_blur.py`.

use crate::blur::reflect_101 as reflect;

/// Per-worker buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct Scratch {
    /// The kernel's non-zero taps: (offset from the centre, weight in 1/256).
    taps: Vec<(isize, u16)>,
    /// The image before blurring (the output overwrites it row by row).
    source: Vec<u8>,
    /// One row after the column pass, in 1/256 units, padded by the widest tap each side.
    column: Vec<u16>,
    /// One output row's sums, in 1/65536 units.
    acc: Vec<u32>,
}

/// OpenCV's softfloat `exp` (`f64_exp`): `2^(x / ln 2)` split into a power of two, a table entry
/// `2^(j/64)` and a polynomial in the rest, with OpenCV's constants and operation order.
pub fn softdouble_exp(x: f64) -> f64 {
    const SCALE: i32 = 6;
    const MASK: i32 = (1 << SCALE) - 1;
    const EXP_TABLE: [u64; 64] = [
        0x3ff0000000000000,
        0x3ff02c9a3e778061,
        0x3ff059b0d3158574,
        0x3ff0874518759bc8,
        0x3ff0b5586cf9890f,
        0x3ff0e3ec32d3d1a2,
        0x3ff11301d0125b51,
        0x3ff1429aaea92de0,
        0x3ff172b83c7d517b,
        0x3ff1a35beb6fcb75,
        0x3ff1d4873168b9aa,
        0x3ff2063b88628cd6,
        0x3ff2387a6e756238,
        0x3ff26b4565e27cdd,
        0x3ff29e9df51fdee1,
        0x3ff2d285a6e4030b,
        0x3ff306fe0a31b715,
        0x3ff33c08b26416ff,
        0x3ff371a7373aa9cb,
        0x3ff3a7db34e59ff7,
        0x3ff3dea64c123422,
        0x3ff4160a21f72e2a,
        0x3ff44e086061892d,
        0x3ff486a2b5c13cd0,
        0x3ff4bfdad5362a27,
        0x3ff4f9b2769d2ca7,
        0x3ff5342b569d4f82,
        0x3ff56f4736b527da,
        0x3ff5ab07dd485429,
        0x3ff5e76f15ad2148,
        0x3ff6247eb03a5585,
        0x3ff6623882552225,
        0x3ff6a09e667f3bcd,
        0x3ff6dfb23c651a2f,
        0x3ff71f75e8ec5f74,
        0x3ff75feb564267c9,
        0x3ff7a11473eb0187,
        0x3ff7e2f336cf4e62,
        0x3ff82589994cce13,
        0x3ff868d99b4492ed,
        0x3ff8ace5422aa0db,
        0x3ff8f1ae99157736,
        0x3ff93737b0cdc5e5,
        0x3ff97d829fde4e50,
        0x3ff9c49182a3f090,
        0x3ffa0c667b5de565,
        0x3ffa5503b23e255d,
        0x3ffa9e6b5579fdbf,
        0x3ffae89f995ad3ad,
        0x3ffb33a2b84f15fb,
        0x3ffb7f76f2fb5e47,
        0x3ffbcc1e904bc1d2,
        0x3ffc199bdd85529c,
        0x3ffc67f12e57d14b,
        0x3ffcb720dcef9069,
        0x3ffd072d4a07897c,
        0x3ffd5818dcfba487,
        0x3ffda9e603db3285,
        0x3ffdfc97337b9b5f,
        0x3ffe502ee78b3ff6,
        0x3ffea4afa2a490da,
        0x3ffefa1bee615a27,
        0x3fff50765b6e4540,
        0x3fffa7c1819e90d8,
    ];
    let a0c = f64::from_bits(0x3f83ce0f3e46f431); // EXPPOLY_32F_A0
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return if x > 0.0 { x } else { 0.0 };
    }
    let a5 = 1.0 / a0c;
    let a4 = f64::from_bits(0x3fe62e42fefa39f1) / a0c;
    let a3 = f64::from_bits(0x3fcebfbdff82a45a) / a0c;
    let a2 = f64::from_bits(0x3fac6b08d81fec75) / a0c;
    let a1 = f64::from_bits(0x3f83b2a72b4f3cd3) / a0c;
    let a0 = f64::from_bits(0x3f55e7aa1566c2a4) / a0c;
    let prescale = f64::from_bits(0x3ff71547652b82fe) * (1 << SCALE) as f64;
    let postscale = 1.0 / (1 << SCALE) as f64;
    let max = (3000 * (1 << SCALE)) as f64;
    let biased_exp = ((x.to_bits() >> 52) & 0x7ff) as i32;
    let x0 = if biased_exp > 1023 + 10 {
        if x < 0.0 {
            -max
        } else {
            max
        }
    } else {
        x * prescale
    };
    let val0 = x0.round_ties_even() as i32;
    let t = ((val0 >> SCALE) + 1023).clamp(0, 2047);
    let buf = f64::from_bits((t as u64) << 52);
    let r = (x0 - x0.round_ties_even()) * postscale;
    let poly = ((((a0 * r + a1) * r + a2) * r + a3) * r + a4) * r + a5;
    buf * a0c * f64::from_bits(EXP_TABLE[(val0 & MASK) as usize]) * poly
}

/// `getGaussianKernelBitExact(n, sigma)` for `sigma > 0`: the kernel in binary64.
pub fn kernel_bit_exact(n: usize, sigma: f64) -> Vec<f64> {
    let half = (n - 1) / 2;
    let scale2 = -0.125 / (sigma * sigma);
    let values: Vec<f64> = (0..half)
        .map(|i| {
            let x = 2 * i as i64 + 1 - n as i64;
            softdouble_exp((x * x) as f64 * scale2)
        })
        .collect();
    let mut sum = 0.0;
    for &v in &values {
        sum += v;
    }
    sum *= 2.0;
    sum += 1.0;
    if n.is_multiple_of(2) {
        sum += 1.0;
    }
    let mul = 1.0 / sum;
    let mut kernel = vec![0.0; n];
    for (i, &v) in values.iter().enumerate() {
        kernel[i] = v * mul;
        kernel[n - 1 - i] = v * mul;
    }
    kernel[half] = mul;
    if n.is_multiple_of(2) {
        kernel[half + 1] = mul;
    }
    kernel
}

/// The `ufixedpoint16` kernel OpenCV blurs 8-bit images with (`getGaussianKernelFixedPoint_ED`,
/// 8 fraction bits): sums to exactly 256. `n` must be odd.
pub fn kernel_fixed_point(n: usize, sigma: f64) -> Vec<u16> {
    assert!(n % 2 == 1, "OpenCV's kernel size must be odd, not {n}");
    let exact = kernel_bit_exact(n, sigma);
    let mut fixed = vec![0u16; n];
    let (mut err, mut sum) = (0.0f64, 0i64);
    for i in 0..n / 2 {
        let adjusted = exact[i] * 256.0 + err;
        let v = adjusted.round_ties_even();
        err = adjusted - v;
        fixed[i] = v as u16;
        fixed[n - 1 - i] = v as u16;
        sum += v as i64;
    }
    fixed[n / 2] = (256 - 2 * sum) as u16;
    fixed
}

/// `cv2.GaussianBlur(pixels, (ksize, ksize), sigma)` (default border) on an interleaved RGB image
/// of `width x height`, in place. `ksize` must be odd.
///
/// Row by row: the column pass into one padded row, then the row pass, so the working set stays
/// in cache; taps of weight 0 (most of a 23-tap kernel at SwAV's sigmas) are skipped. Both leave
/// every sum unchanged (integer sums in any order), so the bytes are OpenCV's rows-first ones.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    assert_eq!(pixels.len(), 3 * width * height);
    if width == 0 || height == 0 || ksize <= 1 {
        return;
    }
    let r = (ksize / 2) as isize;
    let Scratch {
        taps,
        source,
        column,
        acc,
    } = scratch;
    taps.clear();
    for (t, &k) in kernel_fixed_point(ksize, sigma).iter().enumerate() {
        if k != 0 {
            taps.push((t as isize - r, k));
        }
    }
    let pad = taps
        .iter()
        .map(|&(d, _)| d.unsigned_abs())
        .max()
        .unwrap_or(0);
    let line = 3 * width;
    source.clear();
    source.extend_from_slice(pixels);
    column.resize(3 * (width + 2 * pad), 0);
    acc.resize(line, 0);
    for (y, out) in pixels.chunks_exact_mut(line).enumerate() {
        let middle = &mut column[3 * pad..3 * pad + line];
        middle.fill(0);
        for &(d, k) in taps.iter() {
            let sy = reflect(y as isize + d, height);
            column_tap(middle, &source[sy * line..(sy + 1) * line], k);
        }
        for x in (0..pad).chain(pad + width..width + 2 * pad) {
            let from = 3 * (pad + reflect(x as isize - pad as isize, width));
            column.copy_within(from..from + 3, 3 * x);
        }
        acc.fill(0);
        for &(d, k) in taps.iter() {
            let at = 3 * (pad as isize + d) as usize;
            row_tap(acc, &column[at..at + line], k as u32);
        }
        round_to_u8(acc, out);
    }
}

crate::simd::multiversion! {
    /// One tap of the column pass: `sums[i] += k * row[i]` (at most 255 * 256 in all: exact in
    /// u16).
    fn column_tap(sums: &mut [u16], row: &[u8], k: u16) {
        for (s, &p) in sums.iter_mut().zip(row) {
            *s = s.wrapping_add(k.wrapping_mul(p as u16));
        }
    }
}

crate::simd::multiversion! {
    /// One tap of the row pass: `acc[i] += k * column[i]` (at most 255 * 256 * 256 in all: exact
    /// in u32).
    fn row_tap(acc: &mut [u32], column: &[u16], k: u32) {
        for (a, &v) in acc.iter_mut().zip(column) {
            *a = a.wrapping_add(k.wrapping_mul(v as u32));
        }
    }
}

crate::simd::multiversion! {
    /// `ufixedpoint32` to u8: `(sum + 2^15) >> 16`, saturated.
    fn round_to_u8(acc: &[u32], out: &mut [u8]) {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = ((a + (1 << 15)) >> 16).min(255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opencvs_exp_is_close_to_the_true_one() {
        for i in -2000..=200 {
            let x = i as f64 * 0.0137;
            let (ours, libm) = (softdouble_exp(x), x.exp());
            assert!(
                ((ours - libm) / libm).abs() < 1e-14,
                "exp({x}): {ours} vs {libm}"
            );
        }
        assert_eq!(softdouble_exp(0.0), 1.0);
    }

    #[test]
    fn fixed_point_kernels_sum_to_256_and_are_symmetric() {
        for n in [1usize, 3, 5, 9, 23, 31] {
            for sigma in [0.1, 0.5, 1.0, 1.37, 2.0, 7.5] {
                let k = kernel_fixed_point(n, sigma);
                assert_eq!(k.iter().map(|&v| v as u32).sum::<u32>(), 256, "{n} {sigma}");
                assert!(k.iter().eq(k.iter().rev()), "{n} {sigma}: {k:?}");
            }
        }
        // A tiny sigma puts everything in the centre.
        assert_eq!(kernel_fixed_point(5, 0.1), [0, 0, 256, 0, 0]);
    }

    /// The whole blur at every SIMD level against the portable code, over sizes around the vector
    /// widths, tiny images (folded reflection) and kernels wider than the image.
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
            for (ksize, sigma) in [(23usize, 0.1f64), (23, 1.0), (23, 2.0), (3, 0.7), (9, 1.9)] {
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
    fn flat_images_stay_flat() {
        for v in [0u8, 77, 255] {
            let mut px = vec![v; 3 * 20 * 9];
            gaussian_blur(&mut px, 20, 9, 23, 1.7, &mut Scratch::default());
            assert!(px.iter().all(|&p| p == v));
        }
    }
}
