//! The Barlow Twins loss (Zbontar et al. 2021), as in the official implementation:
//!
//! ```text
//! c = bn(z1).T @ bn(z2) / N          # bn: BatchNorm1d(affine=False), training mode
//! loss = sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2
//! ```
//!
//! computed as `sum(w * (c - I)^2)` with `w = I + lambd * (1 - I)`.

use dfdx::prelude::*;

use crate::nn::NnDevice;

/// BatchNorm1d epsilon (PyTorch default, used by the official `self.bn`).
pub const BN_EPS: f64 = 1e-5;

/// The official default off-diagonal weight.
pub const DEFAULT_LAMBDA: f32 = 0.0051;

/// Standardise each row of a feature-major `(F, N)` tensor along the batch (axis 1):
/// BatchNorm1d without affine parameters, training mode (the official `self.bn`).
pub fn standardize_fm<D: NnDevice, T: Tape<f32, D>>(
    z: Tensor<(usize, usize), f32, D, T>,
) -> Result<Tensor<(usize, usize), f32, D, T>, D::Err> {
    crate::nn::ops::batch_norm(z, None, None, true, false, 0.0, BN_EPS)
}

/// Barlow Twins loss of two feature-major `(F, N)` embeddings (runtime `F`), as used by the
/// models: `C = bn(z1) bn(z2)^T / N` (`F x F`), `loss = sum_i (1 - C_ii)^2 + lambd sum_{i!=j}
/// C_ij^2`, computed as `lambd * sum(C^2) + sum((1 - d)^2) - lambd * sum(d^2)` with the diagonal
/// `d_i = sum_k a_ik b_ik / N` taken directly (no `F x F` identity mask to build or upload).
pub fn barlow_twins<D, T, R>(
    z1: Tensor<(usize, usize), f32, D, T>,
    z2: Tensor<(usize, usize), f32, D, R>,
    lambd: f32,
) -> Result<Tensor<Rank0, f32, D, T>, D::Err>
where
    D: NnDevice,
    T: Tape<f32, D> + Merge<R>,
    R: Tape<f32, D>,
{
    let (f, n) = *z1.shape();
    assert_eq!((f, n), *z2.shape(), "both views need the same shape");
    assert!(n >= 2, "batch statistics need at least 2 samples");
    let a = standardize_fm(z1)?;
    let b = standardize_fm(z2)?;
    let c = a
        .retaped::<T>()
        .try_matmul(b.retaped::<R>().try_permute::<_, Axes2<1, 0>>()?)?
        .try_mul(1.0 / n as f32)?;
    let d = a
        .try_mul(b)?
        .try_sum::<(usize,), Axis<1>>()?
        .try_mul(1.0 / n as f32)?;
    // sum rows first, then the row sums: an F*F-long f32 accumulation (67M terms at F = 8192)
    // loses digits on a sequential CPU reduction
    let off = c
        .try_square()?
        .try_sum::<(usize,), Axis<1>>()?
        .try_sum::<Rank0, _>()?
        .try_mul(lambd)?;
    let on = d
        .retaped::<T>()
        .try_negate()?
        .try_add(1.0)?
        .try_square()?
        .try_sum::<Rank0, _>()?;
    let diag_sq = d.try_square()?.try_sum::<Rank0, _>()?.try_mul(lambd)?;
    off.try_add(on)?.try_sub(diag_sq)
}

/// Plain f64 reference of [`barlow_twins`] on row-major `(n, d)` slices (compiled for tests only).
#[cfg(test)]
fn barlow_twins_reference(z1: &[f64], z2: &[f64], n: usize, d: usize, lambd: f64) -> f64 {
    assert_eq!(z1.len(), n * d);
    assert_eq!(z2.len(), n * d);
    let standardize = |z: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; n * d];
        for j in 0..d {
            let mean = (0..n).map(|i| z[i * d + j]).sum::<f64>() / n as f64;
            let var = (0..n).map(|i| (z[i * d + j] - mean).powi(2)).sum::<f64>() / n as f64;
            let s = (var + BN_EPS).sqrt();
            for i in 0..n {
                out[i * d + j] = (z[i * d + j] - mean) / s;
            }
        }
        out
    };
    let a = standardize(z1);
    let b = standardize(z2);
    let mut loss = 0.0;
    for i in 0..d {
        for j in 0..d {
            let c = (0..n).map(|k| a[k * d + i] * b[k * d + j]).sum::<f64>() / n as f64;
            if i == j {
                loss += (1.0 - c).powi(2);
            } else {
                loss += lambd * c * c;
            }
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    const N: usize = 8;
    const F: usize = 16;

    fn sample(seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Pcg64::seed_from_u64(seed);
        // correlated views, different per-feature scales/offsets (exercises the standardisation)
        let base: Vec<f32> = (0..N * F).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let z1 = base
            .iter()
            .enumerate()
            .map(|(i, b)| b * (1.0 + (i % F) as f32 * 0.3) + 0.5)
            .collect();
        let z2 = base
            .iter()
            .map(|b| b + rng.gen_range(-0.5f32..0.5))
            .collect();
        (z1, z2)
    }

    fn to64(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }

    /// `(N, F)` row-major -> feature-major `(F, N)` tensor.
    fn fm(dev: &Cpu, v: &[f32]) -> Tensor<(usize, usize), f32, Cpu> {
        let mut t = vec![0f32; N * F];
        for i in 0..N {
            for j in 0..F {
                t[j * N + i] = v[i * F + j];
            }
        }
        dev.tensor_from_vec(t, (F, N))
    }

    #[test]
    fn runtime_loss_matches_f64_reference() {
        let dev: Cpu = Default::default();
        for (seed, lambd) in [(1u64, 0.0051f32), (2, 0.1), (3, 1.0)] {
            let (a, b) = sample(seed);
            let want = barlow_twins_reference(&to64(&a), &to64(&b), N, F, lambd as f64);
            let got = barlow_twins(fm(&dev, &a).leaky_trace(), fm(&dev, &b), lambd)
                .unwrap()
                .as_vec()[0] as f64;
            let rel = (got - want).abs() / want.abs();
            assert!(
                rel < 1e-6,
                "lambd {lambd}: got {got}, want {want}, rel {rel:e}"
            );
        }
    }

    #[test]
    fn runtime_loss_gradient_matches_finite_differences() {
        let dev: Cpu = Default::default();
        let lambd = 0.1f32;
        let (a, b) = sample(6);
        let (z1, z2) = (fm(&dev, &a), fm(&dev, &b));
        let loss = barlow_twins(z1.leaky_trace(), z2.leaky_trace(), lambd).unwrap();
        let grads = loss.backward();
        let (g1, g2) = (grads.get(&z1).as_vec(), grads.get(&z2).as_vec());
        let (a64, b64) = (to64(&a), to64(&b));
        let h = 1e-5;
        for (which, g) in [(0, &g1), (1, &g2)] {
            let scale = g.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            assert!(scale > 1e-3);
            let mut max_err = 0f64;
            for i in 0..N {
                for j in 0..F {
                    let k = i * F + j;
                    let (mut p, mut m) = if which == 0 {
                        (a64.clone(), a64.clone())
                    } else {
                        (b64.clone(), b64.clone())
                    };
                    p[k] += h;
                    m[k] -= h;
                    let f = |z: &[f64]| {
                        if which == 0 {
                            barlow_twins_reference(z, &b64, N, F, lambd as f64)
                        } else {
                            barlow_twins_reference(&a64, z, N, F, lambd as f64)
                        }
                    };
                    let fd = (f(&p) - f(&m)) / (2.0 * h);
                    max_err = max_err.max((fd - g[j * N + i] as f64).abs());
                }
            }
            assert!(
                max_err < 1e-3 * scale,
                "z{}: {max_err:e} (scale {scale})",
                which + 1
            );
        }
    }

    #[test]
    fn identical_whitened_views_give_zero_on_diagonal_term() {
        // z1 == z2 -> C_ii = var/(var+eps) ~ 1, so with lambd = 0 the loss is ~0.
        let (a, _) = sample(4);
        let l = barlow_twins_reference(&to64(&a), &to64(&a), N, F, 0.0);
        assert!(l < 1e-6, "{l}");
    }
}
