//! The built-in demo dataset: procedurally drawn JPEGs with learnable class structure.
//!
//! Each class is a *shape family* (discs, stripes, rectangles, ...); from class 10 on, a class adds
//! a second, sparser family on top. Within a class every image varies position, scale, count,
//! rotation, background and size, and carries a little pixel noise, so a self-supervised model has
//! something real to learn and no two images are identical.
//!
//! What Barlow Twins learns is what two crops of one image share, so the demo keeps what they share
//! down to the class (demo-v3): every shape gets its own random hue and the hue also turns across
//! the image, so two crops do not share colours; the background brightness is drawn from one
//! continuous range (not dark-or-light); shapes are dense (6-14 per image, patterns fill the whole
//! image) so that a small crop still shows the family. On demo-v2 (one hue per image, sparse shapes,
//! dark or light backgrounds) the views' shared colour and brightness were what a trained `tiny`
//! encoded, and its k-NN accuracy stayed at the random-initialisation level (in PyTorch too, see
//! `reference/README.md`); demo-v1's classes were colour bands, which colour jitter erases.
//!
//! Generation is parallel (rayon) and deterministic: image `(class, index)` is drawn from a
//! `Pcg64` seeded from `(seed, class, index)`, so the same options give byte-identical files.

use std::f32::consts::PI;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use rand::Rng;
use rand_pcg::Pcg64;
use rayon::prelude::*;

/// Shape families; class `c` uses `SHAPE_FAMILIES[c % 10]`.
pub const SHAPE_FAMILIES: [&str; 10] = [
    "discs",
    "stripes",
    "squares",
    "triangles",
    "checkers",
    "rings",
    "crosses",
    "dots",
    "waves",
    "blobs",
];

/// Most classes the demo can draw: the 10 single shape families, then every ordered pair of a
/// shape family with a different second family (see [`class_second_family`]).
pub const MAX_CLASSES: usize = SHAPE_FAMILIES.len() * SHAPE_FAMILIES.len();

/// JPEG quality of the demo images (with 4:2:0 chroma subsampling).
pub const JPEG_QUALITY: u8 = 90;

/// Version tag of the demo content; part of [`default_demo_dir`].
pub const DEMO_VERSION: &str = "demo-v3";

/// Name of the marker file that [`ensure_demo`] places in a finished demo directory.
pub const COMPLETE_MARKER: &str = ".complete";

/// How big a demo dataset to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Number of classes (1..=100).
    pub classes: usize,
    /// Images per class.
    pub per_class: usize,
    /// Smallest width/height in pixels.
    pub min_side: u32,
    /// Largest width/height in pixels (width and height are drawn independently).
    pub max_side: u32,
    /// Seed for all randomness.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            classes: 10,
            per_class: 60,
            min_side: 160,
            max_side: 600,
            seed: 0,
        }
    }
}

/// What [`write_demo`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSummary {
    /// Number of class folders.
    pub classes: usize,
    /// Number of JPEG files.
    pub images: usize,
    /// Total size of the JPEG files in bytes.
    pub bytes: u64,
}

impl DemoOptions {
    /// Checks the options, with a message saying what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.classes == 0 || self.classes > MAX_CLASSES {
            bail!(
                "demo classes must be between 1 and {MAX_CLASSES} (got {})",
                self.classes
            );
        }
        if self.per_class == 0 {
            bail!("demo images per class must be at least 1");
        }
        if self.min_side < 8 || self.max_side > 8192 || self.min_side > self.max_side {
            bail!(
                "demo image sides must satisfy 8 <= min-side <= max-side <= 8192 (got min-side {}, max-side {})",
                self.min_side,
                self.max_side
            );
        }
        Ok(())
    }
}

/// Index into [`SHAPE_FAMILIES`] for a class.
pub fn class_shape_family(class: usize) -> usize {
    class % SHAPE_FAMILIES.len()
}

/// Index into [`SHAPE_FAMILIES`] of the second family drawn (sparser, smaller) on top of the
/// first: none for classes 0..10, then `(shape + class / 10) % 10`, so the `(shape, second)` pairs
/// are distinct for the first [`MAX_CLASSES`] classes.
pub fn class_second_family(class: usize) -> Option<usize> {
    let n = SHAPE_FAMILIES.len();
    let t = class / n;
    (t % n != 0).then(|| (class_shape_family(class) + t) % n)
}

/// Folder name of a class: `n00_discs`, `n01_stripes`, ...; from class 10 on the second family
/// is appended (`n10_discs_stripes`). Sorted names follow label order.
pub fn class_name(class: usize) -> String {
    let shape = SHAPE_FAMILIES[class_shape_family(class)];
    match class_second_family(class) {
        None => format!("n{class:02}_{shape}"),
        Some(f) => format!("n{class:02}_{shape}_{}", SHAPE_FAMILIES[f]),
    }
}

/// File name of image `index` of `class` (`n00_discs_0007.JPEG`).
fn image_name(class: usize, index: usize, per_class: usize) -> String {
    let width = per_class.saturating_sub(1).to_string().len().max(4);
    format!("{}_{:0width$}.JPEG", class_name(class), index)
}

/// Writes the demo dataset as `out/<class>/<class>_<nnnn>.JPEG` plus `out/README.txt`.
///
/// `out` is created if needed; existing files with the same names are overwritten.
pub fn write_demo(out: &Path, opts: &DemoOptions) -> anyhow::Result<DemoSummary> {
    opts.validate()?;
    fs::create_dir_all(out)
        .with_context(|| format!("cannot create demo directory {}", out.display()))?;
    for c in 0..opts.classes {
        let dir = out.join(class_name(c));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let total = opts.classes * opts.per_class;
    let bytes = (0..total)
        .into_par_iter()
        .map(|i| -> anyhow::Result<u64> {
            let (class, index) = (i / opts.per_class, i % opts.per_class);
            let jpeg = render_jpeg(opts, class, index)?;
            let path = out
                .join(class_name(class))
                .join(image_name(class, index, opts.per_class));
            fs::write(&path, &jpeg).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(jpeg.len() as u64)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    let readme = out.join("README.txt");
    fs::write(&readme, readme_text(opts))
        .with_context(|| format!("cannot write {}", readme.display()))?;
    Ok(DemoSummary {
        classes: opts.classes,
        images: total,
        bytes,
    })
}

fn readme_text(opts: &DemoOptions) -> String {
    let mut s = String::new();
    s.push_str("Barlow demo dataset (");
    s.push_str(DEMO_VERSION);
    s.push_str(
        ")\n\nProcedurally drawn JPEG images written by `datasets demo`, laid out like ImageNet:\n",
    );
    s.push_str(
        "<root>/<class>/<class>_<nnnn>.JPEG. A class is a shape family (classes 10 and up add a\n",
    );
    s.push_str(
        "second, sparser family on top); position, scale, count, rotation, background, size and\n",
    );
    s.push_str(
        "colours vary within a class, plus a little noise. Every shape has a random hue and the hue\n",
    );
    s.push_str(
        "turns across each image, so colour says nothing about the class or about which image a crop\n",
    );
    s.push_str("came from: only structure does. It is a smoke-test dataset for\n");
    s.push_str("self-supervised pretraining, not real photographs.\n\n");
    s.push_str(&format!(
        "classes: {}  images per class: {}  sides: {}..={} px  seed: {}  jpeg quality: {} (4:2:0)\n\n",
        opts.classes, opts.per_class, opts.min_side, opts.max_side, opts.seed, JPEG_QUALITY
    ));
    for c in 0..opts.classes {
        let shape = SHAPE_FAMILIES[class_shape_family(c)];
        match class_second_family(c) {
            None => s.push_str(&format!("{}: {shape}\n", class_name(c))),
            Some(f) => s.push_str(&format!(
                "{}: {shape} with {}\n",
                class_name(c),
                SHAPE_FAMILIES[f]
            )),
        }
    }
    s
}

/// `$BARLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/barlow`, else `$HOME/.cache/barlow`, else
/// `<tmp>/barlow`; then `/demo-v3` ([`DEMO_VERSION`]). Empty variables count as unset.
pub fn default_demo_dir() -> PathBuf {
    crate::cache::barlow_cache_dir().join(DEMO_VERSION)
}

/// Makes sure the default demo exists at `dir` (see [`ensure_demo_with`]) and returns `dir`.
pub fn ensure_demo(dir: &Path) -> anyhow::Result<PathBuf> {
    ensure_demo_with(dir, &DemoOptions::default())
}

/// Returns `dir` at once if `dir/.complete` exists. Otherwise draws the demo into a sibling temp
/// directory, writes the marker there and renames it into place atomically. If another process
/// wins the race, this one removes its temp directory and uses the winner's.
pub fn ensure_demo_with(dir: &Path, opts: &DemoOptions) -> anyhow::Result<PathBuf> {
    if dir.join(COMPLETE_MARKER).is_file() {
        return Ok(dir.to_path_buf());
    }
    install_demo(dir, opts)
}

/// Generates into a sibling temp directory and renames it to `dir`; if `dir` is already a
/// complete demo (another process won), discards the temp directory and returns `dir`.
fn install_demo(dir: &Path, opts: &DemoOptions) -> anyhow::Result<PathBuf> {
    #[cfg(test)]
    tests::GENERATIONS.with(|g| g.set(g.get() + 1));
    let name = dir.file_name().with_context(|| {
        format!(
            "demo directory {} has no final path component",
            dir.display()
        )
    })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = parent.join(tmp_name);

    let result = (|| -> anyhow::Result<()> {
        write_demo(&tmp, opts)?;
        let mut marker = fs::File::create(tmp.join(COMPLETE_MARKER))?;
        writeln!(
            marker,
            "{DEMO_VERSION} classes={} per_class={} min_side={} max_side={} seed={}",
            opts.classes, opts.per_class, opts.min_side, opts.max_side, opts.seed
        )?;
        marker.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "cannot generate the demo dataset in {}",
            tmp.display()
        )));
    }

    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(dir.to_path_buf()),
        Err(rename_err) => {
            let _ = fs::remove_dir_all(&tmp);
            if dir.join(COMPLETE_MARKER).is_file() {
                // Someone else finished first; use theirs.
                Ok(dir.to_path_buf())
            } else {
                Err(anyhow::Error::new(rename_err).context(format!(
                    "cannot move the demo into {}: it exists but has no {COMPLETE_MARKER} marker; \
                     delete it (or choose another directory) and try again",
                    dir.display()
                )))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for one image, derived from `(seed, class, index)`.
fn image_rng(seed: u64, class: usize, index: usize) -> Pcg64 {
    let a = splitmix64(seed);
    let b = splitmix64(a ^ splitmix64(class as u64 ^ 0x5EED_C1A5));
    let c = splitmix64(b ^ splitmix64((index as u64).wrapping_mul(GOLDEN) ^ 0x1DE7));
    Pcg64::new(
        ((b as u128) << 64) | c as u128,
        0x0a02_bdbf_7bb3_c0a7_ac28_fa16_a64a_bf96,
    )
}

/// Draws image `(class, index)` and encodes it as JPEG.
fn render_jpeg(opts: &DemoOptions, class: usize, index: usize) -> anyhow::Result<Vec<u8>> {
    let mut rng = image_rng(opts.seed, class, index);
    let w = rng.gen_range(opts.min_side..=opts.max_side) as usize;
    let h = rng.gen_range(opts.min_side..=opts.max_side) as usize;
    let mut canvas = Canvas::new(w, h);
    draw(&mut canvas, &mut rng, class);
    let noise = uni(&mut rng, 1.5, 6.0) / 255.0;
    let rgb = canvas.to_rgb8(noise, rng.gen());
    let mut jpeg = Vec::with_capacity(w * h / 4);
    let mut enc = Encoder::new(&mut jpeg, JPEG_QUALITY);
    enc.set_sampling_factor(SamplingFactor::R_4_2_0);
    enc.encode(&rgb, w as u16, h as u16, ColorType::Rgb)
        .with_context(|| {
            format!(
                "cannot encode demo image {}",
                image_name(class, index, opts.per_class)
            )
        })?;
    Ok(jpeg)
}

/// Uniform `f32` in `[lo, hi)`.
fn uni(rng: &mut Pcg64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.gen::<f32>()
}

/// HSV (hue in degrees) to linear-ish RGB in `0..1`.
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// Anti-aliased coverage of a pixel at signed distance `d` (negative inside).
#[inline(always)]
fn aa(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

/// Signed distance to an axis-aligned box of half-size `(hx, hy)` centred at the origin.
#[inline(always)]
fn sd_box(x: f32, y: f32, hx: f32, hy: f32) -> f32 {
    let qx = x.abs() - hx;
    let qy = y.abs() - hy;
    let ox = qx.max(0.0);
    let oy = qy.max(0.0);
    (ox * ox + oy * oy).sqrt() + qx.max(qy).min(0.0)
}

/// Distance to the nearest band of a periodic pattern with period `p` and band width `w`.
#[inline(always)]
fn sd_bands(u: f32, p: f32, w: f32) -> f32 {
    let m = u - p * (u / p).floor(); // rem_euclid without the slow fmod
    (m - 0.5 * p).abs() - 0.5 * w
}

/// A rotation plus translation into a shape's local frame.
#[derive(Clone, Copy)]
struct Frame {
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
}

impl Frame {
    fn new(cx: f32, cy: f32, angle: f32) -> Frame {
        Frame {
            cx,
            cy,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }
    #[inline(always)]
    fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let dx = x - self.cx;
        let dy = y - self.cy;
        (
            dx * self.cos + dy * self.sin,
            -dx * self.sin + dy * self.cos,
        )
    }
}

/// An RGB float image (`0..1`).
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[f32; 3]>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![[0.0; 3]; w * h],
        }
    }

    /// The whole canvas as a bounding box.
    fn full(&self) -> [f32; 4] {
        [0.0, 0.0, self.w as f32, self.h as f32]
    }

    /// Blends `colour` over the pixels of `bbox` by `alpha * coverage(x, y)` (pixel centres).
    fn fill(
        &mut self,
        bbox: [f32; 4],
        colour: [f32; 3],
        alpha: f32,
        coverage: impl Fn(f32, f32) -> f32,
    ) {
        let x0 = bbox[0].floor().max(0.0) as usize;
        let y0 = bbox[1].floor().max(0.0) as usize;
        let x1 = (bbox[2].ceil().max(0.0) as usize).min(self.w);
        let y1 = (bbox[3].ceil().max(0.0) as usize).min(self.h);
        for y in y0..y1 {
            let py = y as f32 + 0.5;
            let row = &mut self.px[y * self.w..(y + 1) * self.w];
            for (x, p) in row.iter_mut().enumerate().take(x1).skip(x0) {
                let a = alpha * coverage(x as f32 + 0.5, py);
                if a > 0.0 {
                    p[0] += (colour[0] - p[0]) * a;
                    p[1] += (colour[1] - p[1]) * a;
                    p[2] += (colour[2] - p[2]) * a;
                }
            }
        }
    }

    /// Converts to 8-bit RGB, adding triangular per-pixel noise of amplitude `noise`.
    fn to_rgb8(&self, noise: f32, key: u64) -> Vec<u8> {
        let mut out = vec![0u8; self.px.len() * 3];
        // Noise in 8-bit units: (a + b) / 255 - 1 is triangular in [-1, 1].
        let scale = noise;
        let bias = 0.5 - noise * 255.0;
        for (i, (p, o)) in self.px.iter().zip(out.chunks_exact_mut(3)).enumerate() {
            let r = splitmix64(key ^ (i as u64));
            for k in 0..3 {
                let n = ((r >> (16 * k)) & 0xff) as f32 + ((r >> (16 * k + 8)) & 0xff) as f32;
                // `as u8` saturates and truncates, so +0.5 rounds.
                o[k] = (p[k] * 255.0 + n * scale + bias) as u8;
            }
        }
        out
    }
}

/// Draws one image of `class`: a background, then the class's shape family (and, from class 10
/// on, its second family drawn sparser on top), then turns the hue across the image. Colour
/// carries no class information: only structure does.
fn draw(canvas: &mut Canvas, rng: &mut Pcg64, class: usize) {
    let (w, h) = (canvas.w as f32, canvas.h as f32);

    // Background: a low-saturation gradient of any hue and brightness.
    let bg_v = uni(rng, 0.2, 0.8);
    let bg_h = uni(rng, 0.0, 360.0);
    let bg_a = hsv(bg_h, uni(rng, 0.0, 0.15), bg_v);
    let bg_b = hsv(
        bg_h + uni(rng, -60.0, 60.0),
        uni(rng, 0.0, 0.15),
        (bg_v + uni(rng, -0.15, 0.15)).clamp(0.0, 1.0),
    );
    let g = uni(rng, 0.0, 2.0 * PI);
    let (gx, gy) = (g.cos(), g.sin());
    let span = (w * gx.abs() + h * gy.abs()).max(1.0);
    let off = -(if gx < 0.0 { w * gx } else { 0.0 } + if gy < 0.0 { h * gy } else { 0.0 });
    let diff = [bg_b[0] - bg_a[0], bg_b[1] - bg_a[1], bg_b[2] - bg_a[2]];
    for (y, row) in canvas.px.chunks_exact_mut(canvas.w).enumerate() {
        let t0 = (y as f32 * gy + off) / span;
        let dt = gx / span;
        for (x, p) in row.iter_mut().enumerate() {
            let t = (t0 + x as f32 * dt).clamp(0.0, 1.0);
            *p = [
                bg_a[0] + diff[0] * t,
                bg_a[1] + diff[1] * t,
                bg_a[2] + diff[2] * t,
            ];
        }
    }

    draw_family(canvas, rng, class_shape_family(class), 1.0);
    if let Some(second) = class_second_family(class) {
        // The second family sparser and smaller.
        draw_family(canvas, rng, second, 0.6);
    }
    // Hue turning across the image (one to three turns along a random direction): two crops of one
    // image do not share their colours, so colour is no cue that two views are the same image.
    let turns = uni(rng, 1.0, 3.0);
    let a = uni(rng, 0.0, 2.0 * PI);
    let (ax, ay) = (
        a.cos() * turns * 2.0 * PI / w,
        a.sin() * turns * 2.0 * PI / h,
    );
    for (y, row) in canvas.px.chunks_exact_mut(canvas.w).enumerate() {
        for (x, p) in row.iter_mut().enumerate() {
            *p = rotate_hue(*p, x as f32 * ax + y as f32 * ay);
        }
    }
}

/// Rotates the hue of an RGB colour by `theta` radians about the grey axis (clipped to 0..1).
fn rotate_hue(p: [f32; 3], theta: f32) -> [f32; 3] {
    let (c, s) = (theta.cos(), theta.sin());
    let k = 1.0 / 3.0;
    let r3 = (1.0f32 / 3.0).sqrt();
    // Rodrigues' rotation about the grey axis (1, 1, 1) / sqrt(3).
    let a = c + (1.0 - c) * k;
    let b = k * (1.0 - c) - r3 * s;
    let d = k * (1.0 - c) + r3 * s;
    [
        (a * p[0] + b * p[1] + d * p[2]).clamp(0.0, 1.0),
        (d * p[0] + a * p[1] + b * p[2]).clamp(0.0, 1.0),
        (b * p[0] + d * p[1] + a * p[2]).clamp(0.0, 1.0),
    ]
}

/// Draws one shape family, each shape in a colour of its own; `scale` < 1 draws smaller, fewer
/// shapes.
fn draw_family(canvas: &mut Canvas, rng: &mut Pcg64, family: usize, scale: f32) {
    let (w, h) = (canvas.w as f32, canvas.h as f32);
    let s = w.min(h) * scale;
    let fewer = |n: usize| ((n as f32 * scale).round() as usize).max(1);

    // A colour of any hue, drawn per shape.
    let colour = |rng: &mut Pcg64| {
        hsv(
            uni(rng, 0.0, 360.0),
            uni(rng, 0.55, 1.0),
            uni(rng, 0.5, 1.0),
        )
    };
    let centre = |rng: &mut Pcg64| (uni(rng, 0.1, 0.9) * w, uni(rng, 0.1, 0.9) * h);
    // Periodic patterns fill the image, or (second families) a large disc region.
    let region = |rng: &mut Pcg64| -> Option<(f32, f32, f32)> {
        rng.gen_bool(if scale < 1.0 { 1.0 } else { 0.0 }).then(|| {
            (
                uni(rng, 0.25, 0.75) * w,
                uni(rng, 0.25, 0.75) * h,
                s * uni(rng, 0.3, 0.6),
            )
        })
    };
    let mask = |reg: Option<(f32, f32, f32)>, x: f32, y: f32| match reg {
        Some((cx, cy, r)) => aa(((x - cx) * (x - cx) + (y - cy) * (y - cy)).sqrt() - r),
        None => 1.0,
    };

    match family {
        0 => {
            // Discs.
            let n = fewer(rng.gen_range(6..=14));
            for _ in 0..n {
                let (cx, cy) = centre(rng);
                let r = s * uni(rng, 0.08, 0.3) / (n as f32).sqrt();
                let col = colour(rng);
                let bbox = [cx - r - 1.0, cy - r - 1.0, cx + r + 1.0, cy + r + 1.0];
                canvas.fill(bbox, col, 1.0, |x, y| {
                    aa(((x - cx) * (x - cx) + (y - cy) * (y - cy)).sqrt() - r)
                });
            }
        }
        1 => {
            // Stripes at an angle.
            let f = Frame::new(0.0, 0.0, uni(rng, 0.0, PI));
            let p = s * uni(rng, 0.05, 0.16);
            let bw = p * uni(rng, 0.3, 0.6);
            let phase = uni(rng, 0.0, p);
            let col = colour(rng);
            let reg = region(rng);
            canvas.fill(canvas.full(), col, 1.0, |x, y| {
                let (u, _) = f.local(x, y);
                aa(sd_bands(u + phase, p, bw)) * mask(reg, x, y)
            });
        }
        2 => {
            // Squares and rectangles.
            let n = fewer(rng.gen_range(6..=12));
            for _ in 0..n {
                let (cx, cy) = centre(rng);
                let hx = s * uni(rng, 0.08, 0.25) / (n as f32).sqrt();
                let hy = if rng.gen_bool(0.5) {
                    hx
                } else {
                    hx * uni(rng, 0.4, 1.6)
                };
                let f = Frame::new(cx, cy, uni(rng, 0.0, PI));
                let col = colour(rng);
                let e = (hx * hx + hy * hy).sqrt() + 1.0;
                canvas.fill([cx - e, cy - e, cx + e, cy + e], col, 1.0, |x, y| {
                    let (u, v) = f.local(x, y);
                    aa(sd_box(u, v, hx, hy))
                });
            }
        }
        3 => {
            // Triangles.
            let n = fewer(rng.gen_range(6..=12));
            for _ in 0..n {
                let (cx, cy) = centre(rng);
                let r = s * uni(rng, 0.12, 0.34) / (n as f32).sqrt();
                let a0 = uni(rng, 0.0, 2.0 * PI);
                let mut v = [(0.0f32, 0.0f32); 3];
                for (k, vk) in v.iter_mut().enumerate() {
                    let a = a0 + k as f32 * 2.0 * PI / 3.0 + uni(rng, -0.25, 0.25);
                    let rr = r * uni(rng, 0.8, 1.1);
                    *vk = (cx + rr * a.cos(), cy + rr * a.sin());
                }
                // Edge half-planes (outward normals), counter-clockwise order.
                let mut edges = [(0.0f32, 0.0f32, 0.0f32); 3];
                for k in 0..3 {
                    let (ax, ay) = v[k];
                    let (bx, by) = v[(k + 1) % 3];
                    let (ex, ey) = (bx - ax, by - ay);
                    let len = (ex * ex + ey * ey).sqrt().max(1e-6);
                    let (nx, ny) = (ey / len, -ex / len);
                    edges[k] = (nx, ny, -(nx * ax + ny * ay));
                }
                let col = colour(rng);
                let e = r * 1.1 + 1.0;
                canvas.fill([cx - e, cy - e, cx + e, cy + e], col, 1.0, |x, y| {
                    let d = edges
                        .iter()
                        .map(|&(nx, ny, c)| nx * x + ny * y + c)
                        .fold(f32::MIN, f32::max);
                    aa(d)
                });
            }
        }
        4 => {
            // Checkerboard.
            let f = Frame::new(uni(rng, 0.0, w), uni(rng, 0.0, h), uni(rng, 0.0, PI / 2.0));
            let cell = s * uni(rng, 0.06, 0.18);
            let col = colour(rng);
            let reg = region(rng);
            canvas.fill(canvas.full(), col, 1.0, |x, y| {
                let (u, v) = f.local(x, y);
                let (u, v) = (u / cell, v / cell);
                let parity = (u.floor() + v.floor()).rem_euclid(2.0) >= 1.0;
                let du = (u - u.round()).abs();
                let dv = (v - v.round()).abs();
                let edge = du.min(dv) * cell; // distance to the nearest grid line
                let c = if parity {
                    (0.5 + edge).min(1.0)
                } else {
                    (0.5 - edge).max(0.0)
                };
                c * mask(reg, x, y)
            });
        }
        5 => {
            // Concentric rings around one or two centres.
            let n = rng.gen_range(1..=2);
            for _ in 0..n {
                let (cx, cy) = centre(rng);
                let p = s * uni(rng, 0.04, 0.1);
                let bw = p * uni(rng, 0.3, 0.6);
                let big_r = s * uni(rng, 0.25, 0.6);
                let col = colour(rng);
                let e = big_r + 1.0;
                canvas.fill([cx - e, cy - e, cx + e, cy + e], col, 1.0, |x, y| {
                    let r = ((x - cx) * (x - cx) + (y - cy) * (y - cy)).sqrt();
                    aa(sd_bands(r, p, bw).max(r - big_r))
                });
            }
        }
        6 => {
            // Crosses (plus signs).
            let n = fewer(rng.gen_range(5..=10));
            for _ in 0..n {
                let (cx, cy) = centre(rng);
                let arm = s * uni(rng, 0.14, 0.32) / (n as f32).sqrt();
                let t = arm * uni(rng, 0.18, 0.4);
                let f = Frame::new(cx, cy, uni(rng, 0.0, PI / 2.0));
                let col = colour(rng);
                let e = arm * 1.5 + 1.0;
                canvas.fill([cx - e, cy - e, cx + e, cy + e], col, 1.0, |x, y| {
                    let (u, v) = f.local(x, y);
                    aa(sd_box(u, v, arm, t).min(sd_box(u, v, t, arm)))
                });
            }
        }
        7 => {
            // A rotated lattice of dots.
            let f = Frame::new(uni(rng, 0.0, w), uni(rng, 0.0, h), uni(rng, 0.0, PI / 2.0));
            let sp = s * uni(rng, 0.06, 0.14);
            let r = sp * uni(rng, 0.18, 0.35);
            let col = colour(rng);
            let reg = region(rng);
            canvas.fill(canvas.full(), col, 1.0, |x, y| {
                let (u, v) = f.local(x, y);
                let du = u - sp * (u / sp).round();
                let dv = v - sp * (v / sp).round();
                aa((du * du + dv * dv).sqrt() - r) * mask(reg, x, y)
            });
        }
        8 => {
            // Sinusoidal wave bands.
            let f = Frame::new(0.0, 0.0, uni(rng, 0.0, PI));
            let p = s * uni(rng, 0.08, 0.2);
            let bw = p * uni(rng, 0.3, 0.55);
            let amp = p * uni(rng, 0.3, 1.0);
            let k = 2.0 * PI / (s * uni(rng, 0.2, 0.5));
            let phase = uni(rng, 0.0, 2.0 * PI);
            let col = colour(rng);
            let reg = region(rng);
            canvas.fill(canvas.full(), col, 1.0, |x, y| {
                let (u, v) = f.local(x, y);
                let slope = amp * k * (k * u + phase).cos();
                let d =
                    sd_bands(v - amp * (k * u + phase).sin(), p, bw) / (1.0 + slope * slope).sqrt();
                aa(d) * mask(reg, x, y)
            });
        }
        _ => {
            // Soft blobs (thresholded sum of Gaussians) shaded by a colour gradient.
            let n = rng.gen_range(3..=7);
            let mut blobs = Vec::with_capacity(n);
            for _ in 0..n {
                let (cx, cy) = centre(rng);
                let sigma = s * uni(rng, 0.07, 0.18);
                blobs.push((cx, cy, 1.0 / (sigma * sigma)));
            }
            let thr = uni(rng, 0.35, 0.6);
            let col_a = colour(rng);
            let col_b = colour(rng);
            let g = uni(rng, 0.0, 2.0 * PI);
            let (gx, gy) = (g.cos() / s, g.sin() / s);
            // Two passes: gradient colour A then B weighted by position, both masked by the field.
            let field = |x: f32, y: f32| {
                let f: f32 = blobs
                    .iter()
                    .map(|&(cx, cy, is2)| (-((x - cx).powi(2) + (y - cy).powi(2)) * is2).exp())
                    .sum();
                ((f - thr) / 0.06 + 0.5).clamp(0.0, 1.0)
            };
            canvas.fill(canvas.full(), col_a, 1.0, field);
            canvas.fill(canvas.full(), col_b, 1.0, |x, y| {
                let t = ((x * gx + y * gy) * 0.5 + 0.5).clamp(0.0, 1.0);
                if t <= 0.0 {
                    0.0
                } else {
                    t * field(x, y)
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::ImageFolder;

    thread_local! {
        /// How many times this thread started generating a demo in `install_demo`.
        pub(super) static GENERATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn decode(path: &Path) -> (usize, usize, Vec<u8>) {
        let img = decode::decode_file(path, decode::DEFAULT_MAX_PIXELS, decode::Decoder::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (img.width, img.height, img.pixels)
    }

    fn small(seed: u64) -> DemoOptions {
        DemoOptions {
            classes: 3,
            per_class: 5,
            min_side: 40,
            max_side: 120,
            seed,
        }
    }

    /// All files under `dir` (relative path, bytes), sorted.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((
                        p.strip_prefix(dir).unwrap().to_path_buf(),
                        fs::read(&p).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn class_names_sort_in_label_order_and_combos_are_distinct() {
        let names: Vec<String> = (0..MAX_CLASSES).map(class_name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "n00_discs");
        assert_eq!(names[1], "n01_stripes");
        assert_eq!(names[10], "n10_discs_stripes");
        assert_eq!(names[99], "n99_blobs_waves");
        let mut combos: Vec<(usize, Option<usize>)> = (0..MAX_CLASSES)
            .map(|c| (class_shape_family(c), class_second_family(c)))
            .collect();
        assert!(combos.iter().all(|&(a, b)| Some(a) != b));
        combos.sort();
        combos.dedup();
        assert_eq!(combos.len(), MAX_CLASSES);
        // The first ten classes are the ten shape families alone.
        assert!((0..10).all(|c| class_second_family(c).is_none() && class_shape_family(c) == c));
    }

    #[test]
    fn writes_decodable_jpegs_in_imagefolder_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = small(0);
        let summary = write_demo(tmp.path(), &opts).unwrap();
        assert_eq!(summary.classes, 3);
        assert_eq!(summary.images, 15);
        assert!(tmp.path().join("README.txt").is_file());
        assert!(fs::read_to_string(tmp.path().join("README.txt"))
            .unwrap()
            .contains("n02_squares"));

        let folder = ImageFolder::scan(tmp.path()).unwrap();
        assert_eq!(
            folder.classes,
            vec!["n00_discs", "n01_stripes", "n02_squares"]
        );
        assert_eq!(folder.len(), 15);
        assert_eq!(folder.class_counts(), vec![5, 5, 5]);
        let mut bytes = 0;
        let mut dims = Vec::new();
        for s in &folder.samples {
            let name = s.path.file_name().unwrap().to_str().unwrap().to_string();
            let class = &folder.classes[s.label as usize];
            assert!(
                name.starts_with(&format!("{class}_")) && name.ends_with(".JPEG"),
                "{name}"
            );
            bytes += fs::metadata(&s.path).unwrap().len();
            let (w, h, px) = decode(&s.path);
            assert!(
                (40..=120).contains(&w) && (40..=120).contains(&h),
                "{w}x{h}"
            );
            assert_eq!(px.len(), w * h * 3);
            dims.push((w, h));
        }
        assert_eq!(bytes, summary.bytes);
        assert_eq!(
            folder.samples[0].path,
            tmp.path().join("n00_discs/n00_discs_0000.JPEG")
        );
        // Sizes vary, and width/height are drawn independently.
        dims.sort();
        dims.dedup();
        assert!(dims.len() > 10, "{dims:?}");
        assert!(dims.iter().any(|(w, h)| w != h));
    }

    #[test]
    fn deterministic_per_seed_and_images_differ() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        write_demo(a.path(), &small(7)).unwrap();
        write_demo(b.path(), &small(7)).unwrap();
        write_demo(c.path(), &small(8)).unwrap();
        let (sa, sb, sc) = (snapshot(a.path()), snapshot(b.path()), snapshot(c.path()));
        assert_eq!(sa.len(), 16);
        assert!(sa == sb, "same seed must give identical bytes");
        let jpegs = |s: &[(PathBuf, Vec<u8>)]| -> Vec<Vec<u8>> {
            s.iter()
                .filter(|(p, _)| p.extension().unwrap() == "JPEG")
                .map(|(_, d)| d.clone())
                .collect()
        };
        let (ja, jc) = (jpegs(&sa), jpegs(&sc));
        for (x, y) in ja.iter().zip(&jc) {
            assert_ne!(x, y, "a different seed must give different images");
        }
        // No two images are identical (within or across classes).
        let mut uniq = ja.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), ja.len());
    }

    #[test]
    fn rejects_bad_options() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = [
            DemoOptions {
                classes: 0,
                ..small(0)
            },
            DemoOptions {
                classes: 101,
                ..small(0)
            },
            DemoOptions {
                per_class: 0,
                ..small(0)
            },
            DemoOptions {
                min_side: 200,
                max_side: 100,
                ..small(0)
            },
            DemoOptions {
                min_side: 2,
                ..small(0)
            },
        ];
        for o in bad {
            let e = write_demo(tmp.path(), &o).unwrap_err().to_string();
            assert!(e.contains("must"), "{e}");
        }
    }

    /// Leave-one-out nearest-centroid accuracy of (standardised) per-image features.
    fn nearest_centroid_accuracy(feats: &[(Vec<f64>, usize)], k: usize) -> f64 {
        let d = feats[0].0.len();
        let n = feats.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| feats.iter().map(|f| f.0[j]).sum::<f64>() / n)
            .collect();
        let sd: Vec<f64> = (0..d)
            .map(|j| {
                (feats
                    .iter()
                    .map(|f| (f.0[j] - mean[j]).powi(2))
                    .sum::<f64>()
                    / n)
                    .sqrt()
                    .max(1e-12)
            })
            .collect();
        let z: Vec<(Vec<f64>, usize)> = feats
            .iter()
            .map(|(f, l)| ((0..d).map(|j| (f[j] - mean[j]) / sd[j]).collect(), *l))
            .collect();
        let mut correct = 0;
        for (i, (f, label)) in z.iter().enumerate() {
            let mut sums = vec![vec![0f64; d]; k];
            let mut counts = vec![0usize; k];
            for (j, (g, l)) in z.iter().enumerate() {
                if i != j {
                    for (s, v) in sums[*l].iter_mut().zip(g) {
                        *s += v;
                    }
                    counts[*l] += 1;
                }
            }
            let dist = |c: usize| -> f64 {
                (0..d)
                    .map(|j| (f[j] - sums[c][j] / counts[c] as f64).powi(2))
                    .sum()
            };
            let best = (0..k).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
            correct += (best == *label) as usize;
        }
        correct as f64 / z.len() as f64
    }

    /// Colour features: the chroma-weighted mean hue direction and the mean RGB.
    fn colour_features(w: usize, h: usize, px: &[u8]) -> Vec<f64> {
        let (mut a, mut b) = (0f64, 0f64);
        let mut rgb = [0f64; 3];
        for p in px.chunks_exact(3) {
            let (r, g, bl) = (p[0] as f64, p[1] as f64, p[2] as f64);
            let ca = r - 0.5 * (g + bl);
            let cb = 0.866 * (g - bl);
            let c = (ca * ca + cb * cb).sqrt();
            a += ca * c;
            b += cb * c;
            rgb[0] += r;
            rgb[1] += g;
            rgb[2] += bl;
        }
        let n = (a * a + b * b).sqrt().max(1e-9);
        let m = (w * h) as f64;
        vec![a / n, b / n, rgb[0] / m, rgb[1] / m, rgb[2] / m]
    }

    /// Colour-blind structure features from the luma gradients: edge density, how strongly the
    /// edge orientations concentrate on one axis or on two perpendicular axes (rotation
    /// invariant), and the edge density at half resolution relative to full resolution (scale of
    /// the pattern).
    fn structure_features(w: usize, h: usize, px: &[u8]) -> Vec<f64> {
        let luma: Vec<f64> = px
            .chunks_exact(3)
            .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
            .collect();
        let grads = |img: &[f64], w: usize, h: usize| -> (f64, f64, [f64; 2], [f64; 2]) {
            let (mut sum, mut strong, mut c2, mut c4) = (0f64, 0f64, [0f64; 2], [0f64; 2]);
            for y in 1..h - 1 {
                for x in 1..w - 1 {
                    let gx = img[y * w + x + 1] - img[y * w + x - 1];
                    let gy = img[(y + 1) * w + x] - img[(y - 1) * w + x];
                    let m = (gx * gx + gy * gy).sqrt();
                    sum += m;
                    strong += (m > 40.0) as u8 as f64;
                    let t = gy.atan2(gx);
                    c2[0] += m * (2.0 * t).cos();
                    c2[1] += m * (2.0 * t).sin();
                    c4[0] += m * (4.0 * t).cos();
                    c4[1] += m * (4.0 * t).sin();
                }
            }
            (sum, strong, c2, c4)
        };
        let n = ((w - 2) * (h - 2)) as f64;
        let (sum, strong, c2, c4) = grads(&luma, w, h);
        let (hw, hh) = (w / 2, h / 2);
        let half: Vec<f64> = (0..hw * hh)
            .map(|i| {
                let (x, y) = (2 * (i % hw), 2 * (i / hw));
                (luma[y * w + x]
                    + luma[y * w + x + 1]
                    + luma[(y + 1) * w + x]
                    + luma[(y + 1) * w + x + 1])
                    / 4.0
            })
            .collect();
        let (hsum, ..) = grads(&half, hw, hh);
        let hn = ((hw - 2) * (hh - 2)) as f64;
        let s = sum.max(1e-9);
        vec![
            sum / n,
            strong / n,
            (c2[0] * c2[0] + c2[1] * c2[1]).sqrt() / s,
            (c4[0] * c4[0] + c4[1] * c4[1]).sqrt() / s,
            (hsum / hn) / (sum / n).max(1e-9),
        ]
    }

    /// Colour must say nothing about the class (hues are random in every class), while simple
    /// colour-blind structure features must (chance is 0.1).
    #[test]
    fn classes_differ_by_structure_not_colour() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = DemoOptions {
            classes: 10,
            per_class: 20,
            min_side: 64,
            max_side: 96,
            seed: 3,
        };
        write_demo(tmp.path(), &opts).unwrap();
        let folder = ImageFolder::scan(tmp.path()).unwrap();
        let (mut colour, mut structure) = (Vec::new(), Vec::new());
        for s in &folder.samples {
            let (w, h, px) = decode(&s.path);
            colour.push((colour_features(w, h, &px), s.label as usize));
            structure.push((structure_features(w, h, &px), s.label as usize));
        }
        let colour_acc = nearest_centroid_accuracy(&colour, opts.classes);
        let structure_acc = nearest_centroid_accuracy(&structure, opts.classes);
        eprintln!("nearest-centroid accuracy: colour {colour_acc}, structure {structure_acc}");
        assert!(colour_acc < 0.25, "colour predicts the class: {colour_acc}");
        assert!(
            structure_acc > 0.35,
            "structure does not separate the classes: {structure_acc}"
        );
    }

    #[test]
    fn ensure_demo_generates_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache/demo-v1");
        let opts = small(0);
        let got = ensure_demo_with(&dir, &opts).unwrap();
        assert_eq!(got, dir);
        assert!(dir.join(COMPLETE_MARKER).is_file());
        let marker_mtime = fs::metadata(dir.join(COMPLETE_MARKER))
            .unwrap()
            .modified()
            .unwrap();
        let first = snapshot(&dir);
        assert_eq!(first.len(), 17); // 15 images, README, marker
                                     // Plant a sentinel: regeneration would not keep it (the directory would be replaced).
        fs::write(dir.join("sentinel"), b"x").unwrap();
        let before = GENERATIONS.with(|g| g.get());
        ensure_demo_with(&dir, &opts).unwrap();
        assert_eq!(
            GENERATIONS.with(|g| g.get()),
            before,
            "second call must not regenerate"
        );
        assert!(dir.join("sentinel").exists());
        assert_eq!(
            fs::metadata(dir.join(COMPLETE_MARKER))
                .unwrap()
                .modified()
                .unwrap(),
            marker_mtime
        );
        // No temp directories left behind.
        let siblings: Vec<_> = fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, vec![std::ffi::OsString::from("demo-v1")]);
    }

    #[test]
    fn ensure_demo_concurrent_calls_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo-v1");
        let opts = small(1);
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        ensure_demo_with(&dir, &opts).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results, vec![dir.clone(), dir.clone()]);
        let reference = tempfile::tempdir().unwrap();
        write_demo(reference.path(), &opts).unwrap();
        let got: Vec<_> = snapshot(&dir)
            .into_iter()
            .filter(|(p, _)| p != Path::new(COMPLETE_MARKER))
            .collect();
        assert!(got == snapshot(reference.path()));
        let entries: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            entries,
            vec![std::ffi::OsString::from("demo-v1")],
            "temp dirs must be cleaned up"
        );
    }

    #[test]
    fn losing_the_rename_race_keeps_the_winners_demo() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo-v1");
        ensure_demo_with(&dir, &small(2)).unwrap();
        fs::write(dir.join("sentinel"), b"winner").unwrap();
        // A process that checked before the winner finished generates and then loses the rename.
        assert_eq!(install_demo(&dir, &small(2)).unwrap(), dir);
        assert_eq!(fs::read(dir.join("sentinel")).unwrap(), b"winner");
        let entries: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            entries,
            vec![std::ffi::OsString::from("demo-v1")],
            "the loser must remove its temp dir"
        );
    }

    #[test]
    fn ensure_demo_refuses_foreign_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo-v1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("mine.txt"), b"keep").unwrap();
        let e = format!("{:#}", ensure_demo_with(&dir, &small(0)).unwrap_err());
        assert!(e.contains("no .complete marker"), "{e}");
        assert_eq!(fs::read(dir.join("mine.txt")).unwrap(), b"keep");
    }

    #[test]
    fn default_dir_ends_with_version() {
        assert!(default_demo_dir().ends_with(DEMO_VERSION));
    }
}
