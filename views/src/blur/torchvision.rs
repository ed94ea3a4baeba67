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
//! * Flips: the blur is symmetric, torch's float sums are not, so the blur of a mirrored image is
//!   not the mirrored blur, to the bit. A view flipped after blurring, where the official code
//!   flips first (DINOv2), must blur with [`gaussian_blur_of_mirror`].
//!
//! Bound: with torch's kernel the bytes are torch's exactly; with the 1-ulp weight differences
//! above, a byte can differ by 1 where torch's float lies within ~1e-5 of a half. Measured
//! against torchvision over 1e8 bytes of random images (noise, 0/255, gradients, flat areas,
//! smooth), sides 5 to 224, k 3/5/9/23, sigmas in [0.1, 2]: 3 bytes differed (by 1), each where
//! the kernel differed; meanwhile torch's own float accumulation moves 9e-6 of its bytes off the
//! exactly rounded value. `python/tests/test_torchvision_blur.py` asserts max |diff| <= 1 and at
//! most 1e-5 of the bytes differing.
//!
//! Speed: 81 fused multiply-adds per output byte (for k = 9; taps whose weight is 0, at small
//! sigmas, are skipped: adding `0 * v` to a non-negative accumulator leaves it unchanged). In
//! interleaved RGB, tap `(i, j)` of output byte `n` of a row is byte `n + 3j` of padded row
//! `y + i`: an offset of 3j floats, so that vector loads along a row mostly straddle cache lines.
//! Instead each padded row is strip-transposed: cut into 16 strips of `m = ceil(3w / 16)` bytes
//! (plus the `6r` bytes of halo a strip's taps read), lane `l` of element `t` being byte
//! `l * m + t` ([`build_strips`]; a 16 x 16 register transpose at the AVX-512 level). A tap is
//! then one aligned 16-lane load per element, and a block of 6 to 8 elements is accumulated in
//! registers over all taps ([`conv_strips`]), then rounded and transposed back. Hardware FMA at
//! the AVX2 and AVX-512 levels and with NEON (`fmla`, fused too); the scalar level has no FMA
//! instruction and emulates the fused operation exactly in f64 ([`fma_exact`]), so every level gives the same bytes. The weights are
//! scaled by `2^64` to keep subnormals out ([`SCALE`]). The steady state allocates nothing.
//!
//! Sizes: torch refuses reflect padding as wide as the image (a side of `k / 2` pixels or less:
//! 4 for k = 9). Here the reflection is folded again (as OpenCV's `BORDER_REFLECT_101`: index
//! `-i` is `i`, index `n - 1 + i` is `n - 1 - i`, repeatedly; a 1-pixel side repeats its pixel),
//! so every `width, height >= 1` works; where torch runs, this is torch's padding.

use crate::blur::reflect_101 as reflect;

/// Per-worker buffers for [`gaussian_blur`]: the kernel's taps (kept while `ksize` and `sigma`
/// stay) and the working buffers.
#[derive(Default)]
pub struct Scratch {
    /// `(ksize, sigma as f32 bits, mirrored)` of `taps`.
    taps_of: Option<(usize, u32, bool)>,
    /// The taps of the 2-D kernel with a non-zero weight, in row-major order: `(row, element
    /// offset 3 * column, weight * SCALE)`.
    taps: Vec<(usize, usize, f32)>,
    bufs: Bufs,
}

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
    let rows: Vec<[f32; V]> = x.chunks_exact(V).map(|c| c.try_into().unwrap()).collect();
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
/// three added to it. Each element is an `L`-lane vector (lanes added independently). Indexed as
/// aten's loops are, to be read beside them.
#[allow(clippy::needless_range_loop)]
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

/// The weights are multiplied by `2^64` ([`SCALE`]) so that no operand or result of the fused
/// multiply-adds is subnormal: an FMA with a subnormal operand costs about 30 cycles on Intel
/// cores (a microcode assist), and small sigmas (below about 0.43 for k = 9) make some weights
/// subnormal, so that blurring got up to 20 times slower. The scaled chain is torch's chain times
/// `2^64` exactly: scaling by a power of two commutes with rounding to 24 bits, and torch's chain
/// never rounds in the subnormal range (a result below `2^-126` comes only from subnormal
/// weights, times integer pixels, plus such results: a multiple of `2^-149`, which the subnormal
/// range holds exactly).
const SCALE: f32 = 18_446_744_073_709_551_616.0;

/// `x / 2^64` (an accumulator of scaled weights) rounded half to even (`x / 2^64` in
/// `0.0..2^22`), clamped to 255: the low bits of `x / 2^64 + 1.5 * 2^23`, whose ulp is 1. `x` is
/// first raised to at least `2^-30` (`2^-94` unscaled, which rounds to 0 all the same) so that the
/// division stays exact and out of the subnormal range.
#[inline(always)]
fn to_u8(x: f32) -> u8 {
    const MAGIC: f32 = 12_582_912.0;
    const UNSCALE: f32 = 1.0 / SCALE;
    const FLOOR: f32 = 1.0 / 1_073_741_824.0;
    let r = (x.max(FLOOR) * UNSCALE + MAGIC)
        .to_bits()
        .wrapping_sub(MAGIC.to_bits());
    r.min(255) as u8
}

/// Lanes of a strip-transposed line: lane `l` of element `t` is byte `l * m + t` of a padded
/// line (`m` = [`Geometry::m`]), so that each lane runs along its own sixteenth of the line and
/// the tap offsets (`3j` bytes) are whole elements apart: aligned loads.
const LANES: usize = 16;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Lanes([f32; LANES]);

/// The most elements a kernel accumulates at once ([`conv_strips`]'s `B`).
const MAX_BLOCK: usize = 8;

/// Sizes of the strip-transposed padded image.
#[derive(Clone, Copy)]
struct Geometry {
    width: usize,
    height: usize,
    /// Kernel radius (padding on each side).
    r: usize,
    /// Outputs per lane: `ceil(3 * width / LANES)`.
    m: usize,
    /// Elements per padded line: `max(m, MAX_BLOCK) + 6r` (a block may read past `m`), rounded
    /// up to whole 16 x 16 transposes.
    t: usize,
}

impl Geometry {
    fn new(width: usize, height: usize, ksize: usize) -> Geometry {
        let r = ksize / 2;
        let m = (3 * width).div_ceil(LANES);
        Geometry {
            width,
            height,
            r,
            m,
            t: (m.max(MAX_BLOCK) + 6 * r).next_multiple_of(LANES),
        }
    }
}

/// The working buffers of one blur.
#[derive(Default)]
struct Bufs {
    /// One padded line as f32, zeros past its end (what the last lanes read).
    line: Vec<f32>,
    /// The padded image (`height + 2r` lines of `t` elements), strip-transposed.
    strips: Vec<Lanes>,
    /// One output line's bytes, strip-transposed (`max(m, MAX_BLOCK)` elements).
    bytes: Vec<[u8; LANES]>,
    /// The taps as (offset in elements, weight) for this geometry.
    offsets: Vec<(usize, f32)>,
}

impl Bufs {
    fn fit(&mut self, g: Geometry) {
        self.line.clear();
        self.line.resize((LANES - 1) * g.m + g.t, 0.0);
        // Every element is written before it is read: no need to clear.
        self.strips
            .resize((g.height + 2 * g.r) * g.t, Lanes::default());
        self.bytes.resize(g.m.max(MAX_BLOCK), [0; LANES]);
    }
}

/// Fills `b.strips` with the image as f32, reflect-padded by `r` pixels on every side,
/// strip-transposed ([`Lanes`]): each padded line converted into `b.line`, then transposed 16
/// elements at a time (`transpose(line, m, lanes)`: `lanes[t].0[l] = line[l * m + t]`).
#[inline(always)]
fn build_strips(
    pixels: &[u8],
    g: Geometry,
    b: &mut Bufs,
    transpose: impl Fn(&[f32], usize, &mut [Lanes; LANES]),
) {
    let (w, r) = (g.width, g.r);
    let row_len = 3 * w;
    let line = &mut b.line[..];
    for (q, dst) in b.strips.chunks_exact_mut(g.t).enumerate() {
        let y = reflect(q as isize - r as isize, g.height);
        let src = &pixels[row_len * y..row_len * (y + 1)];
        let (left, rest) = line.split_at_mut(3 * r);
        let (middle, rest) = rest.split_at_mut(row_len);
        for (o, &v) in middle.iter_mut().zip(src) {
            *o = v as f32;
        }
        for (c, px) in left.chunks_exact_mut(3).enumerate() {
            let x = reflect(c as isize - r as isize, w);
            for (o, &v) in px.iter_mut().zip(&src[3 * x..3 * x + 3]) {
                *o = v as f32;
            }
        }
        for (c, px) in rest.chunks_exact_mut(3).take(r).enumerate() {
            let x = reflect((w + c) as isize, w);
            for (o, &v) in px.iter_mut().zip(&src[3 * x..3 * x + 3]) {
                *o = v as f32;
            }
        }
        for (t0, lanes) in dst.chunks_exact_mut(LANES).enumerate() {
            let block = &line[t0 * LANES..(LANES - 1) * g.m + (t0 + 1) * LANES];
            transpose(block, g.m, lanes.try_into().unwrap());
        }
    }
}

/// `lanes[t].0[l] = block[l * stride + t]` for `t, l < 16`, element by element.
#[inline(always)]
fn transpose_portable(block: &[f32], stride: usize, lanes: &mut [Lanes; LANES]) {
    for (t, e) in lanes.iter_mut().enumerate() {
        for (l, v) in e.0.iter_mut().enumerate() {
            *v = block[l * stride + t];
        }
    }
}

/// [`transpose_portable`] in AVX-512 registers: 16 loads, the usual three rounds of unpacks and
/// 128-bit shuffles (64 in all), 16 aligned stores.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(block: &[f32], stride: usize, lanes: &mut [Lanes; LANES]) {
    use std::arch::x86_64::*;
    assert!(block.len() >= (LANES - 1) * stride + LANES);
    // SAFETY: row l's 16 floats lie inside `block` (asserted).
    let r: [__m512; 16] =
        std::array::from_fn(|l| unsafe { _mm512_loadu_ps(block.as_ptr().add(l * stride)) });
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4g + k]: from t[4g + (k / 2)] and t[4g + 2 + (k / 2)], low (k even) or high pairs.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, k) = (i / 4, i % 4);
        let a = _mm512_castps_pd(t[4 * g + k / 2]);
        let b = _mm512_castps_pd(t[4 * g + 2 + k / 2]);
        _mm512_castpd_ps(if k % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // v[8h + j]: 128-bit lanes 0 and 2 (j < 4) or 1 and 3 of u[8h + j % 4] and u[8h + 4 + j % 4].
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let (h, j) = (i / 8, i % 8);
        let (a, b) = (u[8 * h + j % 4], u[8 * h + 4 + j % 4]);
        if j < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    for (i, out) in lanes.iter_mut().enumerate() {
        let (a, b) = (v[i % 8], v[8 + i % 8]);
        let row = if i < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        };
        // SAFETY: `Lanes` is 16 f32 aligned to 64 bytes.
        unsafe { _mm512_store_ps(out.0.as_mut_ptr(), row) };
    }
}

/// Output rows `0..height` from the strips: per block of `B` elements of a line, the taps in
/// order, one fused multiply-add each (`fma` on an accumulator and an element of lanes), then
/// [`to_u8`] into `b.bytes`; once a line is done, its bytes go back in place (lane `l` of element
/// `t` is byte `l * m + t`; bytes past the line's end are dropped). The last block of a line is
/// moved back to end at element `m` (its overlap is computed twice, the same); where `m < B` the
/// block reads the lines' zero tail.
#[inline(always)]
fn conv_strips<A: Copy, const B: usize>(
    g: Geometry,
    taps: &[(usize, usize, f32)],
    out: &mut [u8],
    b: &mut Bufs,
    zero: A,
    fma: impl Fn(&Lanes, f32, A) -> A + Copy,
    lanes: impl Fn(A) -> Lanes + Copy,
) {
    let (m, len) = (g.m, 3 * g.width);
    // Each tap as (element offset from the block's first input element, weight).
    b.offsets.clear();
    b.offsets
        .extend(taps.iter().map(|&(i, dx, w)| (i * g.t + dx, w)));
    let offsets = &b.offsets[..];
    let last = offsets.iter().map(|o| o.0).max().unwrap_or(0);
    for (y, out) in out.chunks_exact_mut(len).take(g.height).enumerate() {
        let base = &b.strips[y * g.t..];
        let mut t0 = 0;
        while t0 < m {
            let at = if t0 + B > m && m >= B { m - B } else { t0 };
            let mut acc = [zero; B];
            let block = &base[at..];
            assert!(last + B <= block.len());
            for &(from, w) in offsets {
                // SAFETY: `from <= last` (the offsets' maximum) and `last + B <= block.len()`.
                let src = unsafe { block.get_unchecked(from..from + B) };
                for (a, s) in acc.iter_mut().zip(src) {
                    *a = fma(s, w, *a);
                }
            }
            let bytes: &mut [[u8; LANES]; B] = (&mut b.bytes[at..at + B]).try_into().unwrap();
            for (o, &a) in bytes.iter_mut().zip(&acc) {
                for (o, &v) in o.iter_mut().zip(&lanes(a).0) {
                    *o = to_u8(v);
                }
            }
            t0 = at + B;
        }
        for (l, seg) in out.chunks_mut(m).enumerate() {
            for (o, e) in seg.iter_mut().zip(&b.bytes) {
                *o = e[l];
            }
        }
    }
}

/// Of the block lengths `choices` (largest first), the one that covers `m` elements with the
/// fewest computed (the last block overlaps its neighbour), the largest on a tie.
fn block_len<const N: usize>(m: usize, choices: [usize; N]) -> usize {
    let cost = |b: usize| m.div_ceil(b) * b;
    let mut best = choices[0];
    for &b in &choices[1..] {
        if cost(b) < cost(best) {
            best = b;
        }
    }
    best
}

/// [`build_strips`] then [`conv_strips`], with hardware FMA at the AVX-512 and AVX2 levels (where
/// the CPU has FMA, as every AVX2 CPU in practice does) and NEON, and [`fma_exact`] otherwise.
fn blur_strips(pixels: &mut [u8], g: Geometry, taps: &[(usize, usize, f32)], b: &mut Bufs) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
        unsafe fn avx512(
            pixels: &mut [u8],
            g: Geometry,
            taps: &[(usize, usize, f32)],
            b: &mut Bufs,
        ) {
            // SAFETY: the CPU supports AVX-512 F (this function's features).
            build_strips(pixels, g, b, |block, stride, lanes| unsafe {
                transpose_avx512(block, stride, lanes)
            });
            let fma = |s: &Lanes, w: f32, a: __m512| {
                // SAFETY: `Lanes` is 16 f32 aligned to 64 bytes.
                let v = unsafe { _mm512_load_ps(s.0.as_ptr()) };
                _mm512_fmadd_ps(v, _mm512_set1_ps(w), a)
            };
            let lanes = |a: __m512| {
                let mut l = Lanes::default();
                // SAFETY: as above.
                unsafe { _mm512_store_ps(l.0.as_mut_ptr(), a) };
                l
            };
            let zero = _mm512_setzero_ps();
            match block_len(g.m, [8, 7, 6]) {
                8 => conv_strips::<_, 8>(g, taps, pixels, b, zero, fma, lanes),
                7 => conv_strips::<_, 7>(g, taps, pixels, b, zero, fma, lanes),
                _ => conv_strips::<_, 6>(g, taps, pixels, b, zero, fma, lanes),
            }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(pixels: &mut [u8], g: Geometry, taps: &[(usize, usize, f32)], b: &mut Bufs) {
            build_strips(pixels, g, b, transpose_portable);
            let fma = |s: &Lanes, w: f32, a: [__m256; 2]| {
                let w = _mm256_set1_ps(w);
                // SAFETY: `Lanes` is 16 f32 aligned to 64 bytes.
                let (lo, hi) = unsafe {
                    (
                        _mm256_load_ps(s.0.as_ptr()),
                        _mm256_load_ps(s.0.as_ptr().add(8)),
                    )
                };
                [_mm256_fmadd_ps(lo, w, a[0]), _mm256_fmadd_ps(hi, w, a[1])]
            };
            let lanes = |a: [__m256; 2]| {
                let mut l = Lanes::default();
                // SAFETY: as above.
                unsafe {
                    _mm256_store_ps(l.0.as_mut_ptr(), a[0]);
                    _mm256_store_ps(l.0.as_mut_ptr().add(8), a[1]);
                }
                l
            };
            let zero = [_mm256_setzero_ps(); 2];
            match block_len(g.m, [4, 3]) {
                4 => conv_strips::<_, 4>(g, taps, pixels, b, zero, fma, lanes),
                _ => conv_strips::<_, 3>(g, taps, pixels, b, zero, fma, lanes),
            }
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2_no_fma(
            pixels: &mut [u8],
            g: Geometry,
            taps: &[(usize, usize, f32)],
            b: &mut Bufs,
        ) {
            portable(pixels, g, taps, b);
        }
        let fma = std::arch::is_x86_feature_detected!("fma");
        match crate::simd::level() {
            // SAFETY: `level` only reports what the CPU supports; FMA was just detected.
            crate::simd::AVX512BW | crate::simd::AVX512VBMI if fma => {
                return unsafe { avx512(pixels, g, taps, b) }
            }
            // SAFETY: as above.
            crate::simd::AVX2.. if fma => return unsafe { avx2(pixels, g, taps, b) },
            // SAFETY: `level` only reports what the CPU supports.
            crate::simd::AVX2.. => return unsafe { avx2_no_fma(pixels, g, taps, b) },
            _ => {}
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::aarch64::*;
        /// Four 4-lane registers per element of lanes, `fmla` by the tap's weight (NEON's
        /// multiply-add is fused, as x86's FMA: the same bytes).
        #[target_feature(enable = "neon")]
        unsafe fn neon(pixels: &mut [u8], g: Geometry, taps: &[(usize, usize, f32)], b: &mut Bufs) {
            build_strips(pixels, g, b, transpose_portable);
            let fma = |s: &Lanes, w: f32, a: [float32x4_t; 4]| {
                let p = s.0.as_ptr();
                // SAFETY: `Lanes` is 16 f32; each load reads 4 of them.
                [0, 1, 2, 3].map(|i| unsafe { vfmaq_n_f32(a[i], vld1q_f32(p.add(4 * i)), w) })
            };
            let lanes = |a: [float32x4_t; 4]| {
                let mut l = Lanes::default();
                for (i, &v) in a.iter().enumerate() {
                    // SAFETY: as above, 4 of the 16 f32.
                    unsafe { vst1q_f32(l.0.as_mut_ptr().add(4 * i), v) };
                }
                l
            };
            let zero = [vdupq_n_f32(0.0); 4];
            match block_len(g.m, [4, 3]) {
                4 => conv_strips::<_, 4>(g, taps, pixels, b, zero, fma, lanes),
                _ => conv_strips::<_, 3>(g, taps, pixels, b, zero, fma, lanes),
            }
        }
        if crate::simd::level() >= crate::simd::NEON {
            // SAFETY: `level` only reports what the CPU supports.
            return unsafe { neon(pixels, g, taps, b) };
        }
    }
    portable(pixels, g, taps, b);
}

/// [`build_strips`] and [`conv_strips`] with [`fma_exact`] lane by lane.
#[inline(always)]
fn portable(pixels: &mut [u8], g: Geometry, taps: &[(usize, usize, f32)], b: &mut Bufs) {
    build_strips(pixels, g, b, transpose_portable);
    let fma = |s: &Lanes, w: f32, mut a: Lanes| {
        for (a, &v) in a.0.iter_mut().zip(&s.0) {
            *a = fma_exact(v, w, *a);
        }
        a
    };
    conv_strips::<_, 2>(g, taps, pixels, b, Lanes::default(), fma, |a| a);
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
    blur(pixels, width, height, ksize, sigma, false, scratch);
}

/// [`gaussian_blur`] of the image mirrored left to right, mirrored back: for a view that is
/// flipped after blurring when the official code flips before (DINOv2: `RandomHorizontalFlip`,
/// then colour, then `GaussianBlur`). The blur is symmetric but torch's float sums are not: a
/// flipped image meets each kernel row's taps in the other order, which rounds differently now and
/// then. Here the taps of each kernel row run right to left, so that the result is the blur of the
/// flipped image to the bit, without flipping anything.
pub fn gaussian_blur_of_mirror(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    scratch: &mut Scratch,
) {
    blur(pixels, width, height, ksize, sigma, true, scratch);
}

fn blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    ksize: usize,
    sigma: f64,
    mirrored: bool,
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
    let key = (ksize, sigma.to_bits(), mirrored);
    if scratch.taps_of != Some(key) {
        let k1 = kernel_1d(ksize, sigma);
        scratch.taps.clear();
        for (i, &a) in k1.iter().enumerate() {
            for (j, &b) in k1.iter().enumerate() {
                // torch's 2-D kernel: the f32 outer product (`torch.mm` of the 1-D kernels).
                let w = a * b;
                // Tap j of the mirrored image's row reads column k - 1 - j of this one.
                let column = if mirrored { ksize - 1 - j } else { j };
                if w != 0.0 {
                    scratch.taps.push((i, 3 * column, w * SCALE));
                }
            }
        }
        scratch.taps_of = Some(key);
    }
    let g = Geometry::new(width, height, ksize);
    scratch.bufs.fit(g);
    blur_strips(pixels, g, &scratch.taps, &mut scratch.bufs);
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
            (1e-40, 0),
            (0.49999997, 0),
            (0.50000006, 1),
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
            assert_eq!(to_u8(x * SCALE), want, "{x}");
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
        for (w, h) in [
            (1usize, 1usize),
            (2, 3),
            (4, 4),
            (5, 5),
            (7, 2),
            (13, 11),
            (40, 9),
        ] {
            for k in [1usize, 3, 5, 9, 23] {
                for sigma in [0.1f64, 0.3, 0.33, 0.38, 0.42, 0.77, 1.0, 2.0, 7.5] {
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
        let sigmas = [
            0.1f64, 0.25, 0.2779, 0.3, 0.35, 0.4, 0.5, 0.93, 1.0, 1.37, 2.0, 3.3,
        ];
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

    fn mirror(px: &[u8], w: usize) -> Vec<u8> {
        px.chunks_exact(3 * w)
            .flat_map(|row| row.chunks_exact(3).rev().flatten().copied())
            .collect()
    }

    /// The blur of the mirrored image, mirrored back, at every level; and against the plain blur,
    /// which differs from it now and then (so the test would see a mirror that does nothing).
    #[test]
    fn blur_of_mirror_is_the_mirrored_blur() {
        let mut differ = 0;
        let mut scratch = Scratch::default();
        for (n, (w, h)) in [
            (224usize, 224usize),
            (96, 96),
            (33, 17),
            (5, 5),
            (3, 2),
            (1, 7),
        ]
        .into_iter()
        .enumerate()
        {
            let src: Vec<u8> = (0..3 * w * h)
                .map(|i| (((i + n) * 2_654_435_761usize) >> 13) as u8)
                .collect();
            for (k, sigma) in [(9usize, 1.0f64), (9, 1.7), (9, 0.35), (5, 0.8), (23, 1.9)] {
                let mut want = mirror(&src, w);
                gaussian_blur(&mut want, w, h, k, sigma, &mut scratch);
                let want = mirror(&want, w);
                let mut plain = src.clone();
                gaussian_blur(&mut plain, w, h, k, sigma, &mut scratch);
                differ += plain.iter().zip(&want).filter(|(a, b)| a != b).count();
                for (name, level) in crate::simd::LEVELS {
                    let got = crate::simd::at_level(level, || {
                        let mut px = src.clone();
                        gaussian_blur_of_mirror(&mut px, w, h, k, sigma, &mut scratch);
                        px
                    });
                    match got {
                        Some(px) => assert!(px == want, "{name}: {w}x{h} k {k} sigma {sigma}"),
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
        assert!(
            differ > 0,
            "the mirrored blur never differed from the plain one"
        );
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
