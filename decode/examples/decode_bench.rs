//! Decode speed of a [`decode::Decoder`] over a folder of images, one thread:
//! `cargo run --release -p decode --example decode_bench -- DIR [PASSES] [zune|turbo]`
//! (default decoder: the crate's default).
//! Reads every file into memory first, then decodes them all PASSES times into one reused buffer;
//! prints images/s of wall time and of CPU time, megapixels/s, and a checksum of the pixels.

use std::path::{Path, PathBuf};
use std::time::Instant;

use decode::{Decoder, RgbImage, DEFAULT_MAX_PIXELS};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpeg") || e.eq_ignore_ascii_case("jpg"))
        {
            out.push(p);
        }
    }
}

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: decode_bench DIR [PASSES]"));
    let passes: usize = args.next().map_or(1, |s| s.parse().unwrap());
    let decoder: Decoder = args
        .next()
        .map_or(Decoder::default(), |s| s.parse().unwrap());
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let data: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mut img = RgbImage::default();
    // Warm-up pass, also the checksum and the failure count.
    let (mut sum, mut failed, mut pixels) = (0u64, 0usize, 0u64);
    for bytes in &data {
        match decoder.decode(bytes, DEFAULT_MAX_PIXELS, &mut img) {
            Ok(()) => {
                pixels += (img.width * img.height) as u64;
                sum = img
                    .pixels
                    .iter()
                    .fold(sum, |a, &v| a.wrapping_mul(31).wrapping_add(v as u64));
            }
            Err(_) => failed += 1,
        }
    }
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    for _ in 0..passes {
        for bytes in &data {
            let _ = decoder.decode(bytes, DEFAULT_MAX_PIXELS, &mut img);
        }
    }
    let (wall, cpu) = (wall0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let n = (data.len() * passes) as f64;
    println!(
        "{} ({decoder}): {} files x {passes}, failed {failed}, {:.1} img/s wall, {:.1} img/CPU-s, {:.1} MP/CPU-s, checksum {sum:016x}",
        dir.display(),
        data.len(),
        n / wall,
        n / cpu,
        pixels as f64 * passes as f64 / cpu / 1e6
    );
}
