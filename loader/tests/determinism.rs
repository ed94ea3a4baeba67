//! Same seed, same bytes: batches made with 1, 2 or 5 workers are identical, every one of them,
//! because every random choice is keyed by (seed, epoch, index, view); a different seed or epoch
//! gives other views. And the sink seam's stop and error semantics.

use std::time::Duration;

use std::sync::atomic::AtomicBool;

use datasets::source::SampleSource;
use loader::pipeline::{Pipeline, PipelineConfig};
use loader::sampler::Shard;
use loader::sink::{Flow, MemoryBatch, MemorySink};
use views::params::AugmentConfig;

struct Memory(Vec<Vec<u8>>);

impl SampleSource for Memory {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn label(&self, index: usize) -> u32 {
        index as u32 % 3
    }
    fn name(&self, index: usize) -> String {
        format!("mem/{index}.jpg")
    }
    fn read(&self, index: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        buf.extend_from_slice(&self.0[index]);
        Ok(())
    }
}

fn dataset() -> Memory {
    let files = (0..12u32)
        .map(|k| {
            let (w, h) = (40 + 13 * k as u16, 90 - 4 * k as u16);
            let px: Vec<u8> = (0..w as u32 * h as u32 * 3)
                .map(|i| ((i * (k + 7) + i / 97) % 251) as u8)
                .collect();
            let mut out = Vec::new();
            jpeg_encoder::Encoder::new(&mut out, 85)
                .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
                .unwrap();
            out
        })
        .collect();
    Memory(files)
}

fn config(batch_size: usize, image_size: u32, seed: u64, workers: usize) -> PipelineConfig {
    PipelineConfig {
        batch_size,
        image_size,
        seed,
        workers,
        augment: AugmentConfig::default(),
        max_pixels: 1 << 30,
        throttle: Duration::ZERO,
    }
}

/// Every batch of global steps `steps` (2 per epoch here), as a run delivers them to a sink.
fn batches(
    source: &Memory,
    workers: usize,
    seed: u64,
    steps: std::ops::Range<u64>,
) -> Vec<MemoryBatch> {
    let (b, size) = (6usize, 32u32);
    let pipeline = Pipeline::new(source, config(b, size, seed, workers)).unwrap();
    let mut out = Vec::new();
    let mut sink = MemorySink::new(Shard::default(), b, size, |batch| {
        out.push(batch.clone());
        Ok(Flow::Continue)
    });
    let report = pipeline
        .run(&mut sink, steps.clone(), &AtomicBool::new(false))
        .unwrap();
    drop(sink);
    assert_eq!(report.batches, steps.end - steps.start);
    assert!(!report.interrupted);
    out
}

#[test]
fn batches_are_identical_for_any_number_of_workers() {
    let source = dataset();
    // Steps 3..7: epochs 1, 2 and 3, so every batch of an epoch and an epoch change are compared.
    let one = batches(&source, 1, 5, 3..7);
    assert_eq!(one.len(), 4);
    for (k, batch) in one.iter().enumerate() {
        let meta = batch.meta.unwrap();
        assert_eq!((meta.step, meta.epoch), (3 + k as u64, (3 + k as u64) / 2));
    }
    for workers in [2, 5] {
        let other = batches(&source, workers, 5, 3..7);
        for (k, (a, b)) in one.iter().zip(&other).enumerate() {
            assert!(
                a.view_a == b.view_a
                    && a.view_b == b.view_b
                    && a.indices == b.indices
                    && a.labels == b.labels
                    && a.meta == b.meta,
                "step {}: {workers} workers differ from 1",
                3 + k
            );
        }
    }
    assert!(one[0].view_a != one[0].view_b, "the two views differ");
    assert!(
        batches(&source, 2, 6, 3..4)[0].view_a != one[0].view_a,
        "another seed gives other views"
    );
    // Each sample of step 3 (epoch 1) again in epoch 2 (steps 4 and 5 hold all 12 samples): the
    // same image, so only the epoch in the key can make its parameters and views differ.
    let n = 3 * 32 * 32;
    let view = |batch: &MemoryBatch, k: usize| batch.view_a[k * n..(k + 1) * n].to_vec();
    for (k, index) in one[0].indices.iter().enumerate() {
        let (later, j) = one[1..3]
            .iter()
            .find_map(|b| Some((b, b.indices.iter().position(|i| i == index)?)))
            .expect("epoch 2 holds every sample");
        assert_ne!(
            one[0].params[k], later.params[j],
            "sample {index}: another epoch draws other parameters"
        );
        assert_ne!(
            view(&one[0], k),
            view(later, j),
            "sample {index}: another epoch gives other views"
        );
    }
}

#[test]
fn a_sink_that_says_stop_ends_the_run_after_that_batch() {
    let source = dataset();
    let pipeline = Pipeline::new(&source, config(4, 8, 0, 1)).unwrap();
    let mut seen = 0;
    let mut sink = MemorySink::new(Shard::default(), 4, 8, |_| {
        seen += 1;
        Ok(if seen == 2 {
            Flow::Stop
        } else {
            Flow::Continue
        })
    });
    let report = pipeline
        .run(&mut sink, 0..100, &AtomicBool::new(false))
        .unwrap();
    assert_eq!((report.batches, report.interrupted), (2, true));
    let counters = sink.counters();
    assert_eq!(
        counters
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // A stop flag set before the run: nothing is delivered.
    let report = pipeline
        .run(&mut sink, 0..100, &AtomicBool::new(true))
        .unwrap();
    assert_eq!((report.batches, report.interrupted), (0, true));
}

#[test]
fn an_error_in_the_sink_callback_ends_the_run_with_that_error() {
    let source = dataset();
    let pipeline = Pipeline::new(&source, config(4, 8, 0, 1)).unwrap();
    let mut sink = MemorySink::new(Shard::default(), 4, 8, |_| anyhow::bail!("disk full"));
    let err = pipeline
        .run(&mut sink, 0..100, &AtomicBool::new(false))
        .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
}
