// Convolution primitives for 2D and 3D (2D is 3D with depth 1): fprop, dgrad, wgrad.
// Layout: NCDHW float32, weights [c_out, c_in, kd, kh, kw]; zero padding. Direct form:
// one thread per output element (fprop), per input element (dgrad, a gather, so no atomics)
// or per weight (wgrad); accumulation in float32. Outputs are overwritten.
// This is the correctness baseline for the implicit-GEMM kernels still to come.
// Launched by src/device/cuda.rs; the CPU references are src/ops/conv/cpu.rs.

struct ConvParams {
    int n, c_in, c_out;
    int in_d, in_h, in_w;
    int k_d, k_h, k_w;
    int s_d, s_h, s_w;
    int p_d, p_h, p_w;
    int out_d, out_h, out_w;
};
static_assert(sizeof(ConvParams) == 72, "ConvParams must match the Rust struct");

extern "C" __global__ void conv_fprop_f32(ConvParams g, const float* x, const float* w, float* y) {
    long long total = (long long)g.n * g.c_out * g.out_d * g.out_h * g.out_w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, od = (i / ((long long)g.out_w * g.out_h)) % g.out_d;
        long long nc = i / ((long long)g.out_w * g.out_h * g.out_d);
        int co = nc % g.c_out, n = nc / g.c_out;
        float acc = 0.0f;
        for (int ci = 0; ci < g.c_in; ++ci) {
            const float* xp = x + ((long long)n * g.c_in + ci) * g.in_d * g.in_h * g.in_w;
            const float* wp = w + ((long long)co * g.c_in + ci) * g.k_d * g.k_h * g.k_w;
            for (int kd = 0; kd < g.k_d; ++kd) {
                int id = od * g.s_d + kd - g.p_d;
                if (id < 0 || id >= g.in_d) continue;
                for (int kh = 0; kh < g.k_h; ++kh) {
                    int ih = oh * g.s_h + kh - g.p_h;
                    if (ih < 0 || ih >= g.in_h) continue;
                    for (int kw = 0; kw < g.k_w; ++kw) {
                        int iw = ow * g.s_w + kw - g.p_w;
                        if (iw < 0 || iw >= g.in_w) continue;
                        acc += xp[((long long)id * g.in_h + ih) * g.in_w + iw] * wp[(kd * g.k_h + kh) * g.k_w + kw];
                    }
                }
            }
        }
        y[i] = acc;
    }
}

// Output index o on an axis that input index i reads with tap k, or -1.
__device__ __forceinline__ int out_index(int i, int k, int s, int p, int out) {
    int t = i + p - k;
    if (t < 0 || t % s != 0) return -1;
    t /= s;
    return t < out ? t : -1;
}

extern "C" __global__ void conv_dgrad_f32(ConvParams g, const float* dy, const float* w, float* dx) {
    long long total = (long long)g.n * g.c_in * g.in_d * g.in_h * g.in_w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int iw = i % g.in_w, ih = (i / g.in_w) % g.in_h, id = (i / ((long long)g.in_w * g.in_h)) % g.in_d;
        long long nc = i / ((long long)g.in_w * g.in_h * g.in_d);
        int ci = nc % g.c_in, n = nc / g.c_in;
        float acc = 0.0f;
        for (int co = 0; co < g.c_out; ++co) {
            const float* dyp = dy + ((long long)n * g.c_out + co) * g.out_d * g.out_h * g.out_w;
            const float* wp = w + ((long long)co * g.c_in + ci) * g.k_d * g.k_h * g.k_w;
            for (int kd = 0; kd < g.k_d; ++kd) {
                int od = out_index(id, kd, g.s_d, g.p_d, g.out_d);
                if (od < 0) continue;
                for (int kh = 0; kh < g.k_h; ++kh) {
                    int oh = out_index(ih, kh, g.s_h, g.p_h, g.out_h);
                    if (oh < 0) continue;
                    for (int kw = 0; kw < g.k_w; ++kw) {
                        int ow = out_index(iw, kw, g.s_w, g.p_w, g.out_w);
                        if (ow < 0) continue;
                        acc += dyp[((long long)od * g.out_h + oh) * g.out_w + ow] * wp[(kd * g.k_h + kh) * g.k_w + kw];
                    }
                }
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ void conv_wgrad_f32(ConvParams g, const float* x, const float* dy, float* dw) {
    long long total = (long long)g.c_out * g.c_in * g.k_d * g.k_h * g.k_w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int kw = i % g.k_w, kh = (i / g.k_w) % g.k_h, kd = (i / ((long long)g.k_w * g.k_h)) % g.k_d;
        long long cc = i / ((long long)g.k_w * g.k_h * g.k_d);
        int ci = cc % g.c_in, co = cc / g.c_in;
        float acc = 0.0f;
        for (int n = 0; n < g.n; ++n) {
            const float* xp = x + ((long long)n * g.c_in + ci) * g.in_d * g.in_h * g.in_w;
            const float* dyp = dy + ((long long)n * g.c_out + co) * g.out_d * g.out_h * g.out_w;
            for (int od = 0; od < g.out_d; ++od) {
                int id = od * g.s_d + kd - g.p_d;
                if (id < 0 || id >= g.in_d) continue;
                for (int oh = 0; oh < g.out_h; ++oh) {
                    int ih = oh * g.s_h + kh - g.p_h;
                    if (ih < 0 || ih >= g.in_h) continue;
                    for (int ow = 0; ow < g.out_w; ++ow) {
                        int iw = ow * g.s_w + kw - g.p_w;
                        if (iw < 0 || iw >= g.in_w) continue;
                        acc += xp[((long long)id * g.in_h + ih) * g.in_w + iw] * dyp[((long long)od * g.out_h + oh) * g.out_w + ow];
                    }
                }
            }
        }
        dw[i] = acc;
    }
}
