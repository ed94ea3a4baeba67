//! Untrusted image bytes -> RGB -> every view of a multi-crop recipe (DINO's, SwAV's or DINOv2's, so
//! each library's blur runs; at small sizes),
//! through the `views` crate's [`SampleMaker`] (the code a run uses). The target links `views` and `decode` only, not the loader
//! (nor its profiling tool's plotting library).
//!
//! Both JPEG decoders are fuzzed, picked by the input's middle byte (`% 3`): 0 zune-jpeg, 1
//! libjpeg-turbo (full decode), 2 libjpeg-turbo with region decode, whose views are also checked
//! to be those of a full libjpeg-turbo decode (the region-decode identity, as an oracle).
//!
//! The decoders run under the decode crate's panic guard, so a panic inside a decoder (zune-jpeg,
//! png) is an ordinary error here as in production, and libjpeg-turbo's errors come back as
//! values; any other panic, abort, or memory fault is a crash. libfuzzer-sys's panic hook aborts
//! the process, and the guard's hook only silences panics while a decoder is running, so a panic
//! that escapes the guard (or happens in the augmentation) is reported as a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use views::params::ViewParams;
use decode::Decoder;
use views::sample::{DecodeOptions, SampleKey, SampleMaker};

/// Pixel cap used while fuzzing (the loader's `--max-pixels`, default 178,956,970). Lower, so that
/// a 30-byte header declaring 13000x13000 is refused instead of allocating half a gigabyte and
/// tripping libFuzzer's RSS limit: the cap itself is tested by the decoder's unit tests.
const MAX_PIXELS: u64 = 4_000_000;

/// The reused makers and buffers of one fuzzing thread.
struct State {
    /// zune-jpeg, libjpeg-turbo full, libjpeg-turbo region.
    makers: [SampleMaker; 3],
    params: Vec<ViewParams>,
    views: Vec<Vec<u8>>,
    full_params: Vec<ViewParams>,
    full_view: Vec<u8>,
}

impl Default for State {
    fn default() -> State {
        let with = |decoder, region| SampleMaker::new(DecodeOptions {
            decoder,
            region,
            dct_scale: false,
        });
        State {
            makers: [
                with(Decoder::Zune, false),
                with(Decoder::Turbo, false),
                with(Decoder::Turbo, true),
            ],
            params: Vec::new(),
            views: Vec::new(),
            full_params: Vec::new(),
            full_view: Vec::new(),
        }
    }
}

thread_local! {
    // Reused like the loader's per-worker maker, so buffer reuse is fuzzed too.
    static STATE: RefCell<State> = RefCell::default();
}

fuzz_target!(|bytes: &[u8]| {
    STATE.with(|m| {
        let st = &mut *m.borrow_mut();
        // The middle byte (entropy-coded data in a JPEG, so valid files of every mode exist; the
        // last byte would be EOI's 0xD9 in nearly every valid JPEG).
        let mode = bytes.get(bytes.len() / 2).map_or(0, |b| (b % 3) as usize);
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
        st.params.resize(expanded.len(), ViewParams::default());
        st.views.resize(expanded.len(), Vec::new());
        let maker = &mut st.makers[mode];
        let read = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(bytes);
            Ok(())
        };
        if maker
            .load_and_draw(read, MAX_PIXELS, key, &expanded, &mut st.params)
            .is_err()
        {
            return;
        }
        let image = maker.image();
        assert!(image.width > 0 && image.height > 0);
        assert_eq!(image.pixels.len(), 3 * image.width * image.height);
        for ((p, (side, _)), out) in st.params.iter().zip(&expanded).zip(st.views.iter_mut()) {
            out.resize(3 * (*side as usize).pow(2), 0);
            maker.make_view(p, *side, out);
        }
        if mode == 2 {
            // Region decode must give a full decode's views.
            st.full_params.resize(expanded.len(), ViewParams::default());
            let held = st.makers[2].held();
            let (_, height) = st.makers[2].dimensions();
            let [_, full, _] = &mut st.makers;
            if let Err(e) = full.load_and_draw(read, MAX_PIXELS, key, &expanded, &mut st.full_params) {
                // The one accepted difference: libjpeg stops reading at the region's last row
                // (jpeg_skip_scanlines to the end sets EOI), so a fatal error further on (a bad
                // marker after the scan) is only seen by the full decode.
                assert!(
                    held.y + held.h < height,
                    "a file that region-decodes to its last row must decode in full: {e}"
                );
                return;
            }
            assert_eq!(st.full_params, st.params);
            for ((p, (side, _)), region_view) in st.params.iter().zip(&expanded).zip(&st.views) {
                st.full_view.resize(3 * (*side as usize).pow(2), 0);
                full.make_view(p, *side, &mut st.full_view);
                assert!(&st.full_view == region_view, "region decode changed a view");
            }
        }
    });
});
