//! `loader preview` (see what the model will see) and `loader augment` (replay one view).
//!
//! `preview` takes the first `--count` samples of epoch 0's order (what the loader feeds first),
//! draws both views' parameters exactly as a run with the same seed and `--augment-config` does,
//! and writes `NNN_a.png`, `NNN_b.png`, the parameters `NNN_a.json`, `NNN_b.json` (the format
//! `augment --params` reads), and `contact_sheet.png` (one row per pair). `augment` applies given
//! parameters to one image file and writes the view as PNG.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use decode::DEFAULT_MAX_PIXELS;

use crate::augment::{AugmentConfig, ViewParams};
use crate::keyed_rng::epoch_order;
use crate::pair::{chw_to_hwc, PairKey, PairMaker};
use crate::source::{FolderSource, SampleSource};

/// Options of `loader preview`.
#[derive(clap::Args, Debug)]
pub struct PreviewArgs {
    /// ImageNet-style folder [default: the built-in demo dataset].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Pairs to write (the first ones of epoch 0).
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed, as given to a run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epoch whose views to show.
    #[arg(long, default_value_t = 0)]
    pub epoch: u64,
    /// Side of the square views, in pixels.
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    /// JSON file overriding the paper's augmentation settings (see `--augment-config` of a run).
    #[arg(long)]
    pub augment_config: Option<PathBuf>,
}

/// Options of `loader augment`.
#[derive(clap::Args, Debug)]
pub struct AugmentArgs {
    /// Image file (JPEG or PNG, whatever its name).
    #[arg(long)]
    pub image: PathBuf,
    /// View parameters as JSON (the `NNN_a.json` that `preview` writes).
    #[arg(long)]
    pub params: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the square view, in pixels.
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
}

/// Writes interleaved RGB u8 as a PNG.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> anyhow::Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(())
}

/// `loader augment`.
pub fn augment(args: &AugmentArgs) -> anyhow::Result<i32> {
    let text = fs::read_to_string(&args.params)
        .with_context(|| format!("reading {}", args.params.display()))?;
    let params: ViewParams = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}: not valid view parameters: {e}", args.params.display())
    })?;
    if args.image_size == 0 {
        bail!("--image-size must be at least 1");
    }
    let bytes =
        fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let mut maker = PairMaker::default();
    maker
        .decode(&bytes, DEFAULT_MAX_PIXELS)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.image.display()))?;
    let image = maker.image();
    params
        .validate(image.width as u32, image.height as u32)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.params.display()))?;
    let mut chw = vec![0u8; 3 * (args.image_size as usize).pow(2)];
    maker.make_view(&params, args.image_size, &mut chw);
    let mut out = Vec::new();
    chw_to_hwc(&chw, &mut out);
    write_png(&args.out, args.image_size, args.image_size, &out)?;
    Ok(0)
}

/// `loader preview`.
pub fn preview(args: &PreviewArgs) -> anyhow::Result<i32> {
    let cfg = AugmentConfig::load(args.augment_config.as_deref())?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => datasets::demo::ensure_demo(&datasets::demo::default_demo_dir())?,
    };
    let source = FolderSource::open(&dir)?;
    if source.is_empty() {
        bail!("no images in {}", dir.display());
    }
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let s = args.image_size as usize;
    let order = epoch_order(args.seed, args.epoch, source.len());
    let count = args.count.min(source.len());
    let gap = 4usize;
    let (sheet_w, sheet_h) = (2 * s + 3 * gap, count * (s + gap) + gap);
    let mut sheet = vec![255u8; sheet_w * sheet_h * 3];
    let mut maker = PairMaker::default();
    let mut chw = [vec![0u8; 3 * s * s], vec![0u8; 3 * s * s]];
    let mut view = Vec::new();
    let mut written = 0usize;
    for &idx in order.iter() {
        if written == count {
            break;
        }
        let idx = idx as usize;
        if let Err(why) = maker.load(&source, idx, DEFAULT_MAX_PIXELS) {
            eprintln!("loader: skipping {}: {why}", source.name(idx));
            continue;
        }
        let key = PairKey {
            seed: args.seed,
            epoch: args.epoch,
            index: idx as u64,
        };
        let [a, b] = &mut chw;
        let params = maker.make_pair(key, &cfg, args.image_size, a, b);
        for (v, params) in params.iter().enumerate() {
            chw_to_hwc(&chw[v], &mut view);
            let stem = format!("{written:03}_{}", ["a", "b"][v]);
            write_png(
                &args.out.join(format!("{stem}.png")),
                args.image_size,
                args.image_size,
                &view,
            )?;
            let json = serde_json::to_string_pretty(params)?;
            fs::write(args.out.join(format!("{stem}.json")), json + "\n")?;
            let (x0, y0) = (gap + v * (s + gap), gap + written * (s + gap));
            for y in 0..s {
                let dst = ((y0 + y) * sheet_w + x0) * 3;
                sheet[dst..dst + 3 * s].copy_from_slice(&view[y * 3 * s..(y + 1) * 3 * s]);
            }
        }
        println!("{written:03}: {} (index {idx})", source.name(idx));
        written += 1;
    }
    let sheet_h = written * (s + gap) + gap;
    write_png(
        &args.out.join("contact_sheet.png"),
        sheet_w as u32,
        sheet_h as u32,
        &sheet[..sheet_w * sheet_h * 3],
    )?;
    eprintln!(
        "loader: wrote {written} pairs and contact_sheet.png to {}",
        args.out.display()
    );
    Ok(0)
}
