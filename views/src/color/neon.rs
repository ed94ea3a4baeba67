//! The NEON (aarch64) saturation kernel and sum of L, 16 interleaved RGB pixels per step (`ld3`,
//! `st3`). (Hue's NEON kernel is in `hue/neon.rs`.)

use std::arch::aarch64::*;

/// Pillow's L of 4 pixels: `(19595 r + 38470 g + 7471 b + 0x8000) >> 16` by widening
/// multiply-accumulates and a rounding narrowing shift.
#[inline(always)]
unsafe fn luma4(r: uint16x4_t, g: uint16x4_t, b: uint16x4_t) -> uint16x4_t {
    let sum = vmlal_n_u16(vmlal_n_u16(vmull_n_u16(r, 19595), g, 38470), b, 7471);
    vrshrn_n_u32::<16>(sum)
}

/// Pillow's L of 8 pixels (16-bit lanes).
#[inline(always)]
unsafe fn luma8(r: uint16x8_t, g: uint16x8_t, b: uint16x8_t) -> uint16x8_t {
    let low = luma4(vget_low_u16(r), vget_low_u16(g), vget_low_u16(b));
    vcombine_u16(
        low,
        luma4(vget_high_u16(r), vget_high_u16(g), vget_high_u16(b)),
    )
}

/// The four 64-entry groups of a 256-entry table, for [`look_up`].
pub(super) struct Groups([uint8x16x4_t; 4]);

impl Groups {
    pub(super) fn new(lut: &[u8; 256]) -> Groups {
        let t = lut.as_ptr();
        // SAFETY: NEON; the table is 256 bytes.
        Groups(unsafe {
            [
                vld1q_u8_x4(t),
                vld1q_u8_x4(t.add(64)),
                vld1q_u8_x4(t.add(128)),
                vld1q_u8_x4(t.add(192)),
            ]
        })
    }

    /// 16 bytes through the table (as `lut.rs` does it: `tbl`, then `tbx` per group).
    #[inline(always)]
    unsafe fn look_up(&self, v: uint8x16_t) -> uint8x16_t {
        let r = vqtbl4q_u8(self.0[0], v);
        let r = vqtbx4q_u8(r, self.0[1], vsubq_u8(v, vdupq_n_u8(64)));
        let r = vqtbx4q_u8(r, self.0[2], vsubq_u8(v, vdupq_n_u8(128)));
        vqtbx4q_u8(r, self.0[3], vsubq_u8(v, vdupq_n_u8(192)))
    }
}

/// The sum of Pillow's L over `pixels` (whole pixels only) with `lut` applied to every sample
/// (not in place; `None`: the identity), 16 pixels per step, the rest one at a time.
pub(super) fn luma_sum(pixels: &[u8], lut: Option<&[u8; 256]>) -> u64 {
    let groups = lut.map(Groups::new);
    let whole = pixels.len() / 48 * 48;
    let mut sum = 0u64;
    // At most 2^16 steps per u32 partial sum: each of its lanes gains at most 4 * 255 per step.
    for chunk in pixels[..whole].chunks(48 << 16) {
        // SAFETY: NEON; every `ld3` reads 48 bytes inside `chunk`.
        sum += unsafe {
            let mut acc = vdupq_n_u32(0);
            for at in (0..chunk.len()).step_by(48) {
                let mut px = vld3q_u8(chunk.as_ptr().add(at));
                if let Some(t) = &groups {
                    px = uint8x16x3_t(t.look_up(px.0), t.look_up(px.1), t.look_up(px.2));
                }
                let w = |v: uint8x16_t| [vmovl_u8(vget_low_u8(v)), vmovl_high_u8(v)];
                let (r, g, b) = (w(px.0), w(px.1), w(px.2));
                let l = vaddq_u16(luma8(r[0], g[0], b[0]), luma8(r[1], g[1], b[1]));
                acc = vpadalq_u16(acc, l);
            }
            vaddlvq_u32(acc)
        };
    }
    let lut = lut.unwrap_or(&super::IDENTITY);
    for p in pixels[whole..].chunks_exact(3) {
        let [r, g, b] = [p[0], p[1], p[2]].map(|v| lut[v as usize]);
        sum += super::luma(r, g, b) as u64;
    }
    sum
}

/// [`super::saturation_lut`]'s arithmetic for 8 pixels (16-bit lanes): Pillow's L ([`luma8`]),
/// then `blend_sat` per channel in f32 in the scalar code's order of operations (a multiply, then an
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
    let l = luma8(r, g, b);
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
