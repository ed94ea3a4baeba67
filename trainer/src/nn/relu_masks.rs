//! The ReLU decisions of a forward pass, for `trainer step-dump`: which elements of each ReLU's
//! input were positive, in call order.
//!
//! A cross-framework check (`reference/step_check.py`) replays barlow's decisions in PyTorch's
//! backward so that an input within f32 rounding of 0, which may fall on either side of the kink
//! in either implementation, cannot move a gradient; the check still verifies that every
//! disagreement is such a tie. Recording is per thread and off unless [`record`] is running, so
//! training pays one thread-local read per ReLU op.

use std::cell::RefCell;

use dfdx::prelude::*;

use super::Mat;

/// One ReLU call: its output's shape `(rows, cols)` (channel-major, as the op saw it) and one
/// byte per element, 1 where the output is positive (the input was above 0).
#[derive(Debug, Clone, PartialEq)]
pub struct ReluMask {
    pub rows: usize,
    pub cols: usize,
    pub positive: Vec<u8>,
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

/// Called by the ReLU ops with their output: keeps its mask when [`record`] is running.
pub(crate) fn note<D: Device<f32>, T>(y: &Tensor<(usize, usize), f32, D, T>) {
    RECORDER.with(|r| {
        if let Some(masks) = r.borrow_mut().as_mut() {
            let (rows, cols) = *y.shape();
            let y: Mat<D> = y.retaped();
            masks.push(ReluMask {
                rows,
                cols,
                positive: y.as_vec().iter().map(|&v| u8::from(v > 0.0)).collect(),
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops;

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
        let (_, none) = record(|| ());
        assert!(none.is_empty());
    }
}
