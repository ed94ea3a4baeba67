//! Recipes: every view a joint-embedding method makes of one image, as its official code makes them.
//!
//! A [`Recipe`] is an ordered list of [`ViewSpec`]s (each: `count` views of `size x size`, drawn
//! from one [`ViewConfig`]: the crop's scale, ratio and filter, the probabilities and ranges of
//! flip, colour jitter, grayscale, blur and solarize) and the normalisation its consumer applies.
//! Consecutive views of one size form a *group* ([`Recipe::groups`]), stored contiguously in a
//! ring slot; views of one size must therefore be adjacent. `loader --recipe NAME` picks a
//! built-in one, `--recipe-config FILE.json` reads one (`loader recipe NAME --print` prints a
//! built-in one in that format, a start for your own), and `--augment-config FILE.json` puts
//! `{"view_a": {...}, "view_b": {...}}` over the first two views (the two-view format that came
//! first). Each built-in recipe follows its repository's transform code as shipped (what trained
//! the published models):
//! - `barlow-twins` (facebookresearch/barlowtwins `main.py`, `Transform`): two 224 views, bicubic
//!   crops at scale (0.08, 1), jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2, Pillow's
//!   GaussianBlur with p 1.0 / 0.1 and solarize 0.0 / 0.2 on views 0 / 1.
//! - `moco-v3` (facebookresearch/moco-v3 `main_moco.py`, `augmentation1` / `augmentation2`): the
//!   same operations and probabilities, but torchvision's default *bilinear* crop, and the
//!   crop's minimum scale from `--crop-min` (0.08 by default, the ViT setting; the README trains
//!   ResNet-50 with `--crop-min=.2`: override `scale` for that).
//! - `dino` (facebookresearch/dino `main_dino.py`, `DataAugmentationDINO`, with `main_dino.py`'s
//!   defaults): 2 global 224 views at scale (0.4, 1), the first blurred with p 1.0, the second with
//!   p 0.1 and solarized with p 0.2; `local_crops_number` = 8 local 96 views at scale (0.05, 0.4),
//!   blurred with p 0.5; every view bicubic, flipped with p 0.5, jittered (0.4, 0.4, 0.2, 0.1) with
//!   p 0.8, grayscale 0.2; Pillow's GaussianBlur with radius in (0.1, 2).
//! - `swav` (facebookresearch/swav `src/multicropdataset.py`, `MultiCropDataset`, with the crops
//!   of the paper's ImageNet scripts, `scripts/swav_800ep_pretrain.sh`: `--nmb_crops 2 6
//!   --size_crops 224 96 --min_scale_crops 0.14 0.05 --max_scale_crops 1. 0.14`): 2 global 224
//!   views at scale (0.14, 1) and 6 local 96 views at (0.05, 0.14), torchvision's default bilinear
//!   crop, flip 0.5, `get_color_distortion()`: jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale
//!   0.2; `RandomGaussianBlur`: OpenCV's `cv2.GaussianBlur` with a 23x23 kernel, p 0.5, sigma in
//!   (0.1, 2); no solarize; std (0.228, 0.224, 0.225).
//! - `dinov2` (facebookresearch/dinov2 `dinov2/data/augmentations.py`, `DataAugmentationDINO`,
//!   with `ssl_default_config.yaml`'s crops): 2 global 224 views at (0.32, 1) and 8 local 96 views
//!   at (0.05, 0.32), bicubic, flip 0.5, jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2;
//!   torchvision's `GaussianBlur(kernel_size=9, sigma=(0.1, 2))`, and the second global view
//!   solarized with p 0.2. The blur probabilities are the code's: its `GaussianBlur(p)` hands
//!   `1 - p` to `RandomApply`, so `p=1.0` / `0.1` / `0.5` blur with 0.0 / 0.9 / 0.5 (dinov2 PR #411,
//!   dinov3 issue #286: the released models were trained so).
//!
//! **Architecture invariant:** the bytes of view `i` of a sample depend on the sample's key and on
//! spec entry of view `i` only: adding local views never changes the global ones.

use serde_json::{Map, Value};

use crate::blur::BlurFilter;
use crate::imagenet;
use crate::params::{AugmentConfig, ViewConfig};
use crate::resample::Interpolation;

/// Most views one recipe may make of an image (the ring header's limit).
pub const MAX_VIEWS: usize = 64;
/// Most groups (runs of views of one size) one recipe may have.
pub const MAX_GROUPS: usize = 8;
/// Largest view side.
pub const MAX_SIZE: u32 = 8192;

/// `count` views of `size x size`, each drawn from `config` with its own keyed generator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewSpec {
    pub size: u32,
    pub count: u32,
    pub config: ViewConfig,
}

/// Every view a method makes of one image, in order, and the normalisation its consumer applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The built-in name, or what a recipe file calls itself (`"custom"` if it does not).
    pub name: String,
    pub views: Vec<ViewSpec>,
    /// Per-channel normalisation mean (0..1 scale), declared in the ring header.
    pub mean: [f32; 3],
    /// Per-channel normalisation std (0..1 scale).
    pub std: [f32; 3],
}

/// A run of consecutive views of one size: stored contiguously in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    pub views: u32,
    pub size: u32,
}

/// A built-in recipe.
pub struct Builtin {
    pub name: &'static str,
    /// One line for `loader recipe`'s list.
    pub about: &'static str,
    pub make: fn() -> Recipe,
}

/// The recipe `loader` uses unless told otherwise.
pub const DEFAULT: &str = "barlow-twins";

/// Every built-in recipe, the default first.
pub const RECIPES: [Builtin; 5] = [
    Builtin {
        name: "barlow-twins",
        about: "Barlow Twins (facebookresearch/barlowtwins): two 224 views, bicubic crops",
        make: barlow_twins,
    },
    Builtin {
        name: "moco-v3",
        about: "MoCo v3 (facebookresearch/moco-v3): Barlow Twins' views with bilinear crops",
        make: moco_v3,
    },
    Builtin {
        name: "dino",
        about:
            "DINO (facebookresearch/dino): 2 global 224 views + 8 local 96 views (--local-crops)",
        make: dino,
    },
    Builtin {
        name: "swav",
        about: "SwAV (facebookresearch/swav): 2 global 224 + 6 local 96 views, OpenCV's blur",
        make: swav,
    },
    Builtin {
        name: "dinov2",
        about:
            "DINOv2 (facebookresearch/dinov2): 2 global 224 + 8 local 96 views, torchvision's blur",
        make: dinov2,
    },
];

fn one(size: u32, config: ViewConfig) -> ViewSpec {
    ViewSpec {
        size,
        count: 1,
        config,
    }
}

fn imagenet_recipe(name: &str, views: Vec<ViewSpec>) -> Recipe {
    Recipe {
        name: name.into(),
        views,
        mean: imagenet::MEAN,
        std: imagenet::STD,
    }
}

fn barlow_twins() -> Recipe {
    Recipe::two_views("barlow-twins", AugmentConfig::default(), 224)
}

fn moco_v3() -> Recipe {
    let bilinear = |view: ViewConfig| ViewConfig {
        interpolation: Interpolation::Bilinear,
        ..view
    };
    let bt = AugmentConfig::default();
    let views = AugmentConfig {
        view_a: bilinear(bt.view_a),
        view_b: bilinear(bt.view_b),
    };
    Recipe::two_views("moco-v3", views, 224)
}

fn dino() -> Recipe {
    // flip_and_color_jitter is Barlow Twins' (flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8,
    // grayscale 0.2), and so is utils.GaussianBlur's radius range (0.1, 2.0).
    let global = ViewConfig {
        scale: [0.4, 1.0],
        ..ViewConfig::default()
    };
    let local = ViewConfig {
        scale: [0.05, 0.4],
        blur_p: 0.5,
        ..ViewConfig::default()
    };
    imagenet_recipe(
        "dino",
        vec![
            one(224, global),
            one(
                224,
                ViewConfig {
                    blur_p: 0.1,
                    solarize_p: 0.2,
                    ..global
                },
            ),
            ViewSpec {
                size: 96,
                count: 8,
                config: local,
            },
        ],
    )
}

fn swav() -> Recipe {
    // One color_transform for every crop: get_color_distortion(s=1.0), then RandomGaussianBlur.
    let global = ViewConfig {
        scale: [0.14, 1.0],
        interpolation: Interpolation::Bilinear,
        brightness: [0.2, 1.8],
        contrast: [0.2, 1.8],
        saturation: [0.2, 1.8],
        hue: [-0.2, 0.2],
        blur_p: 0.5,
        blur_filter: BlurFilter::Opencv { kernel: 23 },
        ..ViewConfig::default()
    };
    Recipe {
        name: "swav".into(),
        views: vec![
            ViewSpec {
                size: 224,
                count: 2,
                config: global,
            },
            ViewSpec {
                size: 96,
                count: 6,
                config: ViewConfig {
                    scale: [0.05, 0.14],
                    ..global
                },
            },
        ],
        mean: imagenet::MEAN,
        std: SWAV_STD,
    }
}

/// SwAV's normalisation std (`multicropdataset.py`): ImageNet's but 0.228 for red.
pub const SWAV_STD: [f32; 3] = [0.228, 0.224, 0.225];

fn dinov2() -> Recipe {
    // GaussianBlur(p=1.0), GaussianBlur(p=0.1) and GaussianBlur(p=0.5) blur with 1 - p.
    let blurred = |blur_p: f64, config: ViewConfig| ViewConfig {
        blur_p,
        blur_filter: BlurFilter::Torchvision { kernel: 9 },
        ..config
    };
    let global = ViewConfig {
        scale: [0.32, 1.0],
        ..ViewConfig::default()
    };
    let solarized = ViewConfig {
        solarize_p: 0.2,
        ..global
    };
    let local = ViewConfig {
        scale: [0.05, 0.32],
        ..global
    };
    imagenet_recipe(
        "dinov2",
        vec![
            one(224, blurred(0.0, global)),
            one(224, blurred(0.9, solarized)),
            ViewSpec {
                size: 96,
                count: 8,
                config: blurred(0.5, local),
            },
        ],
    )
}

/// The built-in recipe `name`; the error lists the names there are.
pub fn builtin(name: &str) -> Result<Recipe, String> {
    RECIPES
        .iter()
        .find(|r| r.name == name)
        .map(|r| (r.make)())
        .ok_or_else(|| {
            let names: Vec<_> = RECIPES.iter().map(|r| r.name).collect();
            format!("no recipe {name:?}; the recipes are {}", names.join(", "))
        })
}

impl Recipe {
    /// A two-view recipe of `size` views (the format before multi-view recipes), ImageNet's
    /// normalisation.
    pub fn two_views(name: &str, views: AugmentConfig, size: u32) -> Recipe {
        imagenet_recipe(name, vec![one(size, views.view_a), one(size, views.view_b)])
    }

    /// Views per image.
    pub fn view_count(&self) -> usize {
        self.views.iter().map(|s| s.count as usize).sum()
    }

    /// Every view in order, `count` entries expanded: `(size, config)`.
    pub fn expanded(&self) -> Vec<(u32, ViewConfig)> {
        self.views
            .iter()
            .flat_map(|s| std::iter::repeat_n((s.size, s.config), s.count as usize))
            .collect()
    }

    /// The runs of consecutive views of one size, in order.
    pub fn groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        for s in self.views.iter().filter(|s| s.count > 0) {
            match groups.last_mut() {
                Some(g) if g.size == s.size => g.views += s.count,
                _ => groups.push(Group {
                    views: s.count,
                    size: s.size,
                }),
            }
        }
        groups
    }

    /// Checks every field; the message names the field (`views[2].size: ...`).
    pub fn validate(&self) -> Result<(), String> {
        if self.name.len() > 31 || self.name.contains('\0') {
            return Err(format!(
                "name {:?} must be at most 31 bytes (the ring header keeps it)",
                self.name
            ));
        }
        if self.views.is_empty() {
            return Err("views: a recipe needs at least one view".into());
        }
        for (i, s) in self.views.iter().enumerate() {
            if s.size == 0 || s.size > MAX_SIZE {
                return Err(format!(
                    "views[{i}].size must be in 1..={MAX_SIZE}, not {}",
                    s.size
                ));
            }
            if s.count as usize > MAX_VIEWS {
                return Err(format!(
                    "views[{i}].count must be at most {MAX_VIEWS}, not {}",
                    s.count
                ));
            }
            s.config.validate().map_err(|e| format!("views[{i}].{e}"))?;
        }
        let n = self.view_count();
        if n == 0 || n > MAX_VIEWS {
            return Err(format!(
                "views: a recipe makes 1 to {MAX_VIEWS} views per image, this one {n}"
            ));
        }
        let groups = self.groups();
        for (g, group) in groups.iter().enumerate() {
            if groups[..g].iter().any(|earlier| earlier.size == group.size) {
                return Err(format!(
                    "views: the views of size {} must be adjacent (they are stored as one group); \
                     reorder the views so that each size comes in one run",
                    group.size
                ));
            }
        }
        if groups.len() > MAX_GROUPS {
            return Err(format!(
                "views: at most {MAX_GROUPS} different sizes, this recipe has {}",
                groups.len()
            ));
        }
        for (name, v) in [("mean", self.mean), ("std", self.std)] {
            if v.iter().any(|x| !x.is_finite()) || (name == "std" && v.iter().any(|x| *x <= 0.0)) {
                return Err(format!("{name} {v:?} must be finite (and std > 0)"));
            }
        }
        Ok(())
    }

    /// The recipe as JSON (`loader recipe NAME --print`; what [`Recipe::from_json`] reads).
    pub fn to_json(&self) -> Value {
        let views = self
            .views
            .iter()
            .map(|s| {
                let mut v = Map::new();
                v.insert("size".into(), s.size.into());
                v.insert("count".into(), s.count.into());
                if let Value::Object(fields) =
                    serde_json::to_value(s.config).expect("a ViewConfig serialises")
                {
                    v.extend(fields);
                }
                Value::Object(v)
            })
            .collect();
        // The shortest decimal that reads back as the same f32 (0.485, not 0.48500001430511475).
        let short = |v: [f32; 3]| -> Vec<Value> {
            v.iter()
                .map(|x| {
                    x.to_string()
                        .parse::<f64>()
                        .map_or(Value::Null, Value::from)
                })
                .collect()
        };
        serde_json::json!({
            "name": self.name,
            "views": Value::Array(views),
            "mean": short(self.mean),
            "std": short(self.std),
        })
    }

    /// Reads a recipe (the format [`Recipe::to_json`] writes). A view's missing fields take
    /// Barlow Twins' view-0 values and `count` 1; `mean` and `std` default to ImageNet's.
    /// Unknown fields and bad values are refused with the field named.
    pub fn from_json(text: &str) -> Result<Recipe, String> {
        let top: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(mut top) = top else {
            return Err(
                "a recipe is a JSON object like {\"views\": [{\"size\": 224, ...}]}".into(),
            );
        };
        let name = match top.remove("name") {
            None => "custom".to_string(),
            Some(Value::String(s)) => s,
            Some(other) => return Err(format!("name must be a string, not {other}")),
        };
        let norm = |top: &mut Map<String, Value>, key: &str, default: [f32; 3]| {
            top.remove(key).map_or(Ok(default), |v| {
                serde_json::from_value::<[f32; 3]>(v)
                    .map_err(|e| format!("{key} must be three numbers: {e}"))
            })
        };
        let mean = norm(&mut top, "mean", imagenet::MEAN)?;
        let std = norm(&mut top, "std", imagenet::STD)?;
        let Some(Value::Array(list)) = top.remove("views") else {
            return Err(
                "views: a recipe needs a list of views, like \"views\": [{\"size\": 224}]".into(),
            );
        };
        if let Some(key) = top.keys().next() {
            return Err(format!(
                "unknown field {key:?}; a recipe has name, views, mean, std"
            ));
        }
        if list.len() > MAX_VIEWS {
            return Err(format!(
                "views: a recipe makes 1 to {MAX_VIEWS} views per image, this one lists {}",
                list.len()
            ));
        }
        let mut views = Vec::with_capacity(list.len());
        for (i, v) in list.into_iter().enumerate() {
            let Value::Object(mut v) = v else {
                return Err(format!("views[{i}] must be an object"));
            };
            let mut int = |key: &str, default: Option<u32>| match v.remove(key) {
                None => default.ok_or_else(|| format!("views[{i}].{key} is missing")),
                Some(x) => x
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| format!("views[{i}].{key} must be a whole number, not {x}")),
            };
            let size = int("size", None)?;
            let count = int("count", Some(1))?;
            let config: ViewConfig =
                serde_json::from_value(Value::Object(v)).map_err(|e| format!("views[{i}]: {e}"))?;
            views.push(ViewSpec {
                size,
                count,
                config,
            });
        }
        let recipe = Recipe {
            name,
            views,
            mean,
            std,
        };
        recipe.validate()?;
        Ok(recipe)
    }

    /// Puts `{"view_a": {...}, "view_b": {...}}` (`--augment-config`) over views 0 and 1, which
    /// must be single views; unknown fields and bad values are refused with the field named.
    pub fn with_two_view_overrides(&self, overrides: &str) -> Result<Recipe, String> {
        let top: Value = serde_json::from_str(overrides).map_err(|e| e.to_string())?;
        let Value::Object(top) = top else {
            return Err(
                "expected a JSON object like {\"view_a\": {...}, \"view_b\": {...}}".into(),
            );
        };
        let mut recipe = self.clone();
        for (key, value) in top {
            let i = match key.as_str() {
                "view_a" => 0,
                "view_b" => 1,
                _ => {
                    return Err(format!(
                        "unknown field {key:?}; --augment-config has view_a and view_b (use --recipe-config for a whole recipe)"
                    ))
                }
            };
            let spec = match recipe.views.get_mut(i) {
                Some(spec) if spec.count == 1 => spec,
                _ => {
                    return Err(format!(
                        "{key}: the {} recipe has no single view {i}; use --recipe-config",
                        self.name
                    ))
                }
            };
            let mut base = serde_json::to_value(spec.config).map_err(|e| e.to_string())?;
            merge(&mut base, value);
            spec.config = serde_json::from_value(base).map_err(|e| format!("{key}: {e}"))?;
            spec.config.validate().map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(recipe)
    }

    /// Changes the sizes and the local views' count, as `--image-size`, `--local-size` and
    /// `--local-crops` ask: the *global* views are those of the first group, the *local* ones
    /// all others; `local_crops` sets the count of the last spec (0 removes it).
    pub fn resized(
        mut self,
        global_size: Option<u32>,
        local_size: Option<u32>,
        local_crops: Option<u32>,
    ) -> Result<Recipe, String> {
        let first_size = self.views.first().map(|s| s.size);
        let first_group_specs = self
            .views
            .iter()
            .take_while(|s| Some(s.size) == first_size)
            .count();
        let has_locals = first_group_specs < self.views.len();
        if !has_locals && (local_size.is_some() || local_crops.is_some()) {
            return Err(format!(
                "the {} recipe has no local views, so --local-size and --local-crops do not apply",
                self.name
            ));
        }
        if let Some(n) = local_crops {
            let last = self.views.len() - 1;
            if last < first_group_specs {
                unreachable!("has_locals");
            }
            if n == 0 {
                self.views.truncate(last);
            } else {
                self.views[last].count = n;
            }
        }
        for (i, spec) in self.views.iter_mut().enumerate() {
            match (i < first_group_specs, global_size, local_size) {
                (true, Some(size), _) | (false, _, Some(size)) => spec.size = size,
                _ => {}
            }
        }
        self.validate()?;
        Ok(self)
    }
}

/// `--recipe NAME` or `--recipe-config FILE`, then `--augment-config FILE`: the recipe a run makes.
pub fn load(
    name: &str,
    recipe_file: Option<&std::path::Path>,
    two_view_overrides: Option<&std::path::Path>,
) -> anyhow::Result<Recipe> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    let recipe = match recipe_file {
        Some(p) => {
            Recipe::from_json(&read(p)?).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => builtin(name).map_err(anyhow::Error::msg)?,
    };
    match two_view_overrides {
        None => Ok(recipe),
        Some(p) => recipe
            .with_two_view_overrides(&read(p)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
    }
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
        let bt = builtin("barlow-twins").unwrap();
        assert_eq!(RECIPES[0].name, DEFAULT);
        assert_eq!(
            bt.groups(),
            [Group {
                views: 2,
                size: 224
            }]
        );
        assert_eq!((bt.mean, bt.std), (imagenet::MEAN, imagenet::STD));
        // facebookresearch/barlowtwins main.py: ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8,
        // RandomGrayscale 0.2, GaussianBlur p 1.0 / 0.1, Solarization p 0.0 / 0.2, BICUBIC.
        let views = bt.expanded();
        for (size, v) in &views {
            assert_eq!(*size, 224);
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
        assert_eq!((views[0].1.blur_p, views[0].1.solarize_p), (1.0, 0.0));
        assert_eq!((views[1].1.blur_p, views[1].1.solarize_p), (0.1, 0.2));
    }

    #[test]
    fn moco_v3_differs_from_barlow_twins_only_in_the_crops_filter() {
        let (bt, moco) = (
            builtin("barlow-twins").unwrap(),
            builtin("moco-v3").unwrap(),
        );
        for ((_, b), (_, m)) in bt.expanded().into_iter().zip(moco.expanded()) {
            assert_eq!(m.interpolation, Interpolation::Bilinear);
            assert_eq!(
                ViewConfig {
                    interpolation: Interpolation::Bicubic,
                    ..m
                },
                b
            );
        }
    }

    /// facebookresearch/dino main_dino.py, DataAugmentationDINO with the argument defaults
    /// (global_crops_scale (0.4, 1.), local_crops_scale (0.05, 0.4), local_crops_number 8).
    #[test]
    fn dino_is_data_augmentation_dino_with_main_dinos_defaults() {
        let d = builtin("dino").unwrap();
        assert_eq!(
            d.groups(),
            [
                Group {
                    views: 2,
                    size: 224
                },
                Group { views: 8, size: 96 }
            ]
        );
        let views = d.expanded();
        let bt = ViewConfig::default();
        for (i, (_, v)) in views.iter().enumerate() {
            let (scale, blur_p, solarize_p) = match i {
                0 => ([0.4, 1.0], 1.0, 0.0),
                1 => ([0.4, 1.0], 0.1, 0.2),
                _ => ([0.05, 0.4], 0.5, 0.0),
            };
            assert_eq!(
                *v,
                ViewConfig {
                    scale,
                    blur_p,
                    solarize_p,
                    ..bt
                },
                "view {i}"
            );
        }
    }

    #[test]
    fn swav_is_multi_crop_dataset_with_the_papers_imagenet_crops() {
        let r = builtin("swav").unwrap();
        assert_eq!(
            r.groups(),
            [
                Group {
                    views: 2,
                    size: 224
                },
                Group { views: 6, size: 96 }
            ]
        );
        assert_eq!((r.mean, r.std), (imagenet::MEAN, [0.228, 0.224, 0.225]));
        for (i, (_, v)) in r.expanded().iter().enumerate() {
            let scale = if i < 2 { [0.14, 1.0] } else { [0.05, 0.14] };
            // get_color_distortion(s=1.0) is ColorJitter(0.8, 0.8, 0.8, 0.2) with p 0.8 and
            // grayscale 0.2; RandomGaussianBlur is `rand() > 0.5`, sigma 0.1 + 1.9 rand().
            assert_eq!(
                *v,
                ViewConfig {
                    scale,
                    ratio: [3.0 / 4.0, 4.0 / 3.0],
                    interpolation: Interpolation::Bilinear,
                    flip_p: 0.5,
                    jitter_p: 0.8,
                    brightness: [0.2, 1.8],
                    contrast: [0.2, 1.8],
                    saturation: [0.2, 1.8],
                    hue: [-0.2, 0.2],
                    grayscale_p: 0.2,
                    blur_p: 0.5,
                    blur_sigma: [0.1, 2.0],
                    blur_filter: BlurFilter::Opencv { kernel: 23 },
                    solarize_p: 0.0,
                },
                "view {i}"
            );
        }
    }

    #[test]
    fn dinov2_blurs_with_the_probabilities_its_code_gives() {
        let r = builtin("dinov2").unwrap();
        assert_eq!(
            r.groups(),
            [
                Group {
                    views: 2,
                    size: 224
                },
                Group { views: 8, size: 96 }
            ]
        );
        assert_eq!((r.mean, r.std), (imagenet::MEAN, imagenet::STD));
        let bt = ViewConfig::default();
        for (i, (_, v)) in r.expanded().iter().enumerate() {
            let (scale, blur_p, solarize_p) = match i {
                0 => ([0.32, 1.0], 0.0, 0.0),
                1 => ([0.32, 1.0], 0.9, 0.2),
                _ => ([0.05, 0.32], 0.5, 0.0),
            };
            assert_eq!(
                *v,
                ViewConfig {
                    scale,
                    blur_p,
                    blur_filter: BlurFilter::Torchvision { kernel: 9 },
                    solarize_p,
                    ..bt
                },
                "view {i}"
            );
        }
    }

    #[test]
    fn recipes_round_trip_through_json_and_bad_ones_name_the_field() {
        for r in &RECIPES {
            let recipe = (r.make)();
            recipe.validate().unwrap();
            let back = Recipe::from_json(&recipe.to_json().to_string()).unwrap();
            assert_eq!(back, recipe, "{}", r.name);
        }
        let bad = |text: &str, needle: &str| {
            let err = Recipe::from_json(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        };
        bad(r#"{"views": [{"size": 0}]}"#, "views[0].size");
        bad(r#"{"views": [{"size": 9000}]}"#, "views[0].size");
        bad(
            r#"{"views": [{"size": 64, "blur_p": 2}]}"#,
            "views[0].blur_p",
        );
        bad(
            r#"{"views": [{"size": 64, "blur_filter": {"library": "opencv", "kernel": 8}}]}"#,
            "views[0].blur_filter",
        );
        bad(
            r#"{"views": [{"size": 64, "blur_filter": {"library": "gimp"}}]}"#,
            "gimp",
        );
        bad(r#"{"views": [{"size": 64, "scael": [0.1, 1]}]}"#, "scael");
        bad(
            r#"{"views": [{"size": 64, "count": 1000}]}"#,
            "views[0].count",
        );
        bad(
            r#"{"views": [{"size": 64, "count": 40}, {"size": 32, "count": 40}]}"#,
            "80",
        );
        bad(
            r#"{"views": [{"size": 64}, {"size": 32}, {"size": 64}]}"#,
            "adjacent",
        );
        bad(r#"{"views": []}"#, "at least one");
        bad(r#"{"view": []}"#, "views");
        bad(r#"{"views": [{"size": 64}], "std": [0, 1, 1]}"#, "std");
        bad(r#"{"views": [{"size": 64}], "seed": 1}"#, "\"seed\"");
        let ok = Recipe::from_json(r#"{"views": [{"size": 64, "count": 3}]}"#).unwrap();
        assert_eq!((ok.name.as_str(), ok.view_count()), ("custom", 3));
        assert_eq!(ok.views[0].config, ViewConfig::default());
    }

    #[test]
    fn two_view_overrides_keep_the_recipes_other_fields_and_name_bad_ones() {
        let moco = builtin("moco-v3").unwrap();
        let cfg = moco
            .with_two_view_overrides(r#"{"view_a": {"scale": [0.2, 1.0]}}"#)
            .unwrap();
        assert_eq!(cfg.views[0].config.scale, [0.2, 1.0]);
        assert_eq!(cfg.views[0].config.interpolation, Interpolation::Bilinear);
        assert_eq!(cfg.views[1], moco.views[1]);
        let err = |o: &str| moco.with_two_view_overrides(o).unwrap_err();
        assert!(err(r#"{"view_a": {"scael": [0.2, 1.0]}}"#).contains("scael"));
        assert!(err(r#"{"view_b": {"solarize_p": 2}}"#).contains("view_b: solarize_p"));
        assert!(err(r#"{"view_a": {"interpolation": "nearest"}}"#).contains("nearest"));
        assert!(err(r#"{"view_c": {}}"#).contains("view_c"));
        assert!(err("[1]").contains("JSON object"));
        assert!(builtin("simclr")
            .unwrap_err()
            .contains("barlow-twins, moco-v3, dino, swav, dinov2"));
    }

    #[test]
    fn sizes_and_local_crops_change_only_what_they_name() {
        let d = builtin("dino").unwrap();
        let r = d.clone().resized(Some(64), Some(32), Some(3)).unwrap();
        assert_eq!(
            r.groups(),
            [Group { views: 2, size: 64 }, Group { views: 3, size: 32 }]
        );
        let none = d.clone().resized(None, None, Some(0)).unwrap();
        assert_eq!(
            none.groups(),
            [Group {
                views: 2,
                size: 224
            }]
        );
        let bt = builtin("barlow-twins").unwrap();
        assert!(bt
            .clone()
            .resized(None, None, Some(4))
            .unwrap_err()
            .contains("no local views"));
        assert_eq!(
            bt.clone().resized(Some(64), None, None).unwrap().groups()[0].size,
            64
        );
        // Globals resized to the locals' size join them in one group.
        let one = d.resized(Some(96), None, None).unwrap();
        assert_eq!(
            one.groups(),
            [Group {
                views: 10,
                size: 96
            }]
        );
    }
}
