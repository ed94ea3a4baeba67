//! `datasets`: write the built-in demo dataset, check an ImageNet-style folder or WebDataset
//! shards, or pack either into one file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use datasets::demo::{write_demo, DemoOptions};
use datasets::folder::ImageFolder;
use datasets::source::SampleSource;
use datasets::wds::{WdsArgs, WdsSource};

/// Datasets for Barlow Twins pretraining: make the demo dataset or inspect an image folder.
///
/// Training data is laid out like ImageNet: ROOT/<class>/<image>.JPEG, one folder per class.
#[derive(Parser, Debug)]
#[command(
    name = "datasets",
    version,
    about,
    long_about,
    after_help = "Examples:\n  datasets demo --out /tmp/barlow-demo\n  datasets demo --out /tmp/tiny --classes 3 --per-class 8 --max-side 256\n  datasets scan --dir /data/imagenet/train\n  datasets pack --dir /data/imagenet/train --out /data/train.pack\n  datasets scan --wds '/data/imagenet1k-train-{0000..1023}.tar' --json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the procedurally drawn demo dataset (real JPEGs in ImageNet layout).
    ///
    /// Each class is a shape family (discs, stripes, squares, ...; from class 10 on, with a second
    /// family on top); images vary in position, scale, count, rotation, background, colour and
    /// size. Hues are random in every class, so only structure tells classes apart. The same
    /// options always produce byte-identical files.
    Demo {
        /// Output directory (created if missing; files of the same name are overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Number of classes (1 to 100).
        #[arg(long, default_value_t = 10)]
        classes: usize,
        /// Images per class.
        #[arg(long, default_value_t = 60)]
        per_class: usize,
        /// Smallest image width/height in pixels.
        #[arg(long, default_value_t = 160)]
        min_side: u32,
        /// Largest image width/height in pixels (width and height are drawn independently).
        #[arg(long, default_value_t = 600)]
        max_side: u32,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Pack an ImageNet-style folder into one file (encoded images + index) for `loader --pack`.
    ///
    /// Samples keep the folder's order and labels, so `loader --pack FILE` makes the same batches
    /// as `loader --dir DIR` (unless --max-side re-encodes images).
    Pack {
        #[command(flatten)]
        input: FolderOrShards,
        /// The pack file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Shrink JPEGs whose long side exceeds N pixels (area averaging, re-encoded), like
        /// FFCV's max_resolution; other files are stored byte for byte.
        #[arg(long, value_name = "N")]
        max_side: Option<u32>,
        /// JPEG quality of re-encoded images (1-100).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
        quality: u8,
        /// JPEG decoder for the images --max-side re-encodes: `turbo` (libjpeg-turbo, Pillow's
        /// pixels) or `zune` (zune-jpeg, pure Rust).
        #[arg(long, default_value_t = decode::Decoder::default(), value_parser = parse_decoder)]
        decoder: decode::Decoder,
    },
    /// Scan an ImageNet-style folder (or WebDataset shards) and report classes, image counts and
    /// skipped entries.
    Scan {
        #[command(flatten)]
        input: FolderOrShards,
        /// With --wds: print every sample (shard, key, label, in reading order) and every sample
        /// left out (with the reason) as one JSON object.
        #[arg(long, requires = "wds")]
        json: bool,
    },
}

fn parse_decoder(s: &str) -> Result<decode::Decoder, String> {
    s.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `datasets scan ... | head` closes stdout early: not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Demo {
            out,
            classes,
            per_class,
            min_side,
            max_side,
            seed,
        } => {
            let opts = DemoOptions {
                classes,
                per_class,
                min_side,
                max_side,
                seed,
            };
            let start = Instant::now();
            let s = write_demo(&out, &opts)?;
            writeln!(
                stdout,
                "wrote {} classes, {} images, {:.1} MB in {:.2} s to {}",
                s.classes,
                s.images,
                s.bytes as f64 / 1e6,
                start.elapsed().as_secs_f64(),
                out.display()
            )?;
        }
        Command::Pack {
            input: FolderOrShards { dir, wds },
            out,
            max_side,
            quality,
            decoder,
        } => {
            let start = Instant::now();
            let opts = datasets::pack::PackOptions {
                max_side,
                quality,
                decoder,
            };
            let s = match (&wds.wds, dir) {
                (Some(spec), _) => {
                    let source = open_shards(spec, &wds)?;
                    let classes: Vec<String> = (0..source.classes).map(|c| c.to_string()).collect();
                    let name = |i: usize| {
                        let (shard, key) = source.shard_and_key(i);
                        let shard = shard.file_name().unwrap_or_default().to_string_lossy();
                        format!("{shard}#{key}")
                    };
                    datasets::pack::write_source_pack(&source, &classes, &name, &out, &opts)?
                }
                (None, dir) => {
                    let f = ImageFolder::scan(&dir.expect("clap requires --dir or --wds"))?;
                    datasets::pack::write_pack(&f, &out, &opts)?
                }
            };
            writeln!(
                stdout,
                "packed {} images of {} classes ({} re-encoded) from {:.1} MB into {:.1} MB in {:.2} s: {}",
                s.samples,
                s.classes,
                s.resized,
                s.bytes_in as f64 / 1e6,
                s.bytes_out as f64 / 1e6,
                start.elapsed().as_secs_f64(),
                out.display()
            )?;
        }
        Command::Scan {
            input: FolderOrShards { dir, wds },
            json,
        } => {
            if let Some(spec) = &wds.wds {
                return scan_shards(spec, &wds, json, &mut stdout);
            }
            let start = Instant::now();
            let f = ImageFolder::scan(&dir.expect("clap requires --dir or --wds"))?;
            let elapsed = start.elapsed().as_secs_f64();
            writeln!(stdout, "root: {}", f.root.display())?;
            writeln!(stdout, "classes: {}", f.classes.len())?;
            writeln!(stdout, "images: {}", f.len())?;
            writeln!(stdout, "scan time: {elapsed:.2} s")?;
            const SHOWN: usize = 20;
            let counts = f.class_counts();
            for (i, (name, count)) in f.classes.iter().zip(counts).enumerate().take(SHOWN) {
                writeln!(stdout, "  {i:>5}  {count:>8}  {name}")?;
            }
            if f.classes.len() > SHOWN {
                writeln!(stdout, "  ... ({} more classes)", f.classes.len() - SHOWN)?;
            }
            writeln!(stdout, "skipped: {}", f.skipped.len())?;
            for (path, reason) in &f.skipped {
                writeln!(stdout, "  {}: {}", path.display(), reason)?;
            }
        }
    }
    Ok(())
}

/// Opens shards, reporting the samples left out on stderr.
/// What `pack` and `scan` read: a folder or WebDataset shards.
#[derive(clap::Args, Debug)]
struct FolderOrShards {
    /// Dataset root laid out as DIR/<class>/<image>.JPEG.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "wds",
        conflicts_with = "wds"
    )]
    dir: Option<PathBuf>,
    #[command(flatten)]
    wds: WdsArgs,
}

fn open_shards(spec: &str, wds: &WdsArgs) -> anyhow::Result<WdsSource> {
    let source = WdsSource::open(spec, &wds.label_key)?;
    eprintln!("datasets: {}", source.index_note);
    for (at, why) in &source.skipped {
        eprintln!("datasets: skipping {at}: {why}");
    }
    Ok(source)
}

/// `datasets scan --wds SPEC [--json]`.
fn scan_shards(spec: &str, wds: &WdsArgs, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let source = WdsSource::open(spec, &wds.label_key)?;
    if json {
        let samples: Vec<_> = (0..source.len())
            .map(|i| {
                let (shard, key) = source.shard_and_key(i);
                serde_json::json!({"shard": shard, "key": key, "label": source.label(i)})
            })
            .collect();
        let skipped: Vec<_> = source
            .skipped
            .iter()
            .map(|(at, why)| serde_json::json!({"sample": at, "reason": why}))
            .collect();
        let v = serde_json::json!({
            "shards": source.shard_count(),
            "classes": source.classes,
            "samples": samples,
            "skipped": skipped,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "shards: {} ({spec})", source.shard_count())?;
    writeln!(out, "classes: {} (max label + 1)", source.classes)?;
    writeln!(out, "samples: {}", source.len())?;
    writeln!(out, "index: {}", source.index_note)?;
    writeln!(out, "skipped: {}", source.skipped.len())?;
    for (at, why) in &source.skipped {
        writeln!(out, "  {at}: {why}")?;
    }
    Ok(())
}
