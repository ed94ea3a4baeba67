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
    let n = px.len() / 3;
    // The identity table (the common case) is skipped so that the plain de-interleave vectorises;
    // a full block goes through a fixed-size array, which LLVM turns into byte shuffles.
    let identity = lut[255] == 255 && lut[0] == 0 && lut == &IDENTITY;
    if identity && n == BLOCK {
        let px: &[u8; 3 * BLOCK] = px[..3 * BLOCK].try_into().unwrap();
        for i in 0..BLOCK {
            r[i] = px[3 * i] as u32;
            g[i] = px[3 * i + 1] as u32;
            b[i] = px[3 * i + 2] as u32;
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

#[inline(always)]
fn store_block(px: &mut [u8], r: &[u8; BLOCK], g: &[u8; BLOCK], b: &[u8; BLOCK]) {
    if px.len() == 3 * BLOCK {
        let px: &mut [u8; 3 * BLOCK] = (&mut px[..3 * BLOCK]).try_into().unwrap();
        for i in 0..BLOCK {
            px[3 * i] = r[i];
            px[3 * i + 1] = g[i];
            px[3 * i + 2] = b[i];
        }
        return;
    }
    for (i, p) in px.chunks_exact_mut(3).enumerate() {
        p[0] = r[i];
        p[1] = g[i];
        p[2] = b[i];
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
            store_block(block, &or, &og, &ob);
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

/// torchvision `adjust_hue` on a PIL RGB image: [`rgb_to_hsv`], shift, [`hsv_to_rgb`], computed in
/// a branch-free form (every case computed, the right one selected) that vectorises, with the same
/// float operations in the same order; `fmod`, `floor` and `round` (library calls on the baseline
/// target) are replaced by their exact equivalents on the ranges that occur, and what hsv2rgb
/// derives from h and s alone is looked up in 256-entry tables.
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

crate::simd::multiversion! {
    /// [`hue`] of the image with `lut` applied to every sample first.
    pub fn hue_lut(pixels: &mut [u8], hue_factor: f64, lut: &[u8; 256]) {
        let shift = hue_shift(hue_factor) as u32;
        // What hsv2rgb derives from h and s alone, looked up instead of divided each time.
        let mut sector = [0u32; 256];
        let mut frac = [0f32; 256];
        let mut fsat = [0f32; 256];
        for k in 0..256 {
            let hd = k as f32 as f64 * 6.0 / 255.0;
            let i = hd.floor() as i32;
            frac[k] = (hd - i as f32 as f64) as f32;
            sector[k] = (i % 6) as u32;
            fsat[k] = (k as f32 as f64 / 255.0) as f32;
        }
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let (mut or, mut og, mut ob) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block(block, lut, &mut r, &mut g, &mut b);
            for i in 0..BLOCK {
                let (h, s, v) = hsv_block(r[i], g[i], b[i]);
                let h = ((h + shift) & 255) as usize;
                let (x, y, z) = rgb_block(sector[h], frac[h], fsat[s as usize], s, v);
                or[i] = x as u8;
                og[i] = y as u8;
                ob[i] = z as u8;
            }
            store_block(block, &or, &og, &ob);
        }
    }
}

/// [`rgb_to_hsv`] without branches.
#[inline(always)]
fn hsv_block(r: u32, g: u32, b: u32) -> (u32, u32, u32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let grey = maxc == minc;
    let cr = if grey { 1 } else { maxc - minc } as f32;
    let s = (maxc - minc) as f32 / (maxc.max(1)) as f32;
    let rc = (maxc - r) as f32 / cr;
    let gc = (maxc - g) as f32 / cr;
    let bc = (maxc - b) as f32 / cr;
    let h_r = bc - gc;
    let h_g = (2.0 + rc as f64 - bc as f64) as f32;
    let h_b = (4.0 + gc as f64 - rc as f64) as f32;
    let h = if r == maxc {
        h_r
    } else if g == maxc {
        h_g
    } else {
        h_b
    };
    // (h / 6 + 1) % 1 with h in [-1, 5]: x is in [5/6, 11/6], and x - 1 is exact for x >= 1.
    let x = h as f64 / 6.0 + 1.0;
    let x = if x >= 1.0 { x - 1.0 } else { x };
    let h = x as f32;
    let uh = f64_to_i32(h as f64 * 255.0).clamp(0, 255) as u32;
    let us = f64_to_i32(s as f64 * 255.0).clamp(0, 255) as u32;
    if grey {
        (0, 0, maxc)
    } else {
        (uh, us, maxc)
    }
}

/// `x as i32` (truncation) for `x` known to be in `0.0..=256.0` here, without the saturating
/// cast's range checks, which keep LLVM from vectorising.
#[inline(always)]
fn f64_to_i32(x: f64) -> i32 {
    debug_assert!((-1.0..=1e6).contains(&x));
    // SAFETY: the callers' values are finite and far inside i32's range.
    unsafe { x.to_int_unchecked() }
}

#[inline(always)]
fn f32_to_i32(x: f32) -> i32 {
    debug_assert!((-1.0..=1e6).contains(&x));
    // SAFETY: as above.
    unsafe { x.to_int_unchecked() }
}

/// C's `round` for x >= 0: `trunc(x + 0.5)`, less one where `x + 0.5` rounded up to an integer.
#[inline(always)]
fn round_nonneg(x: f64) -> i32 {
    let r = f64_to_i32(x + 0.5);
    if r as f64 - x > 0.5 {
        r - 1
    } else {
        r
    }
}

/// [`hsv_to_rgb`] without branches, given the sector `i` (0..6), the fraction `f` and `fs` that
/// it derives from h and s.
#[inline(always)]
fn rgb_block(i: u32, f: f32, fs: f32, s: u32, v: u32) -> (u32, u32, u32) {
    let vf = v as f32 as f64;
    let p = round_nonneg(vf * (1.0 - fs as f64)).clamp(0, 255) as u32;
    let q = round_nonneg(vf * (1.0 - (fs * f) as f64)).clamp(0, 255) as u32;
    let t = round_nonneg(vf * (1.0 - fs as f64 * (1.0 - f as f64))).clamp(0, 255) as u32;
    let x = if i == 0 || i == 5 {
        v
    } else if i == 1 {
        q
    } else if i == 4 {
        t
    } else {
        p
    };
    let y = if i == 0 {
        t
    } else if i == 1 || i == 2 {
        v
    } else if i == 3 {
        q
    } else {
        p
    };
    let z = if i <= 1 {
        p
    } else if i == 2 {
        t
    } else if i <= 4 {
        v
    } else {
        q
    };
    if s == 0 {
        (v, v, v)
    } else {
        (x, y, z)
    }
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
            store_block(block, &l, &l, &l);
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
    for v in pixels.iter_mut() {
        *v = lut[*v as usize];
    }
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
}
