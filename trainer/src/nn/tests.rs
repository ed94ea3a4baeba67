//! Conv2d / MaxPool2d against naive f64 loops (values and gradients).

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::{Conv2d, MaxPool2d};

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

/// Naive conv: returns (y, dx, dw) for cotangent g.
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
) -> (Vec<f64>, Vec<f64>, Vec<f64>, usize, usize) {
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
    (y, dx, dw, ho, wo)
}

fn check_conv<const K: usize, const S: usize, const P: usize>(h: usize, w: usize, seed: u64) {
    const I: usize = 3;
    const O: usize = 4;
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(seed);
    let d = Dims { b: 2, c: I, h, w };
    let xv = rand_vec(&mut rng, d.b * I * h * w);
    let wv = rand_vec(&mut rng, O * I * K * K);
    let (ho, wo) = Conv2d::<I, O, K, S, P, f32, Cpu>::output_hw(h, w);
    let gv = rand_vec(&mut rng, d.b * O * ho * wo);
    let (y_ref, dx_ref, dw_ref, ho2, wo2) = naive_conv(&xv, &wv, &gv, &d, O, K, S, P);
    assert_eq!((ho, wo), (ho2, wo2));

    let conv = Conv2d::<I, O, K, S, P, f32, Cpu>::from_weight(
        dev.tensor_from_vec(wv, Rank4::<O, I, K, K>::default()),
    );
    let x = dev.tensor_from_vec(xv, (d.b, Const::<I>, h, w));
    let g = dev.tensor_from_vec(gv, (d.b, Const::<O>, ho, wo));

    // untaped forward
    let y0 = conv.forward(x.clone());
    assert_eq!(*y0.shape(), (d.b, Const::<O>, ho, wo));
    let tag = format!("conv K{K} S{S} P{P} {h}x{w}");
    assert_close(&format!("{tag} y (untaped)"), &y0.as_vec(), &y_ref, 1e-5);

    // taped forward + backward of sum(y * g)
    let y = conv.forward(x.leaky_trace());
    assert_close(&format!("{tag} y"), &y.as_vec(), &y_ref, 1e-5);
    let grads = (y * g).sum().backward();
    assert_close(&format!("{tag} dx"), &grads.get(&x).as_vec(), &dx_ref, 1e-4);
    assert_close(
        &format!("{tag} dw"),
        &grads.get(&conv.weight).as_vec(),
        &dw_ref,
        1e-4,
    );
}

#[test]
fn conv_1x1_s1_p0_matches_naive() {
    check_conv::<1, 1, 0>(9, 9, 1);
    check_conv::<1, 1, 0>(10, 11, 2);
}

#[test]
fn conv_1x1_s2_p0_matches_naive() {
    check_conv::<1, 2, 0>(9, 9, 3);
    check_conv::<1, 2, 0>(10, 11, 4);
}

#[test]
fn conv_3x3_s1_p1_matches_naive() {
    check_conv::<3, 1, 1>(9, 9, 5);
    check_conv::<3, 1, 1>(10, 11, 6);
}

#[test]
fn conv_3x3_s2_p1_matches_naive() {
    check_conv::<3, 2, 1>(9, 9, 7);
    check_conv::<3, 2, 1>(10, 11, 8);
}

#[test]
fn conv_7x7_s2_p3_matches_naive() {
    check_conv::<7, 2, 3>(9, 9, 9);
    check_conv::<7, 2, 3>(10, 11, 10);
}

#[test]
fn conv_output_size_formula() {
    assert_eq!(super::out_size(224, 7, 2, 3), 112);
    assert_eq!(super::out_size(112, 3, 2, 1), 56);
    assert_eq!(super::out_size(64, 3, 2, 1), 32);
    assert_eq!(super::out_size(10, 3, 2, 1), 5);
    assert_eq!(super::out_size(11, 1, 2, 0), 6);
    assert_eq!(super::out_size(9, 7, 2, 3), 5);
}

/// One input, several consumers: `x` feeds two convolutions, a max pool and an identity path.
/// Its gradient must be the *sum* of all contributions. dfdx 0.13's CPU `slice` backward
/// overwrites instead of adding, which this catches if any layer ever slices a shared input.
#[test]
fn shared_input_gradient_accumulates() {
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(42);
    let (b, h, w) = (2, 8, 9);
    let d = Dims { b, c: 3, h, w };
    let xv = rand_vec(&mut rng, b * 3 * h * w);
    let w1 = rand_vec(&mut rng, 4 * 3 * 9);
    let w2 = rand_vec(&mut rng, 4 * 3 * 9);
    let c1 = Conv2d::<3, 4, 3, 1, 1, f32, Cpu>::from_weight(
        dev.tensor_from_vec(w1.clone(), Rank4::default()),
    );
    let c2 = Conv2d::<3, 4, 3, 2, 1, f32, Cpu>::from_weight(
        dev.tensor_from_vec(w2.clone(), Rank4::default()),
    );
    let (h1, w1o) = Conv2d::<3, 4, 3, 1, 1, f32, Cpu>::output_hw(h, w);
    let (h2, w2o) = Conv2d::<3, 4, 3, 2, 1, f32, Cpu>::output_hw(h, w);
    let (hp, wp) = MaxPool2d::<3, 2, 1>::output_hw(h, w);
    let g1 = rand_vec(&mut rng, b * 4 * h1 * w1o);
    let g2 = rand_vec(&mut rng, b * 4 * h2 * w2o);
    let gp = rand_vec(&mut rng, b * 3 * hp * wp);
    let gi = rand_vec(&mut rng, b * 3 * h * w);

    let x = dev.tensor_from_vec(xv.clone(), (b, Const::<3>, h, w));
    let t1 = dev.tensor_from_vec(g1.clone(), (b, Const::<4>, h1, w1o));
    let t2 = dev.tensor_from_vec(g2.clone(), (b, Const::<4>, h2, w2o));
    let tp = dev.tensor_from_vec(gp.clone(), (b, Const::<3>, hp, wp));
    let ti = dev.tensor_from_vec(gi.clone(), (b, Const::<3>, h, w));
    let xt = x.leaky_trace();
    let y1 = c1.forward(xt.retaped::<OwnedTape<f32, Cpu>>());
    let y2 = c2.forward(xt.retaped::<OwnedTape<f32, Cpu>>());
    let yp = MaxPool2d::<3, 2, 1>.forward(xt.retaped::<OwnedTape<f32, Cpu>>());
    let loss = (y1 * t1).sum() + (y2 * t2).sum() + (yp * tp).sum() + (xt * ti).sum();
    let grads = loss.backward();

    let (_, dx1, _, _, _) = naive_conv(&xv, &w1, &g1, &d, 4, 3, 1, 1);
    let (_, dx2, _, _, _) = naive_conv(&xv, &w2, &g2, &d, 4, 3, 2, 1);
    let (_, dxp) = naive_maxpool(&xv, &gp, &d, 3, 2, 1);
    let want: Vec<f64> = (0..xv.len())
        .map(|i| dx1[i] + dx2[i] + dxp[i] + gi[i] as f64)
        .collect();
    assert_close("shared dx", &grads.get(&x).as_vec(), &want, 1e-4);
}

/// Naive max pool with -inf padding; the gradient goes to the (unique, random input) argmax.
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

fn check_maxpool<const K: usize, const S: usize, const P: usize>(h: usize, w: usize, seed: u64) {
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(seed);
    let d = Dims { b: 2, c: 3, h, w };
    let xv = rand_vec(&mut rng, 2 * 3 * h * w);
    let (ho, wo) = MaxPool2d::<K, S, P>::output_hw(h, w);
    let gv = rand_vec(&mut rng, 2 * 3 * ho * wo);
    let (y_ref, dx_ref) = naive_maxpool(&xv, &gv, &d, K, S, P);
    let x = dev.tensor_from_vec(xv, (2usize, Const::<3>, h, w));
    let g = dev.tensor_from_vec(gv, (2usize, Const::<3>, ho, wo));
    let pool = MaxPool2d::<K, S, P>;
    let y0 = pool.forward(x.clone());
    let tag = format!("maxpool K{K} S{S} P{P} {h}x{w}");
    assert_close(&format!("{tag} y (untaped)"), &y0.as_vec(), &y_ref, 1e-6);
    let y = pool.forward(x.leaky_trace());
    assert_close(&format!("{tag} y"), &y.as_vec(), &y_ref, 1e-6);
    let grads = (y * g).sum().backward();
    assert_close(&format!("{tag} dx"), &grads.get(&x).as_vec(), &dx_ref, 1e-6);
}

#[test]
fn maxpool_matches_naive() {
    check_maxpool::<3, 2, 1>(9, 9, 11);
    check_maxpool::<3, 2, 1>(10, 11, 12);
    check_maxpool::<2, 2, 0>(10, 11, 13);
    check_maxpool::<3, 1, 1>(7, 8, 14);
}

/// The modules are visible to dfdx's tensor walkers: parameter count and a safetensors
/// round trip of a small conv stack.
#[test]
fn conv_is_a_tensor_collection() {
    use super::builders;
    let dev = Cpu::seed_from_u64(0);
    type M = (
        builders::Conv2d<3, 8, 3, 2, 1>,
        BatchNorm2D<8>,
        ReLU,
        builders::MaxPool2d,
    );
    let m = dev.build_module::<M, f32>();
    assert_eq!(m.num_trainable_params(), 8 * 3 * 9 + 8 + 8);
    // kaiming fan_out std = sqrt(2/(8*9)) ~ 0.167
    let wv = m.0.weight.as_vec();
    let var = wv.iter().map(|v| (v * v) as f64).sum::<f64>() / wv.len() as f64;
    assert!(var > 0.01 && var < 0.06, "init variance {var}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    m.save_safetensors(&path).unwrap();
    let mut m2 = dev.build_module::<M, f32>();
    assert_ne!(m2.0.weight.as_vec(), wv);
    m2.load_safetensors(&path).unwrap();
    assert_eq!(m2.0.weight.as_vec(), wv);
}

// ---- the runtime, channel-major layers the models use (nn::rt) ----

/// NCHW -> channel-major `(C, B*H*W)` values.
fn to_cm(x: &[f32], d: &Dims) -> Vec<f32> {
    let plane = d.h * d.w;
    let mut out = vec![0f32; x.len()];
    for b in 0..d.b {
        for c in 0..d.c {
            out[(c * d.b + b) * plane..(c * d.b + b + 1) * plane]
                .copy_from_slice(&x[(b * d.c + c) * plane..(b * d.c + c + 1) * plane]);
        }
    }
    out
}

fn to_cm64(x: &[f64], d: &Dims) -> Vec<f64> {
    let f: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let _ = f;
    let plane = d.h * d.w;
    let mut out = vec![0f64; x.len()];
    for b in 0..d.b {
        for c in 0..d.c {
            out[(c * d.b + b) * plane..(c * d.b + b + 1) * plane]
                .copy_from_slice(&x[(b * d.c + c) * plane..(b * d.c + c + 1) * plane]);
        }
    }
    out
}

fn check_rt_conv(
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    p: usize,
    h: usize,
    w: usize,
    seed: u64,
) {
    use super::rt::{conv2d, ConvGeom, Fmap};
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(seed);
    let d = Dims { b: 2, c: cin, h, w };
    let xv = rand_vec(&mut rng, d.b * cin * h * w);
    let wv = rand_vec(&mut rng, cout * cin * k * k);
    let geom = ConvGeom { cin, cout, k, s, p };
    let (ho, wo) = geom.output_hw(h, w);
    let gv = rand_vec(&mut rng, d.b * cout * ho * wo);
    let (y_ref, dx_ref, dw_ref, _, _) = naive_conv(&xv, &wv, &gv, &d, cout, k, s, p);
    let od = Dims {
        b: 2,
        c: cout,
        h: ho,
        w: wo,
    };
    let x = dev.tensor_from_vec(to_cm(&xv, &d), (cin, d.b * h * w));
    let wt = dev.tensor_from_vec(wv, (cout * cin * k * k,));
    let g = dev.tensor_from_vec(to_cm(&gv, &od), (cout, d.b * ho * wo));
    let cache = Default::default();
    let tag = format!("rt conv {cin}->{cout} K{k} S{s} P{p} {h}x{w}");
    let y0 = conv2d(
        Fmap {
            x: x.clone(),
            b: 2,
            h,
            w,
        },
        &wt,
        &geom,
        &cache,
    )
    .unwrap();
    assert_eq!((y0.h, y0.w), (ho, wo));
    assert_close(
        &format!("{tag} y (untaped)"),
        &y0.x.as_vec(),
        &to_cm64(&y_ref, &od),
        1e-5,
    );
    // the weight is reached through its flat tensor, as in the models
    let mut grads = Gradients::leaky();
    grads.try_alloc_for(&wt).unwrap();
    let y = conv2d(
        Fmap {
            x: x.clone().traced(grads),
            b: 2,
            h,
            w,
        },
        &wt,
        &geom,
        &cache,
    )
    .unwrap();
    let grads = (y.x * g).sum().backward();
    assert_close(
        &format!("{tag} dx"),
        &grads.get(&x).as_vec(),
        &to_cm64(&dx_ref, &d),
        1e-4,
    );
    assert_close(
        &format!("{tag} dw"),
        &grads.get(&wt).as_vec(),
        &dw_ref,
        1e-4,
    );
}

/// Every (kernel, stride, padding) ResNet-18/50 uses: 7x7/2 p3 stem, 3x3/1 p1, 3x3/2 p1,
/// 1x1/1 p0 (bottleneck), 1x1/2 p0 (downsample); odd and even sizes.
#[test]
fn rt_conv_matches_naive_for_every_resnet_shape() {
    for (i, &(k, s, p)) in [(7, 2, 3), (3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0)]
        .iter()
        .enumerate()
    {
        check_rt_conv(3, 4, k, s, p, 9, 9, 100 + i as u64);
        check_rt_conv(5, 2, k, s, p, 8, 11, 200 + i as u64);
    }
}

#[test]
fn rt_maxpool_matches_naive() {
    use super::rt::{max_pool2d, Fmap};
    for (k, s, p, h, w, seed) in [
        (3, 2, 1, 9, 9, 21u64),
        (3, 2, 1, 10, 11, 22),
        (3, 2, 1, 8, 8, 23),
    ] {
        let dev: Cpu = Default::default();
        let mut rng = Pcg64::seed_from_u64(seed);
        let d = Dims { b: 2, c: 3, h, w };
        let xv = rand_vec(&mut rng, 2 * 3 * h * w);
        let ho = (h + 2 * p - k) / s + 1;
        let wo = (w + 2 * p - k) / s + 1;
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
        let cache = Default::default();
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
            &cache,
        )
        .unwrap();
        assert_eq!((y.h, y.w), (ho, wo));
        assert_close("rt maxpool y", &y.x.as_vec(), &to_cm64(&y_ref, &od), 1e-6);
        let grads = (y.x * g).sum().backward();
        assert_close(
            "rt maxpool dx",
            &grads.get(&x).as_vec(),
            &to_cm64(&dx_ref, &d),
            1e-6,
        );
    }
}

#[test]
fn rt_batch_norm_matches_pytorch_semantics() {
    use super::rt::batch_norm;
    let dev: Cpu = Default::default();
    let mut rng = Pcg64::seed_from_u64(9);
    let (c, n) = (3, 10);
    let xv = rand_vec(&mut rng, c * n);
    let gamma = dev.tensor_from_vec(vec![0.5f32, 1.0, 2.0], (3,));
    let beta = dev.tensor_from_vec(vec![0.1f32, -0.2, 0.3], (3,));
    let mut rm = dev.tensor_from_vec(vec![0.0f32; 3], (3,));
    let mut rv = dev.tensor_from_vec(vec![1.0f32; 3], (3,));
    let x = dev.tensor_from_vec(xv.clone(), (c, n));
    let y = batch_norm(
        x.clone(),
        Some((&gamma, &beta)),
        Some((&mut rm, &mut rv)),
        true,
        0.1,
        1e-5,
    )
    .unwrap()
    .as_vec();
    let (g, b) = (gamma.as_vec(), beta.as_vec());
    for ch in 0..c {
        let row: Vec<f64> = xv[ch * n..(ch + 1) * n].iter().map(|&v| v as f64).collect();
        let mean = row.iter().sum::<f64>() / n as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        for i in 0..n {
            let want = (row[i] - mean) / (var + 1e-5).sqrt() * g[ch] as f64 + b[ch] as f64;
            assert!((y[ch * n + i] as f64 - want).abs() < 1e-5);
        }
        assert!((rm.as_vec()[ch] as f64 - 0.1 * mean).abs() < 1e-6);
        let unbiased = var * n as f64 / (n - 1) as f64;
        assert!((rv.as_vec()[ch] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-6);
    }
    // eval mode uses the running statistics
    let y = batch_norm(
        x,
        Some((&gamma, &beta)),
        Some((&mut rm, &mut rv)),
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
                * g[ch] as f64
                + b[ch] as f64;
            assert!((y[ch * n + i] as f64 - want).abs() < 1e-5);
        }
    }
}
