//! Region decode ([`Decoder::decode_region`]) gives, inside the wanted rectangle, exactly the bytes
//! of a full decode: over many random rectangles (tiny, thin, at every edge and corner), for every
//! chroma subsampling libjpeg-turbo names (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1, 4:4:1, grey),
//! baseline and progressive (also with scans left out, where block smoothing reads neighbouring
//! blocks), with restart markers, and on the Pillow-written goldens; and on the fuzz target's
//! find (a corrupt progressive CMYK file).
#![cfg(feature = "turbo")]

use decode::{Decoder, Rect, RgbImage, DEFAULT_MAX_PIXELS};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// A smooth-ish photo-like pattern with edges, so chroma upsampling matters.
fn pattern(w: usize, h: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let r = ((x * 255) / w) as u8 ^ if (x / 7 + y / 5) % 2 == 0 { 0 } else { 90 };
            let g = ((y * 255) / h) as u8;
            let b = ((x * y) % 251) as u8;
            px.extend_from_slice(&[r, g, b]);
        }
    }
    px
}

fn encode(
    w: u16,
    h: u16,
    sampling: Option<SamplingFactor>,
    progressive: bool,
    restart: u16,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 88);
    if let Some(s) = sampling {
        enc.set_sampling_factor(s);
    }
    enc.set_progressive(progressive);
    if restart > 0 {
        enc.set_restart_interval(restart);
    }
    match sampling {
        Some(_) => enc.encode(&pattern(w as usize, h as usize), w, h, ColorType::Rgb),
        None => {
            let grey: Vec<u8> = pattern(w as usize, h as usize)
                .chunks(3)
                .map(|p| p[1] ^ p[2])
                .collect();
            enc.encode(&grey, w, h, ColorType::Luma)
        }
    }
    .unwrap();
    out
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as u32
    }
}

/// Checks `count` random rectangles of `bytes`; returns how many pixels were decoded in all,
/// against `count` full decodes.
fn check(name: &str, bytes: &[u8], count: usize, rng: &mut Rng) -> (u64, u64) {
    let mut full = RgbImage::default();
    Decoder::Turbo
        .decode(bytes, DEFAULT_MAX_PIXELS, &mut full)
        .unwrap();
    let (w, h) = (full.width as u32, full.height as u32);
    let mut part = RgbImage::default();
    let (mut decoded, mut whole) = (0, 0);
    for i in 0..count {
        let want = match i {
            0 => Rect::full(w, h),
            1 => Rect {
                x: w - 1,
                y: h - 1,
                w: 1,
                h: 1,
            },
            2 => Rect {
                x: 0,
                y: 0,
                w: 1,
                h: 1,
            },
            3 => Rect {
                x: w / 2,
                y: 0,
                w: 1,
                h,
            },
            4 => Rect {
                x: 0,
                y: h / 2,
                w,
                h: 1,
            },
            _ => {
                let rw = 1 + rng.below(w);
                let rh = 1 + rng.below(h);
                Rect {
                    x: rng.below(w - rw + 1),
                    y: rng.below(h - rh + 1),
                    w: rw,
                    h: rh,
                }
            }
        };
        let got = Decoder::Turbo
            .decode_region(bytes, DEFAULT_MAX_PIXELS, want, &mut part)
            .unwrap_or_else(|e| panic!("{name} {want:?}: {e}"));
        assert!(
            got.contains(&want),
            "{name}: {got:?} does not hold {want:?}"
        );
        assert_eq!((part.width, part.height), (got.w as usize, got.h as usize));
        for y in want.y..want.y + want.h {
            let row = |img: &RgbImage, x0: u32, y0: u32| {
                let start = 3 * ((y - y0) as usize * img.width + (want.x - x0) as usize);
                img.pixels[start..start + 3 * want.w as usize].to_vec()
            };
            assert_eq!(
                row(&part, got.x, got.y),
                row(&full, 0, 0),
                "{name}: {want:?} (decoded {got:?}), row {y}"
            );
        }
        decoded += got.area();
        whole += (w * h) as u64;
    }
    (decoded, whole)
}

#[test]
fn region_decode_equals_full_decode_inside_the_region() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let samplings = [
        ("444", Some(SamplingFactor::R_4_4_4)),
        ("422", Some(SamplingFactor::R_4_2_2)),
        ("420", Some(SamplingFactor::R_4_2_0)),
        ("440", Some(SamplingFactor::R_4_4_0)),
        ("411", Some(SamplingFactor::R_4_1_1)),
        ("441", Some(SamplingFactor::R_4_4_1)),
        ("grey", None),
    ];
    let (mut decoded, mut whole) = (0, 0);
    for (w, h) in [(301u16, 203u16), (96, 64), (517, 77)] {
        for (sname, sampling) in samplings {
            for progressive in [false, true] {
                for restart in [0, 5] {
                    let bytes = encode(w, h, sampling, progressive, restart);
                    let name =
                        format!("{w}x{h} {sname} progressive={progressive} restart={restart}");
                    let (d, t) = check(&name, &bytes, 40, &mut rng);
                    decoded += d;
                    whole += t;
                }
            }
        }
    }
    // Progressive files missing their last scans (valid: EOI after the last scan kept), so that
    // libjpeg's block smoothing estimates the missing coefficients from neighbouring blocks.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut progressive: Vec<(String, Vec<u8>)> = [
        "rgb444_prog",
        "rgb422_prog",
        "rgb420_prog",
        "gray_prog",
        "cmyk_prog",
    ]
    .iter()
    .map(|n| {
        (
            n.to_string(),
            std::fs::read(dir.join(format!("{n}.jpg"))).unwrap(),
        )
    })
    .collect();
    for (w, h) in [(301u16, 203u16), (517, 77)] {
        for (sname, sampling) in samplings {
            progressive.push((format!("{w}x{h} {sname}"), encode(w, h, sampling, true, 0)));
        }
    }
    {
        for (sname, full) in progressive {
            let scans: Vec<usize> = full
                .windows(2)
                .enumerate()
                .filter(|(_, p)| p == &[0xFF, 0xDA])
                .map(|(i, _)| i)
                .collect();
            for keep in [2, scans.len() / 2, scans.len() - 1] {
                if keep == 0 || keep >= scans.len() {
                    continue;
                }
                let mut cut = full[..scans[keep]].to_vec();
                cut.extend_from_slice(&[0xFF, 0xD9]);
                let name = format!("{sname} progressive, {keep} of {} scans", scans.len());
                let (d, t) = check(&name, &cut, 30, &mut rng);
                decoded += d;
                whole += t;
            }
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jpg") {
            let bytes = std::fs::read(&path).unwrap();
            let (d, t) = check(&path.display().to_string(), &bytes, 60, &mut rng);
            decoded += d;
            whole += t;
        }
    }
    println!(
        "decoded {:.1}% of the pixels of full decodes",
        100.0 * decoded as f64 / whole as f64
    );
    assert!(decoded < whole, "region decode never decoded less");
}

#[test]
fn zune_and_png_regions_are_the_whole_image() {
    let bytes = encode(64, 48, Some(SamplingFactor::R_4_2_0), false, 0);
    let mut img = RgbImage::default();
    let want = Rect {
        x: 30,
        y: 20,
        w: 4,
        h: 4,
    };
    let got = Decoder::Zune
        .decode_region(&bytes, DEFAULT_MAX_PIXELS, want, &mut img)
        .unwrap();
    assert_eq!(got, Rect::full(64, 48));
    let got = Decoder::Turbo
        .decode_region(&bytes, DEFAULT_MAX_PIXELS, want, &mut img)
        .unwrap();
    assert!(got.area() < 64 * 48 && got.contains(&want), "{got:?}");
}

/// The one documented difference: libjpeg stops reading at the region's last row, so a bad marker
/// after the scan fails a full decode (as in Pillow) but not a decode of the top rows.
#[test]
fn a_fatal_error_below_the_region_is_seen_only_by_a_full_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let good = std::fs::read(dir.join("rgb420.jpg")).unwrap();
    let eoi = good.len() - 2;
    let mut bad = good[..eoi].to_vec();
    // An SOS naming a component the frame does not have, then EOI.
    bad.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x09, 0x00, 0x00, 0x3F, 0x00]);
    bad.extend_from_slice(&[0xFF, 0xD9]);
    let mut img = RgbImage::default();
    assert!(Decoder::Turbo
        .decode(&bad, DEFAULT_MAX_PIXELS, &mut img)
        .is_err());
    let top = Rect {
        x: 0,
        y: 0,
        w: 50,
        h: 20,
    };
    let got = Decoder::Turbo
        .decode_region(&bad, DEFAULT_MAX_PIXELS, top, &mut img)
        .unwrap();
    assert!(got.h < 171, "{got:?}");
    // Down to the last row, the error is seen.
    let bottom = Rect {
        x: 0,
        y: 150,
        w: 50,
        h: 21,
    };
    assert!(Decoder::Turbo
        .decode_region(&bad, DEFAULT_MAX_PIXELS, bottom, &mut img)
        .is_err());
}
