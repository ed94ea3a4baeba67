//! `loader stat`: watch a live ring from outside, read-only, and say who holds training back.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shared::{Flow, Observer, RingState};

/// One line of `loader stat --json`.
#[derive(Serialize, Debug)]
pub struct StatLine {
    /// Seconds since watching began.
    pub t: f64,
    /// Ring state: initialising, running, end-of-data, aborted.
    pub state: String,
    /// Pairs per second written by the loader and taken by the trainer.
    pub producer_pairs_per_s: f64,
    pub consumer_pairs_per_s: f64,
    /// Unread batches / slots (0 = empty, 1 = full).
    pub occupancy: f64,
    /// Fractions of the interval the loader waited for a slot / the trainer waited for a batch.
    pub producer_wait: f64,
    pub consumer_wait: f64,
    /// input-bound, compute-bound, balanced or idle.
    pub verdict: String,
    pub producer_alive: bool,
    pub consumer_alive: bool,
    /// Files the loader skipped so far.
    pub skipped: u64,
}

/// Prints one line per `interval` until the ring ends, `count` lines were printed, or `stop`.
pub fn watch(
    path: &Path,
    interval: Duration,
    count: Option<u64>,
    json: bool,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let observer = Observer::open_wait(path, Duration::from_secs(10))?;
    let info = observer.info().clone();
    let batch = info.geometry.batch_size as f64;
    let started = Instant::now();
    let mut before = observer.snapshot();
    let mut printed = 0u64;
    if !json {
        writeln!(
            out,
            "{}: the {} recipe, batches of {} samples x ({}) views (views x height x width)",
            path.display(),
            if info.recipe.is_empty() {
                "unnamed"
            } else {
                &info.recipe
            },
            info.geometry.batch_size,
            info.geometry.shape()
        )?;
        writeln!(
            out,
            "{:>7} {:>12} {:>12} {:>9} {:>8} {:>8}  verdict",
            "t(s)", "loader p/s", "trainer p/s", "occupancy", "ld wait", "tr wait"
        )?;
    }
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|c| printed < c) {
        let t0 = Instant::now();
        while t0.elapsed() < interval && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(interval));
        }
        let now = observer.snapshot();
        let flow = Flow::between(&before, &now, t0.elapsed(), info.geometry.slots);
        let line = StatLine {
            t: started.elapsed().as_secs_f64(),
            state: now.state.to_string(),
            producer_pairs_per_s: flow.produced_per_s * batch,
            consumer_pairs_per_s: flow.consumed_per_s * batch,
            occupancy: flow.occupancy,
            producer_wait: flow.producer_wait,
            consumer_wait: flow.consumer_wait,
            verdict: flow.verdict.to_string(),
            producer_alive: now.producer_alive,
            consumer_alive: now.consumer_alive,
            skipped: now.stats[shared::stat::SKIPPED],
        };
        if json {
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            writeln!(
                out,
                "{:>7.1} {:>12.1} {:>12.1} {:>8.0}% {:>7.0}% {:>7.0}%  {}{}",
                line.t,
                line.producer_pairs_per_s,
                line.consumer_pairs_per_s,
                100.0 * line.occupancy,
                100.0 * line.producer_wait,
                100.0 * line.consumer_wait,
                line.verdict,
                if line.consumer_alive {
                    ""
                } else {
                    " (no trainer attached)"
                },
            )?;
        }
        out.flush()?;
        printed += 1;
        before = now;
        let finished = matches!(before.state, RingState::EndOfData | RingState::Aborted)
            && before.consumed >= before.written;
        if finished || !before.producer_alive && before.consumed >= before.written {
            break;
        }
    }
    Ok(())
}
