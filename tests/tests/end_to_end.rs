//! The real `loader` and `trainer` binaries, run as separate processes against each other.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use barlow_tests::{
    assert_succeeded, bin, json_field, loader_feeding, make_demo, ring_in, run_with_deadline,
    signal, wait_for_ring, wait_with_deadline,
};

const LIMIT: Duration = Duration::from_secs(600);

#[test]
fn loader_and_trainer_train_on_demo_data_and_the_loss_falls() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 4, 16);
    let ring = ring_in(tmp.path(), "e2e");
    let loader = loader_feeding(&data, &ring)
        .args([
            "--steps",
            "32",
            "--batch-size",
            "32",
            "--image-size",
            "32",
            "--workers",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trainer = run_with_deadline(
        Command::new(bin("trainer")).args(["--shm", &ring, "--wait", "120", "--print-freq", "1"]),
        LIMIT,
    );
    let loader = wait_with_deadline(loader, LIMIT);
    let trainer_err = String::from_utf8_lossy(&trainer.stderr);
    assert!(trainer.status.success(), "trainer failed: {trainer_err}");
    assert_succeeded("loader", &loader);
    let losses = json_field::<f64>(&trainer.stdout, "loss");
    assert_eq!(
        losses.len(),
        32,
        "one loss per step; stdout:\n{}",
        String::from_utf8_lossy(&trainer.stdout)
    );
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    // Means over 8 steps: single steps are noisy (random crops of a 64-image dataset).
    let head: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let tail: f64 = losses[losses.len() - 8..].iter().sum::<f64>() / 8.0;
    assert!(
        tail < head * 0.9,
        "loss did not fall: first {head:.3}, last {tail:.3}: {losses:?}"
    );
    assert!(
        !Path::new(&ring).exists(),
        "the loader removes its ring on exit"
    );
}

#[test]
fn trainer_reports_a_killed_loader_instead_of_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let ring = ring_in(tmp.path(), "kill");
    let mut loader = loader_feeding(&data, &ring)
        .args([
            "--steps",
            "100000",
            "--batch-size",
            "4",
            "--image-size",
            "32",
            "--workers",
            "1",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let trainer = Command::new(bin("trainer"))
        .args(["--shm", &ring, "--wait", "120", "--print-freq", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the two get going, then kill -9 the loader.
    wait_for_ring(&ring, &mut loader, LIMIT);
    std::thread::sleep(Duration::from_secs(2));
    signal(&loader, libc::SIGKILL);
    let _ = loader.wait();
    let killed_at = Instant::now();
    let out = wait_with_deadline(trainer, LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "trainer must fail when its producer dies: {err}"
    );
    assert!(
        err.contains("died") || err.contains("gone"),
        "says what happened: {err}"
    );
    // Generous bound (the design target is 2 s): the point is that it does not hang.
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "noticed too late"
    );
}

#[test]
fn loader_removes_its_ring_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let ring = ring_in(tmp.path(), "term");
    let mut loader = loader_feeding(&data, &ring)
        .args(["--steps", "1000", "--batch-size", "4", "--image-size", "32"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_ring(&ring, &mut loader, LIMIT);
    // The ring fills (no trainer) and the loader waits for a free slot: it must still stop cleanly.
    std::thread::sleep(Duration::from_millis(500));
    signal(&loader, libc::SIGTERM);
    let out = wait_with_deadline(loader, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(&ring).exists(), "ring removed after SIGTERM");
}

#[test]
fn clear_errors_for_a_missing_folder_and_a_bad_ring_name() {
    let out = run_with_deadline(
        Command::new(bin("loader")).args(["--dir", "/nonexistent/imagenet"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/imagenet"),
        "names the folder: {err}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 4);
    let out = run_with_deadline(
        Command::new(bin("loader"))
            .arg("--dir")
            .arg(&data)
            .args(["--shm", "../etc/passwd"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("A-Za-z0-9"),
        "states the naming rule"
    );
}

#[test]
fn a_resumed_trainer_says_how_to_restart_the_loader_and_continues_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 16);
    let ckpt = tmp.path().join("run");
    let train = |tag: &str, loader_args: &[&str], resume: bool| {
        let ring = ring_in(tmp.path(), tag);
        let loader = loader_feeding(&data, &ring)
            .args(["--batch-size", "8", "--image-size", "32", "--seed", "3"])
            .args(loader_args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut trainer = Command::new(bin("trainer"));
        trainer
            .args([
                "--shm",
                &ring,
                "--wait",
                "60",
                "--print-freq",
                "1",
                "--epochs",
                "5",
            ])
            .arg("--checkpoint-dir")
            .arg(&ckpt);
        if resume {
            trainer.arg("--resume");
        }
        let out = run_with_deadline(&mut trainer, LIMIT);
        let loader = wait_with_deadline(loader, LIMIT);
        assert_succeeded("loader", &loader);
        assert_succeeded("trainer", &out);
        out
    };
    let first = train("first", &["--steps", "6"], false);
    assert_eq!(
        json_field::<u64>(&first.stdout, "step"),
        (0..6).collect::<Vec<_>>()
    );
    let second = train("second", &["--steps", "10", "--start-step", "6"], true);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("--seed 3") && err.contains("--start-step 6"),
        "the hint names the loader command: {err}"
    );
    assert_eq!(
        json_field::<u64>(&second.stdout, "step"),
        (6..10).collect::<Vec<_>>(),
        "{err}"
    );
}

/// A multi-crop ring (loader --recipe dino): the Barlow Twins trainer refuses it, saying what the
/// ring holds and what to run instead; `trainer --dry-run` reads it, and a bad recipe file is
/// refused before any ring exists.
#[test]
fn the_trainer_refuses_a_multi_crop_ring_and_a_bad_recipe_never_makes_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let ring = ring_in(tmp.path(), "dino");
    let dino = [
        "--recipe",
        "dino",
        "--image-size",
        "32",
        "--local-size",
        "16",
    ];
    let start = |extra: &[&str]| {
        let mut cmd = loader_feeding(&data, &ring);
        cmd.args(dino).args(["--batch-size", "4", "--steps", "2"]);
        cmd.args(extra).stderr(Stdio::null()).spawn().unwrap()
    };
    let mut loader = start(&[]);
    wait_for_ring(&ring, &mut loader, LIMIT);
    let out = run_with_deadline(
        Command::new(bin("trainer")).args(["--shm", &ring, "--arch", "tiny", "--steps", "1"]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("dino recipe's views (10 per sample: 2x32x32 + 8x16x16")
            && err.contains("--recipe barlow-twins"),
        "{err}"
    );
    let _ = loader.kill();
    let _ = loader.wait();
    let _ = std::fs::remove_file(&ring);

    let mut loader = start(&[]);
    wait_for_ring(&ring, &mut loader, LIMIT);
    let out = run_with_deadline(&mut barlow_tests::digest_trainer(&ring), LIMIT);
    assert_succeeded("trainer --dry-run on a dino ring", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("step ")
            .count(),
        2
    );
    let _ = wait_with_deadline(loader, LIMIT);

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"views": [{"size": 32, "count": 1000}]}"#).unwrap();
    let out = run_with_deadline(
        loader_feeding(&data, &ring)
            .arg("--recipe-config")
            .arg(&bad),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.json") && err.contains("views[0].count"),
        "{err}"
    );
    assert!(!Path::new(&ring).exists(), "nothing written to a ring");
}
