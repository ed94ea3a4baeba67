//! `datasets`: write the built-in demo dataset, or check an ImageNet-style folder.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use datasets::demo::{write_demo, DemoOptions};
use datasets::folder::ImageFolder;

/// Datasets for Barlow Twins pretraining: make the demo dataset or inspect an image folder.
///
/// Training data is laid out like ImageNet: ROOT/<class>/<image>.JPEG, one folder per class.
#[derive(Parser, Debug)]
#[command(
    name = "datasets",
    version,
    about,
    long_about,
    after_help = "Examples:\n  datasets demo --out /tmp/barlow-demo\n  datasets demo --out /tmp/tiny --classes 3 --per-class 8 --max-side 256\n  datasets scan --dir /data/imagenet/train\n  datasets pack --dir /data/imagenet/train --out /data/train.pack"
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
        /// Dataset root laid out as DIR/<class>/<image>.JPEG.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
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
    },
    /// Scan an ImageNet-style folder and report classes, image counts and skipped entries.
    Scan {
        /// Dataset root laid out as DIR/<class>/<image>.JPEG.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
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
            dir,
            out,
            max_side,
            quality,
        } => {
            let start = Instant::now();
            let f = ImageFolder::scan(&dir)?;
            let opts = datasets::pack::PackOptions { max_side, quality };
            let s = datasets::pack::write_pack(&f, &out, &opts)?;
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
        Command::Scan { dir } => {
            let start = Instant::now();
            let f = ImageFolder::scan(&dir)?;
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
