//! The resize passes with AVX2: the horizontal pass by blocks of output pixels (shared with the
//! AVX-512 F/BW pass through [`BlockRegister`]), the per-pixel SSE4.1 fallback, and the vertical
//! pass. Each is tested equal to the portable code at every level (see the parent's tests).

use super::{clip8, h_pixel_scalar, Taps, PRECISION_BITS};

/// The horizontal pass [`Blocks`](super::Blocks) of two output pixels at a time (AVX2).
///
/// # Safety
/// The CPU must support AVX2; `k.blocks` must have 2 pixels per block.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal_avx2(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    horizontal_blocks::<std::arch::x86_64::__m256i>(k, input, stride, off, rows, out)
}

/// The horizontal pass one [`Blocks`](super::Blocks) block down all the rows before the next (its weights stay
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
#[inline(always)]
pub(super) unsafe fn horizontal_blocks<R: BlockRegister>(
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
pub(super) trait BlockRegister: Copy {
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
pub(super) const fn widen_control(shift: i8) -> [i8; 16] {
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

/// One block of output pixels of [`horizontal_blocks`]: where its pixels' taps start in the
/// first row (unused lanes repeat the last pixel), where its output goes, its weights, and
/// whether its stores may spill past it ([`BlockRegister::store_rows`]).
struct BlockRows {
    src: [*const u8; 4],
    stride: usize,
    dst: *mut u8,
    row_bytes: usize,
    weights: *const i16,
    spill: bool,
}

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
trait PairWeights<R> {
    /// Pair `m`'s low and high weights.
    unsafe fn pair(&self, m: usize) -> [R; 2];
}

impl<R: Copy, const P: usize> PairWeights<R> for [[R; 2]; P] {
    #[inline(always)]
    unsafe fn pair(&self, m: usize) -> [R; 2] {
        self[m]
    }
}

/// A block's weights in [`Blocks::weights`], from the block's first.
struct InMemory(*const i16);

impl<R: BlockRegister> PairWeights<R> for InMemory {
    #[inline(always)]
    unsafe fn pair(&self, m: usize) -> [R; 2] {
        let at = |i: usize| R::load_weights(self.0.add(i * 8 * R::PIXELS));
        [at(2 * m), at(2 * m + 1)]
    }
}

/// How many leading pixels of `row` [`h_pixel_sse`]'s 4-byte loads may read.
#[inline(always)]
pub(super) fn sse_safe(row: &[u8]) -> usize {
    row.len().saturating_sub(1) / 3
}

/// One output pixel of the horizontal pass: [`h_pixel_sse`] where all its taps lie in the first
/// `safe` pixels of `row` (see [`sse_safe`]), else [`h_pixel_scalar`]. Same bytes either way.
/// Inlined into its AVX2 / AVX-512 callers (no target feature of its own, so that it can be).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
pub(super) unsafe fn h_pixel(k: &Taps, row: &[u8], safe: usize, xx: usize) -> [u8; 3] {
    if k.start[xx] + k.len[xx] > safe {
        h_pixel_scalar(k, row, xx)
    } else {
        // SAFETY: every tap's 4-byte load lies inside `row`.
        h_pixel_sse(k, row, xx)
    }
}

/// One output pixel of the horizontal pass with SSE4.1 (its 4-byte loads must stay in `row`).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn h_pixel_sse(k: &Taps, row: &[u8], xx: usize) -> [u8; 3] {
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

/// [`vertical`](super::vertical) 32 bytes of a row at a time (then 16), taps in pairs: the two rows' bytes
/// widened to 16-bit pairs (row y, row y + 1) and multiplied by the taps' weights, split as in
/// [`Blocks`](super::Blocks) into 15-bit halves, with `madd`; an odd last tap is paired with a zero weight. The
/// bytes past the last multiple of 16 are summed as in [`vertical_portable`](super::vertical_portable). `pair_weights` is
/// the per-worker scratch the portable pass keeps its sums in (so no allocation per call).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn vertical_avx2(
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
