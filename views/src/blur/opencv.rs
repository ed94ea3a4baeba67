//! OpenCV's `cv2.GaussianBlur(img, (k, k), sigma)` on an 8-bit RGB image, bit-exact (SwAV's blur:
//! `cv2.GaussianBlur(np.asarray(img), (23, 23), sigma)`).
//!
//! For 8-bit images with the default border OpenCV takes neither IPP nor its float filter but its
//! own bit-exact fixed-point path (`GaussianBlurFixedPoint` in `smooth.simd.hpp`; checked against
//! the opencv-python-headless wheels by `python/tests/test_opencv_blur.py`):
//!
//! * **Kernel** (`getGaussianKernelBitExact`), in OpenCV's software double (`softdouble`: IEEE
//!   add/mul/div, here native `f64` in the same order, and its own table-and-polynomial `exp`,
//!   [`soft_exp`]): `t_i = exp(x_i^2 * (-0.125 / sigma^2))` for `x_i = 1 - k, 3 - k, ..., -2`
//!   (twice the distance from the centre), `sum = 2 * (t_0 + ... ) + 1`, weights `t_i / sum`
//!   and `1 / sum` at the centre.
//! * **Fixed point** (`getGaussianKernelFixedPoint_ED`): each outer weight times 256 plus the
//!   error carried from the previous one, rounded half to even (the rounding error diffused to
//!   the next weight), mirrored; the centre takes what is left of 256, so the weights sum to
//!   exactly 1.0 in OpenCV's `ufixedpoint16` (8 fraction bits).
//! * **Passes**: rows first, `H = sum kx_i * p_i` in 16 bits (8 fraction bits: exact, at most
//!   `256 * 255`), then columns, `V = sum ky_j * H_j` in 32 bits (16 fraction bits: exact), and
//!   `(V + 2^15) >> 16`. No intermediate rounding, so the result is the exact 2-D sum rounded
//!   once: the order of passes and of the terms is free (OpenCV's SIMD paths, its 3- and 5-tap
//!   special cases and its row ring buffer all give this same sum).
//! * **Borders**: `BORDER_REFLECT_101` (`gfedcb|abcdefgh|gfedcba`), OpenCV's `borderInterpolate`,
//!   reflecting again and again where the kernel is wider than the image; a 1-pixel-wide (or
//!   -high) image is blurred with a 1-tap kernel along that axis (both: a copy).
//!
//! Here, with the same sums: outer taps of weight 0 are dropped (SwAV's 23 taps are 7 at sigma 1,
//! 13 at sigma 2, and 1, a copy, below sigma 0.283). The row pass reads a copy of each row padded
//! with its reflected borders, so it is a uniform loop over a contiguous line folding the
//! symmetric taps (`k_d * (a + b)`, 16 bits), into a whole-image buffer; the column pass runs
//! along the line index like [`super::pillow`]'s passes, in 32 bits, as 16-bit `madd`s at AVX2
//! and AVX-512 (the row sums stored minus 2^15 so that they fit an i16), as widening
//! multiply-accumulates with NEON.

use super::reflect_101;

/// `exp` of OpenCV's `softdouble` (`softfloat.cpp`, `f64_exp`): `2^(n/64)` from a 64-entry table
/// times a degree-5 polynomial of the remainder, each step rounded as a double.
pub fn soft_exp(x: f64) -> f64 {
    const EXP_TAB: [u64; 64] = [
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
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return if x > 0.0 { x } else { 0.0 };
    }
    let f = f64::from_bits;
    let a0 = f(0x3f83ce0f3e46f431);
    // The polynomial's coefficients, each divided by `a0` (which multiplies the result back).
    let p5 = 1.0 / a0;
    let p4 = f(0x3fe62e42fefa39f1) / a0;
    let p3 = f(0x3fcebfbdff82a45a) / a0;
    let p2 = f(0x3fac6b08d81fec75) / a0;
    let p1 = f(0x3f83b2a72b4f3cd3) / a0;
    let p0 = f(0x3f55e7aa1566c2a4) / a0;
    // 64 / ln 2 (exact: a power of two times 1 / ln 2), its inverse's 1/64, and the clamp.
    let prescale = f(0x3ff71547652b82fe) * 64.0;
    let max_val = 3000.0 * 64.0;
    let biased_exp = (x.to_bits() >> 52) & 0x7ff;
    let mut x0 = if biased_exp > 1023 + 10 {
        if x < 0.0 {
            -max_val
        } else {
            max_val
        }
    } else {
        x * prescale
    };
    let n = x0.round_ties_even() as i32;
    let t = ((n >> 6) + 1023).clamp(0, 2047) as u64;
    let scale = f(t << 52);
    x0 = (x0 - x0.round_ties_even()) * (1.0 / 64.0);
    let poly = ((((p0 * x0 + p1) * x0 + p2) * x0 + p3) * x0 + p4) * x0 + p5;
    scale * a0 * f(EXP_TAB[(n & 63) as usize]) * poly
}

/// OpenCV's `getGaussianKernel(n, sigma, CV_64F)` (`getGaussianKernelBitExact`), into `out`:
/// `n` weights summing to about 1. `sigma <= 0` takes OpenCV's binomial tables for `n <= 9` and
/// `sigma = 0.3 * ((n - 1) / 2 - 1) + 0.8` otherwise.
pub fn gaussian_kernel(n: usize, sigma: f64, out: &mut Vec<f64>) {
    assert!(
        n % 2 == 1,
        "OpenCV's Gaussian kernels have an odd size, not {n}"
    );
    out.clear();
    if sigma <= 0.0 {
        let table: &[f64] = match n {
            1 => &[1.0],
            3 => &[0.25, 0.5, 0.25],
            5 => &[0.0625, 0.25, 0.375, 0.25, 0.0625],
            7 => &[
                0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
            ],
            9 => &[
                4.0 / 256.0,
                13.0 / 256.0,
                30.0 / 256.0,
                51.0 / 256.0,
                60.0 / 256.0,
                51.0 / 256.0,
                30.0 / 256.0,
                13.0 / 256.0,
                4.0 / 256.0,
            ],
            _ => &[],
        };
        if !table.is_empty() {
            out.extend_from_slice(table);
            return;
        }
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        // softdouble's fused `mulAdd(n, 0.15, 0.35)`.
        (n as f64).mul_add(
            f64::from_bits(0x3fc3333333333333),
            f64::from_bits(0x3fd6666666666666),
        )
    };
    let scale = -0.125 / (sigma * sigma);
    let half = n / 2;
    out.resize(n, 0.0);
    let mut sum = 0.0;
    for (i, v) in out[..half].iter_mut().enumerate() {
        let x = 2 * i as i64 + 1 - n as i64;
        *v = soft_exp((x * x) as f64 * scale);
        sum += *v;
    }
    sum = sum * 2.0 + 1.0;
    let inv = 1.0 / sum;
    for i in 0..half {
        let t = out[i] * inv;
        out[i] = t;
        out[n - 1 - i] = t;
    }
    out[half] = inv;
}

/// OpenCV's 8-bit fixed-point kernel for `n` taps (`createGaussianKernels` into `ufixedpoint16`,
/// `getGaussianKernelFixedPoint_ED`), by distance from the centre: `out[d]` is the weight of the
/// taps `d` away, in 1/256ths; `out[0] + 2 * (out[1] + ...) == 256`. `float` is a work buffer.
///
/// The centre weight is in `0..=256` (asserted): the rounded outer weights add up to within 1/2
/// of their exact sum (the diffused error), which is below 1 minus the exact centre.
pub fn fixed_kernel(n: usize, sigma: f64, float: &mut Vec<f64>, out: &mut Vec<u16>) {
    gaussian_kernel(n, sigma, float);
    let half = n / 2;
    out.clear();
    out.resize(half + 1, 0);
    let mut err = 0.0f64;
    let mut sum = 0i64;
    for i in 0..half {
        let adjusted = float[i] * 256.0 + err;
        let v = adjusted.round_ties_even();
        err = adjusted - v;
        out[half - i] = v as u16;
        sum += v as i64;
    }
    let centre = 256 - 2 * sum;
    assert!(
        (0..=256).contains(&centre),
        "OpenCV's fixed-point kernel of {n} taps for sigma {sigma} has centre weight {centre}"
    );
    out[0] = centre as u16;
}

/// The size OpenCV picks for `ksize = 0` on an 8-bit image: `cvRound(sigma * 6 + 1) | 1`.
pub fn auto_ksize(sigma: f64) -> usize {
    ((sigma * 6.0 + 1.0).round_ties_even() as i64 | 1).max(1) as usize
}

/// Per-worker buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct Scratch {
    float: Vec<f64>,
    /// Row and column kernels by distance from the centre ([`fixed_kernel`]).
    kx: Vec<u16>,
    ky: Vec<u16>,
    /// `ky` as the column pass's `madd` weight pairs: `(k_0, 0)`, then `(k_d, k_d)`.
    pairs: Vec<i32>,
    /// One row with its reflected borders.
    padded: Vec<u8>,
    /// The row pass's output, the whole image (16 bits, 8 fraction bits).
    rows: Vec<u16>,
    /// Per column-pass output row: the start of the rows `d` above and below in `rows`.
    above: Vec<usize>,
    below: Vec<usize>,
}

/// `cv2.GaussianBlur(pixels, (ksize, ksize), sigma)` (default border) on an interleaved RGB image
/// of `width x height`, in place. `ksize` is odd, or 0 for OpenCV's size for `sigma`.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    assert_eq!(pixels.len(), 3 * width * height);
    let ksize = if ksize == 0 { auto_ksize(sigma) } else { ksize };
    assert!(
        ksize % 2 == 1,
        "cv2.GaussianBlur needs an odd kernel size, not {ksize}"
    );
    // OpenCV blurs a 1-pixel dimension with a 1-tap kernel (and copies a 1x1 image).
    let kw = if width == 1 { 1 } else { ksize };
    let kh = if height == 1 { 1 } else { ksize };
    if width == 0 || height == 0 || (kw == 1 && kh == 1) {
        return;
    }
    let s = scratch;
    fixed_kernel(kw, sigma, &mut s.float, &mut s.kx);
    fixed_kernel(kh, sigma, &mut s.float, &mut s.ky);
    // Outer taps of weight 0 add nothing (wherever the border sends them).
    for k in [&mut s.kx, &mut s.ky] {
        while k.len() > 1 && k[k.len() - 1] == 0 {
            k.pop();
        }
    }
    if s.kx.len() == 1 && s.ky.len() == 1 {
        return;
    }
    let line = 3 * width;
    let (rx, ry) = (s.kx.len() - 1, s.ky.len() - 1);
    s.padded.resize(line + 6 * rx, 0);
    s.rows.resize(line * height, 0);
    s.above.resize(ry + 1, 0);
    s.below.resize(ry + 1, 0);
    s.pairs.clear();
    s.pairs.push(s.ky[0] as i32);
    s.pairs
        .extend(s.ky[1..].iter().map(|&k| k as i32 * 0x10001));
    blur_passes(
        pixels,
        width,
        height,
        &s.kx,
        &s.ky,
        &s.pairs,
        &mut s.padded,
        &mut s.rows,
        &mut s.above,
        &mut s.below,
    );
}

crate::simd::multiversion! {
    /// The row pass into `rows`, then the column pass back into `pixels`.
    fn blur_passes(
        pixels: &mut [u8],
        width: usize,
        height: usize,
        kx: &[u16],
        ky: &[u16],
        pairs: &[i32],
        padded: &mut [u8],
        rows: &mut [u16],
        above: &mut [usize],
        below: &mut [usize],
    ) {
        let line = 3 * width;
        let (rx, ry) = (kx.len() - 1, ky.len() - 1);
        for (src, out) in pixels.chunks_exact(line).zip(rows.chunks_exact_mut(line)) {
            pad_row(src, width, rx, padded);
            row_pass(padded, kx, out);
        }
        for (y, out) in pixels.chunks_exact_mut(line).enumerate() {
            for d in 0..=ry {
                above[d] = line * reflect_101(y as isize - d as isize, height);
                below[d] = line * reflect_101((y + d) as isize, height);
            }
            column_pass(rows, line, ky, pairs, above, below, out);
        }
    }
}

/// `src` (one row of `width` pixels) into `padded` with `r` reflected pixels on either side.
#[inline(always)]
fn pad_row(src: &[u8], width: usize, r: usize, padded: &mut [u8]) {
    let line = 3 * width;
    padded[3 * r..3 * r + line].copy_from_slice(src);
    for i in 1..=r {
        let left = 3 * reflect_101(-(i as isize), width);
        padded[3 * (r - i)..3 * (r - i) + 3].copy_from_slice(&src[left..left + 3]);
        let right = 3 * reflect_101((width - 1 + i) as isize, width);
        let at = 3 * (r + width - 1 + i);
        padded[at..at + 3].copy_from_slice(&src[right..right + 3]);
    }
}

/// The row pass's sums are stored minus 2^15 (top bit flipped: `H ^ 0x8000` is `H - 32768` as an
/// i16), the form the column pass's signed 16-bit multiply-adds take.
const BIAS: u16 = 0x8000;

/// Bytes per step of the row pass (u16 sums) and of the portable column pass (u32 sums): one
/// array of sums that stays in registers across the taps.
const ROW_STEP: usize = 64;
const COLUMN_STEP: usize = 32;

/// One row: `out[e] = sum_d k[d] * (padded[c + e - 3d] + padded[c + e + 3d])` (the centre once),
/// `c` the offset of the first pixel in `padded`, stored `^ BIAS`. Every sum fits 16 bits (the
/// weights sum to 256, so at most `256 * 255`).
#[inline(always)]
fn row_pass(padded: &[u8], k: &[u16], out: &mut [u16]) {
    let n = out.len();
    let r = k.len() - 1;
    let c = 3 * r;
    if n < ROW_STEP {
        for (e, o) in out.iter_mut().enumerate() {
            let mut acc = k[0].wrapping_mul(padded[c + e] as u16);
            for d in 1..=r {
                let pair = padded[c + e - 3 * d] as u16 + padded[c + e + 3 * d] as u16;
                acc = acc.wrapping_add(k[d].wrapping_mul(pair));
            }
            *o = acc ^ BIAS;
        }
        return;
    }
    let mut e = 0;
    loop {
        // The last step overlaps the one before (the same values written twice).
        let at = e.min(n - ROW_STEP);
        let mut acc = [0u16; ROW_STEP];
        let mid: &[u8; ROW_STEP] = padded[c + at..][..ROW_STEP].try_into().unwrap();
        for t in 0..ROW_STEP {
            acc[t] = k[0].wrapping_mul(mid[t] as u16);
        }
        for d in 1..=r {
            let a: &[u8; ROW_STEP] = padded[c + at - 3 * d..][..ROW_STEP].try_into().unwrap();
            let b: &[u8; ROW_STEP] = padded[c + at + 3 * d..][..ROW_STEP].try_into().unwrap();
            for t in 0..ROW_STEP {
                acc[t] = acc[t].wrapping_add(k[d].wrapping_mul(a[t] as u16 + b[t] as u16));
            }
        }
        for (o, &a) in out[at..at + ROW_STEP].iter_mut().zip(&acc) {
            *o = a ^ BIAS;
        }
        if at + ROW_STEP == n {
            break;
        }
        e += ROW_STEP;
    }
}

/// [`column_lines`], with 16-bit multiply-adds at the AVX2 and AVX-512 levels where a line holds
/// at least one step of them.
#[inline(always)]
fn column_pass(
    rows: &[u16],
    line: usize,
    k: &[u16],
    pairs: &[i32],
    above: &[usize],
    below: &[usize],
    out: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if line >= MADD_STEP {
        let level = crate::simd::level();
        if level >= crate::simd::AVX512BW {
            // SAFETY: the CPU supports AVX-512 F/BW (`level` checked it).
            unsafe { column_madd_avx512(rows, line, pairs, above, below, out) };
            return;
        }
        if level == crate::simd::AVX2 {
            // SAFETY: the CPU supports AVX2 (`level` checked it).
            unsafe { column_madd_avx2(rows, line, pairs, above, below, out) };
            return;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pairs; // the x86 `madd` paths' weights
    #[cfg(target_arch = "aarch64")]
    if line >= NEON_STEP && crate::simd::level() >= crate::simd::NEON {
        // SAFETY: the CPU supports NEON (`level` checked it).
        unsafe { column_neon(rows, line, k, above, below, out) };
        return;
    }
    column_lines(rows, line, k, above, below, out);
}

/// One output row of the column pass: `out[e] = (sum_d k[d] * (H[above[d] + e] + H[below[d] +
/// e]) + 2^15) >> 16` (the centre once), `H` the unbiased `rows`.
#[inline(always)]
fn column_lines(
    rows: &[u16],
    line: usize,
    k: &[u16],
    above: &[usize],
    below: &[usize],
    out: &mut [u8],
) {
    let r = k.len() - 1;
    let round = |v: u32| ((v + (1 << 15)) >> 16) as u8;
    let h = |v: u16| (v ^ BIAS) as u32;
    if line < COLUMN_STEP {
        for (e, o) in out.iter_mut().enumerate() {
            let mut acc = k[0] as u32 * h(rows[above[0] + e]);
            for d in 1..=r {
                acc += k[d] as u32 * (h(rows[above[d] + e]) + h(rows[below[d] + e]));
            }
            *o = round(acc);
        }
        return;
    }
    let mut e = 0;
    loop {
        let at = e.min(line - COLUMN_STEP);
        let mut acc = [0u32; COLUMN_STEP];
        let mid: &[u16; COLUMN_STEP] = rows[above[0] + at..][..COLUMN_STEP].try_into().unwrap();
        for t in 0..COLUMN_STEP {
            acc[t] = k[0] as u32 * h(mid[t]);
        }
        for d in 1..=r {
            let a: &[u16; COLUMN_STEP] = rows[above[d] + at..][..COLUMN_STEP].try_into().unwrap();
            let b: &[u16; COLUMN_STEP] = rows[below[d] + at..][..COLUMN_STEP].try_into().unwrap();
            for t in 0..COLUMN_STEP {
                // Two 16 x 16-bit products rather than one of the pair's 17-bit sum: SSE2 has
                // the former (`pmullw` + `pmulhuw`), not 32-bit multiplies.
                acc[t] += k[d] as u32 * h(a[t]) + k[d] as u32 * h(b[t]);
            }
        }
        for (o, &a) in out[at..at + COLUMN_STEP].iter_mut().zip(&acc) {
            *o = round(a);
        }
        if at + COLUMN_STEP == line {
            break;
        }
        e += COLUMN_STEP;
    }
}

/// Bytes per step of the multiply-add column passes (the AVX2 one does two registers of 16).
#[cfg(target_arch = "x86_64")]
const MADD_STEP: usize = 32;

/// The sum the column pass rounds, from its multiply-adds: each tap gave `k * (H - 2^15)` and the
/// weights sum to 256, so `S = madds + 2^23`; plus the rounding `2^15`.
#[cfg(target_arch = "x86_64")]
const MADD_ROUND: i32 = (1 << 23) + (1 << 15);

/// [`column_lines`] as `madd`s: the biased 16-bit rows interleaved in pairs (the rows `d` above
/// and below, weights `(k_d, k_d)`; the centre row with itself, weights `(k_0, 0)`), each
/// multiply-add giving 32-bit sums of two taps. In-lane unpacks, undone by the in-lane pack.
/// 32 bytes per step, the last step overlapping the one before.
///
/// # Safety
/// The CPU must support AVX-512 F/BW; `line >= MADD_STEP`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn column_madd_avx512(
    rows: &[u16],
    line: usize,
    pairs: &[i32],
    above: &[usize],
    below: &[usize],
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    let r = pairs.len() - 1;
    assert!(line >= MADD_STEP && out.len() >= line && above.len() > r && below.len() > r);
    assert!(above[..=r]
        .iter()
        .chain(&below[..=r])
        .all(|&o| o + line <= rows.len()));
    let p = rows.as_ptr();
    // SAFETY (every load): `o + at + 32 <= o + line <= rows.len()` (asserted above).
    let load = |o: usize, at: usize| _mm512_loadu_si512(p.add(o + at) as *const _);
    let centre = _mm512_set1_epi32(pairs[0]);
    let round = _mm512_set1_epi32(MADD_ROUND);
    let mut e = 0;
    loop {
        let at = e.min(line - MADD_STEP);
        let c = load(above[0], at);
        let mut lo = _mm512_madd_epi16(_mm512_unpacklo_epi16(c, c), centre);
        let mut hi = _mm512_madd_epi16(_mm512_unpackhi_epi16(c, c), centre);
        for ((&w, &up), &down) in pairs[1..].iter().zip(&above[1..=r]).zip(&below[1..=r]) {
            let w = _mm512_set1_epi32(w);
            let (a, b) = (load(up, at), load(down, at));
            lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a, b), w));
            hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a, b), w));
        }
        let lo = _mm512_srli_epi32::<16>(_mm512_add_epi32(lo, round));
        let hi = _mm512_srli_epi32::<16>(_mm512_add_epi32(hi, round));
        let bytes = _mm512_cvtepi16_epi8(_mm512_packus_epi32(lo, hi));
        // SAFETY: `at + 32 <= line <= out.len()`.
        _mm256_storeu_si256(out.as_mut_ptr().add(at) as *mut _, bytes);
        if at + MADD_STEP == line {
            break;
        }
        e += MADD_STEP;
    }
}

/// [`column_madd_avx512`] with AVX2: two registers of 16 per step, packed to bytes together and
/// put back in order with one lane permute.
///
/// # Safety
/// The CPU must support AVX2; `line >= MADD_STEP`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn column_madd_avx2(
    rows: &[u16],
    line: usize,
    pairs: &[i32],
    above: &[usize],
    below: &[usize],
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    let r = pairs.len() - 1;
    assert!(line >= MADD_STEP && out.len() >= line && above.len() > r && below.len() > r);
    assert!(above[..=r]
        .iter()
        .chain(&below[..=r])
        .all(|&o| o + line <= rows.len()));
    let p = rows.as_ptr();
    // SAFETY (every load): `o + at + 32 <= o + line <= rows.len()` (asserted above).
    let load = |o: usize, at: usize| -> [__m256i; 2] {
        let q = p.add(o + at) as *const __m256i;
        [_mm256_loadu_si256(q), _mm256_loadu_si256(q.add(1))]
    };
    let centre = _mm256_set1_epi32(pairs[0]);
    let round = _mm256_set1_epi32(MADD_ROUND);
    let finish = |v: __m256i| _mm256_srli_epi32::<16>(_mm256_add_epi32(v, round));
    let mut e = 0;
    loop {
        let at = e.min(line - MADD_STEP);
        let c = load(above[0], at);
        let mut lo = [0, 1].map(|i| _mm256_madd_epi16(_mm256_unpacklo_epi16(c[i], c[i]), centre));
        let mut hi = [0, 1].map(|i| _mm256_madd_epi16(_mm256_unpackhi_epi16(c[i], c[i]), centre));
        for ((&w, &up), &down) in pairs[1..].iter().zip(&above[1..=r]).zip(&below[1..=r]) {
            let w = _mm256_set1_epi32(w);
            let (a, b) = (load(up, at), load(down, at));
            for i in 0..2 {
                let (l, h) = (
                    _mm256_unpacklo_epi16(a[i], b[i]),
                    _mm256_unpackhi_epi16(a[i], b[i]),
                );
                lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(l, w));
                hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(h, w));
            }
        }
        let words = [0, 1].map(|i| _mm256_packus_epi32(finish(lo[i]), finish(hi[i])));
        let bytes = _mm256_permute4x64_epi64::<0xd8>(_mm256_packus_epi16(words[0], words[1]));
        // SAFETY: `at + 32 <= line <= out.len()`.
        _mm256_storeu_si256(out.as_mut_ptr().add(at) as *mut _, bytes);
        if at + MADD_STEP == line {
            break;
        }
        e += MADD_STEP;
    }
}

/// Bytes per step of the NEON column pass (two registers of eight 16-bit sums).
#[cfg(target_arch = "aarch64")]
const NEON_STEP: usize = 16;

/// [`column_lines`] with NEON: the rows unbiased in 16-bit lanes, each tap two widening
/// multiply-accumulates (`umlal`, `umlal2`) into 32-bit sums, rounded by a rounding narrowing
/// shift (`rshrn`: `(S + 2^15) >> 16`) and narrowed to bytes. 16 bytes per step, the last step
/// overlapping the one before.
///
/// # Safety
/// The CPU must support NEON; `line >= NEON_STEP`.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn column_neon(
    rows: &[u16],
    line: usize,
    k: &[u16],
    above: &[usize],
    below: &[usize],
    out: &mut [u8],
) {
    use std::arch::aarch64::*;
    let r = k.len() - 1;
    assert!(line >= NEON_STEP && out.len() >= line && above.len() > r && below.len() > r);
    assert!(above[..=r]
        .iter()
        .chain(&below[..=r])
        .all(|&o| o + line <= rows.len()));
    let p = rows.as_ptr();
    let bias = vdupq_n_u16(BIAS);
    // SAFETY (every load): `o + at + 16 <= o + line <= rows.len()` (asserted above).
    let load = |o: usize, at: usize| -> [uint16x8_t; 2] {
        let q = p.add(o + at);
        [
            veorq_u16(vld1q_u16(q), bias),
            veorq_u16(vld1q_u16(q.add(8)), bias),
        ]
    };
    let mut e = 0;
    loop {
        let at = e.min(line - NEON_STEP);
        let c = load(above[0], at);
        let mut acc = [
            vmull_n_u16(vget_low_u16(c[0]), k[0]),
            vmull_high_n_u16(c[0], k[0]),
            vmull_n_u16(vget_low_u16(c[1]), k[0]),
            vmull_high_n_u16(c[1], k[0]),
        ];
        for d in 1..=r {
            let (a, b) = (load(above[d], at), load(below[d], at));
            for i in 0..2 {
                for v in [a[i], b[i]] {
                    acc[2 * i] = vmlal_n_u16(acc[2 * i], vget_low_u16(v), k[d]);
                    acc[2 * i + 1] = vmlal_high_n_u16(acc[2 * i + 1], v, k[d]);
                }
            }
        }
        let words = [0, 1].map(|i| {
            vcombine_u16(
                vrshrn_n_u32::<16>(acc[2 * i]),
                vrshrn_n_u32::<16>(acc[2 * i + 1]),
            )
        });
        let bytes = vcombine_u8(vqmovn_u16(words[0]), vqmovn_u16(words[1]));
        // SAFETY: `at + 16 <= line <= out.len()`.
        vst1q_u8(out.as_mut_ptr().add(at), bytes);
        if at + NEON_STEP == line {
            break;
        }
        e += NEON_STEP;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition: every tap through `borderInterpolate`, 64-bit sums, one rounding.
    fn reference(src: &[u8], width: usize, height: usize, ksize: usize, sigma: f64) -> Vec<u8> {
        let mut float = Vec::new();
        let full = |n: usize, float: &mut Vec<f64>| -> Vec<i64> {
            let mut half = Vec::new();
            fixed_kernel(n, sigma, float, &mut half);
            let r = n / 2;
            (0..n).map(|i| half[i.abs_diff(r)] as i64).collect()
        };
        let kx = full(if width == 1 { 1 } else { ksize }, &mut float);
        let ky = full(if height == 1 { 1 } else { ksize }, &mut float);
        let (rx, ry) = ((kx.len() / 2) as isize, (ky.len() / 2) as isize);
        let mut h = vec![0i64; src.len()];
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    h[3 * (y * width + x) + c] = (0..kx.len())
                        .map(|i| {
                            let sx = reflect_101(x as isize + i as isize - rx, width);
                            kx[i] * src[3 * (y * width + sx) + c] as i64
                        })
                        .sum();
                }
            }
        }
        let mut out = vec![0u8; src.len()];
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    let v: i64 = (0..ky.len())
                        .map(|j| {
                            let sy = reflect_101(y as isize + j as isize - ry, height);
                            ky[j] * h[3 * (sy * width + x) + c]
                        })
                        .sum();
                    out[3 * (y * width + x) + c] = ((v + (1 << 15)) >> 16) as u8;
                }
            }
        }
        out
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn reflect_101_is_opencvs_border_interpolate() {
        let five: Vec<usize> = (-6..11).map(|p| reflect_101(p, 5)).collect();
        assert_eq!(five, [2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2]);
        assert!((-30..30).all(|p| reflect_101(p, 1) == 0));
        let two: Vec<usize> = (-3..5).map(|p| reflect_101(p, 2)).collect();
        assert_eq!(two, [1, 0, 1, 0, 1, 0, 1, 0]);
    }

    /// Bits of `cv2.getGaussianKernel(n, sigma, cv2.CV_64F)` (opencv-python-headless 4.14), from
    /// the outer tap to the centre.
    #[test]
    fn float_kernel_is_opencvs() {
        let cases: [(usize, f64, &[u64]); 6] = [
            (
                5,
                1.0,
                &[0x3fabe5f0dc491a0f, 0x3fcf41fd54c58786, 0x3fd9c486742831f7],
            ),
            (
                23,
                1.0,
                &[
                    0x3a64fbd84fd6824e,
                    0x3b574168449e696a,
                    0x3c32f67c5cc6d388,
                    0x3cf6c0df37fe6575,
                    0x3da41663f1501266,
                    0x3e3a1880f978d656,
                    0x3eb8f169628bc904,
                    0x3f218a98e12d9851,
                    0x3f7227213e364cee,
                    0x3faba4b4346cf84a,
                    0x3fcef8e58b6b54d1,
                    0x3fd988453189773c,
                ],
            ),
            (
                23,
                0.1,
                &[
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0x175b9cb63629a9f9,
                    0x2de6061812054d75,
                    0x3b6d257d547e0869,
                    0x3ff0000000000000,
                ],
            ),
            (
                23,
                1.9,
                &[
                    0x3e47c11fc93c2b0a,
                    0x3e8b37060d8416b4,
                    0x3ec7a2b9f6e5215f,
                    0x3eff1efed11bcf6a,
                    0x3f2f1009a9690bf3,
                    0x3f5780b5e6e1d2b3,
                    0x3f7af5de18544e88,
                    0x3f9771a761d4d642,
                    0x3faee849b0fe22d7,
                    0x3fbee35546e0e7fd,
                    0x3fc76662d2e34f1f,
                    0x3fcae048d8aab144,
                ],
            ),
            (
                9,
                0.0,
                &[
                    0x3f90000000000000,
                    0x3faa000000000000,
                    0x3fbe000000000000,
                    0x3fc9800000000000,
                    0x3fce000000000000,
                ],
            ),
            (
                11,
                0.0,
                &[
                    0x3f820c2564ee6772,
                    0x3f9bcb86a082c301,
                    0x3fb0ab50979aaf94,
                    0x3fbf2464c62edaf4,
                    0x3fc6a7e1d504a91d,
                    0x3fc9ac20a36ea596,
                ],
            ),
        ];
        let mut k = Vec::new();
        for (n, sigma, bits) in cases {
            gaussian_kernel(n, sigma, &mut k);
            let got: Vec<u64> = k[..=n / 2].iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, bits, "n {n} sigma {sigma}");
            assert!((0..n).all(|i| k[i] == k[n - 1 - i]));
        }
    }

    /// Fixed-point kernels (centre first) whose blurs match `cv2.GaussianBlur` byte for byte; the
    /// last one shows the error diffusion (not monotonic).
    #[test]
    fn fixed_kernels_are_opencvs() {
        let cases: [(usize, f64, &[u16]); 6] = [
            (23, 1.0, &[102, 62, 14, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            (23, 0.1, &[256, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (23, 1.9, &[54, 47, 31, 15, 6, 2, 0, 0, 0, 0, 0, 0]),
            (23, 2.0, &[52, 45, 31, 16, 7, 2, 1, 0, 0, 0, 0, 0]),
            (3, 0.5, &[202, 27]),
            (
                31,
                10.0,
                &[12, 11, 12, 11, 11, 10, 10, 9, 8, 8, 7, 6, 6, 5, 4, 4],
            ),
        ];
        let (mut float, mut k) = (Vec::new(), Vec::new());
        for (n, sigma, want) in cases {
            fixed_kernel(n, sigma, &mut float, &mut k);
            assert_eq!(k, want, "n {n} sigma {sigma}");
        }
    }

    #[test]
    fn softdouble_exp_is_close_to_libms() {
        for i in -2000..=200 {
            let x = i as f64 * 0.0137;
            let (ours, libm) = (soft_exp(x), x.exp());
            assert!(
                ((ours - libm) / libm).abs() < 1e-14,
                "exp({x}): {ours} vs {libm}"
            );
        }
        assert_eq!(soft_exp(0.0), 1.0);
        assert_eq!(soft_exp(-1e6), 0.0);
        assert_eq!(soft_exp(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn auto_ksize_is_opencvs() {
        assert_eq!(auto_ksize(1.0), 7);
        assert_eq!(auto_ksize(2.0), 13);
        assert_eq!(auto_ksize(0.1), 3);
        assert_eq!(auto_ksize(0.25), 3); // cvRound(2.5) = 2, | 1
    }

    #[test]
    fn fixed_kernels_sum_to_256() {
        let mut float = Vec::new();
        let mut k = Vec::new();
        for n in [1usize, 3, 5, 7, 9, 23, 31, 51] {
            for sigma in [-1.0, 0.0, 1e-3, 0.1, 0.5, 0.8, 1.0, 1.37, 2.0, 5.0, 10.0] {
                fixed_kernel(n, sigma, &mut float, &mut k);
                let total = k[0] as u32 + 2 * k[1..].iter().map(|&v| v as u32).sum::<u32>();
                assert_eq!(total, 256, "n {n} sigma {sigma}: {k:?}");
            }
        }
    }

    #[test]
    fn blur_is_the_plain_sum() {
        let mut scratch = Scratch::default();
        for (w, h) in [
            (1usize, 1usize),
            (1, 7),
            (7, 1),
            (2, 2),
            (3, 5),
            (5, 3),
            (11, 12),
            (22, 23),
            (24, 33),
            (40, 9),
            (97, 96),
        ] {
            for (ksize, sigma) in [(23usize, 1.0f64), (3, 0.5), (5, 2.0), (7, 0.1), (31, 1.9)] {
                let src = noise(3 * w * h, (w * 1000 + h * 7 + ksize) as u64);
                let mut px = src.clone();
                gaussian_blur(&mut px, w, h, ksize, sigma, &mut scratch);
                let want = reference(&src, w, h, ksize, sigma);
                assert!(px == want, "{w}x{h} ksize {ksize} sigma {sigma}");
            }
        }
    }

    /// Every SIMD level against the baseline copy, over shapes around the step sizes and sigmas
    /// from tiny to wide.
    #[test]
    fn every_level_blurs_like_scalar() {
        for (w, h) in [
            (224usize, 224usize),
            (96, 96),
            (1, 21),
            (40, 1),
            (10, 11),
            (11, 10),
            (21, 22),
            (22, 3),
            (33, 17),
        ] {
            let src = noise(3 * w * h, (w * 31 + h) as u64);
            for (ksize, sigma) in [
                (23usize, 0.1f64),
                (23, 1.0),
                (23, 2.0),
                (5, 0.7),
                (31, 10.0),
            ] {
                let run = || {
                    let mut px = src.clone();
                    gaussian_blur(&mut px, w, h, ksize, sigma, &mut Scratch::default());
                    px
                };
                let reference = crate::simd::at_level(crate::simd::SCALAR, run).unwrap();
                for (name, level) in crate::simd::LEVELS {
                    match crate::simd::at_level(level, run) {
                        Some(px) => assert!(px == reference, "{name}: {w}x{h} k {ksize} s {sigma}"),
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
    }

    #[test]
    fn flat_image_stays_flat() {
        for v in [0u8, 1, 77, 254, 255] {
            let mut px = vec![v; 3 * 20 * 9];
            gaussian_blur(&mut px, 20, 9, 23, 1.7, &mut Scratch::default());
            assert!(px.iter().all(|&p| p == v));
        }
    }
}
