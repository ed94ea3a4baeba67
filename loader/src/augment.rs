//! Making one view: the paper's pipeline (facebookresearch/barlowtwins `Transform`, torchvision on
//! PIL images) applied with given [`ViewParams`], written straight into a CHW u8 destination.
//!
//! Order, as torchvision composes it: crop + Pillow-bicubic resize ([`crate::resample`]), flip,
//! colour jitter in the drawn order ([`crate::color`]), grayscale, Pillow's GaussianBlur
//! ([`crate::blur`]), solarize. Every op but the flip is mirror-symmetric (per-pixel, a global
//! mean, or a symmetric box blur with replicated edges), so the flip and solarize are done by the
//! final HWC -> CHW write.

pub use crate::params::{
    sample_crop, sample_view, AugmentConfig, CropBox, JitterOp, JitterParams, ViewConfig,
    ViewParams,
};

use crate::blur::{gaussian_blur, BlurScratch};
use crate::color;
use crate::decode::RgbImage;
use crate::resample::Resampler;

/// Per-worker buffers for making views; create one per thread and reuse it for every image, so
/// the steady state allocates nothing.
#[derive(Default)]
pub struct ViewMaker {
    resampler: Resampler,
    blur: BlurScratch,
    hwc: Vec<u8>,
}

impl ViewMaker {
    /// Makes the `size x size` view of `image` described by `params` (which must fit the image;
    /// see [`ViewParams::validate`]) and writes it as CHW u8 into `out` (`3 * size * size` bytes).
    pub fn make_view(&mut self, image: &RgbImage, params: &ViewParams, size: u32, out: &mut [u8]) {
        let hwc = self.make_hwc(image, params, size);
        let lut = if params.solarize {
            color::solarize_lut(128)
        } else {
            IDENTITY
        };
        write_chw(hwc, size as usize, params.flip, &lut, out);
    }

    /// The view before flip and solarize, as interleaved RGB (HWC); borrowed from the scratch.
    fn make_hwc(&mut self, image: &RgbImage, params: &ViewParams, size: u32) -> &[u8] {
        let s = size as usize;
        let c = params.crop;
        self.hwc.resize(3 * s * s, 0);
        self.resampler.resize_crop(
            &image.pixels,
            image.width,
            (c.x as usize, c.y as usize, c.w as usize, c.h as usize),
            s,
            s,
            &mut self.hwc,
        );
        let px = &mut self.hwc[..];
        if let Some(j) = &params.jitter {
            for op in j.order {
                match op {
                    JitterOp::Brightness => color::brightness(px, j.brightness),
                    JitterOp::Contrast => color::contrast(px, j.contrast),
                    JitterOp::Saturation => color::saturation(px, j.saturation),
                    JitterOp::Hue => color::hue(px, j.hue),
                }
            }
        }
        if params.grayscale {
            color::grayscale(px);
        }
        if let Some(sigma) = params.blur_sigma {
            gaussian_blur(px, s, s, sigma, &mut self.blur);
        }
        &self.hwc
    }

    /// The view as interleaved RGB (HWC) u8, flip and solarize included (for PNG output).
    pub fn make_view_hwc(
        &mut self,
        image: &RgbImage,
        params: &ViewParams,
        size: u32,
        out: &mut Vec<u8>,
    ) {
        let s = size as usize;
        let hwc = self.make_hwc(image, params, size);
        out.clear();
        out.resize(3 * s * s, 0);
        let lut = if params.solarize {
            color::solarize_lut(128)
        } else {
            IDENTITY
        };
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

const IDENTITY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Interleaved RGB (HWC) -> planar CHW through `lut`, mirroring each row when `flip`.
fn write_chw(hwc: &[u8], size: usize, flip: bool, lut: &[u8; 256], out: &mut [u8]) {
    let plane = size * size;
    assert_eq!(
        out.len(),
        3 * plane,
        "destination must hold 3 x {size} x {size} bytes"
    );
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (y, row) in hwc.chunks_exact(3 * size).enumerate() {
        let base = y * size;
        for (x, px) in row.chunks_exact(3).enumerate() {
            let dx = base + if flip { size - 1 - x } else { x };
            r[dx] = lut[px[0] as usize];
            g[dx] = lut[px[1] as usize];
            b[dx] = lut[px[2] as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        maker.make_view_hwc(&img, &ViewParams::crop_only(full, true), 8, &mut hwc);
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
