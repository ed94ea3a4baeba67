//! Torn-read stress across two processes: this test binary re-runs itself as the producer, and
//! the parent consumes >= 100,000 batches, checking each one's checksum and content.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use shared::{fnv1a64, Consumer, Geometry, Producer, RingInfo};

const BATCHES: u64 = 100_000;
const ROLE: &str = "BARLOW_STRESS_PRODUCER_RING";

fn geometry() -> Geometry {
    Geometry::pairs(8, 4, 3, 8, 8)
}

/// The payload of step `s`: every byte a function of (s, position), so a batch mixing two steps
/// fails the content check even if its checksum were recomputed.
fn byte(step: u64, i: usize) -> u8 {
    (step.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64 * 31) >> 3) as u8
}

/// Runs only as the child: `cargo test` skips it (ignored), the parent starts it with `--ignored`.
#[test]
#[ignore = "the producer half of two_processes_never_see_a_torn_batch"]
fn producer_child() {
    let Ok(path) = std::env::var(ROLE) else {
        return;
    };
    let mut producer = Producer::create(path.as_ref(), &RingInfo::new(geometry())).unwrap();
    let stop = AtomicBool::new(false);
    for step in 0..BATCHES {
        let mut slot = producer.acquire(&stop).unwrap();
        slot.set_meta(0, step, 4);
        let mut parts = slot.parts_mut();
        for (i, b) in parts.pixels.iter_mut().enumerate() {
            *b = byte(step, i);
        }
        parts
            .labels
            .iter_mut()
            .enumerate()
            .for_each(|(k, l)| *l = (step as u32).wrapping_add(k as u32));
        let sum = fnv1a64(parts.view(0)) ^ fnv1a64(parts.view(1)).rotate_left(1);
        slot.set_checksum(sum);
        slot.publish();
    }
    producer.finish();
    assert!(producer.wait_drained(&stop, Duration::from_secs(600)));
}

/// This test binary as a command; through `BARLOW_TEST_RUNNER` (words split on whitespace, e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu`) where the binary is another architecture's, as
/// `scripts/test-aarch64.sh` sets it: a binary run under qemu-user cannot start itself directly.
fn self_command() -> Command {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("BARLOW_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

#[test]
fn two_processes_never_see_a_torn_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stress.ring");
    let mut child = self_command()
        .args(["--exact", "producer_child", "--ignored", "--nocapture"])
        .env(ROLE, &path)
        .spawn()
        .unwrap();
    let mut consumer = Consumer::attach(&path, Duration::from_secs(120)).unwrap();
    let (mut seen, mut mismatches) = (0u64, 0u64);
    while let Some(batch) = consumer.next().unwrap() {
        assert_eq!(
            batch.step(),
            seen,
            "batches arrive in order, none lost or repeated"
        );
        let sum = fnv1a64(batch.view(0)) ^ fnv1a64(batch.view(1)).rotate_left(1);
        let content_ok = batch
            .group(0)
            .iter()
            .enumerate()
            .all(|(i, &b)| b == byte(seen, i))
            && batch
                .labels()
                .iter()
                .enumerate()
                .all(|(k, &l)| l == (seen as u32).wrapping_add(k as u32));
        if sum != batch.checksum() || !content_ok {
            mismatches += 1;
        }
        seen += 1;
    }
    assert!(
        child.wait().unwrap().success(),
        "the producer process failed"
    );
    assert_eq!(seen, BATCHES);
    assert_eq!(mismatches, 0);
}
