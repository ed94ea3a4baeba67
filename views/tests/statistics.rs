//! The sampler's distributions over >= 20,000 draws: probabilities within 4 sigma, jitter orders
//! and factor ranges, and the crop's area fraction and aspect against torchvision's sampler
//! (reference samples from `reference/make_goldens.py`, two-sample Kolmogorov-Smirnov test).

use std::path::Path;

use views::keyed_rng::{keyed_rng, Stream};
use views::params::{sample_view, JitterOp, ViewConfig, ViewParams};

const N: usize = 20_000;

fn draws(cfg: &ViewConfig, stream: Stream, w: u32, h: u32) -> Vec<ViewParams> {
    (0..N as u64)
        .map(|i| sample_view(&mut keyed_rng(11, 3, i, stream), w, h, cfg))
        .collect()
}

fn check_frequency(name: &str, hits: usize, n: usize, p: f64) {
    let sigma = (p * (1.0 - p) / n as f64).sqrt();
    let f = hits as f64 / n as f64;
    println!("{name:<22} {f:.4} (p = {p}, 4 sigma = {:.4})", 4.0 * sigma);
    if sigma == 0.0 {
        assert_eq!(f, p, "{name}");
    } else {
        assert!(
            (f - p).abs() <= 4.0 * sigma,
            "{name}: frequency {f}, expected {p} +- {}",
            4.0 * sigma
        );
    }
}

#[test]
fn probabilities_of_each_op_are_the_papers() {
    for (stream, cfg, blur_p, solar_p) in [
        (Stream::View(0), ViewConfig::default(), 1.0, 0.0),
        (Stream::View(1), ViewConfig::paper_b(), 0.1, 0.2),
    ] {
        let v = draws(&cfg, stream, 500, 375);
        let count = |f: &dyn Fn(&ViewParams) -> bool| v.iter().filter(|p| f(p)).count();
        check_frequency(&format!("{stream:?} flip"), count(&|p| p.flip), N, 0.5);
        check_frequency(
            &format!("{stream:?} jitter"),
            count(&|p| p.jitter.is_some()),
            N,
            0.8,
        );
        check_frequency(
            &format!("{stream:?} grayscale"),
            count(&|p| p.grayscale),
            N,
            0.2,
        );
        check_frequency(
            &format!("{stream:?} blur"),
            count(&|p| p.blur_sigma.is_some()),
            N,
            blur_p,
        );
        check_frequency(
            &format!("{stream:?} solarize"),
            count(&|p| p.solarize),
            N,
            solar_p,
        );
        // Jitter: each op first with p = 1/4; factors inside their ranges.
        let jittered: Vec<_> = v.iter().filter_map(|p| p.jitter).collect();
        for op in JitterOp::ALL {
            check_frequency(
                &format!("{stream:?} {op:?} first"),
                jittered.iter().filter(|j| j.order[0] == op).count(),
                jittered.len(),
                0.25,
            );
        }
        for j in &jittered {
            assert!((0.6..1.4).contains(&j.brightness) && (0.6..1.4).contains(&j.contrast));
            assert!((0.8..1.2).contains(&j.saturation) && (-0.1..0.1).contains(&j.hue));
        }
        let sigmas: Vec<f64> = v.iter().filter_map(|p| p.blur_sigma).collect();
        assert!(sigmas.iter().all(|s| (0.1..2.0).contains(s)));
        if sigmas.len() > 1000 {
            let mean = sigmas.iter().sum::<f64>() / sigmas.len() as f64;
            let sd = 1.9 / 12f64.sqrt() / (sigmas.len() as f64).sqrt();
            assert!((mean - 1.05).abs() <= 4.0 * sd, "blur sigma mean {mean}");
        }
    }
}

/// Two-sample KS statistic.
fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn crop_area_and_aspect_match_torchvisions_sampler() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    for s in cases["crop_samples"].as_array().unwrap() {
        let (w, h) = (
            s["width"].as_u64().unwrap() as u32,
            s["height"].as_u64().unwrap() as u32,
        );
        let raw = std::fs::read(dir.join(s["file"].as_str().unwrap())).unwrap();
        let reference: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let (ref_area, ref_aspect): (Vec<f64>, Vec<f64>) = reference
            .chunks_exact(2)
            .map(|p| (p[0] as f64, p[1] as f64))
            .unzip();
        let ours = draws(&ViewConfig::default(), Stream::View(0), w, h);
        let area: Vec<f64> = ours
            .iter()
            .map(|p| (p.crop.w * p.crop.h) as f64 / (w * h) as f64)
            .collect();
        let aspect: Vec<f64> = ours
            .iter()
            .map(|p| p.crop.w as f64 / p.crop.h as f64)
            .collect();
        let (n, m) = (N as f64, ref_area.len() as f64);
        let critical = 1.95 * ((n + m) / (n * m)).sqrt(); // alpha = 0.001
        let (da, dr) = (ks(area, ref_area), ks(aspect, ref_aspect));
        println!("{w}x{h}: KS area {da:.4}, aspect {dr:.4} (critical {critical:.4})");
        assert!(
            da < critical && dr < critical,
            "{w}x{h}: KS area {da}, aspect {dr} >= {critical}"
        );
    }
}

/// The `dino` recipe's views drawn as a run draws them (view `i` from stream `i`): blur and
/// solarize probabilities per view role (DataAugmentationDINO: global 1 blur 1.0, global 2 blur
/// 0.1 + solarize 0.2, locals blur 0.5 and never solarized), and every crop's area inside its
/// scale range (the centre-crop fallback aside, which a 500x375 image never needs here).
#[test]
fn dino_views_have_their_roles_probabilities_and_scale_ranges() {
    let recipe = views::recipe::builtin("dino").unwrap();
    let (w, h) = (500u32, 375u32);
    let n = N / 4;
    for (i, (_, cfg)) in recipe.expanded().iter().enumerate() {
        let v: Vec<ViewParams> = (0..n as u64)
            .map(|k| sample_view(&mut keyed_rng(5, 0, k, Stream::View(i as u32)), w, h, cfg))
            .collect();
        let (blur_p, solar_p, scale) = match i {
            0 => (1.0, 0.0, [0.4, 1.0]),
            1 => (0.1, 0.2, [0.4, 1.0]),
            _ => (0.5, 0.0, [0.05, 0.4]),
        };
        let count = |f: &dyn Fn(&ViewParams) -> bool| v.iter().filter(|p| f(p)).count();
        check_frequency(
            &format!("view {i} blur"),
            count(&|p| p.blur_sigma.is_some()),
            n,
            blur_p,
        );
        check_frequency(
            &format!("view {i} solarize"),
            count(&|p| p.solarize),
            n,
            solar_p,
        );
        check_frequency(&format!("view {i} flip"), count(&|p| p.flip), n, 0.5);
        check_frequency(
            &format!("view {i} grayscale"),
            count(&|p| p.grayscale),
            n,
            0.2,
        );
        for p in &v {
            // Rounding w and h to whole pixels moves the area by at most about one row and column.
            let area = (p.crop.w * p.crop.h) as f64 / (w * h) as f64;
            let slack = (p.crop.w + p.crop.h) as f64 / (w * h) as f64;
            assert!(
                scale[0] - slack <= area && area <= scale[1] + slack,
                "view {i}: area fraction {area} outside {scale:?}"
            );
        }
    }
}
