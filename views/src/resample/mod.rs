//! Pillow's bicubic or bilinear resize of a crop (`img.crop(box).resize((w, h), BICUBIC)`, or
//! `BILINEAR`), bit-exact.
//!
//! Pillow's `Resample.c`: per output pixel a kernel of taps ([`Interpolation`]: `bicubic(a = -0.5)`
//! or the triangle), stretched by the
//! scale when shrinking (antialiasing), normalised in f64 and converted to 22-bit fixed point; a
//! horizontal pass (only over the rows the vertical pass needs) into a u8 intermediate, then a
//! vertical pass. The crop is read in place from the source image: Pillow's taps never leave the
//! cropped image, so the result is the same as cropping first, with no copy.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use serde::{Deserialize, Serialize};

const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Output pixels per group of the AVX-512 horizontal pass (3 channels each in 16 lanes).
#[cfg(target_arch = "x86_64")]
const GROUP: usize = 5;

/// The filter of a resize, as Pillow (and torchvision's `InterpolationMode`) names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Pillow's `BICUBIC` (a = -0.5, support 2): the paper's pipelines.
    #[default]
    Bicubic,
    /// Pillow's `BILINEAR` (the triangle, support 1), torchvision's `RandomResizedCrop` default.
    Bilinear,
}

impl Interpolation {
    /// For `skip_serializing_if`: the default is left out of JSON.
    pub fn is_bicubic(&self) -> bool {
        *self == Interpolation::Bicubic
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

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
    #[cfg(target_arch = "x86_64")]
    groups: Groups,
    #[cfg(target_arch = "x86_64")]
    blocks: Blocks,
}

/// The horizontal taps regrouped for the `madd` passes (AVX2, and AVX-512 on CPUs without VBMI):
/// output pixels in blocks of `pixels` (2 for a 256-bit register, 4 for a 512-bit one), one per
/// 128-bit lane, each with its channels in three 32-bit lanes (the fourth unused) that each hold
/// two taps as 16-bit values, multiplied and summed by `madd`. Pillow's 22-bit weights do not fit
/// 16 bits, so each is split as `w = hi * 2^15 + lo` (`lo` in `0..2^15`) and the two sums are
/// combined at the end; the combination wraps where the scalar pass's i32 sum would not, but the
/// true sum fits i32, so the wrapped result is the same.
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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
    fn compute(&mut self, in_size: usize, out_size: usize, interpolation: Interpolation) {
        match interpolation {
            Interpolation::Bicubic => self.compute_with(in_size, out_size, bicubic, 2.0),
            Interpolation::Bilinear => self.compute_with(in_size, out_size, bilinear, 1.0),
        }
    }

    /// [`Taps::compute`] with the kernel `filter` of support `support` (inlined per kernel).
    #[inline(always)]
    fn compute_with(
        &mut self,
        in_size: usize,
        out_size: usize,
        filter: impl Fn(f64) -> f64,
        support: f64,
    ) {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support * filterscale;
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
                let w = filter((x as f64 + xmin as f64 - center + 0.5) * ss);
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
    #[cfg(target_arch = "x86_64")]
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
    #[cfg(target_arch = "x86_64")]
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
    /// row) to `out_w x out_h` RGB pixels in `out`, as Pillow's crop + resize with `interpolation`.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_crop(
        &mut self,
        src: &[u8],
        src_width: usize,
        (cx, cy, cw, ch): (usize, usize, usize, usize),
        out_w: usize,
        out_h: usize,
        interpolation: Interpolation,
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
            self.vert.compute(ch, out_h, interpolation);
        }
        if need_h {
            self.horiz.compute(cw, out_w, interpolation);
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
        unsafe { avx512::horizontal_avx512(k, input, stride, off, rows, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX512BW {
        // SAFETY: the CPU supports AVX-512 F/BW (`level` checked it).
        unsafe { avx512::horizontal_avx512bw(k, input, stride, off, rows, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX2 {
        // SAFETY: the CPU supports AVX2 (`level` checked it).
        unsafe { avx2::horizontal_avx2(k, input, stride, off, rows, out) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        neon::horizontal_neon(k, input, stride, off, rows, out);
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
        unsafe { avx2::vertical_avx2(k, input, stride, off, row_shift, width, out, acc) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        neon::vertical_neon(k, input, stride, off, row_shift, width, out);
        return;
    }
    vertical_portable(k, input, stride, off, row_shift, width, out, acc);
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

    const BOTH: [Interpolation; 2] = [Interpolation::Bicubic, Interpolation::Bilinear];

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
            (700, 180),
            (700, 170),
            (700, 150),
        ] {
            for interpolation in BOTH {
                taps.compute(cw, out_w, interpolation);
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
                                assert!(
                                    got == want,
                                    "{name}: {cw} -> {out_w} at {x0}, {interpolation:?}"
                                );
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
            for interpolation in BOTH {
                taps.compute(ch, out_h, interpolation);
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
                            Some(()) => assert!(
                                got == want,
                                "{name}: {ch} -> {out_h}, width {width}, {interpolation:?}"
                            ),
                            None => crate::simd::say_skipped(name),
                        }
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
            for interpolation in BOTH {
                let mut out = vec![0u8; 3 * w * h];
                r.resize_crop(&src, 50, (3, 4, 40, 30), w, h, interpolation, &mut out);
                assert!(out.iter().all(|&v| v == 123), "{w}x{h} {interpolation:?}");
            }
        }
    }
}
