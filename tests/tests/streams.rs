//! Reproducible, resumable and sharded data streams (issue 9), from a folder and from WebDataset
//! shards (issue 28), checked with `trainer --dry-run
//! --digest`, which prints one hash per batch of its pixels, labels and dataset indices.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use barlow_tests::{
    assert_succeeded, bin, digest_trainer, loader_feeding, make_demo, ring_in, run_with_deadline,
    wait_with_deadline,
};

const LIMIT: Duration = Duration::from_secs(300);

/// Runs a loader with `loader_args` into a fresh ring and a digesting dry-run trainer; returns the
/// trainer's `step <n> <hash>` lines (without the total).
fn digests(data: &Path, tmp: &Path, tag: &str, loader_args: &[&str]) -> Vec<String> {
    let ring = ring_in(tmp, tag);
    digests_of(loader_feeding(data, &ring), &ring, loader_args)
}

/// [`digests`] for a loader command already given its source and ring.
fn digests_of(mut loader: Command, ring: &str, loader_args: &[&str]) -> Vec<String> {
    let loader = loader
        .args(["--batch-size", "8", "--image-size", "24"])
        .args(loader_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = run_with_deadline(&mut digest_trainer(ring), LIMIT);
    let loader = wait_with_deadline(loader, LIMIT);
    assert_succeeded("loader", &loader);
    assert_succeeded("trainer", &out);
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        lines.last().is_some_and(|l| l.starts_with("total ")),
        "{lines:?}"
    );
    lines[..lines.len() - 1].to_vec()
}

#[test]
fn resumed_run_and_worker_count_give_byte_identical_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 3, 12); // 36 images, 4 steps per epoch at batch 8
    let full = digests(
        &data,
        tmp.path(),
        "full",
        &["--steps", "10", "--workers", "2", "--seed", "5"],
    );
    assert_eq!(full.len(), 10);
    assert!(
        full[0].starts_with("step 0 ") && full[9].starts_with("step 9 "),
        "{full:?}"
    );
    let distinct: std::collections::HashSet<_> = full.iter().map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(distinct.len(), 10, "every batch differs: {full:?}");

    // Stopped after step 5 and resumed at the start of step 6 (epoch 1, step 2 of it).
    let resumed = digests(
        &data,
        tmp.path(),
        "resumed",
        &[
            "--steps",
            "10",
            "--workers",
            "2",
            "--seed",
            "5",
            "--start-epoch",
            "1",
            "--start-step",
            "2",
        ],
    );
    assert_eq!(resumed, full[6..].to_vec());

    let one_worker = digests(
        &data,
        tmp.path(),
        "one",
        &["--steps", "10", "--workers", "1", "--seed", "5"],
    );
    assert_eq!(one_worker, full, "1 vs 2 workers");

    let other_seed = digests(
        &data,
        tmp.path(),
        "seed",
        &["--steps", "10", "--workers", "2", "--seed", "6"],
    );
    assert_ne!(other_seed[0], full[0], "the seed matters");
}

#[test]
fn one_loader_feeds_two_rings_each_with_its_own_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 16); // 32 images: 16 per rank, 2 steps per epoch at batch 8
    let (r0, r1) = (ring_in(tmp.path(), "r0"), ring_in(tmp.path(), "r1"));
    let loader = loader_feeding(&data, &format!("{r0},{r1}"))
        .args(["--batch-size", "8", "--image-size", "24", "--epochs", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trainers: Vec<_> = [&r0, &r1]
        .iter()
        .map(|ring| {
            Command::new(bin("trainer"))
                .args(["--shm", ring, "--wait", "60", "--dry-run", "--digest"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = trainers
        .into_iter()
        .map(|t| wait_with_deadline(t, LIMIT))
        .collect();
    let loader = wait_with_deadline(loader, LIMIT);
    let err = String::from_utf8_lossy(&loader.stderr);
    assert!(loader.status.success(), "{err}");
    assert!(
        err.contains("rank 0 of 2") && err.contains("rank 1 of 2"),
        "{err}"
    );
    for out in &outs {
        assert_succeeded("trainer", out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            3,
            "2 batches + total"
        );
    }
    assert_ne!(
        outs[0].stdout, outs[1].stdout,
        "the two ranks get different data"
    );
}

#[test]
fn launcher_environment_sets_the_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 2, 8);
    let ring = ring_in(tmp.path(), "env");
    let loader = loader_feeding(&data, &ring)
        .args(["--batch-size", "4", "--image-size", "16", "--epochs", "1"])
        .env("SLURM_PROCID", "1")
        .env("SLURM_NTASKS", "4")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = run_with_deadline(&mut digest_trainer(&ring), LIMIT);
    let loader = wait_with_deadline(loader, LIMIT);
    let err = String::from_utf8_lossy(&loader.stderr);
    assert!(err.contains("rank 1 of 4"), "{err}");
    // 16 images / 4 ranks = 4 per rank = one batch of 4.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "1 batch + total"
    );
}

/// The demo folder as WebDataset shards of 10 samples (`KEY.jpg` + `KEY.cls`, in the folder's
/// sample order), made with GNU tar; returns the brace SPEC naming them.
fn shards_of(data: &Path, tmp: &Path) -> String {
    let stage = tmp.join("stage");
    let shards = tmp.join("shards");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::create_dir_all(&shards).unwrap();
    let mut classes: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut members = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let key = format!("{:05}", members.len() / 2);
            std::fs::copy(&file, stage.join(format!("{key}.jpg"))).unwrap();
            std::fs::write(stage.join(format!("{key}.cls")), label.to_string()).unwrap();
            members.extend([format!("{key}.jpg"), format!("{key}.cls")]);
        }
    }
    let chunks: Vec<_> = members.chunks(20).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let status = Command::new("tar")
            .arg("-cf")
            .arg(shards.join(format!("part-{i:03}.tar")))
            .arg("-C")
            .arg(&stage)
            .args(chunk.iter())
            .status()
            .expect("running tar");
        assert!(status.success());
    }
    format!(
        "{}/part-{{000..{:03}}}.tar",
        shards.display(),
        chunks.len() - 1
    )
}

#[test]
fn shards_give_the_folders_digests_resumed_and_per_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_demo(tmp.path(), 3, 12); // 36 images, 4 steps per epoch at batch 8
    let spec = shards_of(&data, tmp.path());
    let wds = |tag: &str, args: &[&str]| {
        let ring = ring_in(tmp.path(), tag);
        let mut cmd = Command::new(bin("loader"));
        cmd.args(["--wds", &spec, "--shm", &ring])
            .env("BARLOW_CACHE_DIR", tmp.path().join("cache"));
        digests_of(cmd, &ring, args)
    };
    let run = ["--steps", "10", "--workers", "2", "--seed", "5"];
    let folder = digests(&data, tmp.path(), "dir", &run);
    assert_eq!(wds("wds", &run), folder, "shards vs folder");
    let resume = [&run[..], &["--start-epoch", "1", "--start-step", "2"]].concat();
    assert_eq!(
        wds("wds-resumed", &resume),
        folder[6..].to_vec(),
        "resumed from the cached index"
    );
    let rank = [
        "--epochs",
        "2",
        "--seed",
        "5",
        "--rank",
        "1",
        "--world-size",
        "2",
    ];
    assert_eq!(
        wds("wds-rank", &rank),
        digests(&data, tmp.path(), "dir-rank", &rank),
        "rank 1 of 2"
    );
}
