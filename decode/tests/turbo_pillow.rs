//! libjpeg-turbo through barlow against Pillow: the goldens of `reference/make_decode_goldens.py`
//! (JPEGs Pillow wrote, and Pillow's `convert('RGB')` of each, in `tests/golden/`) must come out
//! with **zero** differing bytes, for baseline and progressive, 4:4:4, 4:2:2 and 4:2:0, grayscale,
//! CMYK and restart markers; and at every libjpeg-turbo SIMD level this CPU has (libjpeg-turbo
//! picks its level once per process from `JSIMD_FORCE*`, so each level runs in a child process of
//! this test binary). zune-jpeg's differences are printed for comparison, not asserted.
#![cfg(feature = "turbo")]

use std::path::{Path, PathBuf};

use decode::{Decoder, RgbImage, DEFAULT_MAX_PIXELS};

const CASES: [&str; 11] = [
    "rgb444",
    "rgb444_prog",
    "rgb422",
    "rgb422_prog",
    "rgb420",
    "rgb420_prog",
    "gray",
    "gray_prog",
    "cmyk",
    "cmyk_prog",
    "rgb420_restart",
];

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn decode(decoder: Decoder, name: &str) -> RgbImage {
    let bytes = std::fs::read(golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut img = RgbImage::default();
    decoder
        .decode(&bytes, DEFAULT_MAX_PIXELS, &mut img)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    img
}

/// (differing bytes, max |diff|).
fn differences(a: &RgbImage, b: &RgbImage) -> (usize, u8) {
    assert_eq!((a.width, a.height), (b.width, b.height), "sizes differ");
    let mut differ = 0;
    let mut max = 0;
    for (x, y) in a.pixels.iter().zip(&b.pixels) {
        differ += (x != y) as usize;
        max = max.max(x.abs_diff(*y));
    }
    (differ, max)
}

/// Every case at this process's SIMD level; returns the failures.
fn check_all(level: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for case in CASES {
        let pillow = decode(Decoder::Zune, &format!("{case}_pillow.png"));
        let turbo = decode(Decoder::Turbo, &format!("{case}.jpg"));
        let (differ, max) = differences(&turbo, &pillow);
        let zune = match Decoder::Zune.decode(
            &std::fs::read(golden(&format!("{case}.jpg"))).unwrap(),
            DEFAULT_MAX_PIXELS,
            &mut RgbImage::default(),
        ) {
            Ok(()) => {
                let z = decode(Decoder::Zune, &format!("{case}.jpg"));
                let (d, m) = differences(&z, &pillow);
                format!(
                    "zune: {:.2}% differ, max {m}",
                    100.0 * d as f64 / z.pixels.len() as f64
                )
            }
            Err(e) => format!("zune: {e}"),
        };
        println!("{level:<8} {case:<15} turbo: {differ} bytes differ (max {max}); {zune}");
        if differ != 0 {
            failures.push(format!("{level}: {case}: {differ} bytes differ, max {max}"));
        }
    }
    failures
}

const CHILD: &str = "BARLOW_DECODE_TEST_CHILD";

#[test]
fn turbo_decodes_pillows_pixels_at_every_simd_level() {
    if let Ok(level) = std::env::var(CHILD) {
        let failures = check_all(&level);
        assert!(failures.is_empty(), "{failures:#?}");
        return;
    }
    // The default (best) level in this process, then each forced level in a child.
    let mut failures = check_all("default");
    let x86 = cfg!(any(target_arch = "x86_64", target_arch = "x86"));
    let forced: &[(&str, &str)] = if x86 {
        &[
            ("none", "JSIMD_FORCENONE"),
            ("sse2", "JSIMD_FORCESSE2"),
            ("avx2", "JSIMD_FORCEAVX2"),
        ]
    } else {
        &[("none", "JSIMD_FORCENONE"), ("neon", "JSIMD_FORCENEON")]
    };
    for (level, var) in forced {
        // Through BARLOW_TEST_RUNNER where one is needed (qemu-user for a cross-built binary).
        let runner = std::env::var("BARLOW_TEST_RUNNER").unwrap_or_default();
        let mut words = runner.split_whitespace();
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut c = std::process::Command::new(program);
                c.args(words).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        let out = cmd
            .args([
                "--exact",
                "turbo_decodes_pillows_pixels_at_every_simd_level",
                "--nocapture",
            ])
            .env(CHILD, level)
            .env(var, "1")
            .output()
            .expect("run the test binary");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter(|l| l.starts_with(level)) {
            println!("{line}");
        }
        if !out.status.success() {
            failures.push(format!(
                "{level}: child failed:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn turbo_refuses_truncated_and_garbage_like_pillow() {
    let bytes = std::fs::read(golden("rgb420.jpg")).unwrap();
    let mut img = RgbImage::default();
    for cut in [bytes.len() / 2, bytes.len() - 2, 4, 200] {
        let err = Decoder::Turbo
            .decode(&bytes[..cut], DEFAULT_MAX_PIXELS, &mut img)
            .unwrap_err();
        assert!(
            matches!(err, decode::DecodeError::Corrupt(_)),
            "{cut}: {err}"
        );
    }
    // A bad marker inside the header: an error with libjpeg-turbo's reason, not an abort.
    let mut bad = bytes.clone();
    bad[2..6].copy_from_slice(&[0xFF, 0xC3, 0x00, 0x02]);
    assert!(Decoder::Turbo
        .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
        .is_err());
    // The pixel cap, before decoding.
    let err = Decoder::Turbo.decode(&bytes, 1000, &mut img).unwrap_err();
    assert!(
        matches!(
            err,
            decode::DecodeError::TooLarge {
                width: 237,
                height: 171,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        Decoder::Turbo
            .dimensions(&bytes, DEFAULT_MAX_PIXELS)
            .unwrap(),
        (237, 171)
    );
}

/// Found by the fuzz target: a file whose header fails after a warning. The same bytes must give
/// the same error whatever was decoded before on the thread (a failed call used to leave the
/// decompressor mid-stream, and a fatal error after a warning passed as a warning), and region
/// decode must fail where the full decode fails.
#[test]
fn an_error_does_not_depend_on_what_was_decoded_before() {
    let bad = std::fs::read(golden("fuzz_error_state.bin")).unwrap();
    let good = std::fs::read(golden("rgb420.jpg")).unwrap();
    let mut img = RgbImage::default();
    let first = Decoder::Turbo
        .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
        .unwrap_err();
    for _ in 0..3 {
        Decoder::Turbo
            .decode(&good, DEFAULT_MAX_PIXELS, &mut img)
            .unwrap();
        assert_eq!(
            Decoder::Turbo
                .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
                .unwrap_err(),
            first
        );
        assert_eq!(
            Decoder::Turbo
                .dimensions(&bad, DEFAULT_MAX_PIXELS)
                .unwrap_err(),
            first
        );
        let want = decode::Rect {
            x: 0,
            y: 0,
            w: 2,
            h: 2,
        };
        assert_eq!(
            Decoder::Turbo
                .decode_region(&bad, DEFAULT_MAX_PIXELS, want, &mut img)
                .unwrap_err(),
            first
        );
        assert_eq!(
            Decoder::Turbo
                .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
                .unwrap_err(),
            first
        );
    }
    // And a good file still decodes exactly after errors.
    Decoder::Turbo
        .decode(&good, DEFAULT_MAX_PIXELS, &mut img)
        .unwrap();
    let pillow = decode(Decoder::Zune, "rgb420_pillow.png");
    assert_eq!(img.pixels, pillow.pixels);
}

/// A tables-only stream (no frame): an error, not the previous image's size.
#[test]
fn a_stream_without_a_frame_is_an_error() {
    let good = std::fs::read(golden("rgb420.jpg")).unwrap();
    let mut img = RgbImage::default();
    Decoder::Turbo
        .decode(&good, DEFAULT_MAX_PIXELS, &mut img)
        .unwrap();
    // SOI, the file's tables up to its frame header, then EOI.
    let sof = good.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut tables = good[..sof].to_vec();
    tables.extend_from_slice(&[0xFF, 0xD9]);
    assert!(Decoder::Turbo
        .dimensions(&tables, DEFAULT_MAX_PIXELS)
        .is_err());
    assert!(Decoder::Turbo
        .decode(&tables, DEFAULT_MAX_PIXELS, &mut img)
        .is_err());
}

/// Found by the fuzz target: a file without Huffman tables. libjpeg keeps a decompressor's tables
/// for the next image, so with a reused decompressor it decoded with the previous file's; Pillow
/// refuses it, and so must we, whatever was decoded before.
#[test]
fn tables_never_carry_over_from_the_previous_file() {
    let bad = std::fs::read(golden("fuzz_no_tables.bin")).unwrap();
    let good = std::fs::read(golden("rgb420.jpg")).unwrap();
    let mut img = RgbImage::default();
    let alone = Decoder::Turbo
        .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
        .unwrap_err();
    Decoder::Turbo
        .decode(&good, DEFAULT_MAX_PIXELS, &mut img)
        .unwrap();
    assert_eq!(
        Decoder::Turbo
            .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
            .unwrap_err(),
        alone
    );
}
