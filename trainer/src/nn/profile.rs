//! Where the device time of a training step goes, per kind of op (`trainer --profile-ops`).
//!
//! When enabled, every op of [`super::ops`] brackets its kernels with two device timing marks
//! ([`super::NnDevice::timing_mark`]: CUDA events on the GPU, instants on the CPU) and queues the
//! pair here; [`finish_step`] waits for the device once and sums the intervals per [`OpKind`].
//! The rest of the step (the projector's matrix products, the loss, the optimizer: dfdx's own
//! ops) is the step's total minus the bracketed kinds. Disabled, it costs one relaxed load per op.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The kinds of work a step's device time is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    ConvForward,
    ConvBackward,
    BatchNormForward,
    BatchNormBackward,
    /// Max pool, residual add+ReLU, forward and backward.
    PoolAddRelu,
    /// The LARS update.
    Optimizer,
}

impl OpKind {
    pub const ALL: [OpKind; 6] = [
        OpKind::ConvForward,
        OpKind::ConvBackward,
        OpKind::BatchNormForward,
        OpKind::BatchNormBackward,
        OpKind::PoolAddRelu,
        OpKind::Optimizer,
    ];
    /// The key in the JSON stats (`conv_fwd`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            OpKind::ConvForward => "conv_fwd",
            OpKind::ConvBackward => "conv_bwd",
            OpKind::BatchNormForward => "bn_fwd",
            OpKind::BatchNormBackward => "bn_bwd",
            OpKind::PoolAddRelu => "pool_add_relu",
            OpKind::Optimizer => "optimizer",
        }
    }
}

/// A finished interval, readable once the device has caught up (CUDA events) or at once (CPU).
pub type Interval = Box<dyn FnOnce() -> f64 + Send>;

static ENABLED: AtomicBool = AtomicBool::new(false);
static PEAK_MEMORY: AtomicU64 = AtomicU64::new(0);
static PENDING: Mutex<Vec<(OpKind, Interval)>> = Mutex::new(Vec::new());

/// Turns the per-op timing on or off (off by default).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Queues one interval of `kind`.
pub fn push(kind: OpKind, interval: Interval) {
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((kind, interval));
}

/// Records a sample of the device memory in use (the peak is kept).
pub fn note_memory(bytes: u64) {
    PEAK_MEMORY.fetch_max(bytes, Ordering::Relaxed);
}

/// The largest device memory sample since profiling started, in bytes (0: none).
pub fn peak_memory() -> u64 {
    PEAK_MEMORY.load(Ordering::Relaxed)
}

/// Runs `f` (work outside the ops, e.g. the optimizer), timing its device work as `kind` when
/// profiling is on.
pub fn timed<D: super::NnDevice, R>(
    dev: &D,
    kind: OpKind,
    f: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    timed_as(
        dev,
        kind,
        |e| anyhow::anyhow!("timing the device: {e:?}"),
        f,
    )
}

/// [`timed`] for any error type: `timer_err` turns the timer's own failures into it (the ops
/// keep the device's error).
pub fn timed_as<D: super::NnDevice, R, E>(
    dev: &D,
    kind: OpKind,
    timer_err: impl Fn(D::Err) -> E,
    f: impl FnOnce() -> Result<R, E>,
) -> Result<R, E> {
    if !enabled() {
        return f();
    }
    let stop = dev.start_timer().map_err(&timer_err)?;
    let r = f()?;
    push(kind, stop().map_err(&timer_err)?);
    if let Some(bytes) = dev.memory_in_use() {
        note_memory(bytes);
    }
    Ok(r)
}

/// A step's device milliseconds by kind (`totals` in [`OpKind::ALL`]'s order, keyed as in the
/// JSON stats) plus `other`: the rest of the step's `step_ms`.
pub fn breakdown(totals: [f64; 6], step_ms: f64) -> std::collections::BTreeMap<&'static str, f64> {
    let mut m: std::collections::BTreeMap<&'static str, f64> =
        OpKind::ALL.iter().map(|k| k.key()).zip(totals).collect();
    m.insert("other", (step_ms - totals.iter().sum::<f64>()).max(0.0));
    m
}

/// Milliseconds per [`OpKind`] (in [`OpKind::ALL`]'s order) of every interval queued since the
/// last call. Call it after the device has finished the step's work (a synchronize).
pub fn take_totals() -> [f64; 6] {
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    let mut totals = [0f64; 6];
    for (kind, interval) in pending {
        let i = OpKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        totals[i] += interval();
    }
    totals
}
