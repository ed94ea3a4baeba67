//! `loader`: feeds Barlow Twins training. Decodes images, makes two augmented views of each, and
//! writes paired batches into a shared-memory ring that `trainer --shm NAME` reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use loader::augment::CropConfig;
use loader::decode::DEFAULT_MAX_PIXELS;
use loader::pipeline::{Pipeline, PipelineConfig, RunReport};
use loader::source::{FolderSource, SampleSource};
use shared::{ring_path, Geometry, Producer, RingInfo};

/// Decode images and write two augmented views per image into a shared-memory ring for
/// `trainer --shm NAME`.
///
/// Without --dir, it uses barlow's built-in demo dataset (made once in ~/.cache/barlow/demo-v1).
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Example:\n  loader --dir /data/imagenet/train --shm bt0 --batch-size 256 &\n  trainer --shm bt0"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

/// Tools beside the default command (which feeds a ring). Each lives in its own module.
#[derive(clap::Subcommand, Debug)]
enum Command {}

/// Options of the default command: feed a ring.
#[derive(clap::Args, Debug)]
struct Args {
    /// ImageNet-style folder: DIR/<class>/<image>.JPEG (classes sorted by name get labels 0..K-1).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Ring name in /dev/shm (1-64 of [A-Za-z0-9._-]) or an absolute file path.
    #[arg(long, default_value = "barlow")]
    shm: String,
    /// Samples per batch (one ring slot holds one batch of view pairs).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Worker threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Passes over the dataset (each reshuffled).
    #[arg(long, default_value_t = 100, conflicts_with = "steps")]
    epochs: u64,
    /// Stop after this many batches instead of a number of epochs.
    #[arg(long)]
    steps: Option<u64>,
    /// Seed of every random choice (shuffle and augmentation parameters).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the square views, in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    /// Batches the ring holds.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Refuse images whose header declares more pixels than this (Pillow's limit by default).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// After the last batch, seconds to wait for the trainer to take what is left in the ring.
    #[arg(long, default_value_t = 600)]
    linger: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(command) => match command {},
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loader: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn install_stop_handler() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nloader: second interrupt, exiting now");
            std::process::exit(130);
        }
        eprintln!("\nloader: interrupted, finishing the current batch and removing the ring (Ctrl-C again to force)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

fn run(args: Args) -> anyhow::Result<i32> {
    let stop = install_stop_handler()?;
    let path = ring_path(&args.shm)?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = datasets::demo::default_demo_dir();
            eprintln!(
                "loader: no --dir given, using the built-in demo dataset in {}",
                dir.display()
            );
            datasets::demo::ensure_demo(&dir)?
        }
    };
    let source = FolderSource::open(&dir)?;
    for (path, why) in &source.folder.skipped {
        eprintln!("loader: skipping {}: {why}", path.display());
    }
    let cfg = PipelineConfig {
        batch_size: args.batch_size,
        image_size: args.image_size,
        seed: args.seed,
        workers: args.workers,
        crop: CropConfig::default(),
        max_pixels: args.max_pixels,
    };
    let pipeline = Pipeline::new(&source, cfg)?;
    let steps_per_epoch = pipeline.steps_per_epoch();
    let total_steps = args.steps.unwrap_or(args.epochs * steps_per_epoch);
    let info = RingInfo {
        geometry: Geometry {
            slots: args.slots,
            batch_size: args.batch_size as u32,
            channels: 3,
            height: args.image_size,
            width: args.image_size,
        },
        mean: RingInfo::IMAGENET_MEAN,
        std: RingInfo::IMAGENET_STD,
        dataset_len: source.len() as u64,
        steps_per_epoch,
        seed: args.seed,
        total_steps,
    };
    let mut producer = Producer::create(&path, &info)?;
    eprintln!(
        "loader: {} images in {} classes from {}; {} batches of {} ({} per epoch) into {} ({} slots, {:.1} MiB) with {} workers",
        source.len(),
        source.folder.classes.len(),
        dir.display(),
        total_steps,
        args.batch_size,
        steps_per_epoch,
        path.display(),
        args.slots,
        info.geometry.file_bytes() as f64 / (1 << 20) as f64,
        pipeline.workers(),
    );
    let bar = ProgressBar::new(total_steps).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} batches  {msg}",
        )
        .expect("valid template"),
    );
    let batch_size = args.batch_size as f64;
    let report = pipeline.run(&mut producer, total_steps, &stop, &mut |_step| {
        bar.inc(1);
        let secs = bar.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{:.0} pairs/s",
            bar.position() as f64 * batch_size / secs
        ));
    })?;
    bar.finish_and_clear();
    let interrupted = report.interrupted || stop.load(Ordering::Relaxed);
    if interrupted {
        producer.abort();
    } else {
        producer.finish();
        let left = producer.written() - producer.consumed();
        if left > 0 {
            eprintln!("loader: all batches written; waiting up to {}s for the trainer to take the last {left}", args.linger);
        }
        if !producer.wait_drained(&stop, Duration::from_secs(args.linger)) {
            eprintln!(
                "loader: {} batches were never taken by a trainer",
                producer.written() - producer.consumed()
            );
        }
    }
    print_summary(&report, &source, producer.consumed());
    drop(producer); // removes the ring file
    Ok(if interrupted { 130 } else { 0 })
}

fn print_summary(report: &RunReport, source: &dyn SampleSource, consumed: u64) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "loader: done: {} batches, {} pairs in {:.1}s = {:.1} pairs/s; {} batches taken by the trainer; {} of {} files skipped{}",
        report.batches,
        report.pairs,
        secs,
        report.pairs as f64 / secs,
        consumed,
        report.bad_files.len(),
        source.len(),
        if report.interrupted { " (interrupted)" } else { "" },
    );
    for bad in report.bad_files.iter().take(20) {
        eprintln!("loader:   skipped {}: {}", bad.name, bad.reason);
    }
    if report.bad_files.len() > 20 {
        eprintln!("loader:   ... and {} more", report.bad_files.len() - 20);
    }
}
