//! What a view is made of: the configuration of the paper's two pipelines ([`AugmentConfig`],
//! defaults = facebookresearch/barlowtwins `Transform`), the parameters drawn for one view
//! ([`ViewParams`], the JSON format of `loader preview` / `loader augment`), and the sampler.
//!
//! The sampler draws, in this order, from the view's keyed generator: the crop (torchvision's
//! `RandomResizedCrop.get_params`), flip, whether to jitter, then the jitter's order (a random
//! permutation, as `ColorJitter.get_params`' `randperm(4)`) and its four factors (brightness,
//! contrast, saturation, hue), grayscale, whether to blur and its sigma, solarize. A probability
//! `p` is applied as `u < p` with `u` uniform in [0, 1), like `random.random() < p`.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::blur::BlurFilter;
use crate::resample::Interpolation;

/// A crop box in source-image pixels (torchvision's `i, j, h, w` as `y, x, h, w`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropBox {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// One of ColorJitter's four adjustments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterOp {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

impl JitterOp {
    pub const ALL: [JitterOp; 4] = [
        JitterOp::Brightness,
        JitterOp::Contrast,
        JitterOp::Saturation,
        JitterOp::Hue,
    ];
}

/// The colour jitter of one view: its order and factors (torchvision's meaning: brightness,
/// contrast and saturation are blend factors, hue a fraction of the hue circle in [-0.5, 0.5]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JitterParams {
    pub order: [JitterOp; 4],
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
}

/// Every random choice made for one view; the JSON that `loader preview` writes and
/// `loader augment --params` reads. The default (an empty crop) is a placeholder for buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewParams {
    pub crop: CropBox,
    /// The crop's resize filter (from the [`ViewConfig`], not drawn); in JSON only when not
    /// bicubic.
    #[serde(default, skip_serializing_if = "Interpolation::is_bicubic")]
    pub interpolation: Interpolation,
    pub flip: bool,
    pub jitter: Option<JitterParams>,
    pub grayscale: bool,
    pub blur_sigma: Option<f64>,
    /// Which library's blur (from the [`ViewConfig`], not drawn); in JSON only when not Pillow's.
    #[serde(default, skip_serializing_if = "BlurFilter::is_pillow")]
    pub blur_filter: BlurFilter,
    pub solarize: bool,
}

impl ViewParams {
    /// Just a crop (and flip): no colour op, no blur, no solarize.
    pub fn crop_only(crop: CropBox, flip: bool) -> ViewParams {
        ViewParams {
            crop,
            interpolation: Interpolation::Bicubic,
            flip,
            jitter: None,
            grayscale: false,
            blur_sigma: None,
            blur_filter: BlurFilter::Pillow,
            solarize: false,
        }
    }

    /// Checks the parameters against an image of `width x height`, with a message fit for a user.
    pub fn validate(&self, width: u32, height: u32) -> Result<(), String> {
        let c = self.crop;
        if c.w == 0 || c.h == 0 {
            return Err(format!("crop box {c:?} is empty"));
        }
        if c.x as u64 + c.w as u64 > width as u64 || c.y as u64 + c.h as u64 > height as u64 {
            return Err(format!(
                "crop box x={} y={} w={} h={} does not fit in the {width}x{height} image",
                c.x, c.y, c.w, c.h
            ));
        }
        if let Some(j) = &self.jitter {
            for op in JitterOp::ALL {
                if !j.order.contains(&op) {
                    return Err(format!(
                        "jitter order {:?} must name each of brightness, contrast, saturation, hue once",
                        j.order
                    ));
                }
            }
            for (name, v) in [
                ("brightness", j.brightness),
                ("contrast", j.contrast),
                ("saturation", j.saturation),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!(
                        "jitter {name} factor must be a number >= 0, not {v}"
                    ));
                }
            }
            if !(-0.5..=0.5).contains(&j.hue) {
                return Err(format!("jitter hue must be in [-0.5, 0.5], not {}", j.hue));
            }
        }
        if let Some(s) = self.blur_sigma {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("blur_sigma must be a number > 0, not {s}"));
            }
        }
        self.blur_filter.validate()
    }
}

/// How one view is drawn. Defaults: the paper's `transform` (view A).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewConfig {
    /// Range of the crop's area as a fraction of the image.
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio w/h, sampled log-uniformly.
    pub ratio: [f64; 2],
    /// The crop's resize filter (`"bicubic"`, the paper's, or `"bilinear"`, torchvision's
    /// `RandomResizedCrop` default); in JSON only when not bicubic.
    #[serde(skip_serializing_if = "Interpolation::is_bicubic")]
    pub interpolation: Interpolation,
    pub flip_p: f64,
    /// Probability of the whole colour jitter.
    pub jitter_p: f64,
    pub brightness: [f64; 2],
    pub contrast: [f64; 2],
    pub saturation: [f64; 2],
    pub hue: [f64; 2],
    pub grayscale_p: f64,
    pub blur_p: f64,
    pub blur_sigma: [f64; 2],
    /// Which library's Gaussian blur ([`BlurFilter`]); in JSON only when not Pillow's.
    #[serde(skip_serializing_if = "BlurFilter::is_pillow")]
    pub blur_filter: BlurFilter,
    pub solarize_p: f64,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            interpolation: Interpolation::Bicubic,
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: [0.6, 1.4],
            contrast: [0.6, 1.4],
            saturation: [0.8, 1.2],
            hue: [-0.1, 0.1],
            grayscale_p: 0.2,
            blur_p: 1.0,
            blur_sigma: [0.1, 2.0],
            blur_filter: BlurFilter::Pillow,
            solarize_p: 0.0,
        }
    }
}

impl ViewConfig {
    /// The paper's `transform_prime` (view B): blur p = 0.1, solarize p = 0.2.
    pub fn paper_b() -> ViewConfig {
        ViewConfig {
            blur_p: 0.1,
            solarize_p: 0.2,
            ..ViewConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let probs = [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
            ("blur_p", self.blur_p),
            ("solarize_p", self.solarize_p),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1], not {p}"));
            }
        }
        let ranges = [
            ("scale", self.scale, 0.0),
            ("ratio", self.ratio, 0.0),
            ("brightness", self.brightness, 0.0),
            ("contrast", self.contrast, 0.0),
            ("saturation", self.saturation, 0.0),
            ("hue", self.hue, -0.5),
            ("blur_sigma", self.blur_sigma, 0.0),
        ];
        for (name, [lo, hi], min) in ranges {
            if !(lo.is_finite() && hi.is_finite() && min <= lo && lo <= hi) {
                return Err(format!(
                    "{name} must be a range [lo, hi] with {min} <= lo <= hi, not [{lo}, {hi}]"
                ));
            }
        }
        if self.scale[0] <= 0.0
            || self.ratio[0] <= 0.0
            || self.blur_sigma[0] <= 0.0
            || self.hue[1] > 0.5
        {
            return Err(
                "scale, ratio and blur_sigma must be > 0 and hue within [-0.5, 0.5]".into(),
            );
        }
        self.blur_filter.validate()
    }
}

/// The two views' configurations: a recipe ([`crate::recipe`]), with `--augment-config
/// FILE.json` put over it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub view_a: ViewConfig,
    pub view_b: ViewConfig,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            view_a: ViewConfig::default(),
            view_b: ViewConfig::paper_b(),
        }
    }
}

impl AugmentConfig {
    /// Reads a JSON configuration; a clear error for bad JSON or values.
    pub fn from_json(text: &str) -> Result<AugmentConfig, String> {
        let cfg: AugmentConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        cfg.view_a.validate().map_err(|e| format!("view_a: {e}"))?;
        cfg.view_b.validate().map_err(|e| format!("view_b: {e}"))?;
        Ok(cfg)
    }
}

/// Python's `round` (half to even), as torchvision uses it.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// Uniform in [lo, hi) (lo when the range is empty).
fn uniform<R: Rng>(rng: &mut R, [lo, hi]: [f64; 2]) -> f64 {
    lo + (hi - lo) * rng.gen::<f64>()
}

/// torchvision `RandomResizedCrop.get_params`: up to 10 tries, then the centre-crop fallback.
pub fn sample_crop<R: Rng>(
    rng: &mut R,
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
) -> CropBox {
    let (wf, hf) = (width as f64, height as f64);
    let area = wf * hf;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale);
        let aspect = uniform(rng, log_ratio).exp();
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
    let (w, h) = if in_ratio < ratio[0] {
        (width as i64, py_round(wf / ratio[0]))
    } else if in_ratio > ratio[1] {
        (py_round(hf * ratio[1]), height as i64)
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

/// Draws a whole view's parameters for an image of `width x height`.
pub fn sample_view<R: Rng>(rng: &mut R, width: u32, height: u32, cfg: &ViewConfig) -> ViewParams {
    let crop = sample_crop(rng, width, height, cfg.scale, cfg.ratio);
    let flip = rng.gen::<f64>() < cfg.flip_p;
    let jitter = if rng.gen::<f64>() < cfg.jitter_p {
        let mut order = JitterOp::ALL;
        order.shuffle(rng);
        Some(JitterParams {
            order,
            brightness: uniform(rng, cfg.brightness),
            contrast: uniform(rng, cfg.contrast),
            saturation: uniform(rng, cfg.saturation),
            hue: uniform(rng, cfg.hue),
        })
    } else {
        None
    };
    let grayscale = rng.gen::<f64>() < cfg.grayscale_p;
    let blur_sigma = if rng.gen::<f64>() < cfg.blur_p {
        Some(uniform(rng, cfg.blur_sigma))
    } else {
        None
    };
    let solarize = rng.gen::<f64>() < cfg.solarize_p;
    ViewParams {
        crop,
        interpolation: cfg.interpolation,
        flip,
        jitter,
        grayscale,
        blur_sigma,
        blur_filter: cfg.blur_filter,
        solarize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed_rng::{keyed_rng, Stream};

    #[test]
    fn crops_stay_inside_the_image() {
        let cfg = ViewConfig::default();
        for i in 0..2000u64 {
            let (w, h) = (50 + (i % 400) as u32, 40 + (i * 7 % 500) as u32);
            let c = sample_crop(
                &mut keyed_rng(3, 0, i, Stream::View(0)),
                w,
                h,
                cfg.scale,
                cfg.ratio,
            );
            assert!(
                c.w >= 1 && c.h >= 1 && c.x + c.w <= w && c.y + c.h <= h,
                "{c:?} in {w}x{h}"
            );
        }
    }

    #[test]
    fn fallback_is_a_centre_crop_with_clamped_ratio() {
        // A 1000x10 strip: no random try can fit, so the fallback takes the full height and
        // w = round(10 * 4/3).
        let c = sample_crop(
            &mut keyed_rng(0, 0, 0, Stream::View(0)),
            1000,
            10,
            [0.9, 1.0],
            [0.75, 4.0 / 3.0],
        );
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
    fn params_json_round_trips_and_names_match_the_issue() {
        let p = sample_view(
            &mut keyed_rng(1, 0, 5, Stream::View(0)),
            300,
            200,
            &ViewConfig {
                jitter_p: 1.0,
                ..ViewConfig::default()
            },
        );
        let text = serde_json::to_string(&p).unwrap();
        for key in [
            "\"crop\"",
            "\"flip\"",
            "\"jitter\"",
            "\"order\"",
            "\"grayscale\"",
            "\"blur_sigma\"",
            "\"solarize\"",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
        assert_eq!(serde_json::from_str::<ViewParams>(&text).unwrap(), p);
    }

    /// Bicubic is left out of the JSON (so every existing JSON stays as it was); a config's
    /// bilinear reaches the params without changing any draw.
    #[test]
    fn interpolation_comes_from_the_config_and_is_in_json_only_when_bilinear() {
        let cfg = ViewConfig::default();
        let bilinear_cfg: ViewConfig =
            serde_json::from_str(r#"{"interpolation": "bilinear"}"#).unwrap();
        assert_eq!(bilinear_cfg.interpolation, Interpolation::Bilinear);
        assert!(!serde_json::to_string(&cfg)
            .unwrap()
            .contains("interpolation"));
        for i in 0..50u64 {
            let draw =
                |c: &ViewConfig| sample_view(&mut keyed_rng(7, 1, i, Stream::View(1)), 300, 200, c);
            let (bicubic, bilinear) = (draw(&cfg), draw(&bilinear_cfg));
            assert_eq!(bicubic.interpolation, Interpolation::Bicubic);
            assert_eq!(
                bilinear,
                ViewParams {
                    interpolation: Interpolation::Bilinear,
                    ..bicubic
                }
            );
            let text = serde_json::to_string(&bicubic).unwrap();
            assert!(!text.contains("interpolation"), "{text}");
            let text = serde_json::to_string(&bilinear).unwrap();
            assert!(text.contains(r#""interpolation":"bilinear""#), "{text}");
            // (serde_json's float parsing may move a factor by an ulp: compare the filter only.)
            let back: ViewParams = serde_json::from_str(&text).unwrap();
            assert_eq!(back.interpolation, Interpolation::Bilinear);
        }
    }

    #[test]
    fn bad_params_are_refused_with_a_reason() {
        let p = ViewParams::crop_only(
            CropBox {
                x: 10,
                y: 0,
                w: 100,
                h: 50,
            },
            false,
        );
        assert!(p.validate(100, 50).unwrap_err().contains("does not fit"));
        assert!(p.validate(110, 50).is_ok());
        let bad = r#"{"crop": {"x": 0, "y": 0, "w": 1, "h": 1}, "flip": false, "jitter": {"order": ["hue","hue","contrast","brightness"], "brightness": 1, "contrast": 1, "saturation": 1, "hue": 0}, "grayscale": false, "blur_sigma": null, "solarize": false}"#;
        let p: ViewParams = serde_json::from_str(bad).unwrap();
        assert!(p.validate(5, 5).unwrap_err().contains("each of"));
        assert!(AugmentConfig::from_json(r#"{"view_b": {"blur_p": 2}}"#)
            .unwrap_err()
            .contains("blur_p"));
        assert_eq!(
            AugmentConfig::from_json("{}").unwrap(),
            AugmentConfig::default()
        );
    }
}
