//! Flow through a ring between two snapshots: rates, occupancy, who waited, and the verdict.
//!
//! "Input-bound" means the trainer waited for batches while the ring was mostly empty (more loader
//! cores would help); "compute-bound" means the loader waited for free slots while the ring was
//! mostly full (the trainer is the bottleneck, as it should be). Both processes and `loader stat`
//! use this one definition.

use std::fmt;
use std::time::Duration;

use crate::{stat, Snapshot};

/// Fraction of the time a side must spend waiting before it is called the one held up.
pub const WAIT_THRESHOLD: f64 = 0.2;

/// Which side of the ring holds training back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The trainer waits for data: the loader is the bottleneck.
    InputBound,
    /// The loader waits for free slots: the trainer is the bottleneck.
    ComputeBound,
    /// Neither side waits much.
    Balanced,
    /// Nothing moved in the interval.
    Idle,
}

impl Verdict {
    /// Judges from the two sides' waiting fractions (0..=1) and, when known, the ring occupancy
    /// (0..=1): the side that waits more than [`WAIT_THRESHOLD`] is held up by the other, and an
    /// occupancy that contradicts it (a full ring with a waiting trainer) makes it "balanced".
    pub fn judge(
        consumer_wait: f64,
        producer_wait: f64,
        occupancy: Option<f64>,
        moved: bool,
    ) -> Verdict {
        let occ = occupancy.unwrap_or(0.5);
        if !moved {
            Verdict::Idle
        } else if consumer_wait > WAIT_THRESHOLD && consumer_wait >= producer_wait && occ <= 0.5 {
            Verdict::InputBound
        } else if producer_wait > WAIT_THRESHOLD && producer_wait >= consumer_wait && occ >= 0.5 {
            Verdict::ComputeBound
        } else {
            Verdict::Balanced
        }
    }

    /// Stable lower-case name used in JSON output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::InputBound => "input-bound",
            Verdict::ComputeBound => "compute-bound",
            Verdict::Balanced => "balanced",
            Verdict::Idle => "idle",
        }
    }

    /// One sentence on what it means for the user.
    pub fn advice(&self) -> &'static str {
        match self {
            Verdict::InputBound => "the trainer waits for data: give the loader more cores (--workers) or a faster input",
            Verdict::ComputeBound => "the loader keeps up: the trainer is the bottleneck, as it should be",
            Verdict::Balanced => "neither side waits much",
            Verdict::Idle => "no batches moved",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The flow between two snapshots of one ring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flow {
    /// Batches published per second.
    pub produced_per_s: f64,
    /// Batches consumed per second.
    pub consumed_per_s: f64,
    /// Unread batches / slots, at the later snapshot (0 = empty, 1 = full).
    pub occupancy: f64,
    /// Fraction of the interval the loader waited for a free slot.
    pub producer_wait: f64,
    /// Fraction of the interval the trainer waited for a batch.
    pub consumer_wait: f64,
    /// Who holds training back in this interval.
    pub verdict: Verdict,
}

impl Flow {
    /// Flow from `before` to `after`, taken `interval` apart, on a ring of `slots` slots.
    pub fn between(before: &Snapshot, after: &Snapshot, interval: Duration, slots: u32) -> Flow {
        let secs = interval.as_secs_f64().max(1e-9);
        let delta = |i: usize| after.stats[i].saturating_sub(before.stats[i]) as f64 / 1e9 / secs;
        let produced = after.written.saturating_sub(before.written);
        let consumed = after.consumed.saturating_sub(before.consumed);
        let occupancy = after.written.saturating_sub(after.consumed) as f64 / slots.max(1) as f64;
        let (producer_wait, consumer_wait) = (
            delta(stat::PRODUCER_WAIT_NS).min(1.0),
            delta(stat::CONSUMER_WAIT_NS).min(1.0),
        );
        Flow {
            produced_per_s: produced as f64 / secs,
            consumed_per_s: consumed as f64 / secs,
            occupancy,
            producer_wait,
            consumer_wait,
            verdict: Verdict::judge(
                consumer_wait,
                producer_wait,
                Some(occupancy),
                produced + consumed > 0,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(
            Verdict::judge(0.8, 0.0, Some(0.0), true),
            Verdict::InputBound
        );
        assert_eq!(
            Verdict::judge(0.0, 0.9, Some(1.0), true),
            Verdict::ComputeBound
        );
        assert_eq!(
            Verdict::judge(0.05, 0.05, Some(0.5), true),
            Verdict::Balanced
        );
        assert_eq!(Verdict::judge(0.8, 0.0, Some(0.0), false), Verdict::Idle);
        // A mostly full ring with a waiting trainer is not input-bound.
        assert_eq!(Verdict::judge(0.5, 0.0, Some(1.0), true), Verdict::Balanced);
        // Without occupancy (end-of-run summaries), the waits decide.
        assert_eq!(Verdict::judge(0.6, 0.1, None, true), Verdict::InputBound);
        assert_eq!(Verdict::judge(0.0, 0.7, None, true), Verdict::ComputeBound);
    }
}
