//! The zune-jpeg backend ([`crate::Decoder::Zune`]): pure Rust and fuzzed, but its IDCT, chroma
//! upsampling and colour conversion are not libjpeg-turbo's, so its pixels differ slightly from
//! Pillow's (by up to 3 at 4:4:4 and 9 at 4:2:0 on quality-90 files).
//!
//! Strict mode: a truncated file is an error, as in Pillow, not a grey-filled image.

use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::{check_pixels, eoi_after_last_scan, pillow, DecodeError, RgbImage};

fn options() -> DecoderOptions {
    DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
}

/// The frame's `(width, height)`, from the headers only.
pub(crate) fn dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let mut decoder = JpegDecoder::new_with_options(bytes, options());
    decoder
        .decode_headers()
        .map_err(|e| DecodeError::Corrupt(format!("{e:?}")))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| DecodeError::Corrupt("no frame header".into()))?;
    Ok((w as u32, h as u32))
}

/// Decodes the whole JPEG into `out` as RGB.
pub(crate) fn decode(bytes: &[u8], max_pixels: u64, out: &mut RgbImage) -> Result<(), DecodeError> {
    let mut decoder = JpegDecoder::new_with_options(bytes, options());
    decoder
        .decode_headers()
        .map_err(|e| DecodeError::Corrupt(format!("{e:?}")))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| DecodeError::Corrupt("no frame header".into()))?;
    check_pixels(width as u64, height as u64, max_pixels)?;
    if !eoi_after_last_scan(bytes) {
        // zune-jpeg's strict mode only notices a missing tail when it over-reads by a margin.
        return Err(DecodeError::Corrupt(
            "truncated: no end-of-image marker after the last scan".into(),
        ));
    }
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| DecodeError::Corrupt("image size overflows".into()))?;
    let pixels = width * height;
    let grey = match decoder.get_output_colorspace() {
        Some(ColorSpace::RGB) if size == 3 * pixels => false,
        Some(ColorSpace::Luma) if size == pixels => true,
        other => {
            return Err(DecodeError::Corrupt(format!(
                "unexpected decoder output {other:?}"
            )))
        }
    };
    out.pixels.resize(3 * pixels, 0);
    decoder
        .decode_into(&mut out.pixels[..size])
        .map_err(|e| DecodeError::Corrupt(format!("{e:?}")))?;
    if grey {
        pillow::expand_grey_in_place(&mut out.pixels, pixels);
    }
    out.width = width;
    out.height = height;
    Ok(())
}
