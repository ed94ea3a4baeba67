//! How much of a sample's decode region decode saves, per decoder, on a folder of JPEGs:
//! `cargo run --release -p views --example region_bench -- DIR [RECIPE] [PASSES]`.
//!
//! For every file and pass, makes the sample's views' parameters and decodes with zune-jpeg,
//! libjpeg-turbo in full and libjpeg-turbo with region decode (in a rotating order, so that a busy
//! machine slows all three alike), and sums each one's decode time (`SampleMaker`'s timer: header,
//! draw and decode). Prints ms per sample and the share of the image's pixels region decode
//! decoded (what it held, margins included).

use std::path::{Path, PathBuf};

use decode::Decoder;
use views::params::ViewParams;
use views::sample::{DecodeOptions, SampleKey, SampleMaker};

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

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: region_bench DIR [RECIPE] [PASSES]"),
    );
    let recipe = args.next().unwrap_or_else(|| "barlow-twins".into());
    let passes: u64 = args.next().map_or(2, |s| s.parse().unwrap());
    let views = views::recipe::builtin(&recipe).unwrap().expanded();
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let data: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let modes = [
        ("zune", Decoder::Zune, false),
        ("turbo (full)", Decoder::Turbo, false),
        ("turbo (region)", Decoder::Turbo, true),
    ];
    let mut makers: Vec<SampleMaker> = modes
        .iter()
        .map(|&(_, decoder, region)| {
            SampleMaker::new(DecodeOptions {
                decoder,
                region,
                dct_scale: false,
            })
        })
        .collect();
    let mut params = vec![ViewParams::default(); views.len()];
    let mut ns = [0u64; 3];
    let (mut held, mut whole) = (0u64, 0u64);
    let mut n = 0u64;
    for pass in 0..passes {
        for (i, bytes) in data.iter().enumerate() {
            let key = SampleKey::new(0, pass, i as u64);
            for k in 0..3 {
                let m = (k + i + pass as usize) % 3;
                let maker = &mut makers[m];
                let read = |buf: &mut Vec<u8>| {
                    buf.extend_from_slice(bytes);
                    Ok(())
                };
                if maker
                    .load_and_draw(read, decode::DEFAULT_MAX_PIXELS, key, &views, &mut params)
                    .is_err()
                {
                    continue;
                }
                let t = maker.take_times();
                ns[m] += t.decode_ns;
                if m == 2 {
                    let (w, h) = maker.dimensions();
                    held += maker.held().area();
                    whole += w as u64 * h as u64;
                }
            }
            n += 1;
        }
    }
    println!(
        "{} ({recipe}): {} files x {passes}; region decode held {:.1}% of the pixels",
        dir.display(),
        data.len(),
        100.0 * held as f64 / whole as f64
    );
    for (m, (name, _, _)) in modes.iter().enumerate() {
        println!(
            "  {name:<15} {:.3} ms per sample ({:.1}% of zune's)",
            ns[m] as f64 / n as f64 / 1e6,
            100.0 * ns[m] as f64 / ns[0] as f64
        );
    }
}
