//! The command-line options that choose a recipe, shared by a run, `bench`, `profile` and
//! `preview`: `--recipe NAME` or `--recipe-config FILE`, `--augment-config FILE` over its first
//! two views, and the sizes and local-crop count over its own.

use std::path::PathBuf;

use views::recipe::Recipe;

/// Which views to make of each image.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RecipeArgs {
    /// The method whose views to make: barlow-twins, moco-v3 or dino (`loader recipe` lists
    /// them, `loader recipe NAME --print` prints one as JSON).
    #[arg(long, default_value = views::recipe::DEFAULT, conflicts_with = "recipe_config")]
    pub recipe: String,
    /// Your own recipe, a JSON file in the format `loader recipe NAME --print` writes (every view's
    /// size, count, crop, filter and probabilities), instead of --recipe.
    #[arg(long, value_name = "FILE.json")]
    pub recipe_config: Option<PathBuf>,
    /// JSON file overriding the first two views' probabilities and ranges, e.g.
    /// {"view_b": {"solarize_p": 0.1}}; missing fields keep the recipe's values.
    #[arg(long, value_name = "FILE.json")]
    pub augment_config: Option<PathBuf>,
    /// Side of the global views (the recipe's first size), in pixels [default: the recipe's, 224].
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Side of the local views (every size after the first), in pixels [default: the recipe's,
    /// 96 for dino].
    #[arg(long)]
    pub local_size: Option<u32>,
    /// How many local views (the recipe's last entry) to make per image; 0 makes none [default:
    /// the recipe's, 8 for dino].
    #[arg(long)]
    pub local_crops: Option<u32>,
}

impl RecipeArgs {
    /// The recipe these options describe; errors name the file and field.
    pub fn load(&self) -> anyhow::Result<Recipe> {
        let recipe = views::recipe::load(
            &self.recipe,
            self.recipe_config.as_deref(),
            self.augment_config.as_deref(),
        )?;
        recipe
            .resized(self.image_size, self.local_size, self.local_crops)
            .map_err(anyhow::Error::msg)
    }
}
