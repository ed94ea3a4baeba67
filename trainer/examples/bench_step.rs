//! Training-step benchmark (not a test): ms per step (forward + backward of both views, Barlow
//! Twins loss, LARS update) on random data.
//!
//! ```text
//! cargo run --release -p trainer --example bench_step -- [ARCH SIZE BATCH STEPS [PROJECTOR]]...
//! cargo run --release -p trainer --example bench_step            # tiny 64 32, resnet18 112 32
//! ```
//! Uses every core dfdx's CPU backend uses (its matmul is multi-threaded); the first step
//! (allocation, index building) is reported apart and not averaged.

use std::time::Instant;

use trainer::dfdx::prelude::*;
use trainer::input::{normalize_views, IMAGENET_MEAN, IMAGENET_STD};
use trainer::lars::{Lars, LarsConfig};
use trainer::model::{parse_projector, Arch, BarlowModel};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: Vec<(String, usize, usize, usize, Option<String>)> = if args.is_empty() {
        vec![
            ("tiny".into(), 64, 32, 10, None),
            ("resnet18".into(), 112, 32, 3, None),
        ]
    } else {
        args.chunks(5)
            .map(|c| {
                (
                    c[0].clone(),
                    c.get(1).and_then(|v| v.parse().ok()).unwrap_or(64),
                    c.get(2).and_then(|v| v.parse().ok()).unwrap_or(32),
                    c.get(3).and_then(|v| v.parse().ok()).unwrap_or(3),
                    c.get(4).cloned(),
                )
            })
            .collect()
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    for (arch, size, batch, steps, projector) in runs {
        let arch = Arch::parse(&arch)?;
        let projector = parse_projector(projector.as_deref().unwrap_or(arch.default_projector()))?;
        let dev = Cpu::seed_from_u64(0);
        dev.enable_cache();
        let mut model = BarlowModel::new(&dev, arch, &projector, 0);
        let mut opt = Lars::new(&model.store, LarsConfig::default());
        let n = batch * 3 * size * size;
        let a: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let b: Vec<u8> = (0..n).map(|i| (i * 13 % 241) as u8).collect();
        let mut times = Vec::new();
        for i in 0..=steps {
            let t = Instant::now();
            let (va, vb) =
                normalize_views(&dev, &a, &b, batch, size, size, IMAGENET_MEAN, IMAGENET_STD);
            let g = model.loss_and_grads(va, vb, 0.0051)?;
            opt.step(&mut model.store, &g.grads, 0.01, 0.001)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if i == 0 {
                eprintln!(
                    "{} {size}x{size} batch {batch}: first step {ms:.0} ms (warm-up)",
                    arch.name()
                );
            } else {
                times.push(ms);
            }
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
        println!(
            "{{\"arch\":\"{}\",\"image\":{size},\"batch\":{batch},\"projector\":\"{}\",\"steps\":{},\"ms_per_step\":{mean:.1},\"min_ms\":{min:.1},\"cores\":{cores}}}",
            arch.name(),
            trainer::model::projector_spec(&projector),
            times.len()
        );
    }
    Ok(())
}
