//! One way to make a sample's views: decode (with the pixel cap and the panic guard, inside
//! [`decode::decode_rgb`]), draw every view's parameters from its keyed generator, make each view
//! and write it with the final write (flip, solarize, CHW) the model sees.
//!
//! A run (the loader's pipeline), `loader preview`, `loader augment`, the fuzz target and the tests
//! all make views through [`SampleMaker`], so what they show or check is byte for byte what the
//! trainer receives.
//!
//! **Architecture invariant:** a sample's views are a function of (image bytes, [`SampleKey`],
//! recipe) only; a `SampleMaker` holds buffers, never state that could change the bytes.

use std::time::Instant;

use decode::{decode_rgb, DecodeError, RgbImage};

use crate::keyed_rng::{keyed_rng, Stream};
use crate::params::{sample_view, ViewConfig, ViewParams};
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
    bytes: Vec<u8>,
    image: RgbImage,
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

impl SampleMaker {
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
        let decoded = decode_rgb(&self.bytes, max_pixels, &mut self.image);
        self.decode_ns += t.elapsed().as_nanos() as u64;
        decoded.map_err(|e| e.to_string())
    }

    /// Decodes `bytes` (a file's contents) as the current image.
    pub fn decode(&mut self, bytes: &[u8], max_pixels: u64) -> Result<(), DecodeError> {
        let t = Instant::now();
        let decoded = decode_rgb(bytes, max_pixels, &mut self.image);
        self.decode_ns += t.elapsed().as_nanos() as u64;
        decoded
    }

    /// The current (last successfully decoded) image.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// Every view's parameters for `key` on the current image, into `params` (one per view of
    /// `views`, the recipe's [`crate::recipe::Recipe::expanded`] list): view `i` is drawn from its config with
    /// its own keyed generator ([`Stream::View`]`(i)`), so adding views never changes the others.
    pub fn draw(&self, key: SampleKey, views: &[(u32, ViewConfig)], params: &mut [ViewParams]) {
        assert_eq!(views.len(), params.len(), "one parameter set per view");
        let (w, h) = (self.image.width as u32, self.image.height as u32);
        for (i, ((_, cfg), out)) in views.iter().zip(params.iter_mut()).enumerate() {
            let mut rng = keyed_rng(key.seed, key.epoch, key.index, Stream::View(i as u32));
            *out = sample_view(&mut rng, w, h, cfg);
        }
    }

    /// Writes one view of the current image with given parameters (which must fit it; see
    /// [`ViewParams::validate`]) into `out` (CHW u8, `3 * size * size` bytes): `loader augment`'s
    /// replay, through the same final write as a run.
    pub fn make_view(&mut self, params: &ViewParams, size: u32, out: &mut [u8]) {
        self.views.make_view(&self.image, params, size, out);
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
