//! `loader profile --shm NAME`: profiles the training run that is going on, from outside.
//!
//! It attaches read-only to a ring that a loader and a trainer (barlow's, or any consumer that
//! keeps the ring's counters) are using ([`shared::Observer`]), reads the header's live counters
//! every few milliseconds for N seconds, and turns the readings into a [`LiveProfile`]: the
//! verdict overall and over time ([`shared::Verdict`], the one definition), both sides' rates and
//! the ring's occupancy (smoothed over a window of several steps, not per batch), the trainer's
//! step split into waiting and computing, the loader's time per pair by stage and its per-core
//! rate, how many loader cores would keep the trainer fed, which stage to attack first, and the
//! run's geometry. Where loader and trainer run in this pid namespace, their CPU time and command
//! lines come from `/proc`. `crate::profile::report::live_html_report` draws it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use shared::{stat, Observer, RingInfo, RingState, Verdict, STATS_LEN};

use crate::profile::measure::{
    group_times, rate_between, smoothing_window, window_ends, write_groups, GroupTime, StageTime,
    STAGES,
};
use crate::recipe_args::RecipeArgs;

/// How long and how often to read the ring.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Seconds to sample.
    pub seconds: f64,
    /// Interval between readings.
    pub sample_every: Duration,
}

impl LiveConfig {
    /// `seconds` of readings, every 25 ms (less often on long profiles: about 300 readings).
    pub fn for_seconds(seconds: f64) -> LiveConfig {
        LiveConfig {
            seconds,
            sample_every: Duration::from_secs_f64((seconds / 300.0).clamp(0.025, 2.0)),
        }
    }
}

/// One reading of the ring's shared state.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Seconds since sampling began.
    pub t: f64,
    pub state: RingState,
    /// Batches published / consumed so far.
    pub written: u64,
    pub consumed: u64,
    pub stats: [u64; STATS_LEN],
    /// Process CPU time (user + system) of the loader / trainer, where `/proc` shows it.
    pub loader_cpu_s: Option<f64>,
    pub trainer_cpu_s: Option<f64>,
}

/// Reads `observer` every `cfg.sample_every` for `cfg.seconds`, or until the ring ends (end of
/// data or aborted, and drained), its loader is gone and the ring drained, or `stop`.
pub fn sample(observer: &Observer, cfg: &LiveConfig, stop: &AtomicBool) -> Vec<Reading> {
    let started = Instant::now();
    let mut readings = Vec::new();
    let end = Duration::from_secs_f64(cfg.seconds.max(0.0));
    loop {
        let (loader_pid, trainer_pid) = observer.local_pids();
        let snap = observer.snapshot();
        let finished = (matches!(snap.state, RingState::EndOfData | RingState::Aborted)
            || !snap.producer_alive)
            && snap.consumed >= snap.written;
        readings.push(Reading {
            t: started.elapsed().as_secs_f64(),
            state: snap.state,
            written: snap.written,
            consumed: snap.consumed,
            stats: snap.stats,
            loader_cpu_s: loader_pid.and_then(process_cpu_seconds),
            trainer_cpu_s: trainer_pid.and_then(process_cpu_seconds),
        });
        if finished || started.elapsed() >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        let next = cfg.sample_every * readings.len() as u32;
        while started.elapsed() < next.min(end) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    readings
}

/// The verdict over the whole profile and the numbers behind it.
#[derive(Clone, Debug, Serialize)]
pub struct VerdictSummary {
    pub verdict: &'static str,
    pub advice: &'static str,
    /// Fraction of the time the trainer waited for a batch.
    pub trainer_wait: f64,
    /// Fraction of the time the loader waited for a free slot.
    pub loader_wait: f64,
    /// Mean ring occupancy over the readings (0 = empty, 1 = full).
    pub mean_occupancy: f64,
    /// Share of the timeline's points with each verdict.
    pub share_over_time: Vec<(&'static str, f64)>,
}

/// The trainer's side.
#[derive(Clone, Debug, Serialize)]
pub struct TrainerSide {
    /// Steps (batches) taken during the profile.
    pub steps: u64,
    pub pairs_per_s: f64,
    pub ms_per_step: f64,
    pub wait_ms_per_step: f64,
    pub compute_ms_per_step: f64,
    /// Where the compute time comes from: the trainer's own counter (`train_ns`), or, for a
    /// consumer that does not keep it, the time it did not spend waiting.
    pub compute_from: &'static str,
    /// Pairs per second the trainer would take if it never waited (its compute speed); None when
    /// it hardly computes (under 2% of its step, e.g. `trainer --dry-run`): then no loader keeps
    /// up and the trainer's speed is the loader's.
    pub pairs_per_compute_s: Option<f64>,
    pub cpu_cores_busy: Option<f64>,
}

/// The loader's side.
#[derive(Clone, Debug, Serialize)]
pub struct LoaderSide {
    pub pairs_per_s: f64,
    /// Worker threads, as the loader published them (None from a loader that does not).
    pub workers: Option<u64>,
    pub cpu_cores_busy: Option<f64>,
    /// Pairs per loader CPU-second: the per-core rate.
    pub pairs_per_cpu_s: Option<f64>,
    /// "process CPU time" (from /proc) or "stage times" (summed over threads).
    pub per_core_from: &'static str,
    /// Time per pair in each stage, summed over threads.
    pub stages: Vec<StageTime>,
    /// Time per sample making each view group's views.
    pub groups: Vec<GroupTime>,
    pub skipped_files: u64,
}

/// The stage that costs most, when the run is input-bound.
#[derive(Clone, Debug, Serialize)]
pub struct Attack {
    pub stage: &'static str,
    pub ms_per_pair: f64,
    /// Its share of all stage time.
    pub share: f64,
}

/// What a report needs to be filed with a bug or compared later.
#[derive(Clone, Debug, Serialize)]
pub struct RunGeometry {
    pub ring: String,
    pub batch_size: u32,
    /// The recipe's name, as the ring header declares it.
    pub recipe: String,
    /// The views per sample, group by group (views x height x width).
    pub views: String,
    pub slots: u32,
    pub dataset_len: u64,
    pub steps_per_epoch: u64,
    pub seed: u64,
    pub rank: u32,
    pub world_size: u32,
    /// The loader's fingerprint of its augmentation settings, pixel cap and labels.
    pub stream_key: String,
    pub workers: Option<u64>,
    /// The dataset as the loader's command line names it (`--dir`/`--pack`, else the demo data).
    pub dataset: Option<String>,
    /// The JPEG decoder, from the loader's command line (`turbo (region)`, `turbo (full)`,
    /// `zune`), or None when it cannot be known from here.
    pub decoder: Option<String>,
    pub loader_command: Option<String>,
    pub trainer_command: Option<String>,
    /// The recipe in effect (the loader's recipe options read now, as `loader recipe --print`
    /// writes it), or None when it cannot be known from here.
    pub augment: Option<serde_json::Value>,
    pub augment_from: String,
}

/// One point of the timeline, over the window that ends at `t`.
#[derive(Clone, Debug, Serialize)]
pub struct LivePoint {
    pub t: f64,
    pub loader_pairs_per_s: f64,
    pub trainer_pairs_per_s: f64,
    pub occupancy: f64,
    pub loader_wait: f64,
    pub trainer_wait: f64,
    pub verdict: &'static str,
}

/// Everything the live report shows; `loader profile --shm NAME --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct LiveProfile {
    pub seconds: f64,
    pub readings: usize,
    /// Rates and occupancy over time are averaged over this many seconds.
    pub window_s: f64,
    pub verdict: VerdictSummary,
    pub trainer: TrainerSide,
    pub loader: LoaderSide,
    /// Loader cores that would keep the trainer fed at its compute speed.
    pub loader_cores_to_keep_up: Option<f64>,
    pub attack_first: Option<Attack>,
    /// The answers in plain sentences, most important first.
    pub findings: Vec<String>,
    pub geometry: RunGeometry,
    pub timeline: Vec<LivePoint>,
}

fn verdict_of(trainer_wait: f64, loader_wait: f64, occupancy: f64, moved: bool) -> Verdict {
    Verdict::judge(trainer_wait, loader_wait, Some(occupancy), moved)
}

/// Turns readings of the ring described by `info` (at `path`) into a profile.
pub fn analyse(
    path: &Path,
    info: &RingInfo,
    readings: &[Reading],
    processes: &Processes,
) -> anyhow::Result<LiveProfile> {
    let (first, last) = match readings {
        [first, .., last] if last.t > first.t => (first, last),
        _ => anyhow::bail!(
            "the ring {} ended before two readings could be taken: profile a run that is going on",
            path.display()
        ),
    };
    let batch = info.geometry.batch_size as f64;
    let slots = info.geometry.slots.max(1) as f64;
    let span = last.t - first.t;
    let d = |i: usize| last.stats[i].saturating_sub(first.stats[i]) as f64;
    let occ = |r: &Reading| r.written.saturating_sub(r.consumed) as f64 / slots;

    // The trainer.
    let steps = last.consumed.saturating_sub(first.consumed);
    let wait_s = (d(stat::CONSUMER_WAIT_NS) / 1e9).min(span);
    let (compute_s, compute_from) = if d(stat::TRAIN_NS) > 0.0 {
        (d(stat::TRAIN_NS) / 1e9, "the trainer's own counter")
    } else {
        ((span - wait_s).max(0.0), "time not spent waiting")
    };
    let per_step = |s: f64| 1e3 * s / steps.max(1) as f64;
    let trainer_pairs = steps as f64 * batch;
    let trainer = TrainerSide {
        steps,
        pairs_per_s: trainer_pairs / span,
        ms_per_step: per_step(span),
        wait_ms_per_step: per_step(wait_s),
        compute_ms_per_step: per_step(compute_s),
        compute_from,
        pairs_per_compute_s: (compute_s > 0.02 * span).then(|| trainer_pairs / compute_s),
        cpu_cores_busy: cpu_busy(first.trainer_cpu_s, last.trainer_cpu_s, span),
    };

    // The loader.
    let written = last.written.saturating_sub(first.written);
    let loader_pairs = match d(stat::PAIRS_WRITTEN) {
        p if p > 0.0 => p,
        _ => written as f64 * batch,
    };
    let stages: Vec<StageTime> = STAGES
        .iter()
        .map(|&(stage, idx)| StageTime {
            stage,
            seconds: d(idx) / 1e9,
            ms_per_pair: d(idx) / 1e6 / loader_pairs.max(1.0),
        })
        .collect();
    let stage_s: f64 = stages.iter().map(|s| s.seconds).sum();
    let loader_cores = cpu_busy(first.loader_cpu_s, last.loader_cpu_s, span);
    let (per_core, per_core_from) = match loader_cores {
        Some(c) if c > 0.0 && loader_pairs > 0.0 => {
            (Some(loader_pairs / (c * span)), "process CPU time")
        }
        _ if stage_s > 0.0 => (Some(loader_pairs / stage_s), "stage times"),
        _ => (None, "stage times"),
    };
    let workers = Some(last.stats[stat::WORKERS]).filter(|&w| w > 0);
    let loader = LoaderSide {
        pairs_per_s: loader_pairs / span,
        workers,
        cpu_cores_busy: loader_cores,
        pairs_per_cpu_s: per_core,
        per_core_from,
        groups: group_times(&info.geometry, &d, loader_pairs),
        stages,
        skipped_files: last.stats[stat::SKIPPED],
    };

    // The verdict, overall and over time.
    let mean_occupancy = readings.iter().map(occ).sum::<f64>() / readings.len() as f64;
    let loader_wait = (d(stat::PRODUCER_WAIT_NS) / 1e9 / span).min(1.0);
    let trainer_wait = wait_s / span;
    let overall = verdict_of(
        trainer_wait,
        loader_wait,
        mean_occupancy,
        steps + written > 0,
    );
    let window_s = smoothing_window(steps.max(written) as f64 / span, span);
    let timeline = timeline(readings, window_s, batch, slots);
    let share_over_time = [
        Verdict::InputBound,
        Verdict::ComputeBound,
        Verdict::Balanced,
        Verdict::Idle,
    ]
    .iter()
    .map(|v| {
        let n = timeline.iter().filter(|p| p.verdict == v.as_str()).count();
        (v.as_str(), n as f64 / timeline.len().max(1) as f64)
    })
    .filter(|(_, share)| *share > 0.0)
    .collect();
    let verdict = VerdictSummary {
        verdict: overall.as_str(),
        advice: overall.advice(),
        trainer_wait,
        loader_wait,
        mean_occupancy,
        share_over_time,
    };

    let loader_cores_to_keep_up = per_core
        .zip(trainer.pairs_per_compute_s)
        .map(|(p, demand)| demand / p.max(1e-9));
    let attack_first = (overall == Verdict::InputBound)
        .then(|| {
            loader
                .stages
                .iter()
                .max_by(|a, b| a.seconds.total_cmp(&b.seconds))
                .filter(|s| s.seconds > 0.0)
                .map(|s| Attack {
                    stage: s.stage,
                    ms_per_pair: s.ms_per_pair,
                    share: s.seconds / stage_s.max(1e-12),
                })
        })
        .flatten();
    let mut profile = LiveProfile {
        seconds: span,
        readings: readings.len(),
        window_s,
        verdict,
        trainer,
        loader,
        loader_cores_to_keep_up,
        attack_first,
        findings: Vec::new(),
        geometry: geometry(path, info, workers, processes),
        timeline,
    };
    profile.findings = findings(&profile, overall);
    Ok(profile)
}

/// Rates, occupancy, waits and verdict at each reading, over the window that ends there.
fn timeline(readings: &[Reading], window: f64, batch: f64, slots: f64) -> Vec<LivePoint> {
    let occ = |r: &Reading| r.written.saturating_sub(r.consumed) as f64 / slots;
    let times: Vec<f64> = readings.iter().map(|r| r.t).collect();
    let written: Vec<u64> = readings.iter().map(|r| r.written).collect();
    let consumed_counts: Vec<u64> = readings.iter().map(|r| r.consumed).collect();
    window_ends(&times, window)
        .into_iter()
        .map(|(i, j)| {
            let (now, then) = (&readings[i], &readings[j]);
            let dt = (now.t - then.t).max(1e-9);
            let d = |k: usize| now.stats[k].saturating_sub(then.stats[k]) as f64;
            let produced = now.written.saturating_sub(then.written);
            let consumed = now.consumed.saturating_sub(then.consumed);
            let occupancy = readings[j..=i].iter().map(occ).sum::<f64>() / (i + 1 - j) as f64;
            let (loader_wait, trainer_wait) = (
                (d(stat::PRODUCER_WAIT_NS) / 1e9 / dt).min(1.0),
                (d(stat::CONSUMER_WAIT_NS) / 1e9 / dt).min(1.0),
            );
            LivePoint {
                t: now.t,
                loader_pairs_per_s: rate_between(&times, &written, j, i) * batch,
                trainer_pairs_per_s: rate_between(&times, &consumed_counts, j, i) * batch,
                occupancy,
                loader_wait,
                trainer_wait,
                verdict: verdict_of(
                    trainer_wait,
                    loader_wait,
                    occupancy,
                    produced + consumed > 0,
                )
                .as_str(),
            }
        })
        .collect()
}

/// The answers, in sentences, most important first.
fn findings(p: &LiveProfile, verdict: Verdict) -> Vec<String> {
    let (t, l) = (&p.trainer, &p.loader);
    if t.steps == 0 {
        return vec![format!(
            "No batch was taken during the profile: no trainer is attached to this ring, or it is stuck (the loader waited for a free slot {:.0}% of the time, the ring was {:.0}% full).",
            100.0 * p.verdict.loader_wait,
            100.0 * p.verdict.mean_occupancy
        )];
    }
    let mut out = vec![format!(
        "{}: the trainer waited for data {:.0}% of the time and the loader waited for a free slot {:.0}%; the ring was {:.0}% full on average. A step took {:.1} ms: {:.1} ms waiting for input, {:.1} ms computing.",
        capitalised(verdict.as_str()),
        100.0 * p.verdict.trainer_wait,
        100.0 * p.verdict.loader_wait,
        100.0 * p.verdict.mean_occupancy,
        t.ms_per_step,
        t.wait_ms_per_step,
        t.compute_ms_per_step,
    )];
    if t.pairs_per_compute_s.is_none() {
        out.push(format!(
            "The trainer hardly computes ({:.2} ms per step: a dry run?), so no loader keeps it fed: it goes as fast as the loader, {:.0} pairs/s{}.",
            t.compute_ms_per_step,
            l.pairs_per_s,
            l.pairs_per_cpu_s
                .map(|r| format!(", at {r:.0} pairs per loader CPU-second"))
                .unwrap_or_default()
        ));
    }
    if let (Some(cores), Some(per_core), Some(demand)) = (
        p.loader_cores_to_keep_up,
        l.pairs_per_cpu_s,
        t.pairs_per_compute_s,
    ) {
        let workers = l
            .workers
            .map(|w| format!("; it runs {w} worker{}", if w == 1 { "" } else { "s" }))
            .unwrap_or_default();
        let busy = l
            .cpu_cores_busy
            .map(|c| format!(" and kept {c:.1} cores busy"))
            .unwrap_or_default();
        out.push(format!(
            "Keeping the trainer fed at its compute speed ({demand:.0} pairs/s) takes about {cores:.1} loader cores at the loader's {per_core:.0} pairs per CPU-second{workers}{busy}."
        ));
    }
    if verdict == Verdict::InputBound {
        let here = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Its workers idle while the trainer waits: the stages are not what holds it back.
        let idle_workers = match (l.cpu_cores_busy, l.workers) {
            (Some(busy), Some(w)) if busy < 0.6 * w as f64 => Some((busy, w)),
            _ => None,
        };
        match (p.loader_cores_to_keep_up, idle_workers) {
            (_, Some((busy, w))) => out.push(format!(
                "The loader is not short of CPU: it kept only {busy:.1} cores busy with {w} worker{}, so something other than its stages holds it back (slow file reads, --throttle-ms, a shared or throttled CPU); more workers will not help until that is found.",
                if w == 1 { "" } else { "s" }
            )),
            (Some(cores), None) if cores > here as f64 => out.push(format!(
                "That is more than this machine's {here} cores: make each pair cheaper (datasets pack --max-side, a smaller --image-size) or feed from more machines."
            )),
            (Some(cores), None) => {
                // A quarter more than the bare need, for the main thread and the ups and downs.
                let workers = ((cores * 1.25).ceil() as usize).min(here);
                if l.workers.is_none_or(|w| (w as usize) < workers) {
                    out.push(format!(
                        "Run the loader with --workers {workers} (this machine has {here} cores)."
                    ));
                }
            }
            (None, None) => {}
        }
        if let Some(a) = &p.attack_first {
            out.push(format!(
                "Attack {} first: {:.2} ms of every pair's loader time ({:.0}%).",
                a.stage,
                a.ms_per_pair,
                100.0 * a.share
            ));
        }
    } else if verdict == Verdict::ComputeBound {
        out.push(
            "The loader keeps up; a faster trainer (bigger batch, GPU, TF32) is what would speed training up.".to_string(),
        );
    }
    out
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn cpu_busy(from: Option<f64>, to: Option<f64>, span: f64) -> Option<f64> {
    Some((to? - from?).max(0.0) / span.max(1e-9))
}

/// What `/proc` tells about the two processes, read once when sampling starts.
#[derive(Clone, Debug, Default)]
pub struct Processes {
    pub loader: Option<ProcessInfo>,
    pub trainer: Option<ProcessInfo>,
}

/// One process's command line and working directory.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
}

impl Processes {
    /// The loader's and the trainer's command lines, where they run in this pid namespace.
    pub fn of(observer: &Observer) -> Processes {
        let (loader, trainer) = observer.local_pids();
        Processes {
            loader: loader.and_then(ProcessInfo::read),
            trainer: trainer.and_then(ProcessInfo::read),
        }
    }

    /// These, with what is missing taken from `later`.
    pub fn or(self, later: Processes) -> Processes {
        Processes {
            loader: self.loader.or(later.loader),
            trainer: self.trainer.or(later.trainer),
        }
    }
}

impl ProcessInfo {
    fn read(pid: u32) -> Option<ProcessInfo> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (!args.is_empty()).then(|| ProcessInfo {
            args,
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
        })
    }

    /// The value of `--flag VALUE` or `--flag=VALUE`.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        let eq = format!("{flag}=");
        self.args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                self.args.get(i + 1).map(String::as_str)
            } else {
                a.strip_prefix(&eq)
            }
        })
    }

    /// A path from the command line, resolved against the process's working directory.
    fn path(&self, flag: &str) -> Option<PathBuf> {
        let p = PathBuf::from(self.flag(flag)?);
        Some(match &self.cwd {
            Some(cwd) if p.is_relative() => cwd.join(p),
            _ => p,
        })
    }

    fn command(&self) -> String {
        self.args.join(" ")
    }
}

/// How the loader with this command line decodes (`turbo (region)`, `turbo (full)`, `zune`, ...).
fn decoder_of(l: &ProcessInfo) -> String {
    let args = crate::decode_args::DecodeArgs {
        decoder: l
            .flag("--decoder")
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        full_decode: l.args.iter().any(|a| a == "--full-decode"),
        dct_scale: l.args.iter().any(|a| a == "--dct-scale"),
    };
    args.options().describe()
}

/// Process CPU time (user + system) of `pid`, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses): state is the
    // first, utime the 12th and stime the 13th.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

fn geometry(
    path: &Path,
    info: &RingInfo,
    workers: Option<u64>,
    processes: &Processes,
) -> RunGeometry {
    let loader = processes.loader.as_ref();
    let dataset = loader.map(|l| {
        l.path("--dir")
            .or_else(|| l.path("--pack"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the built-in demo dataset".to_string())
    });
    let decoder = loader.map(decoder_of);
    let (augment, augment_from) = match loader {
        None => (
            None,
            "unknown (the loader runs in another pid namespace)".to_string(),
        ),
        Some(l) => {
            let args = RecipeArgs {
                recipe: l
                    .flag("--recipe")
                    .unwrap_or(views::recipe::DEFAULT)
                    .to_string(),
                recipe_config: l.path("--recipe-config"),
                augment_config: l.path("--augment-config"),
                image_size: l.flag("--image-size").and_then(|s| s.parse().ok()),
                local_size: l.flag("--local-size").and_then(|s| s.parse().ok()),
                local_crops: l.flag("--local-crops").and_then(|s| s.parse().ok()),
            };
            let files: Vec<String> = [&args.recipe_config, &args.augment_config]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            match args.load() {
                Ok(recipe) if files.is_empty() => (
                    Some(recipe.to_json()),
                    format!("the {} recipe", recipe.name),
                ),
                Ok(recipe) => (
                    Some(recipe.to_json()),
                    format!(
                        "the {} recipe with {} (read now)",
                        recipe.name,
                        files.join(", ")
                    ),
                ),
                Err(e) => (None, format!("{e:#}")),
            }
        }
    };
    RunGeometry {
        ring: path.display().to_string(),
        batch_size: info.geometry.batch_size,
        recipe: info.recipe.clone(),
        views: info.geometry.shape(),
        slots: info.geometry.slots,
        dataset_len: info.dataset_len,
        steps_per_epoch: info.steps_per_epoch,
        seed: info.seed,
        rank: info.rank,
        world_size: info.world_size,
        stream_key: format!("{:016x}", info.stream_key),
        workers,
        dataset,
        decoder,
        loader_command: loader.map(ProcessInfo::command),
        trainer_command: processes.trainer.as_ref().map(ProcessInfo::command),
        augment,
        augment_from,
    }
}

/// The profile as text: the findings, then the stage table.
pub fn text(p: &LiveProfile) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for f in &p.findings {
        let _ = writeln!(s, "{f}");
    }
    if let Some(d) = &p.geometry.decoder {
        let _ = writeln!(s, "JPEG decoder: {d}");
    }
    let _ = writeln!(s, "{:<16} {:>12}", "loader stage", "ms per pair");
    for st in &p.loader.stages {
        let _ = writeln!(s, "{:<16} {:>12.3}", st.stage, st.ms_per_pair);
    }
    write_groups(&mut s, &p.geometry.recipe, &p.loader.groups);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Geometry;

    fn reading(t: f64, written: u64, consumed: u64, consumer_wait_s: f64, train_s: f64) -> Reading {
        let mut stats = [0; STATS_LEN];
        stats[stat::CONSUMER_WAIT_NS] = (consumer_wait_s * 1e9) as u64;
        stats[stat::TRAIN_NS] = (train_s * 1e9) as u64;
        stats[stat::PAIRS_WRITTEN] = written * 4;
        stats[stat::DECODE_NS] = written * 4 * 3_000_000;
        stats[stat::CROP_NS] = written * 4 * 1_000_000;
        stats[stat::WORKERS] = 2;
        Reading {
            t,
            state: RingState::Running,
            written,
            consumed,
            stats,
            loader_cpu_s: Some(t * 0.5),
            trainer_cpu_s: None,
        }
    }

    fn info() -> RingInfo {
        RingInfo::new(Geometry::pairs(4, 4, 3, 16, 16))
    }

    #[test]
    fn a_waiting_trainer_on_an_empty_ring_is_input_bound_and_decode_is_attacked_first() {
        // 10 steps a second; each step 70 ms waiting, 30 ms computing; the ring stays empty.
        let readings: Vec<Reading> = (0..=40)
            .map(|i| {
                let t = i as f64 * 0.1;
                reading(t, i, i, 0.07 * i as f64, 0.03 * i as f64)
            })
            .collect();
        let p = analyse(
            Path::new("/dev/shm/x"),
            &info(),
            &readings,
            &Processes::default(),
        )
        .unwrap();
        assert_eq!(p.verdict.verdict, "input-bound");
        assert!((p.trainer.wait_ms_per_step - 70.0).abs() < 1.0, "{p:?}");
        assert!((p.trainer.compute_ms_per_step - 30.0).abs() < 1.0);
        assert_eq!(p.trainer.compute_from, "the trainer's own counter");
        // 40 pairs/s over 0.5 cores: 80 pairs per CPU-second; the trainer computes 4 pairs in
        // 30 ms = 133 pairs/s, so about 1.7 cores.
        let per_core = p.loader.pairs_per_cpu_s.unwrap();
        assert!((per_core - 80.0).abs() < 1.0, "{per_core}");
        assert!((p.loader_cores_to_keep_up.unwrap() - 133.3 / 80.0).abs() < 0.05);
        let attack = p.attack_first.as_ref().unwrap();
        assert_eq!(attack.stage, "decode");
        assert!((attack.share - 0.75).abs() < 1e-6);
        // Smoothed over a window, the rate is steady: no alternating values.
        assert!(p
            .timeline
            .iter()
            .all(|pt| (pt.trainer_pairs_per_s - 40.0).abs() < 1e-6));
        assert!(p.timeline.iter().all(|pt| pt.verdict == "input-bound"));
        assert!(p.findings[0].starts_with("Input-bound"));
        assert!(p.findings.iter().any(|f| f.contains("Attack decode first")));
    }

    #[test]
    fn a_consumer_without_a_compute_counter_computes_when_it_does_not_wait() {
        let mut readings: Vec<Reading> = (0..=20)
            .map(|i| reading(i as f64 * 0.1, i + 4, i, 0.0, 0.0))
            .collect();
        for r in &mut readings {
            r.stats[stat::PRODUCER_WAIT_NS] = (r.t * 0.8e9) as u64;
        }
        let p = analyse(
            Path::new("/dev/shm/x"),
            &info(),
            &readings,
            &Processes::default(),
        )
        .unwrap();
        assert_eq!(p.verdict.verdict, "compute-bound");
        assert_eq!(p.trainer.compute_from, "time not spent waiting");
        assert!((p.trainer.compute_ms_per_step - 100.0).abs() < 1.0);
        assert!(p.attack_first.is_none());
    }

    #[test]
    fn one_reading_is_refused_with_a_reason() {
        let e = analyse(
            Path::new("/dev/shm/x"),
            &info(),
            &[reading(0.0, 0, 0, 0.0, 0.0)],
            &Processes::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ended before"), "{e}");
    }

    #[test]
    fn flags_are_read_in_both_spellings() {
        let p = ProcessInfo {
            args: ["loader", "--dir", "d", "--augment-config=a.json"]
                .map(String::from)
                .to_vec(),
            cwd: Some(PathBuf::from("/work")),
        };
        assert_eq!(p.flag("--dir"), Some("d"));
        assert_eq!(
            p.path("--augment-config"),
            Some(PathBuf::from("/work/a.json"))
        );
        assert_eq!(p.flag("--pack"), None);
    }

    #[test]
    fn the_decoder_is_read_from_the_loaders_command_line() {
        let of = |args: &[&str]| {
            decoder_of(&ProcessInfo {
                args: args.iter().map(|a| a.to_string()).collect(),
                cwd: None,
            })
        };
        assert_eq!(of(&["loader", "--shm", "r"]), "turbo (region)");
        assert_eq!(of(&["loader", "--decoder=zune"]), "zune");
        assert_eq!(
            of(&["loader", "--decoder", "turbo", "--full-decode"]),
            "turbo (full)"
        );
    }

    #[test]
    fn our_own_cpu_time_is_read_from_proc() {
        let t = process_cpu_seconds(std::process::id()).unwrap();
        assert!(t >= 0.0);
    }
}
