//! Region decode changes no byte of any view: for every built-in recipe (barlow-twins, moco-v3,
//! dino, swav, dinov2) and many sample keys, the views made after
//! [`SampleMaker::load_and_draw`] with region decode are those made from a full libjpeg-turbo
//! decode, on JPEGs of every subsampling (4:4:4, 4:2:2, 4:2:0, grey, CMYK; baseline and
//! progressive), large and small images (small ones take the centre-crop fallback).

use std::path::{Path, PathBuf};

use decode::Decoder;
use views::params::ViewParams;
use views::recipe::{builtin, RECIPES};
use views::sample::{DecodeOptions, SampleKey, SampleMaker};

fn jpegs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for dir in ["decode/tests/golden", "views/tests/golden"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "jpg") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every view of one sample: (parameters, views, decoded pixels / full-image pixels).
fn sample(
    maker: &mut SampleMaker,
    bytes: &[u8],
    key: SampleKey,
    views: &[(u32, views::params::ViewConfig)],
) -> (Vec<ViewParams>, Vec<Vec<u8>>, f64) {
    let mut params = vec![ViewParams::default(); views.len()];
    maker
        .load_and_draw(
            |buf| {
                buf.extend_from_slice(bytes);
                Ok(())
            },
            1 << 30,
            key,
            views,
            &mut params,
        )
        .unwrap();
    let mut out = Vec::new();
    for (p, (size, _)) in params.iter().zip(views) {
        let mut v = vec![0u8; 3 * (*size as usize).pow(2)];
        maker.make_view(p, *size, &mut v);
        out.push(v);
    }
    let (w, h) = maker.dimensions();
    let fraction = maker.held().area() as f64 / (w as f64 * h as f64);
    (params, out, fraction)
}

#[test]
fn region_decode_gives_the_full_decodes_views_for_every_recipe() {
    if !Decoder::Turbo.is_available() {
        println!("skipped: this build has no libjpeg-turbo decoder");
        return;
    }
    let files = jpegs();
    assert!(files.len() >= 10, "{files:?}");
    let mut region = SampleMaker::new(DecodeOptions {
        decoder: Decoder::Turbo,
        region: true,
        dct_scale: false,
    });
    let mut full = SampleMaker::new(DecodeOptions {
        decoder: Decoder::Turbo,
        region: false,
        dct_scale: false,
    });
    for r in RECIPES {
        let recipe = builtin(r.name).unwrap();
        let views = recipe.expanded();
        let (mut decoded, mut samples) = (0.0, 0);
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            for k in 0..6u64 {
                let key = SampleKey::new(11, k / 3, k * 7919 + bytes.len() as u64);
                let (pr, vr, fraction) = sample(&mut region, &bytes, key, &views);
                let (pf, vf, whole) = sample(&mut full, &bytes, key, &views);
                assert_eq!(whole, 1.0);
                assert_eq!(pr, pf, "{}: {}: parameters differ", r.name, path.display());
                for (i, (a, b)) in vr.iter().zip(&vf).enumerate() {
                    assert!(
                        a == b,
                        "{}: {} key {k}: view {i} differs ({:?})",
                        r.name,
                        path.display(),
                        pr[i].crop
                    );
                }
                decoded += fraction;
                samples += 1;
            }
        }
        println!(
            "{:<13} region decode decoded {:.1}% of the pixels on average",
            r.name,
            100.0 * decoded / samples as f64
        );
    }
}

/// The DCT-scaled opt-in is not exact but close: on an image 6x larger than its views, the
/// maker decodes at a reduced scale and the views stay near the exact ones (mean |diff| small),
/// while the drawn parameters are the same.
#[test]
fn dct_scale_opt_in_decodes_less_and_stays_close() {
    if !Decoder::Turbo.is_available() {
        return;
    }
    let (w, h) = (1536u16, 1152u16);
    let px: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| {
            let (x, y) = (i % w as usize, i / w as usize);
            [(x / 6) as u8, (y / 5) as u8, ((x + y) / 11) as u8]
        })
        .collect();
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 90)
        .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let views = builtin("barlow-twins")
        .unwrap()
        .resized(Some(96), None, None)
        .unwrap()
        .expanded();
    let exact_opts = DecodeOptions {
        decoder: Decoder::Turbo,
        region: true,
        dct_scale: false,
    };
    let mut exact = SampleMaker::new(exact_opts);
    let mut scaled = SampleMaker::new(DecodeOptions {
        dct_scale: true,
        ..exact_opts
    });
    let (mut smaller, mut total_diff, mut total_bytes) = (0, 0u64, 0u64);
    for k in 0..20 {
        let key = SampleKey::new(3, 0, k);
        let (pe, ve, _) = sample(&mut exact, &bytes, key, &views);
        let (ps, vs, _) = sample(&mut scaled, &bytes, key, &views);
        assert_eq!(pe, ps, "the drawn parameters do not depend on the decode");
        smaller += (scaled.image().pixels.len() < exact.image().pixels.len()) as usize;
        for (a, b) in ve.iter().zip(&vs) {
            total_diff += a
                .iter()
                .zip(b)
                .map(|(x, y)| x.abs_diff(*y) as u64)
                .sum::<u64>();
            total_bytes += a.len() as u64;
        }
    }
    let mean = total_diff as f64 / total_bytes as f64;
    println!("DCT-scaled: {smaller} of 20 samples decoded smaller; mean |diff| {mean:.3}");
    assert!(smaller >= 10, "the scale was rarely used ({smaller} of 20)");
    assert!(mean < 3.0, "mean |diff| {mean}");
}
