//! barlow's one image decoder: bytes -> interleaved RGB pixels, the way Pillow's
//! `Image.open(f).convert('RGB')` would. The loader, the trainer's k-NN evaluation, `datasets pack`
//! and the fuzz target all decode through [`decode_rgb`], so none of them can forget the two
//! safeguards, which live inside it:
//!
//! - **the pixel cap**: the pixel count is checked from the header before anything is allocated
//!   ([`DecodeError::TooLarge`]);
//! - **the panic guard**: a panic inside a third-party decoder becomes
//!   [`DecodeError::Crashed`] (and prints nothing; see [`guard`]).
//!
//! JPEG goes through zune-jpeg in strict mode (a truncated file is an error, as in Pillow, not a
//! grey-filled image); a PNG (ImageNet holds one PNG named `.JPEG`) goes through the `png` crate.
//! EXIF orientation is ignored, as PIL and torchvision ignore it.
//!
//! **Architecture invariant:** this crate knows nothing of datasets, rings or augmentation; it
//! depends only on the decoders, so any crate can use it.

pub mod guard;

use std::fmt;

use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Pillow refuses images above twice its `MAX_IMAGE_PIXELS` (89,478,485); so do we, by default.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

/// A decoded image: `height` rows of `width` RGB pixels, interleaved, no padding.
#[derive(Clone, Debug, Default)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Why a file could not be turned into RGB pixels. Every variant is a "skip and count" case.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// Neither a JPEG nor a PNG signature.
    UnknownFormat { first_bytes: Vec<u8> },
    /// The header declares more pixels than the configured cap.
    TooLarge {
        width: u64,
        height: u64,
        max_pixels: u64,
    },
    /// The decoder rejected the data (truncated, corrupt, unsupported variant).
    Corrupt(String),
    /// The decoder panicked on this file (caught by [`guard::catch_decoder_panic`]).
    Crashed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownFormat { first_bytes } => {
                write!(f, "not a JPEG or PNG file (starts with {first_bytes:02x?})")
            }
            DecodeError::TooLarge { width, height, max_pixels } => write!(
                f,
                "image is {width}x{height} = {} pixels, above the limit of {max_pixels} (raise --max-pixels to accept it)",
                width * height
            ),
            DecodeError::Corrupt(why) => write!(f, "corrupt or truncated image: {why}"),
            DecodeError::Crashed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes `bytes` into `out`, reusing its pixel buffer. Images declaring more than `max_pixels`
/// pixels are refused before any allocation; a panic inside the decoder is an error, not a crash.
/// On error `out` holds no valid image.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64, out: &mut RgbImage) -> Result<(), DecodeError> {
    guard::catch_decoder_panic(|| decode_unguarded(bytes, max_pixels, out))
        .unwrap_or_else(|why| Err(DecodeError::Crashed(why)))
}

/// Reads a whole file and decodes it (for one-off tools: `loader augment`, tests).
pub fn decode_file(path: &std::path::Path, max_pixels: u64) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut image = RgbImage::default();
    decode_rgb(&bytes, max_pixels, &mut image).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(image)
}

fn decode_unguarded(bytes: &[u8], max_pixels: u64, out: &mut RgbImage) -> Result<(), DecodeError> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        decode_jpeg(bytes, max_pixels, out)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, max_pixels, out)
    } else {
        Err(DecodeError::UnknownFormat {
            first_bytes: bytes.iter().take(8).copied().collect(),
        })
    }
}

fn check_pixels(width: u64, height: u64, max_pixels: u64) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64, out: &mut RgbImage) -> Result<(), DecodeError> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(bytes, options);
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
        expand_grey_in_place(&mut out.pixels, pixels);
    }
    out.width = width;
    out.height = height;
    Ok(())
}

/// True when the last marker among SOS (`FF DA`) and EOI (`FF D9`) is an EOI, i.e. the final scan
/// is complete. Scans from the end, so a complete file is checked in a few bytes.
fn eoi_after_last_scan(bytes: &[u8]) -> bool {
    for i in (0..bytes.len().saturating_sub(1)).rev() {
        if bytes[i] == 0xFF {
            match bytes[i + 1] {
                0xD9 => return true,
                0xDA => return false,
                _ => {}
            }
        }
    }
    false
}

/// `pixels` grey bytes at the front of `buf` -> `pixels` RGB triples filling it (back to front).
fn expand_grey_in_place(buf: &mut [u8], pixels: usize) {
    for i in (0..pixels).rev() {
        let g = buf[i];
        buf[3 * i..3 * i + 3].fill(g);
    }
}

fn decode_png(bytes: &[u8], max_pixels: u64, out: &mut RgbImage) -> Result<(), DecodeError> {
    let corrupt = |e: png::DecodingError| DecodeError::Corrupt(e.to_string());
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    check_pixels(width as u64, height as u64, max_pixels)?;
    let mut raw = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut raw).map_err(corrupt)?;
    let raw = &raw[..frame.buffer_size()];
    out.pixels.resize(width * height * 3, 0);
    out.width = width;
    out.height = height;
    let rgb = &mut out.pixels;
    // convert('RGB'): grey is replicated, alpha is dropped (not composited), as Pillow does.
    match frame.color_type {
        png::ColorType::Rgb => rgb.copy_from_slice(raw),
        png::ColorType::Rgba => {
            for (dst, src) in rgb.chunks_exact_mut(3).zip(raw.chunks_exact(4)) {
                dst.copy_from_slice(&src[..3]);
            }
        }
        png::ColorType::Grayscale => {
            for (dst, &g) in rgb.chunks_exact_mut(3).zip(raw.iter()) {
                dst.fill(g);
            }
        }
        png::ColorType::GrayscaleAlpha => {
            for (dst, src) in rgb.chunks_exact_mut(3).zip(raw.chunks_exact(2)) {
                dst.fill(src[0]);
            }
        }
        png::ColorType::Indexed => {
            return Err(DecodeError::Corrupt("palette PNG was not expanded".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_jpeg(
        width: u16,
        height: u16,
        color: jpeg_encoder::ColorType,
        channels: usize,
    ) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width as usize * height as usize * channels)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&pixels, width, height, color)
            .unwrap();
        out
    }

    #[test]
    fn decodes_rgb_and_grayscale_jpeg_to_three_channels() {
        let mut img = RgbImage::default();
        decode_rgb(
            &encode_jpeg(33, 17, jpeg_encoder::ColorType::Rgb, 3),
            DEFAULT_MAX_PIXELS,
            &mut img,
        )
        .unwrap();
        assert_eq!(
            (img.width, img.height, img.pixels.len()),
            (33, 17, 33 * 17 * 3)
        );
        decode_rgb(
            &encode_jpeg(20, 10, jpeg_encoder::ColorType::Luma, 1),
            DEFAULT_MAX_PIXELS,
            &mut img,
        )
        .unwrap();
        assert_eq!((img.width, img.height, img.pixels.len()), (20, 10, 600));
        assert!(
            img.pixels.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]),
            "grey must be replicated"
        );
    }

    #[test]
    fn truncated_jpeg_is_an_error_not_a_grey_image() {
        let full = encode_jpeg(64, 64, jpeg_encoder::ColorType::Rgb, 3);
        let mut img = RgbImage::default();
        let cut = &full[..full.len() / 2];
        assert!(matches!(
            decode_rgb(cut, DEFAULT_MAX_PIXELS, &mut img),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn pixel_cap_refuses_before_decoding() {
        let jpeg = encode_jpeg(64, 64, jpeg_encoder::ColorType::Rgb, 3);
        let mut img = RgbImage::default();
        let err = decode_rgb(&jpeg, 64 * 63, &mut img).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                width: 64,
                height: 64,
                max_pixels: 64 * 63
            }
        );
        assert!(
            img.pixels.is_empty(),
            "nothing allocated for a refused image"
        );
    }

    #[test]
    fn png_named_anything_is_decoded_and_unknown_bytes_refused() {
        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, 3, 2);
            enc.set_color(png::ColorType::Rgba);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&(0..24).collect::<Vec<u8>>()).unwrap();
        }
        let mut img = RgbImage::default();
        decode_rgb(&png_bytes, DEFAULT_MAX_PIXELS, &mut img).unwrap();
        assert_eq!(&img.pixels[..6], &[0, 1, 2, 4, 5, 6]);
        let err = decode_rgb(b"hello world", DEFAULT_MAX_PIXELS, &mut img).unwrap_err();
        assert!(err.to_string().contains("not a JPEG or PNG"));
        assert!(decode_rgb(&[], DEFAULT_MAX_PIXELS, &mut img).is_err());
    }
}
