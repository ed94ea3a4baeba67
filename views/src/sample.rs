//! One way to make a sample's views: decode (with the pixel cap and the panic guard, inside
//! [`decode::Decoder::decode`]), draw every view's parameters from its keyed generator, make each
//! view and write it with the final write (flip, solarize, CHW) the model sees.
//!
//! **Region decode** ([`DecodeOptions::region`], with the libjpeg-turbo decoder):
//! [`SampleMaker::load_and_draw`] reads the image's size from its header, draws the views'
//! parameters (they depend only on the size and the keyed generators), then decodes only the
//! union of the views' crop rectangles (plus the margin libjpeg-turbo's upsampling needs; see
//! [`decode::region`]). A view reads nothing outside its crop (torchvision's `resized_crop` crops,
//! then resizes), so the views' bytes are those of a full decode.
//!
//! A run (the loader's pipeline), `loader preview`, `loader augment`, the fuzz target and the tests
//! all make views through [`SampleMaker`], so what they show or check is byte for byte what the
//! trainer receives.
//!
//! **Architecture invariant:** a sample's views are a function of (image bytes, [`SampleKey`],
//! recipe) only; a `SampleMaker` holds buffers, never state that could change the bytes.

use std::time::Instant;

use decode::{DecodeError, Decoder, Rect, RgbImage, Scale};

use crate::keyed_rng::{keyed_rng, Stream};
use crate::params::{sample_view, CropBox, ViewConfig, ViewParams};
use crate::view::{StageTimes, ViewMaker};

/// Which sample: the generator of each view is keyed by (seed, epoch, dataset index, view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleKey {
    seed: u64,
    epoch: u64,
    index: u64,
}

impl SampleKey {
    /// The key of dataset sample `index` in `epoch` of a run seeded with `seed`: the one
    /// constructor, so every caller keys a sample the same way.
    pub fn new(seed: u64, epoch: u64, index: u64) -> SampleKey {
        SampleKey { seed, epoch, index }
    }
}

/// Per-worker buffers for making a sample's views (encoded bytes, the decoded image, the views' scratch);
/// create one per thread and reuse it, so the steady state allocates nothing beyond what the
/// decoder does internally.
#[derive(Default)]
pub struct SampleMaker {
    options: DecodeOptions,
    bytes: Vec<u8>,
    image: RgbImage,
    /// The part of the current image that `image` holds (all of it but after a region decode).
    held: Rect,
    /// The current image's full size.
    dims: (u32, u32),
    /// The DCT scale's denominator of the current image (1: full size; see
    /// [`DecodeOptions::dct_scale`]).
    scale: u32,
    views: ViewMaker,
    /// Read and decode time since the last [`SampleMaker::take_times`] (the views keep their own).
    read_ns: u64,
    decode_ns: u64,
}

/// Time spent per stage of making views, read and decode included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleTimes {
    pub read_ns: u64,
    pub decode_ns: u64,
    pub views: StageTimes,
}

/// How a [`SampleMaker`] decodes: which decoder, and whether to decode only the views' region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    pub decoder: Decoder,
    /// Decode only the union of the views' crops in [`SampleMaker::load_and_draw`] (same bytes;
    /// only [`Decoder::Turbo`] can, others decode it all).
    pub region: bool,
    /// **Not exact; off by default.** With [`Decoder::Turbo`], decode at 1/2, 1/4 or 1/8 scale
    /// (libjpeg's DCT scaling) when every view's crop is still at least the view's size at that
    /// scale, and crop the scaled image: much less decoding for images far larger than their
    /// crops, but the views are no longer the official pipeline's bytes.
    pub dct_scale: bool,
}

impl Default for DecodeOptions {
    /// The default decoder, with region decode.
    fn default() -> DecodeOptions {
        DecodeOptions {
            decoder: Decoder::default(),
            region: true,
            dct_scale: false,
        }
    }
}

impl DecodeOptions {
    /// True when [`SampleMaker::load_and_draw`] decodes only the views' region.
    pub fn decodes_regions(&self) -> bool {
        (self.region || self.dct_scale) && self.decoder == Decoder::Turbo
    }

    /// How reports name it: `turbo (region)`, `turbo (full)`, `turbo (region, DCT-scaled)` or
    /// `zune`.
    pub fn describe(&self) -> String {
        let scaled = if self.dct_scale && self.decoder == Decoder::Turbo {
            ", DCT-scaled"
        } else {
            ""
        };
        match (self.decoder, self.region) {
            (Decoder::Turbo, true) => format!("turbo (region{scaled})"),
            (Decoder::Turbo, false) => format!("turbo (full{scaled})"),
            (d, _) => d.name().into(),
        }
    }
}

impl SampleMaker {
    /// A maker that decodes with `options`.
    pub fn new(options: DecodeOptions) -> SampleMaker {
        SampleMaker {
            options,
            ..SampleMaker::default()
        }
    }

    /// How this maker decodes.
    pub fn options(&self) -> DecodeOptions {
        self.options
    }

    /// Reads an image with `read`, draws every view's parameters for `key` into `params` (as
    /// [`SampleMaker::draw`]) and decodes what the views need: with region decode only the union
    /// of their crops, else the whole image. The error says why the file cannot be used (the
    /// same files fail as with a full decode, but for one case: libjpeg stops reading at the
    /// region's last row, so a fatal error only further on, a bad marker after the scan, is not
    /// seen; see `decode/src/turbo.rs`).
    pub fn load_and_draw(
        &mut self,
        read: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
        max_pixels: u64,
        key: SampleKey,
        views: &[(u32, ViewConfig)],
        params: &mut [ViewParams],
    ) -> Result<(), String> {
        if !self.options.decodes_regions() {
            self.load(read, max_pixels)?;
            self.draw(key, views, params);
            return Ok(());
        }
        let t = Instant::now();
        self.bytes.clear();
        read(&mut self.bytes).map_err(|e| format!("cannot read: {e}"))?;
        self.read_ns += t.elapsed().as_nanos() as u64;
        let t = Instant::now();
        let decoded = self.decode_views_region(max_pixels, key, views, params);
        self.decode_ns += t.elapsed().as_nanos() as u64;
        decoded.map_err(|e| e.to_string())
    }

    fn decode_views_region(
        &mut self,
        max_pixels: u64,
        key: SampleKey,
        views: &[(u32, ViewConfig)],
        params: &mut [ViewParams],
    ) -> Result<(), DecodeError> {
        self.dims = (0, 0);
        let dims = self.options.decoder.dimensions(&self.bytes, max_pixels)?;
        self.dims = dims;
        self.draw(key, views, params);
        self.scale = 1;
        // Only JPEGs scale (a PNG decodes at full size whatever the scale).
        if self.options.dct_scale && self.bytes.starts_with(&[0xFF, 0xD8]) {
            let scale = params
                .iter()
                .zip(views)
                .map(|(p, (size, _))| {
                    Scale::for_crop(p.crop.w.min(p.crop.h), *size, 8).denominator()
                })
                .min()
                .unwrap_or(1);
            self.scale = scale;
        }
        let (d, (w, h)) = (self.scale, dims);
        let want = params.iter().fold(Rect::default(), |u, p| {
            u.union(scaled_crop(p.crop, d, w.div_ceil(d), h.div_ceil(d)))
        });
        let decoder = self.options.decoder;
        let held = if d > 1 {
            let scale = [Scale::Half, Scale::Quarter, Scale::Eighth]
                .into_iter()
                .find(|s| s.denominator() == d)
                .expect("a DCT scale");
            let want = self.options.region.then_some(want);
            decoder.decode_scaled(&self.bytes, max_pixels, want, scale, &mut self.image)
        } else if self.options.region {
            decoder.decode_region(&self.bytes, max_pixels, want, &mut self.image)
        } else {
            decoder
                .decode(&self.bytes, max_pixels, &mut self.image)
                .map(|()| Rect::full(w, h))
        };
        self.finish(held)
    }

    /// Records a decode's outcome: which part of the image the maker now holds.
    fn finish(&mut self, held: Result<Rect, DecodeError>) -> Result<(), DecodeError> {
        match held {
            Ok(held) => {
                self.held = held;
                Ok(())
            }
            Err(e) => {
                self.held = Rect::default();
                self.dims = (0, 0);
                self.scale = 1;
                Err(e)
            }
        }
    }

    /// Reads an image with `read` (which fills the maker's byte buffer, cleared first) and decodes
    /// it; the error says why the file cannot be used. Both stages are timed.
    pub fn load(
        &mut self,
        read: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
        max_pixels: u64,
    ) -> Result<(), String> {
        let t = Instant::now();
        self.bytes.clear();
        read(&mut self.bytes).map_err(|e| format!("cannot read: {e}"))?;
        self.read_ns += t.elapsed().as_nanos() as u64;
        let t = Instant::now();
        let decoded = self
            .options
            .decoder
            .decode(&self.bytes, max_pixels, &mut self.image);
        self.decode_ns += t.elapsed().as_nanos() as u64;
        self.set_whole(decoded).map_err(|e| e.to_string())
    }

    /// Decodes `bytes` (a file's contents), all of it, as the current image.
    pub fn decode(&mut self, bytes: &[u8], max_pixels: u64) -> Result<(), DecodeError> {
        let t = Instant::now();
        let decoded = self
            .options
            .decoder
            .decode(bytes, max_pixels, &mut self.image);
        self.decode_ns += t.elapsed().as_nanos() as u64;
        self.set_whole(decoded)
    }

    /// After a full decode: the maker holds all of the image.
    fn set_whole(&mut self, decoded: Result<(), DecodeError>) -> Result<(), DecodeError> {
        let (w, h) = (self.image.width as u32, self.image.height as u32);
        self.dims = (w, h);
        self.scale = 1;
        self.finish(decoded.map(|()| Rect::full(w, h)))
    }

    /// The current image (the last successfully decoded one): all of it after
    /// [`SampleMaker::load`] or [`SampleMaker::decode`]; after a region decode only the part
    /// [`SampleMaker::held`] says.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// Which part of the current image [`SampleMaker::image`] holds.
    pub fn held(&self) -> Rect {
        self.held
    }

    /// The current image's full `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        self.dims
    }

    /// Every view's parameters for `key` on the current image, into `params` (one per view of
    /// `views`, the recipe's [`crate::recipe::Recipe::expanded`] list): view `i` is drawn from its config with
    /// its own keyed generator ([`Stream::View`]`(i)`), so adding views never changes the others.
    pub fn draw(&self, key: SampleKey, views: &[(u32, ViewConfig)], params: &mut [ViewParams]) {
        assert_eq!(views.len(), params.len(), "one parameter set per view");
        let (w, h) = self.dims;
        for (i, ((_, cfg), out)) in views.iter().zip(params.iter_mut()).enumerate() {
            let mut rng = keyed_rng(key.seed, key.epoch, key.index, Stream::View(i as u32));
            *out = sample_view(&mut rng, w, h, cfg);
        }
    }

    /// Writes one view of the current image with given parameters (which must fit it; see
    /// [`ViewParams::validate`]) into `out` (CHW u8, `3 * size * size` bytes): `loader augment`'s
    /// replay, through the same final write as a run.
    /// After a region decode the crop must lie in the decoded region (it does for the parameters
    /// drawn by [`SampleMaker::load_and_draw`]).
    pub fn make_view(&mut self, params: &ViewParams, size: u32, out: &mut [u8]) {
        let held = self.held;
        if held.x == 0 && held.y == 0 && self.scale <= 1 {
            self.views.make_view(&self.image, params, size, out);
        } else {
            let d = self.scale.max(1);
            let (w, h) = (self.dims.0.div_ceil(d), self.dims.1.div_ceil(d));
            let c = scaled_crop(params.crop, d, w, h);
            assert!(
                held.contains(&c),
                "crop {c:?} outside the decoded region {held:?}"
            );
            let mut shifted = *params;
            shifted.crop = CropBox {
                x: c.x - held.x,
                y: c.y - held.y,
                w: c.w,
                h: c.h,
            };
            self.views.make_view(&self.image, &shifted, size, out);
        }
    }

    /// The time spent per stage since the last call (and resets it).
    pub fn take_times(&mut self) -> SampleTimes {
        SampleTimes {
            read_ns: std::mem::take(&mut self.read_ns),
            decode_ns: std::mem::take(&mut self.decode_ns),
            views: self.views.take_times(),
        }
    }
}

/// A crop of the full-size image in the image scaled by `1/d` (`w x h` pixels): the identity for
/// `d = 1`, else rounded outwards, clipped, at least one pixel.
fn scaled_crop(c: CropBox, d: u32, w: u32, h: u32) -> Rect {
    let x = (c.x / d).min(w - 1);
    let y = (c.y / d).min(h - 1);
    Rect {
        x,
        y,
        w: (c.x + c.w).div_ceil(d).min(w).saturating_sub(x).max(1),
        h: (c.y + c.h).div_ceil(d).min(h).saturating_sub(y).max(1),
    }
}

/// Planar CHW u8 (`3 * size * size` bytes) -> interleaved RGB (HWC), for PNG output.
pub fn chw_to_hwc(chw: &[u8], out: &mut Vec<u8>) {
    let plane = chw.len() / 3;
    out.clear();
    out.reserve(chw.len());
    for i in 0..plane {
        out.extend_from_slice(&[chw[i], chw[plane + i], chw[2 * plane + i]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{builtin, Recipe};

    fn test_image(w: usize, h: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header().unwrap().write_image_data(&px).unwrap();
        out
    }

    /// Makes every view of `bytes` for `key` with `maker`: (parameters, views).
    fn views_of(
        maker: &mut SampleMaker,
        bytes: &[u8],
        key: SampleKey,
        recipe: &Recipe,
    ) -> (Vec<ViewParams>, Vec<Vec<u8>>) {
        let views = recipe.expanded();
        let mut params = vec![ViewParams::default(); views.len()];
        let mut out: Vec<Vec<u8>> = views
            .iter()
            .map(|(s, _)| vec![0u8; 3 * (*s as usize).pow(2)])
            .collect();
        maker.decode(bytes, 1 << 20).unwrap();
        maker.draw(key, &views, &mut params);
        for ((p, (size, _)), out) in params.iter().zip(&views).zip(&mut out) {
            maker.make_view(p, *size, out);
        }
        (params, out)
    }

    #[test]
    fn a_samples_views_depend_on_its_key_not_on_the_maker_history() {
        let bytes = test_image(40, 30);
        let recipe = builtin("dino")
            .unwrap()
            .resized(Some(16), Some(8), None)
            .unwrap();
        let key = SampleKey::new(3, 1, 7);
        let first = views_of(&mut SampleMaker::default(), &bytes, key, &recipe);
        let mut used = SampleMaker::default();
        views_of(
            &mut used,
            &test_image(64, 17),
            SampleKey { index: 1, ..key },
            &recipe,
        );
        assert_eq!(views_of(&mut used, &bytes, key, &recipe), first);
        let times = used.take_times();
        assert!(times.decode_ns > 0 && times.views.crop_ns > 0);
        assert_eq!(used.take_times(), SampleTimes::default());
        assert_eq!(first.1.len(), 10);
        assert_eq!((first.1[1].len(), first.1[2].len()), (3 * 256, 3 * 64));
    }

    /// View `i` is drawn from stream `i` whatever the other views: a two-view recipe's views are
    /// a multi-view recipe's first two when their configs agree, and locals do not move them.
    #[test]
    fn adding_views_never_changes_the_first_ones() {
        let bytes = test_image(50, 40);
        let key = SampleKey::new(5, 0, 2);
        let dino = builtin("dino")
            .unwrap()
            .resized(Some(16), Some(8), None)
            .unwrap();
        let fewer = dino.clone().resized(None, None, Some(2)).unwrap();
        let two = dino.clone().resized(None, None, Some(0)).unwrap();
        let (pa, va) = views_of(&mut SampleMaker::default(), &bytes, key, &dino);
        let (pb, vb) = views_of(&mut SampleMaker::default(), &bytes, key, &fewer);
        let (pc, vc) = views_of(&mut SampleMaker::default(), &bytes, key, &two);
        assert_eq!((&pa[..4], &va[..4]), (&pb[..], &vb[..]));
        assert_eq!((&pa[..2], &va[..2]), (&pc[..], &vc[..]));
        assert_ne!(pa[2], pa[3], "each local view has its own draw");
    }

    #[test]
    fn bad_bytes_are_an_error_with_a_reason() {
        let mut maker = SampleMaker::default();
        let err = maker.decode(b"not an image", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not a JPEG or PNG"), "{err}");
        let err = maker.decode(&test_image(40, 30), 100).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn chw_to_hwc_interleaves_planes() {
        let mut out = Vec::new();
        chw_to_hwc(&[1, 2, 10, 20, 100, 200], &mut out);
        assert_eq!(out, [1, 10, 100, 2, 20, 200]);
    }
}
