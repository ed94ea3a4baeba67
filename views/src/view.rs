//! Making one view: the paper's pipeline (facebookresearch/barlowtwins `Transform`, torchvision on
//! PIL images) applied with given [`ViewParams`], written straight into a CHW u8 destination.
//!
//! Order, as torchvision composes it: crop + Pillow resize (bicubic, or bilinear where the
//! parameters say so; [`crate::resample`]), flip,
//! colour jitter in the drawn order ([`crate::color`]), grayscale, Pillow's GaussianBlur
//! ([`crate::blur`]), solarize. Every op but the flip is mirror-symmetric (per-pixel, a global
//! mean, or a symmetric blur with integer sums), so the flip and solarize are done by the final
//! HWC -> CHW write. The one exception, torchvision's float blur, blurs as if mirrored when the
//! view is flipped ([`Blurs::apply`]'s `flipped`).

use crate::blur::Blurs;
use crate::color;
use crate::params::{JitterOp, ViewParams};
use crate::resample::Resampler;
use decode::RgbImage;

/// Per-worker buffers for making views; create one per thread and reuse it for every image, so
/// the steady state allocates nothing.
#[derive(Default)]
pub struct ViewMaker {
    resampler: Resampler,
    blur: Blurs,
    hwc: Vec<u8>,
    /// Time spent per stage since the last [`ViewMaker::take_times`].
    times: StageTimes,
}

/// Nanoseconds spent in each stage of making views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Crop + resize.
    pub crop_ns: u64,
    /// Colour jitter and grayscale.
    pub color_ns: u64,
    /// Gaussian blur.
    pub blur_ns: u64,
    /// Flip + solarize + HWC -> CHW write into the destination.
    pub write_ns: u64,
}

/// A stopwatch that hands out the time since its last lap.
struct Lap(std::time::Instant);

impl Lap {
    fn start() -> Lap {
        Lap(std::time::Instant::now())
    }
    fn lap(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let ns = (now - self.0).as_nanos() as u64;
        self.0 = now;
        ns
    }
}

impl ViewMaker {
    /// Makes the `size x size` view of `image` described by `params` (which must fit the image;
    /// see [`ViewParams::validate`]) and writes it as CHW u8 into `out` (`3 * size * size` bytes).
    pub fn make_view(&mut self, image: &RgbImage, params: &ViewParams, size: u32, out: &mut [u8]) {
        let lut = self.make_hwc(image, params, size);
        let mut lap = Lap::start();
        write_chw(&self.hwc, size as usize, params.flip, &lut, out);
        self.times.write_ns += lap.lap();
    }

    /// The time spent per stage since the last call (and resets it).
    pub fn take_times(&mut self) -> StageTimes {
        std::mem::take(&mut self.times)
    }

    /// The view before flip, as interleaved RGB (HWC) in `self.hwc`, but for a per-sample table
    /// still to be applied (returned; it includes solarize).
    ///
    /// Brightness and contrast are per-sample tables, so they are not applied where they occur but
    /// composed into a pending table that the next op reads its input through (saturation, hue and
    /// grayscale load through it; contrast takes its mean through it; blur applies it first) and
    /// that the final write applies with solarize. The bytes are the same as applying each op in
    /// turn, with fewer passes over the image.
    fn make_hwc(&mut self, image: &RgbImage, params: &ViewParams, size: u32) -> [u8; 256] {
        let s = size as usize;
        let c = params.crop;
        let mut lap = Lap::start();
        self.hwc.resize(3 * s * s, 0);
        self.resampler.resize_crop(
            &image.pixels,
            image.width,
            (c.x as usize, c.y as usize, c.w as usize, c.h as usize),
            s,
            s,
            params.interpolation,
            &mut self.hwc,
        );
        self.times.crop_ns += lap.lap();
        let px = &mut self.hwc[..];
        let mut pending = IDENTITY;
        let mut table = [0u8; 256];
        if let Some(j) = &params.jitter {
            for op in j.order {
                match op {
                    JitterOp::Brightness => {
                        color::blend_table(0, j.brightness as f32, &mut table);
                        pending = color::compose(&pending, &table);
                    }
                    JitterOp::Contrast => {
                        let mean = color::contrast_mean_lut(px, &pending);
                        color::blend_table(mean, j.contrast as f32, &mut table);
                        pending = color::compose(&pending, &table);
                    }
                    JitterOp::Saturation => {
                        color::saturation_lut(px, j.saturation, &pending);
                        pending = IDENTITY;
                    }
                    JitterOp::Hue => {
                        color::hue_lut(px, j.hue, &pending);
                        pending = IDENTITY;
                    }
                }
            }
        }
        if params.grayscale {
            color::grayscale_lut(px, &pending);
            pending = IDENTITY;
        }
        self.times.color_ns += lap.lap();
        if let Some(sigma) = params.blur_sigma {
            if pending != IDENTITY {
                color::apply_lut(px, &pending);
                pending = IDENTITY;
            }
            self.blur
                .apply(params.blur_filter, px, s, s, sigma, params.flip);
        }
        self.times.blur_ns += lap.lap();
        if params.solarize {
            pending = color::compose(&pending, &color::solarize_lut(128));
        }
        pending
    }
}

use crate::color::IDENTITY;

crate::simd::multiversion! {
    /// Interleaved RGB (HWC) -> planar CHW through `lut`, mirroring each row when `flip`: each row
    /// is de-interleaved (64 pixels at a time through fixed-size arrays, which vectorises), then
    /// reversed in place if flipped, then passed through the table unless it is the identity.
    fn write_chw(hwc: &[u8], size: usize, flip: bool, lut: &[u8; 256], out: &mut [u8]) {
        const C: usize = crate::planar::BLOCK;
        let plane = size * size;
        assert_eq!(
            out.len(),
            3 * plane,
            "destination must hold 3 x {size} x {size} bytes"
        );
        let identity = lut == &IDENTITY;
        let table = crate::lut::Table::new(lut);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (y, row) in hwc.chunks_exact(3 * size).enumerate() {
            let span = y * size..(y + 1) * size;
            let (rr, gr, br) = (&mut r[span.clone()], &mut g[span.clone()], &mut b[span]);
            let mut x = 0;
            while x + C <= size {
                let px: &[u8; 3 * C] = row[3 * x..3 * (x + C)].try_into().unwrap();
                let (ro, go, bo): (&mut [u8; C], &mut [u8; C], &mut [u8; C]) = (
                    (&mut rr[x..x + C]).try_into().unwrap(),
                    (&mut gr[x..x + C]).try_into().unwrap(),
                    (&mut br[x..x + C]).try_into().unwrap(),
                );
                crate::planar::deinterleave(px, ro, go, bo);
                x += C;
            }
            for i in x..size {
                rr[i] = row[3 * i];
                gr[i] = row[3 * i + 1];
                br[i] = row[3 * i + 2];
            }
            for p in [rr, gr, br] {
                if flip {
                    p.reverse();
                }
                if !identity {
                    table.apply_in_place(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed_rng::{keyed_rng, Stream};
    use crate::params::{sample_view, AugmentConfig, CropBox};

    impl ViewMaker {
        /// The reference final write: scalar, HWC, one byte at a time (what `write_chw` must equal).
        fn make_view_hwc_reference(
            &mut self,
            image: &RgbImage,
            params: &ViewParams,
            size: u32,
            out: &mut Vec<u8>,
        ) {
            let s = size as usize;
            let lut = self.make_hwc(image, params, size);
            let hwc = &self.hwc;
            out.clear();
            out.resize(3 * s * s, 0);
            for (y, row) in hwc.chunks_exact(3 * s).enumerate() {
                for x in 0..s {
                    let dx = if params.flip { s - 1 - x } else { x };
                    for ch in 0..3 {
                        out[(y * s + dx) * 3 + ch] = lut[row[3 * x + ch] as usize];
                    }
                }
            }
        }
    }

    /// The shipped final write (`write_chw`, vectorised, flip by reversal, table in place) gives the
    /// reference's bytes over many random parameter sets, both views' configs and odd sizes, at
    /// every SIMD level.
    #[test]
    fn final_write_equals_the_scalar_reference_over_random_parameters() {
        let (w, h) = (97usize, 61usize);
        let img = RgbImage {
            width: w,
            height: h,
            pixels: (0..w * h * 3)
                .map(|i| ((i * 37 + i / 291 * 11) % 256) as u8)
                .collect(),
        };
        let cfg = AugmentConfig::default();
        let mut maker = ViewMaker::default();
        let (mut chw, mut hwc) = (Vec::new(), Vec::new());
        let (mut flips, mut solarized) = (0, 0);
        for i in 0..400u64 {
            let (stream, vcfg) = if i % 2 == 0 {
                (Stream::View(0), &cfg.view_a)
            } else {
                (Stream::View(1), &cfg.view_b)
            };
            let params = sample_view(&mut keyed_rng(9, i, i, stream), w as u32, h as u32, vcfg);
            let size = [1u32, 7, 64, 65, 130][i as usize % 5];
            let s = size as usize;
            chw.resize(3 * s * s, 0);
            // At every level: the final write's own paths (planar, lut) differ per level.
            for (name, level) in crate::simd::LEVELS {
                let ran = crate::simd::at_level(level, || {
                    maker.make_view(&img, &params, size, &mut chw);
                    maker.make_view_hwc_reference(&img, &params, size, &mut hwc);
                    for (p, px) in hwc.chunks_exact(3).enumerate() {
                        for c in 0..3 {
                            assert_eq!(
                                chw[c * s * s + p],
                                px[c],
                                "{name}: set {i} ({params:?}) pixel {p} channel {c}"
                            );
                        }
                    }
                });
                if ran.is_none() {
                    crate::simd::say_skipped(name);
                }
            }
            flips += params.flip as u32;
            solarized += params.solarize as u32;
        }
        assert!(
            flips > 100 && solarized > 20,
            "the draws cover flip ({flips}) and solarize ({solarized})"
        );
    }

    #[test]
    fn flat_colour_stays_flat_and_flip_mirrors_rows() {
        // Left half red, right half blue; a full-image crop resized to 8x8.
        let (w, h) = (16usize, 16usize);
        let mut img = RgbImage {
            width: w,
            height: h,
            pixels: vec![0; w * h * 3],
        };
        for (i, px) in img.pixels.chunks_mut(3).enumerate() {
            if i % w < w / 2 {
                px[0] = 200
            } else {
                px[2] = 200
            }
        }
        let mut maker = ViewMaker::default();
        let full = CropBox {
            x: 0,
            y: 0,
            w: 16,
            h: 16,
        };
        let mut a = vec![0u8; 3 * 64];
        let mut b = vec![0u8; 3 * 64];
        maker.make_view(&img, &ViewParams::crop_only(full, false), 8, &mut a);
        maker.make_view(&img, &ViewParams::crop_only(full, true), 8, &mut b);
        assert_eq!(a[0], 200, "top-left is red");
        assert_eq!(a[2 * 64 + 7], 200, "top-right is blue");
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    assert_eq!(a[c * 64 + y * 8 + x], b[c * 64 + y * 8 + 7 - x]);
                }
            }
        }
        let mut hwc = Vec::new();
        maker.make_view_hwc_reference(&img, &ViewParams::crop_only(full, true), 8, &mut hwc);
        assert_eq!(&hwc[..3], &[0, 0, 200], "flipped: top-left is blue");
    }

    #[test]
    fn solarize_inverts_bright_values_only() {
        let img = RgbImage {
            width: 2,
            height: 1,
            pixels: vec![10, 127, 128, 128, 200, 255],
        };
        let mut p = ViewParams::crop_only(
            CropBox {
                x: 1,
                y: 0,
                w: 1,
                h: 1,
            },
            false,
        );
        p.solarize = true;
        let mut out = vec![0u8; 3];
        ViewMaker::default().make_view(&img, &p, 1, &mut out);
        assert_eq!(out, [127, 55, 0]);
        p.crop.x = 0;
        ViewMaker::default().make_view(&img, &p, 1, &mut out);
        assert_eq!(out, [10, 127, 127]);
    }
}
