//! The horizontal resize pass with NEON (aarch64): one output pixel down all the rows before the
//! next, its weights held in registers. Per row, one 16-byte load covers five taps (15 bytes);
//! a `tbl` per tap widens the tap's three bytes to the 32-bit lanes R, G, B (the fourth zero) and
//! a multiply-accumulate adds them times the tap's weight, even and odd taps into two sums (two
//! dependency chains). Same i32 sums as the scalar pass, the same clamp (`sqshrun`, `uqshrn`);
//! rows where the loads would leave `input` go through the scalar code. Tested equal to the
//! portable code at every level (see the parent's tests).

use super::{h_pixel_scalar, Taps, PRECISION_BITS};
use std::arch::aarch64::*;

/// Taps per 16-byte load.
const PER_LOAD: usize = 5;
/// The most taps whose weights are held in registers ([`pixel_rows`]); more go through
/// [`pixel_rows_any`].
const MAX_HELD: usize = 16;

/// `tbl` control that widens tap `t` of a load (bytes `3t..3t + 3`) to three 32-bit lanes and a
/// zero one (an index past 15 gives zero).
const fn widen_index(t: usize) -> [u8; 16] {
    let mut out = [0xffu8; 16];
    let mut c = 0;
    while c < 3 {
        out[4 * c] = (3 * t + c) as u8;
        c += 1;
    }
    out
}

const WIDEN: [[u8; 16]; PER_LOAD] = [
    widen_index(0),
    widen_index(1),
    widen_index(2),
    widen_index(3),
    widen_index(4),
];

/// The horizontal pass: `rows` rows of `input` (row r at `off + r * stride`) -> `out`.
pub(super) fn horizontal_neon(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    let out_w = k.start.len();
    let row_bytes = out_w * 3;
    assert!(out.len() >= rows * row_bytes);
    if rows == 0 {
        return;
    }
    assert!(off + (rows - 1) * stride <= input.len());
    let avail = input.len() - off;
    for xx in 0..out_w {
        let (start, n) = (k.start[xx], k.len[xx]);
        // Rows r whose loads end inside `input`: off + r * stride + reach <= input.len().
        let vector_rows = if n == 0 {
            0
        } else {
            let reach = 3 * (start + PER_LOAD * (n.div_ceil(PER_LOAD) - 1)) + 16;
            match avail.checked_sub(reach) {
                Some(spare) if stride > 0 => (spare / stride + 1).min(rows),
                Some(_) => rows,
                None => 0,
            }
        };
        if vector_rows > 0 {
            let block = PixelRows {
                src: input[off + 3 * start..].as_ptr(),
                stride,
                dst: out[3 * xx..].as_mut_ptr(),
                row_bytes,
                weights: &k.weights[xx * k.ksize..xx * k.ksize + n],
                // A 4-byte store may spill into the next pixel of the row, written after this one.
                spill: xx + 1 < out_w,
            };
            // SAFETY: rows below `vector_rows` load inside `input`; each row's store writes this
            // pixel of that row of `out` (and, with `spill`, the next pixel's first byte).
            unsafe {
                match n {
                    1 => block.run::<1>(vector_rows),
                    2 => block.run::<2>(vector_rows),
                    3 => block.run::<3>(vector_rows),
                    4 => block.run::<4>(vector_rows),
                    5 => block.run::<5>(vector_rows),
                    6 => block.run::<6>(vector_rows),
                    7 => block.run::<7>(vector_rows),
                    8 => block.run::<8>(vector_rows),
                    9 => block.run::<9>(vector_rows),
                    10 => block.run::<10>(vector_rows),
                    11 => block.run::<11>(vector_rows),
                    12 => block.run::<12>(vector_rows),
                    13 => block.run::<13>(vector_rows),
                    14 => block.run::<14>(vector_rows),
                    15 => block.run::<15>(vector_rows),
                    16 => block.run::<16>(vector_rows),
                    _ => block.run_any(vector_rows),
                }
            }
        }
        for r in vector_rows..rows {
            let px = h_pixel_scalar(k, &input[off + r * stride..], xx);
            out[r * row_bytes + 3 * xx..r * row_bytes + 3 * xx + 3].copy_from_slice(&px);
        }
    }
}

/// One output pixel of the horizontal pass down the rows: where its first tap is in row 0,
/// where its output goes in row 0, and its weights.
struct PixelRows<'a> {
    src: *const u8,
    stride: usize,
    dst: *mut u8,
    row_bytes: usize,
    weights: &'a [i32],
    spill: bool,
}

impl PixelRows<'_> {
    /// The first `rows` rows with `N` taps (`N == weights.len() <= MAX_HELD`), the weights in
    /// registers; two rows per narrowing.
    ///
    /// # Safety
    /// Each of the first `rows` rows' loads (`3 * 5 * (ceil(N / 5) - 1) + 16` bytes from
    /// `src + r * stride`) must be in bounds, and its store (`3` bytes at `dst + r * row_bytes`,
    /// `4` with `spill`).
    #[inline(always)]
    unsafe fn run<const N: usize>(&self, rows: usize) {
        debug_assert!(N == self.weights.len() && N <= MAX_HELD);
        let w: [int32x4_t; N] = std::array::from_fn(|t| vdupq_n_s32(self.weights[t]));
        let widen: [uint8x16_t; PER_LOAD] = std::array::from_fn(|t| vld1q_u8(WIDEN[t].as_ptr()));
        let mut r = 0;
        while r + 2 <= rows {
            let a = row_sums::<N>(self.src.add(r * self.stride), &w, &widen);
            let b = row_sums::<N>(self.src.add((r + 1) * self.stride), &w, &widen);
            self.store(r, narrow(a, b));
            r += 2;
        }
        if r < rows {
            let a = row_sums::<N>(self.src.add(r * self.stride), &w, &widen);
            self.store_one(r, narrow(a, a));
        }
    }

    /// [`PixelRows::run`] for more than [`MAX_HELD`] taps, the weights read per row.
    ///
    /// # Safety
    /// As [`PixelRows::run`], with `N` the number of weights.
    #[inline(never)]
    unsafe fn run_any(&self, rows: usize) {
        let widen: [uint8x16_t; PER_LOAD] = std::array::from_fn(|t| vld1q_u8(WIDEN[t].as_ptr()));
        for r in 0..rows {
            let p = self.src.add(r * self.stride);
            let mut sums = [vdupq_n_s32(1 << (PRECISION_BITS - 1)), vdupq_n_s32(0)];
            for (q, taps) in self.weights.chunks(PER_LOAD).enumerate() {
                let bytes = vld1q_u8(p.add(3 * PER_LOAD * q));
                for (t, &wt) in taps.iter().enumerate() {
                    let v = vreinterpretq_s32_u8(vqtbl1q_u8(bytes, widen[t]));
                    sums[t % 2] = vmlaq_n_s32(sums[t % 2], v, wt);
                }
            }
            let a = vaddq_s32(sums[0], sums[1]);
            self.store_one(r, narrow(a, a));
        }
    }

    /// Rows `r` and `r + 1` from [`narrow`]'s bytes.
    #[inline(always)]
    unsafe fn store(&self, r: usize, v: uint8x8_t) {
        let lanes = vreinterpret_u32_u8(v);
        let dst = self.dst.add(r * self.row_bytes);
        self.put(dst, vget_lane_u32::<0>(lanes));
        self.put(dst.add(self.row_bytes), vget_lane_u32::<1>(lanes));
    }

    /// Row `r` from [`narrow`]'s first four bytes.
    #[inline(always)]
    unsafe fn store_one(&self, r: usize, v: uint8x8_t) {
        let dst = self.dst.add(r * self.row_bytes);
        self.put(dst, vget_lane_u32::<0>(vreinterpret_u32_u8(v)));
    }

    /// The pixel's three bytes (the low three of `px`) at `dst`: one 4-byte store with `spill`.
    #[inline(always)]
    unsafe fn put(&self, dst: *mut u8, px: u32) {
        if self.spill {
            (dst as *mut u32).write_unaligned(px);
        } else {
            (dst as *mut u16).write_unaligned(px as u16);
            *dst.add(2) = (px >> 16) as u8;
        }
    }
}

/// One row's sums (R, G, B and a zero lane) over `N` taps from `p` (the pixel's first tap), the
/// rounding term included.
#[inline(always)]
unsafe fn row_sums<const N: usize>(
    p: *const u8,
    w: &[int32x4_t; N],
    widen: &[uint8x16_t; PER_LOAD],
) -> int32x4_t {
    let mut sums = [vdupq_n_s32(1 << (PRECISION_BITS - 1)), vdupq_n_s32(0)];
    let mut bytes = vdupq_n_u8(0);
    for t in 0..N {
        if t % PER_LOAD == 0 {
            bytes = vld1q_u8(p.add(3 * t));
        }
        let v = vreinterpretq_s32_u8(vqtbl1q_u8(bytes, widen[t % PER_LOAD]));
        sums[t % 2] = vmlaq_s32(sums[t % 2], v, w[t]);
    }
    vaddq_s32(sums[0], sums[1])
}

/// Two rows' sums clamped to bytes as the scalar `clip8`: `sqshrun` shifts by 16 and clamps below
/// zero (the sums are below 2^31, so nothing reaches 2^16), `uqshrn` shifts by the other
/// `PRECISION_BITS - 16` and clamps above 255. Row `a`'s R, G, B in bytes 0-2, row `b`'s in
/// bytes 4-6.
#[inline(always)]
unsafe fn narrow(a: int32x4_t, b: int32x4_t) -> uint8x8_t {
    let (a, b) = (vqshrun_n_s32::<16>(a), vqshrun_n_s32::<16>(b));
    vqshrn_n_u16::<{ PRECISION_BITS as i32 - 16 }>(vcombine_u16(a, b))
}

/// `tbl` control that widens bytes `4j..4j + 4` of 16 to four 32-bit lanes.
const fn quad_index(j: usize) -> [u8; 16] {
    let mut out = [0xffu8; 16];
    let mut i = 0;
    while i < 4 {
        out[4 * i] = (4 * j + i) as u8;
        i += 1;
    }
    out
}

const QUADS: [[u8; 16]; 4] = [quad_index(0), quad_index(1), quad_index(2), quad_index(3)];

/// The vertical pass ([`super::vertical`]) 64 bytes of a row at a time, then 16, then one: per
/// tap, each 16 bytes widened to four registers of 32-bit lanes by four `tbl`s and added times
/// the tap's weight (`mla`), the sums of all taps held in registers; narrowed as the horizontal
/// pass narrows ([`narrow`]'s shifts).
#[allow(clippy::too_many_arguments)]
pub(super) fn vertical_neon(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    row_shift: usize,
    width: usize,
    out: &mut [u8],
) {
    let len = width * 3;
    // SAFETY: NEON; the table controls are 16 bytes each.
    let quads: [uint8x16_t; 4] = std::array::from_fn(|j| unsafe { vld1q_u8(QUADS[j].as_ptr()) });
    for (yy, dst_row) in out.chunks_exact_mut(len).enumerate().take(k.start.len()) {
        let (ymin, n) = (k.start[yy] - row_shift, k.len[yy]);
        let w = &k.weights[yy * k.ksize..yy * k.ksize + n];
        let first = off + ymin * stride;
        // Every row this output row reads lies inside `input`.
        assert!(n > 0 && first + (n - 1) * stride + len <= input.len());
        let mut x = 0;
        // SAFETY (both loops): NEON; the loads are 16-byte chunks below `len` of rows inside
        // `input` (asserted above), the stores 16-byte chunks below `len` of `dst_row`.
        while x + 64 <= len {
            unsafe {
                let mut sums = [vdupq_n_s32(1 << (PRECISION_BITS - 1)); 16];
                for (t, &wt) in w.iter().enumerate() {
                    let p = input.as_ptr().add(first + t * stride + x);
                    for c in 0..4 {
                        let v = vld1q_u8(p.add(16 * c));
                        for j in 0..4 {
                            let wide = vreinterpretq_s32_u8(vqtbl1q_u8(v, quads[j]));
                            sums[4 * c + j] = vmlaq_n_s32(sums[4 * c + j], wide, wt);
                        }
                    }
                }
                for c in 0..4 {
                    let s = &sums[4 * c..4 * c + 4];
                    vst1q_u8(dst_row.as_mut_ptr().add(x + 16 * c), narrow16(s));
                }
            }
            x += 64;
        }
        while x + 16 <= len {
            unsafe {
                let mut sums = [vdupq_n_s32(1 << (PRECISION_BITS - 1)); 4];
                for (t, &wt) in w.iter().enumerate() {
                    let v = vld1q_u8(input.as_ptr().add(first + t * stride + x));
                    for j in 0..4 {
                        let wide = vreinterpretq_s32_u8(vqtbl1q_u8(v, quads[j]));
                        sums[j] = vmlaq_n_s32(sums[j], wide, wt);
                    }
                }
                vst1q_u8(dst_row.as_mut_ptr().add(x), narrow16(&sums));
            }
            x += 16;
        }
        for x in x..len {
            let mut ss = 1i32 << (PRECISION_BITS - 1);
            for (t, &wt) in w.iter().enumerate() {
                ss += input[first + t * stride + x] as i32 * wt;
            }
            dst_row[x] = super::clip8(ss);
        }
    }
}

/// Four registers of sums (16 bytes in order) clamped to bytes as [`narrow`] does.
#[inline(always)]
unsafe fn narrow16(s: &[int32x4_t]) -> uint8x16_t {
    let a = vqshrun_high_n_s32::<16>(vqshrun_n_s32::<16>(s[0]), s[1]);
    let b = vqshrun_high_n_s32::<16>(vqshrun_n_s32::<16>(s[2]), s[3]);
    let a = vqshrn_n_u16::<{ PRECISION_BITS as i32 - 16 }>(a);
    vqshrn_high_n_u16::<{ PRECISION_BITS as i32 - 16 }>(a, b)
}
