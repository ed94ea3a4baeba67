//! How a session went: the counts it keeps, the loader's waiting from the ring's statistics, the
//! verdict and the summary printed at the end.

use std::path::PathBuf;
use std::time::Duration;

use shared::{Consumer, Verdict};

use crate::nn::profile::OpKind;

/// How a session went.
#[derive(Debug, Default)]
pub struct SessionSummary {
    pub steps: u64,
    pub samples: u64,
    pub losses: Vec<f32>,
    pub wait: Duration,
    pub compute: Duration,
    pub elapsed: Duration,
    pub end_of_data: bool,
    pub interrupted: bool,
    /// Global step at the end (after a resume: counted from the checkpoint's step).
    pub global_step: u64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// With `--profile-ops`: device milliseconds per kind of op summed over the steps (in
    /// [`OpKind::ALL`]'s order), and the steps' total compute milliseconds.
    pub op_totals: Option<([f64; 6], f64)>,
    /// With `--profile-ops` on a GPU: peak device memory in use, bytes.
    pub peak_memory: Option<u64>,
}

impl SessionSummary {
    /// Fraction of wall time spent waiting for input.
    pub fn stall_fraction(&self) -> f64 {
        self.wait.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Who held the session back, by the one definition every binary uses
    /// ([`Verdict::judge`]): the trainer's waiting fraction against the loader's.
    pub fn verdict(&self, loader_wait: f64) -> Verdict {
        Verdict::judge(self.stall_fraction(), loader_wait, None, self.steps > 0)
    }

    /// The end-of-session lines on stderr: throughput and loss, the verdict, and with
    /// `--profile-ops` the device time per kind of op. `loader_wait` is [`LoaderWait::fraction`].
    pub fn print(&self, loader_wait: f64) {
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
        let k = self.losses.len().min(5);
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let loss = if k == 0 {
            String::new()
        } else {
            format!(
                "; loss {:.2} (first {k} steps) -> {:.2} (last {k})",
                mean(&self.losses[..k]),
                mean(&self.losses[self.losses.len() - k..])
            )
        };
        eprintln!(
            "trainer: done: {} steps, {} samples in {:.1}s = {:.1} pairs/s{loss}",
            self.steps,
            self.samples,
            secs,
            self.samples as f64 / secs,
        );
        let verdict = self.verdict(loader_wait);
        eprintln!(
            "trainer: verdict: {verdict} (trainer waited for batches {:.0}% of the time, loader waited for free slots {:.0}%): {}",
            100.0 * self.stall_fraction(),
            100.0 * loader_wait,
            verdict.advice()
        );
        if let Some((totals, compute_ms)) = &self.op_totals {
            let steps = self.steps.max(1) as f64;
            let named: f64 = totals.iter().sum();
            let mut parts: Vec<String> = OpKind::ALL
                .iter()
                .zip(totals)
                .map(|(k, t)| format!("{} {:.1}", k.key(), t / steps))
                .collect();
            parts.push(format!(
                "other {:.1}",
                ((compute_ms - named) / steps).max(0.0)
            ));
            eprintln!(
                "trainer: device ms per step: {} (of {:.1} computing){}",
                parts.join(", "),
                compute_ms / steps,
                self.peak_memory.map_or(String::new(), |b| format!(
                    "; peak device memory {:.1} GiB",
                    b as f64 / (1u64 << 30) as f64
                ))
            );
        }
    }
}

/// The loader's time waiting for free slots during this session, from the ring's statistics.
pub struct LoaderWait(u64);

impl LoaderWait {
    pub fn start(consumer: &Consumer) -> LoaderWait {
        LoaderWait(consumer.stats().get(shared::stat::PRODUCER_WAIT_NS))
    }

    /// Fraction of the session's wall time the loader waited for free slots.
    pub fn fraction(&self, consumer: &Consumer, s: &SessionSummary) -> f64 {
        let ns = consumer
            .stats()
            .get(shared::stat::PRODUCER_WAIT_NS)
            .saturating_sub(self.0);
        (ns as f64 / 1e9 / s.elapsed.as_secs_f64().max(1e-9)).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::WAIT_THRESHOLD;

    /// A session of `steps` steps over 100 s whose trainer waited `trainer_wait` of it.
    fn session(steps: u64, trainer_wait: f64) -> SessionSummary {
        SessionSummary {
            steps,
            wait: Duration::from_secs_f64(100.0 * trainer_wait),
            elapsed: Duration::from_secs(100),
            ..Default::default()
        }
    }

    /// The session's verdict is [`Verdict::judge`]'s on its own numbers: the side that waits more
    /// than [`WAIT_THRESHOLD`] of the wall time (and more than the other) is the one held up.
    #[test]
    fn the_verdict_follows_the_shared_thresholds() {
        let (below, above) = (WAIT_THRESHOLD - 0.05, WAIT_THRESHOLD + 0.05);
        assert_eq!(session(10, above).verdict(0.0), Verdict::InputBound);
        assert_eq!(session(10, below).verdict(0.0), Verdict::Balanced);
        assert_eq!(session(10, 0.0).verdict(above), Verdict::ComputeBound);
        assert_eq!(session(10, 0.0).verdict(below), Verdict::Balanced);
        // both above: the side that waits more is the one held up
        assert_eq!(
            session(10, above).verdict(above + 0.1),
            Verdict::ComputeBound
        );
        assert_eq!(session(10, above + 0.1).verdict(above), Verdict::InputBound);
        // no step: nothing moved, whatever the waits
        assert_eq!(session(0, above).verdict(0.0), Verdict::Idle);
    }
}
