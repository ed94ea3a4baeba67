//! Pillow's `ImageFilter.GaussianBlur(sigma)`, bit-exact: not a true Gaussian kernel but an
//! extended box blur (Gwosdek et al. 2011), three passes along rows, then three along columns.
//!
//! Each pass is Pillow's `ImagingLineBoxBlur`: a box of radius `l` (integer part) with weight
//! `ww / 2^24` per tap plus the two taps just outside weighted `fw / 2^24` (the fractional part),
//! edges replicated, accumulated in u32 and rounded with `(bulk + 2^23) >> 24`.
//!
//! Hand-written paths: the transposes (AVX-512 VBMI gathers, AVX2 and NEON 8 x 8 blocks) and the
//! box passes with 16-bit window sums (AVX2 `madd`s, NEON widening multiply-accumulates).

/// Pillow's `_gaussian_blur_radius`: the extended-box radius for `sigma` and `passes`, computed
/// with Pillow's mix of float and double.
pub fn box_radius(sigma: f32, passes: u32) -> f32 {
    let sigma2: f32 = sigma * sigma / passes as f32;
    let big_l: f32 = (12.0 * sigma2 as f64 + 1.0).sqrt() as f32;
    let l: f32 = ((big_l as f64 - 1.0) / 2.0).floor() as f32;
    let mut a: f32 = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// Integer radius and the two fixed-point weights of one box pass (Pillow's
/// `ImagingHorizontalBoxBlur` set-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxWeights {
    pub radius: usize,
    pub ww: u32,
    pub fw: u32,
}

impl BoxWeights {
    pub fn new(float_radius: f32) -> BoxWeights {
        let radius = float_radius as i32;
        let ww = ((1u32 << 24) as f32 / (float_radius * 2.0 + 1.0)) as u32;
        let fw = ((1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww))) / 2;
        BoxWeights {
            radius: radius.max(0) as usize,
            ww,
            fw,
        }
    }
}

/// One box pass along the *line index* of `nlines` lines of `len` bytes each (`src` -> `dst`):
/// output line `y` is Pillow's `ImagingLineBoxBlur` at position `y`, for every byte of the line at
/// once (edges replicated). Run over the rows of an image it blurs columns; run over the rows of
/// the transposed image it blurs rows. Each inner loop is element-wise over a contiguous line, so it
/// vectorises; `acc` holds the running window sums (one u32 per byte of a line).
#[inline(always)]
fn box_lines(
    src: &[u8],
    dst: &mut [u8],
    nlines: usize,
    len: usize,
    w: BoxWeights,
    acc: &mut [u32],
) {
    let r = w.radius as isize;
    let last = nlines as isize - 1;
    let line = |i: isize| -> &[u8] {
        let i = i.clamp(0, last) as usize;
        &src[i * len..(i + 1) * len]
    };
    let acc = &mut acc[..len];
    acc.fill(0);
    for k in -r..=r {
        for (a, &v) in acc.iter_mut().zip(line(k)) {
            *a += v as u32;
        }
    }
    let (ww, fw) = (w.ww, w.fw);
    for (y, out) in dst.chunks_exact_mut(len).take(nlines).enumerate() {
        let y = y as isize;
        let (before, after) = (line(y - r - 1), line(y + r + 1));
        if y > 0 {
            let add = line(y + r);
            for ((a, &p), &m) in acc.iter_mut().zip(add).zip(before) {
                *a = a.wrapping_add(p as u32).wrapping_sub(m as u32);
            }
        }
        for (((o, &a), &b), &c) in out.iter_mut().zip(acc.iter()).zip(before).zip(after) {
            let bulk = a
                .wrapping_mul(ww)
                .wrapping_add((b as u32 + c as u32).wrapping_mul(fw));
            *o = (bulk.wrapping_add(1 << 23) >> 24) as u8;
        }
    }
}

crate::simd::multiversion! {
    /// The six passes: rows (on the transposed image, `t`/`u`), then columns, ending in `pixels`.
    fn six_passes(pixels: &mut [u8], t: &mut [u8], u: &mut [u8], acc: &mut [u32], width: usize, height: usize, w: BoxWeights) {
        let (row_len, col_len) = (3 * height, 3 * width);
        transpose(pixels, width, height, t);
        box_pass(t, u, width, row_len, w, acc);
        box_pass(u, t, width, row_len, w, acc);
        box_pass(t, u, width, row_len, w, acc);
        transpose(u, height, width, pixels);
        box_pass(pixels, t, height, col_len, w, acc);
        box_pass(t, u, height, col_len, w, acc);
        box_pass(u, pixels, height, col_len, w, acc);
    }
}

/// [`box_lines`], with AVX2 `madd`s at the AVX2 level (the AVX-512 copy of [`box_lines`] was
/// measured faster than them at the AVX-512 levels) where the radius is at most
/// [`MADD_MAX_RADIUS`] (every blur of the paper's pipeline: sigma <= 2 gives radius <= 2).
#[inline(always)]
fn box_pass(src: &[u8], dst: &mut [u8], nlines: usize, len: usize, w: BoxWeights, acc: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::AVX2 && w.radius <= MADD_MAX_RADIUS {
        // SAFETY: the CPU supports AVX2 (`level` checked it).
        unsafe { box_lines_avx2(src, dst, nlines, len, w, acc) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON && w.radius <= MADD_MAX_RADIUS {
        box_lines_neon(src, dst, nlines, len, w, acc);
        return;
    }
    box_lines(src, dst, nlines, len, w, acc);
}

/// The largest radius whose window sums (`(2r + 1) * 255`) fit in 16 bits for [`box_lines_avx2`]
/// (signed) and [`box_lines_neon`].
const MADD_MAX_RADIUS: usize = 63;

/// [`box_lines`] with NEON (aarch64), 16 bytes of a line per step: the window sums in 16-bit
/// lanes (kept in `acc`), updated by widening adds and subtractions of the entering and leaving
/// bytes (`uaddw`, `usubw`); the weighting as widening multiply-accumulates (`umull`, `umlal`) of
/// (window sum, sum of the two outer taps) by the 12-bit halves of (`ww`, `fw`), then
/// `hi + (lo >> 12)` (`usra`) and a rounding narrowing shift by 12 (`rshrn`):
/// `(hi * 2^12 + lo + 2^23) >> 24 = (hi + (lo >> 12) + 2^11) >> 12`, the scalar `u32` result
/// (no sum here wraps). The rest of a line as [`box_lines`].
#[cfg(target_arch = "aarch64")]
fn box_lines_neon(
    src: &[u8],
    dst: &mut [u8],
    nlines: usize,
    len: usize,
    w: BoxWeights,
    acc: &mut [u32],
) {
    use std::arch::aarch64::*;
    assert!(w.radius <= MADD_MAX_RADIUS && src.len() >= nlines * len && dst.len() >= nlines * len);
    let r = w.radius as isize;
    let last = nlines as isize - 1;
    let line = |i: isize| -> &[u8] {
        let i = i.clamp(0, last) as usize;
        &src[i * len..(i + 1) * len]
    };
    let vec_len = len / 16 * 16;
    // 16-bit window sums for the vector part (two per u32 of `acc`), u32 ones for the rest.
    let (sums, tail) = acc[..len].split_at_mut(vec_len / 2);
    let sums = sums.as_mut_ptr() as *mut u16;
    let tail = &mut tail[..len - vec_len];
    // SAFETY (every block below): NEON is part of the aarch64 target; the 16-byte loads and
    // stores at x < vec_len lie inside each line (len bytes), `sums` holds vec_len u16.
    for x in (0..vec_len).step_by(16) {
        unsafe {
            let (mut lo, mut hi) = (vdupq_n_u16(0), vdupq_n_u16(0));
            for k in -r..=r {
                let v = vld1q_u8(line(k).as_ptr().add(x));
                lo = vaddw_u8(lo, vget_low_u8(v));
                hi = vaddw_high_u8(hi, v);
            }
            vst1q_u16(sums.add(x), lo);
            vst1q_u16(sums.add(x + 8), hi);
        }
    }
    tail.fill(0);
    for k in -r..=r {
        for (a, &v) in tail.iter_mut().zip(&line(k)[vec_len..]) {
            *a += v as u32;
        }
    }
    let (ww_lo, ww_hi) = ((w.ww & 0xfff) as u16, (w.ww >> 12) as u16);
    let (fw_lo, fw_hi) = ((w.fw & 0xfff) as u16, (w.fw >> 12) as u16);
    // 8 window sums and outer-tap sums -> 8 results as 16-bit values.
    let weigh8 = |a: uint16x8_t, outer: uint16x8_t| -> uint16x8_t {
        unsafe {
            let (a0, o0) = (vget_low_u16(a), vget_low_u16(outer));
            let lo0 = vmlal_n_u16(vmull_n_u16(a0, ww_lo), o0, fw_lo);
            let hi0 = vmlal_n_u16(vmull_n_u16(a0, ww_hi), o0, fw_hi);
            let lo1 = vmlal_high_n_u16(vmull_high_n_u16(a, ww_lo), outer, fw_lo);
            let hi1 = vmlal_high_n_u16(vmull_high_n_u16(a, ww_hi), outer, fw_hi);
            let low = vrshrn_n_u32::<12>(vsraq_n_u32::<12>(hi0, lo0));
            vrshrn_high_n_u32::<12>(low, vsraq_n_u32::<12>(hi1, lo1))
        }
    };
    let (ww, fw) = (w.ww, w.fw);
    for (y, out) in dst.chunks_exact_mut(len).take(nlines).enumerate() {
        let y = y as isize;
        let (before, after) = (line(y - r - 1), line(y + r + 1));
        let add = line(y + r);
        for x in (0..vec_len).step_by(16) {
            unsafe {
                let at = sums.add(x);
                let (mut lo, mut hi) = (vld1q_u16(at), vld1q_u16(at.add(8)));
                let b = vld1q_u8(before.as_ptr().add(x));
                let c = vld1q_u8(after.as_ptr().add(x));
                if y > 0 {
                    let p = vld1q_u8(add.as_ptr().add(x));
                    lo = vsubw_u8(vaddw_u8(lo, vget_low_u8(p)), vget_low_u8(b));
                    hi = vsubw_high_u8(vaddw_high_u8(hi, p), b);
                    vst1q_u16(at, lo);
                    vst1q_u16(at.add(8), hi);
                }
                let low = weigh8(lo, vaddl_u8(vget_low_u8(b), vget_low_u8(c)));
                let high = weigh8(hi, vaddl_high_u8(b, c));
                vst1q_u8(
                    out.as_mut_ptr().add(x),
                    vmovn_high_u16(vmovn_u16(low), high),
                );
            }
        }
        if y > 0 {
            for ((a, &p), &m) in tail.iter_mut().zip(&add[vec_len..]).zip(&before[vec_len..]) {
                *a = a.wrapping_add(p as u32).wrapping_sub(m as u32);
            }
        }
        for (((o, &a), &b), &c) in out[vec_len..]
            .iter_mut()
            .zip(tail.iter())
            .zip(&before[vec_len..])
            .zip(&after[vec_len..])
        {
            let bulk = a
                .wrapping_mul(ww)
                .wrapping_add((b as u32 + c as u32).wrapping_mul(fw));
            *o = (bulk.wrapping_add(1 << 23) >> 24) as u8;
        }
    }
}

/// [`box_lines`] with the window sums in 16-bit lanes and the weighting as two `madd`s of the
/// pairs (window sum, sum of the two outer taps) by the 12-bit halves of (`ww`, `fw`): every
/// product and partial sum fits, and `(hi << 12) + lo` is the same u32 as the scalar
/// `a * ww + (b + c) * fw`. 32 bytes of a line per step, widened and narrowed by in-lane unpacks
/// and packs that undo each other (no lane-crossing permute); the rest of a line as
/// [`box_lines`].
///
/// # Safety
/// The CPU must support AVX2; `w.radius <= MADD_MAX_RADIUS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn box_lines_avx2(
    src: &[u8],
    dst: &mut [u8],
    nlines: usize,
    len: usize,
    w: BoxWeights,
    acc: &mut [u32],
) {
    use std::arch::x86_64::*;
    assert!(w.radius <= MADD_MAX_RADIUS && src.len() >= nlines * len && dst.len() >= nlines * len);
    let r = w.radius as isize;
    let last = nlines as isize - 1;
    let line = |i: isize| -> &[u8] {
        let i = i.clamp(0, last) as usize;
        &src[i * len..(i + 1) * len]
    };
    let vec_len = len / 32 * 32;
    // 16-bit window sums for the vector part, u32 ones for the rest.
    let (sums, tail) = acc[..len].split_at_mut(vec_len / 2);
    let sums = sums.as_mut_ptr() as *mut __m256i;
    let tail = &mut tail[..len - vec_len];
    let zero = _mm256_setzero_si256();
    // 32 bytes as two registers of 16-bit values, bytes 0-7 and 16-23 then 8-15 and 24-31 (the
    // in-lane unpacks; the in-lane packs below put the bytes back in order).
    let load32 = |p: &[u8], x: usize| -> [__m256i; 2] {
        // SAFETY: x + 32 <= vec_len <= len = p.len().
        let v = _mm256_loadu_si256(p.as_ptr().add(x) as *const _);
        [_mm256_unpacklo_epi8(v, zero), _mm256_unpackhi_epi8(v, zero)]
    };
    for x in (0..vec_len).step_by(32) {
        let mut a = [zero; 2];
        for k in -r..=r {
            let v = load32(line(k), x);
            a = [_mm256_add_epi16(a[0], v[0]), _mm256_add_epi16(a[1], v[1])];
        }
        _mm256_storeu_si256(sums.add(x / 16), a[0]);
        _mm256_storeu_si256(sums.add(x / 16 + 1), a[1]);
    }
    tail.fill(0);
    for k in -r..=r {
        for (a, &v) in tail.iter_mut().zip(&line(k)[vec_len..]) {
            *a += v as u32;
        }
    }
    let pair = |lo: u32, hi: u32| (lo | hi << 16) as i32;
    let w_lo = _mm256_set1_epi32(pair(w.ww & 0xfff, w.fw & 0xfff));
    let w_hi = _mm256_set1_epi32(pair(w.ww >> 12, w.fw >> 12));
    let round = _mm256_set1_epi32(1 << 23);
    let weigh = |pairs: __m256i| -> __m256i {
        let lo = _mm256_madd_epi16(pairs, w_lo);
        let hi = _mm256_madd_epi16(pairs, w_hi);
        let bulk = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32::<12>(hi), lo), round);
        _mm256_srli_epi32::<24>(bulk)
    };
    // 16 window sums and outer-tap sums -> 16 results as 16-bit values, in the sums' order.
    let weigh16 = |a: __m256i, outer: __m256i| -> __m256i {
        let low = weigh(_mm256_unpacklo_epi16(a, outer));
        let high = weigh(_mm256_unpackhi_epi16(a, outer));
        _mm256_packus_epi32(low, high)
    };
    let (ww, fw) = (w.ww, w.fw);
    for (y, out) in dst.chunks_exact_mut(len).take(nlines).enumerate() {
        let y = y as isize;
        let (before, after) = (line(y - r - 1), line(y + r + 1));
        let add = line(y + r);
        for x in (0..vec_len).step_by(32) {
            let at = sums.add(x / 16);
            let mut a = [_mm256_loadu_si256(at), _mm256_loadu_si256(at.add(1))];
            let (b, c) = (load32(before, x), load32(after, x));
            if y > 0 {
                let p = load32(add, x);
                for i in 0..2 {
                    a[i] = _mm256_sub_epi16(_mm256_add_epi16(a[i], p[i]), b[i]);
                    _mm256_storeu_si256(at.add(i), a[i]);
                }
            }
            let low = weigh16(a[0], _mm256_add_epi16(b[0], c[0]));
            let high = weigh16(a[1], _mm256_add_epi16(b[1], c[1]));
            _mm256_storeu_si256(
                out.as_mut_ptr().add(x) as *mut _,
                _mm256_packus_epi16(low, high),
            );
        }
        if y > 0 {
            for ((a, &p), &m) in tail.iter_mut().zip(&add[vec_len..]).zip(&before[vec_len..]) {
                *a = a.wrapping_add(p as u32).wrapping_sub(m as u32);
            }
        }
        for (((o, &a), &b), &c) in out[vec_len..]
            .iter_mut()
            .zip(tail.iter())
            .zip(&before[vec_len..])
            .zip(&after[vec_len..])
        {
            let bulk = a
                .wrapping_mul(ww)
                .wrapping_add((b as u32 + c as u32).wrapping_mul(fw));
            *o = (bulk.wrapping_add(1 << 23) >> 24) as u8;
        }
    }
}

/// [`transpose_rgb`], with AVX-512 VBMI or AVX2 where the CPU has it.
#[inline(always)]
fn transpose(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::vbmi() {
        // SAFETY: the CPU supports AVX-512 F/BW and VBMI (checked just above).
        unsafe { transpose_rgb_avx512(src, width, height, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() >= crate::simd::AVX2 {
        // SAFETY: the CPU supports AVX2 (`level` checked it).
        unsafe { transpose_rgb_avx2(src, width, height, dst) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if crate::simd::level() >= crate::simd::NEON {
        transpose_rgb_neon(src, width, height, dst);
        return;
    }
    transpose_rgb(src, width, height, dst);
}

/// [`transpose_rgb`] in blocks of 8 x 8 pixels with NEON (aarch64): each source row's 8 pixels
/// split into R, G and B by one `ld3`, each channel's 8 x 8 bytes transposed by three rounds of
/// `trn1`/`trn2` (bytes, 16-bit pairs, 32-bit quads), and each column stored into its destination
/// line by one `st3`, which interleaves the channels back. Rows and columns past the last multiple
/// of 8 go through the scalar code.
#[cfg(target_arch = "aarch64")]
fn transpose_rgb_neon(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    use std::arch::aarch64::*;
    let n = 3 * width * height;
    assert!(src.len() >= n && dst.len() >= n);
    /// The 8 x 8 transpose of `r` (row i, byte j -> row j, byte i).
    #[inline(always)]
    fn transpose8(r: [uint8x8_t; 8]) -> [uint8x8_t; 8] {
        // SAFETY: NEON is part of the aarch64 target (register operations only).
        unsafe {
            let t01 = vtrn_u8(r[0], r[1]);
            let t23 = vtrn_u8(r[2], r[3]);
            let t45 = vtrn_u8(r[4], r[5]);
            let t67 = vtrn_u8(r[6], r[7]);
            let h = vreinterpret_u16_u8;
            // Columns (0, 4) and (2, 6) of rows 0-3 and 4-7, then (1, 5) and (3, 7).
            let u02 = vtrn_u16(h(t01.0), h(t23.0));
            let u46 = vtrn_u16(h(t45.0), h(t67.0));
            let u13 = vtrn_u16(h(t01.1), h(t23.1));
            let u57 = vtrn_u16(h(t45.1), h(t67.1));
            let q = vreinterpret_u32_u16;
            let v04 = vtrn_u32(q(u02.0), q(u46.0));
            let v15 = vtrn_u32(q(u13.0), q(u57.0));
            let v26 = vtrn_u32(q(u02.1), q(u46.1));
            let v37 = vtrn_u32(q(u13.1), q(u57.1));
            let b = vreinterpret_u8_u32;
            [
                b(v04.0),
                b(v15.0),
                b(v26.0),
                b(v37.0),
                b(v04.1),
                b(v15.1),
                b(v26.1),
                b(v37.1),
            ]
        }
    }
    let (full_h, full_w) = (height / 8 * 8, width / 8 * 8);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for y0 in (0..full_h).step_by(8) {
        for x0 in (0..full_w).step_by(8) {
            // SAFETY: each `ld3` reads 24 bytes of row y0 + i, pixels x0..x0 + 8, inside `src`;
            // each `st3` writes 24 bytes of line x0 + c, pixels y0..y0 + 8, inside `dst`.
            unsafe {
                let rows: [uint8x8x3_t; 8] =
                    std::array::from_fn(|i| vld3_u8(s.add(3 * ((y0 + i) * width + x0))));
                let red = transpose8(std::array::from_fn(|i| rows[i].0));
                let green = transpose8(std::array::from_fn(|i| rows[i].1));
                let blue = transpose8(std::array::from_fn(|i| rows[i].2));
                for c in 0..8 {
                    let at = d.add(3 * ((x0 + c) * height + y0));
                    vst3_u8(at, uint8x8x3_t(red[c], green[c], blue[c]));
                }
            }
        }
    }
    let mut move_pixel = |x: usize, y: usize| {
        let (s, d) = (3 * (y * width + x), 3 * (x * height + y));
        dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
    };
    for y in 0..full_h {
        for x in full_w..width {
            move_pixel(x, y);
        }
    }
    for y in full_h..height {
        for x in 0..width {
            move_pixel(x, y);
        }
    }
}

/// [`transpose_rgb`] in blocks of 8 x 8 pixels: each source row's 8 pixels (24 bytes, a masked
/// load) widened to 8 32-bit lanes, the 8 x 8 lanes transposed with unpacks and lane swaps, and
/// each column narrowed back to 24 bytes and stored into its destination line. Rows and columns
/// past the last multiple of 8 go through the scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_rgb_avx2(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = 3 * width * height;
    assert!(src.len() >= n && dst.len() >= n);
    let six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    let to_lanes = _mm256_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0);
    let spread = _mm256_setr_epi8(
        0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8,
        -1, 9, 10, 11, -1,
    );
    let pack = _mm256_setr_epi8(
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13,
        14, -1, -1, -1, -1,
    );
    let from_lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    let (full_h, full_w) = (height / 8 * 8, width / 8 * 8);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for y0 in (0..full_h).step_by(8) {
        for x0 in (0..full_w).step_by(8) {
            // SAFETY: each masked load reads 24 bytes of row y0 + i, pixels x0..x0 + 8, inside
            // `src`.
            let r: [__m256i; 8] = std::array::from_fn(|i| {
                let v =
                    _mm256_maskload_epi32(s.add(3 * ((y0 + i) * width + x0)) as *const i32, six);
                _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, to_lanes), spread)
            });
            let t = [
                _mm256_unpacklo_epi32(r[0], r[1]),
                _mm256_unpackhi_epi32(r[0], r[1]),
                _mm256_unpacklo_epi32(r[2], r[3]),
                _mm256_unpackhi_epi32(r[2], r[3]),
                _mm256_unpacklo_epi32(r[4], r[5]),
                _mm256_unpackhi_epi32(r[4], r[5]),
                _mm256_unpacklo_epi32(r[6], r[7]),
                _mm256_unpackhi_epi32(r[6], r[7]),
            ];
            // Columns c and c + 4 of rows 0-3 (u[c]) and rows 4-7 (u[4 + c]).
            let u = [
                _mm256_unpacklo_epi64(t[0], t[2]),
                _mm256_unpackhi_epi64(t[0], t[2]),
                _mm256_unpacklo_epi64(t[1], t[3]),
                _mm256_unpackhi_epi64(t[1], t[3]),
                _mm256_unpacklo_epi64(t[4], t[6]),
                _mm256_unpackhi_epi64(t[4], t[6]),
                _mm256_unpacklo_epi64(t[5], t[7]),
                _mm256_unpackhi_epi64(t[5], t[7]),
            ];
            for c in 0..4 {
                let columns = [
                    _mm256_permute2x128_si256::<0x20>(u[c], u[4 + c]),
                    _mm256_permute2x128_si256::<0x31>(u[c], u[4 + c]),
                ];
                for (x, col) in [x0 + c, x0 + c + 4].into_iter().zip(columns) {
                    let v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(col, pack), from_lanes);
                    // SAFETY: 24 bytes at line x, pixel y0 lie inside `dst` (y0 + 8 <= height).
                    _mm256_maskstore_epi32(d.add(3 * (x * height + y0)) as *mut i32, six, v);
                }
            }
        }
    }
    let mut move_pixel = |x: usize, y: usize| {
        let (s, d) = (3 * (y * width + x), 3 * (x * height + y));
        dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
    };
    for y in 0..full_h {
        for x in full_w..width {
            move_pixel(x, y);
        }
    }
    for y in full_h..height {
        for x in 0..width {
            move_pixel(x, y);
        }
    }
}

/// [`transpose_rgb`] sixteen source rows at a time: per source column, one gather of the sixteen
/// pixels (as 4-byte words), one byte permutation dropping every fourth byte, and one 48-byte
/// store into the destination line. Rows past the last multiple of 16 go through the scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn transpose_rgb_avx512(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = 3 * width * height;
    assert!(src.len() >= n && dst.len() >= n && n < i32::MAX as usize);
    let mut compact = [0u8; 64];
    for (i, c) in compact.iter_mut().enumerate().take(48) {
        *c = (i / 3 * 4 + i % 3) as u8;
    }
    let compact = _mm512_loadu_si512(compact.as_ptr() as *const _);
    const MASK48: u64 = (1 << 48) - 1;
    let full = height / 16 * 16;
    for y0 in (0..full).step_by(16) {
        let rows: [i32; 16] = std::array::from_fn(|i| (3 * (y0 + i) * width) as i32);
        let index = _mm512_loadu_si512(rows.as_ptr() as *const _);
        // The 4-byte word of the very last source pixel would read one byte past the end.
        let last_block = y0 + 16 == height;
        let vector_cols = if last_block { width - 1 } else { width };
        for x in 0..vector_cols {
            // SAFETY: every word starts at a pixel of rows y0..y0+16 and ends inside `src` (the
            // last pixel of `src` is left to the scalar code below).
            let v = _mm512_i32gather_epi32::<1>(index, src.as_ptr().add(3 * x) as *const _);
            let packed = _mm512_permutexvar_epi8(compact, v);
            // SAFETY: 48 bytes at line x, pixel y0 lie inside `dst` (y0 + 16 <= height).
            _mm512_mask_storeu_epi8(
                dst.as_mut_ptr().add(3 * (x * height + y0)) as *mut i8,
                MASK48,
                packed,
            );
        }
        for x in vector_cols..width {
            for y in y0..y0 + 16 {
                let (s, d) = (3 * (y * width + x), 3 * (x * height + y));
                dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
            }
        }
    }
    for y in full..height {
        for x in 0..width {
            let (s, d) = (3 * (y * width + x), 3 * (x * height + y));
            dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
}

/// Pixel-level transpose of an RGB image: `src` is `height` rows of `width` pixels, `dst` becomes
/// `width` rows of `height` pixels. Tiled for the cache; walks each tile along `dst` and moves
/// pixels as 4-byte words whose fourth byte is overwritten by the next pixel (3-byte moves where
/// that byte would land in an already finished line or past either buffer's end).
#[inline(always)]
fn transpose_rgb(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    const T: usize = 16;
    let n = 3 * width * height;
    assert!(src.len() >= n && dst.len() >= n);
    for y0 in (0..height).step_by(T) {
        let y1 = (y0 + T).min(height);
        for x0 in (0..width).step_by(T) {
            for x in x0..(x0 + T).min(width) {
                let line = 3 * x * height;
                for y in y0..y1 {
                    let (s, d) = (3 * (y * width + x), line + 3 * y);
                    if y + 1 < height && s + 4 <= n {
                        let word: [u8; 4] = src[s..s + 4].try_into().unwrap();
                        dst[d..d + 4].copy_from_slice(&word);
                    } else {
                        dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
                    }
                }
            }
        }
    }
}

/// Per-worker buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct BlurScratch {
    t: Vec<u8>,
    u: Vec<u8>,
    acc: Vec<u32>,
}

/// Pillow's `GaussianBlur(sigma)` (3 passes) on an RGB image of `width x height`, in place.
///
/// Pillow blurs rows (three passes), transposes, blurs rows again and transposes back. Here the
/// image is transposed first so that the row passes, like the column passes, run along the line
/// index and vectorise across a whole line; the bytes are the same.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    sigma: f64,
    scratch: &mut BlurScratch,
) {
    const PASSES: u32 = 3;
    assert_eq!(pixels.len(), 3 * width * height);
    let radius = box_radius(sigma as f32, PASSES);
    if radius == 0.0 || width == 0 || height == 0 {
        return;
    }
    let w = BoxWeights::new(radius);
    let n = 3 * width * height;
    scratch.t.resize(n, 0);
    scratch.u.resize(n, 0);
    scratch.acc.resize(3 * width.max(height), 0);
    six_passes(
        pixels,
        &mut scratch.t,
        &mut scratch.u,
        &mut scratch.acc,
        width,
        height,
        w,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_pixel() {
        for (w, h) in [
            (1usize, 1usize),
            (5, 3),
            (17, 33),
            (224, 224),
            (40, 1),
            (3, 32),
            (1, 16),
            (8, 8),
            (16, 9),
            (9, 16),
            (31, 40),
        ] {
            let src: Vec<u8> = (0..3 * w * h).map(|i| (i * 31 % 251) as u8).collect();
            let mut dst = vec![0u8; 3 * w * h];
            transpose_rgb(&src, w, h, &mut dst);
            for (name, level) in crate::simd::LEVELS {
                let mut fast = vec![0u8; 3 * w * h];
                match crate::simd::at_level(level, || transpose(&src, w, h, &mut fast)) {
                    Some(()) => assert_eq!(dst, fast, "{name}: {w}x{h}"),
                    None => crate::simd::say_skipped(name),
                }
            }
            for y in 0..h {
                for x in 0..w {
                    let (s, d) = (3 * (y * w + x), 3 * (x * h + y));
                    assert_eq!(src[s..s + 3], dst[d..d + 3], "{w}x{h} at ({x}, {y})");
                }
            }
        }
    }

    /// The six passes at every SIMD level against the portable passes, over sizes around the
    /// vector widths and sigmas from tiny to a radius past the 16-bit path's limit.
    #[test]
    fn every_level_blurs_like_the_portable_passes() {
        for (w, h) in [
            (224usize, 224usize),
            (5, 3),
            (17, 33),
            (40, 1),
            (1, 21),
            (100, 37),
        ] {
            let src: Vec<u8> = (0..3 * w * h).map(|i| ((i * 7919) >> 3) as u8).collect();
            for sigma in [0.1f64, 0.7, 1.3, 2.0, 64.0, 80.0] {
                let reference = crate::simd::at_level(crate::simd::SCALAR, || {
                    let mut px = src.clone();
                    gaussian_blur(&mut px, w, h, sigma, &mut BlurScratch::default());
                    px
                })
                .unwrap();
                for (name, level) in crate::simd::LEVELS {
                    let ran = crate::simd::at_level(level, || {
                        let mut px = src.clone();
                        gaussian_blur(&mut px, w, h, sigma, &mut BlurScratch::default());
                        px
                    });
                    match ran {
                        Some(px) => assert!(px == reference, "{name}: {w}x{h} sigma {sigma}"),
                        None => crate::simd::say_skipped(name),
                    }
                }
            }
        }
    }

    #[test]
    fn flat_image_stays_flat() {
        let mut px = vec![77u8; 3 * 20 * 9];
        gaussian_blur(&mut px, 20, 9, 1.7, &mut BlurScratch::default());
        assert!(px.iter().all(|&v| v == 77));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for sigma in [0.1f32, 0.5, 1.0, 1.37, 2.0, 5.0] {
            let w = BoxWeights::new(box_radius(sigma, 3));
            let total = (2 * w.radius as u32 + 1) * w.ww + 2 * w.fw;
            assert!(total <= 1 << 24 && total + 2 >= 1 << 24, "{sigma}: {w:?}");
        }
    }
}
