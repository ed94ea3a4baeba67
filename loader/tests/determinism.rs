//! Same seed, same bytes: batches made with 1, 2 or 5 workers are identical, every one of them,
//! because every random choice is keyed by (seed, epoch, index, view); a different seed or epoch
//! gives other views. And the sink seam's stop and error semantics.

use std::time::Duration;

use std::sync::atomic::AtomicBool;

use datasets::source::SampleSource;
use loader::pipeline::{Pipeline, PipelineConfig};
use loader::sampler::Shard;
use loader::sink::{Flow, MemoryBatch, MemorySink};
use views::recipe::{builtin, Recipe};

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

/// Barlow Twins' two views at `image_size`.
fn bt(image_size: u32) -> Recipe {
    builtin("barlow-twins")
        .unwrap()
        .resized(Some(image_size), None, None)
        .unwrap()
}

fn config(batch_size: usize, recipe: Recipe, seed: u64, workers: usize) -> PipelineConfig {
    PipelineConfig {
        batch_size,
        recipe,
        seed,
        workers,
        max_pixels: 1 << 30,
        throttle: Duration::ZERO,
        decode: Default::default(),
    }
}

/// Every batch of global steps `steps` (2 per epoch here), as a run delivers them to a sink.
fn batches(
    source: &Memory,
    workers: usize,
    seed: u64,
    steps: std::ops::Range<u64>,
) -> Vec<MemoryBatch> {
    recipe_batches(source, bt(32), workers, seed, steps)
}

/// As [`batches`], for any recipe.
fn recipe_batches(
    source: &Memory,
    recipe: Recipe,
    workers: usize,
    seed: u64,
    steps: std::ops::Range<u64>,
) -> Vec<MemoryBatch> {
    let b = 6usize;
    let pipeline = Pipeline::new(source, config(b, recipe, seed, workers)).unwrap();
    let mut out = Vec::new();
    let mut sink = MemorySink::new(Shard::default(), &pipeline.geometry(), |batch| {
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
                a.pixels == b.pixels
                    && a.indices == b.indices
                    && a.labels == b.labels
                    && a.meta == b.meta,
                "step {}: {workers} workers differ from 1",
                3 + k
            );
        }
    }
    assert!(one[0].view(0) != one[0].view(1), "the two views differ");
    assert!(
        batches(&source, 2, 6, 3..4)[0].view(0) != one[0].view(0),
        "another seed gives other views"
    );
    // Each sample of step 3 (epoch 1) again in epoch 2 (steps 4 and 5 hold all 12 samples): the
    // same image, so only the epoch in the key can make its parameters and views differ.
    let view = |batch: &MemoryBatch, k: usize| batch.sample_view(k, 0).to_vec();
    for (k, index) in one[0].indices.iter().enumerate() {
        let (later, j) = one[1..3]
            .iter()
            .find_map(|b| Some((b, b.indices.iter().position(|i| i == index)?)))
            .expect("epoch 2 holds every sample");
        assert_ne!(
            one[0].sample_params(k),
            later.sample_params(j),
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
    let pipeline = Pipeline::new(&source, config(4, bt(8), 0, 1)).unwrap();
    let mut seen = 0;
    let mut sink = MemorySink::new(Shard::default(), &pipeline.geometry(), |_| {
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
    let pipeline = Pipeline::new(&source, config(4, bt(8), 0, 1)).unwrap();
    let mut sink = MemorySink::new(Shard::default(), &pipeline.geometry(), |_| {
        anyhow::bail!("disk full")
    });
    let err = pipeline
        .run(&mut sink, 0..100, &AtomicBool::new(false))
        .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
}

/// DINO's 2 global + N local views: the same bytes at 1 and 2 workers, each view of its size, and
/// the global views the same whatever the number of local ones (each view has its own stream).
#[test]
fn multi_crop_batches_are_deterministic_and_locals_never_move_the_globals() {
    let source = dataset();
    let dino = |locals| {
        builtin("dino")
            .unwrap()
            .resized(Some(24), Some(8), Some(locals))
            .unwrap()
    };
    let one = recipe_batches(&source, dino(4), 1, 3, 0..3);
    let two = recipe_batches(&source, dino(4), 2, 3, 0..3);
    for (a, b) in one.iter().zip(&two) {
        assert!(a.pixels == b.pixels && a.params == b.params && a.indices == b.indices);
    }
    let batch = &one[0];
    assert_eq!(batch.views(), 6);
    assert_eq!(batch.view(0).len(), 6 * 3 * 24 * 24);
    assert_eq!(batch.view(5).len(), 6 * 3 * 8 * 8);
    for v in 2..6 {
        assert_ne!(
            batch.view(v),
            batch.view(2 + (v - 1) % 4),
            "local views {v} differ"
        );
    }
    let fewer = recipe_batches(&source, dino(1), 1, 3, 0..3);
    for (a, b) in one.iter().zip(&fewer) {
        for v in 0..3 {
            assert_eq!(a.view(v), b.view(v), "view {v}");
        }
        assert_eq!(&a.sample_params(0)[..3], b.sample_params(0));
    }
}

/// Every built-in recipe: the same bytes at 1 and 2 workers.
#[test]
fn every_recipe_is_deterministic_at_one_and_two_workers() {
    let source = dataset();
    for r in &views::recipe::RECIPES {
        let recipe = (r.make)().resized(Some(16), None, None).unwrap();
        let recipe = match recipe.groups().len() {
            1 => recipe,
            _ => recipe.resized(None, Some(8), Some(2)).unwrap(),
        };
        let one = recipe_batches(&source, recipe.clone(), 1, 9, 1..3);
        let two = recipe_batches(&source, recipe, 2, 9, 1..3);
        for (a, b) in one.iter().zip(&two) {
            assert!(a.pixels == b.pixels && a.indices == b.indices, "{}", r.name);
        }
    }
}
