//! Byte lookup tables applied to whole buffers: the per-sample ops of the pipeline (brightness,
//! contrast, solarize and their compositions) are 256-entry tables.
//!
//! With AVX-512 VBMI a table is four 64-byte registers and 64 bytes are looked up at once with two
//! two-register byte permutations and a blend on the index's top bit. With AVX2 (also used on
//! AVX-512 CPUs without VBMI) the table is sixteen 16-byte rows looked up 32 bytes at a time by
//! in-lane byte shuffles (see [`nibble_rows`]). With NEON (aarch64) the table is four 64-byte
//! groups of registers and 16 bytes are looked up with one four-register `tbl` and three `tbx`
//! (see [`apply_neon`]). Otherwise one load per byte.

/// `dst[i] = lut[src[i]]` (`dst` and `src` the same length).
pub fn apply(src: &[u8], dst: &mut [u8], lut: &[u8; 256]) {
    Table::new(lut).apply(src, dst)
}

/// `buf[i] = lut[buf[i]]`.
pub fn apply_in_place(buf: &mut [u8], lut: &[u8; 256]) {
    Table::new(lut).apply_in_place(buf)
}

/// A 256-entry table prepared for lookups at the current SIMD level, for callers that apply
/// the same table to many small pieces (the colour kernels' 64-pixel blocks, the rows of the
/// final write): the AVX2 lookup's sixteen shuffle rows are built once, not per piece.
pub struct Table {
    lut: [u8; 256],
    /// [`nibble_rows`] at the AVX2 level without VBMI (unused, zero, otherwise).
    #[cfg(target_arch = "x86_64")]
    rows: [std::arch::x86_64::__m128i; 16],
}

impl Table {
    /// Prepares `lut`.
    pub fn new(lut: &[u8; 256]) -> Table {
        Table {
            lut: *lut,
            #[cfg(target_arch = "x86_64")]
            rows: if !crate::simd::vbmi() && crate::simd::level() >= crate::simd::AVX2 {
                nibble_rows(lut)
            } else {
                // SAFETY: an all-zero __m128i is a valid value.
                unsafe { std::mem::zeroed() }
            },
        }
    }

    /// The table's 256 entries.
    pub fn entries(&self) -> &[u8; 256] {
        &self.lut
    }

    /// `dst[i] = table[src[i]]` (`dst` and `src` the same length).
    pub fn apply(&self, src: &[u8], dst: &mut [u8]) {
        assert_eq!(src.len(), dst.len(), "table lookup needs equal lengths");
        // SAFETY: both are valid for `src.len()` bytes.
        unsafe { self.run(src.as_ptr(), dst.as_mut_ptr(), src.len()) }
    }

    /// `buf[i] = table[buf[i]]`.
    pub fn apply_in_place(&self, buf: &mut [u8]) {
        let p = buf.as_mut_ptr();
        // SAFETY: `buf` is valid for its length; every vector chunk is read before it is
        // written, every byte of the scalar loop too.
        unsafe { self.run(p, p, buf.len()) }
    }

    /// `len` bytes from `src` through the table into `dst` (which may equal `src`).
    ///
    /// # Safety
    /// `src` and `dst` must be valid for `len` bytes.
    unsafe fn run(&self, src: *const u8, dst: *mut u8, len: usize) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::vbmi() {
            // SAFETY: the CPU supports AVX-512 F/BW and VBMI (checked by `simd::vbmi`).
            unsafe { apply_avx512(src, dst, len, &self.lut) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::simd::level() >= crate::simd::AVX2 && len >= 32 {
            // SAFETY: the CPU supports AVX2 (`level` checked it), and `new` built the rows.
            unsafe { apply_avx2(src, dst, len, &self.rows) };
            return;
        }
        #[cfg(target_arch = "aarch64")]
        if crate::simd::level() >= crate::simd::NEON && len >= 16 {
            // SAFETY: `src` and `dst` are valid for `len` bytes (this function's contract).
            unsafe { apply_neon(src, dst, len, &self.lut) };
            return;
        }
        for i in 0..len {
            // SAFETY: i < len, inside both buffers.
            unsafe { *dst.add(i) = self.lut[*src.add(i) as usize] };
        }
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

/// A 256-entry table as sixteen 16-byte rows for `pshufb` (broadcast to both 128-bit lanes by
/// [`apply_avx2`]), which looks a byte up in a row by its low nibble and gives zero where the index's top
/// bit is set. Step `i` (0..16) shifts the bytes so that those of high nibble `h` have the top bit
/// clear exactly for the steps in `S(h)`, and XORs its row: `S(h) = {h..=7} ∪ {8..=h + 7}` for
/// `h < 8` (a saturating add of `0x70 - 16 i` for `i < 8`, a wrapping subtraction of
/// `16 (i - 7)` for `i >= 8`), `{h..=15}` for `h >= 8`. The rows are the table's rows XORed so
/// that the rows of `S(h)` XOR to row `h`. Built once per [`Table`].
#[cfg(target_arch = "x86_64")]
fn nibble_rows(lut: &[u8; 256]) -> [std::arch::x86_64::__m128i; 16] {
    use std::arch::x86_64::*;
    // SAFETY (SSE2, which every x86-64 CPU has): rows 0..16 of 16 bytes lie inside the table.
    let row = |h: usize| unsafe { _mm_loadu_si128(lut.as_ptr().add(16 * h) as *const __m128i) };
    let xor = |a: __m128i, b: __m128i| unsafe { _mm_xor_si128(a, b) };
    // h >= 8: rows h..=15 XOR to row h. h < 8: rows 8..=h + 7 XOR to row 8 ^ row h + 8, so rows
    // h..=7 must XOR to `v(h) = row h ^ row 8 ^ row h + 8`; `v(i) ^ v(i + 1)` drops row 8.
    std::array::from_fn(|i| match i {
        15 => row(15),
        8..=14 => xor(row(i), row(i + 1)),
        7 => xor(xor(row(7), row(8)), row(15)),
        _ => xor(xor(row(i), row(i + 8)), xor(row(i + 1), row(i + 9))),
    })
}

/// `len` bytes from `src` through the table of `rows` ([`nibble_rows`]) into `dst` (which may
/// equal `src`), 32 at a time (the rest through a 32-byte buffer).
///
/// # Safety
/// The CPU must support AVX2; `src` and `dst` must be valid for `len` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_avx2(
    src: *const u8,
    dst: *mut u8,
    len: usize,
    rows: &[std::arch::x86_64::__m128i; 16],
) {
    use std::arch::x86_64::*;
    let rows: [__m256i; 16] = std::array::from_fn(|i| _mm256_broadcastsi128_si256(rows[i]));
    let look = |v: __m256i| -> __m256i {
        let mut r = _mm256_setzero_si256();
        for (i, row) in rows.iter().enumerate() {
            let index = if i < 8 {
                _mm256_adds_epu8(v, _mm256_set1_epi8((0x70 - 16 * i) as i8))
            } else {
                _mm256_sub_epi8(v, _mm256_set1_epi8((16 * (i - 7)) as i8))
            };
            r = _mm256_xor_si256(r, _mm256_shuffle_epi8(*row, index));
        }
        r
    };
    let mut i = 0;
    while i + 32 <= len {
        let v = _mm256_loadu_si256(src.add(i) as *const _);
        _mm256_storeu_si256(dst.add(i) as *mut _, look(v));
        i += 32;
    }
    if i < len {
        let n = len - i;
        let mut tail = [0u8; 32];
        std::ptr::copy_nonoverlapping(src.add(i), tail.as_mut_ptr(), n);
        let v = look(_mm256_loadu_si256(tail.as_ptr() as *const _));
        _mm256_storeu_si256(tail.as_mut_ptr() as *mut _, v);
        std::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(i), n);
    }
}

/// `len` (>= 16) bytes from `src` through `lut` into `dst` (which may equal `src`), 16 at a time:
/// `tbl` looks each byte up in entries 0-63 (zero past them), then `tbx` with the byte less 64,
/// 128 and 192 in the next three groups (an index past 63, as the wrapped difference is for the
/// other groups, leaves the byte as it is). A partial last vector: the last 16 source bytes,
/// loaded before anything is written (so still the source's when `dst` is `src`), looked up and
/// stored over the end (bytes already written get the same values again).
///
/// # Safety
/// `src` and `dst` must be valid for `len` bytes; `len >= 16`.
#[cfg(target_arch = "aarch64")]
unsafe fn apply_neon(src: *const u8, dst: *mut u8, len: usize, lut: &[u8; 256]) {
    use std::arch::aarch64::*;
    debug_assert!(len >= 16);
    let t = lut.as_ptr();
    let groups = [
        vld1q_u8_x4(t),
        vld1q_u8_x4(t.add(64)),
        vld1q_u8_x4(t.add(128)),
        vld1q_u8_x4(t.add(192)),
    ];
    let look = |v: uint8x16_t| -> uint8x16_t {
        let r = vqtbl4q_u8(groups[0], v);
        let r = vqtbx4q_u8(r, groups[1], vsubq_u8(v, vdupq_n_u8(64)));
        let r = vqtbx4q_u8(r, groups[2], vsubq_u8(v, vdupq_n_u8(128)));
        vqtbx4q_u8(r, groups[3], vsubq_u8(v, vdupq_n_u8(192)))
    };
    // The last 16 source bytes, read before anything is written (`dst` may be `src`).
    let last = vld1q_u8(src.add(len - 16));
    let mut i = 0;
    while i + 32 <= len {
        let (a, b) = (vld1q_u8(src.add(i)), vld1q_u8(src.add(i + 16)));
        vst1q_u8(dst.add(i), look(a));
        vst1q_u8(dst.add(i + 16), look(b));
        i += 32;
    }
    if i + 16 <= len {
        vst1q_u8(dst.add(i), look(vld1q_u8(src.add(i))));
        i += 16;
    }
    if i < len {
        vst1q_u8(dst.add(len - 16), look(last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_goes_through_the_table() {
        let lut: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        let scrambled: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(167) ^ 0x5a);
        for (name, level) in crate::simd::LEVELS {
            for lut in [lut, scrambled] {
                // Every byte value, and lengths around the vector widths.
                let every: Vec<u8> = (0..=255).rev().collect();
                for len in [
                    0usize, 1, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 200, 256, 672,
                ] {
                    let src: Vec<u8> = if len == 256 {
                        every.clone()
                    } else {
                        (0..len).map(|i| (i * 101 % 256) as u8).collect()
                    };
                    let want: Vec<u8> = src.iter().map(|&v| lut[v as usize]).collect();
                    let mut dst = vec![0u8; len];
                    let mut buf = src.clone();
                    let ran = crate::simd::at_level(level, || {
                        apply(&src, &mut dst, &lut);
                        apply_in_place(&mut buf, &lut);
                    });
                    if ran.is_none() {
                        crate::simd::say_skipped(name);
                        continue;
                    }
                    assert_eq!(dst, want, "{name}: {len}");
                    assert_eq!(buf, want, "{name}: {len} in place");
                }
            }
        }
    }
}
