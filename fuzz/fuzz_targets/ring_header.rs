//! Arbitrary bytes written as a ring file, then attached to as a consumer and opened as an
//! observer: each must return an error or a valid ring, never panic, hang, or touch memory outside
//! the mapping.
//!
//! Input: byte 0 chooses how long the file is (so that the fuzzer can reach the paths behind the
//! size check); the rest is the file's content from offset 0:
//! * `mode % 4 == 0`: the file is exactly the content (truncated rings, junk, empty files);
//! * `1`: padded with zeros (or cut) to the `file_bytes` its header declares, when that is at most
//!   [`MAX_FILE`], else as 0;
//! * `2`: as 1, plus or minus a few pages (byte 1 of the content's tail picks how many);
//! * `3`: no file at all (the path does not exist).

#![no_main]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shared::{Consumer, Observer, RingError, RingState, HEADER_BYTES};

/// The largest ring file the harness makes (sparse; only pages touched cost memory).
const MAX_FILE: u64 = 64 << 20;
/// Offset of `file_bytes` in the header (see shared/src/layout.rs).
const FILE_BYTES_AT: usize = 56;

fn ring_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // tmpfs when there is one, like a real ring; one file per fuzzing process (-fork/-jobs).
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("barlow-fuzz-ring-{}", std::process::id()))
    })
}

fn write_ring(mode: u8, content: &[u8]) -> bool {
    let path = ring_path();
    let _ = std::fs::remove_file(path);
    if mode % 4 == 3 {
        return false;
    }
    let declared = content
        .get(FILE_BYTES_AT..FILE_BYTES_AT + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let len = match (mode % 4, declared) {
        (1, Some(d)) if d <= MAX_FILE => d,
        (2, Some(d)) if d <= MAX_FILE => {
            let pages = i64::from(*content.last().unwrap_or(&0) as i8 % 4);
            (d as i64 + pages * 4096).max(0) as u64
        }
        _ => content.len() as u64,
    };
    let mut f: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .expect("creating the ring file");
    let keep = (len as usize).min(content.len());
    f.write_all(&content[..keep])
        .expect("writing the ring file");
    f.set_len(len).expect("sizing the ring file");
    true
}

/// Reads every part of a batch the API hands out and checks it against the declared geometry.
fn check_batch(consumer: &mut Consumer) -> Result<bool, RingError> {
    let g = consumer.info().geometry;
    let file_len = consumer.info().geometry.file_bytes();
    let stop = AtomicBool::new(true); // never wait: Interrupted instead
    let Some(batch) = consumer.next_until(&stop)? else {
        return Ok(false);
    };
    assert!(batch.count() <= g.batch_size as usize);
    let (labels, indices) = (batch.labels(), batch.indices());
    let (a, b) = (batch.view(0), batch.view(g.views() - 1));
    assert_eq!(labels.len(), batch.count());
    assert_eq!(indices.len(), batch.count());
    assert_eq!(a.len(), g.batch_size as usize * g.sample_bytes(0));
    assert_eq!(b.len(), g.batch_size as usize * g.sample_bytes(g.groups.len() - 1));
    // Every slice lies inside one file-sized span (the mapping) and is really mapped: touch the
    // first and last byte of each.
    let spans = [
        (labels.as_ptr() as usize, std::mem::size_of_val(labels)),
        (indices.as_ptr() as usize, std::mem::size_of_val(indices)),
        (a.as_ptr() as usize, a.len()),
        (b.as_ptr() as usize, b.len()),
    ];
    let lo = spans.iter().map(|s| s.0).min().unwrap();
    let hi = spans.iter().map(|s| s.0 + s.1).max().unwrap();
    assert!(hi - lo <= file_len - HEADER_BYTES);
    let mut sum = labels.iter().map(|&l| l as u64).sum::<u64>();
    sum = sum.wrapping_add(indices.iter().copied().fold(0u64, u64::wrapping_add));
    for v in [a, b] {
        sum = sum.wrapping_add(v[0] as u64 + v[v.len() - 1] as u64);
    }
    std::hint::black_box((sum, batch.epoch(), batch.step(), batch.checksum()));
    batch.release();
    Ok(true)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, content)) = data.split_first() else {
        return;
    };
    write_ring(mode, content);
    let path = ring_path();

    // The read-only observer (`loader stat`). `open` waits up to 1 s for an initialising ring;
    // zero here so that an Initialising header costs one probe, not a second per input.
    if let Ok(obs) = Observer::open_wait(path, Duration::ZERO) {
        obs.info()
            .validate()
            .expect("an opened ring has a valid header");
        assert_eq!(
            obs.info().geometry.file_bytes() as u64,
            std::fs::metadata(path).unwrap().len()
        );
        std::hint::black_box(obs.snapshot());
    }

    // The trainer's side: attach, then take (without waiting) what is published.
    if let Ok(mut consumer) = Consumer::attach(path, Duration::ZERO) {
        consumer
            .info()
            .validate()
            .expect("an attached ring has a valid header");
        std::hint::black_box((consumer.position(), consumer.state() == RingState::Running));
        for _ in 0..3 {
            match check_batch(&mut consumer) {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
    }
    // Leave nothing in /dev/shm when the run ends (a crashing input's file stays, for a look).
    let _ = std::fs::remove_file(path);
});
