//! Interleaved RGB <-> planar conversion of 64-pixel blocks.
//!
//! With AVX-512 VBMI a block (192 bytes, three registers) becomes three 64-byte planes with two
//! byte permutations per plane; otherwise a plain loop over fixed-size arrays (which LLVM turns
//! into byte shuffles).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_hold_every_channel_in_order() {
        let px: [u8; 3 * BLOCK] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let (mut r, mut g, mut b) = ([0u8; BLOCK], [0u8; BLOCK], [0u8; BLOCK]);
        deinterleave(&px, &mut r, &mut g, &mut b);
        for i in 0..BLOCK {
            assert_eq!(
                [r[i], g[i], b[i]],
                [px[3 * i], px[3 * i + 1], px[3 * i + 2]],
                "{i}"
            );
        }
    }
}
