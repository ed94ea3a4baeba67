//! Interleaved RGB <-> planar conversion of 64-pixel blocks.
//!
//! With AVX-512 VBMI a block (192 bytes, three registers) becomes three 64-byte planes with two
//! byte permutations per plane; with AVX2 (also used on AVX-512 CPUs without VBMI) each plane is
//! gathered from three 16-byte chunks per 16 pixels by in-lane byte shuffles, two groups of 16
//! pixels per register; with NEON (aarch64) one `ld3` per 16 pixels splits them; otherwise a plain
//! loop over fixed-size arrays.

/// Pixels per block.
pub const BLOCK: usize = 64;

/// Splits 64 interleaved RGB pixels into their R, G and B planes.
#[inline]
pub fn deinterleave(
    px: &[u8; 3 * BLOCK],
    r: &mut [u8; BLOCK],
    g: &mut [u8; BLOCK],
    b: &mut [u8; BLOCK],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::vbmi() {
        // SAFETY: the CPU supports AVX-512 F/BW and VBMI (checked by `simd::vbmi`).
        unsafe { deinterleave_avx512(px, [r, g, b]) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX2 {
        // SAFETY: the CPU supports AVX2 (`level` checked it).
        unsafe { deinterleave_avx2(px, [r, g, b]) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        deinterleave_neon(px, [r, g, b]);
        return;
    }
    for i in 0..BLOCK {
        r[i] = px[3 * i];
        g[i] = px[3 * i + 1];
        b[i] = px[3 * i + 2];
    }
}

/// Byte indexes of channel `c` of the 64 pixels: within the first two registers (bytes 0-127)
/// for the permutation over those, and within the third (bytes 128-191, less 128) for the rest.
#[cfg(target_arch = "x86_64")]
const fn channel_index(c: usize) -> ([u8; 64], [u8; 64], u64) {
    let mut lo = [0u8; 64];
    let mut hi = [0u8; 64];
    let mut from_hi = 0u64;
    let mut i = 0;
    while i < 64 {
        let at = 3 * i + c;
        if at < 128 {
            lo[i] = at as u8;
        } else {
            hi[i] = (at - 128) as u8;
            from_hi |= 1 << i;
        }
        i += 1;
    }
    (lo, hi, from_hi)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn deinterleave_avx512(px: &[u8; 3 * BLOCK], planes: [&mut [u8; BLOCK]; 3]) {
    use std::arch::x86_64::*;
    const INDEX: [([u8; 64], [u8; 64], u64); 3] =
        [channel_index(0), channel_index(1), channel_index(2)];
    let p = px.as_ptr() as *const __m512i;
    let (a, b, c) = (
        _mm512_loadu_si512(p),
        _mm512_loadu_si512(p.add(1)),
        _mm512_loadu_si512(p.add(2)),
    );
    for (plane, (lo, hi, from_hi)) in planes.into_iter().zip(INDEX.iter()) {
        let lo = _mm512_loadu_si512(lo.as_ptr() as *const _);
        let hi = _mm512_loadu_si512(hi.as_ptr() as *const _);
        let v = _mm512_permutex2var_epi8(a, lo, b);
        let v = _mm512_mask_permutexvar_epi8(v, *from_hi, hi, c);
        _mm512_storeu_si512(plane.as_mut_ptr() as *mut _, v);
    }
}

/// For channel `c`, the in-lane byte shuffles that take its bytes out of chunk 0, 1 and 2 (16
/// bytes each) of a group of 16 pixels, -1 (zero) for the bytes of the other chunks; the same in
/// both 128-bit halves.
#[cfg(target_arch = "x86_64")]
const fn chunk_shuffles(c: usize) -> [[i8; 32]; 3] {
    let mut out = [[-1i8; 32]; 3];
    let mut i = 0;
    while i < 16 {
        let at = 3 * i + c;
        out[at / 16][i] = (at % 16) as i8;
        out[at / 16][16 + i] = (at % 16) as i8;
        i += 1;
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn deinterleave_avx2(px: &[u8; 3 * BLOCK], mut planes: [&mut [u8; BLOCK]; 3]) {
    use std::arch::x86_64::*;
    const SHUFFLES: [[[i8; 32]; 3]; 3] = [chunk_shuffles(0), chunk_shuffles(1), chunk_shuffles(2)];
    let p = px.as_ptr();
    // Chunk k of groups 2h and 2h + 1 (pixels 32h..32h + 32), one group per half.
    let chunks = |h: usize, k: usize| -> __m256i {
        // SAFETY: both 16-byte chunks lie inside the 192-byte block.
        _mm256_loadu2_m128i(
            p.add(96 * h + 48 + 16 * k) as *const _,
            p.add(96 * h + 16 * k) as *const _,
        )
    };
    for h in 0..2 {
        let v = [chunks(h, 0), chunks(h, 1), chunks(h, 2)];
        for (plane, shuffles) in planes.iter_mut().zip(&SHUFFLES) {
            let pick = |k: usize| {
                _mm256_shuffle_epi8(v[k], _mm256_loadu_si256(shuffles[k].as_ptr() as *const _))
            };
            let bytes = _mm256_or_si256(_mm256_or_si256(pick(0), pick(1)), pick(2));
            // SAFETY: 32 bytes at 32h lie inside the 64-byte plane.
            _mm256_storeu_si256(plane.as_mut_ptr().add(32 * h) as *mut _, bytes);
        }
    }
}

/// 16 pixels per `ld3` (which de-interleaves three channels as it loads), three 16-byte stores.
#[cfg(target_arch = "aarch64")]
#[inline]
fn deinterleave_neon(px: &[u8; 3 * BLOCK], planes: [&mut [u8; BLOCK]; 3]) {
    use std::arch::aarch64::*;
    let [r, g, b] = planes;
    for k in 0..BLOCK / 16 {
        // SAFETY: NEON is part of the aarch64 target; 48 bytes at 48k lie inside the 192-byte
        // block, 16 at 16k inside each 64-byte plane.
        unsafe {
            let v = vld3q_u8(px.as_ptr().add(48 * k));
            vst1q_u8(r.as_mut_ptr().add(16 * k), v.0);
            vst1q_u8(g.as_mut_ptr().add(16 * k), v.1);
            vst1q_u8(b.as_mut_ptr().add(16 * k), v.2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_hold_every_channel_in_order() {
        let px: [u8; 3 * BLOCK] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        for (name, level) in crate::simd::LEVELS {
            let (mut r, mut g, mut b) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
            if crate::simd::at_level(level, || deinterleave(&px, &mut r, &mut g, &mut b)).is_none()
            {
                crate::simd::say_skipped(name);
                continue;
            }
            for i in 0..BLOCK {
                assert_eq!(
                    [r[i], g[i], b[i]],
                    [px[3 * i], px[3 * i + 1], px[3 * i + 2]],
                    "{name}: pixel {i}"
                );
            }
        }
    }
}
