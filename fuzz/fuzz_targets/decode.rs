//! Untrusted image bytes -> RGB -> every view of a multi-crop recipe (DINO's, SwAV's or DINOv2's, so
//! each library's blur runs; at small sizes),
//! through the `views` crate's [`SampleMaker`] (the code a run uses). The target links `views` and `decode` only, not the loader
//! (nor its profiling tool's plotting library).
//!
//! `decode::decode_rgb` (inside `SampleMaker::decode`) runs the decoder under its panic guard, so a
//! panic inside a decoder (zune-jpeg, png) is an ordinary error here as in production; any other
//! panic, abort, or memory fault is a crash. libfuzzer-sys's panic hook aborts the process, and the
//! guard's hook only silences panics while a decoder is running, so a panic that escapes the guard
//! (or happens in the augmentation) is reported as a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use views::params::ViewParams;
use views::sample::{SampleKey, SampleMaker};

/// Pixel cap used while fuzzing (the loader's `--max-pixels`, default 178,956,970). Lower, so that
/// a 30-byte header declaring 13000x13000 is refused instead of allocating half a gigabyte and
/// tripping libFuzzer's RSS limit: the cap itself is tested by the decoder's unit tests.
const MAX_PIXELS: u64 = 4_000_000;

thread_local! {
    // Reused like the loader's per-worker maker, so buffer reuse is fuzzed too.
    static MAKER: RefCell<(SampleMaker, Vec<ViewParams>, Vec<Vec<u8>>)> = RefCell::default();
}

fuzz_target!(|bytes: &[u8]| {
    MAKER.with(|m| {
        let (maker, params, views) = &mut *m.borrow_mut();
        if maker.decode(bytes, MAX_PIXELS).is_err() {
            return;
        }
        let image = maker.image();
        assert!(image.width > 0 && image.height > 0);
        assert_eq!(image.pixels.len(), 3 * image.width * image.height);
        // A multi-crop recipe's views (DINO's, SwAV's or DINOv2's: Pillow's, OpenCV's or
        // torchvision's blur), drawn as a run draws them (2 global, 2 local; every op possible);
        // sides 8..=64 and 5..=37 so both up- and down-scaling are exercised, and kernels wider
        // than the view.
        let size = 8 + (bytes.len() % 57) as u32;
        let name = ["dino", "swav", "dinov2"][bytes.len() % 3];
        let recipe = views::recipe::builtin(name)
            .and_then(|r| r.resized(Some(size), Some(size / 2 + 5), Some(2)))
            .expect("a valid recipe");
        let expanded = recipe.expanded();
        let key = SampleKey::new(0, 0, bytes.len() as u64);
        params.resize(expanded.len(), ViewParams::default());
        views.resize(expanded.len(), Vec::new());
        maker.draw(key, &expanded, params);
        for ((p, (side, _)), out) in params.iter().zip(&expanded).zip(views.iter_mut()) {
            out.resize(3 * (*side as usize).pow(2), 0);
            maker.make_view(p, *side, out);
        }
    });
});
