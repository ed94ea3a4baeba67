//! [`super::hue_lut`] with NEON (aarch64), 16 pixels at a time: [`super::hsv_exact`], the shift
//! and [`super::rgb_exact`] step for step, in 16-bit lanes where the values fit (8 per register)
//! and 32-bit lanes for the products and the f32 divisions (4 per register). `ld3` splits the
//! channels, `st3` joins them; `HUE_DOWN` is looked up for 16 hues at once as a 256-byte table
//! (`tbl` + 3 `tbx`, as `lut.rs`), in bytes, where the shift's wrap modulo 256 is free.

use super::HUE_DOWN;
use std::arch::aarch64::*;

/// [`HUE_DOWN`] as bytes.
const HUE_DOWN_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut k = 0;
    while k < 256 {
        t[k] = HUE_DOWN[k] as u8;
        k += 1;
    }
    t
};

/// `floor(num / den)` as [`super::floor_div`] does it, lane by lane.
#[inline(always)]
unsafe fn floor_div(num: uint32x4_t, den: uint32x4_t) -> uint32x4_t {
    vcvtq_u32_f32(vdivq_f32(vcvtq_f32_u32(num), vcvtq_f32_u32(den)))
}

/// `floor(x / 255)` for `x <= 65534` in 16-bit lanes: `(x + 1 + (x >> 8)) >> 8` (checked equal to
/// [`super::div255`] on every such `x` in the tests; no intermediate passes 65535).
#[inline(always)]
unsafe fn div255(x: uint16x8_t) -> uint16x8_t {
    vshrq_n_u16::<8>(vaddq_u16(vaddq_u16(x, vdupq_n_u16(1)), vshrq_n_u16::<8>(x)))
}

/// 16-bit lanes to bytes and back: the low and high halves of 16 bytes.
#[inline(always)]
unsafe fn widen(v: uint8x16_t) -> [uint16x8_t; 2] {
    [vmovl_u8(vget_low_u8(v)), vmovl_high_u8(v)]
}

#[inline(always)]
unsafe fn narrow(v: [uint16x8_t; 2]) -> uint8x16_t {
    vmovn_high_u16(vmovn_u16(v[0]), v[1])
}

/// [`super::hsv_exact`] of 8 pixels (16-bit lanes) before the correction: the hue
/// `k = floor(255 N / 6cr)`, whether it is exact (`k * 6cr == 255 N`, all ones), `s` and `v`.
#[inline(always)]
unsafe fn hsv8(
    r: uint16x8_t,
    g: uint16x8_t,
    b: uint16x8_t,
) -> (uint16x8_t, uint16x8_t, uint16x8_t, uint16x8_t) {
    let v = vmaxq_u16(vmaxq_u16(r, g), b);
    let cr = vsubq_u16(v, vminq_u16(vminq_u16(r, g), b));
    let cr2 = vaddq_u16(cr, cr);
    let cr4 = vaddq_u16(cr2, cr2);
    let cr6 = vaddq_u16(cr4, cr2);
    // N, signed where `g - b` is (|values| <= 1530).
    let (ri, gi, bi) = (
        vreinterpretq_s16_u16(r),
        vreinterpretq_s16_u16(g),
        vreinterpretq_s16_u16(b),
    );
    let gb = vsubq_s16(gi, bi);
    let below = vcltzq_s16(gb);
    let n_r = vaddq_u16(vreinterpretq_u16_s16(gb), vandq_u16(below, cr6));
    let n_g = vreinterpretq_u16_s16(vaddq_s16(vreinterpretq_s16_u16(cr2), vsubq_s16(bi, ri)));
    let n_b = vreinterpretq_u16_s16(vaddq_s16(vreinterpretq_s16_u16(cr4), vsubq_s16(ri, gi)));
    let n = vbslq_u16(vceqq_u16(g, v), n_g, n_b);
    let n = vbslq_u16(vceqq_u16(r, v), n_r, n);
    let den = vmaxq_u16(cr6, vdupq_n_u16(6));
    let vmax1 = vmaxq_u16(v, vdupq_n_u16(1));
    let halves = |lo: bool| {
        let pick = |x: uint16x8_t| {
            if lo {
                vget_low_u16(x)
            } else {
                vget_high_u16(x)
            }
        };
        let num_s = vmull_n_u16(pick(cr), 255);
        let s = floor_div(num_s, vmovl_u16(pick(vmax1)));
        let num = vmull_n_u16(pick(n), 255);
        let den = vmovl_u16(pick(den));
        let k = floor_div(num, den);
        let exact = vceqq_u32(vmulq_u32(k, den), num);
        (k, exact, s)
    };
    let (k0, e0, s0) = halves(true);
    let (k1, e1, s1) = halves(false);
    let join = |a: uint32x4_t, b: uint32x4_t| vmovn_high_u32(vmovn_u32(a), b);
    (join(k0, k1), join(e0, e1), join(s0, s1), v)
}

/// [`super::rgb_exact`] of 8 pixels (16-bit lanes): (r, g, b).
#[inline(always)]
unsafe fn rgb8(
    h: uint16x8_t,
    s: uint16x8_t,
    v: uint16x8_t,
) -> (uint16x8_t, uint16x8_t, uint16x8_t) {
    let byte = vdupq_n_u16(255);
    let h6 = vmulq_n_u16(h, 6);
    let i = div255(h6);
    let a = vmlsq_u16(h6, i, byte);
    let even = vceqzq_u16(vandq_u16(i, vdupq_n_u16(1)));
    let c = veorq_u16(a, vandq_u16(even, byte));
    // v s <= 65025; v s + 127 and its div255 stay in 16 bits.
    let w = vmulq_u16(v, s);
    let p = vsubq_u16(v, div255(vaddq_u16(w, vdupq_n_u16(127))));
    // round(w c / 65025) in f32: w c + 32512 < 2^24.
    let q = |wc: uint32x4_t| {
        let x = vaddq_u32(wc, vdupq_n_u32(32512));
        floor_div(x, vdupq_n_u32(65025))
    };
    let q0 = q(vmull_u16(vget_low_u16(w), vget_low_u16(c)));
    let q1 = q(vmull_high_u16(w, c));
    let o = vsubq_u16(v, vmovn_high_u32(vmovn_u32(q0), q1));
    // (v, o, p) in even sectors, (o, v, p) in odd ones, rotated right by i / 2 places (none for
    // i = 6, where i / 2 = 3).
    let swap = vbicq_u16(veorq_u16(o, v), even);
    let (x0, x1, x2) = (veorq_u16(v, swap), veorq_u16(o, swap), p);
    let rot = vshrq_n_u16::<1>(i);
    let (m1, m2) = (
        vceqq_u16(rot, vdupq_n_u16(1)),
        vceqq_u16(rot, vdupq_n_u16(2)),
    );
    (
        vbslq_u16(m1, x2, vbslq_u16(m2, x1, x0)),
        vbslq_u16(m1, x0, vbslq_u16(m2, x2, x1)),
        vbslq_u16(m1, x1, vbslq_u16(m2, x0, x2)),
    )
}

/// The hue shift on interleaved RGB pixels (whole pixels only), in place, 16 at a time; a last
/// group of fewer than 16 through a zero-padded copy.
pub(super) fn hue(pixels: &mut [u8], shift: u32) {
    let len = pixels.len() / 3 * 3;
    // SAFETY: NEON is part of the aarch64 target; the table is 256 bytes.
    let down = unsafe {
        let t = HUE_DOWN_BYTES.as_ptr();
        [
            vld1q_u8_x4(t),
            vld1q_u8_x4(t.add(64)),
            vld1q_u8_x4(t.add(128)),
            vld1q_u8_x4(t.add(192)),
        ]
    };
    let shift = shift as u8;
    // SAFETY (both): NEON; `p` is valid for 48 bytes.
    let run = |p: *mut u8| unsafe {
        let px = vld3q_u8(p);
        let (r, g, b) = (widen(px.0), widen(px.1), widen(px.2));
        let (k0, exact0, s0, v0) = hsv8(r[0], g[0], b[0]);
        let (k1, exact1, s1, v1) = hsv8(r[1], g[1], b[1]);
        // h = k - HUE_DOWN[k] where exact, plus the shift, modulo 256: in bytes.
        let k = narrow([k0, k1]);
        let d = vqtbl4q_u8(down[0], k);
        let d = vqtbx4q_u8(d, down[1], vsubq_u8(k, vdupq_n_u8(64)));
        let d = vqtbx4q_u8(d, down[2], vsubq_u8(k, vdupq_n_u8(128)));
        let d = vqtbx4q_u8(d, down[3], vsubq_u8(k, vdupq_n_u8(192)));
        let d = vandq_u8(d, narrow([exact0, exact1]));
        let h = widen(vaddq_u8(vsubq_u8(k, d), vdupq_n_u8(shift)));
        let a = rgb8(h[0], s0, v0);
        let b = rgb8(h[1], s1, v1);
        let out = uint8x16x3_t(narrow([a.0, b.0]), narrow([a.1, b.1]), narrow([a.2, b.2]));
        vst3q_u8(p, out);
    };
    let mut at = 0;
    while at + 48 <= len {
        run(pixels[at..at + 48].as_mut_ptr());
        at += 48;
    }
    if at < len {
        let n = len - at;
        let mut block = [0u8; 48];
        block[..n].copy_from_slice(&pixels[at..len]);
        run(block.as_mut_ptr());
        pixels[at..len].copy_from_slice(&block[..n]);
    }
}
