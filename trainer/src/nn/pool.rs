//! 2-D max pooling built from dfdx's stable ops (dfdx 0.13's `MaxPool2D` needs `nightly`).
//!
//! The input is viewed channel-major `(C, B*H*W)` with one `-inf` column appended for the
//! padding; each of the `K*K` taps is one `gather` (accumulating backward) of shape
//! `(C, B*Ho*Wo)`, and the taps are combined with the elementwise `maximum`. Exact values; at ties
//! dfdx's `maximum` splits the gradient evenly (PyTorch gives it all to the first maximum), which
//! only matters for exactly equal inputs.

use dfdx::prelude::*;

use super::conv::{append_const_column, out_size, to_channel_major, window_index};

/// Max pool with a `K`x`K` window, stride `S`, `-inf` padding `P` (defaults: the ResNet stem's
/// 3x3/2, pad 1). Zero-sized: build it with `builder`-style tuples directly, it is its own
/// builder.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPool2d<const K: usize = 3, const S: usize = 2, const P: usize = 1>;

impl<const K: usize, const S: usize, const P: usize> ZeroSizedModule for MaxPool2d<K, S, P> {}
impl<const K: usize, const S: usize, const P: usize> NonMutableModule for MaxPool2d<K, S, P> {}

impl<const K: usize, const S: usize, const P: usize> MaxPool2d<K, S, P> {
    /// Output spatial size for an `h` x `w` input.
    pub fn output_hw(h: usize, w: usize) -> (usize, usize) {
        (out_size(h, K, S, P), out_size(w, K, S, P))
    }

    pub fn try_pool<C: Dim, D: Device<f32>, T: Tape<f32, D>>(
        &self,
        x: Tensor<(usize, C, usize, usize), f32, D, T>,
    ) -> Result<Tensor<(usize, C, usize, usize), f32, D, T>, D::Err> {
        assert!(P < K, "padding must be smaller than the window");
        let (b, c, h, w) = *x.shape();
        let (ho, wo) = Self::output_hw(h, w);
        let dev = x.device().clone();
        let n_in = b * h * w;
        let xc = to_channel_major(x)?;
        let src = if P > 0 {
            append_const_column(xc, f32::NEG_INFINITY)?
        } else {
            xc
        };
        // All taps in one host vector, one upload; then one slice of the *index* per tap (the
        // index is untaped, so slicing it is safe).
        let (idx, _, _) = window_index(b, h, w, K, S, P, n_in);
        let m = b * ho * wo;
        let mut src = Some(src);
        let mut out: Option<Tensor<(C, usize), f32, D, T>> = None;
        for t in 0..K * K {
            let tap = dev.try_tensor_from_vec(idx[t * m..(t + 1) * m].to_vec(), (m,))?;
            let tap = tap.try_broadcast_like(&(c, m))?;
            // Every tap but the last reads an untaped copy; the last consumes `src` with its tape,
            // so the recorded history of `x` is merged exactly once.
            let s = if t + 1 < K * K {
                src.as_ref().unwrap().retaped::<T>()
            } else {
                src.take().unwrap()
            };
            let g = s.try_gather(tap)?;
            out = Some(match out {
                None => g,
                Some(acc) => acc.try_maximum(g)?,
            });
        }
        let out = out.unwrap();
        out.try_reshape_like(&(c, b, ho, wo))?
            .try_permute::<_, Axes4<1, 0, 2, 3>>()
    }
}

impl<const K: usize, const S: usize, const P: usize, C: Dim, D: Device<f32>, T: Tape<f32, D>>
    Module<Tensor<(usize, C, usize, usize), f32, D, T>> for MaxPool2d<K, S, P>
{
    type Output = Tensor<(usize, C, usize, usize), f32, D, T>;
    type Error = D::Err;

    fn try_forward(
        &self,
        x: Tensor<(usize, C, usize, usize), f32, D, T>,
    ) -> Result<Self::Output, D::Err> {
        self.try_pool(x)
    }
}
