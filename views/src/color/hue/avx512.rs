//! [`super::hue_lut`] with AVX-512 intrinsics, 16 pixels at a time.

use super::HUE_DOWN_WORDS;
use std::arch::x86_64::*;

/// `floor(num / den)` as [`super::floor_div`] does it, lane by lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn floor_div(num: __m512i, den: __m512i) -> __m512i {
    _mm512_cvttps_epi32(_mm512_div_ps(
        _mm512_cvtepi32_ps(num),
        _mm512_cvtepi32_ps(den),
    ))
}

/// `255 x`.
#[inline]
#[target_feature(enable = "avx512f")]
fn mul255(x: __m512i) -> __m512i {
    _mm512_sub_epi32(_mm512_slli_epi32::<8>(x), x)
}

/// `floor(x / 255)` for `x <= 65535`, as [`super::div255`].
#[inline]
#[target_feature(enable = "avx512f")]
fn div255(x: __m512i) -> __m512i {
    _mm512_srli_epi32::<23>(_mm512_mullo_epi32(x, _mm512_set1_epi32(32897)))
}

/// For each sector `i` (0..=6), the bytes of `(v, o, p)` (0, 1, 2) that make `(r, g, b)`, as
/// in [`super::rgb_exact`], and a zeroing top byte: (v, o, p), (o, v, p), (p, v, o), (p, o, v),
/// (o, p, v), (v, p, o) and again (v, o, p).
const SECTOR_ORDER: __m512i = {
    const fn order(r: u32, g: u32, b: u32) -> u32 {
        r | g << 8 | b << 16 | 0x80 << 24
    }
    let t = [
        order(0, 1, 2),
        order(1, 0, 2),
        order(2, 0, 1),
        order(2, 1, 0),
        order(1, 2, 0),
        order(0, 2, 1),
        order(0, 1, 2),
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    // SAFETY: sixteen u32 are 64 plain bytes, like __m512i.
    unsafe { std::mem::transmute::<[u32; 16], __m512i>(t) }
};

/// [`super::hsv_exact`], the shift and [`super::rgb_exact`] for 16 pixels, given and returned
/// as 48 interleaved RGB bytes (the top 16 bytes of the result are zero).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn hue16(px: __m512i, shift: __m512i) -> __m512i {
    let zero = _mm512_setzero_si512();
    let one = _mm512_set1_epi32(1);
    let byte = _mm512_set1_epi32(255);
    // De-interleave: each 128-bit lane gets the 12 bytes of its 4 pixels, then each pixel
    // becomes a 32-bit lane r | g << 8 | b << 16.
    let px = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0),
        px,
    );
    let spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    let px = _mm512_shuffle_epi8(px, _mm512_broadcast_i32x4(spread));
    let r = _mm512_and_si512(px, byte);
    let g = _mm512_and_si512(_mm512_srli_epi32::<8>(px), byte);
    let b = _mm512_srli_epi32::<16>(px);

    // hsv_exact.
    let v = _mm512_max_epu32(_mm512_max_epu32(r, g), b);
    let cr = _mm512_sub_epi32(v, _mm512_min_epu32(_mm512_min_epu32(r, g), b));
    let s = floor_div(mul255(cr), _mm512_max_epu32(v, one));
    let cr2 = _mm512_add_epi32(cr, cr);
    let cr4 = _mm512_add_epi32(cr2, cr2);
    let cr6 = _mm512_add_epi32(cr4, cr2);
    let gb = _mm512_sub_epi32(g, b);
    let n_r = _mm512_mask_add_epi32(gb, _mm512_cmplt_epi32_mask(gb, zero), gb, cr6);
    let n_g = _mm512_add_epi32(cr2, _mm512_sub_epi32(b, r));
    let n_b = _mm512_add_epi32(cr4, _mm512_sub_epi32(r, g));
    let n = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(g, v), n_b, n_g);
    let n = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(r, v), n, n_r);
    let den = _mm512_max_epi32(cr6, _mm512_set1_epi32(6));
    let num = mul255(n);
    let k = floor_div(num, den);
    let exact = _mm512_cmpeq_epi32_mask(_mm512_mullo_epi32(k, den), num);
    // HUE_DOWN[k]: bit k % 32 of word k / 32, the word picked with a permute.
    let [w0, w1, w2, w3, w4, w5, w6, w7] = HUE_DOWN_WORDS.map(|w| w as i32);
    let words = _mm512_setr_epi32(w0, w1, w2, w3, w4, w5, w6, w7, 0, 0, 0, 0, 0, 0, 0, 0);
    let word = _mm512_permutexvar_epi32(_mm512_srli_epi32::<5>(k), words);
    let bit = _mm512_srlv_epi32(word, _mm512_and_si512(k, _mm512_set1_epi32(31)));
    let down = _mm512_mask_test_epi32_mask(exact, bit, one);
    let h = _mm512_mask_sub_epi32(k, down, k, one);
    let h = _mm512_and_si512(_mm512_add_epi32(h, shift), byte);

    // rgb_exact.
    let h6 = _mm512_mullo_epi32(h, _mm512_set1_epi32(6));
    let i = div255(h6);
    let a = _mm512_sub_epi32(h6, mul255(i));
    let odd = _mm512_test_epi32_mask(i, one);
    let c = _mm512_mask_xor_epi32(a, !odd, a, byte);
    let w = _mm512_mullo_epi32(v, s);
    let p = _mm512_sub_epi32(v, div255(_mm512_add_epi32(w, _mm512_set1_epi32(127))));
    let wc = _mm512_add_epi32(_mm512_mullo_epi32(w, c), _mm512_set1_epi32(32512));
    let o = _mm512_sub_epi32(v, floor_div(wc, _mm512_set1_epi32(65025)));
    // (v, o, p) as bytes 0, 1, 2 of each lane, put in the sector's order by a byte shuffle
    // whose control is the sector's pattern (a dword permute of the table) plus the lane's
    // byte offset within its 128 bits.
    let vop =
        _mm512_ternarylogic_epi32::<0xfe>(v, _mm512_slli_epi32::<8>(o), _mm512_slli_epi32::<16>(p));
    let order = _mm512_permutexvar_epi32(i, SECTOR_ORDER);
    let offset = _mm512_set4_epi32(0x0c0c0c, 0x080808, 0x040404, 0);
    let rgb = _mm512_shuffle_epi8(vop, _mm512_add_epi32(order, offset));

    // Interleave: the low 3 bytes of each lane, packed into the low 48 bytes.
    let pack = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    let rgb = _mm512_shuffle_epi8(rgb, _mm512_broadcast_i32x4(pack));
    _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 15, 15, 15),
        rgb,
    )
}

/// The hue shift on interleaved RGB pixels, in place.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn hue(pixels: &mut [u8], shift: u32) {
    let shift = _mm512_set1_epi32(shift as i32);
    let len = pixels.len() / 3 * 3;
    let mut at = 0;
    // Plain 64-byte loads and 32 + 16-byte stores while a whole 64 bytes are in bounds:
    // with a masked 48-byte load and store per step, each load overlapping the previous
    // store's 64-byte span (in bytes masked off), the loop ran at half speed on Zen 4.
    while at + 64 <= len {
        // SAFETY: bytes at..at + 64 are in bounds; the stores write at..at + 48.
        unsafe {
            let ptr = pixels.as_mut_ptr().add(at);
            let rgb = hue16(_mm512_loadu_si512(ptr as *const _), shift);
            _mm256_storeu_si256(ptr as *mut _, _mm512_castsi512_si256(rgb));
            _mm_storeu_si128(ptr.add(32) as *mut _, _mm512_extracti32x4_epi32::<2>(rgb));
        }
        at += 48;
    }
    while at < len {
        let mask = u64::MAX >> (64 - (len - at).min(48));
        // SAFETY: the mask covers bytes at..at + min(48, len - at); masked-off bytes are
        // neither read nor written.
        unsafe {
            let ptr = pixels.as_mut_ptr().add(at) as *mut i8;
            let px = _mm512_maskz_loadu_epi8(mask, ptr);
            _mm512_mask_storeu_epi8(ptr, mask, hue16(px, shift));
        }
        at += 48;
    }
}
