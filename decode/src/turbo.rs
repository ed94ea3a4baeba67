//! The libjpeg-turbo backend ([`crate::Decoder::Turbo`]): the library Pillow decodes JPEG with,
//! built from source by `turbojpeg-sys` (libjpeg-turbo 3.1 with its SIMD; cmake, and nasm on x86),
//! called through the TurboJPEG 3 API with Pillow's settings (the islow IDCT, fancy upsampling), so
//! its pixels are Pillow's byte for byte.
//!
//! - Errors come back as values: TurboJPEG catches libjpeg's fatal errors (`setjmp`) and returns
//!   -1 with a message; nothing here can abort the process. libjpeg *warnings* (corrupt entropy
//!   data that libjpeg repairs) are not errors, as in Pillow, which ignores them.
//! - A truncated file is an error, as in Pillow (without `LOAD_TRUNCATED_IMAGES`): the same
//!   end-of-image check as the zune-jpeg path ([`crate::eoi_after_last_scan`]).
//! - Region decode ([`decode`] with a wanted rectangle): `tj3SetCroppingRegion` (which uses
//!   `jpeg_crop_scanline` and `jpeg_skip_scanlines`) on the window of [`crate::region::decode_window`].
//!   libjpeg-turbo entropy-decodes the rows it skips above the region and the columns it crops
//!   (Huffman data is sequential) but does no IDCT, upsampling or colour conversion for them; it
//!   stops reading at the region's last row (`jpeg_skip_scanlines` to the bottom marks the end of
//!   the image). So a file whose only defect is a fatal error further on (a bad marker after the
//!   scan; a truncated file is refused by the end-of-image check first) decodes here and fails in
//!   a full decode (and in Pillow); every file that both decode gives the same bytes.
//! - DCT scaling ([`crate::Scale`]) is libjpeg's `scale_num/scale_denom`; not Pillow's pixels.

use std::ffi::{c_int, CStr};

use turbojpeg_sys as tj;

use crate::region::{decode_window, Rect};
use crate::{check_pixels, eoi_after_last_scan, pillow, DecodeError, RgbImage, Scale};

/// One TurboJPEG decompressor, destroyed when dropped.
struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Runs `f` with a decompressor made for this call. Not reused across images: libjpeg keeps an
/// image's Huffman and quantisation tables in the decompressor for the next one (abbreviated
/// datastreams), so a file that lacks them would decode with the previous file's tables, where
/// Pillow (a decompressor per image) refuses it; and a failed call can leave it mid-stream (both
/// found by the fuzz target). Making one costs a few microseconds.
fn with_handle<R>(
    f: impl FnOnce(tj::tjhandle) -> Result<R, DecodeError>,
) -> Result<R, DecodeError> {
    // SAFETY: plain constructor; a null result is checked.
    let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
    if h.is_null() {
        return Err(DecodeError::Corrupt(
            "cannot create a libjpeg-turbo decompressor".into(),
        ));
    }
    let handle = Handle(h);
    f(handle.0)
}

/// libjpeg-turbo's message for the last failure on `h`.
fn error(h: tj::tjhandle) -> DecodeError {
    // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
    let why = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(h)) };
    DecodeError::Corrupt(format!("libjpeg-turbo: {}", why.to_string_lossy().trim()))
}

/// Maps a TurboJPEG return code to a result: warnings (libjpeg repaired corrupt data) pass, as in
/// Pillow; fatal errors fail.
///
/// `tj3GetErrorCode` says `TJERR_WARNING` whenever a warning occurred during the call, even when
/// a fatal error followed it (found by the fuzz target). libjpeg reports only the first warning of
/// an image and a fatal error overwrites it, so the message tells them apart: a call passes only if
/// its message is one of libjpeg's warnings (`JWRN_*` in `jerror.h`).
fn check(h: tj::tjhandle, rc: c_int) -> Result<(), DecodeError> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: plain getter on a live handle.
    let warned = unsafe { tj::tj3GetErrorCode(h) } == tj::TJERR_TJERR_WARNING as c_int;
    // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle (or the thread).
    let message = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(h)) };
    if warned && is_warning(&message.to_string_lossy()) {
        Ok(())
    } else {
        Err(error(h))
    }
}

/// True for libjpeg's warning messages (`JWRN_*` in libjpeg-turbo 3.1's `jerror.h`).
fn is_warning(message: &str) -> bool {
    const WARNINGS: [&str; 7] = [
        "Corrupt JPEG data:",
        "Premature end of JPEG file",
        "Unknown Adobe color transform code",
        "Inconsistent progression sequence",
        "Warning: unknown JFIF revision number",
        "Invalid SOS parameters for sequential JPEG",
        "Application transferred too many scanlines",
    ];
    WARNINGS.iter().any(|w| message.starts_with(w))
}

/// The frame's `(width, height)` from the first SOF marker before any scan, by walking the marker
/// segments; `None` when there is none (a tables-only stream, for which `tj3DecompressHeader`
/// succeeds but leaves the previous image's parameters in the handle).
fn frame_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    loop {
        while *bytes.get(i)? != 0xFF {
            i += 1; // garbage between segments (libjpeg warns and skips it)
        }
        while *bytes.get(i)? == 0xFF {
            i += 1;
        }
        let marker = *bytes.get(i)?;
        i += 1;
        match marker {
            0xD9 | 0xDA => return None,     // EOI or SOS before any frame
            0x01 | 0xD0..=0xD7 => continue, // no length
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let b = |k: usize| bytes.get(i + k).map(|&v| v as u32);
                return Some((b(5)? << 8 | b(6)?, b(3)? << 8 | b(4)?));
            }
            _ => {
                let len = (*bytes.get(i)? as usize) << 8 | *bytes.get(i + 1)? as usize;
                i += len.max(2);
            }
        }
    }
}

fn get(h: tj::tjhandle, param: tj::TJPARAM) -> c_int {
    // SAFETY: plain getter on a live handle.
    unsafe { tj::tj3Get(h, param as c_int) }
}

/// What the header says: size, subsampling (an index into `tjMCUWidth`, or -1) and colour space.
struct Header {
    width: u32,
    height: u32,
    subsamp: c_int,
    colorspace: c_int,
}

fn header(h: tj::tjhandle, bytes: &[u8]) -> Result<Header, DecodeError> {
    // SAFETY: the pointer and length describe `bytes`, which outlives the call.
    let rc = unsafe { tj::tj3DecompressHeader(h, bytes.as_ptr(), bytes.len() as _) };
    check(h, rc)?;
    let (width, height) = (
        get(h, tj::TJPARAM_TJPARAM_JPEGWIDTH),
        get(h, tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if width <= 0 || height <= 0 {
        return Err(DecodeError::Corrupt(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if frame_size(bytes) != Some((width as u32, height as u32)) {
        return Err(DecodeError::Corrupt(
            "no frame header before the first scan".into(),
        ));
    }
    Ok(Header {
        width: width as u32,
        height: height as u32,
        subsamp: get(h, tj::TJPARAM_TJPARAM_SUBSAMP),
        colorspace: get(h, tj::TJPARAM_TJPARAM_COLORSPACE),
    })
}

/// The frame's `(width, height)`, from the headers only.
pub(crate) fn dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    with_handle(|h| header(h, bytes).map(|hd| (hd.width, hd.height)))
}

/// The iMCU of subsampling `subsamp`, if known: TurboJPEG's `tjMCUWidth`/`tjMCUHeight` (header
/// tables, not exported by the library) for 4:4:4, 4:2:2, 4:2:0, grey, 4:4:0, 4:1:1, 4:4:1.
fn imcu(subsamp: c_int) -> Option<(u32, u32)> {
    const WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];
    const HEIGHT: [u32; 7] = [8, 8, 16, 8, 16, 8, 32];
    let i = usize::try_from(subsamp).ok().filter(|&i| i < 7)?;
    Some((WIDTH[i], HEIGHT[i]))
}

/// Decodes `bytes` into `out` as Pillow's `convert('RGB')` would. With `want`, only a window
/// around it (see [`decode_window`]) is decoded; the returned rectangle is the part of the image
/// that `out` holds (the whole image without `want`, or when the window would be all of it).
/// With a `scale` other than 1, the image and the returned rectangle are in scaled pixels.
pub(crate) fn decode(
    bytes: &[u8],
    max_pixels: u64,
    want: Option<Rect>,
    scale: Scale,
    out: &mut RgbImage,
) -> Result<Rect, DecodeError> {
    with_handle(|h| {
        let hd = header(h, bytes)?;
        check_pixels(hd.width as u64, hd.height as u64, max_pixels)?;
        if !eoi_after_last_scan(bytes) {
            return Err(DecodeError::Corrupt(
                "truncated: no end-of-image marker after the last scan".into(),
            ));
        }
        let (format, channels) = match hd.colorspace as tj::TJCS {
            tj::TJCS_TJCS_GRAY => (tj::TJPF_TJPF_GRAY, 1),
            tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (tj::TJPF_TJPF_CMYK, 4),
            _ => (tj::TJPF_TJPF_RGB, 3),
        };
        let factor = tj::tjscalingfactor {
            num: 1,
            denom: scale.denominator() as c_int,
        };
        // SAFETY: plain setter on a live handle.
        check(h, unsafe { tj::tj3SetScalingFactor(h, factor) })?;
        let scaled = |v: u32| v.div_ceil(scale.denominator());
        let (width, height) = (scaled(hd.width), scaled(hd.height));
        let full = Rect::full(width, height);
        let mut window = full;
        if let (Some(want), Some((mw, mh))) = (want, imcu(hd.subsamp)) {
            let (mw, mh) = (scaled(mw), scaled(mh));
            let progressive = get(h, tj::TJPARAM_TJPARAM_PROGRESSIVE) != 0;
            let w = decode_window(want, width, height, mw, mh, progressive);
            if w.area() < full.area() {
                window = w;
            }
        }
        let region = |r: Rect| tj::tjregion {
            x: r.x as c_int,
            y: r.y as c_int,
            w: r.w as c_int,
            h: r.h as c_int,
        };
        let none = tj::tjregion {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        };
        // SAFETY: plain setter on a live handle (the header has been read, as it requires).
        if window != full && unsafe { tj::tj3SetCroppingRegion(h, region(window)) } != 0 {
            window = full; // e.g. a lossless JPEG: decode it all
        }
        if window == full {
            // SAFETY: as above.
            check(h, unsafe { tj::tj3SetCroppingRegion(h, none) })?;
        }
        let pixels = window.w as usize * window.h as usize;
        out.pixels.resize(pixels * channels.max(3), 0);
        // SAFETY: `out.pixels` holds `window.h` rows of `pitch` bytes, what TurboJPEG writes for
        // a cropping region of that size (or the whole scaled image).
        let rc = unsafe {
            tj::tj3Decompress8(
                h,
                bytes.as_ptr(),
                bytes.len() as _,
                out.pixels.as_mut_ptr(),
                (window.w as usize * channels) as c_int,
                format as c_int,
            )
        };
        check(h, rc)?;
        match channels {
            1 => pillow::expand_grey_in_place(&mut out.pixels, pixels),
            4 => {
                pillow::inverted_cmyk_to_rgb_in_place(&mut out.pixels, pixels);
                out.pixels.truncate(3 * pixels);
            }
            _ => {}
        }
        out.width = window.w as usize;
        out.height = window.h as usize;
        Ok(window)
    })
}
