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
fn blend_table(degenerate: u8, alpha: f32, lut: &mut [u8; 256]) {
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

/// The grey level `ImageEnhance.Contrast` blends with: `int(mean(L) + 0.5)` over the image.
pub fn contrast_mean(pixels: &[u8]) -> u8 {
    let n = pixels.len() / 3;
    if n == 0 {
        return 0;
    }
    let sum: u64 = pixels
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]) as u64)
        .sum();
    (sum as f64 / n as f64 + 0.5) as u8
}

/// `ImageEnhance.Contrast(img).enhance(factor)`: blend with the mean grey level.
pub fn contrast(pixels: &mut [u8], factor: f64) {
    let mean = contrast_mean(pixels);
    let mut lut = [0u8; 256];
    blend_table(mean, factor as f32, &mut lut);
    apply_lut(pixels, &lut);
}

/// `ImageEnhance.Color(img).enhance(factor)`: blend each channel with the pixel's L.
pub fn saturation(pixels: &mut [u8], factor: f64) {
    let alpha = factor as f32;
    for p in pixels.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p[0] = blend(l, p[0], alpha);
        p[1] = blend(l, p[1], alpha);
        p[2] = blend(l, p[2], alpha);
    }
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

/// torchvision `adjust_hue` on a PIL RGB image.
pub fn hue(pixels: &mut [u8], hue_factor: f64) {
    let shift = hue_shift(hue_factor);
    for p in pixels.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let (r, g, b) = hsv_to_rgb(h.wrapping_add(shift), s, v);
        p[0] = r;
        p[1] = g;
        p[2] = b;
    }
}

/// `convert('L')` replicated to three channels (torchvision `rgb_to_grayscale(img, 3)`).
pub fn grayscale(pixels: &mut [u8]) {
    for p in pixels.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p.fill(l);
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
