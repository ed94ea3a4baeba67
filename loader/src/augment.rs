//! The view pipeline: random resized crop (torchvision's sampler, Pillow's bicubic) and flip,
//! written straight into a CHW u8 destination.
//!
//! The colour ops, blur and solarize of the paper's pipeline build on this module (issue 3).

use fast_image_resize as fir;
use rand::Rng;

use crate::decode::RgbImage;

/// A crop box in source-image pixels (torchvision's `i, j, h, w` as `y, x, h, w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The random-resized-crop and flip settings (torchvision's defaults for the paper).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropConfig {
    /// Range of the crop's area as a fraction of the image (paper: 0.08..1.0).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio w/h (paper: 3/4..4/3), sampled log-uniformly.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip (paper: 0.5).
    pub flip_p: f64,
}

impl Default for CropConfig {
    fn default() -> Self {
        CropConfig {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
        }
    }
}

/// Every random choice made for one view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewParams {
    pub crop: CropBox,
    pub flip: bool,
}

/// Python's `round` (half to even), as torchvision uses it.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// torchvision `RandomResizedCrop.get_params`: up to 10 tries, then the centre-crop fallback.
pub fn sample_crop<R: Rng>(rng: &mut R, width: u32, height: u32, cfg: &CropConfig) -> CropBox {
    let (wf, hf) = (width as f64, height as f64);
    let area = wf * hf;
    let (log_lo, log_hi) = (cfg.ratio.0.ln(), cfg.ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.gen_range(cfg.scale.0..=cfg.scale.1);
        let aspect = rng.gen_range(log_lo..=log_hi).exp();
        let w = py_round((target_area * aspect).sqrt());
        let h = py_round((target_area / aspect).sqrt());
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let y = rng.gen_range(0..=(height as i64 - h)) as u32;
            let x = rng.gen_range(0..=(width as i64 - w)) as u32;
            return CropBox {
                x,
                y,
                w: w as u32,
                h: h as u32,
            };
        }
    }
    let in_ratio = wf / hf;
    let (w, h) = if in_ratio < cfg.ratio.0 {
        (width as i64, py_round(wf / cfg.ratio.0))
    } else if in_ratio > cfg.ratio.1 {
        (py_round(hf * cfg.ratio.1), height as i64)
    } else {
        (width as i64, height as i64)
    };
    let (w, h) = (
        w.clamp(1, width as i64) as u32,
        h.clamp(1, height as i64) as u32,
    );
    CropBox {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
    }
}

/// Samples a whole view's parameters for an image of the given size.
pub fn sample_view<R: Rng>(rng: &mut R, width: u32, height: u32, cfg: &CropConfig) -> ViewParams {
    let crop = sample_crop(rng, width, height, cfg);
    let flip = rng.gen_bool(cfg.flip_p);
    ViewParams { crop, flip }
}

/// Per-worker buffers for making views; create one per thread and reuse it for every image, so
/// the steady state allocates nothing.
pub struct ViewMaker {
    resizer: fir::Resizer,
    resized: Vec<u8>,
}

impl Default for ViewMaker {
    fn default() -> Self {
        ViewMaker {
            resizer: fir::Resizer::new(),
            resized: Vec::new(),
        }
    }
}

impl ViewMaker {
    /// Crops `params.crop` out of `image`, resizes it to `size x size` with Pillow's bicubic
    /// (antialiased when shrinking), flips it if asked, and writes it as CHW u8 into `out`
    /// (`3 * size * size` bytes).
    pub fn make_view(&mut self, image: &RgbImage, params: &ViewParams, size: u32, out: &mut [u8]) {
        let plane = (size * size) as usize;
        assert_eq!(
            out.len(),
            3 * plane,
            "destination must hold 3 x {size} x {size} bytes"
        );
        self.resized.resize(3 * plane, 0);
        let src = fir::images::ImageRef::new(
            image.width as u32,
            image.height as u32,
            &image.pixels,
            fir::PixelType::U8x3,
        )
        .expect("decoded image buffer matches its dimensions");
        let mut dst =
            fir::images::Image::from_slice_u8(size, size, &mut self.resized, fir::PixelType::U8x3)
                .expect("resize buffer matches its dimensions");
        let c = params.crop;
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom))
            .crop(c.x as f64, c.y as f64, c.w as f64, c.h as f64);
        self.resizer
            .resize(&src, &mut dst, &options)
            .expect("crop box lies inside the image");
        write_chw(&self.resized, size as usize, params.flip, out);
    }
}

/// Interleaved RGB (HWC) -> planar CHW, mirroring each row when `flip`.
fn write_chw(hwc: &[u8], size: usize, flip: bool, out: &mut [u8]) {
    let plane = size * size;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (y, row) in hwc.chunks_exact(3 * size).enumerate() {
        let base = y * size;
        for (x, px) in row.chunks_exact(3).enumerate() {
            let dx = if flip { size - 1 - x } else { x };
            r[base + dx] = px[0];
            g[base + dx] = px[1];
            b[base + dx] = px[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed_rng::{keyed_rng, Stream};

    #[test]
    fn crops_stay_inside_and_follow_torchvision_bounds() {
        let cfg = CropConfig::default();
        for i in 0..2000u64 {
            let (w, h) = (50 + (i % 400) as u32, 40 + (i * 7 % 500) as u32);
            let c = sample_crop(&mut keyed_rng(3, 0, i, Stream::ViewA), w, h, &cfg);
            assert!(
                c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h,
                "{c:?} in {w}x{h}"
            );
        }
    }

    #[test]
    fn fallback_is_a_centre_crop_with_clamped_ratio() {
        // A 1000x10 strip: no random try can fit, so the fallback takes the full height and w = round(10 * 4/3).
        let cfg = CropConfig {
            scale: (0.9, 1.0),
            ..CropConfig::default()
        };
        let c = sample_crop(&mut keyed_rng(0, 0, 0, Stream::ViewA), 1000, 10, &cfg);
        assert_eq!(
            c,
            CropBox {
                x: (1000 - 13) / 2,
                y: 0,
                w: 13,
                h: 10
            }
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
        maker.make_view(
            &img,
            &ViewParams {
                crop: full,
                flip: false,
            },
            8,
            &mut a,
        );
        maker.make_view(
            &img,
            &ViewParams {
                crop: full,
                flip: true,
            },
            8,
            &mut b,
        );
        assert_eq!(a[0], 200, "top-left is red");
        assert_eq!(a[2 * 64 + 7], 200, "top-right is blue");
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    assert_eq!(a[c * 64 + y * 8 + x], b[c * 64 + y * 8 + 7 - x]);
                }
            }
        }
    }
}
