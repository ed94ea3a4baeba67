//! Pillow's bicubic resize of a crop (`img.crop(box).resize((w, h), BICUBIC)`), bit-exact.
//!
//! Pillow's `Resample.c`: per output pixel a kernel of `bicubic(a = -0.5)` taps, stretched by the
//! scale when shrinking (antialiasing), normalised in f64 and converted to 22-bit fixed point; a
//! horizontal pass (only over the rows the vertical pass needs) into a u8 intermediate, then a
//! vertical pass. The crop is read in place from the source image: Pillow's taps never leave the
//! cropped image, so the result is the same as cropping first, with no copy.

const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Output pixels per group of the AVX-512 horizontal pass (3 channels each in 16 lanes).
const GROUP: usize = 5;
const SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point taps of one axis: output `i` reads `len[i]` inputs from `start[i]` with the weights
/// `weights[i * ksize..]`.
#[derive(Default)]
struct Taps {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
    scratch: Vec<f64>,
    groups: Groups,
    blocks: Blocks,
}

/// The horizontal taps regrouped for the `madd` passes (AVX2, and AVX-512 on CPUs without VBMI):
/// output pixels in blocks of `pixels` (2 for a 256-bit register, 4 for a 512-bit one), one per
/// 128-bit lane, each with its channels in three 32-bit lanes (the fourth unused) that each hold
/// two taps as 16-bit values, multiplied and summed by `madd`. Pillow's 22-bit weights do not fit
/// 16 bits, so each is split as `w = hi * 2^15 + lo` (`lo` in `0..2^15`) and the two sums are
/// combined at the end; the combination wraps where the scalar pass's i32 sum would not, but the
/// true sum fits i32, so the wrapped result is the same.
#[derive(Default)]
struct Blocks {
    /// Output pixels per block.
    pixels: usize,
    /// Per block (output pixels `pixels * b ..`): pairs of taps (the longest pixel's taps
    /// rounded up to even; the pass loads 4 taps at a time and takes an odd last pair alone),
    /// offset of its weights in `weights` (`16 * pixels` per pair: `lo` and `hi` of the pair,
    /// each 8 per pixel), and how many bytes of the row its 16-byte loads reach.
    pairs: Vec<usize>,
    at: Vec<usize>,
    reach: Vec<usize>,
    weights: Vec<i16>,
}

/// The horizontal taps regrouped for the AVX-512 pass: [`GROUP`] consecutive output pixels per
/// group, their channels in 15 of 16 i32 lanes (R, G, B per pixel, the last lane unused). Tap `k` of a group reads
/// one 64-byte window at source pixel `base + k` and permutes pixel `start[j] - base` of it (that
/// is, source pixel `start[j] + k`) into pixel `j`'s lanes; groups whose pixels are too far apart for one window are left to the
/// per-pixel pass.
#[derive(Default)]
struct Groups {
    /// Per group: first source pixel, number of taps (0 = use the per-pixel pass), offset of its
    /// weights in `weights` (16 per tap).
    base: Vec<usize>,
    taps: Vec<usize>,
    at: Vec<usize>,
    /// Byte permutation (window byte for each of the 16 lanes), per group.
    index: Vec<[u8; 16]>,
    weights: Vec<i32>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size`.
    fn compute(&mut self, in_size: usize, out_size: usize) {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        self.ksize = ksize;
        self.start.clear();
        self.len.clear();
        self.weights.clear();
        self.weights.resize(out_size * ksize, 0);
        self.scratch.resize(ksize, 0.0);
        let ss = 1.0 / filterscale;
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax - xmin;
            let mut ww = 0.0;
            for x in 0..n {
                let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
                self.scratch[x] = w;
                ww += w;
            }
            let k = &mut self.weights[xx * ksize..(xx + 1) * ksize];
            for (kx, &raw) in k.iter_mut().zip(&self.scratch[..n]) {
                let w = if ww != 0.0 { raw / ww } else { raw };
                let f = w * (1u32 << PRECISION_BITS) as f64;
                // Pillow's `(int) trunc(...)`: `as i32` truncates toward zero (the value is far
                // inside i32), without a libm `trunc` call per tap.
                *kx = if w < 0.0 {
                    (-0.5 + f) as i32
                } else {
                    (0.5 + f) as i32
                };
            }
            self.start.push(xmin);
            self.len.push(n);
        }
    }

    /// Fills [`Groups`] from the taps (for the horizontal pass).
    fn compute_groups(&mut self) {
        let g = &mut self.groups;
        g.base.clear();
        g.taps.clear();
        g.at.clear();
        g.index.clear();
        g.weights.clear();
        for first in (0..self.start.len()).step_by(GROUP) {
            let base = self.start[first];
            let full = first + GROUP <= self.start.len();
            // Every pixel's bytes (3 * offset + 2) must lie in the 64-byte window.
            let spread_ok = full && self.start[first + GROUP - 1] - base <= 20;
            let taps = if spread_ok {
                (first..first + GROUP)
                    .map(|j| self.len[j])
                    .max()
                    .unwrap_or(0)
            } else {
                0
            };
            let mut index = [0u8; 16];
            g.base.push(base);
            g.taps.push(taps);
            g.at.push(g.weights.len());
            if taps > 0 {
                for j in 0..GROUP {
                    let o = self.start[first + j] - base;
                    for c in 0..3 {
                        index[3 * j + c] = (3 * o + c) as u8;
                    }
                }
                // Tap k of the group is the window at base + k, in which pixel j's own tap k
                // (source pixel start[j] + k) is at pixel start[j] - base.
                for k in 0..taps {
                    for j in 0..GROUP {
                        let xx = first + j;
                        let w = if k < self.len[xx] {
                            self.weights[xx * self.ksize + k]
                        } else {
                            0
                        };
                        g.weights.extend_from_slice(&[w, w, w]);
                    }
                    g.weights.push(0);
                }
            }
            g.index.push(index);
        }
    }
}

impl Taps {
    /// Fills the regrouping the horizontal pass at the current SIMD level reads (and only that).
    fn regroup_for_level(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::vbmi() {
            self.compute_groups();
        } else if crate::simd::level() >= crate::simd::AVX512BW {
            self.compute_blocks(4);
        } else if crate::simd::level() >= crate::simd::AVX2 {
            self.compute_blocks(2);
        }
    }

    /// Fills [`Blocks`] from the taps, `pixels` output pixels per block.
    fn compute_blocks(&mut self, pixels: usize) {
        let p = &mut self.blocks;
        p.pixels = pixels;
        p.pairs.clear();
        p.at.clear();
        p.reach.clear();
        p.weights.clear();
        for first in (0..self.start.len() / pixels * pixels).step_by(pixels) {
            let block = first..first + pixels;
            let pairs = block
                .clone()
                .map(|j| self.len[j])
                .max()
                .unwrap()
                .div_ceil(2);
            // The 16-byte loads are at 12 bytes (4 taps) apart, an odd last pair at the next 12.
            let loads = pairs.div_ceil(2);
            let reach = block
                .clone()
                .map(|j| 3 * (self.start[j] + 4 * (loads.max(1) - 1)) + 16)
                .max()
                .unwrap();
            let at = p.weights.len();
            p.pairs.push(pairs);
            p.at.push(at);
            p.reach.push(reach);
            // Registers of `8 * pixels` values: for each pair of taps 2m, 2m + 1, its lo then its
            // hi; in each, 8 per pixel: (tap, next tap) for R, G, B and a zero pair. Unused taps
            // and lanes stay zero.
            let reg = 8 * pixels;
            p.weights.resize(at + 2 * reg * pairs, 0);
            for (i, j) in block.clone().enumerate() {
                let w = &self.weights[j * self.ksize..j * self.ksize + self.len[j]];
                for (t, &wt) in w.iter().enumerate() {
                    let (pair, second) = (t / 2, t % 2);
                    let lo = at + 2 * pair * reg + 8 * i + second;
                    for c in 0..3 {
                        p.weights[lo + 2 * c] = (wt & 0x7fff) as i16;
                        p.weights[lo + reg + 2 * c] = (wt >> 15) as i16;
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Per-worker buffers for [`Resampler::resize_crop`].
#[derive(Default)]
pub struct Resampler {
    horiz: Taps,
    vert: Taps,
    temp: Vec<u8>,
    acc: Vec<i32>,
}

impl Resampler {
    /// Resizes the `cw x ch` box at (`cx`, `cy`) of the RGB image `src` (`src_width` pixels per
    /// row) to `out_w x out_h` RGB pixels in `out`, as Pillow's crop + bicubic resize.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_crop(
        &mut self,
        src: &[u8],
        src_width: usize,
        (cx, cy, cw, ch): (usize, usize, usize, usize),
        out_w: usize,
        out_h: usize,
        out: &mut [u8],
    ) {
        assert!(cw > 0 && ch > 0 && out_w > 0 && out_h > 0);
        assert!(cx + cw <= src_width && (cy + ch) * src_width * 3 <= src.len());
        assert_eq!(out.len(), out_w * out_h * 3);
        let stride = src_width * 3;
        let need_h = cw != out_w;
        let need_v = ch != out_h;
        if !need_h && !need_v {
            for y in 0..ch {
                let row = (cy + y) * stride + cx * 3;
                out[y * out_w * 3..(y + 1) * out_w * 3].copy_from_slice(&src[row..row + cw * 3]);
            }
            return;
        }
        // Pillow 13 (PR #9549) runs the vertical pass first when the height shrinks by more than
        // twice as many pixels as the width; the order changes the u8 rounding in between.
        let vertical_first = need_h
            && need_v
            && ch > out_h
            && (ch as i64 - out_h as i64) > 2 * (cw as i64 - out_w as i64);
        if need_v {
            self.vert.compute(ch, out_h);
        }
        if need_h {
            self.horiz.compute(cw, out_w);
            self.horiz.regroup_for_level();
        }
        let src_off = cy * stride + cx * 3;
        if vertical_first {
            let temp = grown(&mut self.temp, out_h * cw * 3);
            vertical(&self.vert, src, stride, src_off, 0, cw, temp, &mut self.acc);
            horizontal(&self.horiz, temp, cw * 3, 0, out_h, out);
            return;
        }
        if !need_v {
            horizontal(&self.horiz, src, stride, src_off, ch, out);
            return;
        }
        if !need_h {
            vertical(&self.vert, src, stride, src_off, 0, cw, out, &mut self.acc);
            return;
        }
        // Horizontal pass over only the rows the vertical pass reads, then the vertical pass.
        let last = out_h - 1;
        let (y_first, y_last) = (
            self.vert.start[0],
            self.vert.start[last] + self.vert.len[last],
        );
        let rows = y_last - y_first;
        let temp = grown(&mut self.temp, rows * out_w * 3);
        horizontal(
            &self.horiz,
            src,
            stride,
            src_off + y_first * stride,
            rows,
            temp,
        );
        vertical(
            &self.vert,
            temp,
            out_w * 3,
            0,
            y_first,
            out_w,
            out,
            &mut self.acc,
        );
    }
}

/// The first `n` bytes of `buf`, grown (zero-filled) only when shorter: the intermediate image
/// between the passes is written in full before it is read, so re-zeroing it on every resize
/// that grows it back (a memset per view, crop sizes being random) is wasted.
fn grown(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    &mut buf[..n]
}

/// Horizontal pass: `rows` rows of `input` (row r at `off + r * stride`) -> `out` (rows x taps).
fn horizontal(k: &Taps, input: &[u8], stride: usize, off: usize, rows: usize, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::vbmi() {
        // SAFETY: the CPU supports AVX-512 F/BW/VL and VBMI (checked just above).
        unsafe { horizontal_avx512(k, input, stride, off, rows, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX512BW {
        // SAFETY: the CPU supports AVX-512 F/BW (`level` checked it).
        unsafe { horizontal_avx512bw(k, input, stride, off, rows, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX2 {
        // SAFETY: the CPU supports AVX2 (`level` checked it).
        unsafe { horizontal_avx2(k, input, stride, off, rows, out) };
        return;
    }
    horizontal_scalar(k, input, stride, off, rows, out);
}

fn horizontal_scalar(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    let out_w = k.start.len();
    for (r, dst_row) in out.chunks_exact_mut(out_w * 3).take(rows).enumerate() {
        let row = &input[off + r * stride..];
        for xx in 0..out_w {
            dst_row[xx * 3..xx * 3 + 3].copy_from_slice(&h_pixel_scalar(k, row, xx));
        }
    }
}

#[inline(always)]
fn h_pixel_scalar(k: &Taps, row: &[u8], xx: usize) -> [u8; 3] {
    let (xmin, n) = (k.start[xx], k.len[xx]);
    let w = &k.weights[xx * k.ksize..xx * k.ksize + n];
    let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
    for (x, &wx) in w.iter().enumerate() {
        let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
        ss[0] += p[0] as i32 * wx;
        ss[1] += p[1] as i32 * wx;
        ss[2] += p[2] as i32 * wx;
    }
    [clip8(ss[0]), clip8(ss[1]), clip8(ss[2])]
}

/// The horizontal pass [`Blocks`] of two output pixels at a time (AVX2).
///
/// # Safety
/// The CPU must support AVX2; `k.blocks` must have 2 pixels per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    horizontal_blocks::<std::arch::x86_64::__m256i>(k, input, stride, off, rows, out)
}

/// The horizontal pass [`Blocks`] of four output pixels at a time (AVX-512 F/BW).
///
/// # Safety
/// The CPU must support AVX-512 F/BW; `k.blocks` must have 4 pixels per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn horizontal_avx512bw(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    horizontal_blocks::<std::arch::x86_64::__m512i>(k, input, stride, off, rows, out)
}

/// The horizontal pass one [`Blocks`] block down all the rows before the next (its weights stay
/// in registers): per row and 4 taps, one 16-byte load per pixel (one per 128-bit lane), two
/// byte shuffles that widen taps 0-1 and 2-3 of each channel to 16-bit pairs, and four `madd`s
/// (low and high weight parts); an odd last pair of taps takes one shuffle and two `madd`s (5 or
/// 6 taps cost 3 pairs, not 4). Rows go two at a time into one narrowing and one store each
/// (the rounding term starts the low sum). Same sums as the scalar pass; rows where a block's loads would
/// leave `input`, and the pixels past the last whole block, go through the per-pixel code.
/// Inlined into the per-level entry points above, whose target features the register's
/// operations need.
///
/// # Safety
/// The CPU must support `R`'s instructions; `k.blocks` must have `R::PIXELS` pixels per block.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn horizontal_blocks<R: BlockRegister>(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    let out_w = k.start.len();
    let row_bytes = out_w * 3;
    let p = &k.blocks;
    assert!(out.len() >= rows * row_bytes && stride > 0 && p.pixels == R::PIXELS);
    if rows == 0 {
        return;
    }
    assert!(off + (rows - 1) * stride <= input.len());
    let avail = input.len() - off;
    let per_pixel = |out: &mut [u8], r: usize, xx: usize| {
        let row = &input[off + r * stride..];
        let px = h_pixel(k, row, sse_safe(row), xx);
        out[r * row_bytes + xx * 3..r * row_bytes + xx * 3 + 3].copy_from_slice(&px);
    };
    for (bi, &pairs) in p.pairs.iter().enumerate() {
        let j = R::PIXELS * bi;
        // Rows r whose loads end inside `input`: off + r * stride + reach <= input.len().
        let vector_rows = match avail.checked_sub(p.reach[bi]) {
            Some(spare) => (spare / stride + 1).min(rows),
            None => 0,
        };
        let block = BlockRows {
            src: std::array::from_fn(|i| {
                input
                    .as_ptr()
                    .add(off + 3 * k.start[j + i.min(R::PIXELS - 1)])
            }),
            stride,
            dst: out.as_mut_ptr().add(3 * j),
            row_bytes,
            weights: p.weights.as_ptr().add(p.at[bi]),
            // The row's bytes after this block (later blocks, the per-pixel tail) take the spill.
            spill: row_bytes - 3 * (j + R::PIXELS) >= R::SPILL,
        };
        // SAFETY (all arms): rows below `vector_rows` load inside `input`; the bytes written per
        // row are this block's pixels of that row of `out`.
        match pairs {
            1 => block.run::<R, 1>(vector_rows),
            2 => block.run::<R, 2>(vector_rows),
            3 => block.run::<R, 3>(vector_rows),
            4 => block.run::<R, 4>(vector_rows),
            5 => block.run::<R, 5>(vector_rows),
            6 => block.run::<R, 6>(vector_rows),
            _ => block.run_any::<R>(pairs, vector_rows),
        }
        for r in vector_rows..rows {
            for xx in j..j + R::PIXELS {
                per_pixel(out, r, xx);
            }
        }
    }
    for xx in out_w / R::PIXELS * R::PIXELS..out_w {
        for r in 0..rows {
            per_pixel(out, r, xx);
        }
    }
}

/// The register operations of [`horizontal_blocks`]: 256-bit (AVX2, 2 pixels) or 512-bit
/// (AVX-512 BW, 4 pixels), one output pixel per 128-bit lane.
#[cfg(target_arch = "x86_64")]
trait BlockRegister: Copy {
    /// Output pixels per register.
    const PIXELS: usize;
    /// Zero.
    unsafe fn zero() -> Self;
    /// 16 bytes at `src[i] + at` into lane `i`.
    unsafe fn load_pixels(src: &[*const u8; 4], at: usize) -> Self;
    /// A register of weights.
    unsafe fn load_weights(w: *const i16) -> Self;
    /// Per lane, bytes c and 3 + c (`shift` 0: taps 0 and 1 of channel c) or 6 + c and 9 + c
    /// (`shift` 6: taps 2 and 3), widened to 16-bit pairs; the fourth 32-bit lane zero.
    unsafe fn widen<const SHIFT: i8>(self) -> Self;
    /// `acc + madd(pairs, weights)`.
    unsafe fn madd_add(acc: Self, pairs: Self, weights: Self) -> Self;
    /// The rounding term `2^(PRECISION_BITS - 1)` in every 32-bit lane (the low sum starts there).
    unsafe fn half() -> Self;
    /// `((hi << 15) + lo) >> PRECISION_BITS` per 32-bit lane (`lo` already holds the rounding).
    unsafe fn finish(lo: Self, hi: Self) -> Self;
    /// Two rows' results ([`BlockRegister::finish`]) clamped to bytes: lane `i`'s first three
    /// bytes to `dst_a + 3 * i` and `dst_b + 3 * i`. With `spill`, each row's store may write
    /// [`BlockRegister::SPILL`] bytes past the block's pixels (which a later block or the
    /// per-pixel tail of the same row writes again); without it, exactly the block's bytes.
    unsafe fn store_rows(a: Self, b: Self, dst_a: *mut u8, dst_b: *mut u8, spill: bool);
    /// Bytes a spilling [`BlockRegister::store_rows`] writes past a row's block.
    const SPILL: usize;
    /// The most pairs of taps with which two rows are summed together (their weights and sums in
    /// registers at once).
    const MAX_PAIRS_TWO_ROWS: usize;
}

/// Per-lane shuffle control of [`BlockRegister::widen`].
#[cfg(target_arch = "x86_64")]
const fn widen_control(shift: i8) -> [i8; 16] {
    let s = shift;
    [
        s,
        -1,
        s + 3,
        -1,
        s + 1,
        -1,
        s + 4,
        -1,
        s + 2,
        -1,
        s + 5,
        -1,
        -1,
        -1,
        -1,
        -1,
    ]
}

#[cfg(target_arch = "x86_64")]
impl BlockRegister for std::arch::x86_64::__m256i {
    const PIXELS: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn zero() -> Self {
        std::arch::x86_64::_mm256_setzero_si256()
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_pixels(src: &[*const u8; 4], at: usize) -> Self {
        use std::arch::x86_64::*;
        // A broadcast from memory and a blend: no shuffle-port insert.
        let low = _mm256_castsi128_si256(_mm_loadu_si128(src[0].add(at) as *const _));
        let high = _mm256_broadcastsi128_si256(_mm_loadu_si128(src[1].add(at) as *const _));
        _mm256_blend_epi32::<0xf0>(low, high)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_weights(w: *const i16) -> Self {
        std::arch::x86_64::_mm256_loadu_si256(w as *const _)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn widen<const SHIFT: i8>(self) -> Self {
        use std::arch::x86_64::*;
        let c = widen_control(SHIFT);
        let c = _mm_loadu_si128(c.as_ptr() as *const _);
        _mm256_shuffle_epi8(self, _mm256_broadcastsi128_si256(c))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn madd_add(acc: Self, pairs: Self, weights: Self) -> Self {
        use std::arch::x86_64::*;
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, weights))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn half() -> Self {
        std::arch::x86_64::_mm256_set1_epi32(1 << (PRECISION_BITS - 1))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn finish(lo: Self, hi: Self) -> Self {
        use std::arch::x86_64::*;
        let sum = _mm256_add_epi32(_mm256_slli_epi32::<15>(hi), lo);
        _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(sum)
    }
    const SPILL: usize = 2;
    const MAX_PAIRS_TWO_ROWS: usize = 4;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store_rows(a: Self, b: Self, dst_a: *mut u8, dst_b: *mut u8, spill: bool) {
        use std::arch::x86_64::*;
        // Per lane (pixel i): a's channels then b's as 16-bit, then bytes; the permute gathers
        // a's two pixels then b's two into the low 128 bits, the shuffle packs each row's 6 bytes
        // into its own 8-byte half.
        let v = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_setzero_si256());
        let v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
        let v = _mm_shuffle_epi8(
            _mm256_castsi256_si128(v),
            _mm_setr_epi8(0, 1, 2, 4, 5, 6, -1, -1, 8, 9, 10, 12, 13, 14, -1, -1),
        );
        if spill {
            _mm_storel_epi64(dst_a as *mut _, v);
            _mm_storeh_pd(dst_b as *mut f64, _mm_castsi128_pd(v));
        } else {
            let (x, y) = (
                _mm_cvtsi128_si64(v) as u64,
                _mm_extract_epi64::<1>(v) as u64,
            );
            (dst_a as *mut u32).write_unaligned(x as u32);
            (dst_a.add(4) as *mut u16).write_unaligned((x >> 32) as u16);
            (dst_b as *mut u32).write_unaligned(y as u32);
            (dst_b.add(4) as *mut u16).write_unaligned((y >> 32) as u16);
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl BlockRegister for std::arch::x86_64::__m512i {
    const PIXELS: usize = 4;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn zero() -> Self {
        std::arch::x86_64::_mm512_setzero_si512()
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn load_pixels(src: &[*const u8; 4], at: usize) -> Self {
        use std::arch::x86_64::*;
        let lane = |i: usize| _mm_loadu_si128(src[i].add(at) as *const _);
        // Masked broadcasts from memory: no shuffle-port inserts.
        let v = _mm512_castsi128_si512(lane(0));
        let v = _mm512_mask_broadcast_i32x4(v, 0x00f0, lane(1));
        let v = _mm512_mask_broadcast_i32x4(v, 0x0f00, lane(2));
        _mm512_mask_broadcast_i32x4(v, 0xf000, lane(3))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn load_weights(w: *const i16) -> Self {
        std::arch::x86_64::_mm512_loadu_si512(w as *const _)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn widen<const SHIFT: i8>(self) -> Self {
        use std::arch::x86_64::*;
        let c = widen_control(SHIFT);
        let c = _mm_loadu_si128(c.as_ptr() as *const _);
        _mm512_shuffle_epi8(self, _mm512_broadcast_i32x4(c))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn madd_add(acc: Self, pairs: Self, weights: Self) -> Self {
        use std::arch::x86_64::*;
        _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, weights))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn half() -> Self {
        std::arch::x86_64::_mm512_set1_epi32(1 << (PRECISION_BITS - 1))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn finish(lo: Self, hi: Self) -> Self {
        use std::arch::x86_64::*;
        let sum = _mm512_add_epi32(_mm512_slli_epi32::<15>(hi), lo);
        _mm512_srai_epi32::<{ PRECISION_BITS }>(sum)
    }
    const SPILL: usize = 4;
    const MAX_PAIRS_TWO_ROWS: usize = 12;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn store_rows(a: Self, b: Self, dst_a: *mut u8, dst_b: *mut u8, spill: bool) {
        use std::arch::x86_64::*;
        // Per lane (pixel i): a's channels then b's, as bytes; the permute gathers a's four
        // pixels into the low 128 bits and b's into the next, the shuffle packs each row's 12
        // bytes at the start of its 128 bits.
        let v = _mm512_packus_epi16(_mm512_packs_epi32(a, b), _mm512_setzero_si512());
        let v = _mm512_castsi512_si256(_mm512_permutexvar_epi32(
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0),
            v,
        ));
        let pack = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
        let v = _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(pack));
        let (x, y) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        if spill {
            _mm_storeu_si128(dst_a as *mut _, x);
            _mm_storeu_si128(dst_b as *mut _, y);
        } else {
            for (dst, v) in [(dst_a, x), (dst_b, y)] {
                (dst as *mut u64).write_unaligned(_mm_cvtsi128_si64(v) as u64);
                (dst.add(8) as *mut u32).write_unaligned(_mm_extract_epi32::<2>(v) as u32);
            }
        }
    }
}

/// One block of output pixels of [`horizontal_blocks`]: where its pixels' taps start in the
/// first row (unused lanes repeat the last pixel), where its output goes, its weights, and
/// whether its stores may spill past it ([`BlockRegister::store_rows`]).
#[cfg(target_arch = "x86_64")]
struct BlockRows {
    src: [*const u8; 4],
    stride: usize,
    dst: *mut u8,
    row_bytes: usize,
    weights: *const i16,
    spill: bool,
}

#[cfg(target_arch = "x86_64")]
impl BlockRows {
    /// The block's first `rows` rows, two at a time (one store for both), with `PAIRS` pairs of
    /// taps and the weights held in registers.
    ///
    /// # Safety
    /// `R`'s instructions; each row's loads (`12 * (ceil(PAIRS / 2) - 1) + 16` bytes from each
    /// `src`) and its store (with the spill, if `spill`) must be in bounds.
    #[inline(always)]
    unsafe fn run<R: BlockRegister, const PAIRS: usize>(&self, rows: usize) {
        let weights: [[R; 2]; PAIRS] = std::array::from_fn(|m| InMemory(self.weights).pair(m));
        self.rows_in_pairs(rows, PAIRS, &weights);
    }

    /// [`BlockRows::run`] for any number of pairs, loading the weights per row.
    ///
    /// # Safety
    /// As [`BlockRows::run`].
    #[inline(always)]
    unsafe fn run_any<R: BlockRegister>(&self, pairs: usize, rows: usize) {
        self.rows_in_pairs::<R, _>(rows, pairs, &InMemory(self.weights));
    }

    /// The first `rows` rows, stored two rows at a time (an odd last row, and every row when
    /// there are more than [`BlockRegister::MAX_PAIRS_TWO_ROWS`] pairs, stored as a pair with
    /// itself). (No closures here or below: a closure would not be inlined into the caller's
    /// target features, and every register operation would become a call.)
    #[inline(always)]
    unsafe fn rows_in_pairs<R: BlockRegister, W: PairWeights<R>>(
        &self,
        rows: usize,
        pairs: usize,
        weights: &W,
    ) {
        let mut r = 0;
        // With more pairs, two rows' sums beside the weights would not fit in the registers.
        let two_rows = pairs <= R::MAX_PAIRS_TWO_ROWS;
        while two_rows && r + 2 <= rows {
            let (a, b) = (self.row(r, pairs, weights), self.row(r + 1, pairs, weights));
            let dst = self.dst.add(r * self.row_bytes);
            R::store_rows(a, b, dst, dst.add(self.row_bytes), self.spill);
            r += 2;
        }
        while r < rows {
            let v = self.row(r, pairs, weights);
            let dst = self.dst.add(r * self.row_bytes);
            R::store_rows(v, v, dst, dst, self.spill);
            r += 1;
        }
    }

    /// Row `r`'s sums over `pairs` pairs of taps, finished.
    #[inline(always)]
    unsafe fn row<R: BlockRegister, W: PairWeights<R>>(
        &self,
        r: usize,
        pairs: usize,
        weights: &W,
    ) -> R {
        let (mut lo, mut hi) = (R::half(), R::zero());
        for q in 0..pairs / 2 {
            let v = self.load::<R>(r, q);
            Self::pair(v.widen::<0>(), weights.pair(2 * q), &mut lo, &mut hi);
            Self::pair(v.widen::<6>(), weights.pair(2 * q + 1), &mut lo, &mut hi);
        }
        if pairs % 2 == 1 {
            let v = self.load::<R>(r, pairs / 2);
            Self::pair(v.widen::<0>(), weights.pair(pairs - 1), &mut lo, &mut hi);
        }
        R::finish(lo, hi)
    }

    /// Taps `4q..4q + 4` of row `r`, one 16-byte load per pixel.
    #[inline(always)]
    unsafe fn load<R: BlockRegister>(&self, r: usize, q: usize) -> R {
        R::load_pixels(&self.src, r * self.stride + 12 * q)
    }

    /// One pair of taps (widened pixels) times its low and high weights, added into the sums.
    #[inline(always)]
    unsafe fn pair<R: BlockRegister>(v: R, w: [R; 2], lo: &mut R, hi: &mut R) {
        *lo = R::madd_add(*lo, v, w[0]);
        *hi = R::madd_add(*hi, v, w[1]);
    }
}

/// Where [`BlockRows::row`] gets a pair of taps' low and high weights: registers loaded once per
/// block, or memory read per row.
#[cfg(target_arch = "x86_64")]
trait PairWeights<R> {
    /// Pair `m`'s low and high weights.
    unsafe fn pair(&self, m: usize) -> [R; 2];
}

#[cfg(target_arch = "x86_64")]
impl<R: Copy, const P: usize> PairWeights<R> for [[R; 2]; P] {
    #[inline(always)]
    unsafe fn pair(&self, m: usize) -> [R; 2] {
        self[m]
    }
}

/// A block's weights in [`Blocks::weights`], from the block's first.
#[cfg(target_arch = "x86_64")]
struct InMemory(*const i16);

#[cfg(target_arch = "x86_64")]
impl<R: BlockRegister> PairWeights<R> for InMemory {
    #[inline(always)]
    unsafe fn pair(&self, m: usize) -> [R; 2] {
        let at = |i: usize| R::load_weights(self.0.add(i * 8 * R::PIXELS));
        [at(2 * m), at(2 * m + 1)]
    }
}

/// How many leading pixels of `row` [`h_pixel_sse`]'s 4-byte loads may read.
#[inline(always)]
fn sse_safe(row: &[u8]) -> usize {
    row.len().saturating_sub(1) / 3
}

/// One output pixel of the horizontal pass: [`h_pixel_sse`] where all its taps lie in the first
/// `safe` pixels of `row` (see [`sse_safe`]), else [`h_pixel_scalar`]. Same bytes either way.
/// Inlined into its AVX2 / AVX-512 callers (no target feature of its own, so that it can be).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn h_pixel(k: &Taps, row: &[u8], safe: usize, xx: usize) -> [u8; 3] {
    if k.start[xx] + k.len[xx] > safe {
        h_pixel_scalar(k, row, xx)
    } else {
        // SAFETY: every tap's 4-byte load lies inside `row`.
        h_pixel_sse(k, row, xx)
    }
}

/// The horizontal pass [`GROUP`] output pixels at a time (see [`Groups`]) and two rows at a time
/// (sharing the permutation and the weights): per tap and row, one masked 64-byte load, one byte
/// permutation, a widening to 16 i32 lanes, a multiply and an add. Same sums as the scalar pass;
/// groups it cannot take go through [`horizontal_avx2`]'s per-pixel code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
unsafe fn horizontal_avx512(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    let out_w = k.start.len();
    let g = &k.groups;
    let half = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
    let zero = _mm512_setzero_si512();
    // The 64-byte window at byte `at` of `row`, bytes past the end of `row` read as zero.
    let window = |row: &[u8], at: usize| -> __m512i {
        let avail = row.len().saturating_sub(at).min(64);
        let mask: u64 = if avail >= 64 {
            u64::MAX
        } else {
            (1u64 << avail) - 1
        };
        // SAFETY: the mask covers only bytes inside `row`.
        _mm512_maskz_loadu_epi8(mask, row.as_ptr().add(at.min(row.len())) as *const i8)
    };
    // The per-pixel pass for a group the vector code cannot take.
    let per_pixel = |row: &[u8], dst_row: &mut [u8], first: usize| {
        let safe = sse_safe(row);
        for xx in first..(first + GROUP).min(out_w) {
            dst_row[xx * 3..xx * 3 + 3].copy_from_slice(&h_pixel(k, row, safe, xx));
        }
    };
    let finish = |acc: __m512i| -> __m128i {
        let v = _mm512_max_epi32(_mm512_srai_epi32::<{ PRECISION_BITS }>(acc), zero);
        _mm512_cvtusepi32_epi8(v)
    };
    let row_bytes = out_w * 3;
    let mut r = 0;
    while r < rows {
        let pair = r + 1 < rows;
        let (row0, row1) = (
            &input[off + r * stride..],
            &input[off + (r + pair as usize) * stride..],
        );
        let (dst0, rest) = out[r * row_bytes..].split_at_mut(row_bytes);
        let dst1 = if pair {
            &mut rest[..row_bytes]
        } else {
            &mut [][..]
        };
        for (gi, &taps) in g.taps.iter().enumerate() {
            let first = GROUP * gi;
            if taps == 0 {
                per_pixel(row0, dst0, first);
                if pair {
                    per_pixel(row1, dst1, first);
                }
                continue;
            }
            let index =
                _mm512_castsi128_si512(_mm_loadu_si128(g.index[gi].as_ptr() as *const __m128i));
            let weights = g.weights.as_ptr().add(g.at[gi]);
            let (mut acc0, mut acc1) = (half, half);
            for t in 0..taps {
                let at = (g.base[gi] + t) * 3;
                let w = _mm512_loadu_si512(weights.add(16 * t) as *const _);
                let v0 = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_permutexvar_epi8(
                    index,
                    window(row0, at),
                )));
                acc0 = _mm512_add_epi32(acc0, _mm512_mullo_epi32(v0, w));
                if pair {
                    let v1 = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_permutexvar_epi8(
                        index,
                        window(row1, at),
                    )));
                    acc1 = _mm512_add_epi32(acc1, _mm512_mullo_epi32(v1, w));
                }
            }
            // SAFETY: the group is full, so its 15 bytes at first * 3 lie inside the row.
            _mm_mask_storeu_epi8(
                dst0.as_mut_ptr().add(first * 3) as *mut i8,
                0x7FFF,
                finish(acc0),
            );
            if pair {
                _mm_mask_storeu_epi8(
                    dst1.as_mut_ptr().add(first * 3) as *mut i8,
                    0x7FFF,
                    finish(acc1),
                );
            }
        }
        r += 2;
    }
}

/// One output pixel of the horizontal pass with SSE4.1 (its 4-byte loads must stay in `row`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn h_pixel_sse(k: &Taps, row: &[u8], xx: usize) -> [u8; 3] {
    use std::arch::x86_64::*;
    let (xmin, n) = (k.start[xx], k.len[xx]);
    let w = &k.weights[xx * k.ksize..xx * k.ksize + n];
    let base = row.as_ptr().add(xmin * 3);
    let mut acc = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
    for (x, &wx) in w.iter().enumerate() {
        let v = _mm_cvtsi32_si128((base.add(3 * x) as *const i32).read_unaligned());
        let v = _mm_cvtepu8_epi32(v);
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(v, _mm_set1_epi32(wx)));
    }
    let v = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(acc);
    let v = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
    let b = (_mm_cvtsi128_si32(v) as u32).to_le_bytes();
    [b[0], b[1], b[2]]
}

/// Vertical pass over `width` pixels per row: output row yy reads input rows
/// `start[yy] - row_shift ..` (row r at `off + r * stride`): [`vertical_avx2`] at the AVX2 level,
/// else [`vertical_portable`] (whose AVX-512 copy was measured faster than `vertical_avx2` at
/// the AVX-512 levels: 16 i32 lanes per multiply against 8 `madd` pairs).
#[allow(clippy::too_many_arguments)]
fn vertical(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    row_shift: usize,
    width: usize,
    out: &mut [u8],
    acc: &mut Vec<i32>,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::AVX2 {
        // SAFETY: the CPU supports AVX2 (`level` checked it).
        unsafe { vertical_avx2(k, input, stride, off, row_shift, width, out, acc) };
        return;
    }
    vertical_portable(k, input, stride, off, row_shift, width, out, acc);
}

/// [`vertical`] 32 bytes of a row at a time (then 16), taps in pairs: the two rows' bytes
/// widened to 16-bit pairs (row y, row y + 1) and multiplied by the taps' weights, split as in
/// [`Blocks`] into 15-bit halves, with `madd`; an odd last tap is paired with a zero weight. The
/// bytes past the last multiple of 16 are summed as in [`vertical_portable`]. `pair_weights` is
/// the per-worker scratch the portable pass keeps its sums in (so no allocation per call).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn vertical_avx2(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    row_shift: usize,
    width: usize,
    out: &mut [u8],
    pair_weights: &mut Vec<i32>,
) {
    use std::arch::x86_64::*;
    let len = width * 3;
    let half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
    for (yy, dst_row) in out.chunks_exact_mut(len).enumerate().take(k.start.len()) {
        let (ymin, n) = (k.start[yy] - row_shift, k.len[yy]);
        let w = &k.weights[yy * k.ksize..yy * k.ksize + n];
        let first = off + ymin * stride;
        // Every row this output row reads lies inside `input`.
        assert!(first + (n - 1) * stride + len <= input.len());
        // Per pair of taps: (lo, lo) and (hi, hi) of the two weights as 16-bit pairs.
        pair_weights.clear();
        for t in (0..n).step_by(2) {
            let (a, b) = (w[t], if t + 1 < n { w[t + 1] } else { 0 });
            let pack = |x: i32, y: i32| (x as u16 as u32 | (y as u16 as u32) << 16) as i32;
            pair_weights.push(pack(a & 0x7fff, b & 0x7fff));
            pair_weights.push(pack(a >> 15, b >> 15));
        }
        let rows = |t: usize| input.as_ptr().add(first + t.min(n - 1) * stride);
        let finish = |lo: __m256i, hi: __m256i| {
            // (`lo` started at the rounding term.)
            let sum = _mm256_add_epi32(_mm256_slli_epi32::<15>(hi), lo);
            _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(sum)
        };
        // 32 bytes per step: the two rows' bytes interleaved by in-lane unpacks, then widened
        // by in-lane unpacks with zero into four registers of (row a, row b) 16-bit pairs
        // (bytes 0-3, 4-7, 8-11, 12-15 of each 128-bit lane), which the in-lane packs at the
        // end put back in order (no lane-crossing permute).
        let zero = _mm256_setzero_si256();
        let mut x = 0;
        while x + 32 <= len {
            let mut lo = [half; 4];
            let mut hi = [zero; 4];
            for (pt, ws) in pair_weights.chunks_exact(2).enumerate() {
                // SAFETY: 32 bytes at x + 32 <= len of rows inside `input` (asserted above); a
                // missing second tap re-reads the last row, with zero weight.
                let a = _mm256_loadu_si256(rows(2 * pt).add(x) as *const _);
                let b = _mm256_loadu_si256(rows(2 * pt + 1).add(x) as *const _);
                let (ab0, ab1) = (_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b));
                let p = [
                    _mm256_unpacklo_epi8(ab0, zero),
                    _mm256_unpackhi_epi8(ab0, zero),
                    _mm256_unpacklo_epi8(ab1, zero),
                    _mm256_unpackhi_epi8(ab1, zero),
                ];
                let (wl, wh) = (_mm256_set1_epi32(ws[0]), _mm256_set1_epi32(ws[1]));
                for i in 0..4 {
                    lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(p[i], wl));
                    hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(p[i], wh));
                }
            }
            let v01 = _mm256_packs_epi32(finish(lo[0], hi[0]), finish(lo[1], hi[1]));
            let v23 = _mm256_packs_epi32(finish(lo[2], hi[2]), finish(lo[3], hi[3]));
            _mm256_storeu_si256(
                dst_row.as_mut_ptr().add(x) as *mut _,
                _mm256_packus_epi16(v01, v23),
            );
            x += 32;
        }
        // Then 16 bytes at a step.
        while x + 16 <= len {
            let (mut lo0, mut lo1, mut hi0, mut hi1) = (half, half, zero, zero);
            for (pt, ws) in pair_weights.chunks_exact(2).enumerate() {
                // SAFETY: as above, 16 bytes at x + 16 <= len.
                let a = _mm256_cvtepu8_epi16(_mm_loadu_si128(rows(2 * pt).add(x) as *const _));
                let b = _mm256_cvtepu8_epi16(_mm_loadu_si128(rows(2 * pt + 1).add(x) as *const _));
                let (p0, p1) = (_mm256_unpacklo_epi16(a, b), _mm256_unpackhi_epi16(a, b));
                let (wl, wh) = (_mm256_set1_epi32(ws[0]), _mm256_set1_epi32(ws[1]));
                lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(p0, wl));
                lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(p1, wl));
                hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(p0, wh));
                hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(p1, wh));
            }
            // The in-lane unpacks above are undone by the in-lane packs.
            let v = _mm256_packs_epi32(finish(lo0, hi0), finish(lo1, hi1));
            let v =
                _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi16(v, _mm256_setzero_si256()));
            _mm_storeu_si128(
                dst_row.as_mut_ptr().add(x) as *mut _,
                _mm256_castsi256_si128(v),
            );
            x += 16;
        }
        let vec_len = x;
        for x in vec_len..len {
            let mut ss = 1i32 << (PRECISION_BITS - 1);
            for (t, &wt) in w.iter().enumerate() {
                ss += input[first + t * stride + x] as i32 * wt;
            }
            dst_row[x] = clip8(ss);
        }
    }
}

crate::simd::multiversion! {
    /// [`vertical`] in portable code. Each tap adds a whole input row (times its weight) into a
    /// row of i32 sums, so the inner loop is element-wise and vectorises.
    fn vertical_portable(
        k: &Taps,
        input: &[u8],
        stride: usize,
        off: usize,
        row_shift: usize,
        width: usize,
        out: &mut [u8],
        acc: &mut Vec<i32>,
    ) {
        let len = width * 3;
        acc.resize(len, 0);
        let acc = &mut acc[..len];
        // Columns in chunks of CHUNK bytes, all taps of a chunk summed in registers before the next.
        const CHUNK: usize = 64;
        for (yy, dst_row) in out.chunks_exact_mut(len).enumerate().take(k.start.len()) {
            let (ymin, n) = (k.start[yy] - row_shift, k.len[yy]);
            let w = &k.weights[yy * k.ksize..yy * k.ksize + n];
            let first = off + ymin * stride;
            let mut x0 = 0;
            while x0 + CHUNK <= len {
                let mut sums = [1i32 << (PRECISION_BITS - 1); CHUNK];
                for (y, &wy) in w.iter().enumerate() {
                    let at = first + y * stride + x0;
                    let row: &[u8; CHUNK] = input[at..at + CHUNK].try_into().unwrap();
                    for (a, &p) in sums.iter_mut().zip(row) {
                        *a += p as i32 * wy;
                    }
                }
                for (d, &a) in dst_row[x0..x0 + CHUNK].iter_mut().zip(sums.iter()) {
                    *d = clip8(a);
                }
                x0 += CHUNK;
            }
            if x0 < len {
                let tail = &mut acc[x0..len];
                tail.fill(1i32 << (PRECISION_BITS - 1));
                for (y, &wy) in w.iter().enumerate() {
                    let at = first + y * stride;
                    for (a, &p) in tail.iter_mut().zip(&input[at + x0..at + len]) {
                        *a += p as i32 * wy;
                    }
                }
                for (d, &a) in dst_row[x0..].iter_mut().zip(tail.iter()) {
                    *d = clip8(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_horizontal_passes_equal_the_scalar_pass() {
        let (w, h) = (700usize, 3usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) >> 3) as u8).collect();
        let mut taps = Taps::default();
        for (cw, out_w) in [
            (700usize, 224usize),
            (100, 224),
            (7, 224),
            (224, 224),
            (650, 97),
            (30, 5),
            (699, 13),
            (700, 3),
            (11, 224),
            (223, 224),
            (500, 224),
            (400, 224),
            (650, 98),
            (30, 6),
            (300, 226),
        ] {
            taps.compute(cw, out_w);
            for x0 in [0, w - cw] {
                let mut want = vec![0u8; h * out_w * 3];
                horizontal_scalar(&taps, &src, w * 3, x0 * 3, h, &mut want);
                for (name, level) in crate::simd::LEVELS {
                    // 16 bytes past the output, which no store may touch.
                    let mut got = vec![0xa5u8; h * out_w * 3 + 16];
                    let ran = crate::simd::at_level(level, || {
                        taps.regroup_for_level();
                        horizontal(&taps, &src, w * 3, x0 * 3, h, &mut got);
                    });
                    match ran {
                        Some(()) => {
                            let (got, past) = got.split_at(h * out_w * 3);
                            assert!(got == want, "{name}: {cw} -> {out_w} at {x0}");
                            assert!(
                                past.iter().all(|&b| b == 0xa5),
                                "{name}: wrote past the end"
                            );
                        }
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
    }

    /// The vertical pass at every level against the portable pass (at the scalar level).
    #[test]
    fn vector_vertical_passes_equal_the_portable_pass() {
        let (w, h) = (37usize, 700usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) >> 3) as u8).collect();
        let mut taps = Taps::default();
        for (ch, out_h) in [
            (700usize, 224usize),
            (100, 224),
            (7, 224),
            (650, 97),
            (699, 13),
            (700, 3),
            (500, 224),
            (223, 224),
        ] {
            taps.compute(ch, out_h);
            for width in [37usize, 16, 5, 1] {
                let y0 = h - ch;
                let mut want = vec![0u8; out_h * width * 3];
                let mut acc = Vec::new();
                crate::simd::at_level(crate::simd::SCALAR, || {
                    vertical_portable(
                        &taps,
                        &src,
                        w * 3,
                        y0 * w * 3,
                        0,
                        width,
                        &mut want,
                        &mut acc,
                    )
                });
                for (name, level) in crate::simd::LEVELS {
                    let mut got = vec![0u8; out_h * width * 3];
                    let ran = crate::simd::at_level(level, || {
                        vertical(&taps, &src, w * 3, y0 * w * 3, 0, width, &mut got, &mut acc)
                    });
                    match ran {
                        Some(()) => assert!(got == want, "{name}: {ch} -> {out_h}, width {width}"),
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
    }

    #[test]
    fn flat_stays_flat_when_shrinking_and_enlarging() {
        let src = vec![123u8; 3 * 50 * 40];
        let mut r = Resampler::default();
        for (w, h) in [(7usize, 9usize), (224, 224), (50, 13)] {
            let mut out = vec![0u8; 3 * w * h];
            r.resize_crop(&src, 50, (3, 4, 40, 30), w, h, &mut out);
            assert!(out.iter().all(|&v| v == 123), "{w}x{h}");
        }
    }
}
