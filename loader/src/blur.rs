//! Pillow's `ImageFilter.GaussianBlur(sigma)`, bit-exact: not a true Gaussian kernel but an
//! extended box blur (Gwosdek et al. 2011), three passes along rows, then three along columns.
//!
//! Each pass is Pillow's `ImagingLineBoxBlur`: a box of radius `l` (integer part) with weight
//! `ww / 2^24` per tap plus the two taps just outside weighted `fw / 2^24` (the fractional part),
//! edges replicated, accumulated in u32 and rounded with `(bulk + 2^23) >> 24`.

/// Pillow's `_gaussian_blur_radius`: the extended-box radius for `sigma` and `passes`, computed
/// with Pillow's mix of float and double.
pub fn box_radius(sigma: f32, passes: u32) -> f32 {
    let sigma2: f32 = sigma * sigma / passes as f32;
    let big_l: f32 = (12.0 * sigma2 as f64 + 1.0).sqrt() as f32;
    let l: f32 = ((big_l as f64 - 1.0) / 2.0).floor() as f32;
    let mut a: f32 = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// Integer radius and the two fixed-point weights of one box pass (Pillow's
/// `ImagingHorizontalBoxBlur` set-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxWeights {
    pub radius: usize,
    pub ww: u32,
    pub fw: u32,
}

impl BoxWeights {
    pub fn new(float_radius: f32) -> BoxWeights {
        let radius = float_radius as i32;
        let ww = ((1u32 << 24) as f32 / (float_radius * 2.0 + 1.0)) as u32;
        let fw = ((1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww))) / 2;
        BoxWeights {
            radius: radius.max(0) as usize,
            ww,
            fw,
        }
    }
}

/// One box pass over a line of `n` RGB pixels: `src` and `dst` are contiguous (3n bytes).
fn box_line(src: &[u8], dst: &mut [u8], n: usize, w: BoxWeights) {
    let r = w.radius;
    let last = n - 1;
    let px = |i: isize, c: usize| -> u32 {
        let i = i.clamp(0, last as isize) as usize;
        src[3 * i + c] as u32
    };
    // Window sum for x = 0: indices -r..=r, clamped.
    let mut acc = [0u32; 3];
    for (c, a) in acc.iter_mut().enumerate() {
        for k in -(r as isize)..=(r as isize) {
            *a += px(k, c);
        }
    }
    for x in 0..n {
        let xi = x as isize;
        for c in 0..3 {
            if x > 0 {
                acc[c] = acc[c] + px(xi + r as isize, c) - px(xi - r as isize - 1, c);
            }
            let bulk = acc[c].wrapping_mul(w.ww).wrapping_add(
                (px(xi - r as isize - 1, c) + px(xi + r as isize + 1, c)).wrapping_mul(w.fw),
            );
            dst[3 * x + c] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
        }
    }
}

/// Per-worker line buffers for [`gaussian_blur`].
#[derive(Default)]
pub struct BlurScratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

/// Pillow's `GaussianBlur(sigma)` (3 passes) on an RGB image of `width x height`, in place.
pub fn gaussian_blur(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    sigma: f64,
    scratch: &mut BlurScratch,
) {
    const PASSES: u32 = 3;
    assert_eq!(pixels.len(), 3 * width * height);
    let radius = box_radius(sigma as f32, PASSES);
    if radius == 0.0 || width == 0 || height == 0 {
        return;
    }
    let w = BoxWeights::new(radius);
    let line = 3 * width.max(height);
    scratch.a.resize(line, 0);
    scratch.b.resize(line, 0);
    let (a, b) = (&mut scratch.a, &mut scratch.b);
    // Rows.
    for row in pixels.chunks_exact_mut(3 * width) {
        box_line(row, &mut a[..3 * width], width, w);
        box_line(&a[..3 * width], &mut b[..3 * width], width, w);
        box_line(&b[..3 * width], row, width, w);
    }
    // Columns (Pillow transposes and blurs rows; gathering a column is the same).
    let stride = 3 * width;
    for x in 0..width {
        for y in 0..height {
            a[3 * y..3 * y + 3]
                .copy_from_slice(&pixels[y * stride + 3 * x..y * stride + 3 * x + 3]);
        }
        box_line(&a[..3 * height], &mut b[..3 * height], height, w);
        box_line(&b[..3 * height], &mut a[..3 * height], height, w);
        box_line(&a[..3 * height], &mut b[..3 * height], height, w);
        for y in 0..height {
            pixels[y * stride + 3 * x..y * stride + 3 * x + 3]
                .copy_from_slice(&b[3 * y..3 * y + 3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_image_stays_flat() {
        let mut px = vec![77u8; 3 * 20 * 9];
        gaussian_blur(&mut px, 20, 9, 1.7, &mut BlurScratch::default());
        assert!(px.iter().all(|&v| v == 77));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for sigma in [0.1f32, 0.5, 1.0, 1.37, 2.0, 5.0] {
            let w = BoxWeights::new(box_radius(sigma, 3));
            let total = (2 * w.radius as u32 + 1) * w.ww + 2 * w.fw;
            assert!(total <= 1 << 24 && total + 2 >= 1 << 24, "{sigma}: {w:?}");
        }
    }
}
