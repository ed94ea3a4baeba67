//! Untrusted image bytes -> RGB -> one augmented view, exactly as the loader's `make_pair` does it.
//!
//! `decode_rgb` runs under `catch_decoder_panic`, so a panic inside a decoder (zune-jpeg, png) is
//! an ordinary error here as in production; any other panic, abort, or memory fault is a crash.
//! libfuzzer-sys's panic hook aborts the process, and the guard's hook only silences panics while a
//! decoder is running, so a panic that escapes the guard (or happens in the augmentation) is
//! reported as a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use loader::augment::{sample_view, AugmentConfig, ViewMaker};
use loader::decode::{decode_rgb, RgbImage};
use loader::guard::catch_decoder_panic;
use loader::keyed_rng::{keyed_rng, Stream};
use std::cell::RefCell;

/// Pixel cap used while fuzzing (the loader's `--max-pixels`, default 178,956,970). Lower, so that
/// a 30-byte header declaring 13000x13000 is refused instead of allocating half a gigabyte and
/// tripping libFuzzer's RSS limit: the cap itself is tested by the loader's unit tests.
const MAX_PIXELS: u64 = 4_000_000;

thread_local! {
    // Reused like the loader's per-worker `Scratch`, so buffer reuse is fuzzed too.
    static SCRATCH: RefCell<(RgbImage, ViewMaker, Vec<u8>)> = RefCell::default();
}

fuzz_target!(|bytes: &[u8]| {
    SCRATCH.with(|s| {
        let (image, maker, out) = &mut *s.borrow_mut();
        let decoded = catch_decoder_panic(|| decode_rgb(bytes, MAX_PIXELS, image));
        if decoded.and_then(|r| r.map_err(|e| e.to_string())).is_err() {
            return;
        }
        assert!(image.width > 0 && image.height > 0);
        assert_eq!(image.pixels.len(), 3 * image.width * image.height);
        // One view, drawn like the pipeline's view A (the paper's first transform, every colour op
        // possible); output side 8..=64 so both up- and down-scaling are exercised.
        let size = 8 + (bytes.len() % 57) as u32;
        let params = sample_view(
            &mut keyed_rng(0, 0, bytes.len() as u64, Stream::ViewA),
            image.width as u32,
            image.height as u32,
            &AugmentConfig::default().view_a,
        );
        out.resize(3 * (size as usize).pow(2), 0);
        maker.make_view(image, &params, size, out);
    });
});
