//! Turning the loader's u8 image batches into normalised f32 tensors.

use dfdx::prelude::*;

use crate::nn::{Fmap, NnDevice};

/// u8 NCHW pixels -> normalised f32 feature maps stored channel-major (`(3, n*h*w)`, the layout
/// the models compute in; see [`crate::nn`]): `(x / 255 - mean[c]) / std[c]` (torchvision
/// `ToTensor` + `Normalize`), through a 256-entry table per channel.
///
/// `pixels` must hold exactly `n * 3 * h * w` bytes in NCHW order.
#[allow(clippy::too_many_arguments)]
pub fn normalize_cm<D: NnDevice>(
    dev: &D,
    pixels: &[u8],
    n: usize,
    h: usize,
    w: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> anyhow::Result<Fmap<D>> {
    let plane = h * w;
    assert_eq!(
        pixels.len(),
        n * 3 * plane,
        "pixel buffer has {} bytes, expected {n}x3x{h}x{w}",
        pixels.len()
    );
    let x = dev
        .normalize_u8(pixels, n, plane, mean, std)
        .map(|buf| Tensor::from_storage(dev, (3, n * plane), buf))
        .map_err(|e| anyhow::anyhow!("normalising a batch on the device: {e:?}"))?;
    Ok(Fmap { x, b: n, h, w })
}

/// Both views of a batch, channel-major ([`normalize_cm`]).
#[allow(clippy::too_many_arguments)]
pub fn normalize_views<D: NnDevice>(
    dev: &D,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> anyhow::Result<(Fmap<D>, Fmap<D>)> {
    Ok((
        normalize_cm(dev, a, n, h, w, mean, std)?,
        normalize_cm(dev, b, n, h, w, mean, std)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use views::imagenet;

    /// Every value is the formula of its NCHW source pixel, stored at the channel-major place.
    #[test]
    fn normalize_matches_formula_and_channel_major_layout() {
        let dev: Cpu = Default::default();
        let (n, h, w) = (3, 2, 5);
        let px: Vec<u8> = (0..n * 3 * h * w).map(|i| (i * 53 % 256) as u8).collect();
        let cm = normalize_cm(&dev, &px, n, h, w, imagenet::MEAN, imagenet::STD).unwrap();
        assert_eq!((cm.b, cm.h, cm.w), (n, h, w));
        assert_eq!(*cm.x.shape(), (3, n * h * w));
        let cm = cm.x.as_vec();
        for i in 0..n {
            for c in 0..3 {
                for p in 0..h * w {
                    let src = px[(i * 3 + c) * h * w + p];
                    let want = (src as f32 / 255.0 - imagenet::MEAN[c]) / imagenet::STD[c];
                    let got = cm[(c * n + i) * h * w + p];
                    assert!(
                        (got - want).abs() < 1e-6,
                        "image {i} channel {c} pixel {p}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "expected")]
    fn normalize_rejects_wrong_length() {
        let dev: Cpu = Default::default();
        let _ = normalize_cm(&dev, &[0u8; 10], 1, 2, 2, imagenet::MEAN, imagenet::STD);
    }
}
