//! [`Stats`]: live counters kept in the ring header, readable by any process that maps it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Number of counters in the statistics block.
pub const STATS_LEN: usize = 32;

/// Indices into [`Stats`]. Times are nanoseconds summed over all threads.
///
/// The ring code itself only adds [`PRODUCER_WAIT_NS`](stat::PRODUCER_WAIT_NS) (time `Producer::acquire` waited for a
/// free slot) and [`CONSUMER_WAIT_NS`](stat::CONSUMER_WAIT_NS) (time `Consumer::next` waited for a batch); everything else
/// is maintained by the loader or trainer.
pub mod stat {
    /// Augmented pairs written into published batches.
    pub const PAIRS_WRITTEN: usize = 0;
    /// Samples skipped (undecodable or rejected files).
    pub const SKIPPED: usize = 1;
    /// Time the producer waited for a free slot (ring full: the trainer is the bottleneck).
    pub const PRODUCER_WAIT_NS: usize = 2;
    /// Time the consumer waited for a batch (ring empty: the loader is the bottleneck).
    pub const CONSUMER_WAIT_NS: usize = 3;
    /// Time decoding images.
    pub const DECODE_NS: usize = 4;
    /// Time cropping / resizing.
    pub const CROP_NS: usize = 5;
    /// Time in colour augmentations (jitter, grayscale, solarize).
    pub const COLOR_NS: usize = 6;
    /// Time blurring.
    pub const BLUR_NS: usize = 7;
    /// Time writing / publishing into the ring.
    pub const WRITE_NS: usize = 8;
    /// Time reading files (loader) or batches (trainer).
    pub const READ_NS: usize = 9;
    /// Time flipping.
    pub const FLIP_NS: usize = 10;
    /// Bytes of input files read.
    pub const BYTES_READ: usize = 11;
    /// Time the consumer spent outside the ring (e.g. training steps).
    pub const TRAIN_NS: usize = 12;
    /// Worker threads the loader runs (set, not added, by the producer; 0 = not published).
    pub const WORKERS: usize = 13;
    /// Nanoseconds making the views of view group `g` (crop to write, every view of the group),
    /// at `GROUP_NS + g` for the ring's groups (at most [`crate::MAX_GROUPS`]).
    pub const GROUP_NS: usize = 14;
    /// First index with no assigned meaning; `FIRST_FREE..STATS_LEN` are free for experiments.
    pub const FIRST_FREE: usize = GROUP_NS + crate::MAX_GROUPS;

    /// Short names for display, indexed like the counters ("" = unassigned).
    pub const NAMES: [&str; super::STATS_LEN] = {
        let mut n = [""; super::STATS_LEN];
        n[PAIRS_WRITTEN] = "pairs_written";
        n[SKIPPED] = "skipped";
        n[PRODUCER_WAIT_NS] = "producer_wait_ns";
        n[CONSUMER_WAIT_NS] = "consumer_wait_ns";
        n[DECODE_NS] = "decode_ns";
        n[CROP_NS] = "crop_ns";
        n[COLOR_NS] = "color_ns";
        n[BLUR_NS] = "blur_ns";
        n[WRITE_NS] = "write_ns";
        n[READ_NS] = "read_ns";
        n[FLIP_NS] = "flip_ns";
        n[BYTES_READ] = "bytes_read";
        n[TRAIN_NS] = "train_ns";
        n[WORKERS] = "workers";
        n[GROUP_NS] = "group0_ns";
        n[GROUP_NS + 1] = "group1_ns";
        n[GROUP_NS + 2] = "group2_ns";
        n[GROUP_NS + 3] = "group3_ns";
        n[GROUP_NS + 4] = "group4_ns";
        n[GROUP_NS + 5] = "group5_ns";
        n[GROUP_NS + 6] = "group6_ns";
        n[GROUP_NS + 7] = "group7_ns";
        n
    };
}

/// [`STATS_LEN`] `AtomicU64` counters, updated with `Relaxed` operations (no locks).
///
/// Inside a ring it lives in the shared header (get it from `Producer::stats` or
/// `Consumer::stats`); `Stats::default()` makes a free-standing block, e.g. for tests.
/// Index with the constants in [`stat`]; an index `>= STATS_LEN` panics.
#[repr(C)]
#[derive(Default)]
pub struct Stats {
    counters: [AtomicU64; STATS_LEN],
}

impl Stats {
    /// Adds `v` to counter `idx` (wrapping on overflow).
    #[inline]
    pub fn add(&self, idx: usize, v: u64) {
        self.counters[idx].fetch_add(v, Ordering::Relaxed);
    }

    /// Current value of counter `idx`.
    #[inline]
    pub fn get(&self, idx: usize) -> u64 {
        self.counters[idx].load(Ordering::Relaxed)
    }

    /// Overwrites counter `idx`.
    #[inline]
    pub fn set(&self, idx: usize, v: u64) {
        self.counters[idx].store(v, Ordering::Relaxed);
    }

    /// All counters (each read individually; not one atomic snapshot).
    pub fn snapshot(&self) -> [u64; STATS_LEN] {
        std::array::from_fn(|i| self.get(i))
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, v) in self.snapshot().iter().enumerate() {
            if *v != 0 || !stat::NAMES[i].is_empty() {
                let name = if stat::NAMES[i].is_empty() {
                    format!("#{i}")
                } else {
                    stat::NAMES[i].to_string()
                };
                m.entry(&name, v);
            }
        }
        m.finish()
    }
}
