//! `loader`: feeds Barlow Twins training. Decodes images, makes two augmented views of each, and
//! writes paired batches into a shared-memory ring that `trainer --shm NAME` reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use decode::DEFAULT_MAX_PIXELS;
use indicatif::{ProgressBar, ProgressStyle};
use loader::measure::{measure, MeasureConfig};
use loader::pipeline::{Pipeline, PipelineConfig, RingFeed, RunReport};
use loader::restart;
use loader::sampler::Shard;
use loader::source::{FolderSource, SampleSource};
use loader::watch;
use shared::{ring_path, Geometry, RingInfo};

/// Decode images and write two augmented views per image into a shared-memory ring for
/// `trainer --shm NAME`.
///
/// Without --dir, it uses barlow's built-in demo dataset (made once in ~/.cache/barlow/demo-v3).
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Example:\n  loader --dir /data/imagenet/train --shm bt0 --batch-size 256 &\n  trainer --shm bt0\n\n\
Restarting under a running trainer: if the loader dies (or is stopped) while `trainer \
--loader-restart-wait SECONDS` waits on its ring, start the loader again with the same command: \
it takes the ring over and continues at the trainer's position with the very batches an \
uninterrupted run would have made (it refuses if the geometry, seed, shard or augmentation differ)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

/// Tools beside the default command (which feeds a ring). Each lives in its own module.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write the first pairs' views as PNGs, their parameters as JSON and a contact sheet.
    Preview(loader::preview::PreviewArgs),
    /// Apply given view parameters (JSON, as preview writes) to one image and write the PNG.
    Augment(loader::preview::AugmentArgs),
    /// Measure the full pipeline (every augmentation on) into a drained ring: pairs/s, pairs per
    /// CPU-second, time per stage, peak RSS.
    Bench(MeasureArgs),
    /// Like bench, plus how many cores a target rate needs, and an optional HTML report.
    Profile(ProfileArgs),
    /// Watch a live ring (read-only): loader and trainer rates, occupancy, and who holds training back.
    Stat(StatArgs),
}

/// Options of `loader bench` (and `loader profile`).
#[derive(clap::Args, Debug)]
struct MeasureArgs {
    /// ImageNet-style folder [default: the built-in demo dataset].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A packed dataset (`datasets pack`) instead of a folder.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    pack: Option<PathBuf>,
    /// Worker threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Batches made before measuring.
    #[arg(long, default_value_t = 4)]
    warmup: u64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Augmentation settings as JSON (see `loader --help`) [default: the paper's].
    #[arg(long)]
    augment_config: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `loader profile`.
#[derive(clap::Args, Debug)]
struct ProfileArgs {
    #[command(flatten)]
    measure: MeasureArgs,
    /// Pairs per second the trainer needs: prints how many cores that takes.
    #[arg(long)]
    target: Option<f64>,
    /// Write a self-contained HTML report with plots to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Options of `loader stat`.
#[derive(clap::Args, Debug)]
struct StatArgs {
    /// The ring to watch (name in /dev/shm or absolute path).
    #[arg(long, default_value = "barlow")]
    shm: String,
    /// Seconds between lines.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Stop after this many lines [default: until the ring ends].
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ownership: OwnershipArgs,
}

/// The ring ownership rule's one exception (see `shared::ownership`).
#[derive(clap::Args, Debug)]
struct OwnershipArgs {
    /// Accept a ring file owned by another user (e.g. root using a ring a service account's
    /// loader or trainer made). Without it every user, root included, refuses a ring that is not
    /// their own; a ring writable by group or others is refused regardless.
    #[arg(long)]
    allow_foreign_ring: bool,
}

impl OwnershipArgs {
    /// Applies the choice to every ring this process opens.
    fn apply(&self) {
        shared::ownership::allow_other_owner(self.allow_foreign_ring);
    }
}

/// Options of the default command: feed a ring.
#[derive(clap::Args, Debug)]
struct Args {
    /// ImageNet-style folder: DIR/<class>/<image>.JPEG (classes sorted by name get labels 0..K-1).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A packed dataset made by `datasets pack --dir DIR --out FILE` (same samples, order and
    /// labels as DIR; read through a memory map, no file opened per image).
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    pack: Option<PathBuf>,
    /// Ring name in /dev/shm (1-64 of [A-Za-z0-9._-]) or an absolute file path. A comma-separated
    /// list feeds one ring per local trainer (ring i gets rank --rank + i of --world-size).
    #[arg(long, default_value = "barlow", value_delimiter = ',')]
    shm: Vec<String>,
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
    /// Start at this epoch (resume): with --start-step S, the first batch is global step
    /// E * steps_per_epoch + S, exactly the batch an uninterrupted run makes there.
    #[arg(long, default_value_t = 0)]
    start_epoch: u64,
    /// Steps to skip (resume; see --start-epoch). --steps counts global steps, so a resumed run
    /// with the same --steps ends where the uninterrupted run ends.
    #[arg(long, default_value_t = 0)]
    start_step: u64,
    /// Data-parallel rank of this loader's (first) ring [default: $RANK or $SLURM_PROCID, else 0].
    #[arg(long)]
    rank: Option<usize>,
    /// Data-parallel world size [default: $WORLD_SIZE or $SLURM_NTASKS, else the number of rings].
    #[arg(long)]
    world_size: Option<usize>,
    /// Sleep this many milliseconds per batch (plays a slow loader, for profiling and tests).
    #[arg(long, default_value_t = 0)]
    throttle_ms: u64,
    /// Write the files that could not be used, one `path<TAB>reason` per line, to FILE.
    #[arg(long)]
    bad_files: Option<PathBuf>,
    /// At the end, print the summary as one JSON object on stdout (fields: batches, pairs,
    /// seconds, pairs_per_s, batches_consumed, skipped_files, bad_files [{file, reason}],
    /// interrupted, producer_wait, consumer_wait, verdict).
    #[arg(long)]
    json: bool,
    /// JSON file overriding the augmentation's probabilities and ranges, per view, e.g.
    /// {"view_b": {"solarize_p": 0.1}}; missing fields keep the paper's values.
    #[arg(long, value_name = "FILE.json")]
    augment_config: Option<PathBuf>,
    #[command(flatten)]
    ownership: OwnershipArgs,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Preview(args)) => loader::preview::preview(&args),
        Some(Command::Augment(args)) => loader::preview::augment(&args),
        Some(Command::Bench(args)) => measure_command(&args, None, None),
        Some(Command::Profile(args)) => {
            measure_command(&args.measure, args.target, args.report.as_deref())
        }
        Some(Command::Stat(args)) => stat_command(&args),
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
        eprintln!("\nloader: interrupted, finishing the current batch and removing the ring, unless its trainer waits for a new loader (Ctrl-C again to force)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// The shard of each ring: ring i gets rank `rank + i`.
fn ring_shards(args: &Args) -> anyhow::Result<Vec<Shard>> {
    let from_env = Shard::from_env(|k| std::env::var(k).ok())?;
    let rings = args.shm.len();
    let rank = args.rank.or(from_env.map(|s| s.rank)).unwrap_or(0);
    let world_size = args
        .world_size
        .or(from_env.map(|s| s.world_size))
        .unwrap_or(rings);
    (0..rings)
        .map(|i| Shard::new(rank + i, world_size))
        .collect()
}

fn run(args: Args) -> anyhow::Result<i32> {
    args.ownership.apply();
    let stop = install_stop_handler()?;
    let paths = args
        .shm
        .iter()
        .map(|name| ring_path(name))
        .collect::<Result<Vec<_>, _>>()?;
    let shards = ring_shards(&args)?;
    let (source, dir, classes) = open_source(args.dir.as_deref(), args.pack.as_deref())?;
    let source = &*source;
    let cfg = PipelineConfig {
        batch_size: args.batch_size,
        image_size: args.image_size,
        seed: args.seed,
        workers: args.workers,
        augment: loader::augment::AugmentConfig::load(args.augment_config.as_deref())?,
        max_pixels: args.max_pixels,
        throttle: Duration::from_millis(args.throttle_ms),
    };
    let pipeline = Pipeline::new(source, cfg)?;
    let steps_per_epoch = pipeline.steps_per_epoch(shards[0]);
    if steps_per_epoch == 0 {
        anyhow::bail!(
            "each of the {} ranks gets {} images per epoch, fewer than one batch of {}; lower --batch-size",
            shards[0].world_size,
            shards[0].len(source.len()),
            args.batch_size
        );
    }
    let total_steps = args.steps.unwrap_or(args.epochs * steps_per_epoch);
    let first_step = args.start_epoch * steps_per_epoch + args.start_step;
    if first_step >= total_steps {
        anyhow::bail!("the start (global step {first_step}) is at or past the end ({total_steps} steps); nothing to do");
    }
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
        first_step,
        stream_key: pipeline.stream_key(),
        // Set per ring from its shard by restart::open_feeds.
        rank: 0,
        world_size: 1,
    };
    let mut feeds = restart::open_feeds(&paths, &shards, &info)?;
    // A ring taken over from a dead loader may be behind or ahead of this command's start.
    let resume = feeds
        .iter()
        .map(|f| f.producer.next_step())
        .min()
        .unwrap_or(first_step);
    let steps = resume..total_steps;
    eprintln!(
        "loader: {} images in {} classes from {}; global steps {}..{} of batch {} ({} per epoch) into {} ring(s) ({} slots, {:.1} MiB each) with {} workers",
        source.len(),
        classes,
        dir,
        steps.start,
        steps.end,
        args.batch_size,
        steps_per_epoch,
        paths.len(),
        args.slots,
        info.geometry.file_bytes() as f64 / (1 << 20) as f64,
        pipeline.workers(),
    );
    for (path, shard) in paths.iter().zip(&shards) {
        eprintln!(
            "loader:   {} <- rank {} of {}",
            path.display(),
            shard.rank,
            shard.world_size
        );
    }
    let bar = ProgressBar::new(steps.end - steps.start).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
        )
        .expect("valid template"),
    );
    let watch = watch::ConsumerWatch::spawn(paths.clone(), bar.clone());
    let pairs_per_step = (args.batch_size * paths.len()) as f64;
    let rings = paths.len();
    let mut published = 0u64;
    let result = pipeline.run(&mut feeds, steps, &stop, &mut |_step| {
        published += 1;
        if published % rings as u64 == 0 {
            bar.inc(1);
            let secs = bar.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{:.0} pairs/s",
                bar.position() as f64 * pairs_per_step / secs
            ));
        }
    });
    bar.finish_and_clear();
    let bad_files = pipeline.bad_files();
    if let Some(file) = &args.bad_files {
        write_bad_files(file, &bad_files)?;
    }
    let report = result?;
    let interrupted = report.interrupted || stop.load(Ordering::Relaxed);
    for feed in &mut feeds {
        if interrupted {
            continue; // see restart::stop_feeds below
        }
        let producer = &mut feed.producer;
        producer.finish();
        let left = producer.written() - producer.consumed();
        if left > 0 {
            eprintln!(
                "loader: all batches written; waiting up to {}s for the trainer on {} to take the last {left}",
                args.linger,
                producer.path().display()
            );
        }
        if !producer.wait_drained(&stop, Duration::from_secs(args.linger)) {
            eprintln!(
                "loader: {} batches were never taken by a trainer",
                producer.written() - producer.consumed()
            );
        }
    }
    drop(watch);
    let consumed: u64 = feeds.iter().map(|f| f.producer.consumed()).sum();
    print_summary(&report, source, consumed);
    let (verdict, producer_wait, consumer_wait) = run_verdict(&feeds, report.elapsed);
    eprintln!(
        "loader: verdict: {verdict} (loader waited for free slots {:.0}% of the time, trainer waited for batches {:.0}%): {}",
        100.0 * producer_wait,
        100.0 * consumer_wait,
        verdict.advice()
    );
    if args.json {
        let secs = report.elapsed.as_secs_f64();
        let bad: Vec<_> = report
            .bad_files
            .iter()
            .map(|b| serde_json::json!({"file": b.name, "reason": b.reason}))
            .collect();
        let summary = serde_json::json!({
            "batches": report.batches,
            "pairs": report.pairs,
            "seconds": secs,
            "pairs_per_s": report.pairs as f64 / secs.max(1e-9),
            "batches_consumed": consumed,
            "skipped_files": report.bad_files.len(),
            "bad_files": bad,
            "interrupted": interrupted,
            "producer_wait": producer_wait,
            "consumer_wait": consumer_wait,
            "verdict": verdict.as_str(),
        });
        println!("{summary}");
    }
    if interrupted {
        restart::stop_feeds(feeds);
    }
    // Dropping the feeds removes the ring files (except those handed over).
    Ok(if interrupted { 130 } else { 0 })
}

/// The samples to read: `--pack FILE`, else the folder `--dir` (or the built-in demo dataset);
/// with a description for messages and the number of classes.
fn open_source(
    dir: Option<&std::path::Path>,
    pack: Option<&std::path::Path>,
) -> anyhow::Result<(Box<dyn SampleSource>, String, usize)> {
    if let Some(pack) = pack {
        let source = loader::pack::PackSource::open(pack)?;
        let classes = source.classes();
        return Ok((Box::new(source), pack.display().to_string(), classes));
    }
    let dir = dataset_dir(dir)?;
    let source = FolderSource::open(&dir)?;
    for (path, why) in &source.folder.skipped {
        eprintln!("loader: skipping {}: {why}", path.display());
    }
    let classes = source.folder.classes.len();
    Ok((Box::new(source), dir.display().to_string(), classes))
}

/// The folder to read: `--dir`, or the built-in demo dataset (made on first use).
fn dataset_dir(dir: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => {
            let dir = datasets::demo::default_demo_dir();
            eprintln!(
                "loader: no --dir given, using the built-in demo dataset in {}",
                dir.display()
            );
            datasets::demo::ensure_demo(&dir)
        }
    }
}

fn measure_command(
    args: &MeasureArgs,
    target: Option<f64>,
    report: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    let stop = install_stop_handler()?;
    let (source, dir, _) = open_source(args.dir.as_deref(), args.pack.as_deref())?;
    let source = &*source;
    let cfg = PipelineConfig {
        batch_size: args.batch_size,
        image_size: args.image_size,
        seed: args.seed,
        workers: args.workers,
        augment: loader::augment::AugmentConfig::load(args.augment_config.as_deref())?,
        max_pixels: DEFAULT_MAX_PIXELS,
        throttle: Duration::ZERO,
    };
    let pipeline = Pipeline::new(source, cfg)?;
    let geometry = Geometry {
        slots: 4,
        batch_size: args.batch_size as u32,
        channels: 3,
        height: args.image_size,
        width: args.image_size,
    };
    let info = RingInfo {
        dataset_len: source.len() as u64,
        ..RingInfo::new(geometry)
    };
    eprintln!(
        "loader: measuring {} images from {} with {} workers for {}s after {} warm-up batches",
        source.len(),
        dir,
        pipeline.workers(),
        args.seconds,
        args.warmup
    );
    let mcfg = MeasureConfig {
        seconds: args.seconds,
        warmup_batches: args.warmup,
        sample_every: Duration::from_millis(250),
    };
    let m = measure(&pipeline, &info, &mcfg, &stop)?;
    if args.json {
        let mut v = serde_json::to_value(&m)?;
        v["source"] = dir.clone().into();
        // The field names ../shared/peers/bench.py reads from an extra peer.
        v["peer"] = if args.pack.is_some() {
            "barlow-pack"
        } else {
            "barlow"
        }
        .into();
        v["cpu_cores_busy"] = m.busy_cores.into();
        if let Some(t) = target {
            v["target_pairs_per_s"] = t.into();
            v["cores_for_target"] = m.cores_for(t).into();
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        print!("{}", loader::measure::table(&m, target));
    }
    if let Some(path) = report {
        let html = loader::report::html_report(&m, &dir, target)?;
        std::fs::write(path, html)
            .with_context(|| format!("writing the report {}", path.display()))?;
        eprintln!("loader: report written to {}", path.display());
    }
    Ok(0)
}

fn stat_command(args: &StatArgs) -> anyhow::Result<i32> {
    args.ownership.apply();
    let stop = install_stop_handler()?;
    let path = ring_path(&args.shm)?;
    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    loader::stat::watch(
        &path,
        interval,
        args.count,
        args.json,
        &stop,
        &mut std::io::stdout().lock(),
    )?;
    Ok(0)
}

fn write_bad_files(
    file: &std::path::Path,
    bad: &[loader::pipeline::BadFile],
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(file)
            .with_context(|| format!("creating the bad-file report {}", file.display()))?,
    );
    for b in bad {
        writeln!(out, "{}\t{}", b.name, b.reason.replace(['\t', '\n'], " "))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", file.display()))
}

/// Who held the run back, from the time each side spent waiting (summed over rings):
/// (verdict, loader's waiting fraction, trainer's waiting fraction).
fn run_verdict(feeds: &[RingFeed], elapsed: Duration) -> (shared::Verdict, f64, f64) {
    let secs = elapsed.as_secs_f64().max(1e-9) * feeds.len().max(1) as f64;
    let waited =
        |i: usize| feeds.iter().map(|f| f.producer.stats().get(i)).sum::<u64>() as f64 / 1e9 / secs;
    let (producer_wait, consumer_wait) = (
        waited(shared::stat::PRODUCER_WAIT_NS),
        waited(shared::stat::CONSUMER_WAIT_NS),
    );
    let verdict = shared::Verdict::judge(consumer_wait, producer_wait, None, true);
    (verdict, producer_wait, consumer_wait)
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
