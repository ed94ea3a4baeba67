//! Named recipes: the two views of a joint-embedding method, as its official code makes them.
//!
//! A recipe is an [`AugmentConfig`] (view A and view B, each with its crop, interpolation and
//! colour, blur and solarize probabilities and ranges). `loader --recipe NAME` picks one,
//! `--augment-config FILE.json` overrides any of its fields, and `loader recipe NAME` prints it
//! so a user starts from one. Each follows its repository's transform code as shipped (what
//! trained the published models):
//! - `barlow-twins` (facebookresearch/barlowtwins `main.py`, `Transform`): bicubic crops at scale
//!   (0.08, 1), jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2, Pillow's GaussianBlur with
//!   p 1.0 / 0.1 and solarize 0.0 / 0.2 on views A / B.
//! - `moco-v3` (facebookresearch/moco-v3 `main_moco.py`, `augmentation1` / `augmentation2`): the
//!   same operations and probabilities, but torchvision's default *bilinear* crop, and the
//!   crop's minimum scale from `--crop-min` (0.08 by default, the ViT setting; the README trains
//!   ResNet-50 with `--crop-min=.2`: override `scale` for that).
//!
//! Multi-crop recipes (DINO, SwAV, DINOv2: several views of several sizes) need a ring of more
//! than two views and are not here yet.

use serde_json::Value;

use crate::params::{AugmentConfig, ViewConfig};
use crate::resample::Interpolation;

/// A built-in recipe.
pub struct Recipe {
    pub name: &'static str,
    /// One line for `loader recipe`'s list.
    pub about: &'static str,
    pub augment: fn() -> AugmentConfig,
}

/// The recipe `loader` uses unless told otherwise.
pub const DEFAULT: &str = "barlow-twins";

/// Every built-in recipe, the default first.
pub const RECIPES: [Recipe; 2] = [
    Recipe {
        name: "barlow-twins",
        about: "Barlow Twins (facebookresearch/barlowtwins): two 224 views, bicubic crops",
        augment: AugmentConfig::default,
    },
    Recipe {
        name: "moco-v3",
        about: "MoCo v3 (facebookresearch/moco-v3): Barlow Twins' views with bilinear crops",
        augment: moco_v3,
    },
];

fn moco_v3() -> AugmentConfig {
    let bilinear = |view: ViewConfig| ViewConfig {
        interpolation: Interpolation::Bilinear,
        ..view
    };
    let bt = AugmentConfig::default();
    AugmentConfig {
        view_a: bilinear(bt.view_a),
        view_b: bilinear(bt.view_b),
    }
}

/// The built-in recipe `name`; the error lists the names there are.
pub fn recipe(name: &str) -> Result<AugmentConfig, String> {
    RECIPES
        .iter()
        .find(|r| r.name == name)
        .map(|r| (r.augment)())
        .ok_or_else(|| {
            let names: Vec<_> = RECIPES.iter().map(|r| r.name).collect();
            format!("no recipe {name:?}; the recipes are {}", names.join(", "))
        })
}

/// Recipe `name` with the fields of `overrides` (a JSON object of the same shape, e.g.
/// `{"view_b": {"solarize_p": 0.1}}`) put over its own; unknown fields and bad values are refused
/// with the field named.
pub fn with_overrides(name: &str, overrides: &str) -> Result<AugmentConfig, String> {
    let mut base = serde_json::to_value(recipe(name)?).map_err(|e| e.to_string())?;
    let top: Value = serde_json::from_str(overrides).map_err(|e| e.to_string())?;
    if !top.is_object() {
        return Err("expected a JSON object like {\"view_a\": {...}, \"view_b\": {...}}".into());
    }
    merge(&mut base, top);
    AugmentConfig::from_json(&base.to_string())
}

/// `--recipe NAME [--augment-config FILE]`: the recipe, with the file's fields over its own.
pub fn load(name: &str, overrides: Option<&std::path::Path>) -> anyhow::Result<AugmentConfig> {
    let Some(p) = overrides else {
        return recipe(name).map_err(anyhow::Error::msg);
    };
    let text =
        std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
    with_overrides(name, &text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// Puts `top`'s fields over `base`'s, recursively into objects.
fn merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(base), Value::Object(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, top) => *base = top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barlow_twins_is_the_papers_transform_and_transform_prime() {
        let bt = recipe("barlow-twins").unwrap();
        assert_eq!(bt, AugmentConfig::default());
        assert_eq!(RECIPES[0].name, DEFAULT);
        // facebookresearch/barlowtwins main.py: ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8,
        // RandomGrayscale 0.2, GaussianBlur p 1.0 / 0.1, Solarization p 0.0 / 0.2, BICUBIC.
        for v in [bt.view_a, bt.view_b] {
            assert_eq!(
                (v.scale, v.interpolation),
                ([0.08, 1.0], Interpolation::Bicubic)
            );
            assert_eq!((v.jitter_p, v.grayscale_p, v.flip_p), (0.8, 0.2, 0.5));
            assert_eq!(
                (v.brightness, v.contrast, v.saturation, v.hue),
                ([0.6, 1.4], [0.6, 1.4], [0.8, 1.2], [-0.1, 0.1])
            );
            assert_eq!(v.blur_sigma, [0.1, 2.0]);
        }
        assert_eq!((bt.view_a.blur_p, bt.view_a.solarize_p), (1.0, 0.0));
        assert_eq!((bt.view_b.blur_p, bt.view_b.solarize_p), (0.1, 0.2));
    }

    #[test]
    fn moco_v3_differs_from_barlow_twins_only_in_the_crops_filter() {
        let (bt, moco) = (recipe("barlow-twins").unwrap(), recipe("moco-v3").unwrap());
        assert_eq!(moco.view_a.interpolation, Interpolation::Bilinear);
        assert_eq!(moco.view_b.interpolation, Interpolation::Bilinear);
        let bicubic = |v: ViewConfig| ViewConfig {
            interpolation: Interpolation::Bicubic,
            ..v
        };
        assert_eq!(bicubic(moco.view_a), bt.view_a);
        assert_eq!(bicubic(moco.view_b), bt.view_b);
    }

    #[test]
    fn overrides_keep_the_recipes_other_fields_and_name_bad_ones() {
        let cfg = with_overrides("moco-v3", r#"{"view_a": {"scale": [0.2, 1.0]}}"#).unwrap();
        assert_eq!(cfg.view_a.scale, [0.2, 1.0]);
        assert_eq!(cfg.view_a.interpolation, Interpolation::Bilinear);
        assert_eq!(cfg.view_b, recipe("moco-v3").unwrap().view_b);
        let unknown = with_overrides("moco-v3", r#"{"view_a": {"scael": [0.2, 1.0]}}"#);
        assert!(unknown.unwrap_err().contains("scael"));
        let bad = with_overrides("barlow-twins", r#"{"view_b": {"solarize_p": 2}}"#);
        assert!(bad.unwrap_err().contains("view_b: solarize_p"));
        let filter = with_overrides(
            "barlow-twins",
            r#"{"view_a": {"interpolation": "nearest"}}"#,
        );
        assert!(filter.unwrap_err().contains("nearest"));
        assert!(recipe("dino")
            .unwrap_err()
            .contains("barlow-twins, moco-v3"));
        assert!(with_overrides("barlow-twins", "[1]").is_err());
    }
}
