//! The NEON (aarch64) saturation kernel, 16 interleaved RGB pixels per step (`ld3`, `st3`).
//! (Hue's NEON kernel is in `hue/neon.rs`.)

use std::arch::aarch64::*;

/// [`super::saturation_lut`]'s arithmetic for 8 pixels (16-bit lanes): Pillow's L by widening
/// multiply-accumulates and a rounding narrowing shift (`(sum + 0x8000) >> 16`), then
/// `blend_sat` per channel in f32 in the scalar code's order of operations (a multiply, then an
/// add: never fused). The clamp is in the conversions: `fcvtzu` truncates and takes a negative
/// value to 0, the saturating narrowings take anything above 255 to 255, as clamping to
/// [0, 255] and then truncating does.
#[inline(always)]
unsafe fn saturation8(
    r: uint16x8_t,
    g: uint16x8_t,
    b: uint16x8_t,
    alpha: float32x4_t,
) -> [uint8x8_t; 3] {
    let luma = |lo: bool| {
        let (r, g, b) = if lo {
            (vget_low_u16(r), vget_low_u16(g), vget_low_u16(b))
        } else {
            (vget_high_u16(r), vget_high_u16(g), vget_high_u16(b))
        };
        let sum = vmlal_n_u16(vmlal_n_u16(vmull_n_u16(r, 19595), g, 38470), b, 7471);
        vrshrn_n_u32::<16>(sum)
    };
    let l = vcombine_u16(luma(true), luma(false));
    let lf = [
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(l))),
        vcvtq_f32_u32(vmovl_high_u16(l)),
    ];
    let blend = |c: uint16x8_t| {
        let d = vsubq_s16(vreinterpretq_s16_u16(c), vreinterpretq_s16_u16(l));
        let d = [
            vcvtq_f32_s32(vmovl_s16(vget_low_s16(d))),
            vcvtq_f32_s32(vmovl_high_s16(d)),
        ];
        let t = |i: usize| vcvtq_u32_f32(vaddq_f32(lf[i], vmulq_f32(alpha, d[i])));
        vqmovn_u16(vqmovn_high_u32(vqmovn_u32(t(0)), t(1)))
    };
    [blend(r), blend(g), blend(b)]
}

/// `ImageEnhance.Color` with factor `alpha` on interleaved RGB pixels (whole pixels only), in
/// place (the table, if any, already applied); a last group of fewer than 16 pixels through a
/// zero-padded copy.
pub(super) fn saturation(pixels: &mut [u8], alpha: f32) {
    let len = pixels.len() / 3 * 3;
    // SAFETY (both): NEON is part of the aarch64 target; `p` is valid for 48 bytes.
    let alpha = unsafe { vdupq_n_f32(alpha) };
    let run = |p: *mut u8| unsafe {
        let px = vld3q_u8(p);
        let w = |v: uint8x16_t| [vmovl_u8(vget_low_u8(v)), vmovl_high_u8(v)];
        let (r, g, b) = (w(px.0), w(px.1), w(px.2));
        let lo = saturation8(r[0], g[0], b[0], alpha);
        let hi = saturation8(r[1], g[1], b[1], alpha);
        let out = uint8x16x3_t(
            vcombine_u8(lo[0], hi[0]),
            vcombine_u8(lo[1], hi[1]),
            vcombine_u8(lo[2], hi[2]),
        );
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
