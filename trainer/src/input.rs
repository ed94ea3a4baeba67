//! Turning the loader's u8 image batches into normalised f32 tensors.

use dfdx::prelude::*;

use crate::nn::rt::Fmap;

/// ImageNet channel means (RGB), as in torchvision's `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An NCHW batch of 3-channel images with runtime batch size and spatial size.
pub type ImageBatch<D, T = NoneTape> = Tensor<(usize, Const<3>, usize, usize), f32, D, T>;

/// u8 NCHW pixels -> f32 `(x / 255 - mean[c]) / std[c]` (torchvision `ToTensor` + `Normalize`).
///
/// `pixels` must hold exactly `n * c * h * w` bytes in NCHW order, and `c` must be 3.
pub fn normalize_batch<D: Device<f32>>(
    dev: &D,
    pixels: &[u8],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> ImageBatch<D> {
    assert_eq!(c, 3, "normalize_batch expects 3 channels, got {c}");
    assert_eq!(
        pixels.len(),
        n * c * h * w,
        "pixel buffer has {} bytes, expected {n}x{c}x{h}x{w}",
        pixels.len()
    );
    // Per channel: (x/255 - m)/s = x * (1/(255 s)) - m/s, via a 256-entry lookup table.
    let luts: Vec<[f32; 256]> = (0..3)
        .map(|ch| {
            let mut t = [0f32; 256];
            for (v, o) in t.iter_mut().enumerate() {
                *o = (v as f32 / 255.0 - mean[ch]) / std[ch];
            }
            t
        })
        .collect();
    let plane = h * w;
    let mut out = Vec::with_capacity(pixels.len());
    for (i, chunk) in pixels.chunks_exact(plane.max(1)).enumerate() {
        if plane == 0 {
            break;
        }
        let lut = &luts[i % 3];
        out.extend(chunk.iter().map(|&p| lut[p as usize]));
    }
    dev.tensor_from_vec(out, (n, Const::<3>, h, w))
}

/// u8 NCHW pixels -> normalised f32 feature maps stored channel-major (`(3, n*h*w)`, the layout
/// the models compute in; see [`crate::nn::rt`]). Same formula as [`normalize_batch`].
#[allow(clippy::too_many_arguments)]
pub fn normalize_cm<D: Device<f32>>(
    dev: &D,
    pixels: &[u8],
    n: usize,
    h: usize,
    w: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> Fmap<D> {
    let plane = h * w;
    assert_eq!(
        pixels.len(),
        n * 3 * plane,
        "pixel buffer has {} bytes, expected {n}x3x{h}x{w}",
        pixels.len()
    );
    let mut out = vec![0f32; pixels.len()];
    for c in 0..3 {
        let mut lut = [0f32; 256];
        for (v, o) in lut.iter_mut().enumerate() {
            *o = (v as f32 / 255.0 - mean[c]) / std[c];
        }
        for i in 0..n {
            let src = &pixels[(i * 3 + c) * plane..(i * 3 + c + 1) * plane];
            let dst = &mut out[(c * n + i) * plane..(c * n + i + 1) * plane];
            for (d, &p) in dst.iter_mut().zip(src) {
                *d = lut[p as usize];
            }
        }
    }
    Fmap {
        x: dev.tensor_from_vec(out, (3, n * plane)),
        b: n,
        h,
        w,
    }
}

/// Both views of a batch, channel-major ([`normalize_cm`]).
#[allow(clippy::too_many_arguments)]
pub fn normalize_views<D: Device<f32>>(
    dev: &D,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> (Fmap<D>, Fmap<D>) {
    (
        normalize_cm(dev, a, n, h, w, mean, std),
        normalize_cm(dev, b, n, h, w, mean, std),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_matches_formula_and_layout() {
        let dev: Cpu = Default::default();
        let (n, h, w) = (2, 3, 4);
        let px: Vec<u8> = (0..n * 3 * h * w).map(|i| (i * 37 % 256) as u8).collect();
        let t = normalize_batch(&dev, &px, n, 3, h, w, IMAGENET_MEAN, IMAGENET_STD);
        assert_eq!(*t.shape(), (n, Const::<3>, h, w));
        let v = t.as_vec();
        for (i, (&p, &got)) in px.iter().zip(&v).enumerate() {
            let c = (i / (h * w)) % 3;
            let want = (p as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!((got - want).abs() < 1e-6, "{i}: {got} vs {want}");
        }
    }

    #[test]
    fn channel_major_is_the_permuted_nchw() {
        let dev: Cpu = Default::default();
        let (n, h, w) = (3, 2, 5);
        let px: Vec<u8> = (0..n * 3 * h * w).map(|i| (i * 53 % 256) as u8).collect();
        let nchw = normalize_batch(&dev, &px, n, 3, h, w, IMAGENET_MEAN, IMAGENET_STD).as_vec();
        let cm = normalize_cm(&dev, &px, n, h, w, IMAGENET_MEAN, IMAGENET_STD);
        assert_eq!((cm.b, cm.h, cm.w), (n, h, w));
        let cm = cm.x.as_vec();
        for i in 0..n {
            for c in 0..3 {
                for p in 0..h * w {
                    assert_eq!(cm[(c * n + i) * h * w + p], nchw[(i * 3 + c) * h * w + p]);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "expected")]
    fn normalize_rejects_wrong_length() {
        let dev: Cpu = Default::default();
        normalize_batch(&dev, &[0u8; 10], 1, 3, 2, 2, IMAGENET_MEAN, IMAGENET_STD);
    }
}
