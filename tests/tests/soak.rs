//! Soak (issue 8): the real loader runs 10 epochs of the demo data into a ring drained by
//! `trainer --dry-run`, and its resident memory must stay flat once the first epoch is done.
//!
//! Long (minutes), so `#[ignore]`d: run it with `scripts/soak.sh`, i.e.
//! `cargo test -p barlow-tests --test soak -- --ignored --nocapture`.
//!
//! The test process opens the ring read-only with `shared::Observer` and every 20 ms reads the
//! number of published batches and the loader's `VmRSS` / `VmHWM` from `/proc/<pid>/status`. A
//! sample belongs to epoch `e` (1-based) while the loader is writing that epoch's batches, i.e.
//! while `(e - 1) * steps_per_epoch < written <= e * steps_per_epoch`; "RSS at the end of epoch
//! `e`" is the last sample of epoch `e`. The first epoch is the warm-up: it sees every image once,
//! so every per-worker scratch buffer reaches its final size there and the ring's pages are all
//! touched. After it, neither the sampled RSS nor the peak (`VmHWM`, which also catches spikes
//! between samples) may exceed 1.1 x the RSS at the end of epoch 1.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use barlow_tests::{bin, loader_feeding, make_demo, ring_in, wait_with_deadline};
use shared::Observer;

const EPOCHS: u64 = 10;
/// Allowed growth after the first epoch.
const TOLERANCE: f64 = 1.10;
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// A hang guard for the whole run, not a speed assertion.
const LIMIT: Duration = Duration::from_secs(40 * 60);

/// `VmRSS` and `VmHWM` of `pid` in KiB; `None` once the process is gone (or a zombie, which has no
/// memory lines).
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    written: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

#[test]
#[ignore = "long: 10 epochs of the demo data; run with scripts/soak.sh"]
fn loader_rss_stays_flat_over_ten_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    // The demo dataset at its default size (10 classes x 60 JPEGs, 160..600 px sides).
    let data = make_demo(tmp.path(), 10, 60);
    let ring = ring_in(tmp.path(), "soak");
    let loader_log = tmp.path().join("loader.stderr");
    let trainer_log = tmp.path().join("trainer.stderr");
    let started = Instant::now();
    let loader = loader_feeding(&data, &ring)
        .args(["--epochs", &EPOCHS.to_string()])
        .args(["--batch-size", "16", "--image-size", "64"])
        .stdout(Stdio::null())
        .stderr(File::create(&loader_log).unwrap())
        .spawn()
        .expect("starting the loader");
    let pid = loader.id();
    let trainer = Command::new(bin("trainer"))
        .args(["--shm", &ring, "--wait", "120", "--dry-run"])
        .stdout(Stdio::null())
        .stderr(File::create(&trainer_log).unwrap())
        .spawn()
        .expect("starting the trainer");

    let observer = Observer::open_wait(Path::new(&ring), Duration::from_secs(120))
        .expect("the loader's ring appears");
    let steps_per_epoch = observer.info().steps_per_epoch;
    let total = observer.info().total_steps;
    assert!(steps_per_epoch > 0, "{:?}", observer.info());
    assert_eq!(total, EPOCHS * steps_per_epoch, "{:?}", observer.info());

    let mut samples: Vec<Sample> = Vec::new();
    loop {
        // Batches first, memory second: the sample is attributed to an epoch no later than the
        // one the memory was measured in.
        let written = observer.snapshot().written;
        let Some((rss_kib, hwm_kib)) = memory_kib(pid) else {
            break; // the loader has exited
        };
        samples.push(Sample {
            written,
            rss_kib,
            hwm_kib,
        });
        if started.elapsed() > LIMIT {
            break; // wait_with_deadline below reports the hang
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let trainer = wait_with_deadline(trainer, LIMIT.saturating_sub(started.elapsed()));
    let loader = wait_with_deadline(loader, Duration::from_secs(60));
    let elapsed = started.elapsed();
    let log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        loader.status.success(),
        "loader failed: {}",
        log(&loader_log)
    );
    assert!(
        trainer.status.success(),
        "trainer failed: {}",
        log(&trainer_log)
    );

    // Per epoch: (samples, RSS at its end, max RSS, max HWM).
    let epoch_of = |written: u64| written.saturating_sub(1) / steps_per_epoch + 1;
    let mut table = Vec::new();
    for e in 1..=EPOCHS {
        let in_epoch: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.written > 0 && epoch_of(s.written) == e)
            .collect();
        assert!(
            !in_epoch.is_empty(),
            "no RSS sample during epoch {e} ({} samples in all)",
            samples.len()
        );
        let end = in_epoch.last().unwrap().rss_kib;
        let max = in_epoch.iter().map(|s| s.rss_kib).max().unwrap();
        let hwm = in_epoch.iter().map(|s| s.hwm_kib).max().unwrap();
        table.push((e, in_epoch.len(), end, max, hwm));
    }
    let baseline = table[0].2;
    println!(
        "soak: {EPOCHS} epochs x {steps_per_epoch} batches of 16 (64 px), {} samples, {:.1} s",
        samples.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "epoch  samples  RSS at end (MiB)  max RSS (MiB)  peak VmHWM (MiB)  end / epoch-1 end"
    );
    for &(e, n, end, max, hwm) in &table {
        println!(
            "{e:>5}  {n:>7}  {:>16.1}  {:>13.1}  {:>16.1}  {:>17.3}",
            end as f64 / 1024.0,
            max as f64 / 1024.0,
            hwm as f64 / 1024.0,
            end as f64 / baseline as f64
        );
    }
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| epoch_of(s.written) >= 2)
        .collect();
    let max_after = after.iter().map(|s| s.rss_kib).max().unwrap();
    let hwm_after = after.iter().map(|s| s.hwm_kib).max().unwrap();
    let limit = (baseline as f64 * TOLERANCE) as u64;
    println!(
        "RSS at end of epoch 1: {:.1} MiB; after it: max RSS {:.1} MiB ({:.3}x), peak VmHWM {:.1} MiB ({:.3}x); limit {:.1} MiB",
        baseline as f64 / 1024.0,
        max_after as f64 / 1024.0,
        max_after as f64 / baseline as f64,
        hwm_after as f64 / 1024.0,
        hwm_after as f64 / baseline as f64,
        limit as f64 / 1024.0
    );
    assert!(
        max_after <= limit,
        "loader RSS grew after the first epoch: {max_after} KiB > 1.1 x {baseline} KiB"
    );
    assert!(
        hwm_after <= limit,
        "loader peak RSS (VmHWM) grew after the first epoch: {hwm_after} KiB > 1.1 x {baseline} KiB"
    );
}
