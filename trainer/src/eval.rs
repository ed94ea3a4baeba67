//! k-NN evaluation of a backbone: the usual quick check of self-supervised representations.
//!
//! Every image of a labelled sample source (a folder `root/<class>/<file>`, a pack, or the demo
//! data, read through `datasets`' sources as the loader reads them) is decoded (the `decode`
//! crate, barlow's one decoder), centre cropped and resized like torchvision's eval transform (`Resize(S / 0.875)` +
//! `CenterCrop(S)`: the central square of side `0.875 * min(h, w)`, resized to `S x S`, bilinear),
//! normalised, and embedded by the backbone in evaluation mode. Features are L2-normalised; each
//! image is classified by its `k` nearest other images (cosine similarity, leave-one-out),
//! votes weighted by `exp(sim / 0.07)` as in the DINO / InstDisc k-NN protocol. The report is
//! top-1 accuracy.

use std::path::PathBuf;

use anyhow::Result;
use datasets::opened::OpenedSource;
use datasets::source::SampleSource;
use decode::{Decoder, RgbImage, DEFAULT_MAX_PIXELS};
use fast_image_resize as fir;
use serde::Serialize;

use crate::input::normalize_cm;
use crate::model::{Arch, BarlowModel};
use crate::nn::NnDevice;

/// Temperature of the similarity-weighted vote.
pub const KNN_TEMPERATURE: f64 = 0.07;
/// Fraction of the shorter side kept by the centre crop (224 / 256).
pub const CROP_FRACTION: f64 = 0.875;

/// The images of a sample source, centre-cropped to `size`, CHW u8, with labels.
pub struct EvalSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    /// Number of classes of the source.
    pub classes: usize,
    pub size: usize,
    /// Files that could not be decoded (name, reason).
    pub skipped: Vec<(String, String)>,
}

impl EvalSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Centre crop (`CROP_FRACTION` of the shorter side) + bilinear resize to `size`, written CHW.
pub fn centre_crop_resize(img: &RgbImage, size: usize, resizer: &mut fir::Resizer, out: &mut [u8]) {
    assert_eq!(out.len(), 3 * size * size);
    let side = ((img.width.min(img.height) as f64) * CROP_FRACTION).max(1.0);
    let x = (img.width as f64 - side) / 2.0;
    let y = (img.height as f64 - side) / 2.0;
    let src = fir::images::ImageRef::new(
        img.width as u32,
        img.height as u32,
        &img.pixels,
        fir::PixelType::U8x3,
    )
    .expect("decoded image buffer matches its dimensions");
    let mut hwc = vec![0u8; 3 * size * size];
    let mut dst =
        fir::images::Image::from_slice_u8(size as u32, size as u32, &mut hwc, fir::PixelType::U8x3)
            .expect("buffer matches its dimensions");
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
        .crop(x, y, side, side);
    resizer
        .resize(&src, &mut dst, &options)
        .expect("crop box lies inside the image");
    let plane = size * size;
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        out[i] = px[0];
        out[plane + i] = px[1];
        out[2 * plane + i] = px[2];
    }
}

/// Reads, decodes (with `decoder`) and centre-crops every sample of `source` (`classes` classes).
pub fn load_source(
    source: &dyn SampleSource,
    classes: usize,
    size: usize,
    decoder: Decoder,
) -> Result<EvalSet> {
    let n = source.len();
    let sample = 3 * size * size;
    let mut set = EvalSet {
        pixels: Vec::with_capacity(n * sample),
        labels: Vec::with_capacity(n),
        classes,
        size,
        skipped: Vec::new(),
    };
    let (mut bytes, mut img) = (Vec::new(), RgbImage::default());
    let mut resizer = fir::Resizer::new();
    let mut chw = vec![0u8; sample];
    for index in 0..n {
        let decoded = source
            .read(index, &mut bytes)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                decoder
                    .decode(&bytes, DEFAULT_MAX_PIXELS, &mut img)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = decoded {
            set.skipped.push((source.name(index), why));
            continue;
        }
        centre_crop_resize(&img, size, &mut resizer, &mut chw);
        set.pixels.extend_from_slice(&chw);
        set.labels.push(source.label(index));
    }
    Ok(set)
}

/// Backbone features of every image (evaluation mode), L2-normalised, row-major `(n, F)`.
pub fn embed_set<D: NnDevice>(
    model: &mut BarlowModel<D>,
    set: &EvalSet,
    mean: [f32; 3],
    std: [f32; 3],
    batch: usize,
) -> Result<Vec<f32>> {
    let (n, s, f) = (set.len(), set.size, model.features());
    let sample = 3 * s * s;
    let dev = model.store.params[0].t.device().clone();
    let mut feats = vec![0f32; n * f];
    let mut start = 0;
    while start < n {
        let m = batch.min(n - start);
        let x = normalize_cm(
            &dev,
            &set.pixels[start * sample..(start + m) * sample],
            m,
            s,
            s,
            mean,
            std,
        )?;
        let e = model.embed(x)?.as_vec(); // (F, m)
        for i in 0..m {
            let row = &mut feats[(start + i) * f..(start + i + 1) * f];
            for (j, r) in row.iter_mut().enumerate() {
                *r = e[j * m + i];
            }
            let norm = row
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
        }
        start += m;
    }
    Ok(feats)
}

/// Leave-one-out k-NN top-1 accuracy of L2-normalised row-major features.
pub fn knn_top1(feats: &[f32], labels: &[u32], dim: usize, k: usize, classes: usize) -> f64 {
    let n = labels.len();
    assert_eq!(feats.len(), n * dim);
    if n < 2 {
        return 0.0;
    }
    let mut correct = 0usize;
    let mut sims: Vec<(f32, u32)> = Vec::with_capacity(n);
    for i in 0..n {
        let q = &feats[i * dim..(i + 1) * dim];
        sims.clear();
        for j in (0..n).filter(|&j| j != i) {
            let r = &feats[j * dim..(j + 1) * dim];
            let s: f32 = q.iter().zip(r).map(|(a, b)| a * b).sum();
            sims.push((s, labels[j]));
        }
        let kk = k.min(sims.len());
        sims.select_nth_unstable_by(kk - 1, |a, b| b.0.total_cmp(&a.0));
        let mut votes = vec![0f64; classes.max(1)];
        for &(s, l) in &sims[..kk] {
            votes[l as usize] += (s as f64 / KNN_TEMPERATURE).exp();
        }
        let best = (0..votes.len())
            .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
            .unwrap();
        if best as u32 == labels[i] {
            correct += 1;
        }
    }
    correct as f64 / n as f64
}

/// The result of `trainer eval`.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub images: usize,
    pub classes: usize,
    pub k: usize,
    pub image_size: usize,
    pub top1: f64,
    /// Accuracy of always guessing the most common class.
    pub majority_baseline: f64,
    pub skipped: usize,
}

/// Embeds `set` with `model` and reports k-NN top-1.
pub fn evaluate<D: NnDevice>(
    model: &mut BarlowModel<D>,
    set: &EvalSet,
    mean: [f32; 3],
    std: [f32; 3],
    k: usize,
    batch: usize,
) -> Result<EvalReport> {
    let feats = embed_set(model, set, mean, std, batch)?;
    let top1 = knn_top1(&feats, &set.labels, model.features(), k, set.classes);
    let mut counts = vec![0usize; set.classes.max(1)];
    for &l in &set.labels {
        counts[l as usize] += 1;
    }
    Ok(EvalReport {
        images: set.len(),
        classes: set.classes,
        k,
        image_size: set.size,
        top1,
        majority_baseline: *counts.iter().max().unwrap() as f64 / set.len().max(1) as f64,
        skipped: set.skipped.len(),
    })
}

/// What `trainer eval` evaluates, and how.
pub struct EvalOpts {
    pub checkpoint: Option<PathBuf>,
    pub random_init: bool,
    /// The `--random-init` model.
    pub arch: Arch,
    pub projector: Vec<usize>,
    pub seed: u64,
    /// None: the built-in demo dataset.
    pub dir: Option<PathBuf>,
    pub image_size: Option<usize>,
    pub k: usize,
    pub batch_size: usize,
    /// The JPEG decoder (`--decoder`).
    pub decoder: Decoder,
}

/// `trainer eval` on `dev`: prints the report as JSON on stdout and a sentence on stderr.
pub fn eval_on<D: NnDevice>(dev: &D, o: &EvalOpts) -> anyhow::Result<i32> {
    use views::imagenet;
    let (mut model, mean, std, size, what) = match (&o.checkpoint, o.random_init) {
        (Some(p), _) => {
            let (model, _, st) = crate::checkpoint::load(p, dev)?;
            let size = o.image_size.unwrap_or(st.image_hw.0);
            (
                model,
                st.mean,
                st.std,
                size,
                format!("{} at step {}", p.display(), st.step),
            )
        }
        (None, _) => {
            let model = BarlowModel::new(dev, o.arch, &o.projector, o.seed);
            let what = format!("random {} (seed {})", o.arch.name(), o.seed);
            (
                model,
                imagenet::MEAN,
                imagenet::STD,
                o.image_size.unwrap_or(64),
                what,
            )
        }
    };
    let opened = OpenedSource::open("trainer", o.dir.as_deref(), None, None)?;
    let t = std::time::Instant::now();
    let set = load_source(&*opened.source, opened.classes, size, o.decoder)?;
    for (name, why) in set.skipped.iter().take(5) {
        eprintln!("trainer: skipped {name}: {why}");
    }
    let report = evaluate(&mut model, &set, mean, std, o.k, o.batch_size)?;
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "trainer: {what}: k-NN (k={}) top-1 {:.1}% on {} images of {} classes at {size}x{size} from {} (majority class {:.1}%), {:.1}s",
        report.k,
        100.0 * report.top1,
        report.images,
        report.classes,
        opened.description,
        100.0 * report.majority_baseline,
        t.elapsed().as_secs_f64()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_on_separable_points_is_perfect_and_on_noise_is_chance() {
        // two tight clusters on the unit circle
        let mut feats = Vec::new();
        let mut labels = Vec::new();
        for i in 0..20 {
            let a = if i % 2 == 0 { 0.0f32 } else { 1.6 } + (i as f32) * 0.001;
            feats.extend_from_slice(&[a.cos(), a.sin()]);
            labels.push((i % 2) as u32);
        }
        assert_eq!(knn_top1(&feats, &labels, 2, 5, 2), 1.0);
        // labels unrelated to the features: alternate labels within one cluster
        let feats1: Vec<f32> = (0..20).flat_map(|_| [1.0f32, 0.0]).collect();
        let acc = knn_top1(&feats1, &labels, 2, 19, 2);
        assert!(acc < 0.6, "{acc}");
    }

    #[test]
    fn centre_crop_takes_the_middle() {
        // 10x6 image: left half red, right half blue; a 2x2 centre crop of the 5.25-wide square
        let (w, h) = (10, 6);
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                if x >= 5 {
                    px[i + 2] = 255;
                } else {
                    px[i] = 255;
                }
            }
        }
        let img = RgbImage {
            width: w,
            height: h,
            pixels: px,
        };
        let mut out = vec![0u8; 3 * 4];
        centre_crop_resize(&img, 2, &mut fir::Resizer::new(), &mut out);
        // CHW: red plane then green then blue; left column mostly red, right mostly blue
        let (r, b) = (&out[0..4], &out[8..12]);
        assert!(
            r[0] > 180 && r[2] > 180 && r[1] < 75 && r[3] < 75,
            "{out:?}"
        );
        assert!(
            b[1] > 180 && b[3] > 180 && b[0] < 75 && b[2] < 75,
            "{out:?}"
        );
        assert!(out[4..8].iter().all(|&g| g == 0));
    }
}
