// barlow's own CUDA kernels, compiled at run time with NVRTC (see kernels.rs). Channel-major
// layouts: a feature map is `(C, B*H*W)`, so BatchNorm works on contiguous rows of length n.
// Every backward kernel ADDS into its gradient buffers.

extern "C" __device__ float block_sum(float v, float *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x >> 5)) ? shared[lane] : 0.0f;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
    return v;
}

// Shifted sums per row (shift = the row's first value, which keeps E[x^2] - E[x]^2 exact
// enough): grid (splits, c), acc[2c] += (sum(x - k), sum((x - k)^2)) in double.
extern "C" __global__ void bn_stats(const float *x, long long n, double *acc) {
    __shared__ float sh[32];
    const float *row = x + (long long)blockIdx.y * n;
    float k = row[0], s = 0.0f, q = 0.0f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float d = row[i] - k;
        s += d;
        q += d * d;
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        atomicAdd(&acc[2 * blockIdx.y], (double)s);
        atomicAdd(&acc[2 * blockIdx.y + 1], (double)q);
    }
}

// Per channel: mean, biased variance, 1/sqrt(var + eps).
extern "C" __global__ void bn_finalize(const double *acc, const float *x, long long n, int c,
                                       float eps, float *mean, float *var, float *inv_std) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double m = acc[2 * ch] / (double)n;
    double v = acc[2 * ch + 1] / (double)n - m * m;
    if (v < 0.0) v = 0.0;
    mean[ch] = (float)((double)x[(long long)ch * n] + m);
    var[ch] = (float)v;
    inv_std[ch] = (float)(1.0 / sqrt(v + (double)eps));
}

// y = relu?(x * scale + shift), scale = gamma * inv_std, shift = beta - mean * scale;
// gamma/beta may be null (1 and 0). Grid (splits, c).
extern "C" __global__ void bn_apply(const float *x, const float *gamma, const float *beta,
                                    const float *mean, const float *inv_std, float *y,
                                    long long n, int relu) {
    int ch = blockIdx.y;
    float g = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
    float scale = g * inv_std[ch], shift = b - mean[ch] * scale;
    const float *xr = x + (long long)ch * n;
    float *yr = y + (long long)ch * n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = xr[i] * scale + shift;
        yr[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// Backward sums per row: acc[2c] += (sum(g), sum(g * x_hat)), g = dy masked by y > 0 under
// relu. Grid (splits, c).
extern "C" __global__ void bn_backward_sums(const float *x, const float *y, const float *dy,
                                            const float *mean, const float *inv_std,
                                            long long n, int relu, double *acc) {
    __shared__ float sh[32];
    int ch = blockIdx.y;
    float m = mean[ch], is = inv_std[ch], s = 0.0f, sx = 0.0f;
    long long off = (long long)ch * n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float g = (relu && y[off + i] <= 0.0f) ? 0.0f : dy[off + i];
        s += g;
        sx += g * (x[off + i] - m) * is;
    }
    s = block_sum(s, sh);
    sx = block_sum(sx, sh);
    if (threadIdx.x == 0) {
        atomicAdd(&acc[2 * ch], (double)s);
        atomicAdd(&acc[2 * ch + 1], (double)sx);
    }
}

// dx += gamma * inv_std * (g - mean(g) - x_hat * mean(g * x_hat)). Grid (splits, c).
extern "C" __global__ void bn_backward_dx(const float *x, const float *y, const float *dy,
                                          const float *gamma, const float *mean,
                                          const float *inv_std, const double *acc, long long n,
                                          int relu, float *dx) {
    int ch = blockIdx.y;
    float m = mean[ch], is = inv_std[ch], k = (gamma ? gamma[ch] : 1.0f) * is;
    float mg = (float)(acc[2 * ch] / (double)n), mgx = (float)(acc[2 * ch + 1] / (double)n);
    long long off = (long long)ch * n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float g = (relu && y[off + i] <= 0.0f) ? 0.0f : dy[off + i];
        float xhat = (x[off + i] - m) * is;
        dx[off + i] += k * (g - mg - xhat * mgx);
    }
}

// dgamma += sum(g * x_hat), dbeta += sum(g).
extern "C" __global__ void bn_backward_affine(const double *acc, int c, float *dgamma,
                                              float *dbeta) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    dgamma[ch] += (float)acc[2 * ch + 1];
    dbeta[ch] += (float)acc[2 * ch];
}

extern "C" __global__ void add_relu(const float *a, const float *b, float *y, long long len) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = fmaxf(a[i] + b[i], 0.0f);
}

extern "C" __global__ void relu_backward(const float *y, const float *dy, float *dx,
                                         long long len) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x)
        if (y[i] > 0.0f) dx[i] += dy[i];
}

// Max pool over channel-major maps (`planes` = C * B maps of h x w): one thread per output;
// -inf padding.
extern "C" __global__ void max_pool_forward(const float *x, float *y, int planes, int h, int w,
                                            int ho, int wo, int k, int s, int p) {
    long long total = (long long)planes * ho * wo;
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (long long)gridDim.x * blockDim.x) {
        int ow = o % wo, oh = (o / wo) % ho;
        long long plane = o / ((long long)ho * wo);
        const float *xp = x + plane * h * w;
        float best = __int_as_float(0xff800000); // -inf
        for (int kh = 0; kh < k; kh++) {
            int ih = oh * s + kh - p;
            if (ih < 0 || ih >= h) continue;
            for (int kw = 0; kw < k; kw++) {
                int iw = ow * s + kw - p;
                if (iw < 0 || iw >= w) continue;
                best = fmaxf(best, xp[ih * w + iw]);
            }
        }
        y[o] = best;
    }
}

// The gradient of each output goes to the first input of its window equal to it.
extern "C" __global__ void max_pool_backward(const float *x, const float *y, const float *dy,
                                             float *dx, int planes, int h, int w, int ho,
                                             int wo, int k, int s, int p) {
    long long total = (long long)planes * ho * wo;
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (long long)gridDim.x * blockDim.x) {
        int ow = o % wo, oh = (o / wo) % ho;
        long long plane = o / ((long long)ho * wo);
        const float *xp = x + plane * h * w;
        float *dxp = dx + plane * h * w;
        bool done = false;
        for (int kh = 0; kh < k && !done; kh++) {
            int ih = oh * s + kh - p;
            if (ih < 0 || ih >= h) continue;
            for (int kw = 0; kw < k; kw++) {
                int iw = ow * s + kw - p;
                if (iw < 0 || iw >= w) continue;
                if (xp[ih * w + iw] == y[o]) {
                    atomicAdd(&dxp[ih * w + iw], dy[o]);
                    done = true;
                    break;
                }
            }
        }
    }
}

// u8 NCHW (3 channels) -> channel-major f32, (x / 255 - mean[c]) / std[c] in IEEE f32 (the CPU's
// expression). One thread per output element.
extern "C" __global__ void normalize_u8(const unsigned char *px, float *out, long long n,
                                        long long plane, float m0, float m1, float m2, float s0,
                                        float s1, float s2) {
    long long total = 3 * n * plane;
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (long long)gridDim.x * blockDim.x) {
        long long p = o % plane, ci = o / plane; // ci = c * n + i
        int c = (int)(ci / n);
        long long i = ci % n;
        float m = c == 0 ? m0 : (c == 1 ? m1 : m2), s = c == 0 ? s0 : (c == 1 ? s1 : s2);
        out[o] = ((float)px[(i * 3 + c) * plane + p] / 255.0f - m) / s;
    }
}
