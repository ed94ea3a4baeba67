//! The colour ops of the paper's pipeline, bit-exact with Pillow (what torchvision's PIL path runs).
//!
//! All ops work in place on interleaved RGB u8 pixels (HWC, no padding):
//! - [`luma`]: Pillow's `convert('L')` (ITU-R 601-2 in 16-bit fixed point, rounded).
//! - [`brightness`], [`contrast`], [`saturation`]: `ImageEnhance.Brightness/Contrast/Color`, i.e.
//!   `Image.blend(degenerate, image, factor)` with Pillow's float32 blend and u8 truncation
//!   (clipped when extrapolating). The degenerate image is black, the grey level
//!   `int(mean(L) + 0.5)`, and L replicated, respectively.
//! - [`hue`]: torchvision's `adjust_hue` on PIL: Pillow's u8 RGB -> HSV, the hue channel shifted by
//!   `int(hue_factor * 255)` modulo 256, Pillow's HSV -> RGB.
//! - [`grayscale`]: L replicated to three channels; [`solarize_lut`]: `ImageOps.solarize(128)`.

/// Pillow's `rgb2l`: `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
#[inline(always)]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Pillow's `ImagingBlend` for one u8 sample: `in1 + alpha * (in2 - in1)` in float32, truncated
/// toward zero, clipped to 0..=255 when `alpha` is outside [0, 1].
#[inline(always)]
pub fn blend(in1: u8, in2: u8, alpha: f32) -> u8 {
    let t = in1 as i32 as f32 + alpha * ((in2 as i32 - in1 as i32) as f32);
    if (0.0..=1.0).contains(&alpha) {
        t as u8
    } else if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// A 256-entry table of `blend(degenerate, v, alpha)` for a constant degenerate value.
pub fn blend_table(degenerate: u8, alpha: f32, lut: &mut [u8; 256]) {
    for (v, out) in lut.iter_mut().enumerate() {
        *out = blend(degenerate, v as u8, alpha);
    }
}

/// `ImageEnhance.Brightness(img).enhance(factor)`: blend with black.
pub fn brightness(pixels: &mut [u8], factor: f64) {
    let mut lut = [0u8; 256];
    blend_table(0, factor as f32, &mut lut);
    apply_lut(pixels, &lut);
}

/// Pixels per block of the kernels below: each block is de-interleaved into per-channel arrays,
/// processed element-wise (so LLVM vectorises it) and interleaved back.
const BLOCK: usize = 64;

/// De-interleaves up to [`BLOCK`] RGB pixels into three arrays; returns the number of pixels.
#[inline(always)]
fn load_block(
    px: &[u8],
    lut: &[u8; 256],
    r: &mut [u32; BLOCK],
    g: &mut [u32; BLOCK],
    b: &mut [u32; BLOCK],
) -> usize {
    let identity = lut[255] == 255 && lut[0] == 0 && lut == &IDENTITY;
    load_block_with(px, lut, identity, r, g, b)
}

/// [`load_block`] given whether `lut` is the identity (so that a kernel can check it once).
#[inline(always)]
fn load_block_with(
    px: &[u8],
    lut: &[u8; 256],
    identity: bool,
    r: &mut [u32; BLOCK],
    g: &mut [u32; BLOCK],
    b: &mut [u32; BLOCK],
) -> usize {
    let n = px.len() / 3;
    // A full block: the table applied 64 bytes at a time (`lut`), then split into planes
    // (`planar`), then widened. The identity table (the common case) is skipped.
    if n == BLOCK {
        let mut looked_up = [0u8; 3 * BLOCK];
        let px: &[u8; 3 * BLOCK] = if identity {
            px[..3 * BLOCK].try_into().unwrap()
        } else {
            crate::lut::apply(&px[..3 * BLOCK], &mut looked_up, lut);
            &looked_up
        };
        let (mut pr, mut pg, mut pb) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
        crate::planar::deinterleave(px, &mut pr, &mut pg, &mut pb);
        for i in 0..BLOCK {
            r[i] = pr[i] as u32;
            g[i] = pg[i] as u32;
            b[i] = pb[i] as u32;
        }
    } else if identity {
        for (i, p) in px.chunks_exact(3).enumerate() {
            r[i] = p[0] as u32;
            g[i] = p[1] as u32;
            b[i] = p[2] as u32;
        }
    } else {
        for (i, p) in px.chunks_exact(3).enumerate() {
            r[i] = lut[p[0] as usize] as u32;
            g[i] = lut[p[1] as usize] as u32;
            b[i] = lut[p[2] as usize] as u32;
        }
    }
    n
}

/// Interleaves up to [`BLOCK`] pixels back from three arrays, each value turned into a byte by
/// `byte` (`u8` arrays as they are; kernels that compute in 32-bit lanes store from those, so that
/// their vector stores match the loads here, which store-to-load forwarding needs).
#[inline(always)]
fn store_block<T: Copy>(
    px: &mut [u8],
    r: &[T; BLOCK],
    g: &[T; BLOCK],
    b: &[T; BLOCK],
    byte: impl Fn(T) -> u8,
) {
    if px.len() == 3 * BLOCK {
        let px: &mut [u8; 3 * BLOCK] = (&mut px[..3 * BLOCK]).try_into().unwrap();
        for i in 0..BLOCK {
            px[3 * i] = byte(r[i]);
            px[3 * i + 1] = byte(g[i]);
            px[3 * i + 2] = byte(b[i]);
        }
        return;
    }
    for (i, p) in px.chunks_exact_mut(3).enumerate() {
        p[0] = byte(r[i]);
        p[1] = byte(g[i]);
        p[2] = byte(b[i]);
    }
}

#[inline(always)]
fn luma_u32(r: u32, g: u32, b: u32) -> u32 {
    (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
}

crate::simd::multiversion! {
    /// Sum of Pillow's L over all pixels.
    fn luma_sum(pixels: &[u8], lut: &[u8; 256]) -> u64 {
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let mut sum = 0u64;
        for block in pixels.chunks(3 * BLOCK) {
            let n = load_block(block, lut, &mut r, &mut g, &mut b);
            let mut s = 0u32;
            for i in 0..BLOCK {
                s += luma_u32(r[i], g[i], b[i]);
            }
            // Lanes past `n` hold stale pixels of the previous block: take them back out.
            for i in n..BLOCK {
                s -= luma_u32(r[i], g[i], b[i]);
            }
            sum += s as u64;
        }
        sum
    }
}

/// The grey level `ImageEnhance.Contrast` blends with: `int(mean(L) + 0.5)` over the image.
pub fn contrast_mean(pixels: &[u8]) -> u8 {
    contrast_mean_lut(pixels, &IDENTITY)
}

/// [`contrast_mean`] of the image with `lut` applied to every sample (without applying it).
pub fn contrast_mean_lut(pixels: &[u8], lut: &[u8; 256]) -> u8 {
    let n = pixels.len() / 3;
    if n == 0 {
        return 0;
    }
    (luma_sum(&pixels[..3 * n], lut) as f64 / n as f64 + 0.5) as u8
}

/// `ImageEnhance.Contrast(img).enhance(factor)`: blend with the mean grey level.
pub fn contrast(pixels: &mut [u8], factor: f64) {
    let mean = contrast_mean(pixels);
    let mut lut = [0u8; 256];
    blend_table(mean, factor as f32, &mut lut);
    apply_lut(pixels, &lut);
}

crate::simd::multiversion! {
    /// [`saturation`] of the image with `lut` applied to every sample first.
    pub fn saturation_lut(pixels: &mut [u8], factor: f64, lut: &[u8; 256]) {
        let alpha = factor as f32;
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let (mut or, mut og, mut ob) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block(block, lut, &mut r, &mut g, &mut b);
            for i in 0..BLOCK {
                let l = luma_u32(r[i], g[i], b[i]);
                or[i] = blend_sat(l, r[i], alpha);
                og[i] = blend_sat(l, g[i], alpha);
                ob[i] = blend_sat(l, b[i], alpha);
            }
            store_block(block, &or, &og, &ob, |v| v);
        }
    }
}

/// [`blend`] without branches: clamping to [0, 255] then truncating toward zero is Pillow's
/// clip-then-truncate for any `alpha` (and changes nothing when `alpha` is in [0, 1]).
#[inline(always)]
fn blend_sat(in1: u32, in2: u32, alpha: f32) -> u8 {
    let t = in1 as i32 as f32 + alpha * ((in2 as i32 - in1 as i32) as f32);
    f32_to_i32(t.clamp(0.0, 255.0)) as u8
}

/// `ImageEnhance.Color(img).enhance(factor)`: blend each channel with the pixel's L.
pub fn saturation(pixels: &mut [u8], factor: f64) {
    saturation_lut(pixels, factor, &IDENTITY)
}

/// torchvision `adjust_hue` on a PIL RGB image: [`rgb_to_hsv`], shift, [`hsv_to_rgb`], computed
/// in an exact integer form that gives Pillow's bytes for every input, branch-free (every case
/// computed, the right one selected) so that it vectorises; see [`hue_lut`].
pub fn hue(pixels: &mut [u8], hue_factor: f64) {
    hue_lut(pixels, hue_factor, &IDENTITY)
}

/// `convert('L')` replicated to three channels (torchvision `rgb_to_grayscale(img, 3)`).
pub fn grayscale(pixels: &mut [u8]) {
    grayscale_lut(pixels, &IDENTITY)
}

/// The hue-channel shift torchvision applies: `np.int32(hue_factor * 255)` as u8 (wrapping).
pub fn hue_shift(hue_factor: f64) -> u8 {
    (hue_factor * 255.0).trunc() as i32 as u8
}

/// Pillow's `rgb2hsv_row` (u8 HSV, following colorsys with float/double intermediates).
#[inline(always)]
pub fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0, 0, maxc);
    }
    let cr = (maxc - minc) as f32;
    let s = cr / maxc as f32;
    let rc = (maxc - r) as f32 / cr;
    let gc = (maxc - g) as f32 / cr;
    let bc = (maxc - b) as f32 / cr;
    let h: f32 = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + rc as f64 - bc as f64) as f32
    } else {
        (4.0 + gc as f64 - rc as f64) as f32
    };
    let h = ((h as f64 / 6.0 + 1.0) % 1.0) as f32;
    let uh = clip8((h as f64 * 255.0) as i32);
    let us = clip8((s as f64 * 255.0) as i32);
    (uh, us, maxc)
}

#[inline(always)]
fn clip8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// C's `round`: half away from zero.
#[inline(always)]
fn c_round(x: f64) -> i32 {
    x.round() as i32
}

/// Pillow's `hsv2rgb`.
#[inline(always)]
pub fn hsv_to_rgb(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
    if s == 0 {
        return (v, v, v);
    }
    let hd = h as f32 as f64 * 6.0 / 255.0;
    let i = hd.floor() as i32;
    let f = (hd - i as f32 as f64) as f32;
    let fs = (s as f32 as f64 / 255.0) as f32;
    let vf = v as f32 as f64;
    let p = clip8(c_round(vf * (1.0 - fs as f64)));
    let q = clip8(c_round(vf * (1.0 - (fs * f) as f64)));
    let t = clip8(c_round(vf * (1.0 - fs as f64 * (1.0 - f as f64))));
    match i % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// [`hue`] of the image with `lut` applied to every sample first.
///
/// Computed in the exact integer form of `hsv_exact` and `rgb_exact` (private; their comments
/// say why it is exact), which gives Pillow's bytes for every input, checked on all 2^24 inputs
/// of each: with AVX-512 by intrinsics, 16 pixels at a time (after [`crate::lut::apply_in_place`]
/// where `lut` is not the identity), otherwise by a branch-free loop over blocks of pixels that
/// LLVM vectorises.
pub fn hue_lut(pixels: &mut [u8], hue_factor: f64, lut: &[u8; 256]) {
    let shift = hue_shift(hue_factor) as u32;
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::AVX512 {
        // Whole pixels only, as everywhere else: bytes past the last one stay as they are.
        let whole = pixels.len() / 3 * 3;
        let pixels = &mut pixels[..whole];
        if lut != &IDENTITY {
            crate::lut::apply_in_place(pixels, lut);
        }
        // SAFETY: `level` only reports AVX-512 where the CPU has F/BW/VL/DQ.
        unsafe { avx512::hue(pixels, shift) };
        return;
    }
    hue_lut_vectorised(pixels, shift, lut);
}

crate::simd::multiversion! {
    /// [`hue_lut`] without AVX-512 intrinsics: [`hsv_exact`] and [`rgb_exact`] over blocks of
    /// de-interleaved pixels, which LLVM vectorises.
    fn hue_lut_vectorised(pixels: &mut [u8], shift: u32, lut: &[u8; 256]) {
        let identity = lut == &IDENTITY;
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let (mut or, mut og, mut ob) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block_with(block, lut, identity, &mut r, &mut g, &mut b);
            for i in 0..BLOCK {
                let (h, s, v) = hsv_exact(r[i], g[i], b[i]);
                let rgb = rgb_exact((h + shift) & 255, s, v);
                or[i] = rgb & 255;
                og[i] = (rgb >> 8) & 255;
                ob[i] = rgb >> 16;
            }
            store_block(block, &or, &og, &ob, |v| v as u8);
        }
    }
}

/// [`hue_lut`] with AVX-512 intrinsics, 16 pixels at a time.
#[cfg(target_arch = "x86_64")]
mod avx512 {
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
        let vop = _mm512_ternarylogic_epi32::<0xfe>(
            v,
            _mm512_slli_epi32::<8>(o),
            _mm512_slli_epi32::<16>(p),
        );
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
}

/// `x as i32` (truncation) for `x` known to be in `0.0..=2^24` here, without the saturating
/// cast's range checks, which keep LLVM from vectorising.
#[inline(always)]
fn f32_to_i32(x: f32) -> i32 {
    debug_assert!((-1.0..=16777216.0).contains(&x));
    // SAFETY: the callers' values are finite and far inside i32's range.
    unsafe { x.to_int_unchecked() }
}

/// `floor(num / den)` for `0 <= num < 2^24` and `1 <= den < 2^24` whose quotient is below 256 and
/// is an integer or at least `2^-16` from the next one (true of every call here, where `den`
/// is at most 65025 and the quotient is `k + j/den` with `j < den`): both operands are exact in
/// f32, the correctly rounded quotient is within half an ulp (`2^-17` below 256) of the true one,
/// so it never reaches the next integer, and an integer quotient is exact.
#[inline(always)]
fn floor_div(num: u32, den: u32) -> u32 {
    f32_to_i32(num as i32 as f32 / den as i32 as f32) as u32
}

/// `floor(x / 255)` for `x <= 65535`: `32897 / 2^23 = (1 + 127 / 2^23) / 255`, and the excess,
/// at most `65535 * 127 / (255 * 2^23) < 1/255`, never carries `x / 255` past the next integer.
#[inline(always)]
fn div255(x: u32) -> u32 {
    (x * 32897) >> 23
}

/// `HUE_DOWN[k]` is 1 where Pillow's float chain gives hue `k - 1` for an exact hue of `k`;
/// see [`hsv_exact`]. Found by comparing the exact hue with Pillow's on all 2^24 colours: they
/// differ at 47352 colours, all with an integer exact hue, by one, at these 64 hues; the test
/// `hue_down_is_where_pillow_rounds_an_integer_hue_down` rebuilds it from [`rgb_to_hsv`].
const HUE_DOWN: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut k = 1;
    while k <= 31 {
        t[k] = 1;
        k += 1;
    }
    // Green is the maximum: hues 88..=104 step 4.
    let mut k = 88;
    while k <= 104 {
        t[k] = 1;
        k += 4;
    }
    // Blue is the maximum: odd hues 129..=149, then 153..=209 step 4, and 176 and 184.
    let mut k = 129;
    while k <= 149 {
        t[k] = 1;
        k += 2;
    }
    let mut k = 153;
    while k <= 209 {
        t[k] = 1;
        k += 4;
    }
    t[176] = 1;
    t[184] = 1;
    t
};

/// [`HUE_DOWN`] as a 256-bit set, 32 hues per word.
const HUE_DOWN_WORDS: [u32; 8] = {
    let mut w = [0u32; 8];
    let mut k = 0;
    while k < 256 {
        w[k / 32] |= HUE_DOWN[k] << (k % 32);
        k += 1;
    }
    w
};

/// `HUE_DOWN[k]` for `k <= 255`, a bit test in [`HUE_DOWN_WORDS`] whose word is chosen with
/// selects (a table lookup would be a slow gather).
#[inline(always)]
fn hue_down(k: u32) -> u32 {
    const W: [u32; 8] = HUE_DOWN_WORDS;
    let hi = k >> 5;
    let pick = |w0: u32, w1: u32| if hi & 1 == 0 { w0 } else { w1 };
    let w = if hi & 4 == 0 {
        if hi & 2 == 0 {
            pick(W[0], W[1])
        } else {
            pick(W[2], W[3])
        }
    } else if hi & 2 == 0 {
        pick(W[4], W[5])
    } else {
        pick(W[6], W[7])
    };
    (w >> (k & 31)) & 1
}

/// [`rgb_to_hsv`] in exact integer arithmetic (branch-free).
///
/// Pillow computes `s = cr / maxc` in f32 and truncates `255 * s`; its hue is
/// `trunc(255 * frac(h6 / 6))` where `h6` is the hue in sixths of the circle, reached through
/// f32 divisions, an f32 or f64 subtraction, an f64 division, `+ 1 % 1` and a rounding to f32.
/// In exact arithmetic, with `cr = maxc - minc`:
/// - `S = floor(255 cr / maxc)`. Pillow's is always the same: a non-integer `255 cr / maxc` is
///   at least `1/255` from the next integer, far more than any rounding, and where it is an
///   integer `k`, `cr / maxc = k / 255`, whose binary expansion repeats the byte `k`, so the
///   24-bit f32 rounds it up (the first dropped bit is `k`'s leading one) and the truncation
///   gives `k` again.
/// - `H = floor(255 N / (6 cr))` with `N = 6 cr frac(h6 / 6)`, an integer in `0..6 cr`:
///   `g - b` (plus `6 cr` if negative) when red is the maximum, `2 cr + b - r` when green is,
///   `4 cr + r - g` when blue is. A non-integer quotient is at least `1/1530` from the next
///   integer, again far more than Pillow's roundings, so Pillow's hue is `H` there. Where the
///   quotient is an integer `k`, the float chain can land just below it: the rational
///   `N / 6cr = k / 255`, and so each float in the chain, depends on `k` alone (each `k` is
///   reached by one of the three branches), and Pillow's hue is `k - HUE_DOWN[k]`.
///
/// The test `hsv_exact_matches_pillow_on_all_inputs` checks all 2^24 inputs.
#[inline(always)]
fn hsv_exact(r: u32, g: u32, b: u32) -> (u32, u32, u32) {
    let maxc = r.max(g).max(b);
    let cr = maxc - r.min(g).min(b);
    let s = floor_div(255 * cr, maxc.max(1));
    let (ri, gi, bi, ci) = (r as i32, g as i32, b as i32, cr as i32);
    let gb = gi - bi;
    let n = if r == maxc {
        if gb < 0 {
            gb + 6 * ci
        } else {
            gb
        }
    } else if g == maxc {
        2 * ci + bi - ri
    } else {
        4 * ci + ri - gi
    } as u32;
    // A grey pixel (cr = 0) has n = 0, so h = 0 whatever the denominator.
    let den = 6 * cr.max(1);
    let k = floor_div(255 * n, den);
    let down = if k * den == 255 * n { hue_down(k) } else { 0 };
    (k - down, s, maxc)
}

/// [`hsv_to_rgb`] in exact integer arithmetic (branch-free).
///
/// Pillow's `hsv2rgb` takes the sector `i = floor(6h / 255)`, the fraction `f = frac(6h / 255)`
/// and `fs = s / 255` (through f64 and f32 roundings) and rounds `v (1 - fs)`, `v (1 - fs f)`
/// and `v (1 - fs (1 - f))` to the nearest integer. With `a = 6h - 255 i`, these are
/// `v - round(v s c / 65025)` for `c` = 255, `a` and `255 - a`. The exact quotient
/// `v s c / 65025` is never a half-integer (an odd denominator) and, for all 2^24 (h, s, v),
/// Pillow's float roundings never move its value across one, so the exact rounding is Pillow's
/// (the test `rgb_exact_matches_pillow_on_all_inputs` checks all 2^24 inputs):
/// `round(y / 65025) = floor((y + 32512) / 65025)`, a [`floor_div`], and
/// `round(y / 255) = floor((y + 127) / 255)`, a [`div255`].
///
/// Sector `i` outputs (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q) for
/// `i % 6 = 0..5`; `q` (`c = a`) occurs in odd sectors and `t` (`c = 255 - a`) in even ones, so
/// only one of them is computed. `s = 0` gives `p = t = q = v`, Pillow's grey. Returns the pixel
/// packed as `r | g << 8 | b << 16`.
#[inline(always)]
fn rgb_exact(h: u32, s: u32, v: u32) -> u32 {
    let i = div255(6 * h); // 0..=6, 6 only for h = 255, where a = 0: sector 0.
    let a = 6 * h - 255 * i;
    // All ones in even sectors, zero in odd ones. The selects below are written as bit operations
    // so that LLVM does not move them after the division and compute both sides.
    let even = (i & 1).wrapping_sub(1);
    let c = a ^ (even & 255); // 255 - a in even sectors
    let w = v * s;
    let p = v - div255(w + 127);
    let o = v - floor_div(w * c + 32512, 65025);
    // (r, g, b) is (v, o, p) rotated right by i / 2 places in even sectors, (o, v, p) in odd ones:
    // a 24-bit rotation of the packed bytes (by 24, i.e. none, for i = 6).
    let swap = (o ^ v) & !even;
    let packed = (v ^ swap) | (o ^ swap) << 8 | p << 16;
    let rot = (i >> 1) * 8;
    (packed << rot | packed >> (24 - rot)) & 0xff_ffff
}

crate::simd::multiversion! {
    /// [`grayscale`] of the image with `lut` applied to every sample first.
    pub fn grayscale_lut(pixels: &mut [u8], lut: &[u8; 256]) {
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let mut l = [0u8; BLOCK];
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block(block, lut, &mut r, &mut g, &mut b);
            for i in 0..BLOCK {
                l[i] = luma_u32(r[i], g[i], b[i]) as u8;
            }
            store_block(block, &l, &l, &l, |v| v);
        }
    }
}

/// `ImageOps.solarize(img, threshold)`'s table: values >= threshold become 255 - v.
pub fn solarize_lut(threshold: u8) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (v, out) in lut.iter_mut().enumerate() {
        *out = if v < threshold as usize {
            v as u8
        } else {
            255 - v as u8
        };
    }
    lut
}

/// The identity table.
pub const IDENTITY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// The table of `second` after `first`.
pub fn compose(first: &[u8; 256], second: &[u8; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (o, &v) in t.iter_mut().zip(first) {
        *o = second[v as usize];
    }
    t
}

/// Applies a 256-entry table to every sample.
pub fn apply_lut(pixels: &mut [u8], lut: &[u8; 256]) {
    crate::lut::apply_in_place(pixels, lut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_of_greys_is_identity_and_white_is_255() {
        for v in 0..=255u8 {
            assert_eq!(luma(v, v, v), v);
        }
    }

    #[test]
    fn blend_identity_and_clipping() {
        for a in 0..=255u8 {
            for b in [0u8, 17, 128, 255] {
                assert_eq!(blend(a, b, 1.0), b);
                assert_eq!(blend(a, b, 0.0), a);
            }
        }
        assert_eq!(blend(0, 200, 1.4), 255);
        assert_eq!(blend(100, 0, 1.4), 0);
    }

    #[test]
    fn hsv_round_trip_of_greys_and_primaries() {
        assert_eq!(rgb_to_hsv(255, 0, 0), (0, 255, 255));
        assert_eq!(hsv_to_rgb(0, 255, 255), (255, 0, 0));
        assert_eq!(rgb_to_hsv(9, 9, 9), (0, 0, 9));
        assert_eq!(hue_shift(-0.05), (256 - 12) as u8);
        assert_eq!(hue_shift(0.1), 25);
    }

    #[test]
    fn hsv_exact_matches_pillow_on_all_inputs() {
        for x in 0..1u32 << 24 {
            let (r, g, b) = ((x >> 16) as u8, (x >> 8) as u8, x as u8);
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let e = hsv_exact(r as u32, g as u32, b as u32);
            assert_eq!(e, (h as u32, s as u32, v as u32), "rgb {r} {g} {b}");
        }
    }

    #[test]
    fn rgb_exact_matches_pillow_on_all_inputs() {
        for x in 0..1u32 << 24 {
            let (h, s, v) = ((x >> 16) as u8, (x >> 8) as u8, x as u8);
            let (r, g, b) = hsv_to_rgb(h, s, v);
            let e = rgb_exact(h as u32, s as u32, v as u32);
            assert_eq!(e, u32::from_le_bytes([r, g, b, 0]), "hsv {h} {s} {v}");
        }
    }

    /// [`HUE_DOWN`] is where Pillow's hue of a colour whose exact hue is an integer `k` is
    /// `k - 1`: checked at one such colour per `k` (chroma 85, where `N = 2k`), and the bit test
    /// of the kernels against the table.
    #[test]
    fn hue_down_is_where_pillow_rounds_an_integer_hue_down() {
        // (An exact hue is below 255: N < 6 cr.)
        for k in 0..255u32 {
            let n = 2 * k as i32;
            // The colour with max 85, min 0 and N = n (see `hsv_exact`), sector by sector.
            let (r, g, b) = match n {
                0..85 => (85, n, 0),
                85..170 => (170 - n, 85, 0),
                170..255 => (0, 85, n - 170),
                255..340 => (0, 340 - n, 85),
                340..425 => (n - 340, 0, 85),
                _ => (85, 0, 510 - n),
            };
            let (h, _, _) = rgb_to_hsv(r as u8, g as u8, b as u8);
            assert_eq!(h as u32, k - HUE_DOWN[k as usize], "hue {k}");
            assert_eq!(hue_down(k), HUE_DOWN[k as usize], "hue {k}");
        }
    }

    /// A hue factor whose torchvision shift is `shift`.
    fn factor_for(shift: u8) -> f64 {
        let signed = if shift < 128 {
            shift as f64 + 0.5
        } else {
            shift as f64 - 256.5
        };
        let factor = signed / 255.0;
        assert_eq!(hue_shift(factor), shift);
        factor
    }

    /// Every `stride`-th 24-bit colour, as RGB pixels.
    fn colours(stride: usize) -> Vec<u8> {
        (0..1u32 << 24)
            .step_by(stride)
            .flat_map(|x| [(x >> 16) as u8, (x >> 8) as u8, x as u8])
            .collect()
    }

    const LEVELS: [(&str, u8); 3] = [
        ("scalar", crate::simd::SCALAR),
        ("avx2", crate::simd::AVX2),
        ("avx512", crate::simd::AVX512),
    ];

    /// Checks [`hue_lut`] with `lut`, at every level the CPU has, against Pillow's scalar
    /// [`rgb_to_hsv`], shift, [`hsv_to_rgb`] on `pixels` for each of `shifts`.
    fn check_hue(pixels: &[u8], lut: &[u8; 256], shifts: impl IntoIterator<Item = u8>) {
        let hsv: Vec<(u8, u8, u8)> = pixels
            .chunks_exact(3)
            .map(|p| rgb_to_hsv(lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]))
            .collect();
        let mut work = vec![0u8; pixels.len()];
        for shift in shifts {
            let want: Vec<u8> = hsv
                .iter()
                .flat_map(|&(h, s, v)| {
                    let (r, g, b) = hsv_to_rgb(h.wrapping_add(shift), s, v);
                    [r, g, b]
                })
                .chain(pixels[pixels.len() / 3 * 3..].iter().copied())
                .collect();
            for (name, level) in LEVELS {
                crate::simd::at_level(level, || {
                    work.copy_from_slice(pixels);
                    hue_lut(&mut work, factor_for(shift), lut);
                    if work != want {
                        let at = work.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                        let px = &pixels[at / 3 * 3..(at / 3 * 3 + 3).min(pixels.len())];
                        panic!("{name}, shift {shift}: pixel {px:?} (byte {at}) differs");
                    }
                });
            }
        }
    }

    #[test]
    fn hue_lut_matches_pillow_on_a_sample_of_colours_and_all_shifts() {
        // A stride coprime to 256 reaches every value of each channel.
        check_hue(&colours(1999), &IDENTITY, 0..=255);
    }

    /// All 2^24 colours at every shift, at every level (minutes in release: `cargo test
    /// --release -p loader hue_lut_matches_pillow_on_all_colours -- --ignored`).
    #[test]
    #[ignore]
    fn hue_lut_matches_pillow_on_all_colours() {
        check_hue(&colours(1), &IDENTITY, 0..=255);
    }

    /// Some tables the jitter composes before hue (brightness, contrast) and a scrambling one.
    fn tables() -> Vec<[u8; 256]> {
        let mut dark = [0u8; 256];
        blend_table(0, 0.6, &mut dark);
        let mut flat = [0u8; 256];
        blend_table(117, 0.7, &mut flat);
        let mut bright = [0u8; 256];
        blend_table(0, 1.4, &mut bright);
        let scrambled: [u8; 256] = std::array::from_fn(|i| (i * 167 + 89) as u8);
        vec![dark, flat, compose(&bright, &flat), scrambled]
    }

    #[test]
    fn hue_lut_with_a_table_matches_pillow() {
        let pixels = colours(4999);
        for lut in tables() {
            check_hue(&pixels, &lut, [0, 3, 200]);
        }
    }

    #[test]
    fn hue_lut_handles_every_length() {
        // Lengths around the vector widths, some with bytes past the last whole pixel (which
        // must stay as they are).
        let pixels = colours(3001);
        let lut = tables()[3];
        for len in (0..=200).chain([3 * 999, 3 * 1000 + 1, 3 * 1024 + 2]) {
            check_hue(&pixels[..len], &IDENTITY, [0, 25]);
            check_hue(&pixels[..len], &lut, [230]);
        }
    }

    /// Nanoseconds per pixel of [`hue_lut`] at each level, with and without a table
    /// (`cargo test --release -p loader hue_lut_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn hue_lut_speed() {
        let side = 224;
        let pixels: Vec<u8> = (0..3 * side * side)
            .map(|i| ((i * 7919) >> 5) as u8)
            .collect();
        let mut work = pixels.clone();
        for (name, level) in LEVELS {
            for (what, lut) in [("identity", IDENTITY), ("table", tables()[1])] {
                crate::simd::at_level(level, || {
                    let mut best = f64::MAX;
                    for _ in 0..20 {
                        let t = std::time::Instant::now();
                        for _ in 0..20 {
                            work.copy_from_slice(&pixels);
                            hue_lut(&mut work, -0.1, &lut);
                        }
                        best = best.min(t.elapsed().as_secs_f64() / 20.0);
                    }
                    let ns = best * 1e9 / (side * side) as f64;
                    println!("{name:>6} {what:>8}: {ns:.2} ns/pixel (copy included)");
                });
            }
        }
    }
}
