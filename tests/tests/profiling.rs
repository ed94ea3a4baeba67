//! Where the time goes (issue 7): verdicts from both sides, `loader stat`, `loader profile`.

use std::process::{Command, Stdio};
use std::time::Duration;

use barlow_tests::{
    assert_succeeded, bin, loader_feeding, make_demo, ring_in, run_with_deadline,
    wait_with_deadline,
};

const LIMIT: Duration = Duration::from_secs(300);

/// Runs a loader and a dry-run trainer with the given extra arguments and a `loader stat` beside
/// them; returns (loader stderr, trainer stderr, stat JSON lines).
fn run_pair(
    loader_extra: &[&str],
    trainer_extra: &[&str],
    tag: &str,
) -> (String, String, Vec<serde_json::Value>) {
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
            "30",
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
    let trainer = wait_with_deadline(trainer, LIMIT);
    let loader = wait_with_deadline(loader, LIMIT);
    assert!(loader.status.success() && trainer.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&loader.stdout).expect("loader --json prints its summary");
    assert_eq!(summary["batches"], 30);
    let verdict = summary["verdict"].as_str().unwrap().to_string();
    let stderr = String::from_utf8_lossy(&loader.stderr);
    assert!(
        stderr.contains(&format!("verdict: {verdict}")),
        "the JSON and the text agree: {stderr}"
    );
    assert_succeeded("loader stat", &stat);
    let lines = String::from_utf8_lossy(&stat.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("stat --json prints JSON lines"))
        .collect();
    (
        String::from_utf8_lossy(&loader.stderr).into_owned(),
        String::from_utf8_lossy(&trainer.stderr).into_owned(),
        lines,
    )
}

fn majority(lines: &[serde_json::Value], verdict: &str) -> bool {
    let hits = lines.iter().filter(|l| l["verdict"] == verdict).count();
    2 * hits > lines.len()
}

#[test]
fn a_slow_trainer_is_compute_bound() {
    let (loader, trainer, stat) = run_pair(&[], &["--throttle-ms", "150"], "slowtrainer");
    assert!(trainer.contains("compute-bound"), "{trainer}");
    assert!(loader.contains("verdict: compute-bound"), "{loader}");
    assert!(majority(&stat, "compute-bound"), "{stat:?}");
    for l in &stat {
        assert!(
            l["occupancy"].as_f64().unwrap() >= 0.5,
            "a slow trainer keeps the ring full: {l}"
        );
    }
}

#[test]
fn a_slow_loader_is_input_bound() {
    let (loader, trainer, stat) = run_pair(&["--throttle-ms", "150"], &[], "slowloader");
    assert!(trainer.contains("input-bound"), "{trainer}");
    assert!(loader.contains("verdict: input-bound"), "{loader}");
    assert!(majority(&stat, "input-bound"), "{stat:?}");
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
    screenshot_if_chromium(&report, tmp.path());
}

/// Where Debian's chromium is installed (CI installs it), the report renders to a non-blank PNG.
fn screenshot_if_chromium(report: &std::path::Path, dir: &std::path::Path) {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("chromium not installed: screenshot check skipped");
        return;
    }
    let png = dir.join("report.png");
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
                "--window-size=900,1600",
            ])
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
}
