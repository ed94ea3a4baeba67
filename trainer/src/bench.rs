//! `trainer bench`: the time of one training step (both views forward and backward, the loss,
//! LARS) on random inputs already on the device, the measurement PyTorch's side of the GPU
//! benchmark makes (`scripts/gpu/torch_bt.py`), so the two compare like for like.
//!
//! Warm-up steps run with per-op profiling on (they give the split per kind of op and the peak
//! device memory); the timed steps run without it, each ended by reading the loss (one wait for
//! the device per step, as in training).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::input::normalize_views;
use crate::lars::{Lars, LarsConfig};
use crate::model::{projector_spec, Arch, BarlowModel};
use crate::nn::profile;
use crate::nn::NnDevice;
use views::imagenet;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub arch: Arch,
    pub projector: Vec<usize>,
    pub batch: usize,
    pub size: usize,
    /// Timed steps (the median is reported).
    pub steps: usize,
    /// Untimed, profiled steps first (at least 1).
    pub warmup: usize,
}

/// One measurement, in the JSON-lines format of `bench/results/gpu-*.jsonl`.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub arch: &'static str,
    pub projector: String,
    pub batch: usize,
    pub size: usize,
    /// `fp32`, `tf32` (CUDA) or `cpu`.
    pub precision: String,
    pub device: String,
    pub steps: usize,
    /// Median over the timed steps.
    pub ms_per_step: f64,
    pub min_ms: f64,
    /// Peak device memory in use during the profiled warm-up (GiB; includes dfdx's allocation
    /// cache); `None` on the CPU.
    pub peak_mem_gib: Option<f64>,
    /// Device ms per kind of op in the last warm-up step (`other`: the projector, the loss).
    pub ops_ms: std::collections::BTreeMap<&'static str, f64>,
    pub loss: f32,
}

/// Times `cfg` on `dev`; `device` and `precision` only label the result.
pub fn bench<D: NnDevice>(
    dev: &D,
    cfg: &BenchConfig,
    device: &str,
    precision: &str,
) -> anyhow::Result<BenchResult> {
    let mut model = BarlowModel::new(dev, cfg.arch, &cfg.projector, 0);
    let mut opt = Lars::new(&model.store, LarsConfig::default());
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let len = cfg.batch * 3 * cfg.size * cfg.size;
    let a: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    let (va, vb) = normalize_views(
        dev,
        &a,
        &b,
        cfg.batch,
        cfg.size,
        cfg.size,
        imagenet::MEAN,
        imagenet::STD,
    )?;
    let mut step = || -> anyhow::Result<(f64, f32)> {
        let t = Instant::now();
        let sg = crate::session::train_step(
            &mut model,
            &mut opt,
            va.clone(),
            vb.clone(),
            crate::loss::DEFAULT_LAMBDA,
            (0.2 * cfg.batch as f64 / 256.0, 0.0048),
            |_, _| {},
        )?;
        let loss = sg.loss();
        Ok((t.elapsed().as_secs_f64() * 1e3, loss))
    };
    let was_enabled = profile::enabled();
    profile::set_enabled(true);
    let mut ops_ms = std::collections::BTreeMap::new();
    for _ in 0..cfg.warmup.max(1) {
        let _ = profile::take_totals();
        let (ms, _) = step()?;
        let totals = profile::take_totals();
        ops_ms = profile::breakdown(totals, ms);
    }
    profile::set_enabled(was_enabled);
    let peak = profile::peak_memory();
    let mut times = Vec::with_capacity(cfg.steps);
    let mut loss = f32::NAN;
    for _ in 0..cfg.steps.max(1) {
        let (ms, l) = step()?;
        times.push(ms);
        loss = l;
    }
    times.sort_by(f64::total_cmp);
    Ok(BenchResult {
        implementation: "barlow",
        arch: cfg.arch.name(),
        projector: projector_spec(&cfg.projector),
        batch: cfg.batch,
        size: cfg.size,
        precision: precision.to_string(),
        device: device.to_string(),
        steps: times.len(),
        ms_per_step: times[times.len() / 2],
        min_ms: times[0],
        peak_mem_gib: (peak > 0).then(|| peak as f64 / (1u64 << 30) as f64),
        ops_ms,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::profile::OpKind;
    use dfdx::prelude::*;

    /// On the CPU the profile sees every kind of op of a ResNet step, and the step is timed.
    #[test]
    fn bench_reports_time_and_every_op_kind() {
        let dev = Cpu::default();
        let cfg = BenchConfig {
            arch: Arch::Resnet18,
            projector: vec![32, 32],
            batch: 4,
            size: 32,
            steps: 2,
            warmup: 1,
        };
        let r = bench(&dev, &cfg, "cpu", "cpu").unwrap();
        assert!(r.ms_per_step > 0.0 && r.loss.is_finite(), "{r:?}");
        for k in OpKind::ALL {
            assert!(r.ops_ms[k.key()] > 0.0, "no time for {}: {r:?}", k.key());
        }
        // the heap's peak holds at least the parameters and their gradients (which become
        // LARS's momentum at the first step)
        let params: usize = BarlowModel::new(&dev, cfg.arch, &cfg.projector, 0)
            .store
            .params
            .iter()
            .map(|p| p.t.shape().0)
            .sum();
        let peak = r.peak_mem_gib.expect("the CPU reports its heap's peak") * (1u64 << 30) as f64;
        assert!(
            peak > 2.0 * 4.0 * params as f64,
            "peak {peak} B, {params} parameters"
        );
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains(r#""impl":"barlow""#) && line.contains(r#""ms_per_step""#));
    }
}
