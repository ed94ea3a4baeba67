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

use crate::augment::{sample_view, AugmentConfig, ViewMaker, ViewParams};
use crate::decode::{decode_rgb, RgbImage, DEFAULT_MAX_PIXELS};
use crate::keyed_rng::{epoch_order, keyed_rng, Stream};
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

/// Reads an augmentation config file (JSON; missing fields take the paper's values).
pub fn load_augment_config(path: Option<&Path>) -> anyhow::Result<AugmentConfig> {
    match path {
        None => Ok(AugmentConfig::default()),
        Some(p) => {
            let text = fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            AugmentConfig::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
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

fn decode_file(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut image = RgbImage::default();
    decode_rgb(&bytes, DEFAULT_MAX_PIXELS, &mut image)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(image)
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
    let image = decode_file(&args.image)?;
    params
        .validate(image.width as u32, image.height as u32)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.params.display()))?;
    let mut out = Vec::new();
    ViewMaker::default().make_view_hwc(&image, &params, args.image_size, &mut out);
    write_png(&args.out, args.image_size, args.image_size, &out)?;
    Ok(0)
}

/// `loader preview`.
pub fn preview(args: &PreviewArgs) -> anyhow::Result<i32> {
    let cfg = load_augment_config(args.augment_config.as_deref())?;
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
    let (mut bytes, mut image, mut maker, mut view) = (
        Vec::new(),
        RgbImage::default(),
        ViewMaker::default(),
        Vec::new(),
    );
    let mut written = 0usize;
    for &idx in order.iter() {
        if written == count {
            break;
        }
        let idx = idx as usize;
        source
            .read(idx, &mut bytes)
            .with_context(|| source.name(idx))?;
        if let Err(e) = decode_rgb(&bytes, DEFAULT_MAX_PIXELS, &mut image) {
            eprintln!("loader: skipping {}: {e}", source.name(idx));
            continue;
        }
        let (w, h) = (image.width as u32, image.height as u32);
        for (v, (stream, vcfg)) in [(Stream::ViewA, &cfg.view_a), (Stream::ViewB, &cfg.view_b)]
            .into_iter()
            .enumerate()
        {
            let params = sample_view(
                &mut keyed_rng(args.seed, args.epoch, idx as u64, stream),
                w,
                h,
                vcfg,
            );
            maker.make_view_hwc(&image, &params, args.image_size, &mut view);
            let stem = format!("{written:03}_{}", ["a", "b"][v]);
            write_png(
                &args.out.join(format!("{stem}.png")),
                args.image_size,
                args.image_size,
                &view,
            )?;
            let json = serde_json::to_string_pretty(&params)?;
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
