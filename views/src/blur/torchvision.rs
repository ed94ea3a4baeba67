//! torchvision's `gaussian_blur(img, [k, k], [sigma, sigma])` on a uint8 RGB image (DINOv2's
//! blur), reproducing torch's float32 arithmetic operation for operation.
//!
//! torchvision (0.29, `_functional_tensor.gaussian_blur`) turns the image into float32, builds a
//! float32 kernel, pads with `"reflect"` (mirror without repeating the edge), runs a depthwise
//! `conv2d` and rounds back (`torch.round`, half to even, then the cast to uint8). Here:
//!
//! * The kernel as torch computes it (checked against torch 2.14.1 for every step): `sigma`
//!   rounded to f32; `x = i - (k - 1) / 2`; `q = x / sigma`; `-0.5 * (q * q)`; `exp`; divided by
//!   the sum in the order of torch's `sum` (its cascade sum over 8-wide vectors, [`torch_sum`]);
//!   the 2-D kernel is the f32 outer product. torch's `exp` is MKL's `vsExp` (high accuracy mode,
//!   not correctly rounded: about 1 in 100 results differ from the correctly rounded f32 by 1 ulp);
//!   here `exp` is the correctly rounded one (f64 `exp` rounded to f32), so for a few percent of
//!   sigmas one or two weights differ from torch's by 1 ulp. That is the only known difference.
//! * The convolution as oneDNN runs it on x86-64 CPUs with FMA (torch's CPU backend for this
//!   conv: `jit_dw:avx2` or `jit_dw:avx512_core`): per output value, an f32 accumulator from 0,
//!   one fused multiply-add per tap, taps in row-major order (kernel row, then column). All 81
//!   taps of a 9x9 kernel, unseparated: torch does not separate the kernel, and a separable pass
//!   pair in f32 or f64 rounds differently (it misses torch's float by up to ~1e-4 and so, now and
//!   then, a rounding boundary). With the same fused operations in the same order the float is
//!   torch's to the bit. (On a CPU without FMA, oneDNN uses another order; not reproduced.)
//! * Rounding: half to even, clamped to 0..=255.
//!
//! Bound: with torch's kernel the bytes are torch's exactly; with the 1-ulp weight differences
//! above, a byte can differ by 1 where torch's float lies within ~1e-5 of a half. Measured over
//! 1e8 bytes of random images and sigmas (python/tests/test_torchvision_blur.py): see that test.
//!
//! Speed: the image is converted once into a reflect-padded f32 copy; each output row is then
//! accumulated in chunks of a line (interleaved RGB: tap `(i, j)` of output byte `n` is byte
//! `n + 3j` of padded row `y + i`), so the inner loop is element-wise over a contiguous chunk held
//! in registers, with hardware FMA at the AVX2 and AVX-512 levels. The scalar level has no FMA
//! instruction: it emulates the fused operation exactly in f64 ([`fma_exact`]), so every level
//! gives the same bytes. Taps whose weight is 0 (small sigmas) are skipped: adding `0 * v` to a
//! non-negative accumulator leaves it unchanged.
//!
//! Sizes: torch refuses reflect padding as wide as the image (a side of `k / 2` pixels or less:
//! 4 for k = 9). Here the reflection is folded again (as OpenCV's `BORDER_REFLECT_101`: index
//! `-i` is `i`, index `n - 1 + i` is `n - 1 - i`, repeatedly; a 1-pixel side repeats its pixel),
//! so every `width, height >= 1` works; where torch runs, this is torch's padding.

/// Per-worker buffers for [`gaussian_blur`]: the 2-D kernel (kept while `ksize` and `sigma` stay)
/// and the padded f32 image.
#[derive(Default)]
pub struct Scratch {
    /// `(ksize, sigma as f32 bits)` of `kernel`.
    kernel_of: Option<(usize, u32)>,
    /// The `ksize x ksize` kernel, row-major.
    kernel: Vec<f32>,
    /// The taps with a non-zero weight, in row-major order: `(row, byte offset 3 * column, weight)`.
    taps: Vec<(usize, usize, f32)>,
    padded: Vec<f32>,
}

/// The widest chunk of a line a kernel accumulates at once (floats); the padded rows carry this
/// much slack so that a chunk of a narrow image can read past its end.
const MAX_CHUNK: usize = 128;

/// torch's `x.sum()` of a contiguous float32 tensor `x` (aten `cascade_sum`, compiled over 8-wide
/// vectors for x86-64 at every capability): below 8 elements a scalar [`row_sum`]; otherwise a
/// [`row_sum`] over the whole 8-float vectors, lane by lane, then the leftover elements summed
/// from 0 and the 8 lane sums added in order.
pub fn torch_sum(x: &[f32]) -> f32 {
    const V: usize = 8;
    if x.len() < V {
        let rows: Vec<[f32; 1]> = x.iter().map(|&v| [v]).collect();
        return row_sum(&rows)[0];
    }
    let whole = x.len() / V;
    let rows: Vec<[f32; V]> = x
        .chunks_exact(V)
        .map(|c| c.try_into().unwrap())
        .collect();
    let lanes = row_sum(&rows[..whole]);
    let mut total = 0.0f32;
    for &v in &x[whole * V..] {
        total += v;
    }
    for l in lanes {
        total += l;
    }
    total
}

/// aten's `row_sum` (SumKernel.cpp): four interleaved partial sums (`multi_row_sum` over rows of
/// 4 elements, with its cascade levels), the leftover elements added to the first, then the other
/// three added to it. Each element is an `L`-lane vector (lanes added independently).
fn row_sum<const L: usize>(x: &[[f32; L]]) -> [f32; L] {
    const ILP: usize = 4;
    const LEVELS: usize = 4;
    let add = |a: &mut [f32; L], b: &[f32; L]| {
        for (a, b) in a.iter_mut().zip(b) {
            *a += b;
        }
    };
    let size = x.len() / ILP;
    // utils::CeilLog2 (1 for sizes up to 2).
    let ceil_log2 = if size <= 2 {
        1
    } else {
        usize::BITS - (size - 1).leading_zeros()
    } as usize;
    let power = (ceil_log2 / LEVELS).max(4);
    let (step, mask) = (1usize << power, (1usize << power) - 1);
    let mut acc = [[[0.0f32; L]; ILP]; LEVELS];
    let mut i = 0;
    while i + step <= size {
        for _ in 0..step {
            for k in 0..ILP {
                add(&mut acc[0][k], &x[i * ILP + k]);
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..ILP {
                let lower = acc[j - 1][k];
                add(&mut acc[j][k], &lower);
                acc[j - 1][k] = [0.0; L];
            }
            if i & (mask << (j * power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for k in 0..ILP {
            add(&mut acc[0][k], &x[i * ILP + k]);
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..ILP {
            let upper = acc[j][k];
            add(&mut acc[0][k], &upper);
        }
    }
    let mut partial = acc[0];
    for v in &x[size * ILP..] {
        add(&mut partial[0], v);
    }
    for k in 1..ILP {
        let p = partial[k];
        add(&mut partial[0], &p);
    }
    partial[0]
}

/// torchvision's `_get_gaussian_kernel1d(ksize, sigma, float32)`, step by step in f32 (see the
/// module doc: `exp` correctly rounded where torch's MKL `exp` may differ by 1 ulp).
pub fn kernel_1d(ksize: usize, sigma: f32) -> Vec<f32> {
    let half = (ksize as f32 - 1.0) * 0.5;
    let pdf: Vec<f32> = (0..ksize)
        .map(|i| {
            let q = (i as f32 - half) / sigma;
            let a = -0.5f32 * (q * q);
            (a as f64).exp() as f32
        })
        .collect();
    let sum = torch_sum(&pdf);
    pdf.iter().map(|&p| p / sum).collect()
}

/// The fused multiply-add `a * b + c` with one rounding, exactly as the FMA instruction gives it,
/// in f64 without one: the product of two f32 is exact in f64; the sum is rounded to odd (the
/// error of the f64 sum, from TwoSum, says which way it was rounded; an even result is moved one
/// ulp towards the exact sum), and rounding that to f32 is then the single rounding of the exact
/// value (Boldo & Melquiond: 53 >= 24 + 2 bits). Branch-free, so it vectorises.
#[inline(always)]
pub fn fma_exact(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64;
    let c = c as f64;
    let s = p + c;
    let bb = s - p;
    let err = (p - (s - bb)) + (c - bb);
    let bits = s.to_bits();
    let adjust = err != 0.0 && bits & 1 == 0;
    // One ulp away from zero when the exact sum is further from zero than `s`, else towards it.
    let away = (err > 0.0) == (s > 0.0);
    let step: u64 = if !adjust {
        0
    } else if away {
        1
    } else {
        u64::MAX
    };
    f64::from_bits(bits.wrapping_add(step)) as f32
}

/// `x` rounded half to even (x in `0.0..2^22`), clamped to 255: the low bits of
/// `x + 1.5 * 2^23`, whose ulp is 1.
#[inline(always)]
fn to_u8(x: f32) -> u8 {
    const MAGIC: f32 = 12_582_912.0;
    let r = (x.max(0.0) + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    r.min(255) as u8
}

/// Index `i` (may lie outside `0..n`) reflected into `0..n` without repeating the edge, folded
/// again where one reflection is not enough.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

/// The padded image's row length in floats for an image `width` wide and a kernel radius `r`.
fn padded_stride(width: usize, r: usize) -> usize {
    3 * (width + 2 * r) + MAX_CHUNK
}

/// Fills `padded` (`height + 2r` rows of [`padded_stride`] floats, slack zeroed) with the image
/// as f32, reflect-padded by `r` on every side.
fn pad_image(pixels: &[u8], width: usize, height: usize, r: usize, padded: &mut Vec<f32>) {
    let stride = padded_stride(width, r);
    padded.clear();
    padded.resize(stride * (height + 2 * r), 0.0);
    let cols: Vec<usize> = (0..r)
        .map(|c| reflect(c as isize - r as isize, width))
        .chain((0..r).map(|c| reflect((width + c) as isize, width)))
        .collect();
    for (py, out) in padded.chunks_exact_mut(stride).enumerate() {
        let y = reflect(py as isize - r as isize, height);
        let src = &pixels[3 * width * y..3 * width * (y + 1)];
        let (left, rest) = out.split_at_mut(3 * r);
        let (middle, rest) = rest.split_at_mut(3 * width);
        for (o, &v) in middle.iter_mut().zip(src) {
            *o = v as f32;
        }
        for (dst, &x) in left
            .chunks_exact_mut(3)
            .chain(rest.chunks_exact_mut(3).take(r))
            .zip(&cols)
        {
            for (o, &v) in dst.iter_mut().zip(&src[3 * x..3 * x + 3]) {
                *o = v as f32;
            }
        }
    }
}

/// Output rows `0..height`: per chunk of `C` floats of a line, the taps in order, one fused
/// multiply-add each (`fma`), then rounding into `out`. The last chunk of a line at least `C`
/// long is moved back to end at the line's end (its overlap is computed twice, the same);
/// a line shorter than `C` is one chunk reading the padded rows' slack.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv_rows<const C: usize>(
    padded: &[f32],
    stride: usize,
    taps: &[(usize, usize, f32)],
    out: &mut [u8],
    width: usize,
    height: usize,
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let len = 3 * width;
    for (y, out) in out.chunks_exact_mut(len).take(height).enumerate() {
        let base = &padded[y * stride..];
        let mut start = 0;
        while start < len {
            let at = if start + C > len && len >= C {
                len - C
            } else {
                start
            };
            let mut acc = [0.0f32; C];
            for &(i, dx, w) in taps {
                let from = i * stride + at + dx;
                let src: &[f32; C] = base[from..from + C].try_into().unwrap();
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a = fma(v, w, *a);
                }
            }
            let end = (at + C).min(len);
            for (o, &a) in out[at..end].iter_mut().zip(&acc) {
                *o = to_u8(a);
            }
            start = end;
        }
    }
}

/// [`conv_rows`] with hardware FMA at the AVX-512 and AVX2 levels (where the CPU has FMA, as
/// every AVX2 CPU in practice does) and [`fma_exact`] otherwise.
fn conv(
    padded: &[f32],
    stride: usize,
    taps: &[(usize, usize, f32)],
    out: &mut [u8],
    width: usize,
    height: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512(
            padded: &[f32],
            stride: usize,
            taps: &[(usize, usize, f32)],
            out: &mut [u8],
            width: usize,
            height: usize,
        ) {
            conv_rows::<128>(padded, stride, taps, out, width, height, f32::mul_add);
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
            padded: &[f32],
            stride: usize,
            taps: &[(usize, usize, f32)],
            out: &mut [u8],
            width: usize,
            height: usize,
        ) {
            conv_rows::<64>(padded, stride, taps, out, width, height, f32::mul_add);
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2_no_fma(
            padded: &[f32],
            stride: usize,
            taps: &[(usize, usize, f32)],
            out: &mut [u8],
            width: usize,
            height: usize,
        ) {
            conv_rows::<32>(padded, stride, taps, out, width, height, fma_exact);
        }
        let fma = std::arch::is_x86_feature_detected!("fma");
        match crate::simd::level() {
            // SAFETY: `level` only reports what the CPU supports; FMA was just detected.
            crate::simd::AVX512BW | crate::simd::AVX512VBMI if fma => {
                return unsafe { avx512(padded, stride, taps, out, width, height) }
            }
            // SAFETY: as above.
            crate::simd::AVX2.. if fma => {
                return unsafe { avx2(padded, stride, taps, out, width, height) }
            }
            // SAFETY: `level` only reports what the CPU supports.
            crate::simd::AVX2.. => {
                return unsafe { avx2_no_fma(padded, stride, taps, out, width, height) }
            }
            _ => {}
        }
    }
    conv_rows::<32>(padded, stride, taps, out, width, height, fma_exact);
}

/// torchvision's `gaussian_blur` with a `ksize x ksize` kernel of `sigma` (taken as f32, as
/// torchvision's kernel is) on an interleaved RGB image of `width x height`, in place. See the
/// module doc for the arithmetic and how close it is to torch.
///
/// # Panics
/// If `ksize` is even (torchvision refuses it too) or `pixels` is not `3 * width * height` long.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    assert!(
        ksize % 2 == 1,
        "torchvision's Gaussian blur takes an odd kernel size, not {ksize}"
    );
    assert_eq!(pixels.len(), 3 * width * height);
    if width == 0 || height == 0 {
        return;
    }
    let sigma = sigma as f32;
    if scratch.kernel_of != Some((ksize, sigma.to_bits())) {
        let k1 = kernel_1d(ksize, sigma);
        scratch.kernel.clear();
        scratch
            .kernel
            .extend(k1.iter().flat_map(|&a| k1.iter().map(move |&b| a * b)));
        scratch.taps.clear();
        for (t, &w) in scratch.kernel.iter().enumerate() {
            if w != 0.0 {
                scratch.taps.push((t / ksize, 3 * (t % ksize), w));
            }
        }
        scratch.kernel_of = Some((ksize, sigma.to_bits()));
    }
    let r = ksize / 2;
    pad_image(pixels, width, height, r, &mut scratch.padded);
    conv(
        &scratch.padded,
        padded_stride(width, r),
        &scratch.taps,
        pixels,
        width,
        height,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition: every tap of the 2-D kernel (zero weights too) over the reflected
    /// image, fused multiply-adds in row-major order, with the standard library's `mul_add`.
    fn reference(px: &[u8], w: usize, h: usize, k: usize, sigma: f64) -> Vec<u8> {
        let k1 = kernel_1d(k, sigma as f32);
        let r = k as isize / 2;
        let mut out = vec![0u8; px.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0.0f32;
                    for i in 0..k {
                        for j in 0..k {
                            let sy = reflect(y as isize + i as isize - r, h);
                            let sx = reflect(x as isize + j as isize - r, w);
                            let v = px[3 * (sy * w + sx) + c] as f32;
                            acc = (k1[i] * k1[j]).mul_add(v, acc);
                        }
                    }
                    out[3 * (y * w + x) + c] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }

    fn image(w: usize, h: usize, seed: usize) -> Vec<u8> {
        (0..3 * w * h)
            .map(|i| (((i + seed) * 7919) >> 3) as u8)
            .collect()
    }

    #[test]
    fn fma_exact_is_the_fused_operation() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            0.5,
            255.0,
            f32::MIN_POSITIVE,
            1e-45,
            3.4e38,
            1.0 + f32::EPSILON,
            -1.0,
        ];
        for n in 0..2_000_000u32 {
            let mut pick = |k: u32| -> f32 {
                let r = next();
                match (n + k) % 5 {
                    0 => specials[(r % specials.len() as u64) as usize],
                    1 => (r % 256) as f32,
                    2 => f32::from_bits((r as u32 & 0x3fff_ffff) | 0x3000_0000),
                    _ => f32::from_bits(r as u32),
                }
            };
            let (a, b, c) = (pick(0), pick(1), pick(2));
            let want = a.mul_add(b, c);
            let got = fma_exact(a, b, c);
            if want.is_nan() || !want.is_finite() || (a * b).is_infinite() {
                continue;
            }
            assert_eq!(want.to_bits(), got.to_bits(), "fma({a:e}, {b:e}, {c:e})");
        }
    }

    #[test]
    fn rounding_is_half_to_even_and_clamped() {
        for (x, want) in [
            (0.0f32, 0u8),
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (2.5000002, 3),
            (254.5, 254),
            (255.49, 255),
            (255.5, 255),
            (300.0, 255),
            (-0.4, 0),
            (1e-30, 0),
        ] {
            assert_eq!(to_u8(x), want, "{x}");
        }
    }

    #[test]
    fn reflect_mirrors_without_the_edge_and_folds_again() {
        let got: Vec<usize> = (-6..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert!((-9..9).all(|i| reflect(i, 1) == 0));
        let got: Vec<usize> = (-3..5).map(|i| reflect(i, 2)).collect();
        assert_eq!(got, [1, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn kernel_sums_like_torch() {
        // Hand-checked orders: below 8 elements row_sum's (x0 + x4) + x1 + x2 + x3; at 9,
        // x8 + x0 + ... + x7.
        let x = [1e8f32, 1.0, 1.0, 1.0, -1e8, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(torch_sum(&x[..5]), ((x[0] + x[4]) + x[1]) + x[2] + x[3]);
        let mut want = x[8];
        for v in &x[..8] {
            want += v;
        }
        assert_eq!(torch_sum(&x), want);
        let k = kernel_1d(9, 1.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(k[4], k[4].max(k[3]));
        assert_eq!(kernel_1d(1, 0.7), [1.0]);
    }

    #[test]
    fn matches_the_plain_definition() {
        for (w, h) in [(1usize, 1usize), (2, 3), (4, 4), (5, 5), (7, 2), (13, 11), (40, 9)] {
            for k in [1usize, 3, 5, 9, 23] {
                for sigma in [0.1f64, 0.3, 0.77, 1.0, 2.0, 7.5] {
                    let src = image(w, h, k);
                    let want = reference(&src, w, h, k, sigma);
                    for (name, level) in crate::simd::LEVELS {
                        let got = crate::simd::at_level(level, || {
                            let mut px = src.clone();
                            gaussian_blur(&mut px, w, h, k, sigma, &mut Scratch::default());
                            px
                        });
                        match got {
                            Some(px) => assert!(px == want, "{name}: {w}x{h} k {k} sigma {sigma}"),
                            None => crate::simd::say_skipped(name),
                        }
                    }
                }
            }
        }
    }

    /// Every SIMD level against the scalar level over many shapes (around the chunk widths),
    /// kernel sizes and sigmas, reusing one scratch across calls.
    #[test]
    fn every_level_blurs_like_scalar() {
        let mut shapes = vec![(224usize, 224usize), (96, 96), (97, 33), (1, 50), (50, 1)];
        shapes.extend((1..=12).map(|s| (s, 13 - s)));
        shapes.extend([(21, 22), (22, 21), (42, 43), (43, 5), (64, 3), (11, 64)]);
        let sigmas = [0.1f64, 0.25, 0.2779, 0.5, 0.93, 1.0, 1.37, 2.0, 3.3];
        for (n, &(w, h)) in shapes.iter().enumerate() {
            let src = image(w, h, n);
            for k in [3usize, 5, 9, 23] {
                for (m, &sigma) in sigmas.iter().enumerate() {
                    if (n + m) % 3 != 0 && w * h > 5000 {
                        continue;
                    }
                    let run = |level| {
                        crate::simd::at_level(level, || {
                            let mut px = src.clone();
                            gaussian_blur(&mut px, w, h, k, sigma, &mut Scratch::default());
                            px
                        })
                    };
                    let want = run(crate::simd::SCALAR).unwrap();
                    for (name, level) in crate::simd::LEVELS {
                        match run(level) {
                            Some(px) => assert!(px == want, "{name}: {w}x{h} k {k} sigma {sigma}"),
                            None => crate::simd::say_skipped(name),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flat_image_stays_flat_and_scratch_is_reused() {
        let mut scratch = Scratch::default();
        for (v, sigma) in [(0u8, 1.0f64), (77, 1.7), (255, 0.1), (255, 2.0), (128, 0.5)] {
            let mut px = vec![v; 3 * 20 * 9];
            gaussian_blur(&mut px, 20, 9, 9, sigma, &mut scratch);
            assert!(px.iter().all(|&p| p == v), "{v} sigma {sigma}");
        }
    }
}
