//! barlow's one image decoder: bytes -> interleaved RGB pixels, the way Pillow's
//! `Image.open(f).convert('RGB')` would. The loader, the trainer's k-NN evaluation, `datasets pack`
//! and the fuzz target all decode through [`Decoder::decode`] (or [`decode_rgb`], the default
//! decoder), so none of them can forget the two safeguards, which live inside it:
//!
//! - **the pixel cap**: the pixel count is checked from the header before anything is allocated
//!   ([`DecodeError::TooLarge`]);
//! - **the panic guard**: a panic inside a third-party decoder becomes
//!   [`DecodeError::Crashed`] (and prints nothing; see [`guard`]).
//!
//! JPEG goes through one of two backends, picked by [`Decoder`] (`--decoder` on the commands):
//!
//! - [`Decoder::Turbo`] (`turbo.rs`, the `turbo` cargo feature, on by default): libjpeg-turbo,
//!   the library Pillow uses, with Pillow's settings, so the pixels are Pillow's **byte for
//!   byte**; it can also decode just a region ([`Decoder::decode_region`], see [`region`]);
//! - [`Decoder::Zune`] (`zune.rs`): zune-jpeg, pure Rust and fuzzed, a few levels off Pillow's
//!   pixels (its IDCT, upsampling and colour conversion differ).
//!
//! Both end with Pillow's own conversions to RGB (`pillow.rs`). A truncated file is an error in
//! both, as in Pillow, not a grey-filled image. A PNG (ImageNet holds one PNG named `.JPEG`) goes
//! through the `png` crate whatever the decoder. EXIF orientation is ignored, as PIL and
//! torchvision ignore it.
//!
//! **Architecture invariant:** this crate knows nothing of datasets, rings or augmentation; it
//! depends only on the decoders, so any crate can use it.

pub mod guard;
mod pillow;
pub mod region;
#[cfg(feature = "turbo")]
mod turbo;
mod zune;

use std::fmt;
use std::str::FromStr;

pub use region::Rect;

/// Which JPEG decoder to use (`--decoder zune|turbo` on every command that decodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decoder {
    /// zune-jpeg: pure Rust, fuzzed; within a few levels of Pillow's pixels, not equal.
    Zune,
    /// libjpeg-turbo (what Pillow uses): Pillow's pixels byte for byte, and region decode.
    Turbo,
}

impl Decoder {
    /// Every decoder this build has, in `--help` order.
    pub fn available() -> Vec<Decoder> {
        [Decoder::Zune, Decoder::Turbo]
            .into_iter()
            .filter(|d| d.is_available())
            .collect()
    }

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Decoder::Zune => "zune",
            Decoder::Turbo => "turbo",
        }
    }

    /// False for [`Decoder::Turbo`] in a build without the `turbo` feature.
    pub fn is_available(self) -> bool {
        match self {
            Decoder::Zune => true,
            Decoder::Turbo => cfg!(feature = "turbo"),
        }
    }

    /// Decodes `bytes` into `out`, reusing its pixel buffer. Images declaring more than
    /// `max_pixels` pixels are refused before any allocation; a panic inside the decoder is an
    /// error, not a crash. On error `out` holds no valid image.
    pub fn decode(
        self,
        bytes: &[u8],
        max_pixels: u64,
        out: &mut RgbImage,
    ) -> Result<(), DecodeError> {
        self.decode_with(bytes, max_pixels, None, Scale::Full, out)
            .map(|_| ())
    }

    /// Decodes at least the rectangle `want` of the image (full-size coordinates) into `out`, and
    /// returns which rectangle of the image `out` holds: `out`'s pixel `(x, y)` is the image's
    /// `(x + r.x, y + r.y)`, byte for byte what [`Decoder::decode`] gives there. Only
    /// [`Decoder::Turbo`] on a JPEG decodes less than the whole image; otherwise the rectangle is
    /// the whole image. Errors as [`Decoder::decode`]'s.
    pub fn decode_region(
        self,
        bytes: &[u8],
        max_pixels: u64,
        want: Rect,
        out: &mut RgbImage,
    ) -> Result<Rect, DecodeError> {
        self.decode_with(bytes, max_pixels, Some(want), Scale::Full, out)
    }

    /// **Not exact** (opt-in only): decodes a [`Decoder::Turbo`] JPEG at `scale` with libjpeg's
    /// DCT scaling, much faster for images far larger than their crops, but whose pixels are not
    /// a resize of Pillow's. `want` (optional) is in the *scaled* image's coordinates, and so is
    /// the returned rectangle. Other decoders and formats ignore the scale (the result is then at
    /// full size: check `out`'s size).
    pub fn decode_scaled(
        self,
        bytes: &[u8],
        max_pixels: u64,
        want: Option<Rect>,
        scale: Scale,
        out: &mut RgbImage,
    ) -> Result<Rect, DecodeError> {
        self.decode_with(bytes, max_pixels, want, scale, out)
    }

    /// The image's `(width, height)` from its header, with the pixel cap applied (so that a
    /// region decode can draw its crops first).
    pub fn dimensions(self, bytes: &[u8], max_pixels: u64) -> Result<(u32, u32), DecodeError> {
        let dims = guard::catch_decoder_panic(|| {
            if is_jpeg(bytes) {
                match self {
                    #[cfg(feature = "turbo")]
                    Decoder::Turbo => turbo::dimensions(bytes),
                    _ => zune::dimensions(bytes),
                }
            } else if is_png(bytes) {
                png_dimensions(bytes)
            } else {
                Err(unknown(bytes))
            }
        })
        .unwrap_or_else(|why| Err(DecodeError::Crashed(why)))?;
        check_pixels(dims.0 as u64, dims.1 as u64, max_pixels)?;
        Ok(dims)
    }

    fn decode_with(
        self,
        bytes: &[u8],
        max_pixels: u64,
        want: Option<Rect>,
        scale: Scale,
        out: &mut RgbImage,
    ) -> Result<Rect, DecodeError> {
        guard::catch_decoder_panic(|| self.decode_unguarded(bytes, max_pixels, want, scale, out))
            .unwrap_or_else(|why| Err(DecodeError::Crashed(why)))
    }

    fn decode_unguarded(
        self,
        bytes: &[u8],
        max_pixels: u64,
        want: Option<Rect>,
        scale: Scale,
        out: &mut RgbImage,
    ) -> Result<Rect, DecodeError> {
        if is_jpeg(bytes) {
            match self {
                #[cfg(feature = "turbo")]
                Decoder::Turbo => return turbo::decode(bytes, max_pixels, want, scale, out),
                #[cfg(not(feature = "turbo"))]
                Decoder::Turbo => {
                    let _ = (want, scale);
                    return Err(DecodeError::Corrupt(
                        "this build has no libjpeg-turbo decoder (the decode crate's `turbo` feature is off): use --decoder zune".into(),
                    ));
                }
                Decoder::Zune => zune::decode(bytes, max_pixels, out)?,
            }
        } else if is_png(bytes) {
            decode_png(bytes, max_pixels, out)?;
        } else {
            return Err(unknown(bytes));
        }
        Ok(Rect::full(out.width as u32, out.height as u32))
    }
}

impl Default for Decoder {
    /// The decoder of a run that names none: libjpeg-turbo (Pillow's pixels byte for byte, and
    /// faster than zune-jpeg on the benchmark corpora, see BENCHMARKS.md), or zune-jpeg in a
    /// build without the `turbo` feature.
    fn default() -> Decoder {
        if cfg!(feature = "turbo") {
            Decoder::Turbo
        } else {
            Decoder::Zune
        }
    }
}

impl fmt::Display for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Decoder {
    type Err = String;

    fn from_str(s: &str) -> Result<Decoder, String> {
        let d = match s {
            "zune" | "zune-jpeg" => Decoder::Zune,
            "turbo" | "libjpeg-turbo" => Decoder::Turbo,
            _ => return Err(format!("unknown decoder {s:?}: expected zune or turbo")),
        };
        if !d.is_available() {
            return Err(format!(
                "decoder {s:?} is not in this build (built without the decode crate's `turbo` feature)"
            ));
        }
        Ok(d)
    }
}

/// libjpeg's DCT scaling, for [`Decoder::decode_scaled`] (opt-in, not exact).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scale {
    /// Full size (exact).
    #[default]
    Full,
    /// 1/2.
    Half,
    /// 1/4.
    Quarter,
    /// 1/8.
    Eighth,
}

impl Scale {
    /// The `d` of the `1/d` scale.
    pub fn denominator(self) -> u32 {
        match self {
            Scale::Full => 1,
            Scale::Half => 2,
            Scale::Quarter => 4,
            Scale::Eighth => 8,
        }
    }

    /// The smallest scale, down to 1/`max_denominator`, at which a crop whose shorter side is
    /// `crop_side` pixels still has at least `view_side` pixels: how far a view's source can
    /// shrink before the resize would upsample.
    pub fn for_crop(crop_side: u32, view_side: u32, max_denominator: u32) -> Scale {
        let mut best = Scale::Full;
        for s in [Scale::Half, Scale::Quarter, Scale::Eighth] {
            if s.denominator() <= max_denominator && crop_side / s.denominator() >= view_side {
                best = s;
            }
        }
        best
    }
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

fn unknown(bytes: &[u8]) -> DecodeError {
    DecodeError::UnknownFormat {
        first_bytes: bytes.iter().take(8).copied().collect(),
    }
}

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

/// Decodes `bytes` into `out` with the default [`Decoder`] (see [`Decoder::decode`]).
pub fn decode_rgb(bytes: &[u8], max_pixels: u64, out: &mut RgbImage) -> Result<(), DecodeError> {
    Decoder::default().decode(bytes, max_pixels, out)
}

/// Reads a whole file and decodes it with `decoder` (for one-off tools: `loader augment`, tests).
pub fn decode_file(
    path: &std::path::Path,
    max_pixels: u64,
    decoder: Decoder,
) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut image = RgbImage::default();
    decoder
        .decode(&bytes, max_pixels, &mut image)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(image)
}

pub(crate) fn check_pixels(width: u64, height: u64, max_pixels: u64) -> Result<(), DecodeError> {
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

/// True when the last marker among SOS (`FF DA`) and EOI (`FF D9`) is an EOI, i.e. the final scan
/// is complete. Scans from the end, so a complete file is checked in a few bytes.
pub(crate) fn eoi_after_last_scan(bytes: &[u8]) -> bool {
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

fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let reader = png::Decoder::new(bytes)
        .read_info()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let info = reader.info();
    Ok((info.width, info.height))
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
