//! Speed of the hottest kernels, one thread, at the SIMD level the process picks at start-up
//! (`BARLOW_SIMD=scalar`, `avx2`, `avx512bw` or `avx512vbmi`, on aarch64 `scalar` or `neon`, caps
//! it, to see what each level buys):
//! `cargo run --release -p views --example kernel_speed [-- REPS]`.
//!
//! Prints the best time per call over 15 rounds of REPS calls (default 200): crop + bicubic and
//! bilinear resize of 150, 300 and 500 pixel wide crops of a 500x400 image to 224x224, Gaussian
//! blur of a 224x224 view (and each library's blur, Pillow's, OpenCV's and torchvision's, on 224 and
//! 96 views), hue on a 224x224 view without and with a pending brightness table, saturation
//! with a pending table (the colour ops' block loads: `lut` and `planar`) and a table alone. (These
//! were `#[ignore]`d "tests" that asserted nothing; correctness is the unit tests' and goldens'.)

use std::time::Instant;

use views::blur::{gaussian_blur, BlurFilter, BlurScratch};
use views::color::{blend_table, hue_lut, saturation_lut, IDENTITY};
use views::resample::{Interpolation, Resampler};

/// Best seconds per call of `f` over 15 rounds of `reps` calls (the best, because on a shared
/// machine the other rounds measure the neighbours too).
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("REPS must be a number"))
        .unwrap_or(200);
    if let Err(e) = views::simd::requested() {
        eprintln!("kernel_speed: {e}");
        std::process::exit(2);
    }
    println!("SIMD level: {}", views::simd::level_name());

    let (w, h) = (500usize, 400usize);
    let image: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) >> 3) as u8).collect();
    let side = 224usize;
    let mut view = vec![0u8; 3 * side * side];
    let mut resampler = Resampler::default();
    for interpolation in [Interpolation::Bicubic, Interpolation::Bilinear] {
        for cw in [150usize, 300, 500] {
            let crop = (0, 0, cw, cw.min(h));
            let s = best(reps, || {
                resampler.resize_crop(&image, w, crop, side, side, interpolation, &mut view)
            });
            println!(
                "crop+resize {cw}x{} -> 224x224 ({interpolation:?}): {:.1} us",
                cw.min(h),
                s * 1e6
            );
        }
    }

    let source = view.clone();
    let mut scratch = BlurScratch::default();
    let s = best(reps, || {
        view.copy_from_slice(&source);
        gaussian_blur(&mut view, side, side, 1.3, &mut scratch);
    });
    println!("blur 224x224 (sigma 1.3, copy included): {:.1} us", s * 1e6);
    // The three libraries' blurs at SwAV's and DINOv2's kernel sizes, 224 and 96 views.
    let mut blurs = views::blur::Blurs::default();
    for (filter, name) in [
        (BlurFilter::Pillow, "pillow"),
        (BlurFilter::Opencv { kernel: 23 }, "opencv 23x23"),
        (BlurFilter::Torchvision { kernel: 9 }, "torchvision 9x9"),
    ] {
        for n in [224usize, 96] {
            let src = &source[..3 * n * n];
            let mut px = src.to_vec();
            for sigma in [1.0, 2.0] {
                let s = best(reps, || {
                    px.copy_from_slice(src);
                    blurs.apply(filter, &mut px, n, n, sigma, false);
                });
                println!("blur {name} {n}x{n} sigma {sigma}: {:.1} us", s * 1e6);
            }
        }
    }

    let mut brightness = [0u8; 256];
    blend_table(0, 1.2, &mut brightness);
    for (what, table) in [("identity", IDENTITY), ("brightness table", brightness)] {
        let s = best(reps, || {
            view.copy_from_slice(&source);
            hue_lut(&mut view, -0.1, &table);
        });
        println!(
            "hue 224x224 ({what}, copy included): {:.2} ns per pixel",
            s * 1e9 / (side * side) as f64
        );
    }
    let s = best(reps, || {
        view.copy_from_slice(&source);
        saturation_lut(&mut view, 1.3, &brightness);
    });
    println!(
        "saturation 224x224 (brightness table, copy included): {:.2} ns per pixel",
        s * 1e9 / (side * side) as f64
    );
    let s = best(reps, || {
        view.copy_from_slice(&source);
        views::lut::apply_in_place(&mut view, &brightness);
    });
    println!(
        "table 224x224 (copy included): {:.2} ns per pixel",
        s * 1e9 / (side * side) as f64
    );
}
