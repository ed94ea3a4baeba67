//! Where the time goes (issues 7 and 16): verdicts from both sides, `loader stat`, `loader
//! profile --shm` on the live ring (its JSON, its HTML report and a screenshot of it), and
//! `loader profile --dir`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use barlow_tests::{
    assert_succeeded, bin, loader_feeding, make_demo, ring_in, run_with_deadline,
    wait_with_deadline,
};

const LIMIT: Duration = Duration::from_secs(300);

/// What one loader + trainer pair showed its observers.
struct Observed {
    loader: String,
    trainer: String,
    /// `loader stat --json` lines.
    stat: Vec<serde_json::Value>,
    /// `loader profile --shm --json`.
    profile: serde_json::Value,
}

/// Runs a loader and a dry-run trainer with the given extra arguments, with a `loader stat` and a
/// 3-second `loader profile --shm` (HTML report to `report`) beside them.
fn run_pair(loader_extra: &[&str], trainer_extra: &[&str], tag: &str, report: &Path) -> Observed {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 16);
    let ring = ring_in(tmp.path(), tag);
    let loader = loader_feeding(&data, &ring)
        .args([
            "--batch-size",
            "4",
            "--image-size",
            "16",
            "--steps",
            "40",
            "--json",
        ])
        .args(loader_extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trainer = Command::new(bin("trainer"))
        .args(["--shm", &ring, "--wait", "60", "--dry-run"])
        .args(trainer_extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stat = run_with_deadline(
        Command::new(bin("loader")).args([
            "stat",
            "--shm",
            &ring,
            "--interval",
            "0.5",
            "--count",
            "4",
            "--json",
        ]),
        LIMIT,
    );
    let profile = run_with_deadline(
        Command::new(bin("loader"))
            .args(["profile", "--shm", &ring, "--seconds", "3", "--json"])
            .arg("--report")
            .arg(report),
        LIMIT,
    );
    let trainer = wait_with_deadline(trainer, LIMIT);
    let loader = wait_with_deadline(loader, LIMIT);
    assert!(loader.status.success() && trainer.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&loader.stdout).expect("loader --json prints its summary");
    assert_eq!(summary["batches"], 40);
    let verdict = summary["verdict"].as_str().unwrap().to_string();
    let stderr = String::from_utf8_lossy(&loader.stderr);
    assert!(
        stderr.contains(&format!("verdict: {verdict}")),
        "the JSON and the text agree: {stderr}"
    );
    assert_succeeded("loader stat", &stat);
    assert_succeeded("loader profile --shm", &profile);
    Observed {
        loader: String::from_utf8_lossy(&loader.stderr).into_owned(),
        trainer: String::from_utf8_lossy(&trainer.stderr).into_owned(),
        stat: String::from_utf8_lossy(&stat.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("stat --json prints JSON lines"))
            .collect(),
        profile: serde_json::from_slice(&profile.stdout)
            .expect("profile --shm --json prints one JSON object"),
    }
}

fn majority(lines: &[serde_json::Value], verdict: &str) -> bool {
    let hits = lines.iter().filter(|l| l["verdict"] == verdict).count();
    2 * hits > lines.len()
}

#[test]
fn a_slow_trainer_is_compute_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("compute-bound.html");
    let o = run_pair(&[], &["--throttle-ms", "150"], "slowtrainer", &report);
    assert!(o.trainer.contains("compute-bound"), "{}", o.trainer);
    assert!(o.loader.contains("verdict: compute-bound"), "{}", o.loader);
    assert!(majority(&o.stat, "compute-bound"), "{:?}", o.stat);
    for l in &o.stat {
        assert!(
            l["occupancy"].as_f64().unwrap() >= 0.5,
            "a slow trainer keeps the ring full: {l}"
        );
    }
    let p = &o.profile;
    assert_eq!(p["verdict"]["verdict"], "compute-bound", "{p}");
    // The dry run holds each batch 150 ms and publishes that as its compute time: never less
    // (a sleep is not shorter than asked; the profile's smoothing window allows a little), and no
    // upper bound, which only a quiet machine would keep.
    let compute = p["trainer"]["compute_ms_per_step"].as_f64().unwrap();
    assert!(compute >= 140.0, "{compute} ms per step computing");
    assert_eq!(p["trainer"]["compute_from"], "the trainer's own counter");
    assert!(
        p["verdict"]["mean_occupancy"].as_f64().unwrap() >= 0.5,
        "{p}"
    );
    assert!(p["loader_cores_to_keep_up"].as_f64().unwrap() > 0.0);
    assert!(
        p["attack_first"].is_null(),
        "nothing to attack when compute-bound"
    );
    check_live_report(&report, p, "compute-bound", tmp.path());
}

#[test]
fn a_slow_loader_is_input_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("input-bound.html");
    let o = run_pair(&["--throttle-ms", "150"], &[], "slowloader", &report);
    assert!(o.trainer.contains("input-bound"), "{}", o.trainer);
    assert!(o.loader.contains("verdict: input-bound"), "{}", o.loader);
    assert!(majority(&o.stat, "input-bound"), "{:?}", o.stat);
    let p = &o.profile;
    assert_eq!(p["verdict"]["verdict"], "input-bound", "{p}");
    assert!(p["verdict"]["trainer_wait"].as_f64().unwrap() > 0.5, "{p}");
    let stages: Vec<&str> = p["loader"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(
        stages.contains(&p["attack_first"]["stage"].as_str().unwrap()),
        "an input-bound run names a stage to attack: {p}"
    );
    // The loader sleeps 150 ms a batch outside its stages: the profile says it is not short of CPU.
    let findings = p["findings"].to_string();
    assert!(findings.contains("not short of CPU"), "{findings}");
    check_live_report(&report, p, "input-bound", tmp.path());
}

/// The live report: well-formed, self-contained, the verdict and every plot present with the
/// series it should draw, and (where chromium is installed) rendered with each series' colour.
fn check_live_report(report: &Path, profile: &serde_json::Value, verdict: &str, dir: &Path) {
    let html = std::fs::read_to_string(report).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&html, options).expect("the report is well-formed");
    let banner = doc
        .descendants()
        .find(|n| n.attribute("data-verdict").is_some())
        .expect("a verdict banner");
    assert_eq!(banner.attribute("data-verdict"), Some(verdict));
    let charts: Vec<String> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-series"))
        .map(String::from)
        .collect();
    let expected = [
        verdict.to_string(),
        "loader makes,trainer takes".to_string(),
        "ring occupancy (%)".to_string(),
        "waiting for input,computing".to_string(),
        "read,decode,crop+resize,colour,blur,write+solarize".to_string(),
    ];
    assert_eq!(charts.len(), expected.len(), "{charts:?}");
    assert!(
        charts[0].split(',').any(|v| v == verdict),
        "the verdict strip shows {verdict}: {charts:?}"
    );
    assert_eq!(charts[1..], expected[1..], "each plot draws its series");
    let svgs = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "svg")
        .count();
    assert_eq!(svgs, 5, "one SVG per plot");
    // Every line chart has its lines: polylines with many points.
    let lines = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "polyline")
        .filter(|n| {
            n.attribute("points")
                .is_some_and(|p| p.split(' ').count() > 5)
        })
        .count();
    assert!(lines >= 3, "loader, trainer and occupancy lines: {lines}");
    let fetches = doc
        .descendants()
        .filter(|n| n.attribute("src").is_some() || n.tag_name().name() == "link")
        .count();
    assert_eq!(fetches, 0, "self-contained: nothing fetched from elsewhere");
    assert!(
        html.contains("2x16x16") && html.contains("barlow-twins") && html.contains("batch size"),
        "the run's geometry and recipe"
    );
    assert_eq!(profile["geometry"]["views"], "2x16x16");
    let groups = profile["loader"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "one view group: {groups:?}");
    assert!(
        groups[0]["ms_per_sample"].as_f64().unwrap() > 0.0,
        "its views took time"
    );
    assert!(profile["geometry"]["loader_command"]
        .as_str()
        .is_some_and(|c| c.contains("--shm")));

    let Some(png) = screenshot_if_chromium(report, dir, (900, 2400)) else {
        return;
    };
    let verdict_colour = if verdict == "input-bound" {
        WAITING
    } else {
        GOOD
    };
    for (what, rgb) in [
        ("the loader's line and stage bars", LOADER),
        ("the trainer's line and compute bar", TRAINER),
        ("the occupancy line", OCCUPANCY),
        ("the verdict banner and strip", verdict_colour),
    ] {
        let n = pixels_of(&png, rgb);
        assert!(n > 300, "{what}: {n} pixels of {rgb:?} in the screenshot");
    }
}

// The report's series colours (loader/src/profile/plot.rs).
const TRAINER: [u8; 3] = [31, 119, 180];
const LOADER: [u8; 3] = [255, 127, 14];
const OCCUPANCY: [u8; 3] = [148, 103, 189];
const WAITING: [u8; 3] = [214, 39, 40];
const GOOD: [u8; 3] = [44, 160, 44];

/// Pixels of a PNG within a few levels of `rgb`.
fn pixels_of(png: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3 && info.bit_depth == png::BitDepth::Eight);
    buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|px| (0..3).all(|c| px[c].abs_diff(rgb[c]) <= 4))
        .count()
}

#[test]
fn profile_stages_add_up_and_the_report_is_valid_html_with_one_svg_per_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let report = tmp.path().join("report.html");
    let out = run_with_deadline(
        Command::new(bin("loader"))
            .arg("profile")
            .arg("--dir")
            .arg(&data)
            .args([
                "--workers",
                "1",
                "--seconds",
                "3",
                "--batch-size",
                "4",
                "--image-size",
                "32",
                "--target",
                "500",
                "--json",
            ])
            .arg("--report")
            .arg(&report),
        LIMIT,
    );
    assert_succeeded("loader profile", &out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wall = m["wall_s"].as_f64().unwrap();
    let stages: f64 = m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seconds"].as_f64().unwrap())
        .sum();
    assert!(
        (stages - wall).abs() <= 0.1 * wall,
        "with one worker the stages ({stages:.3}s) add up to the wall time ({wall:.3}s)"
    );
    assert!(m["pairs"].as_u64().unwrap() > 0);
    let cores = m["cores_for_target"].as_f64().unwrap();
    let per_core = m["pairs_per_cpu_s"].as_f64().unwrap();
    assert!((cores - 500.0 / per_core).abs() < 1e-6);

    let html = std::fs::read_to_string(&report).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&html, options).expect("the report is well-formed");
    let svgs = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "svg")
        .count();
    assert_eq!(svgs, 3, "stage breakdown, throughput and cores busy");
    assert!(html.contains("write+solarize"), "the stage table");
    assert!(
        m["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["busy_cores"].as_f64().unwrap() > 0.0),
        "the timeline records busy cores"
    );
    let fetches = doc
        .descendants()
        .filter(|n| n.attribute("src").is_some() || n.tag_name().name() == "link")
        .count();
    assert_eq!(fetches, 0, "self-contained: nothing fetched from elsewhere");
    screenshot_if_chromium(&report, tmp.path(), (900, 1600));
}

/// Where Debian's chromium is installed (CI installs it), the report renders to a non-blank PNG
/// (returned).
fn screenshot_if_chromium(report: &Path, dir: &Path, (w, h): (u32, u32)) -> Option<PathBuf> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("chromium not installed: screenshot check skipped");
        return None;
    }
    let png = report.with_extension("png");
    let out = run_with_deadline(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--window-size={w},{h}"))
            .arg(format!(
                "--user-data-dir={}",
                dir.join("chromium-profile").display()
            ))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", report.display())),
        LIMIT,
    );
    assert_succeeded("chromium", &out);
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "a rendered page, {} bytes",
        bytes.len()
    );
    Some(png)
}
