//! The AVX2 colour kernels' framing, eight interleaved RGB pixels at a time ([`map8`]), and the
//! saturation kernel ([`saturation`]). (Hue's AVX2 kernel, in `hue/avx2.rs`, uses the framing.)

use std::arch::x86_64::*;

/// Runs `f` over `pixels` (whole RGB pixels) eight at a time, in place. `f` gets a register whose
/// two 128-bit lanes hold four pixels each, as 12 interleaved bytes (the other 4 bytes are
/// garbage), and returns the new pixels in the same layout. A last group of fewer than eight
/// pixels goes through a zero-padded copy.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn map8(pixels: &mut [u8], f: impl Fn(__m256i) -> __m256i) {
    let len = pixels.len() / 3 * 3;
    // Lane i gets bytes 12 i .. 12 i + 12 of the 32 loaded (dwords 0-2 and 3-5).
    let spread = _mm256_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0);
    let gather = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    let run = |v: __m256i| -> __m256i {
        _mm256_permutevar8x32_epi32(f(_mm256_permutevar8x32_epi32(v, spread)), gather)
    };
    let mut at = 0;
    // 32-byte loads while they stay in bounds, 24 bytes stored per step.
    while at + 32 <= len {
        // SAFETY: bytes at..at + 32 are in bounds; the stores write at..at + 24.
        unsafe {
            let ptr = pixels.as_mut_ptr().add(at);
            let rgb = run(_mm256_loadu_si256(ptr as *const _));
            _mm_storeu_si128(ptr as *mut _, _mm256_castsi256_si128(rgb));
            _mm_storel_epi64(ptr.add(16) as *mut _, _mm256_extracti128_si256::<1>(rgb));
        }
        at += 24;
    }
    while at < len {
        let n = (len - at).min(24);
        let mut block = [0u8; 32];
        block[..n].copy_from_slice(&pixels[at..at + n]);
        // SAFETY: `block` holds 32 bytes.
        unsafe {
            let rgb = run(_mm256_loadu_si256(block.as_ptr() as *const _));
            _mm256_storeu_si256(block.as_mut_ptr() as *mut _, rgb);
        }
        pixels[at..at + n].copy_from_slice(&block[..n]);
        at += 24;
    }
}

/// In-lane byte shuffle control, the same in both 128-bit lanes (16 bytes given).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn lanes(control: [i8; 16]) -> __m256i {
    // SAFETY: `control` holds 16 bytes.
    _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(control.as_ptr() as *const _) })
}

/// Per pixel `p` of a [`map8`] lane, byte `c` of the pixel at `offset[c]` of its 32-bit lane (-1:
/// zero there).
pub(super) const fn pixel_control(offset: [i8; 4]) -> [i8; 16] {
    let mut out = [-1i8; 16];
    let mut p = 0;
    while p < 4 {
        let mut k = 0;
        while k < 4 {
            if offset[k] >= 0 {
                out[4 * p + k] = 3 * p as i8 + offset[k];
            }
            k += 1;
        }
        p += 1;
    }
    out
}

/// [`super::saturation_lut`]'s arithmetic for the eight pixels of a [`map8`] register: Pillow's L
/// by two `madd`s (`19595 r + 38470 g` as `19595 r - 27066 g + 65536 g`, and `7471 b + 2 * 16384`
/// for the rounding), then `blend_sat` per channel in f32, in the scalar code's order of
/// operations.
#[inline]
#[target_feature(enable = "avx2")]
fn saturation8(px: __m256i, alpha: __m256) -> __m256i {
    // (r, g) and (b, 2) as 16-bit pairs per pixel.
    let rg = _mm256_shuffle_epi8(px, lanes(pixel_control([0, -1, 1, -1])));
    let b = _mm256_shuffle_epi8(px, lanes(pixel_control([2, -1, -1, -1])));
    let b2 = _mm256_or_si256(b, _mm256_set1_epi32(2 << 16));
    let g16 = _mm256_andnot_si256(_mm256_set1_epi32(0xffff), rg);
    let sum = _mm256_add_epi32(
        _mm256_add_epi32(
            _mm256_madd_epi16(rg, _mm256_set1_epi32(19595 | (-27066i32 << 16))),
            g16,
        ),
        _mm256_madd_epi16(b2, _mm256_set1_epi32(7471 | (16384 << 16))),
    );
    let l = _mm256_srli_epi32::<16>(sum);
    let lf = _mm256_cvtepi32_ps(l);
    let blend = |c: __m256i| -> __m256i {
        let t = _mm256_add_ps(
            lf,
            _mm256_mul_ps(alpha, _mm256_cvtepi32_ps(_mm256_sub_epi32(c, l))),
        );
        let t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), _mm256_set1_ps(255.0));
        _mm256_cvttps_epi32(t)
    };
    let r = blend(_mm256_and_si256(rg, _mm256_set1_epi32(0xffff)));
    let g = blend(_mm256_srli_epi32::<16>(rg));
    let b = blend(b);
    let packed = _mm256_or_si256(
        _mm256_or_si256(r, _mm256_slli_epi32::<8>(g)),
        _mm256_slli_epi32::<16>(b),
    );
    from_pixel_lanes(packed)
}

/// A [`map8`] register from one pixel per 32-bit lane (its bytes 0-2 the pixel's R, G, B): the
/// low 3 bytes of each lane packed into each 128-bit lane's first 12.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn from_pixel_lanes(v: __m256i) -> __m256i {
    _mm256_shuffle_epi8(
        v,
        lanes([0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1]),
    )
}

/// `ImageEnhance.Color` with factor `alpha` on interleaved RGB pixels, in place (the table, if
/// any, already applied).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn saturation(pixels: &mut [u8], alpha: f32) {
    let alpha = _mm256_set1_ps(alpha);
    // SAFETY: the CPU supports AVX2 (this function's contract).
    unsafe { map8(pixels, |px| saturation8(px, alpha)) }
}
