//! Pillow's bicubic resize of a crop (`img.crop(box).resize((w, h), BICUBIC)`), bit-exact.
//!
//! Pillow's `Resample.c`: per output pixel a kernel of `bicubic(a = -0.5)` taps, stretched by the
//! scale when shrinking (antialiasing), normalised in f64 and converted to 22-bit fixed point; a
//! horizontal pass (only over the rows the vertical pass needs) into a u8 intermediate, then a
//! vertical pass. The crop is read in place from the source image: Pillow's taps never leave the
//! cropped image, so the result is the same as cropping first, with no copy.

const PRECISION_BITS: u32 = 32 - 8 - 2;
const SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point taps of one axis: output `i` reads `len[i]` inputs from `start[i]` with the weights
/// `weights[i * ksize..]`.
#[derive(Default)]
struct Taps {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
    scratch: Vec<f64>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size`.
    fn compute(&mut self, in_size: usize, out_size: usize) {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        self.ksize = ksize;
        self.start.clear();
        self.len.clear();
        self.weights.clear();
        self.weights.resize(out_size * ksize, 0);
        self.scratch.resize(ksize, 0.0);
        let ss = 1.0 / filterscale;
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax - xmin;
            let mut ww = 0.0;
            for x in 0..n {
                let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
                self.scratch[x] = w;
                ww += w;
            }
            let k = &mut self.weights[xx * ksize..(xx + 1) * ksize];
            for (kx, &raw) in k.iter_mut().zip(&self.scratch[..n]) {
                let w = if ww != 0.0 { raw / ww } else { raw };
                let f = w * (1u32 << PRECISION_BITS) as f64;
                *kx = if w < 0.0 {
                    (-0.5 + f).trunc() as i32
                } else {
                    (0.5 + f).trunc() as i32
                };
            }
            self.start.push(xmin);
            self.len.push(n);
        }
    }
}

#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Per-worker buffers for [`resize_crop`].
#[derive(Default)]
pub struct Resampler {
    horiz: Taps,
    vert: Taps,
    temp: Vec<u8>,
}

impl Resampler {
    /// Resizes the `cw x ch` box at (`cx`, `cy`) of the RGB image `src` (`src_width` pixels per
    /// row) to `out_w x out_h` RGB pixels in `out`, as Pillow's crop + bicubic resize.
    #[allow(clippy::too_many_arguments)]
    pub fn resize_crop(
        &mut self,
        src: &[u8],
        src_width: usize,
        (cx, cy, cw, ch): (usize, usize, usize, usize),
        out_w: usize,
        out_h: usize,
        out: &mut [u8],
    ) {
        assert!(cw > 0 && ch > 0 && out_w > 0 && out_h > 0);
        assert!(cx + cw <= src_width && (cy + ch) * src_width * 3 <= src.len());
        assert_eq!(out.len(), out_w * out_h * 3);
        let stride = src_width * 3;
        let need_h = cw != out_w;
        let need_v = ch != out_h;
        if !need_h && !need_v {
            for y in 0..ch {
                let row = (cy + y) * stride + cx * 3;
                out[y * out_w * 3..(y + 1) * out_w * 3].copy_from_slice(&src[row..row + cw * 3]);
            }
            return;
        }
        // Pillow 13 (PR #9549) runs the vertical pass first when the height shrinks by more than
        // twice as many pixels as the width; the order changes the u8 rounding in between.
        let vertical_first = need_h
            && need_v
            && ch > out_h
            && (ch as i64 - out_h as i64) > 2 * (cw as i64 - out_w as i64);
        if need_v {
            self.vert.compute(ch, out_h);
        }
        if need_h {
            self.horiz.compute(cw, out_w);
        }
        let src_off = cy * stride + cx * 3;
        if vertical_first {
            self.temp.resize(out_h * cw * 3, 0);
            vertical(&self.vert, src, stride, src_off, 0, cw, &mut self.temp);
            horizontal(&self.horiz, &self.temp, cw * 3, 0, out_h, out);
            return;
        }
        if !need_v {
            horizontal(&self.horiz, src, stride, src_off, ch, out);
            return;
        }
        if !need_h {
            vertical(&self.vert, src, stride, src_off, 0, cw, out);
            return;
        }
        // Horizontal pass over only the rows the vertical pass reads, then the vertical pass.
        let last = out_h - 1;
        let (y_first, y_last) = (
            self.vert.start[0],
            self.vert.start[last] + self.vert.len[last],
        );
        let rows = y_last - y_first;
        self.temp.resize(rows * out_w * 3, 0);
        horizontal(
            &self.horiz,
            src,
            stride,
            src_off + y_first * stride,
            rows,
            &mut self.temp,
        );
        vertical(&self.vert, &self.temp, out_w * 3, 0, y_first, out_w, out);
    }
}

/// Horizontal pass: `rows` rows of `input` (row r at `off + r * stride`) -> `out` (rows x taps).
fn horizontal(k: &Taps, input: &[u8], stride: usize, off: usize, rows: usize, out: &mut [u8]) {
    let out_w = k.start.len();
    for (r, dst_row) in out.chunks_exact_mut(out_w * 3).take(rows).enumerate() {
        let row = &input[off + r * stride..];
        for xx in 0..out_w {
            let (xmin, n) = (k.start[xx], k.len[xx]);
            let w = &k.weights[xx * k.ksize..xx * k.ksize + n];
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &wx) in w.iter().enumerate() {
                let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                ss[0] += p[0] as i32 * wx;
                ss[1] += p[1] as i32 * wx;
                ss[2] += p[2] as i32 * wx;
            }
            dst_row[xx * 3] = clip8(ss[0]);
            dst_row[xx * 3 + 1] = clip8(ss[1]);
            dst_row[xx * 3 + 2] = clip8(ss[2]);
        }
    }
}

/// Vertical pass over `width` pixels per row: output row yy reads input rows
/// `start[yy] - row_shift ..` (row r at `off + r * stride`).
fn vertical(
    k: &Taps,
    input: &[u8],
    stride: usize,
    off: usize,
    row_shift: usize,
    width: usize,
    out: &mut [u8],
) {
    for (yy, dst_row) in out
        .chunks_exact_mut(width * 3)
        .enumerate()
        .take(k.start.len())
    {
        let (ymin, n) = (k.start[yy] - row_shift, k.len[yy]);
        let w = &k.weights[yy * k.ksize..yy * k.ksize + n];
        for (xx, d) in dst_row.iter_mut().enumerate() {
            let mut ss = 1i32 << (PRECISION_BITS - 1);
            for (y, &wy) in w.iter().enumerate() {
                ss += input[off + (ymin + y) * stride + xx] as i32 * wy;
            }
            *d = clip8(ss);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_stays_flat_when_shrinking_and_enlarging() {
        let src = vec![123u8; 3 * 50 * 40];
        let mut r = Resampler::default();
        for (w, h) in [(7usize, 9usize), (224, 224), (50, 13)] {
            let mut out = vec![0u8; 3 * w * h];
            r.resize_crop(&src, 50, (3, 4, 40, 30), w, h, &mut out);
            assert!(out.iter().all(|&v| v == 123), "{w}x{h}");
        }
    }
}
