//! Bad inputs and dying processes (issue 8), with the real binaries.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use barlow_tests::{
    bad_corpus, bin, digest_trainer, loader_feeding, make_demo, ring_in, run_with_deadline, signal,
    wait_with_deadline,
};

const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn bad_inputs_are_skipped_counted_and_named_never_a_panic() {
    bad_inputs_with("turbo");
}

/// zune-jpeg panics on one of the files: the guard turns it into a skipped file.
#[test]
fn bad_inputs_with_zune_are_skipped_too_and_its_panic_is_caught() {
    bad_inputs_with("zune");
}

fn bad_inputs_with(decoder: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = bad_corpus(tmp.path(), decoder);
    let ring = ring_in(tmp.path(), "bad");
    let report = tmp.path().join("bad-files.tsv");
    let loader = loader_feeding(&corpus.root, &ring)
        .args(["--batch-size", "4", "--image-size", "16", "--epochs", "3"])
        .args(["--decoder", decoder])
        .arg("--bad-files")
        .arg(&report)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trainer = run_with_deadline(&mut digest_trainer(&ring), LIMIT);
    let loader = wait_with_deadline(loader, LIMIT);
    let err = String::from_utf8_lossy(&loader.stderr);
    assert!(
        loader.status.success(),
        "exit 0 while good images exist: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(trainer.status.success());
    let listed = std::fs::read_to_string(&report).unwrap();
    for name in &corpus.bad {
        assert!(
            listed.contains(name.as_str()),
            "{name} named in the report:\n{listed}"
        );
        assert!(
            err.contains(name.as_str()),
            "{name} named in the summary:\n{err}"
        );
    }
    for name in &corpus.good {
        assert!(
            !listed.contains(name.as_str()),
            "{name} must decode:\n{listed}"
        );
    }
    assert!(
        listed.contains("above the limit"),
        "the huge headers are refused by the pixel cap:\n{listed}"
    );
    assert!(
        err.contains(&format!("{} of", corpus.bad.len())),
        "counted: {err}"
    );
    assert!(
        err.contains("dangling.JPEG") && err.contains("broken symlink"),
        "the scan names the dangling link: {err}"
    );
}

#[test]
fn a_folder_without_usable_images_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("nothing");
    std::fs::create_dir_all(root.join("cls")).unwrap();
    for i in 0..6 {
        std::fs::write(root.join("cls").join(format!("{i}.JPEG")), b"junk").unwrap();
    }
    let out = run_with_deadline(
        loader_feeding(&root, &ring_in(tmp.path(), "none")).args(["--batch-size", "2"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could be decoded"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::remove_dir_all(root.join("cls")).unwrap();
    std::fs::create_dir_all(root.join("cls")).unwrap();
    let out = run_with_deadline(Command::new(bin("loader")).arg("--dir").arg(&root), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no image files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_that_is_not_a_ring_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("precious.txt");
    std::fs::write(&path, b"a user's file, given as --shm by mistake").unwrap();
    let shm = path.display().to_string();
    let out = run_with_deadline(
        Command::new(bin("trainer")).args(["--shm", &shm, "--wait", "1"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a barlow ring"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = make_demo(tmp.path(), 2, 4);
    let out = run_with_deadline(&mut loader_feeding(&data, &shm), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"a user's file, given as --shm by mistake"
    );
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn steps(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_killed_trainer_is_noticed_and_a_new_one_continues_losing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let ring = ring_in(tmp.path(), "retrainer");
    let loader = loader_feeding(&data, &ring)
        .args([
            "--batch-size",
            "4",
            "--image-size",
            "16",
            "--steps",
            "40",
            "--slots",
            "4",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = Command::new(bin("trainer"))
        .args([
            "--shm",
            &ring,
            "--wait",
            "60",
            "--dry-run",
            "--digest",
            "--throttle-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(&first, libc::SIGKILL);
    let first = first.wait_with_output().unwrap();
    let seen_first = steps(&first.stdout);
    assert!(
        !seen_first.is_empty(),
        "the first trainer took some batches"
    );

    // With no trainer the loader fills the ring and then sleeps: it must not spin a core.
    std::thread::sleep(Duration::from_millis(1500));
    let cpu0 = cpu_seconds(loader.id());
    std::thread::sleep(Duration::from_secs(2));
    let idle_cpu = cpu_seconds(loader.id()) - cpu0;
    assert!(
        idle_cpu < 0.5,
        "loader used {idle_cpu:.2} CPU-s in 2 s while the ring was full"
    );

    let second = run_with_deadline(&mut digest_trainer(&ring), LIMIT);
    let loader = wait_with_deadline(loader, LIMIT);
    let err = String::from_utf8_lossy(&loader.stderr);
    assert!(loader.status.success(), "{err}");
    assert!(
        err.contains("is gone"),
        "the loader says the trainer died: {err}"
    );
    let seen_second = steps(&second.stdout);
    let last_first = *seen_first.last().unwrap();
    assert!(
        seen_second[0] <= last_first + 1,
        "continues from the next unconsumed batch: {seen_first:?} then {seen_second:?}"
    );
    let mut all: Vec<u64> = seen_first.iter().chain(&seen_second).copied().collect();
    all.dedup();
    assert_eq!(all, (0..40).collect::<Vec<u64>>(), "no batch lost");
    assert!(!Path::new(&ring).exists());
}
