//! Pillow's own conversions to RGB (`Image.convert('RGB')`), applied after a decoder's output so
//! that every backend ends where Pillow does: mode `L` is replicated into three channels, and a
//! four-component JPEG (CMYK, or YCCK that libjpeg turns into CMYK) is read as Adobe-inverted CMYK
//! (Pillow's raw mode `CMYK;I`) and converted with Pillow's `cmyk2rgb`.

/// `pixels` grey bytes at the front of `buf` -> `pixels` RGB triples filling it (back to front).
pub(crate) fn expand_grey_in_place(buf: &mut [u8], pixels: usize) {
    for i in (0..pixels).rev() {
        let g = buf[i];
        buf[3 * i..3 * i + 3].fill(g);
    }
}

/// Pillow's `MULDIV255`: `a * b / 255`, rounded, in integers.
#[cfg_attr(not(feature = "turbo"), allow(dead_code))]
#[inline]
fn muldiv255(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// `pixels` CMYK quadruples as libjpeg writes them (Adobe-inverted: 0 is full ink) at the front of
/// `buf` -> RGB triples, front to back (the output never overtakes the input): Pillow's unpack of
/// `CMYK;I` (`v = 255 - raw`), then its `cmyk2rgb` (`nk = 255 - k; c' = nk - nk * c / 255`).
#[cfg_attr(not(feature = "turbo"), allow(dead_code))] // zune-jpeg converts CMYK itself
pub(crate) fn inverted_cmyk_to_rgb_in_place(buf: &mut [u8], pixels: usize) {
    for i in 0..pixels {
        let [c, m, y, k] = [buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]]
            .map(|raw| 255 - raw as u32);
        let nk = 255 - k;
        for (j, v) in [c, m, y].into_iter().enumerate() {
            buf[3 * i + j] = nk.saturating_sub(muldiv255(v, nk)).min(255) as u8;
        }
    }
}
