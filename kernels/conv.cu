// Convolution primitives for 2D and 3D (2D is 3D with depth 1): fprop, dgrad, wgrad.
// Layout: NCDHW float32, weights [c_out, c_in, kd, kh, kw]; zero padding. Direct form:
// one thread per output element (fprop), per input element (dgrad, a gather, so no atomics)
// or per weight (wgrad); accumulation in float32. Outputs are overwritten.
// The direct kernels are the correctness baseline; conv_fprop_tiled_f32 at the end is the
// first implicit-GEMM kernel (shared-memory tiles), timed against them by `bench kernels`.
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

// Implicit-GEMM forward: Y[c_out, n*out_sp] = W[c_out, K] * im2col(X)[K, n*out_sp] with
// K = c_in * kd * kh * kw, the im2col columns gathered on the fly into shared memory (never
// stored). A 256-thread block computes a 64 x 64 output tile, each thread a 4 x 4 register
// sub-tile, stepping K by 16. Launch: grid (ceil(n*out_sp / 64), ceil(c_out / 64)), 256
// threads. Sums run in K order per tile step, so results differ from the direct kernel
// only by float rounding.
#define TILE_M 64
#define TILE_N 64
#define TILE_K 16
extern "C" __global__ void __launch_bounds__(256)
conv_fprop_tiled_f32(ConvParams g, const float* x, const float* w, float* y) {
    __shared__ float w_tile[TILE_K][TILE_M];
    __shared__ float x_tile[TILE_K][TILE_N];
    const int kvol = g.k_d * g.k_h * g.k_w;
    const int K = g.c_in * kvol;
    const long long out_sp = (long long)g.out_d * g.out_h * g.out_w;
    const long long in_sp = (long long)g.in_d * g.in_h * g.in_w;
    const long long N = (long long)g.n * out_sp;
    const int m0 = blockIdx.y * TILE_M;
    const long long n0 = (long long)blockIdx.x * TILE_N;
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;

    // The im2col column this thread gathers: fixed for the whole K loop.
    const int col = tid % TILE_N;
    const long long ncol = n0 + col;
    const bool col_ok = ncol < N;
    int od = 0, oh = 0, ow = 0;
    const float* x_img = x;
    if (col_ok) {
        long long img = ncol / out_sp, r = ncol % out_sp;
        ow = r % g.out_w;
        oh = (r / g.out_w) % g.out_h;
        od = r / ((long long)g.out_w * g.out_h);
        x_img = x + img * g.c_in * in_sp;
    }
    const int id0 = od * g.s_d - g.p_d, ih0 = oh * g.s_h - g.p_h, iw0 = ow * g.s_w - g.p_w;

    float acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += TILE_K) {
        // Weights: 16 consecutive k of one row per 16 threads (coalesced 64-byte runs).
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int kk = tid % TILE_K, mm = tid / TILE_K + 16 * j;
            int m = m0 + mm, k = k0 + kk;
            w_tile[kk][mm] = (m < g.c_out && k < K) ? w[(long long)m * K + k] : 0.0f;
        }
        // Inputs: consecutive threads take consecutive output positions (mostly coalesced).
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int kk = tid / TILE_N + 4 * j;
            int k = k0 + kk;
            float v = 0.0f;
            if (col_ok && k < K) {
                int ci = k / kvol, r = k % kvol;
                int kw = r % g.k_w, kh = (r / g.k_w) % g.k_h, kd = r / (g.k_w * g.k_h);
                int id = id0 + kd, ih = ih0 + kh, iw = iw0 + kw;
                if (id >= 0 && id < g.in_d && ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w)
                    v = x_img[ci * in_sp + ((long long)id * g.in_h + ih) * g.in_w + iw];
            }
            x_tile[kk][col] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                a[i] = w_tile[kk][ty * 4 + i];
                b[i] = x_tile[kk][tx * 4 + i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty * 4 + i;
        if (m >= g.c_out) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            long long n = n0 + tx * 4 + j;
            if (n >= N) continue;
            long long img = n / out_sp, sp = n % out_sp;
            y[(img * g.c_out + m) * out_sp + sp] = acc[i][j];
        }
    }
}
