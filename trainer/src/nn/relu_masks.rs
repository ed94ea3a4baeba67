//! The ReLU decisions of a forward pass, for `trainer step-dump`: which elements of each ReLU's
//! input were positive, that input itself, and the local magnitude its rounding error scales
//! with, in call order.
//!
//! A cross-framework check (`reference/step_check.py`) replays barlow's decisions in PyTorch's
//! backward so that an input within f32 rounding of 0, which may fall on either side of the kink
//! in either implementation, cannot move a gradient; the check still verifies that every
//! disagreement is such a tie: both implementations' inputs within a few rounding steps of 0
//! relative to the element's [local magnitude](ReluMask::magnitude). Recording is per thread and
//! off unless [`record`] is running, so training pays one thread-local read per ReLU op.

use std::cell::RefCell;

use dfdx::prelude::*;

use super::Mat;

/// One ReLU call: its output's shape `(rows, cols)` (channel-major, as the op saw it) and, per
/// element (row-major), the decision, its input and that input's local magnitude.
#[derive(Debug, Clone, PartialEq)]
pub struct ReluMask {
    pub rows: usize,
    pub cols: usize,
    /// 1 where the output is positive (the input was above 0).
    pub positive: Vec<u8>,
    /// The input whose sign was the decision: BatchNorm's output before the fused ReLU, or
    /// `a + b` of [`add_relu`](super::ops::add_relu).
    pub pre: Vec<f32>,
    /// The size of the terms `pre` was summed from, which its rounding error (upstream layers'
    /// included) scales with; the tie rule measures `|pre|` against it.
    /// - BatchNorm + ReLU, `pre = x * s + t` per channel (`s = gamma * inv_std`,
    ///   `t = beta - mean * s`): `|s| * rms(x of the channel) + |t|`, the same for the whole row
    ///   (x's error scales with its channel, not with the element's value).
    /// - `add_relu`, `pre = a + b`: `rms(a's row) [a != 0] + rms(b's row) [b != 0]`: the two
    ///   addends' channel magnitudes; an addend that is exactly 0 there (a ReLU's zero through the
    ///   identity shortcut, or a zero-initialised residual scale) brings no error.
    pub magnitude: Vec<f32>,
}

thread_local! {
    static RECORDER: RefCell<Option<Vec<ReluMask>>> = const { RefCell::new(None) };
}

/// Runs `f` with the ReLU ops of this thread recording their masks; returns `f`'s result and
/// the masks in call order.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<ReluMask>) {
    let outer = RECORDER.with(|r| r.borrow_mut().replace(Vec::new()));
    let out = f();
    let masks = RECORDER.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    (out, masks.unwrap_or_default())
}

/// Whether [`record`] is running on this thread (the ops then compute what [`note_batch_norm`]
/// needs).
pub(crate) fn recording() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

fn push<D: Device<f32>>(y: &Mat<D>, pre: Vec<f32>, magnitude: Vec<f32>) {
    let (rows, cols) = *y.shape();
    let positive = y.as_vec().iter().map(|&v| u8::from(v > 0.0)).collect();
    RECORDER.with(|r| {
        if let Some(masks) = r.borrow_mut().as_mut() {
            masks.push(ReluMask {
                rows,
                cols,
                positive,
                pre,
                magnitude,
            });
        }
    });
}

/// Root mean square of each row of a row-major `(rows, cols)` matrix, in f64.
fn row_rms(v: &[f32], cols: usize) -> Vec<f64> {
    v.chunks(cols.max(1))
        .map(|r| (r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / r.len() as f64).sqrt())
        .collect()
}

/// Called by a training-mode BatchNorm fused with a ReLU while [`recording`]: `y` its output,
/// `pre` the same forward without the ReLU, `x` its input, `mean` / `inv_std` the batch
/// statistics and `affine` its `(gamma, beta)`.
pub(crate) fn note_batch_norm<D: Device<f32>>(
    y: &Mat<D>,
    pre: &Mat<D>,
    x: &Mat<D>,
    mean: &[f32],
    inv_std: &[f32],
    affine: Option<(&[f32], &[f32])>,
) {
    let (_, cols) = *y.shape();
    let x_rms = row_rms(&x.as_vec(), cols);
    let magnitude = (0..mean.len())
        .flat_map(|c| {
            let (g, b) = affine.map_or((1.0, 0.0), |(g, b)| (g[c], b[c]));
            // the kernel's own per-channel scale and shift
            let s = g * inv_std[c];
            let t = b - mean[c] * s;
            let m = (s.abs() as f64 * x_rms[c] + t.abs() as f64) as f32;
            std::iter::repeat(m).take(cols)
        })
        .collect();
    push(y, pre.as_vec(), magnitude);
}

/// Called by [`add_relu`](super::ops::add_relu) with its output `y = relu(a + b)` and addends.
pub(crate) fn note_add<D: Device<f32>>(y: &Mat<D>, a: &Mat<D>, b: &Mat<D>) {
    if !recording() {
        return;
    }
    let (_, cols) = *y.shape();
    let (a, b) = (a.as_vec(), b.as_vec());
    let (ra, rb) = (row_rms(&a, cols), row_rms(&b, cols));
    let pre = a.iter().zip(&b).map(|(&x, &y)| x + y).collect();
    let magnitude = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (&x, &y))| {
            let row = i / cols.max(1);
            let part = |v: f32, rms: f64| if v == 0.0 { 0.0 } else { rms };
            (part(x, ra[row]) + part(y, rb[row])) as f32
        })
        .collect();
    push(y, pre, magnitude);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{ops, Flat};

    #[test]
    fn records_each_relu_call_in_order_and_only_inside_record() {
        let dev = Cpu::default();
        let a: Mat<Cpu> = dev.tensor_from_vec(vec![1.0, -2.0, 0.0, 3.0], (2, 2));
        let b: Mat<Cpu> = dev.tensor_from_vec(vec![-1.5, 1.0, 0.5, -4.0], (2, 2));
        let run = || ops::add_relu(a.clone(), b.clone()).unwrap();
        let _ = run(); // not recording: nothing kept
        let (_, masks) = record(|| {
            run();
            ops::add_relu(b.clone(), b.clone()).unwrap()
        });
        assert_eq!(masks.len(), 2);
        assert_eq!((masks[0].rows, masks[0].cols), (2, 2));
        // a + b = [-0.5, -1, 0.5, -1]
        assert_eq!(masks[0].positive, vec![0, 0, 1, 0]);
        assert_eq!(masks[1].positive, vec![0, 1, 1, 0]);
        assert_eq!(masks[0].pre, vec![-0.5, -1.0, 0.5, -1.0]);
        // rms of a's rows: sqrt(2.5), sqrt(4.5); of b's: sqrt(1.625), sqrt(8.125); a's 0 at
        // (1, 0) brings nothing there
        let (ra0, ra1) = (2.5f64.sqrt(), 4.5f64.sqrt());
        let (rb0, rb1) = (1.625f64.sqrt(), 8.125f64.sqrt());
        let want = [ra0 + rb0, ra0 + rb0, rb1, ra1 + rb1].map(|m| m as f32);
        assert_eq!(masks[0].magnitude, want);
        let (_, none) = record(|| ());
        assert!(none.is_empty());
    }

    #[test]
    fn batch_norm_relu_records_its_input_and_channel_magnitude() {
        let dev = Cpu::default();
        let x: Mat<Cpu> =
            dev.tensor_from_vec(vec![1.0, 2.0, 3.0, 6.0, -4.0, 0.0, 4.0, 0.0], (2, 4));
        let gamma: Flat<Cpu> = dev.tensor_from_vec(vec![2.0, 0.5], (2,));
        let beta: Flat<Cpu> = dev.tensor_from_vec(vec![-0.5, 0.25], (2,));
        let ((y, pre_want), masks) = record(|| {
            let pre = ops::batch_norm(
                x.clone(),
                Some((&gamma, &beta)),
                None,
                true,
                false,
                0.1,
                0.0,
            );
            let y = ops::batch_norm(x.clone(), Some((&gamma, &beta)), None, true, true, 0.1, 0.0);
            (y.unwrap(), pre.unwrap())
        });
        assert_eq!(masks.len(), 1, "only the fused ReLU records");
        let m = &masks[0];
        assert_eq!(m.pre, pre_want.as_vec());
        let positive: Vec<u8> = y.as_vec().iter().map(|&v| u8::from(v > 0.0)).collect();
        assert_eq!(m.positive, positive);
        // row 0: mean 3, var 3.5; row 1: mean 0, var 8
        let s0 = 2.0 / 3.5f32.sqrt();
        let m0 = s0 as f64 * (50.0f64 / 4.0).sqrt() + (-0.5 - 3.0 * s0).abs() as f64;
        let s1 = 0.5 / 8f32.sqrt();
        let m1 = s1 as f64 * 8f64.sqrt() + 0.25;
        let want: Vec<f32> = [m0, m1].iter().flat_map(|&m| [m as f32; 4]).collect();
        for (got, want) in m.magnitude.iter().zip(&want) {
            assert!((got - want).abs() <= 1e-6 * want, "{got} {want}");
        }
    }
}
