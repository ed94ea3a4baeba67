//! `loader`: feeds joint-embedding training. Decodes each image once, makes its recipe's augmented
//! views (Barlow Twins' two by default; DINO's 2 global + 8 local with `--recipe dino`), and writes
//! the batches into a shared-memory ring that `trainer --shm NAME` or `barlow.torch.RingLoader`
//! reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use datasets::opened::OpenedSource;
use decode::DEFAULT_MAX_PIXELS;
use loader::pipeline::{Pipeline, PipelineConfig};
use loader::profile::measure::{measure, MeasureConfig};
use loader::ring_sink::RingSink;
use loader::sampler::Shard;
use loader::summary;
use shared::ring_path;

/// Decode images and write each image's augmented views (its recipe's: Barlow Twins' two by
/// default) into a shared-memory ring for `trainer --shm NAME` or Python's barlow.torch.RingLoader.
///
/// Without --dir, --pack or --wds, it uses barlow's built-in demo dataset (made once in ~/.cache/barlow/demo-v3).
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  loader --dir /data/imagenet/train --shm bt0 --batch-size 256 &\n  trainer --shm bt0\n  \
loader --dir /data/imagenet/train --recipe dino --shm dino0 --batch-size 64 &   # 2 x 224 + 8 x 96 per image\n  \
python examples/torch_multicrop.py --shm dino0\n\n\
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
    /// Write the first samples' views (every view of the recipe) as PNGs, their parameters as JSON and a contact sheet.
    Preview(loader::preview::PreviewArgs),
    /// Apply given view parameters (JSON, as preview writes) to one image and write the PNG.
    Augment(loader::preview::AugmentArgs),
    /// Measure the full pipeline (every augmentation on) into a drained ring: pairs/s, pairs per
    /// CPU-second, time per stage, peak RSS. The kernels run at the best SIMD level of the CPU;
    /// BARLOW_SIMD=scalar|avx2|avx512bw|avx512vbmi (aarch64: scalar|neon) caps it (the JSON's `simd`
    /// says which ran).
    Bench(MeasureArgs),
    /// Profile a training run's input. With --shm NAME: the ring a loader and a trainer are using
    /// (read-only): the verdict over time, both sides' rates, the ring's occupancy, the trainer's
    /// step (waiting vs computing), the loader's stages and how many loader cores would keep the
    /// trainer fed. Without: the loader alone, like bench, plus the cores a --target rate needs.
    /// --report writes a self-contained HTML page with plots.
    #[command(
        after_help = "Examples:\n  loader profile --shm bt0 --seconds 30 --report input.html   # a run going on\n  loader profile --dir /data/train --target 2500 --report loader.html   # the loader alone"
    )]
    Profile(ProfileArgs),
    /// Watch a live ring (read-only): loader and trainer rates, occupancy, and who holds training back.
    Stat(StatArgs),
    /// List the recipes (each method's views), or show one: its view groups, or with --print
    /// the JSON that --recipe-config reads (a start for your own).
    Recipe(RecipeCommandArgs),
}

/// Options of `loader recipe`.
#[derive(clap::Args, Debug)]
struct RecipeCommandArgs {
    /// The recipe to show [default: list them all].
    name: Option<String>,
    /// Print the recipe as JSON (the --recipe-config format).
    #[arg(long, requires = "name")]
    print: bool,
}

/// Options of `loader bench` (and `loader profile`).
#[derive(clap::Args, Debug)]
struct MeasureArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Batches made before measuring.
    #[arg(long, default_value_t = 4)]
    warmup: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What to read and what to make of it: the options every pipeline command shares.
#[derive(clap::Args, Debug)]
struct InputArgs {
    /// ImageNet-style folder: DIR/<class>/<image>.JPEG (classes sorted by name get labels 0..K-1)
    /// [default: the built-in demo dataset].
    #[arg(long, conflicts_with = "wds")]
    dir: Option<PathBuf>,
    /// A packed dataset made by `datasets pack --dir DIR --out FILE` (same samples, order and
    /// labels as DIR; read through a memory map, no file opened per image).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "wds"])]
    pack: Option<PathBuf>,
    #[command(flatten)]
    wds: datasets::wds::WdsArgs,
    /// Samples per batch (one ring slot holds one batch of view pairs).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Worker threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Seed of every random choice (shuffle and augmentation parameters).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    recipe: loader::recipe_args::RecipeArgs,
    #[command(flatten)]
    decode: loader::decode_args::DecodeArgs,
}

impl InputArgs {
    /// The one place a [`PipelineConfig`] is built from the command line.
    fn pipeline_config(
        &self,
        max_pixels: u64,
        throttle: Duration,
    ) -> anyhow::Result<PipelineConfig> {
        Ok(PipelineConfig {
            batch_size: self.batch_size,
            seed: self.seed,
            workers: self.workers,
            recipe: self.recipe.load()?,
            max_pixels,
            throttle,
            decode: self.decode.options(),
        })
    }

    fn open_source(&self) -> anyhow::Result<OpenedSource> {
        OpenedSource::open(
            "loader",
            self.dir.as_deref(),
            self.pack.as_deref(),
            Some(&self.wds),
        )
    }
}

/// Options of `loader profile`.
#[derive(clap::Args, Debug)]
struct ProfileArgs {
    /// Profile this ring in use (name in /dev/shm or absolute path) instead of measuring the loader
    /// alone: --seconds of readings of its live counters; --json prints the profile as one object.
    #[arg(long, conflicts_with_all = ["dir", "pack", "wds", "target", "warmup"])]
    shm: Option<String>,
    #[command(flatten)]
    ownership: OwnershipArgs,
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
    #[command(flatten)]
    input: InputArgs,
    /// Ring name in /dev/shm (1-64 of [A-Za-z0-9._-]) or an absolute file path. A comma-separated
    /// list feeds one ring per local trainer (ring i gets rank --rank + i of --world-size).
    #[arg(long, default_value = "barlow", value_delimiter = ',')]
    shm: Vec<String>,
    /// Passes over the dataset (each reshuffled).
    #[arg(long, default_value_t = 100, conflicts_with = "steps")]
    epochs: u64,
    /// Stop after this many batches instead of a number of epochs.
    #[arg(long)]
    steps: Option<u64>,
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
    #[command(flatten)]
    ownership: OwnershipArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = views::simd::requested() {
        eprintln!("loader: error: {e}");
        std::process::exit(2);
    }
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Preview(args)) => loader::preview::preview(&args),
        Some(Command::Augment(args)) => loader::preview::augment(&args),
        Some(Command::Bench(args)) => measure_command(&args, None, None),
        Some(Command::Profile(args)) => match &args.shm {
            Some(shm) => live_profile_command(&args, shm),
            None => measure_command(&args.measure, args.target, args.report.as_deref()),
        },
        Some(Command::Stat(args)) => stat_command(&args),
        Some(Command::Recipe(args)) => recipe_command(&args),
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
    stop_handler(
        "interrupted, finishing the current batch and removing the ring, unless its trainer waits for a new loader (Ctrl-C again to force)",
    )
}

/// Sets the returned flag on Ctrl-C (saying `what` happens next); a second Ctrl-C exits at once.
fn stop_handler(what: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nloader: second interrupt, exiting now");
            std::process::exit(130);
        }
        eprintln!("\nloader: {what}");
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
    let opened = args.input.open_source()?;
    let source = &*opened.source;
    let cfg = args
        .input
        .pipeline_config(args.max_pixels, Duration::from_millis(args.throttle_ms))?;
    let pipeline = Pipeline::new(source, cfg)?;
    let plan = pipeline.plan(
        shards[0],
        args.epochs,
        args.steps,
        args.start_epoch,
        args.start_step,
    )?;
    let mut rings = RingSink::open(
        &paths,
        &shards,
        &pipeline,
        &plan,
        args.slots,
        Duration::from_secs(args.linger),
    )?;
    // A ring taken over from a dead loader may be behind or ahead of this command's start.
    let steps = rings.resume_step().unwrap_or(plan.steps.start)..plan.steps.end;
    eprintln!(
        "loader: {} images in {} classes from {}; global steps {}..{} of batch {} ({} per epoch) into {} ring(s) ({} slots, {:.1} MiB each) with {} workers, JPEG decoder {}",
        source.len(),
        opened.classes,
        opened.description,
        steps.start,
        steps.end,
        args.input.batch_size,
        plan.steps_per_epoch,
        paths.len(),
        args.slots,
        rings.file_bytes() as f64 / (1 << 20) as f64,
        pipeline.workers(),
        args.input.decode.options().describe(),
    );
    for (path, shard) in paths.iter().zip(&shards) {
        eprintln!(
            "loader:   {} <- rank {} of {}",
            path.display(),
            shard.rank,
            shard.world_size
        );
    }
    rings.show_progress(steps.end - steps.start);
    let result = pipeline.run(&mut rings, steps, &stop);
    if let Some(file) = &args.bad_files {
        summary::write_bad_files(file, &pipeline.bad_files())?;
    }
    let report = result?;
    let interrupted = report.interrupted || stop.load(Ordering::Relaxed);
    let ring = rings.summary().expect("finish ran");
    summary::print(&report, source.len(), &ring, interrupted, args.json);
    // Dropping the sink removes the ring files (except those handed over).
    Ok(if interrupted { 130 } else { 0 })
}

fn measure_command(
    args: &MeasureArgs,
    target: Option<f64>,
    report: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    let stop = install_stop_handler()?;
    let opened = args.input.open_source()?;
    let cfg = args
        .input
        .pipeline_config(DEFAULT_MAX_PIXELS, Duration::ZERO)?;
    let pipeline = Pipeline::new(&*opened.source, cfg)?;
    let dir = &opened.description;
    eprintln!(
        "loader: measuring {} images from {} with {} workers for {}s after {} warm-up batches (SIMD level {}, decoder {})",
        opened.source.len(),
        dir,
        pipeline.workers(),
        args.seconds,
        args.warmup,
        views::simd::level_name(),
        args.input.decode.options().describe()
    );
    let mcfg = MeasureConfig {
        seconds: args.seconds,
        warmup_batches: args.warmup,
        sample_every: Duration::from_millis(50),
    };
    let m = measure(&pipeline, &mcfg, &stop)?;
    if args.json {
        let mut v = serde_json::to_value(&m)?;
        v["source"] = dir.clone().into();
        // The field names ../shared/peers/bench.py reads from an extra peer.
        // A level capped by BARLOW_SIMD is its own peer (`barlow@avx2`), so that the tables
        // keep the levels apart.
        let peer = if args.input.pack.is_some() {
            "barlow-pack"
        } else if args.input.wds.wds.is_some() {
            "barlow-wds"
        } else {
            "barlow"
        };
        let simd = views::simd::level_name();
        // A decoder other than the default (or a full decode where the default decodes regions)
        // is its own peer too (`barlow-zune`, `barlow-turbo-full`).
        let decode = args.input.decode.options();
        let peer = match args.input.decode.peer_suffix() {
            Some(suffix) => format!("{peer}-{suffix}"),
            None => peer.to_string(),
        };
        v["peer"] = match views::simd::requested() {
            Ok(Some(_)) => format!("{peer}@{simd}"),
            _ => peer,
        }
        .into();
        v["decoder"] = decode.describe().into();
        v["simd"] = simd.into();
        v["cpu_cores_busy"] = m.busy_cores.into();
        if let Some(t) = target {
            v["target_pairs_per_s"] = t.into();
            v["cores_for_target"] = m.cores_for(t).into();
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        print!("{}", loader::profile::measure::table(&m, target));
    }
    if let Some(path) = report {
        let html = loader::profile::report::html_report(&m, dir, target)?;
        std::fs::write(path, html)
            .with_context(|| format!("writing the report {}", path.display()))?;
        eprintln!("loader: report written to {}", path.display());
    }
    Ok(0)
}

fn live_profile_command(args: &ProfileArgs, shm: &str) -> anyhow::Result<i32> {
    use loader::profile::live::{self, LiveConfig, Processes};
    args.ownership.apply();
    let stop = stop_handler("interrupted: profiling what was read so far (Ctrl-C again to quit)")?;
    let path = ring_path(shm)?;
    let observer = shared::Observer::open_wait(&path, Duration::from_secs(10))?;
    let seconds = args.measure.seconds;
    eprintln!(
        "loader: profiling the ring {} for {seconds}s (read-only; Ctrl-C stops early)",
        path.display()
    );
    let before = Processes::of(&observer);
    let readings = live::sample(&observer, &LiveConfig::for_seconds(seconds), &stop);
    // A trainer may attach during the profile; a loader may be gone by its end.
    let processes = before.or(Processes::of(&observer));
    let profile = live::analyse(&path, observer.info(), &readings, &processes)?;
    if args.measure.json {
        println!("{}", serde_json::to_string(&profile)?);
    } else {
        print!("{}", live::text(&profile));
    }
    if let Some(report) = &args.report {
        let html = loader::profile::report::live_html_report(&profile)?;
        std::fs::write(report, html)
            .with_context(|| format!("writing the report {}", report.display()))?;
        eprintln!("loader: report written to {}", report.display());
    }
    Ok(0)
}

fn stat_command(args: &StatArgs) -> anyhow::Result<i32> {
    args.ownership.apply();
    let stop = install_stop_handler()?;
    let path = ring_path(&args.shm)?;
    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    loader::profile::stat::watch(
        &path,
        interval,
        args.count,
        args.json,
        &stop,
        &mut std::io::stdout().lock(),
    )?;
    Ok(0)
}

fn recipe_command(args: &RecipeCommandArgs) -> anyhow::Result<i32> {
    match &args.name {
        Some(name) => {
            let recipe = views::recipe::builtin(name).map_err(anyhow::Error::msg)?;
            if args.print {
                println!("{}", serde_json::to_string_pretty(&recipe.to_json())?);
            } else {
                println!("{name}: {} views per image", recipe.view_count());
                let mut first = 0;
                for spec in &recipe.views {
                    let (v, n, size) = (spec.config, spec.count as usize, spec.size);
                    let which = match n {
                        1 => format!("view {first}"),
                        _ => format!("views {first}-{}", first + n - 1),
                    };
                    println!(
                        "  {which:<10} {size}x{size}, crop scale {:?}, {:?}, jitter p {} (brightness {:?}, contrast {:?}, saturation {:?}, hue {:?}), grayscale p {}, blur p {} ({}, sigma {:?}), solarize p {}",
                        v.scale, v.interpolation, v.jitter_p, v.brightness, v.contrast, v.saturation, v.hue,
                        v.grayscale_p, v.blur_p, v.blur_filter.describe(), v.blur_sigma, v.solarize_p
                    );
                    first += n;
                }
                println!("(`loader recipe {name} --print` prints it as JSON for --recipe-config)");
            }
        }
        None => {
            for r in &views::recipe::RECIPES {
                println!("{:14} {}", r.name, r.about);
            }
        }
    }
    Ok(0)
}
