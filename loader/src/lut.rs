//! Byte lookup tables applied to whole buffers: the per-sample ops of the pipeline (brightness,
//! contrast, solarize and their compositions) are 256-entry tables.
//!
//! With AVX-512 VBMI a table is four 64-byte registers and 64 bytes are looked up at once with two
//! two-register byte permutations and a blend on the index's top bit; otherwise one load per
//! byte.

/// `dst[i] = lut[src[i]]` (`dst` and `src` the same length).
pub fn apply(src: &[u8], dst: &mut [u8], lut: &[u8; 256]) {
    assert_eq!(src.len(), dst.len(), "table lookup needs equal lengths");
    #[cfg(target_arch = "x86_64")]
    if crate::simd::vbmi() {
        // SAFETY: the CPU supports AVX-512 F/BW and VBMI (checked by `simd::vbmi`).
        unsafe { apply_avx512(src.as_ptr(), dst.as_mut_ptr(), src.len(), lut) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = lut[s as usize];
    }
}

/// `buf[i] = lut[buf[i]]`.
pub fn apply_in_place(buf: &mut [u8], lut: &[u8; 256]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::vbmi() {
        let p = buf.as_mut_ptr();
        // SAFETY: as in `apply`; each 64-byte chunk is read before it is written.
        unsafe { apply_avx512(p, p, buf.len(), lut) };
        return;
    }
    for v in buf.iter_mut() {
        *v = lut[*v as usize];
    }
}

/// `len` bytes from `src` through `lut` into `dst` (which may equal `src`).
///
/// # Safety
/// The CPU must support AVX-512 F/BW and VBMI; `src` and `dst` must be valid for `len` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn apply_avx512(src: *const u8, dst: *mut u8, len: usize, lut: &[u8; 256]) {
    use std::arch::x86_64::*;
    let t = lut.as_ptr() as *const __m512i;
    let (t0, t1, t2, t3) = (
        _mm512_loadu_si512(t),
        _mm512_loadu_si512(t.add(1)),
        _mm512_loadu_si512(t.add(2)),
        _mm512_loadu_si512(t.add(3)),
    );
    let look = |v: __m512i| -> __m512i {
        let low = _mm512_permutex2var_epi8(t0, v, t1);
        let high = _mm512_permutex2var_epi8(t2, v, t3);
        _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), low, high)
    };
    let mut i = 0;
    while i + 64 <= len {
        let v = _mm512_loadu_si512(src.add(i) as *const _);
        _mm512_storeu_si512(dst.add(i) as *mut _, look(v));
        i += 64;
    }
    if i < len {
        let mask: u64 = (1u64 << (len - i)) - 1;
        let v = _mm512_maskz_loadu_epi8(mask, src.add(i) as *const i8);
        _mm512_mask_storeu_epi8(dst.add(i) as *mut i8, mask, look(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_goes_through_the_table() {
        let lut: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        for len in [0usize, 1, 63, 64, 65, 200, 672] {
            let src: Vec<u8> = (0..len).map(|i| (i * 101 % 256) as u8).collect();
            let want: Vec<u8> = src.iter().map(|&v| lut[v as usize]).collect();
            let mut dst = vec![0u8; len];
            apply(&src, &mut dst, &lut);
            assert_eq!(dst, want, "{len}");
            let mut buf = src.clone();
            apply_in_place(&mut buf, &lut);
            assert_eq!(buf, want, "{len} in place");
        }
    }
}
