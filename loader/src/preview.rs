//! `loader preview` (see what the model will see) and `loader augment` (replay one view).
//!
//! `preview` is a run: the pipeline makes the first batch of `--epoch` with a batch size of
//! `--count` (the first samples of that epoch's order, what the loader feeds first, bad files
//! replaced as in a run) into a [`MemorySink`] whose callback writes the pairs out: the pixels are
//! the very bytes a ring slot would hold. It writes `NNN_a.png`, `NNN_b.png`, the parameters `NNN_a.json`, `NNN_b.json` (the format
//! `augment --params` reads), and `contact_sheet.png` (one row per pair). `augment` applies given
//! parameters to one image file and writes the view as PNG.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use decode::DEFAULT_MAX_PIXELS;

use datasets::opened::OpenedSource;
use datasets::source::SampleSource;
use views::pair::{chw_to_hwc, PairMaker};
use views::params::ViewParams;

use crate::pipeline::{Pipeline, PipelineConfig};
use crate::sampler::Shard;
use crate::sink::{Flow, MemoryBatch, MemorySink};

/// Options of `loader preview`.
#[derive(clap::Args, Debug)]
pub struct PreviewArgs {
    /// ImageNet-style folder [default: the built-in demo dataset].
    #[arg(long, conflicts_with = "wds")]
    pub dir: Option<PathBuf>,
    /// A packed dataset (`datasets pack`) instead of a folder.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "wds"])]
    pub pack: Option<PathBuf>,
    #[command(flatten)]
    pub wds: datasets::wds::WdsArgs,
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
    /// The method whose views to show (see `--recipe` of a run).
    #[arg(long, default_value = views::recipe::DEFAULT)]
    pub recipe: String,
    /// JSON file overriding the recipe's settings (see `--augment-config` of a run).
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
    if args.image_size == 0 {
        bail!("--image-size must be at least 1");
    }
    let opened = OpenedSource::open(
        "loader",
        args.dir.as_deref(),
        args.pack.as_deref(),
        Some(&args.wds),
    )?;
    let source = &*opened.source;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let count = args.count.clamp(1, source.len());
    let augment = views::recipe::load(&args.recipe, args.augment_config.as_deref())?;
    let cfg = PipelineConfig {
        batch_size: count,
        image_size: args.image_size,
        seed: args.seed,
        workers: 0,
        augment,
        max_pixels: DEFAULT_MAX_PIXELS,
        throttle: std::time::Duration::ZERO,
    };
    let pipeline = Pipeline::new(source, cfg)?;
    let step = args.epoch * pipeline.steps_per_epoch(Shard::default());
    let mut sheet = ContactSheet::new(args.image_size as usize, count);
    let mut failed = None;
    let mut sink = MemorySink::new(Shard::default(), count, args.image_size, |batch| {
        let written = write_pairs(args, source, batch, &mut sheet);
        Ok(match written {
            Ok(()) => Flow::Continue,
            Err(e) => {
                failed = Some(e);
                Flow::Stop
            }
        })
    });
    let stop = std::sync::atomic::AtomicBool::new(false);
    pipeline.run(&mut sink, step..step + 1, &stop)?;
    drop(sink);
    if let Some(e) = failed {
        return Err(e);
    }
    for bad in pipeline.bad_files() {
        eprintln!("loader: skipped {}: {}", bad.name, bad.reason);
    }
    sheet.write(&args.out.join("contact_sheet.png"))?;
    eprintln!(
        "loader: wrote {count} pairs and contact_sheet.png to {}",
        args.out.display()
    );
    Ok(0)
}

/// Writes a batch's pairs (`NNN_a.png`, `NNN_b.png`, their parameters as JSON) and draws them
/// into the contact sheet.
fn write_pairs(
    args: &PreviewArgs,
    source: &dyn SampleSource,
    batch: &MemoryBatch,
    sheet: &mut ContactSheet,
) -> anyhow::Result<()> {
    let sample = 3 * (args.image_size as usize).pow(2);
    let mut view = Vec::new();
    for (k, (&index, params)) in batch.indices.iter().zip(&batch.params).enumerate() {
        let idx = index as usize;
        for (v, pixels) in [&batch.view_a, &batch.view_b].into_iter().enumerate() {
            chw_to_hwc(&pixels[k * sample..(k + 1) * sample], &mut view);
            let stem = format!("{k:03}_{}", ["a", "b"][v]);
            write_png(
                &args.out.join(format!("{stem}.png")),
                args.image_size,
                args.image_size,
                &view,
            )?;
            let json = serde_json::to_string_pretty(&params[v])?;
            fs::write(args.out.join(format!("{stem}.json")), json + "\n")?;
            sheet.draw(k, v, &view);
        }
        println!("{k:03}: {} (index {idx})", source.name(idx));
    }
    Ok(())
}

/// One row per pair, view A left and view B right, on white.
struct ContactSheet {
    side: usize,
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl ContactSheet {
    const GAP: usize = 4;

    fn new(side: usize, rows: usize) -> ContactSheet {
        let (width, height) = (
            2 * side + 3 * Self::GAP,
            rows * (side + Self::GAP) + Self::GAP,
        );
        ContactSheet {
            side,
            width,
            height,
            rgb: vec![255u8; width * height * 3],
        }
    }

    /// Draws `view` (interleaved RGB) at row `row`, column `col`.
    fn draw(&mut self, row: usize, col: usize, view: &[u8]) {
        let s = self.side;
        let (x0, y0) = (
            Self::GAP + col * (s + Self::GAP),
            Self::GAP + row * (s + Self::GAP),
        );
        for y in 0..s {
            let dst = ((y0 + y) * self.width + x0) * 3;
            self.rgb[dst..dst + 3 * s].copy_from_slice(&view[y * 3 * s..(y + 1) * 3 * s]);
        }
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_png(path, self.width as u32, self.height as u32, &self.rgb)
    }
}
