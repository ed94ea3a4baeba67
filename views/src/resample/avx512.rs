//! The horizontal resize pass with AVX-512: by blocks of four output pixels (F/BW, the
//! [`BlockRegister`] of a 512-bit register) and, with VBMI, by groups of [`GROUP`] pixels through
//! one byte permute per tap. Tested equal to the portable code at every level (see the parent's
//! tests).

use super::avx2::{h_pixel, horizontal_blocks, sse_safe, widen_control, BlockRegister};
use super::{Taps, GROUP, PRECISION_BITS};

/// The horizontal pass [`Blocks`] of four output pixels at a time (AVX-512 F/BW).
///
/// # Safety
/// The CPU must support AVX-512 F/BW; `k.blocks` must have 4 pixels per block.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) unsafe fn horizontal_avx512bw(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    rows: usize,
    out: &mut [u8],
) {
    horizontal_blocks::<std::arch::x86_64::__m512i>(k, input, stride, off, rows, out)
}

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

/// The horizontal pass [`GROUP`] output pixels at a time (see [`Groups`](super::Groups)) and two rows at a time
/// (sharing the permutation and the weights): per tap and row, one masked 64-byte load, one byte
/// permutation, a widening to 16 i32 lanes, a multiply and an add. Same sums as the scalar pass;
/// groups it cannot take go through [`horizontal_avx2`](super::avx2::horizontal_avx2)'s per-pixel code.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx2")]
pub(super) unsafe fn horizontal_avx512(
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
