//! The ops the models use ([`super::ops`] on the CPU kernels) against naive f64 loops: values,
//! gradients, accumulation into shared inputs, and the freeing of intermediate gradients.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::ops::{add_relu, batch_norm, conv2d, max_pool2d};
use super::{out_size, ConvGeom, Fmap};

fn rand_vec(rng: &mut Pcg64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(
            err <= tol * scale,
            "{what}[{i}]: got {g}, want {w} (err {err:e}, tol {:e})",
            tol * scale
        );
    }
}

struct Dims {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
}

/// Naive NCHW conv: returns (y, dx, dw) for cotangent g.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f32],
    wt: &[f32],
    g: &[f32],
    d: &Dims,
    o: usize,
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ho = (d.h + 2 * p - k) / s + 1;
    let wo = (d.w + 2 * p - k) / s + 1;
    let mut y = vec![0f64; d.b * o * ho * wo];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; wt.len()];
    for b in 0..d.b {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    let yi = ((b * o + oc) * ho + oh) * wo + ow;
                    for c in 0..d.c {
                        for kh in 0..k {
                            for kw in 0..k {
                                let ih = (oh * s + kh) as isize - p as isize;
                                let iw = (ow * s + kw) as isize - p as isize;
                                if ih < 0 || iw < 0 || ih as usize >= d.h || iw as usize >= d.w {
                                    continue;
                                }
                                let xi = ((b * d.c + c) * d.h + ih as usize) * d.w + iw as usize;
                                let wi = ((oc * d.c + c) * k + kh) * k + kw;
                                y[yi] += wt[wi] as f64 * x[xi] as f64;
                                dx[xi] += wt[wi] as f64 * g[yi] as f64;
                                dw[wi] += x[xi] as f64 * g[yi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

/// Naive NCHW max pool with -inf padding; the gradient goes to the (unique, random input) argmax.
fn naive_maxpool(
    x: &[f32],
    g: &[f32],
    d: &Dims,
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f64>, Vec<f64>) {
    let ho = (d.h + 2 * p - k) / s + 1;
    let wo = (d.w + 2 * p - k) / s + 1;
    let mut y = vec![0f64; d.b * d.c * ho * wo];
    let mut dx = vec![0f64; x.len()];
    for bc in 0..d.b * d.c {
        for oh in 0..ho {
            for ow in 0..wo {
                let mut best = f64::NEG_INFINITY;
                let mut arg = usize::MAX;
                for kh in 0..k {
                    for kw in 0..k {
                        let ih = (oh * s + kh) as isize - p as isize;
                        let iw = (ow * s + kw) as isize - p as isize;
                        if ih < 0 || iw < 0 || ih as usize >= d.h || iw as usize >= d.w {
                            continue;
                        }
                        let xi = (bc * d.h + ih as usize) * d.w + iw as usize;
                        if (x[xi] as f64) > best {
                            best = x[xi] as f64;
                            arg = xi;
                        }
                    }
                }
                let yi = (bc * ho + oh) * wo + ow;
                y[yi] = best;
                dx[arg] += g[yi] as f64;
            }
        }
    }
    (y, dx)
}

/// NCHW -> channel-major `(C, B*H*W)`.
fn to_cm<T: Copy + Default>(x: &[T], d: &Dims) -> Vec<T> {
    let plane = d.h * d.w;
    let mut out = vec![T::default(); x.len()];
    for b in 0..d.b {
        for c in 0..d.c {
            out[(c * d.b + b) * plane..(c * d.b + b + 1) * plane]
                .copy_from_slice(&x[(b * d.c + c) * plane..(b * d.c + c + 1) * plane]);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check_conv(
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    p: usize,
    h: usize,
    w: usize,
    seed: u64,
) {
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(seed);
    let d = Dims { b: 2, c: cin, h, w };
    let xv = rand_vec(&mut rng, d.b * cin * h * w);
    let wv = rand_vec(&mut rng, cout * cin * k * k);
    let geom = ConvGeom { cin, cout, k, s, p };
    let (ho, wo) = geom.output_hw(h, w);
    let gv = rand_vec(&mut rng, d.b * cout * ho * wo);
    let (y_ref, dx_ref, dw_ref) = naive_conv(&xv, &wv, &gv, &d, cout, k, s, p);
    let od = Dims {
        b: 2,
        c: cout,
        h: ho,
        w: wo,
    };
    let x = dev.tensor_from_vec(to_cm(&xv, &d), (cin, d.b * h * w));
    let wt = dev.tensor_from_vec(wv, (cout * cin * k * k,));
    let g = dev.tensor_from_vec(to_cm(&gv, &od), (cout, d.b * ho * wo));
    let tag = format!("conv {cin}->{cout} K{k} S{s} P{p} {h}x{w}");
    let y0 = conv2d(
        Fmap {
            x: x.clone(),
            b: 2,
            h,
            w,
        },
        &wt,
        &geom,
        true,
    )
    .unwrap();
    assert_eq!((y0.h, y0.w), (ho, wo));
    assert_close(
        &format!("{tag} y (untaped)"),
        &y0.x.as_vec(),
        &to_cm(&y_ref, &od),
        1e-5,
    );
    for input_grad in [true, false] {
        let mut grads = Gradients::leaky();
        grads.try_alloc_for(&wt).unwrap();
        let xt = Fmap {
            x: x.clone().traced(grads),
            b: 2,
            h,
            w,
        };
        let y = conv2d(xt, &wt, &geom, input_grad).unwrap();
        let grads = (y.x * g.clone()).sum().backward();
        let dw = grads.get(&wt).as_vec();
        assert_close(&format!("{tag} dw"), &dw, &dw_ref, 1e-4);
        if input_grad {
            let dx = grads.get(&x).as_vec();
            assert_close(&format!("{tag} dx"), &dx, &to_cm(&dx_ref, &d), 1e-4);
        } else {
            assert!(
                grads.storage(&x).is_none(),
                "{tag}: input gradient computed without being asked for"
            );
        }
    }
}

/// Every (kernel, stride, padding) ResNet-18/50 uses: 7x7/2 p3 stem, 3x3/1 p1, 3x3/2 p1,
/// 1x1/1 p0 (bottleneck), 1x1/2 p0 (downsample); odd and even sizes.
#[test]
fn conv_matches_naive_for_every_resnet_shape() {
    for (i, &(k, s, p)) in [(7, 2, 3), (3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0)]
        .iter()
        .enumerate()
    {
        check_conv(3, 4, k, s, p, 9, 9, 100 + i as u64);
        check_conv(5, 2, k, s, p, 8, 11, 200 + i as u64);
    }
}

#[test]
fn conv_output_size_formula() {
    assert_eq!(out_size(224, 7, 2, 3), 112);
    assert_eq!(out_size(112, 3, 2, 1), 56);
    assert_eq!(out_size(64, 3, 2, 1), 32);
    assert_eq!(out_size(10, 3, 2, 1), 5);
    assert_eq!(out_size(11, 1, 2, 0), 6);
    assert_eq!(out_size(9, 7, 2, 3), 5);
}

#[test]
fn maxpool_matches_naive() {
    for (k, s, p, h, w, seed) in [
        (3, 2, 1, 9, 9, 21u64),
        (3, 2, 1, 10, 11, 22),
        (3, 2, 1, 8, 8, 23),
        (2, 2, 0, 10, 11, 24),
        (3, 1, 1, 7, 8, 25),
    ] {
        let dev: Cpu = Default::default();
        let mut rng = Pcg64::seed_from_u64(seed);
        let d = Dims { b: 2, c: 3, h, w };
        let xv = rand_vec(&mut rng, 2 * 3 * h * w);
        let (ho, wo) = (out_size(h, k, s, p), out_size(w, k, s, p));
        let od = Dims {
            b: 2,
            c: 3,
            h: ho,
            w: wo,
        };
        let gv = rand_vec(&mut rng, 2 * 3 * ho * wo);
        let (y_ref, dx_ref) = naive_maxpool(&xv, &gv, &d, k, s, p);
        let x = dev.tensor_from_vec(to_cm(&xv, &d), (3, 2 * h * w));
        let g = dev.tensor_from_vec(to_cm(&gv, &od), (3, 2 * ho * wo));
        let y = max_pool2d(
            Fmap {
                x: x.leaky_trace(),
                b: 2,
                h,
                w,
            },
            k,
            s,
            p,
        )
        .unwrap();
        assert_eq!((y.h, y.w), (ho, wo));
        assert_close("maxpool y", &y.x.as_vec(), &to_cm(&y_ref, &od), 1e-6);
        let grads = (y.x * g).sum().backward();
        assert_close(
            "maxpool dx",
            &grads.get(&x).as_vec(),
            &to_cm(&dx_ref, &d),
            1e-6,
        );
    }
}

/// At a tie the whole gradient goes to the first maximum of the window (PyTorch's choice).
#[test]
fn maxpool_gives_a_tie_to_the_first_maximum() {
    let dev: Cpu = Default::default();
    let x = dev.tensor_from_vec(vec![1.0f32, 3.0, 3.0, 0.0], (1, 4));
    let y = max_pool2d(
        Fmap {
            x: x.leaky_trace(),
            b: 1,
            h: 2,
            w: 2,
        },
        2,
        2,
        0,
    )
    .unwrap();
    assert_eq!(y.x.as_vec(), vec![3.0]);
    let grads = y.x.sum().backward();
    assert_eq!(grads.get(&x).as_vec(), vec![0.0, 1.0, 0.0, 0.0]);
}

/// f64 BatchNorm (training mode, batch statistics) of the rows of a `(c, n)` matrix, then
/// `sum(y * g)`: the function whose gradient the op must give.
fn bn_objective(x: &[f64], gamma: &[f64], beta: &[f64], g: &[f64], n: usize, relu: bool) -> f64 {
    let mut total = 0.0;
    for (ch, row) in x.chunks(n).enumerate() {
        let mean = row.iter().sum::<f64>() / n as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        for (i, v) in row.iter().enumerate() {
            let mut y = (v - mean) / (var + 1e-5).sqrt() * gamma[ch] + beta[ch];
            if relu {
                y = y.max(0.0);
            }
            total += y * g[ch * n + i];
        }
    }
    total
}

/// Values, running statistics (PyTorch's rule) and every gradient (input, gamma, beta) of the
/// BatchNorm op, with and without the fused ReLU, against f64 loops and central differences.
#[test]
fn batch_norm_matches_pytorch_semantics_and_finite_differences() {
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(9);
    let (c, n) = (3, 10);
    let xv = rand_vec(&mut rng, c * n);
    let gv = rand_vec(&mut rng, c * n);
    let (gam, bet) = (vec![0.5f32, 1.0, 2.0], vec![0.1f32, -0.2, 0.3]);
    let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    for relu in [false, true] {
        let gamma = dev.tensor_from_vec(gam.clone(), (3,));
        let beta = dev.tensor_from_vec(bet.clone(), (3,));
        let mut rm = dev.tensor_from_vec(vec![0.0f32; 3], (3,));
        let mut rv = dev.tensor_from_vec(vec![1.0f32; 3], (3,));
        let x = dev.tensor_from_vec(xv.clone(), (c, n));
        let mut grads = Gradients::leaky();
        grads.try_alloc_for(&gamma).unwrap();
        grads.try_alloc_for(&beta).unwrap();
        let y = batch_norm(
            x.clone().traced(grads),
            Some((&gamma, &beta)),
            Some((&mut rm, &mut rv)),
            true,
            relu,
            0.1,
            1e-5,
        )
        .unwrap();
        let yv = y.as_vec();
        for ch in 0..c {
            let row = to64(&xv[ch * n..(ch + 1) * n]);
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let mut want =
                    (row[i] - mean) / (var + 1e-5).sqrt() * gam[ch] as f64 + bet[ch] as f64;
                if relu {
                    want = want.max(0.0);
                }
                assert!(
                    (yv[ch * n + i] as f64 - want).abs() < 1e-5,
                    "relu {relu} y[{ch},{i}]"
                );
            }
            assert!((rm.as_vec()[ch] as f64 - 0.1 * mean).abs() < 1e-6);
            let unbiased = var * n as f64 / (n - 1) as f64;
            assert!((rv.as_vec()[ch] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-6);
        }
        let grads = (y * dev.tensor_from_vec(gv.clone(), (c, n)))
            .sum()
            .backward();
        let (x64, g64, b64, gv64) = (to64(&xv), to64(&gam), to64(&bet), to64(&gv));
        let fd = |which: usize, i: usize| {
            let h = 1e-6;
            let mut p = [x64.clone(), g64.clone(), b64.clone()];
            let mut m = p.clone();
            p[which][i] += h;
            m[which][i] -= h;
            (bn_objective(&p[0], &p[1], &p[2], &gv64, n, relu)
                - bn_objective(&m[0], &m[1], &m[2], &gv64, n, relu))
                / (2.0 * h)
        };
        for (which, name, got) in [
            (0, "dx", grads.get(&x).as_vec()),
            (1, "dgamma", grads.get(&gamma).as_vec()),
            (2, "dbeta", grads.get(&beta).as_vec()),
        ] {
            let want: Vec<f64> = (0..got.len()).map(|i| fd(which, i)).collect();
            assert_close(&format!("bn relu {relu} {name}"), &got, &want, 1e-4);
        }
    }
    // evaluation mode normalises with the running statistics
    let (gamma, beta) = (
        dev.tensor_from_vec(gam.clone(), (3,)),
        dev.tensor_from_vec(bet.clone(), (3,)),
    );
    let mut rm = dev.tensor_from_vec(vec![0.2f32, -0.1, 0.0], (3,));
    let mut rv = dev.tensor_from_vec(vec![1.5f32, 0.5, 2.0], (3,));
    let x = dev.tensor_from_vec(xv.clone(), (c, n));
    let y = batch_norm(
        x,
        Some((&gamma, &beta)),
        Some((&mut rm, &mut rv)),
        false,
        false,
        0.1,
        1e-5,
    )
    .unwrap()
    .as_vec();
    let (m, v) = (rm.as_vec(), rv.as_vec());
    for ch in 0..c {
        for i in 0..n {
            let want = (xv[ch * n + i] as f64 - m[ch] as f64) / (v[ch] as f64 + 1e-5).sqrt()
                * gam[ch] as f64
                + bet[ch] as f64;
            assert!((y[ch * n + i] as f64 - want).abs() < 1e-5);
        }
    }
}

/// One input with several consumers (two convolutions, a max pool, a residual add): its
/// gradient is the *sum* of all contributions.
#[test]
fn shared_input_gradient_accumulates() {
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(42);
    let (b, h, w) = (2, 8, 9);
    let d = Dims { b, c: 3, h, w };
    let xv = rand_vec(&mut rng, b * 3 * h * w);
    let (w1, w2) = (rand_vec(&mut rng, 4 * 3 * 9), rand_vec(&mut rng, 4 * 3 * 9));
    let g1 = ConvGeom {
        cin: 3,
        cout: 4,
        k: 3,
        s: 1,
        p: 1,
    };
    let g2 = ConvGeom {
        cin: 3,
        cout: 4,
        k: 3,
        s: 2,
        p: 1,
    };
    let (h1, w1o) = g1.output_hw(h, w);
    let (h2, w2o) = g2.output_hw(h, w);
    let (hp, wp) = (out_size(h, 3, 2, 1), out_size(w, 3, 2, 1));
    let c1 = rand_vec(&mut rng, b * 4 * h1 * w1o);
    let c2 = rand_vec(&mut rng, b * 4 * h2 * w2o);
    let cp = rand_vec(&mut rng, b * 3 * hp * wp);
    // the residual branch: relu(x + x * 0.5), cotangent ci
    let ci = rand_vec(&mut rng, b * 3 * h * w);

    let x = dev.tensor_from_vec(to_cm(&xv, &d), (3, b * h * w));
    let (wt1, wt2) = (
        dev.tensor_from_vec(w1.clone(), (w1.len(),)),
        dev.tensor_from_vec(w2.clone(), (w2.len(),)),
    );
    let xt = Fmap {
        x: x.leaky_trace(),
        b,
        h,
        w,
    };
    let cm = |v: &[f32], c, hh, ww| {
        dev.tensor_from_vec(to_cm(v, &Dims { b, c, h: hh, w: ww }), (c, b * hh * ww))
    };
    let y1 = conv2d(xt.retaped(), &wt1, &g1, true).unwrap().x;
    let y2 = conv2d(xt.retaped(), &wt2, &g2, true).unwrap().x;
    let yp = max_pool2d(xt.retaped(), 3, 2, 1).unwrap().x;
    let yi = add_relu(
        xt.x.retaped::<OwnedTape<f32, Cpu>>().try_mul(0.5).unwrap(),
        xt.x.retaped::<OwnedTape<f32, Cpu>>(),
    )
    .unwrap();
    let loss = (y1 * cm(&c1, 4, h1, w1o)).sum()
        + (y2 * cm(&c2, 4, h2, w2o)).sum()
        + (yp * cm(&cp, 3, hp, wp)).sum()
        + (yi * cm(&ci, 3, h, w)).sum();
    let grads = loss.backward();

    let (_, dx1, _) = naive_conv(&xv, &w1, &c1, &d, 4, 3, 1, 1);
    let (_, dx2, _) = naive_conv(&xv, &w2, &c2, &d, 4, 3, 2, 1);
    let (_, dxp) = naive_maxpool(&xv, &cp, &d, 3, 2, 1);
    let want: Vec<f64> = (0..xv.len())
        .map(|i| {
            let residual = if xv[i] * 1.5 > 0.0 {
                1.5 * ci[i] as f64
            } else {
                0.0
            };
            dx1[i] + dx2[i] + dxp[i] + residual
        })
        .collect();
    assert_close(
        "shared dx",
        &grads.get(&x).as_vec(),
        &to_cm(&want, &d),
        1e-4,
    );
}

/// A residual block built only from the ops (conv-BN-ReLU, conv-BN, add+ReLU, max pool): after
/// backward the gradients held are exactly the leaves' (input, weights, BatchNorm parameters);
/// every intermediate gradient was freed by the op that produced its tensor.
#[test]
fn ops_free_intermediate_gradients() {
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(7);
    let (b, c, h, w) = (2, 4, 8, 8);
    let geom = ConvGeom {
        cin: c,
        cout: c,
        k: 3,
        s: 1,
        p: 1,
    };
    let x = dev.tensor_from_vec(rand_vec(&mut rng, c * b * h * w), (c, b * h * w));
    let weights: Vec<_> = (0..2)
        .map(|_| dev.tensor_from_vec(rand_vec(&mut rng, geom.weight_len()), (geom.weight_len(),)))
        .collect();
    let affine: Vec<_> = (0..4)
        .map(|_| dev.tensor_from_vec(rand_vec(&mut rng, c), (c,)))
        .collect();
    let mut grads = Gradients::leaky();
    for t in weights.iter().chain(&affine) {
        grads.try_alloc_for(t).unwrap();
    }
    let input = Fmap {
        x: x.clone().traced(grads),
        b,
        h,
        w,
    };
    let pooled = max_pool2d(input, 3, 1, 1).unwrap();
    let mut y = pooled.retaped();
    for (i, wt) in weights.iter().enumerate() {
        let z = conv2d(y, wt, &geom, true).unwrap();
        let bn = batch_norm(
            z.x,
            Some((&affine[2 * i], &affine[2 * i + 1])),
            None,
            true,
            i == 0,
            0.1,
            1e-5,
        )
        .unwrap();
        y = Fmap { x: bn, ..z };
    }
    let out = add_relu(y.x, pooled.x).unwrap();
    let grads = out.sum().backward();
    // 1 input + 2 weights + 4 BatchNorm parameters; the sum's own input gradient is the only
    // dfdx-op leftover
    assert_eq!(
        grads.num_held(),
        1 + 2 + 4 + 1,
        "intermediate gradients were kept"
    );
    for t in weights.iter().chain(&affine) {
        assert!(
            grads.get(t).as_vec().iter().any(|&v| v != 0.0),
            "a leaf got no gradient"
        );
    }
    assert!(grads.storage(&x).is_some());
}
