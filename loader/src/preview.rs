//! `loader preview` (see what the model will see) and `loader augment` (replay one view).
//!
//! `preview` is a run: the pipeline makes the first batch of `--epoch` with a batch size of
//! `--count` (the first samples of that epoch's order, what the loader feeds first, bad files
//! replaced as in a run) into a [`MemorySink`] whose callback writes the views out: the pixels are
//! the very bytes a ring slot would hold. It writes each sample's views `NNN_a.png`, `NNN_b.png`,
//! ... (in the recipe's order, [`view_tag`]), their parameters `NNN_a.json`, ... (the format
//! `augment --params` reads, with the view's `size`), and `contact_sheet.png` (one row per sample).
//! `augment` applies given parameters to one image file and writes the view as PNG.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use decode::DEFAULT_MAX_PIXELS;

use datasets::opened::OpenedSource;
use datasets::source::SampleSource;
use views::params::ViewParams;
use views::sample::{chw_to_hwc, SampleMaker};

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
    /// Samples to write, every view of each (the first samples of the epoch).
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
    #[command(flatten)]
    pub recipe: crate::recipe_args::RecipeArgs,
    #[command(flatten)]
    pub decode: crate::decode_args::DecodeArgs,
}

/// Options of `loader augment`.
#[derive(clap::Args, Debug)]
pub struct AugmentArgs {
    /// Image file (JPEG or PNG, whatever its name).
    #[arg(long)]
    pub image: PathBuf,
    /// View parameters as JSON (an `NNN_<view>.json` that `preview` writes).
    #[arg(long)]
    pub params: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the square view, in pixels [default: the JSON's "size", else 224].
    #[arg(long)]
    pub image_size: Option<u32>,
    /// JPEG decoder (as given to the run whose view this replays).
    #[arg(long, default_value_t = decode::Decoder::default(), value_parser = |s: &str| s.parse::<decode::Decoder>())]
    pub decoder: decode::Decoder,
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
    let bad =
        |e: String| anyhow::anyhow!("{}: not valid view parameters: {e}", args.params.display());
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let size_in_json = json.as_object_mut().and_then(|o| o.remove("size"));
    let size_in_json = match size_in_json {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| bad(format!("size must be a whole number, not {v}")))?,
        ),
    };
    let params: ViewParams = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
    let size = args.image_size.or(size_in_json).unwrap_or(224);
    if size == 0 || size > views::recipe::MAX_SIZE {
        bail!(
            "the view size must be in 1..={}, not {size}",
            views::recipe::MAX_SIZE
        );
    }
    let bytes =
        fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let mut maker = SampleMaker::new(views::sample::DecodeOptions {
        decoder: args.decoder,
        region: false,
        dct_scale: false,
    });
    maker
        .decode(&bytes, DEFAULT_MAX_PIXELS)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.image.display()))?;
    let image = maker.image();
    params
        .validate(image.width as u32, image.height as u32)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.params.display()))?;
    let mut chw = vec![0u8; 3 * (size as usize).pow(2)];
    maker.make_view(&params, size, &mut chw);
    let mut out = Vec::new();
    chw_to_hwc(&chw, &mut out);
    write_png(&args.out, size, size, &out)?;
    Ok(0)
}

/// `loader preview`.
pub fn preview(args: &PreviewArgs) -> anyhow::Result<i32> {
    let recipe = args.recipe.load()?;
    let opened = OpenedSource::open(
        "loader",
        args.dir.as_deref(),
        args.pack.as_deref(),
        Some(&args.wds),
    )?;
    let source = &*opened.source;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let count = args.count.clamp(1, source.len());
    let sizes: Vec<u32> = recipe.expanded().iter().map(|(size, _)| *size).collect();
    let cfg = PipelineConfig {
        batch_size: count,
        seed: args.seed,
        workers: 0,
        recipe,
        max_pixels: DEFAULT_MAX_PIXELS,
        throttle: std::time::Duration::ZERO,
        decode: args.decode.options(),
    };
    let pipeline = Pipeline::new(source, cfg)?;
    let step = args.epoch * pipeline.steps_per_epoch(Shard::default());
    let mut sheet = ContactSheet::new(&sizes, count);
    let mut failed = None;
    let mut sink = MemorySink::new(Shard::default(), &pipeline.geometry(), |batch| {
        let written = write_views(&args.out, &sizes, source, batch, &mut sheet);
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
        "loader: wrote {count} samples of {} views and contact_sheet.png to {}",
        sizes.len(),
        args.out.display()
    );
    Ok(0)
}

/// The file-name tag of view `v`: `a`, `b`, ... `z`, then `v26`, `v27`, ...
pub fn view_tag(v: usize) -> String {
    match v {
        0..=25 => ((b'a' + v as u8) as char).to_string(),
        _ => format!("v{v}"),
    }
}

/// Writes every view of a batch's samples (`NNN_a.png`, `NNN_b.png`, ... and their parameters as
/// JSON, with the view's `size`) and draws them into the contact sheet.
fn write_views(
    out: &Path,
    sizes: &[u32],
    source: &dyn SampleSource,
    batch: &MemoryBatch,
    sheet: &mut ContactSheet,
) -> anyhow::Result<()> {
    let mut view = Vec::new();
    for (k, &index) in batch.indices.iter().enumerate() {
        let idx = index as usize;
        for (v, (params, &size)) in batch.sample_params(k).iter().zip(sizes).enumerate() {
            chw_to_hwc(batch.sample_view(k, v), &mut view);
            let stem = format!("{k:03}_{}", view_tag(v));
            write_png(&out.join(format!("{stem}.png")), size, size, &view)?;
            let mut json = serde_json::to_value(params)?;
            json["size"] = size.into();
            let json = serde_json::to_string_pretty(&json)?;
            fs::write(out.join(format!("{stem}.json")), json + "\n")?;
            sheet.draw(k, v, &view);
        }
        println!("{k:03}: {} (index {idx})", source.name(idx));
    }
    Ok(())
}

/// One row per sample, its views left to right (each at its size, top-aligned), on white.
struct ContactSheet {
    /// Each column's x and side.
    columns: Vec<(usize, usize)>,
    row_height: usize,
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl ContactSheet {
    const GAP: usize = 4;

    fn new(sizes: &[u32], rows: usize) -> ContactSheet {
        let mut columns = Vec::with_capacity(sizes.len());
        let mut x = Self::GAP;
        for &s in sizes {
            columns.push((x, s as usize));
            x += s as usize + Self::GAP;
        }
        let row_height = sizes.iter().copied().max().unwrap_or(1) as usize;
        let (width, height) = (x, rows * (row_height + Self::GAP) + Self::GAP);
        ContactSheet {
            columns,
            row_height,
            width,
            height,
            rgb: vec![255u8; width * height * 3],
        }
    }

    /// Draws `view` (interleaved RGB) at row `row`, column `col`.
    fn draw(&mut self, row: usize, col: usize, view: &[u8]) {
        let (x0, s) = self.columns[col];
        let y0 = Self::GAP + row * (self.row_height + Self::GAP);
        for y in 0..s {
            let dst = ((y0 + y) * self.width + x0) * 3;
            self.rgb[dst..dst + 3 * s].copy_from_slice(&view[y * 3 * s..(y + 1) * 3 * s]);
        }
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_png(path, self.width as u32, self.height as u32, &self.rgb)
    }
}
