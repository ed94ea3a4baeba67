//! Hue (torchvision's `adjust_hue` on a PIL image): Pillow's u8 RGB -> HSV -> RGB chain, computed in
//! an exact integer form that gives Pillow's bytes for every input (proved and exhaustively
//! tested below, over all 2^24 colours), branch-free so that it vectorises; `avx512.rs` is the
//! same arithmetic in AVX-512 intrinsics.

use super::*;

/// torchvision `adjust_hue` on a PIL RGB image: Pillow's `rgb2hsv_row`, shift, `hsv2rgb`, computed
/// in an exact integer form that gives Pillow's bytes for every input, branch-free (every case
/// computed, the right one selected) so that it vectorises; see [`hue_lut`].
pub fn hue(pixels: &mut [u8], hue_factor: f64) {
    hue_lut(pixels, hue_factor, &IDENTITY)
}

/// The hue-channel shift torchvision applies: `np.int32(hue_factor * 255)` as u8 (wrapping).
pub fn hue_shift(hue_factor: f64) -> u8 {
    (hue_factor * 255.0).trunc() as i32 as u8
}

/// [`hue`] of the image with `lut` applied to every sample first.
///
/// Computed in the exact integer form of `hsv_exact` and `rgb_exact` (private; their comments
/// say why it is exact), which gives Pillow's bytes for every input, checked on all 2^24 inputs
/// of each: with AVX-512 or AVX2 by intrinsics, 16 or 8 pixels at a time, with NEON 16 at a time
/// (after [`crate::lut::apply_in_place`] where `lut` is not the identity), otherwise by a
/// branch-free loop over blocks of pixels that LLVM vectorises.
pub fn hue_lut(pixels: &mut [u8], hue_factor: f64, lut: &[u8; 256]) {
    let shift = hue_shift(hue_factor) as u32;
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX2 {
        let pixels = whole_pixels_through(pixels, lut);
        if crate::simd::level() >= crate::simd::AVX512BW {
            // SAFETY: `level` only reports AVX-512 BW where the CPU has F/BW/VL/DQ.
            unsafe { avx512::hue(pixels, shift) };
        } else {
            // SAFETY: `level` only reports AVX2 where the CPU has it.
            unsafe { avx2::hue(pixels, shift) };
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        neon::hue(whole_pixels_through(pixels, lut), shift);
        return;
    }
    hue_lut_vectorised(pixels, shift, lut);
}

crate::simd::multiversion! {
    /// [`hue_lut`] without AVX-512 intrinsics: [`hsv_exact`] and [`rgb_exact`] over blocks of
    /// de-interleaved pixels, which LLVM vectorises.
    fn hue_lut_vectorised(pixels: &mut [u8], shift: u32, lut: &[u8; 256]) {
        let table = BlockTable::new(lut);
        let (mut r, mut g, mut b) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        let (mut or, mut og, mut ob) = ([0u32; BLOCK], [0u32; BLOCK], [0u32; BLOCK]);
        for block in pixels.chunks_mut(3 * BLOCK) {
            load_block(block, &table, &mut r, &mut g, &mut b);
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

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

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
/// `hue_down_is_where_pillow_rounds_an_integer_hue_down` rebuilds it from Pillow's `rgb2hsv_row`.
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

/// Pillow's `rgb2hsv_row` in exact integer arithmetic (branch-free).
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

/// Pillow's `hsv2rgb` in exact integer arithmetic (branch-free).
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

/// Pillow's float formulas, the oracles the exact arithmetic is proved against: compiled for the
/// tests only.
#[cfg(test)]
mod pillow {
    /// Pillow's `rgb2hsv_row` (u8 HSV, following colorsys with float/double intermediates).
    #[inline(always)]
    pub(super) fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
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
    pub(super) fn hsv_to_rgb(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
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
}

#[cfg(test)]
mod tests {
    use super::pillow::{hsv_to_rgb, rgb_to_hsv};
    use super::*;

    #[test]
    fn hsv_round_trip_of_greys_and_primaries() {
        assert_eq!(rgb_to_hsv(255, 0, 0), (0, 255, 255));
        assert_eq!(hsv_to_rgb(0, 255, 255), (255, 0, 0));
        assert_eq!(rgb_to_hsv(9, 9, 9), (0, 0, 9));
        assert_eq!(hue_shift(-0.05), (256 - 12) as u8);
        assert_eq!(hue_shift(0.1), 25);
    }

    /// The AVX2 and NEON kernels' cheaper form of [`div255`], on every input they get.
    #[test]
    fn div255_shortcut_is_exact() {
        for x in 0..=65534u32 {
            assert_eq!((x + 1 + (x >> 8)) >> 8, div255(x), "div255({x})");
        }
    }

    /// The AVX2 kernel's division by 65025, on every input it gets.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_division_shortcut_is_exact() {
        for x in 0..1u32 << 24 {
            assert_eq!(
                (x as f32 * avx2::RECIP_65025) as u32,
                x / 65025,
                "{x} / 65025"
            );
        }
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

    /// Every level; those the CPU lacks are skipped (and said so) by [`check_hue`].
    const LEVELS: [(&str, u8); crate::simd::LEVELS.len()] = crate::simd::LEVELS;

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
                let ran = crate::simd::at_level(level, || {
                    work.copy_from_slice(pixels);
                    hue_lut(&mut work, factor_for(shift), lut);
                    if work != want {
                        let at = work.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                        let px = &pixels[at / 3 * 3..(at / 3 * 3 + 3).min(pixels.len())];
                        panic!("{name}, shift {shift}: pixel {px:?} (byte {at}) differs");
                    }
                });
                if ran.is_none() {
                    crate::simd::say_skipped(name);
                }
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
}
