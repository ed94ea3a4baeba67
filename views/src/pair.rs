//! One way to make a pair: decode (with the pixel cap and the panic guard, inside
//! [`decode::decode_rgb`]), draw both views' parameters from their keyed generators, make both
//! views and write them with the final write (flip, solarize, CHW) the model sees.
//!
//! A run (the loader's pipeline), `loader preview`, `loader augment`, the fuzz target and the tests
//! all make views through [`PairMaker`], so what they show or check is byte for byte what the
//! trainer receives.
//!
//! **Architecture invariant:** a pair is a function of (image bytes, [`PairKey`], augmentation,
//! size) only; a `PairMaker` holds buffers, never state that could change the bytes.

use std::time::Instant;

use decode::{decode_rgb, DecodeError, RgbImage};

use crate::keyed_rng::{keyed_rng, Stream};
use crate::params::{sample_view, AugmentConfig, ViewParams};
use crate::view::{StageTimes, ViewMaker};

/// Which pair: the generators of both views are keyed by (seed, epoch, dataset index, view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairKey {
    seed: u64,
    epoch: u64,
    index: u64,
}

impl PairKey {
    /// The key of dataset sample `index` in `epoch` of a run seeded with `seed`: the one
    /// constructor, so every caller keys a sample the same way.
    pub fn new(seed: u64, epoch: u64, index: u64) -> PairKey {
        PairKey { seed, epoch, index }
    }
}

/// Per-worker buffers for making pairs (encoded bytes, the decoded image, the views' scratch);
/// create one per thread and reuse it, so the steady state allocates nothing beyond what the
/// decoder does internally.
#[derive(Default)]
pub struct PairMaker {
    bytes: Vec<u8>,
    image: RgbImage,
    views: ViewMaker,
    /// Read and decode time since the last [`PairMaker::take_times`] (the views keep their own).
    read_ns: u64,
    decode_ns: u64,
}

/// Time spent per stage of making pairs, read and decode included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairTimes {
    pub read_ns: u64,
    pub decode_ns: u64,
    pub views: StageTimes,
}

impl PairMaker {
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

    /// Both views' parameters for `key` on the current image (view A drawn from `augment.view_a`,
    /// view B from `augment.view_b`, each from its keyed generator).
    pub fn draw(&self, key: PairKey, augment: &AugmentConfig) -> [ViewParams; 2] {
        let (w, h) = (self.image.width as u32, self.image.height as u32);
        let draw = |stream, cfg| {
            sample_view(
                &mut keyed_rng(key.seed, key.epoch, key.index, stream),
                w,
                h,
                cfg,
            )
        };
        [
            draw(Stream::ViewA, &augment.view_a),
            draw(Stream::ViewB, &augment.view_b),
        ]
    }

    /// Draws both views' parameters for `key` ([`PairMaker::draw`]) and writes the `size x size` views of the current image into `view_a` and
    /// `view_b` (CHW u8, `3 * size * size` bytes each). Returns the parameters drawn.
    pub fn make_pair(
        &mut self,
        key: PairKey,
        augment: &AugmentConfig,
        size: u32,
        view_a: &mut [u8],
        view_b: &mut [u8],
    ) -> [ViewParams; 2] {
        let params = self.draw(key, augment);
        self.make_view(&params[0], size, view_a);
        self.make_view(&params[1], size, view_b);
        params
    }

    /// Writes one view of the current image with given parameters (which must fit it; see
    /// [`ViewParams::validate`]) into `out` (CHW u8, `3 * size * size` bytes): `loader augment`'s
    /// replay, through the same final write as a run.
    pub fn make_view(&mut self, params: &ViewParams, size: u32, out: &mut [u8]) {
        self.views.make_view(&self.image, params, size, out);
    }

    /// The time spent per stage since the last call (and resets it).
    pub fn take_times(&mut self) -> PairTimes {
        PairTimes {
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

    fn test_image(w: usize, h: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header().unwrap().write_image_data(&px).unwrap();
        out
    }

    #[test]
    fn a_pair_depends_on_its_key_not_on_the_maker_history() {
        let bytes = test_image(40, 30);
        let cfg = AugmentConfig::default();
        let key = PairKey::new(3, 1, 7);
        let (mut a1, mut b1) = (vec![0u8; 3 * 256], vec![0u8; 3 * 256]);
        let (mut a2, mut b2) = (a1.clone(), b1.clone());
        let mut fresh = PairMaker::default();
        fresh.decode(&bytes, 1 << 20).unwrap();
        let p1 = fresh.make_pair(key, &cfg, 16, &mut a1, &mut b1);
        let mut used = PairMaker::default();
        used.decode(&test_image(64, 17), 1 << 20).unwrap();
        used.make_pair(PairKey { index: 1, ..key }, &cfg, 16, &mut a2, &mut b2);
        used.decode(&bytes, 1 << 20).unwrap();
        let p2 = used.make_pair(key, &cfg, 16, &mut a2, &mut b2);
        assert_eq!((p1, a1, b1), (p2, a2, b2));
        let times = used.take_times();
        assert!(times.decode_ns > 0 && times.views.crop_ns > 0);
        assert_eq!(used.take_times(), PairTimes::default());
    }

    #[test]
    fn bad_bytes_are_an_error_with_a_reason() {
        let mut maker = PairMaker::default();
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
