//! Behaviour tests for the ring: naming, ordering, wrap-around, blocking, stress, header
//! validation, liveness, ownership, resume and cleanup. No test asserts on speed; sleeps only
//! give another thread the chance to (wrongly) make progress.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use shared::layout::offset;
use shared::{
    fnv1a64, fnv1a64_update, ring_path, stat, Consumer, Geometry, Observer, Opened, Producer,
    ProducerEvent, RingError, RingInfo, RingState, ViewGroup, ViewGroups, FORMAT_VERSION,
    HEADER_BYTES,
};

const WAIT: Duration = Duration::from_secs(5);

fn geom(slots: u32) -> Geometry {
    Geometry::pairs(slots, 4, 3, 5, 7)
}

fn info(slots: u32) -> RingInfo {
    RingInfo {
        dataset_len: 1000,
        steps_per_epoch: 250,
        seed: 42,
        total_steps: 0,
        ..RingInfo::new(geom(slots))
    }
}

fn ring_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let p = dir.path().join(name);
    assert!(p.is_absolute());
    p
}

/// splitmix64: deterministic "random" content from a step number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills a slot with content derived from `step` and publishes it with its checksum.
fn push(p: &mut Producer, step: u64) {
    let stop = AtomicBool::new(false);
    let mut slot = p.acquire(&stop).expect("acquire");
    let count = 1 + (step % 4) as u32;
    slot.set_meta(step / 10, step, count);
    let parts = slot.parts_mut();
    fill(step, parts.labels, parts.indices, parts.pixels);
    let c = checksum(count as usize, parts.labels, parts.indices, parts.pixels);
    slot.set_checksum(c);
    slot.publish();
}

fn fill(step: u64, labels: &mut [u32], indices: &mut [u64], pixels: &mut [u8]) {
    let mut s = mix(step);
    for l in labels.iter_mut() {
        s = mix(s);
        *l = s as u32;
    }
    for i in indices.iter_mut() {
        s = mix(s);
        *i = s;
    }
    for v in pixels.iter_mut() {
        s = mix(s);
        *v = s as u8;
    }
}

fn checksum(count: usize, labels: &[u32], indices: &[u64], pixels: &[u8]) -> u64 {
    let mut h = fnv1a64(&(count as u64).to_le_bytes());
    for l in &labels[..count] {
        h = fnv1a64_update(h, &l.to_le_bytes());
    }
    for i in &indices[..count] {
        h = fnv1a64_update(h, &i.to_le_bytes());
    }
    fnv1a64_update(h, pixels)
}

/// Takes the next batch and checks it is exactly what `push(step)` wrote.
fn pop_expect(c: &mut Consumer, step: u64) {
    let batch = c.next().expect("next").expect("a batch, not end of data");
    assert_eq!(batch.step(), step, "batches out of order");
    assert_eq!(batch.epoch(), step / 10);
    assert_eq!(batch.count(), 1 + (step % 4) as usize);
    let mut labels = vec![0u32; 4];
    let mut indices = vec![0u64; 4];
    let mut pixels = vec![0u8; batch.group(0).len()];
    fill(step, &mut labels, &mut indices, &mut pixels);
    assert_eq!(batch.labels(), &labels[..batch.count()]);
    assert_eq!(batch.indices(), &indices[..batch.count()]);
    assert!(
        batch.group(0) == &pixels[..] && batch.view(0).len() * 2 == pixels.len(),
        "payload of step {step} differs"
    );
    assert_eq!(
        batch.checksum(),
        checksum(
            batch.count(),
            batch.labels(),
            batch.indices(),
            batch.group(0)
        )
    );
}

fn poke_u32(path: &Path, off: usize, v: u32) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), off as u64).unwrap();
}

fn poke_u64(path: &Path, off: usize, v: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), off as u64).unwrap();
}

/// A pid that certainly belongs to no process: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn `true`");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

// ---------------------------------------------------------------- naming

#[test]
fn ring_path_accepts_good_names() {
    for name in [
        "a",
        "barlow",
        "ring-1.shm",
        "A_b.C-9",
        &"x".repeat(64),
        "..a",
        ".hidden",
    ] {
        assert_eq!(
            ring_path(name).unwrap(),
            Path::new("/dev/shm").join(name),
            "{name}"
        );
    }
}

#[test]
fn ring_path_rejects_bad_names() {
    let long = "x".repeat(65);
    for name in [
        "",
        ".",
        "..",
        "a/b",
        "a b",
        "héllo",
        "ring\n",
        "tab\t",
        "a\\b",
        "ring*",
        long.as_str(),
        "./x",
        "../x",
    ] {
        match ring_path(name) {
            Err(RingError::BadName { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(!reason.is_empty());
                let msg = ring_path(name).unwrap_err().to_string();
                assert!(
                    msg.contains("[A-Za-z0-9._-]") && msg.contains("absolute path"),
                    "message states the rule: {msg}"
                );
            }
            other => panic!("{name:?} should be rejected, got {other:?}"),
        }
    }
}

#[test]
fn ring_path_takes_absolute_paths_with_existing_parent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("my ring with spaces");
    assert_eq!(ring_path(p.to_str().unwrap()).unwrap(), p);
    let missing = dir.path().join("no-such-dir").join("ring");
    assert!(matches!(
        ring_path(missing.to_str().unwrap()),
        Err(RingError::BadName { .. })
    ));
    assert!(matches!(ring_path("/"), Err(RingError::BadName { .. })));
    let trailing = format!("{}/", dir.path().display());
    assert!(matches!(
        ring_path(&trailing),
        Err(RingError::BadName { .. })
    ));
    let dotdot = format!("{}/../x", dir.path().display());
    assert!(matches!(ring_path(&dotdot), Err(RingError::BadName { .. })));
}

// ---------------------------------------------------------------- geometry

#[test]
fn geometry_sizes_and_bounds() {
    let g = Geometry::pairs(3, 2, 3, 4, 4);
    g.validate().unwrap();
    assert_eq!(g.sample_bytes(0), 48);
    assert_eq!(g.slot_bytes(), 4096);
    assert_eq!(g.file_bytes(), HEADER_BYTES + 3 * 4096);
    let l = g.slot_layout();
    assert_eq!(
        (l.labels, l.indices, l.view(0), l.view(1), l.view(2)),
        (64, 128, Some((192, 96)), Some((288, 96)), None)
    );
    assert_eq!(l.pixels(), 192..384);

    // Groups follow each other at 64-byte boundaries; views inside a group back to back.
    let multi = Geometry {
        groups: ViewGroups::new(&[
            ViewGroup {
                views: 2,
                height: 5,
                width: 5,
            },
            ViewGroup {
                views: 3,
                height: 2,
                width: 3,
            },
        ]),
        ..g
    };
    multi.validate().unwrap();
    let l = multi.slot_layout();
    assert_eq!(multi.views(), 5);
    assert_eq!(multi.shape(), "2x5x5 + 3x2x3");
    assert_eq!(l.view(1), Some((192 + 150, 150)));
    assert_eq!(l.view(2), Some((192 + 320, 36)));
    assert_eq!(l.view(4), Some((192 + 320 + 72, 36)));
    assert_eq!(l.pixels(), 192..192 + 320 + 108);

    let big = Geometry::pairs(2, 256, 3, 224, 224);
    let l = big.slot_layout();
    assert_eq!(big.slot_bytes() % 4096, 0);
    let view = 256 * big.sample_bytes(0);
    assert!(big.slot_bytes() >= 64 + 256 * 4 + 256 * 8 + 2 * view);
    assert_eq!(l.view(1).unwrap().0, l.view(0).unwrap().0 + view);
    assert!(l.pixels().end <= big.slot_bytes());

    let max = Geometry::pairs(1024, 65536, 4, 8192, 8192);
    max.validate().unwrap(); // no overflow on 64-bit
    for bad in [
        Geometry { slots: 0, ..g },
        Geometry { slots: 1025, ..g },
        Geometry { batch_size: 0, ..g },
        Geometry {
            batch_size: 65537,
            ..g
        },
        Geometry { channels: 0, ..g },
        Geometry { channels: 5, ..g },
        Geometry::pairs(3, 2, 3, 0, 4),
        Geometry::pairs(3, 2, 3, 4, 8193),
        Geometry {
            groups: ViewGroups::new(&[]),
            ..g
        },
        Geometry {
            groups: ViewGroups::new(&[ViewGroup {
                views: 0,
                height: 4,
                width: 4,
            }]),
            ..g
        },
        Geometry {
            groups: ViewGroups::new(&[
                ViewGroup {
                    views: 40,
                    height: 4,
                    width: 4,
                },
                ViewGroup {
                    views: 25,
                    height: 2,
                    width: 2,
                },
            ]),
            ..g
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(RingError::BadGeometry { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn create_rejects_bad_info() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "r");
    let mut i = info(2);
    i.geometry.channels = 0;
    assert!(matches!(
        Producer::create(&p, &i),
        Err(RingError::BadGeometry { .. })
    ));
    let mut i = info(2);
    i.std = [0.2, 0.0, 0.2];
    assert!(matches!(
        Producer::create(&p, &i),
        Err(RingError::BadGeometry { .. })
    ));
    assert!(!p.exists());
}

// ---------------------------------------------------------------- ordering, wrap-around, blocking

#[test]
fn wrap_around_single_thread_keeps_order_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "wrap");
    let mut prod = Producer::create(&p, &info(3)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    assert_eq!(cons.info(), &info(3));
    let total = 30u64;
    let (mut written, mut read) = (0u64, 0u64);
    let mut burst = 1;
    while read < total {
        // Alternate burst sizes 1, 2, 3 so writes and reads wrap at every slot.
        for _ in 0..burst {
            if written < total {
                push(&mut prod, written);
                written += 1;
            }
        }
        while read < written {
            pop_expect(&mut cons, read);
            read += 1;
        }
        burst = burst % 3 + 1;
    }
    assert_eq!((prod.written(), prod.consumed()), (total, total));
    prod.finish();
    assert!(cons.next().unwrap().is_none());
}

#[test]
fn full_ring_interrupts_instead_of_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "full");
    let mut prod = Producer::create(&p, &info(3)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    for s in 0..3 {
        push(&mut prod, s);
    }
    let stop = AtomicBool::new(false);
    let result = thread::scope(|sc| {
        sc.spawn(|| {
            // The consumer never reads; give the producer time to (wrongly) overwrite.
            thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
        });
        prod.acquire(&stop).map(|_| ())
    });
    assert!(matches!(result, Err(RingError::Interrupted)), "{result:?}");
    assert!(prod.stats().get(stat::PRODUCER_WAIT_NS) > 0);
    assert_eq!(prod.written(), 3);
    for s in 0..3 {
        pop_expect(&mut cons, s);
    }
    // Room again: acquire works (with a clear stop flag).
    push(&mut prod, 3);
    pop_expect(&mut cons, 3);
}

#[test]
fn empty_ring_blocks_consumer_until_publish() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "empty");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let got = AtomicBool::new(false);
    thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut cons = Consumer::attach(&p, WAIT).unwrap();
            pop_expect(&mut cons, 0);
            got.store(true, Ordering::SeqCst);
            cons.stats().get(stat::CONSUMER_WAIT_NS)
        });
        thread::sleep(Duration::from_millis(300));
        assert!(
            !got.load(Ordering::SeqCst),
            "consumer returned before anything was published"
        );
        push(&mut prod, 0);
        let waited = h.join().unwrap();
        assert!(waited > 0, "consumer should have recorded its wait");
    });
    assert!(got.load(Ordering::SeqCst));
}

#[test]
fn unpublished_slot_is_invisible_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "unpub");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    let stop = AtomicBool::new(false);
    {
        let mut slot = prod.acquire(&stop).unwrap();
        assert_eq!(slot.position(), 0);
        slot.set_meta(9, 9, 1);
        slot.parts_mut().view(0).fill(0xAB);
    } // dropped without publish
    assert_eq!(prod.written(), 0);
    let interrupt = AtomicBool::new(true);
    assert!(matches!(
        cons.next_until(&interrupt),
        Err(RingError::Interrupted)
    ));
    assert_eq!(prod.acquire(&stop).unwrap().position(), 0);
    push(&mut prod, 0);
    pop_expect(&mut cons, 0);
}

#[test]
#[should_panic(expected = "exceeds batch_size")]
fn set_meta_rejects_count_above_batch() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "count");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let stop = AtomicBool::new(false);
    let mut slot = prod.acquire(&stop).unwrap();
    slot.set_meta(0, 0, 5);
}

// ---------------------------------------------------------------- stress

/// Raises a stop flag when dropped (also on panic), so a failing side never leaves the
/// other blocked forever.
struct RaiseOnDrop<'a>(&'a AtomicBool);
impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn two_thread_stress_no_torn_batches() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "stress");
    let g = Geometry::pairs(4, 3, 1, 4, 5);
    let mut prod = Producer::create(&p, &RingInfo::new(g)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    let consumer_gone = AtomicBool::new(false);
    let producer_gone = AtomicBool::new(false);
    let (published, (mismatches, received)) = thread::scope(|sc| {
        let producer = sc.spawn(|| {
            let _guard = RaiseOnDrop(&producer_gone);
            let mut published = 0;
            for step in 0..N {
                let Ok(mut slot) = prod.acquire(&consumer_gone) else {
                    break;
                };
                let count = 1 + (step % 3) as u32;
                slot.set_meta(step / 100, step, count);
                let parts = slot.parts_mut();
                fill(step, parts.labels, parts.indices, parts.pixels);
                let c = checksum(count as usize, parts.labels, parts.indices, parts.pixels);
                slot.set_checksum(c);
                slot.publish();
                published += 1;
            }
            prod.finish();
            published
        });
        let consumer = sc.spawn(|| {
            let _guard = RaiseOnDrop(&consumer_gone);
            let (mut mismatches, mut expect) = (0u64, 0u64);
            loop {
                // Interrupted only once the producer thread is gone (finished or failed).
                let b = match cons.next_until(&producer_gone) {
                    Ok(Some(b)) => b,
                    Ok(None) | Err(RingError::Interrupted) => break,
                    Err(e) => panic!("consumer: {e}"),
                };
                assert_eq!(b.step(), expect, "steps must be strictly sequential");
                assert_eq!(b.epoch(), expect / 100);
                let c = checksum(b.count(), b.labels(), b.indices(), b.group(0));
                if c != b.checksum() || b.count() != 1 + (expect % 3) as usize {
                    mismatches += 1;
                }
                expect += 1;
            }
            (mismatches, expect)
        });
        (producer.join().unwrap(), consumer.join().unwrap())
    });
    assert_eq!(published, N);
    assert_eq!(mismatches, 0);
    assert_eq!(received, N);
    assert_eq!((prod.written(), prod.consumed()), (N, N));
}

// ---------------------------------------------------------------- header validation

/// A copy of a live ring's file (valid header, our own pid as producer).
fn ring_copy(dir: &tempfile::TempDir) -> (Producer, PathBuf) {
    let p = ring_in(dir, "orig");
    let prod = Producer::create(&p, &info(2)).unwrap();
    let copy = ring_in(dir, "copy");
    fs::copy(&p, &copy).unwrap();
    (prod, copy)
}

#[test]
fn attach_rejects_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, copy) = ring_copy(&dir);
    let f = OpenOptions::new().write(true).open(&copy).unwrap();
    f.write_all_at(b"NOTARING", offset::MAGIC as u64).unwrap();
    let e = Consumer::attach(&copy, WAIT).unwrap_err();
    assert!(
        matches!(e, RingError::BadMagic { ref path } if path == &copy),
        "{e:?}"
    );
    assert!(matches!(
        Observer::open(&copy),
        Err(RingError::BadMagic { .. })
    ));
}

#[test]
fn attach_rejects_other_version() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, copy) = ring_copy(&dir);
    poke_u32(&copy, offset::VERSION, FORMAT_VERSION + 1);
    let e = Consumer::attach(&copy, WAIT).unwrap_err();
    assert!(
        matches!(e, RingError::VersionMismatch { found, expected } if found == FORMAT_VERSION + 1 && expected == FORMAT_VERSION),
        "{e:?}"
    );
}

/// A ring of the two-view format (version 2, before view groups) is refused by name, with what
/// to do, by the consumer and the observer alike.
#[test]
fn attach_rejects_an_older_format_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, copy) = ring_copy(&dir);
    poke_u32(&copy, offset::VERSION, 2);
    for e in [
        Consumer::attach(&copy, WAIT).unwrap_err(),
        Observer::open(&copy).unwrap_err(),
    ] {
        let m = e.to_string();
        assert!(
            matches!(e, RingError::VersionMismatch { found: 2, .. })
                && m.contains("older loader")
                && m.contains("restart the loader"),
            "{m}"
        );
    }
}

/// Several view groups and the recipe's name go through the header: the consumer reads back the
/// producer's declaration, and each view lies where the layout says.
#[test]
fn view_groups_and_the_recipe_name_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "groups");
    let mut info = RingInfo::new(Geometry {
        groups: ViewGroups::new(&[
            ViewGroup {
                views: 2,
                height: 6,
                width: 6,
            },
            ViewGroup {
                views: 5,
                height: 3,
                width: 2,
            },
        ]),
        ..geom(2)
    });
    info.recipe = "dino".into();
    let mut prod = Producer::create(&p, &info).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    assert_eq!(cons.info(), &info);
    let stop = AtomicBool::new(false);
    let mut slot = prod.acquire(&stop).unwrap();
    let mut parts = slot.parts_mut();
    for v in 0..7 {
        parts.view(v).fill(v as u8 + 1);
    }
    slot.publish();
    let batch = cons.next().unwrap().unwrap();
    for v in 0..7 {
        let n = if v < 2 { 4 * 3 * 36 } else { 4 * 3 * 6 };
        assert_eq!(batch.view(v), vec![v as u8 + 1; n], "view {v}");
    }
    assert_eq!(batch.group(1).len(), 5 * 4 * 3 * 6);
    let mut long = info.clone();
    long.recipe = "x".repeat(32);
    assert!(matches!(
        Producer::create(&ring_in(&dir, "long"), &long),
        Err(RingError::BadGeometry { .. })
    ));
}

#[test]
fn attach_rejects_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, copy) = ring_copy(&dir);
    let len = fs::metadata(&copy).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let e = Consumer::attach(&copy, WAIT).unwrap_err();
    assert!(
        matches!(e, RingError::Corrupt { ref reason } if reason.contains("bytes")),
        "{e:?}"
    );
    // Shorter than a header: corrupt once the wait is over.
    OpenOptions::new()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_len(100)
        .unwrap();
    let e = Consumer::attach(&copy, Duration::from_millis(120)).unwrap_err();
    assert!(matches!(e, RingError::Corrupt { .. }), "{e:?}");
}

#[test]
fn attach_rejects_inconsistent_header_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, copy) = ring_copy(&dir);
    let slots_off = 16; // Header::slots
    for (off, v) in [
        (slots_off, 3u32),
        (slots_off, 0),
        (slots_off, u32::MAX),
        (24 /* views */, 3),
        (40 /* layout */, 2),
    ] {
        let orig = fs::read(&copy).unwrap();
        poke_u32(&copy, off, v);
        let e = Consumer::attach(&copy, WAIT).unwrap_err();
        assert!(
            matches!(e, RingError::Corrupt { .. }),
            "offset {off} = {v}: {e:?}"
        );
        fs::write(&copy, orig).unwrap();
    }
    poke_u32(&copy, offset::STATE, 77);
    assert!(matches!(
        Consumer::attach(&copy, WAIT),
        Err(RingError::Corrupt { .. })
    ));
}

/// Found by the `ring_header` fuzz target: read and write positions near `u64::MAX` passed the
/// consistency check and made `next` overflow `pos + 1` (a panic in debug builds).
#[test]
fn attach_rejects_positions_that_would_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, copy) = ring_copy(&dir);
    for pos in [u64::MAX, u64::MAX - 1, shared::layout::MAX_POSITION + 1] {
        poke_u64(&copy, offset::READ_POS, pos);
        poke_u64(&copy, offset::WRITE_POS, pos);
        let e = Consumer::attach(&copy, WAIT).unwrap_err();
        assert!(
            matches!(e, RingError::Corrupt { ref reason } if reason.contains("read position")),
            "position {pos}: {e:?}"
        );
    }
    // The largest accepted position still works.
    let pos = shared::layout::MAX_POSITION;
    poke_u64(&copy, offset::READ_POS, pos);
    poke_u64(&copy, offset::WRITE_POS, pos);
    poke_u64(&copy, HEADER_BYTES + offset::SLOT_SEQ, pos); // slot pos % 2 = 0, waiting for pos
    let mut c = Consumer::attach(&copy, WAIT).unwrap();
    assert_eq!(c.position(), pos);
    let stop = AtomicBool::new(true);
    assert!(matches!(c.next_until(&stop), Err(RingError::Interrupted)));
}

#[test]
fn attach_times_out_without_ring() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "nobody");
    let e = Consumer::attach(&p, Duration::from_millis(120)).unwrap_err();
    assert!(
        matches!(e, RingError::Timeout { ref path, .. } if path == &p),
        "{e:?}"
    );
    assert!(e.to_string().contains("start the loader"));
}

#[test]
fn attach_waits_for_the_ring_to_appear() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "later");
    thread::scope(|sc| {
        let h =
            sc.spawn(|| Consumer::attach(&p, Duration::from_secs(30)).map(|c| c.info().clone()));
        thread::sleep(Duration::from_millis(200));
        let _prod = Producer::create(&p, &info(2)).unwrap();
        assert_eq!(h.join().unwrap().unwrap(), info(2));
    });
}

#[test]
fn corrupt_batch_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "badcount");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    push(&mut prod, 0);
    poke_u32(&p, HEADER_BYTES + offset::SLOT_COUNT, 5); // batch_size is 4
    assert!(matches!(cons.next(), Err(RingError::Corrupt { .. })));
}

// ---------------------------------------------------------------- end, abort, death

#[test]
fn finished_ring_drains_then_ends_even_after_producer_exit() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "fin");
    let mut prod = Producer::create(&p, &info(4)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    for s in 0..3 {
        push(&mut prod, s);
    }
    prod.finish();
    drop(prod);
    assert!(!p.exists(), "dropping the producer removes the file");
    for s in 0..3 {
        pop_expect(&mut cons, s);
    }
    assert!(cons.next().unwrap().is_none());
    assert!(cons.next().unwrap().is_none());
}

#[test]
fn producer_dropped_without_finish_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "abort");
    let mut prod = Producer::create(&p, &info(4)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    push(&mut prod, 0);
    push(&mut prod, 1);
    drop(prod);
    assert_eq!(cons.state(), RingState::Aborted);
    pop_expect(&mut cons, 0);
    pop_expect(&mut cons, 1);
    let e = cons.next().unwrap_err();
    assert!(matches!(e, RingError::ProducerAborted), "{e:?}");
}

#[test]
fn dead_producer_pid_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "dead");
    let mut prod = Producer::create(&p, &info(4)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    push(&mut prod, 0);
    let pid = dead_pid();
    poke_u32(&p, offset::PRODUCER_PID, pid);
    // What was published is still delivered first.
    pop_expect(&mut cons, 0);
    let e = cons.next().unwrap_err();
    assert!(
        matches!(e, RingError::ProducerDied { pid: p } if p == pid),
        "{e:?}"
    );
    assert!(e.to_string().contains(&pid.to_string()));
    // The heartbeat is fresh, yet the pid decides.
    let snap = Observer::open(&p).unwrap().snapshot();
    assert!(!snap.producer_alive);
}

#[test]
fn stale_producer_heartbeat_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "stale");
    let _prod = Producer::create(&p, &info(2)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    // With the default threshold a live producer is never declared dead.
    let stop = AtomicBool::new(false);
    let r = thread::scope(|sc| {
        sc.spawn(|| {
            thread::sleep(Duration::from_millis(600));
            stop.store(true, Ordering::Relaxed);
        });
        cons.next_until(&stop).map(|b| b.is_some())
    });
    assert!(matches!(r, Err(RingError::Interrupted)), "{r:?}");
    // Heartbeats come every ~200 ms: with a 1 ms threshold the producer looks dead.
    cons.set_stale_after(Duration::from_millis(1));
    let e = cons.next().unwrap_err();
    assert!(
        matches!(e, RingError::ProducerDied { pid } if pid == std::process::id()),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- ownership

#[test]
fn second_producer_on_live_ring_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "busy");
    let mut first = Producer::create(&p, &info(2)).unwrap();
    let e = Producer::create(&p, &info(2)).unwrap_err();
    assert!(
        matches!(e, RingError::InUse { pid, ref path } if pid == std::process::id() && path == &p),
        "{e:?}"
    );
    assert!(e.to_string().contains("--shm"));
    // The refused create left the live ring alone.
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    push(&mut first, 0);
    pop_expect(&mut cons, 0);
}

#[test]
fn ring_of_dead_producer_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "replace");
    let old = Producer::create(&p, &info(2)).unwrap();
    poke_u32(&p, offset::PRODUCER_PID, dead_pid());
    let mut new = Producer::create(&p, &info(3)).unwrap();
    // The old producer going away must not remove the new ring's file.
    drop(old);
    assert!(p.exists());
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    assert_eq!(cons.info().geometry.slots, 3);
    push(&mut new, 0);
    pop_expect(&mut cons, 0);
}

#[test]
fn stale_rings_and_empty_files_are_replaced_but_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A ring whose producer pid is alive (ours) but whose heartbeat stopped long ago.
    let (_prod, copy) = ring_copy(&dir);
    poke_u64(&copy, offset::PRODUCER_HEARTBEAT, 1);
    drop(Producer::create(&copy, &info(2)).unwrap());
    assert!(!copy.exists());
    // An empty file, or the zeroed start of a ring whose producer died while creating it.
    for junk in [vec![], vec![0u8; 10_000]] {
        let p = ring_in(&dir, "junk");
        fs::write(&p, &junk).unwrap();
        let prod = Producer::create(&p, &info(2)).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().len() as usize,
            info(2).geometry.file_bytes()
        );
        drop(prod);
    }
    // A user's file given as --shm by mistake is never deleted.
    for junk in [vec![7u8; 10], vec![0xEEu8; 10_000]] {
        let p = ring_in(&dir, "users-file");
        fs::write(&p, &junk).unwrap();
        let e = Producer::create(&p, &info(2)).unwrap_err();
        assert!(matches!(e, RingError::BadMagic { .. }), "{e:?}");
        assert_eq!(fs::read(&p).unwrap(), junk, "left untouched");
    }
}

#[test]
fn only_one_live_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "two");
    let prod = Producer::create(&p, &info(2)).unwrap();
    let a = Consumer::attach(&p, WAIT).unwrap();
    assert!(prod.consumer_alive());
    let e = Consumer::attach(&p, WAIT).unwrap_err();
    assert!(
        matches!(e, RingError::ConsumerInUse { pid } if pid == std::process::id()),
        "{e:?}"
    );
    drop(a);
    assert!(!prod.consumer_alive());
    let _b = Consumer::attach(&p, WAIT).unwrap();
    // A consumer whose process is gone is taken over.
    poke_u32(&p, offset::CONSUMER_PID, dead_pid());
    let mut c = Consumer::attach(&p, WAIT).unwrap();
    assert!(prod.consumer_alive());
    drop(prod);
    assert!(matches!(c.next(), Err(RingError::ProducerAborted)));
}

#[test]
fn taken_over_consumer_notices() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "takeover");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let mut a = Consumer::attach(&p, WAIT).unwrap();
    push(&mut prod, 0);
    poke_u32(&p, offset::CONSUMER_PID, 12345678);
    assert!(matches!(
        a.next(),
        Err(RingError::ConsumerInUse { pid: 12345678 })
    ));
}

#[test]
fn restarted_consumer_resumes_where_the_last_one_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "resume");
    let mut prod = Producer::create(&p, &info(10)).unwrap();
    for s in 0..10 {
        push(&mut prod, s);
    }
    prod.finish();
    {
        let mut a = Consumer::attach(&p, WAIT).unwrap();
        for s in 0..3 {
            pop_expect(&mut a, s);
        }
    }
    assert_eq!(prod.consumed(), 3);
    let mut b = Consumer::attach(&p, WAIT).unwrap();
    assert_eq!(b.position(), 3);
    for s in 3..10 {
        pop_expect(&mut b, s);
    }
    assert!(b.next().unwrap().is_none());
    assert!(prod.wait_drained(&AtomicBool::new(false), WAIT));
}

#[test]
fn batch_held_by_a_vanished_consumer_is_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "held");
    let mut prod = Producer::create(&p, &info(3)).unwrap();
    for s in 0..3 {
        push(&mut prod, s);
    }
    let mut a = Consumer::attach(&p, WAIT).unwrap();
    pop_expect(&mut a, 0);
    let batch = a.next().unwrap().unwrap();
    assert_eq!(batch.step(), 1);
    std::mem::forget(batch); // as if the process died while reading step 1
    drop(a);
    let mut b = Consumer::attach(&p, WAIT).unwrap();
    pop_expect(&mut b, 1);
    pop_expect(&mut b, 2);
}

#[test]
fn wait_drained_reports_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "drain");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let no = AtomicBool::new(false);
    assert!(prod.wait_drained(&no, Duration::ZERO));
    push(&mut prod, 0);
    prod.finish();
    assert!(!prod.wait_drained(&no, Duration::from_millis(50)));
    assert!(!prod.wait_drained(&AtomicBool::new(true), Duration::from_secs(60)));
    let mut c = Consumer::attach(&p, WAIT).unwrap();
    pop_expect(&mut c, 0);
    assert!(prod.wait_drained(&no, WAIT));
    assert_eq!((prod.written(), prod.consumed()), (1, 1));
}

// ---------------------------------------------------------------- files, observer, stats

#[test]
fn ring_file_mode_is_0600() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "mode");
    let _prod = Producer::create(&p, &info(2)).unwrap();
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn create_in_missing_directory_is_an_io_error() {
    let e = Producer::create(Path::new("/nonexistent-barlow-dir/ring"), &info(2)).unwrap_err();
    assert!(matches!(e, RingError::Io { .. }), "{e:?}");
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn observer_sees_state_without_registering() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "obs");
    let mut prod = Producer::create(&p, &info(3)).unwrap();
    let obs = Observer::open(&p).unwrap();
    assert_eq!(obs.info(), &info(3));
    prod.stats().add(stat::DECODE_NS, 5);
    prod.stats().add(stat::DECODE_NS, 7);
    push(&mut prod, 0);
    push(&mut prod, 1);
    let s = obs.snapshot();
    assert_eq!((s.state, s.written, s.consumed), (RingState::Running, 2, 0));
    assert_eq!(s.producer_pid, std::process::id());
    assert!(s.producer_alive && !s.consumer_alive && s.consumer_pid == 0);
    assert_eq!(s.stats[stat::DECODE_NS], 12);
    let mut c = Consumer::attach(&p, WAIT).unwrap();
    assert_eq!(
        c.stats().get(stat::DECODE_NS),
        12,
        "stats are shared through the ring"
    );
    pop_expect(&mut c, 0);
    let s = obs.snapshot();
    assert_eq!((s.consumed, s.consumer_pid), (1, std::process::id()));
    assert!(s.consumer_alive);
    prod.finish();
    assert_eq!(obs.snapshot().state, RingState::EndOfData);
}

/// A unique name in /dev/shm, removed again by the producer.
#[test]
fn dev_shm_ring_is_cleaned_up() {
    if !Path::new("/dev/shm").is_dir() {
        eprintln!("no /dev/shm; skipping");
        return;
    }
    let name = format!(
        "barlow-test-{}-{}",
        std::process::id(),
        shared::liveness::now_ms()
    );
    let p = ring_path(&name).unwrap();
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    assert!(p.exists());
    let mut c = Consumer::attach(&p, WAIT).unwrap();
    push(&mut prod, 0);
    pop_expect(&mut c, 0);
    drop(prod);
    assert!(!p.exists(), "{} left behind", p.display());
}

/// A ring larger than all of /dev/shm fails at create with NoSpace, not later with SIGBUS.
#[test]
fn oversized_ring_fails_with_no_space() {
    // 1024 slots of 1024 x 3x2048x2048 pairs: about 26 TB, more than any /dev/shm, whatever the
    // machine (the geometry is within the format's bounds, so only the space can refuse it).
    let g = Geometry::pairs(1024, 1024, 3, 2048, 2048);
    assert!(g.file_bytes() as u64 > 1 << 44, "{}", g.file_bytes());
    let p = ring_path(&format!("barlow-test-nospace-{}", std::process::id())).unwrap();
    let e = Producer::create(&p, &RingInfo::new(g)).unwrap_err();
    assert!(
        matches!(e, RingError::NoSpace { needed, .. } if needed == g.file_bytes() as u64),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("--shm") && msg.contains("shm-size"), "{msg}");
    assert!(!p.exists(), "failed create must not leave a file");
}

#[test]
fn error_messages_say_what_to_do() {
    let e = RingError::NoSpace {
        path: "/dev/shm/x".into(),
        needed: 3 << 30,
        available: Some(1 << 30),
    };
    let m = e.to_string();
    assert!(
        m.contains("3.0 GiB") && m.contains("1.0 GiB") && m.contains("--shm-size"),
        "{m}"
    );
    let m = RingError::VersionMismatch {
        found: 2,
        expected: 1,
    }
    .to_string();
    assert!(m.contains('2') && m.contains("rebuild"), "{m}");
    let m = RingError::ProducerAborted.to_string();
    assert!(m.contains("restart"), "{m}");
}

/// Each handle works after moving to another thread (a trainer's or a loader's worker thread):
/// a batch published from one thread is read from another, and an observer elsewhere sees both.
#[test]
fn handles_can_move_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "moved");
    let mut prod = Producer::create(&p, &info(2)).unwrap();
    let cons = Consumer::attach(&p, WAIT).unwrap();
    let obs = Observer::open(&p).unwrap();
    prod = thread::spawn(move || {
        push(&mut prod, 7);
        prod
    })
    .join()
    .unwrap();
    let cons = thread::spawn(move || {
        let mut cons = cons;
        pop_expect(&mut cons, 7);
        cons
    })
    .join()
    .unwrap();
    let seen = thread::spawn(move || (obs.info().dataset_len, obs.snapshot().consumed))
        .join()
        .unwrap();
    assert_eq!(seen, (1000, 1));
    drop((cons, prod));
}

// ---------------------------------------------------------------- takeover (issue 18)

/// `info(slots)` for a stream that starts at global step `first_step`.
fn info_from(slots: u32, first_step: u64) -> RingInfo {
    RingInfo {
        first_step,
        ..info(slots)
    }
}

/// Makes `p` look like a producer that was killed: the header names a pid that no longer
/// exists, and its heartbeat thread stops (`p`, no longer the ring's producer, leaves the ring).
fn kill_producer(path: &Path, p: Producer) {
    poke_u32(path, offset::PRODUCER_PID, dead_pid());
    drop(p);
    assert!(
        path.exists(),
        "a presumed-dead producer leaves the ring alone"
    );
}

#[test]
fn takeover_keeps_published_batches_and_rewrites_the_half_written_slot() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "takeover");
    let mut old = Producer::create(&p, &info_from(4, 100)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    for step in 100..103 {
        push(&mut old, step);
    }
    pop_expect(&mut cons, 100);
    // Dies while writing position 3: half of it written, never published.
    let stop = AtomicBool::new(false);
    let mut slot = old.acquire(&stop).unwrap();
    slot.set_meta(0, 999, 1);
    let parts = slot.parts_mut();
    let half = parts.pixels.len() / 4;
    parts.pixels[..half].fill(0xAB);
    std::mem::forget(slot);
    kill_producer(&p, old);

    // The same command: its own start step (0 here) does not matter, the ring's does.
    let (mut new, opened) = Producer::open(&p, &info_from(4, 0)).unwrap();
    let Opened::TookOver(t) = opened else {
        panic!("expected a takeover, got {opened:?}")
    };
    assert_eq!((t.read_pos, t.resume_pos, t.resume_step), (1, 3, 103));
    assert_eq!(t.kept(), 2);
    assert_eq!(t.consumer_pid, std::process::id());
    assert_eq!(new.next_step(), 103);
    push(&mut new, 103);
    push(&mut new, 104);
    for step in 101..105 {
        pop_expect(&mut cons, step); // 103 is the rewritten slot, whole
    }
    assert_eq!(
        Observer::open(&p).unwrap().snapshot().producer_pid,
        std::process::id()
    );
}

#[test]
fn takeover_counts_a_batch_published_just_before_the_producer_died() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "takeover-wp");
    let mut old = Producer::create(&p, &info(3)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    push(&mut old, 0);
    push(&mut old, 1);
    // Died between publishing position 1 (seq) and advancing write_pos.
    poke_u64(&p, offset::WRITE_POS, 1);
    kill_producer(&p, old);
    let (mut new, opened) = Producer::open(&p, &info(3)).unwrap();
    assert!(
        matches!(&opened, Opened::TookOver(t) if t.resume_pos == 2),
        "{opened:?}"
    );
    push(&mut new, 2);
    for step in 0..3 {
        pop_expect(&mut cons, step);
    }
}

#[test]
fn takeover_refuses_another_stream_and_a_hung_producer() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "takeover-refused");
    let old = Producer::create(&p, &info(2)).unwrap();
    let _cons = Consumer::attach(&p, WAIT).unwrap();
    // Alive: in use.
    let e = Producer::open(&p, &info(2)).unwrap_err();
    assert!(matches!(e, RingError::InUse { .. }), "{e:?}");
    // Heartbeat stale, process still there (ours): neither taken over nor replaced.
    kill_producer(&p, old);
    poke_u32(&p, offset::PRODUCER_PID, std::process::id());
    poke_u64(&p, offset::PRODUCER_HEARTBEAT, 1);
    let e = Producer::open(&p, &info(2)).unwrap_err();
    assert!(matches!(e, RingError::ProducerUnresponsive { .. }), "{e:?}");
    assert!(e.to_string().contains("kill -9"), "{e}");
    // Dead, but another seed and batch size: refused, naming both.
    poke_u32(&p, offset::PRODUCER_PID, dead_pid());
    let mut other = info(2);
    other.seed = 43;
    other.geometry.batch_size = 8;
    let e = Producer::open(&p, &other).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, RingError::StreamMismatch { .. }), "{e:?}");
    assert!(
        msg.contains("seed: the ring has 42, this one 43")
            && msg.contains("batch size: the ring has 4, this one 8"),
        "{msg}"
    );
}

#[test]
fn a_dead_ring_without_a_live_consumer_is_replaced_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "takeover-none");
    let mut old = Producer::create(&p, &info(2)).unwrap();
    push(&mut old, 0);
    kill_producer(&p, old);
    let (new, opened) = Producer::open(&p, &info(2)).unwrap();
    assert_eq!(opened, Opened::Created);
    assert_eq!(new.position(), 0);
}

#[test]
fn a_waiting_consumer_reports_the_death_and_the_takeover_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "waiting");
    let mut old = Producer::create(&p, &info(2)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<ProducerEvent>();
    cons.set_restart_wait(Duration::from_secs(600), move |e| {
        let _ = tx.send(e.clone());
    });
    push(&mut old, 0);
    pop_expect(&mut cons, 0);
    kill_producer(&p, old);
    let path = p.clone();
    let successor = thread::spawn(move || {
        // Only once the consumer has said that it waits, so that the test sees both events.
        let died = rx.recv().unwrap();
        let (mut new, opened) = Producer::open(&path, &info(2)).unwrap();
        assert!(matches!(opened, Opened::TookOver(_)), "{opened:?}");
        push(&mut new, 1);
        let back = rx.recv().unwrap();
        (died, back, new)
    });
    pop_expect(&mut cons, 1);
    let (died, back, _new) = successor.join().unwrap();
    assert!(
        matches!(died, ProducerEvent::Died { wait, .. } if wait == Duration::from_secs(600)),
        "{died:?}"
    );
    assert!(
        matches!(back, ProducerEvent::Back { pid, position: 1, .. } if pid == std::process::id()),
        "{back:?}"
    );
}

#[test]
fn a_waiting_consumer_gives_up_after_its_wait_and_without_it_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "gives-up");
    let old = Producer::create(&p, &info(2)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    cons.set_restart_wait(Duration::from_millis(200), |_| {});
    kill_producer(&p, old);
    let e = cons.next().unwrap_err();
    assert!(matches!(e, RingError::NoNewProducer { .. }), "{e:?}");
    assert!(e.to_string().contains("--loader-restart-wait"), "{e}");
    cons.set_restart_wait(Duration::ZERO, |_| {});
    let e = cons.next().unwrap_err();
    assert!(matches!(e, RingError::ProducerDied { .. }), "{e:?}");
}

#[test]
fn a_stopping_producer_hands_the_ring_over_only_to_a_waiting_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "hand-over");
    let prod = Producer::create(&p, &info(2)).unwrap();
    let mut cons = Consumer::attach(&p, WAIT).unwrap();
    assert_eq!(prod.consumer_restart_wait(), None);
    cons.set_restart_wait(Duration::from_secs(90), |_| {});
    assert_eq!(prod.consumer_restart_wait(), Some(Duration::from_secs(90)));
    prod.hand_over();
    assert!(p.exists(), "the ring stays for a successor");
    assert_eq!(
        Observer::open(&p).unwrap().snapshot().state,
        RingState::Running
    );
    drop(cons);
    // A new consumer does not inherit its predecessor's promise to wait.
    let _cons = Consumer::attach(&p, WAIT).unwrap();
    poke_u32(&p, offset::PRODUCER_PID, std::process::id());
    let prod = Producer::open(&p, &info(2));
    assert!(prod.is_err(), "our pid is alive: in use");
}

// ---------------------------------------------------------------- ownership (issue 18)

#[test]
fn rings_writable_by_others_or_owned_by_another_user_are_refused_by_every_side() {
    let dir = tempfile::tempdir().unwrap();
    let p = ring_in(&dir, "owner");
    let prod = Producer::create(&p, &info(2)).unwrap();
    let refusals = |what: &str| -> Vec<RingError> {
        let mut errs = vec![
            Consumer::attach(&p, WAIT).unwrap_err(),
            Observer::open(&p).unwrap_err(),
        ];
        // A second producer is refused for the same reason, before liveness is even looked at.
        errs.push(Producer::open(&p, &info(2)).unwrap_err());
        for e in &errs {
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
        errs
    };
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
    for e in refusals("mode 0666") {
        assert!(
            matches!(e, RingError::UnsafeMode { mode: 0o666, .. }),
            "{e:?}"
        );
    }
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    if shared::ownership::effective_uid() == 0 {
        std::os::unix::fs::chown(&p, Some(12345), None).unwrap();
        for e in refusals("belongs to uid 12345") {
            assert!(
                matches!(
                    e,
                    RingError::NotOwned {
                        owner: 12345,
                        me: 0,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        shared::ownership::allow_other_owner(true);
        let observed = Observer::open(&p);
        shared::ownership::allow_other_owner(false);
        observed.expect("--allow-foreign-ring accepts another user's ring");
        std::os::unix::fs::chown(&p, Some(0), None).unwrap();
    } else {
        eprintln!("not root: the test cannot give the ring to another user; owner check skipped");
    }
    Consumer::attach(&p, WAIT).expect("back to ours and 0600: accepted");
    drop(prod);
}

#[test]
fn a_kept_batch_holds_its_slot_until_released_or_the_next_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = ring_in(&dir, "kept");
    let mut p = Producer::create(&path, &info(2)).expect("create");
    push(&mut p, 0);
    push(&mut p, 1);
    let mut c = Consumer::attach(&path, WAIT).expect("attach");
    let batch = c.next().unwrap().expect("batch 0");
    let ptr = batch.view(0).as_ptr();
    let first = batch.view(0)[0];
    batch.keep();
    assert!(c.holds_kept());
    assert_eq!(c.position(), 0, "a kept batch is not consumed yet");
    // Both slots are taken (one kept, one unread): the producer must wait.
    let stop = AtomicBool::new(true);
    assert!(matches!(p.acquire(&stop), Err(RingError::Interrupted)));
    // SAFETY: the kept slot stays mapped and unwritten until released.
    assert_eq!(unsafe { *ptr }, first);
    // Taking the next batch releases the kept one first.
    let b1 = c.next().unwrap().expect("batch 1");
    assert_eq!(b1.step(), 1);
    b1.keep();
    assert_eq!(c.position(), 1);
    c.release_kept();
    assert!(!c.holds_kept());
    assert_eq!(c.position(), 2);
    c.release_kept(); // nothing kept: a no-op
    assert_eq!(c.position(), 2);
    push(&mut p, 2);
    pop_expect(&mut c, 2);
}
