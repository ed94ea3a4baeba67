//! [`super::hue_lut`] with AVX2 intrinsics, 8 pixels at a time: `avx512.rs`'s arithmetic step for
//! step, with compares and blends where AVX-512 has masks.

use super::super::avx2::{from_pixel_lanes, lanes, map8, pixel_control};
use super::HUE_DOWN_WORDS;
use std::arch::x86_64::*;

/// `floor(num / den)` as [`super::floor_div`] does it, lane by lane.
#[inline]
#[target_feature(enable = "avx2")]
fn floor_div(num: __m256i, den: __m256i) -> __m256i {
    _mm256_cvttps_epi32(_mm256_div_ps(
        _mm256_cvtepi32_ps(num),
        _mm256_cvtepi32_ps(den),
    ))
}

/// `255 x`.
#[inline]
#[target_feature(enable = "avx2")]
fn mul255(x: __m256i) -> __m256i {
    _mm256_sub_epi32(_mm256_slli_epi32::<8>(x), x)
}

/// `floor(x / 255)` for `x <= 65534`, as [`super::div255`] (checked on every such `x` in the
/// tests): `(x + 1 + (x >> 8)) >> 8`, three cheap operations where a `mullo` costs 10 cycles of
/// latency on the kernel's critical path.
#[inline]
#[target_feature(enable = "avx2")]
fn div255(x: __m256i) -> __m256i {
    let x1 = _mm256_add_epi32(x, _mm256_set1_epi32(1));
    _mm256_srli_epi32::<8>(_mm256_add_epi32(x1, _mm256_srli_epi32::<8>(x)))
}

/// `a * b` for `a, b < 2^15`: one `madd` (the high 16 bits of each lane are zero), 5 cycles of
/// latency against `mullo`'s 10.
#[inline]
#[target_feature(enable = "avx2")]
fn mul_small(a: __m256i, b: __m256i) -> __m256i {
    _mm256_madd_epi16(a, b)
}

/// `1 / 65025` rounded to f32: `floor(x * RECIP_65025) = floor(x / 65025)` for every integer
/// `x < 2^24` (checked in the tests).
pub(super) const RECIP_65025: f32 = 1.0 / 65025.0;

/// For each sector `i` (0..=6), the bytes of `(v, o, p)` that make `(r, g, b)` and a zeroing top
/// byte, as `avx512.rs`'s `SECTOR_ORDER`.
const SECTOR_ORDER: [i32; 8] = {
    const fn order(r: u32, g: u32, b: u32) -> i32 {
        (r | g << 8 | b << 16 | 0x80 << 24) as i32
    }
    [
        order(0, 1, 2),
        order(1, 0, 2),
        order(2, 0, 1),
        order(2, 1, 0),
        order(1, 2, 0),
        order(0, 2, 1),
        order(0, 1, 2),
        0,
    ]
};

/// [`super::hsv_exact`], the shift and [`super::rgb_exact`] for the 8 pixels of a
/// [`map8`] register (12 interleaved RGB bytes per 128-bit lane).
#[inline]
#[target_feature(enable = "avx2")]
fn hue8(px: __m256i, shift: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let one = _mm256_set1_epi32(1);
    let byte = _mm256_set1_epi32(255);
    // Each pixel becomes a 32-bit lane r | g << 8 | b << 16.
    let px = _mm256_shuffle_epi8(px, lanes(pixel_control([0, 1, 2, -1])));
    let r = _mm256_and_si256(px, byte);
    let g = _mm256_and_si256(_mm256_srli_epi32::<8>(px), byte);
    let b = _mm256_srli_epi32::<16>(px);

    // hsv_exact.
    let v = _mm256_max_epu32(_mm256_max_epu32(r, g), b);
    let cr = _mm256_sub_epi32(v, _mm256_min_epu32(_mm256_min_epu32(r, g), b));
    let s = floor_div(mul255(cr), _mm256_max_epu32(v, one));
    let cr2 = _mm256_add_epi32(cr, cr);
    let cr4 = _mm256_add_epi32(cr2, cr2);
    let cr6 = _mm256_add_epi32(cr4, cr2);
    let gb = _mm256_sub_epi32(g, b);
    let n_r = _mm256_add_epi32(gb, _mm256_and_si256(_mm256_cmpgt_epi32(zero, gb), cr6));
    let n_g = _mm256_add_epi32(cr2, _mm256_sub_epi32(b, r));
    let n_b = _mm256_add_epi32(cr4, _mm256_sub_epi32(r, g));
    let n = _mm256_blendv_epi8(n_b, n_g, _mm256_cmpeq_epi32(g, v));
    let n = _mm256_blendv_epi8(n, n_r, _mm256_cmpeq_epi32(r, v));
    let den = _mm256_max_epi32(cr6, _mm256_set1_epi32(6));
    let num = mul255(n);
    let k = floor_div(num, den);
    let exact = _mm256_cmpeq_epi32(mul_small(k, den), num);
    // HUE_DOWN[k]: bit k % 32 of word k / 32 (k <= 255), the word picked with a permute.
    let [w0, w1, w2, w3, w4, w5, w6, w7] = HUE_DOWN_WORDS.map(|w| w as i32);
    let words = _mm256_setr_epi32(w0, w1, w2, w3, w4, w5, w6, w7);
    let word = _mm256_permutevar8x32_epi32(words, _mm256_srli_epi32::<5>(k));
    let bit = _mm256_srlv_epi32(word, _mm256_and_si256(k, _mm256_set1_epi32(31)));
    let down = _mm256_and_si256(_mm256_and_si256(bit, one), exact);
    let h = _mm256_sub_epi32(k, down);
    let h = _mm256_and_si256(_mm256_add_epi32(h, shift), byte);

    // rgb_exact. The chain from the pixel through the hue to `o` bounds this kernel (the
    // iterations overlap only as far as the reorder buffer reaches), so it avoids `mullo` and
    // the division: `6 h` by shifts, `w c + 32512 < 2^24` in f32 exactly, and its floor over
    // 65025 as a product with the f32 reciprocal (exact on every such integer: checked in the
    // tests).
    let h6 = _mm256_add_epi32(_mm256_slli_epi32::<2>(h), _mm256_slli_epi32::<1>(h));
    let i = div255(h6);
    let a = _mm256_sub_epi32(h6, mul255(i));
    let even = _mm256_cmpeq_epi32(_mm256_and_si256(i, one), zero);
    let c = _mm256_xor_si256(a, _mm256_and_si256(even, byte));
    let w = mul_small(v, s);
    let p = _mm256_sub_epi32(v, div255(_mm256_add_epi32(w, _mm256_set1_epi32(127))));
    let wc = _mm256_add_ps(
        _mm256_mul_ps(_mm256_cvtepi32_ps(w), _mm256_cvtepi32_ps(c)),
        _mm256_set1_ps(32512.0),
    );
    let q = _mm256_cvttps_epi32(_mm256_mul_ps(wc, _mm256_set1_ps(RECIP_65025)));
    let o = _mm256_sub_epi32(v, q);
    // (v, o, p) as bytes 0, 1, 2 of each lane, put in the sector's order by a byte shuffle whose
    // control is the sector's pattern plus the lane's byte offset within its 128 bits.
    let vop = _mm256_or_si256(
        _mm256_or_si256(v, _mm256_slli_epi32::<8>(o)),
        _mm256_slli_epi32::<16>(p),
    );
    let [t0, t1, t2, t3, t4, t5, t6, t7] = SECTOR_ORDER;
    let table = _mm256_setr_epi32(t0, t1, t2, t3, t4, t5, t6, t7);
    let order = _mm256_permutevar8x32_epi32(table, i);
    let offset = _mm256_setr_epi32(
        0, 0x040404, 0x080808, 0x0c0c0c, 0, 0x040404, 0x080808, 0x0c0c0c,
    );
    let rgb = _mm256_shuffle_epi8(vop, _mm256_add_epi32(order, offset));

    from_pixel_lanes(rgb)
}

/// The hue shift on interleaved RGB pixels, in place.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn hue(pixels: &mut [u8], shift: u32) {
    let shift = _mm256_set1_epi32(shift as i32);
    // SAFETY: the CPU supports AVX2 (this function's contract).
    unsafe { map8(pixels, |px| hue8(px, shift)) }
}
