//! Measuring the pipeline on its own: the engine behind `loader bench` and `loader profile`.
//!
//! The pipeline writes into a [`MemorySink`] that drops every batch (no ring, no /dev/shm, no
//! consumer), so what is measured is the loader's ceiling. After a warm-up, the run lasts a fixed
//! time; stage times come from the sink's live statistics (the same counters a ring keeps), CPU
//! time from `getrusage`, and a sampler thread records throughput and busy cores over time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use shared::{stat, Geometry};

use crate::pipeline::Pipeline;
use crate::sampler::Shard;
use crate::sink::MemorySink;

/// How long to measure.
#[derive(Clone, Debug)]
pub struct MeasureConfig {
    /// Measured time after the warm-up.
    pub seconds: f64,
    /// Batches made and discarded before measuring.
    pub warmup_batches: u64,
    /// Interval between the readings behind the throughput and busy-cores timeline.
    pub sample_every: Duration,
}

/// The loader's stages as the statistics count them, in pipeline order.
pub const STAGES: [(&str, usize); 6] = [
    ("read", stat::READ_NS),
    ("decode", stat::DECODE_NS),
    ("crop+resize", stat::CROP_NS),
    ("colour", stat::COLOR_NS),
    ("blur", stat::BLUR_NS),
    ("write+solarize", stat::WRITE_NS),
];

/// Time spent making one view group's views (crop to write).
#[derive(Clone, Debug, Serialize)]
pub struct GroupTime {
    /// The group: views x height x width.
    pub views: String,
    /// Milliseconds per sample (all the group's views of one sample, summed over threads).
    pub ms_per_sample: f64,
}

/// Each view group's time per sample, from the growth `delta(idx)` (ns) of the statistics
/// counters over `samples` samples of a run of `geometry`.
pub fn group_times(
    geometry: &shared::Geometry,
    delta: impl Fn(usize) -> f64,
    samples: f64,
) -> Vec<GroupTime> {
    (geometry.groups.iter().enumerate())
        .map(|(g, group)| GroupTime {
            views: format!("{}x{}x{}", group.views, group.height, group.width),
            ms_per_sample: delta(stat::GROUP_NS + g) / 1e6 / samples.max(1.0),
        })
        .collect()
}

/// One point of the timeline.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TimePoint {
    /// Seconds since the measurement started.
    pub t: f64,
    /// Pairs per second over the window that ends at `t` (see [`smoothing_window`]).
    pub pairs_per_s: f64,
    /// Cores busy over that window (process CPU time / wall time).
    pub busy_cores: f64,
}

/// Time spent in one stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageTime {
    pub stage: &'static str,
    /// Seconds summed over all threads.
    pub seconds: f64,
    /// Milliseconds per pair (summed over threads).
    pub ms_per_pair: f64,
}

/// What a measurement found.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub pairs: u64,
    pub wall_s: f64,
    /// Process CPU time (user + system) during the measurement.
    pub cpu_s: f64,
    pub workers: usize,
    pub pairs_per_s: f64,
    /// Pairs per CPU-second: the per-core rate, comparable with single-core peers.
    pub pairs_per_cpu_s: f64,
    /// Average cores busy (cpu_s / wall_s).
    pub busy_cores: f64,
    pub stages: Vec<StageTime>,
    /// The recipe's name and each view group's share of the views' time.
    pub recipe: String,
    pub groups: Vec<GroupTime>,
    pub timeline: Vec<TimePoint>,
    pub skipped_files: usize,
    /// Peak resident set size of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Size of a 4-slot ring of this geometry (what `loader` would map in /dev/shm).
    pub ring_bytes: u64,
}

impl Measurement {
    /// Cores needed for `target` pairs/s at the measured per-core rate.
    pub fn cores_for(&self, target: f64) -> f64 {
        target / self.pairs_per_cpu_s.max(1e-9)
    }
}

/// Process CPU time so far (user + system), seconds.
pub fn cpu_seconds() -> f64 {
    let (user, sys) = rusage();
    user + sys
}

fn rusage() -> (f64, f64) {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct on success; we read it only then.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) } != 0 {
        return (0.0, 0.0);
    }
    let u = unsafe { u.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(u.ru_utime), secs(u.ru_stime))
}

/// Peak resident set size of this process, bytes.
pub fn peak_rss_bytes() -> u64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: as in `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) } != 0 {
        return 0;
    }
    (unsafe { u.assume_init() }.ru_maxrss as u64) * 1024
}

/// Runs `pipeline` into a [`MemorySink`] that drops every batch and measures it.
pub fn measure(
    pipeline: &Pipeline<'_>,
    cfg: &MeasureConfig,
    stop: &AtomicBool,
) -> anyhow::Result<Measurement> {
    let pc = pipeline.config();
    let mut sink = MemorySink::discard(Shard::default(), &pipeline.geometry());
    let counters = sink.counters();
    pipeline
        .run(&mut sink, 0..cfg.warmup_batches, stop)
        .context("warm-up")?;

    // Measure until `seconds` have passed (or the caller stops): a timer thread sets `halt`, a
    // sampler thread records the timeline.
    let halt = AtomicBool::new(false);
    let started = Instant::now();
    let (stats0, delivered0) = (
        counters.stats.snapshot(),
        counters.delivered.load(Ordering::Relaxed),
    );
    let cpu0 = cpu_seconds();
    let batch = pc.batch_size as f64;
    let (result, stats1, delivered1, wall_s, cpu_s, timeline) = std::thread::scope(|s| {
        s.spawn(|| {
            let end = started + Duration::from_secs_f64(cfg.seconds);
            while Instant::now() < end
                && !stop.load(Ordering::Relaxed)
                && !halt.load(Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            halt.store(true, Ordering::Relaxed);
        });
        // Raw readings (seconds, batches delivered, CPU seconds); rates come from a window over
        // them below.
        let sampler = s.spawn(|| {
            let mut readings = vec![(0.0, delivered0, cpu0)];
            while !halt.load(Ordering::Relaxed) {
                std::thread::sleep(cfg.sample_every);
                readings.push((
                    started.elapsed().as_secs_f64(),
                    counters.delivered.load(Ordering::Relaxed),
                    cpu_seconds(),
                ));
            }
            readings
        });
        let result = pipeline.run(&mut sink, cfg.warmup_batches..u64::MAX, &halt);
        let (wall_s, cpu_s) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        halt.store(true, Ordering::Relaxed);
        (
            result,
            counters.stats.snapshot(),
            counters.delivered.load(Ordering::Relaxed),
            wall_s,
            cpu_s,
            sampler.join().unwrap_or_default(),
        )
    });
    result?;
    let batches_per_s = (delivered1 - delivered0) as f64 / wall_s.max(1e-9);
    let timeline = smoothed_timeline(&timeline, batches_per_s, batch);

    let pairs = (delivered1 - delivered0) * pc.batch_size as u64;
    let delta = |i: usize| stats1[i].saturating_sub(stats0[i]) as f64 / 1e9;
    let stages = STAGES
        .iter()
        .map(|&(stage, idx)| StageTime {
            stage,
            seconds: delta(idx),
            ms_per_pair: delta(idx) * 1e3 / pairs.max(1) as f64,
        })
        .collect();
    let geometry = Geometry {
        slots: 4,
        ..pipeline.geometry()
    };
    let groups = group_times(&geometry, |i| delta(i) * 1e9, pairs as f64);
    Ok(Measurement {
        pairs,
        wall_s,
        cpu_s,
        workers: pipeline.workers(),
        pairs_per_s: pairs as f64 / wall_s.max(1e-9),
        pairs_per_cpu_s: pairs as f64 / cpu_s.max(1e-9),
        busy_cores: cpu_s / wall_s.max(1e-9),
        stages,
        recipe: pc.recipe.name.clone(),
        groups,
        timeline,
        skipped_files: pipeline.bad_files().len(),
        peak_rss_bytes: peak_rss_bytes(),
        ring_bytes: geometry.file_bytes() as u64,
    })
}

/// A rate over a window of about ten batches, at least a fifth of the run (1 to 2 s) and at most
/// half of it, so that it does not alternate between two values as whole batches land in one
/// sampling interval or the next.
pub fn smoothing_window(batches_per_s: f64, span: f64) -> f64 {
    let ten_batches = 10.0 / batches_per_s.max(1e-9);
    let shortest = (span / 5.0).clamp(1.0, 2.0);
    ten_batches
        .clamp(shortest, (span / 2.0).max(shortest))
        .min(span)
}

/// For each reading time in `times` (ascending) that has a whole `window` behind it: its index
/// and the index of the latest reading at least `window` before it.
pub fn window_ends(times: &[f64], window: f64) -> Vec<(usize, usize)> {
    let Some(&t0) = times.first() else {
        return Vec::new();
    };
    let mut j = 0;
    let mut out = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        if t - t0 < window - 1e-9 {
            continue;
        }
        while j + 1 < i && times[j + 1] <= t - window + 1e-9 {
            j += 1;
        }
        out.push((i, j));
    }
    out
}

/// The rate of a counter (`counts`, read at `times`) over the window from reading `j` to reading
/// `i`: measured between the first and the last moment in it that the counter moved, so that it is
/// not quantised to whole batches per window; where it moved less than twice, over the window.
pub fn rate_between(times: &[f64], counts: &[u64], j: usize, i: usize) -> f64 {
    let moved_at = |k: usize| k > 0 && counts[k] != counts[k - 1];
    let first = (j + 1..=i).find(|&k| moved_at(k));
    let last = (j + 1..=i).rev().find(|&k| moved_at(k));
    match (first, last) {
        (Some(a), Some(b)) if b > a => (counts[b] - counts[a]) as f64 / (times[b] - times[a]),
        _ => counts[i].saturating_sub(counts[j]) as f64 / (times[i] - times[j]).max(1e-9),
    }
}

fn smoothed_timeline(
    readings: &[(f64, u64, f64)],
    batches_per_s: f64,
    batch: f64,
) -> Vec<TimePoint> {
    let times: Vec<f64> = readings.iter().map(|r| r.0).collect();
    let delivered: Vec<u64> = readings.iter().map(|r| r.1).collect();
    let span = times.last().copied().unwrap_or(0.0);
    window_ends(&times, smoothing_window(batches_per_s, span))
        .into_iter()
        .map(|(i, j)| {
            let ((t, _, cpu), (t_then, _, cpu_then)) = (readings[i], readings[j]);
            TimePoint {
                t,
                pairs_per_s: rate_between(&times, &delivered, j, i) * batch,
                busy_cores: (cpu - cpu_then) / (t - t_then).max(1e-9),
            }
        })
        .collect()
}

/// The recipe's view groups and what each costs per sample (with their shares of the views' time).
pub fn write_groups(s: &mut String, recipe: &str, groups: &[GroupTime]) {
    use std::fmt::Write;
    let total: f64 = groups
        .iter()
        .map(|g| g.ms_per_sample)
        .sum::<f64>()
        .max(1e-12);
    let _ = writeln!(
        s,
        "{:<16} {:>12} {:>7}   ({} recipe)",
        "view group",
        "ms per sample",
        "share",
        if recipe.is_empty() { "unnamed" } else { recipe }
    );
    for g in groups {
        let _ = writeln!(
            s,
            "{:<16} {:>12.3} {:>6.1}%",
            g.views,
            g.ms_per_sample,
            100.0 * g.ms_per_sample / total
        );
    }
}

/// The measurement as a plain-text table: stages (ms per pair, share), rates, and cores needed.
pub fn table(m: &Measurement, target: Option<f64>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let total: f64 = m.stages.iter().map(|st| st.seconds).sum::<f64>().max(1e-12);
    let _ = writeln!(s, "{:<16} {:>12} {:>7}", "stage", "ms per pair", "share");
    for st in &m.stages {
        let _ = writeln!(
            s,
            "{:<16} {:>12.3} {:>6.1}%",
            st.stage,
            st.ms_per_pair,
            100.0 * st.seconds / total
        );
    }
    write_groups(&mut s, &m.recipe, &m.groups);
    let _ = writeln!(
        s,
        "{} pairs in {:.1}s with {} workers: {:.1} pairs/s; {:.1} pairs per CPU-second ({:.2} cores busy); peak RSS {:.0} MiB (ring {:.0} MiB); {} files skipped",
        m.pairs,
        m.wall_s,
        m.workers,
        m.pairs_per_s,
        m.pairs_per_cpu_s,
        m.busy_cores,
        m.peak_rss_bytes as f64 / (1 << 20) as f64,
        m.ring_bytes as f64 / (1 << 20) as f64,
        m.skipped_files
    );
    if let Some(t) = target {
        let _ = writeln!(
            s,
            "a target of {t:.0} pairs/s needs about {:.1} cores at this per-core rate",
            m.cores_for(t)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_between_moves_is_not_quantised_to_whole_batches_per_window() {
        // A batch every 150 ms, read every 10 ms: over any 1 s window, 6 or 7 batches land, but
        // the rate between the first and last move is 1/0.15 to within a reading.
        let times: Vec<f64> = (0..400).map(|k| k as f64 * 0.01).collect();
        let counts: Vec<u64> = times.iter().map(|t| (t / 0.15).floor() as u64).collect();
        for (i, j) in window_ends(&times, 1.0) {
            let r = rate_between(&times, &counts, j, i);
            assert!((r - 1.0 / 0.15).abs() < 0.15, "{r} at {}", times[i]);
        }
        // Fewer than two moves: the plain count over the window (here none: 0).
        assert_eq!(rate_between(&times, &[3; 400], 0, 399), 0.0);
    }

    #[test]
    fn windows_start_once_a_whole_window_lies_behind() {
        let times = [0.0, 0.5, 1.0, 1.5, 2.0];
        assert_eq!(window_ends(&times, 1.0), vec![(2, 0), (3, 1), (4, 2)]);
    }
}
