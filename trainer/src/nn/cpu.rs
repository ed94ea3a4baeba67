//! The CPU kernels of [`NnDevice`]: im2col + `gemm` convolutions (the matrix-product crate dfdx
//! itself uses, called on the buffers directly: no copies, transposes by strides, accumulation
//! in place), and per-channel loops spread over rayon's threads for the rest.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::ops::{BnStats, Buf, NnDevice, Stopper};
use super::{ConvShape, PoolShape};

/// A row-major matrix operand: its buffer, and its row and column strides.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Operand<'a> {
    /// A contiguous `(rows, cols)` matrix.
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Operand {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a contiguous `(rows, cols)` matrix, as a `(cols, rows)` operand.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Operand {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// `c (m x n, contiguous) (+)= a (m x k) * b (k x n)`.
fn matmul(m: usize, n: usize, k: usize, a: Operand, b: Operand, c: &mut [f32], accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "matmul: output too small");
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        (m - 1) * a.rs + (k - 1) * a.cs < a.data.len(),
        "matmul: lhs too small"
    );
    assert!(
        (k - 1) * b.rs + (n - 1) * b.cs < b.data.len(),
        "matmul: rhs too small"
    );
    // SAFETY: every index gemm reads or writes is inside the slices (checked just above), and the
    // output does not alias the inputs (it is a `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        )
    }
}

/// The im2col matrix `(cin*k*k, B*Ho*Wo)` of a channel-major input (zeros in the padding); row
/// `c*k*k + kh*k + kw` matches the weight's `(cout, cin, k, k)` order.
fn im2col(s: &ConvShape, x: &[f32], cols: &mut [f32]) {
    let g = &s.geom;
    let (ho, wo) = s.out_hw();
    let (b, h, w) = (s.b, s.h, s.w);
    let n_out = b * ho * wo;
    cols.par_chunks_mut(g.k * g.k * n_out)
        .enumerate()
        .for_each(|(c, taps)| {
            let plane = &x[c * b * h * w..(c + 1) * b * h * w];
            for (t, row) in taps.chunks_mut(n_out).enumerate() {
                let (kh, kw) = (t / g.k, t % g.k);
                window_walk(s, kh, kw, |o, i| row[o] = i.map_or(0.0, |i| plane[i]));
            }
        });
}

/// Adds an im2col-shaped gradient back onto the input positions it was gathered from.
fn col2im_add(s: &ConvShape, cols: &[f32], dx: &mut [f32]) {
    let g = &s.geom;
    let (ho, wo) = s.out_hw();
    let (b, h, w) = (s.b, s.h, s.w);
    let n_out = b * ho * wo;
    dx.par_chunks_mut(b * h * w)
        .zip(cols.par_chunks(g.k * g.k * n_out))
        .for_each(|(plane, taps)| {
            for (t, row) in taps.chunks(n_out).enumerate() {
                let (kh, kw) = (t / g.k, t % g.k);
                window_walk(s, kh, kw, |o, i| {
                    if let Some(i) = i {
                        plane[i] += row[o];
                    }
                });
            }
        });
}

/// Calls `f(output position, Some(input position) or None in the padding)` for tap `(kh, kw)`
/// over every image and output pixel; positions are within one channel's `(B, H, W)` plane.
fn window_walk(s: &ConvShape, kh: usize, kw: usize, mut f: impl FnMut(usize, Option<usize>)) {
    let g = &s.geom;
    let (ho, wo) = s.out_hw();
    let (h, w) = (s.h, s.w);
    let mut o = 0;
    for bi in 0..s.b {
        for oh in 0..ho {
            let ih = (oh * g.s + kh) as isize - g.p as isize;
            let row_ok = ih >= 0 && (ih as usize) < h;
            for ow in 0..wo {
                let iw = (ow * g.s + kw) as isize - g.p as isize;
                let inside = row_ok && iw >= 0 && (iw as usize) < w;
                f(o, inside.then(|| (bi * h + ih as usize) * w + iw as usize));
                o += 1;
            }
        }
    }
}

fn pointwise(s: &ConvShape) -> bool {
    s.geom.k == 1 && s.geom.s == 1 && s.geom.p == 0
}

/// `(mean, biased variance)` of a row, accumulated in f64.
fn row_stats(row: &[f32]) -> (f64, f64) {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

impl NnDevice for Cpu {
    fn conv2d_forward(
        &self,
        s: &ConvShape,
        x: &Buf<Self>,
        w: &Buf<Self>,
    ) -> Result<Buf<Self>, Self::Err> {
        let g = &s.geom;
        let ckk = g.cin * g.k * g.k;
        let n_out = s.out_len() / g.cout;
        let mut y = self.try_alloc_len(s.out_len())?;
        if pointwise(s) {
            matmul(
                g.cout,
                n_out,
                ckk,
                Operand::rows(w, ckk),
                Operand::rows(x, n_out),
                &mut y,
                false,
            );
        } else {
            let mut cols = self.try_alloc_len(ckk * n_out)?;
            im2col(s, x, &mut cols);
            matmul(
                g.cout,
                n_out,
                ckk,
                Operand::rows(w, ckk),
                Operand::rows(&cols, n_out),
                &mut y,
                false,
            );
        }
        Ok(y)
    }

    fn conv2d_backward(
        &self,
        s: &ConvShape,
        x: &Buf<Self>,
        w: &Buf<Self>,
        dy: &Buf<Self>,
        dx: Option<&mut Buf<Self>>,
        dw: &mut Buf<Self>,
    ) -> Result<(), Self::Err> {
        let g = &s.geom;
        let ckk = g.cin * g.k * g.k;
        let n_out = s.out_len() / g.cout;
        let dy_rows = Operand::rows(dy, n_out);
        if pointwise(s) {
            // dW += dY X^T; dX += W^T dY
            matmul(
                g.cout,
                ckk,
                n_out,
                dy_rows,
                Operand::transposed(x, n_out),
                dw,
                true,
            );
            if let Some(dx) = dx {
                matmul(
                    ckk,
                    n_out,
                    g.cout,
                    Operand::transposed(w, ckk),
                    dy_rows,
                    dx,
                    true,
                );
            }
            return Ok(());
        }
        let mut cols = self.try_alloc_len(ckk * n_out)?;
        im2col(s, x, &mut cols);
        matmul(
            g.cout,
            ckk,
            n_out,
            dy_rows,
            Operand::transposed(&cols, n_out),
            dw,
            true,
        );
        if let Some(dx) = dx {
            // the columns' gradient reuses their buffer
            matmul(
                ckk,
                n_out,
                g.cout,
                Operand::transposed(w, ckk),
                dy_rows,
                &mut cols,
                false,
            );
            col2im_add(s, &cols, dx);
        }
        Ok(())
    }

    fn batch_norm_forward(
        &self,
        c: usize,
        n: usize,
        x: &Buf<Self>,
        affine: Option<(&Buf<Self>, &Buf<Self>)>,
        eps: f32,
        relu: bool,
    ) -> Result<(Buf<Self>, BnStats<Buf<Self>>), Self::Err> {
        let mut y = self.try_alloc_len(c * n)?;
        let mut mean = self.try_alloc_len(c)?;
        let mut var = self.try_alloc_len(c)?;
        let mut inv_std = self.try_alloc_len(c)?;
        let stats: Vec<(f64, f64)> = x.par_chunks(n.max(1)).map(row_stats).collect();
        for (ch, &(m, v)) in stats.iter().enumerate() {
            mean[ch] = m as f32;
            var[ch] = v as f32;
            inv_std[ch] = (1.0 / (v + eps as f64).sqrt()) as f32;
        }
        y.par_chunks_mut(n.max(1))
            .zip(x.par_chunks(n.max(1)))
            .enumerate()
            .for_each(|(ch, (yr, xr))| {
                let (g, b) = affine.map_or((1.0, 0.0), |(g, b)| (g[ch], b[ch]));
                let scale = g * inv_std[ch];
                let shift = b - mean[ch] * scale;
                for (yv, &xv) in yr.iter_mut().zip(xr) {
                    let v = xv * scale + shift;
                    *yv = if relu { v.max(0.0) } else { v };
                }
            });
        Ok((y, BnStats { mean, var, inv_std }))
    }

    fn batch_norm_backward(
        &self,
        c: usize,
        n: usize,
        x: &Buf<Self>,
        relu_out: Option<&Buf<Self>>,
        gamma: Option<&Buf<Self>>,
        stats: &BnStats<Buf<Self>>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
        daffine: Option<(&mut Buf<Self>, &mut Buf<Self>)>,
    ) -> Result<(), Self::Err> {
        let n1 = n.max(1);
        // the output gradient through the fused ReLU's mask (none: `dy` as it is)
        let g_at = |i: usize| match relu_out {
            Some(y) if y[i] <= 0.0 => 0.0,
            _ => dy[i],
        };
        // per channel: sum of the (masked) output gradient, and of it times x_hat
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let r = ch * n..(ch + 1) * n;
                let (m, is) = (stats.mean[ch], stats.inv_std[ch]);
                let mut sg = 0f64;
                let mut sgx = 0f64;
                for (i, &xv) in r.clone().zip(&x[r]) {
                    let g = g_at(i) as f64;
                    sg += g;
                    sgx += g * ((xv - m) * is) as f64;
                }
                (sg, sgx)
            })
            .collect();
        dx.par_chunks_mut(n1).enumerate().for_each(|(ch, dxr)| {
            let r = ch * n..(ch + 1) * n;
            let (m, is) = (stats.mean[ch], stats.inv_std[ch]);
            let g = gamma.map_or(1.0, |g| g[ch]);
            let (sg, sgx) = sums[ch];
            let k = g * is;
            let (mg, mgx) = ((sg / n as f64) as f32, (sgx / n as f64) as f32);
            for ((d, &xv), i) in dxr.iter_mut().zip(&x[r.clone()]).zip(r) {
                let xhat = (xv - m) * is;
                *d += k * (g_at(i) - mg - xhat * mgx);
            }
        });
        if let Some((dg, db)) = daffine {
            for ch in 0..c {
                dg[ch] += sums[ch].1 as f32;
                db[ch] += sums[ch].0 as f32;
            }
        }
        Ok(())
    }

    fn add_relu_forward(&self, a: &Buf<Self>, b: &Buf<Self>) -> Result<Buf<Self>, Self::Err> {
        let mut y = self.try_alloc_len(a.len())?;
        y.par_chunks_mut(1 << 14)
            .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
            .for_each(|(yc, (ac, bc))| {
                for ((yv, &av), &bv) in yc.iter_mut().zip(ac).zip(bc) {
                    *yv = (av + bv).max(0.0);
                }
            });
        Ok(y)
    }

    fn relu_backward(
        &self,
        y: &Buf<Self>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
    ) -> Result<(), Self::Err> {
        dx.par_chunks_mut(1 << 14)
            .zip(y.par_chunks(1 << 14).zip(dy.par_chunks(1 << 14)))
            .for_each(|(dc, (yc, gc))| {
                for ((d, &yv), &gv) in dc.iter_mut().zip(yc).zip(gc) {
                    if yv > 0.0 {
                        *d += gv;
                    }
                }
            });
        Ok(())
    }

    fn max_pool_forward(&self, s: &PoolShape, x: &Buf<Self>) -> Result<Buf<Self>, Self::Err> {
        let mut y = self.try_alloc_len(s.out_len())?;
        let (ho, wo) = s.out_hw();
        let plane_in = s.b * s.h * s.w;
        y.par_chunks_mut(s.b * ho * wo)
            .enumerate()
            .for_each(|(c, yp)| {
                let xp = &x[c * plane_in..(c + 1) * plane_in];
                pool_walk(s, |o, window| {
                    yp[o] = window.map(|i| xp[i]).fold(f32::NEG_INFINITY, f32::max);
                });
            });
        Ok(y)
    }

    fn max_pool_backward(
        &self,
        s: &PoolShape,
        x: &Buf<Self>,
        y: &Buf<Self>,
        dy: &Buf<Self>,
        dx: &mut Buf<Self>,
    ) -> Result<(), Self::Err> {
        let (ho, wo) = s.out_hw();
        let plane_in = s.b * s.h * s.w;
        let plane_out = s.b * ho * wo;
        dx.par_chunks_mut(plane_in)
            .enumerate()
            .for_each(|(c, dxp)| {
                let xp = &x[c * plane_in..(c + 1) * plane_in];
                let (yp, gp) = (&y[c * plane_out..], &dy[c * plane_out..]);
                pool_walk(s, |o, window| {
                    for i in window {
                        if xp[i] == yp[o] {
                            dxp[i] += gp[o];
                            break;
                        }
                    }
                });
            });
        Ok(())
    }

    fn normalize_u8(
        &self,
        pixels: &[u8],
        n: usize,
        plane: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Buf<Self>, Self::Err> {
        let mut out = self.try_alloc_len(pixels.len())?;
        for c in 0..3 {
            // (x / 255 - m) / s for the 256 byte values: the same f32 expression as the CUDA kernel
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
        Ok(out)
    }

    fn start_timer(&self) -> Result<Stopper<Self>, Self::Err> {
        Ok(cpu_timer())
    }

    /// The heap's high-water mark since the previous sample (scratch buffers inside an op
    /// included).
    fn memory_in_use(&self) -> Option<u64> {
        Some(super::host_memory::take_high_water())
    }
}

/// Wall-clock time: the CPU kernels run synchronously.
fn cpu_timer() -> Stopper<Cpu> {
    let start = std::time::Instant::now();
    Box::new(move || {
        let ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(Box::new(move || ms))
    })
}

/// Calls `f(output position, the input positions of its window inside the image, row-major)`
/// for every output pixel of one channel's `(B, Ho, Wo)` plane.
fn pool_walk(s: &PoolShape, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
    let (ho, wo) = s.out_hw();
    let (h, w, k) = (s.h as isize, s.w as isize, s.k as isize);
    let mut o = 0;
    for bi in 0..s.b {
        for oh in 0..ho {
            let h0 = (oh * s.s) as isize - s.p as isize;
            for ow in 0..wo {
                let w0 = (ow * s.s) as isize - s.p as isize;
                let mut window = (h0.max(0)..(h0 + k).min(h)).flat_map(|ih| {
                    (w0.max(0)..(w0 + k).min(w))
                        .map(move |iw| (bi * s.h + ih as usize) * s.w + iw as usize)
                });
                f(o, &mut window);
                o += 1;
            }
        }
    }
}
