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
//!
//! Layout: this file holds the ops and their shared block loaders; `avx2.rs` the AVX2 kernels'
//! eight-pixel framing and the AVX2 saturation kernel; `neon.rs` the NEON saturation kernel; the
//! `hue` module holds hue's exact integer arithmetic and its AVX2, AVX-512 and NEON kernels.

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

/// The table a colour kernel applies to every sample as it loads its blocks, prepared once per
/// call ([`crate::lut::Table`]), and whether it is the identity (then skipped).
struct BlockTable {
    table: crate::lut::Table,
    identity: bool,
}

impl BlockTable {
    fn new(lut: &[u8; 256]) -> BlockTable {
        BlockTable {
            table: crate::lut::Table::new(lut),
            identity: lut == &IDENTITY,
        }
    }
}

/// De-interleaves up to [`BLOCK`] RGB pixels through `table` into three arrays; returns the
/// number of pixels.
#[inline(always)]
fn load_block(
    px: &[u8],
    table: &BlockTable,
    r: &mut [u32; BLOCK],
    g: &mut [u32; BLOCK],
    b: &mut [u32; BLOCK],
) -> usize {
    let (identity, lut) = (table.identity, table.table.entries());
    let n = px.len() / 3;
    // A full block: the table applied 64 bytes at a time (`lut`), then split into planes
    // (`planar`), then widened. The identity table (the common case) is skipped.
    if n == BLOCK {
        let mut looked_up = [0u8; 3 * BLOCK];
        let px: &[u8; 3 * BLOCK] = if identity {
            px[..3 * BLOCK].try_into().unwrap()
        } else {
            table.table.apply(&px[..3 * BLOCK], &mut looked_up);
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
        let table = BlockTable::new(lut);
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let mut sum = 0u64;
        for block in pixels.chunks(3 * BLOCK) {
            let n = load_block(block, &table, &mut r, &mut g, &mut b);
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
    (luma_total(&pixels[..3 * n], lut) as f64 / n as f64 + 0.5) as u8
}

/// The sum of Pillow's L over `pixels` (whole pixels) with `lut` applied to every sample (without
/// applying it): at the NEON level by `neon.rs`'s kernel, otherwise by the block loop
/// [`luma_sum`], which LLVM vectorises.
fn luma_total(pixels: &[u8], lut: &[u8; 256]) -> u64 {
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        return neon::luma_sum(pixels, (lut != &IDENTITY).then_some(lut));
    }
    luma_sum(pixels, lut)
}

/// `ImageEnhance.Contrast(img).enhance(factor)`: blend with the mean grey level.
pub fn contrast(pixels: &mut [u8], factor: f64) {
    let mean = contrast_mean(pixels);
    let mut lut = [0u8; 256];
    blend_table(mean, factor as f32, &mut lut);
    apply_lut(pixels, &lut);
}

/// [`saturation`] of the image with `lut` applied to every sample first: at the AVX2 level by
/// `avx2.rs`'s kernel, at the NEON level by `neon.rs`'s (after the table, if any, is applied in
/// place), otherwise by the block
/// loop below, which LLVM vectorises (its AVX-512 copy at the AVX-512 levels).
pub fn saturation_lut(pixels: &mut [u8], factor: f64, lut: &[u8; 256]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::AVX2 {
        // SAFETY: `level` only reports AVX2 where the CPU has it.
        unsafe { avx2::saturation(whole_pixels_through(pixels, lut), factor as f32) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        neon::saturation(whole_pixels_through(pixels, lut), factor as f32);
        return;
    }
    saturation_lut_vectorised(pixels, factor, lut)
}

/// The whole pixels of `pixels` with `lut` applied in place (skipped for the identity), for the
/// intrinsic kernels that take their input already through the table; bytes past the last whole
/// pixel stay as they are, as everywhere else.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn whole_pixels_through<'a>(pixels: &'a mut [u8], lut: &[u8; 256]) -> &'a mut [u8] {
    let whole = pixels.len() / 3 * 3;
    let pixels = &mut pixels[..whole];
    if lut != &IDENTITY {
        crate::lut::apply_in_place(pixels, lut);
    }
    pixels
}

crate::simd::multiversion! {
    /// [`saturation_lut`] over blocks of de-interleaved pixels, which LLVM vectorises.
    fn saturation_lut_vectorised(pixels: &mut [u8], factor: f64, lut: &[u8; 256]) {
        let table = BlockTable::new(lut);
        let alpha = factor as f32;
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let (mut or, mut og, mut ob) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block(block, &table, &mut r, &mut g, &mut b);
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

/// `convert('L')` replicated to three channels (torchvision `rgb_to_grayscale(img, 3)`).
pub fn grayscale(pixels: &mut [u8]) {
    grayscale_lut(pixels, &IDENTITY)
}

/// `x as i32` (truncation) for `x` known to be in `0.0..=2^24` here, without the saturating
/// cast's range checks, which keep LLVM from vectorising.
#[inline(always)]
fn f32_to_i32(x: f32) -> i32 {
    debug_assert!((-1.0..=16777216.0).contains(&x));
    // SAFETY: the callers' values are finite and far inside i32's range.
    unsafe { x.to_int_unchecked() }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
mod hue;
#[cfg(target_arch = "aarch64")]
mod neon;
pub use hue::{hue, hue_lut, hue_shift};

crate::simd::multiversion! {
    /// [`grayscale`] of the image with `lut` applied to every sample first.
    pub fn grayscale_lut(pixels: &mut [u8], lut: &[u8; 256]) {
        let table = BlockTable::new(lut);
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let mut l = [0u8; BLOCK];
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block(block, &table, &mut r, &mut g, &mut b);
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

    /// [`saturation_lut`] at every level the CPU has, against Pillow's formula one pixel at a
    /// time ([`luma`], [`blend`]) on a spread of colours: factors inside and outside [0, 1]
    /// (clipping), with and without a table, at lengths around the vector widths (bytes past
    /// the last whole pixel stay as they are).
    #[test]
    fn saturation_lut_matches_the_formula_at_every_level() {
        let pixels: Vec<u8> = (0..1u32 << 24)
            .step_by(4099)
            .flat_map(|x| [(x >> 16) as u8, (x >> 8) as u8, x as u8])
            .collect();
        let mut bright = [0u8; 256];
        blend_table(0, 1.3, &mut bright);
        let lengths = (0..=100).chain([3 * 999, 3 * 1000 + 2, pixels.len()]);
        for len in lengths {
            let pixels = &pixels[..len];
            for (factor, lut) in [
                (0.8, &IDENTITY),
                (1.2, &bright),
                (0.0, &IDENTITY),
                (1.9, &bright),
                (-0.4, &IDENTITY),
            ] {
                let want: Vec<u8> = pixels
                    .chunks_exact(3)
                    .flat_map(|p| {
                        let [r, g, b] = [p[0], p[1], p[2]].map(|v| lut[v as usize]);
                        let l = luma(r, g, b);
                        [r, g, b].map(|c| blend(l, c, factor as f32))
                    })
                    .chain(pixels[len / 3 * 3..].iter().copied())
                    .collect();
                for (name, level) in crate::simd::LEVELS {
                    let mut work = pixels.to_vec();
                    match crate::simd::at_level(level, || saturation_lut(&mut work, factor, lut)) {
                        Some(()) => assert!(work == want, "{name}: factor {factor}, {len} bytes"),
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
    }

    /// The sum of L that the contrast's mean divides ([`luma_total`]) at every level the CPU
    /// has, against [`luma`] one pixel at a time, with and without a table, at lengths around
    /// the vector widths.
    #[test]
    fn luma_sum_matches_the_formula_at_every_level() {
        let pixels: Vec<u8> = (0..1u32 << 24)
            .step_by(4099)
            .flat_map(|x| [(x >> 16) as u8, (x >> 8) as u8, x as u8])
            .collect();
        let mut bright = [0u8; 256];
        blend_table(0, 1.3, &mut bright);
        let scrambled: [u8; 256] = std::array::from_fn(|i| (i * 167 + 89) as u8);
        for n in (0..=70).chain([999, 1000, pixels.len() / 3]) {
            let pixels = &pixels[..3 * n];
            for lut in [&IDENTITY, &bright, &scrambled] {
                let want: u64 = pixels
                    .chunks_exact(3)
                    .map(|p| {
                        luma(lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]) as u64
                    })
                    .sum();
                for (name, level) in crate::simd::LEVELS {
                    match crate::simd::at_level(level, || luma_total(pixels, lut)) {
                        Some(sum) => assert_eq!(sum, want, "{name}: {n} pixels"),
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
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
}
