// Convolution primitives for 2D and 3D (2D is 3D with depth 1): fprop, dgrad, wgrad.
// Layout: NCDHW float32, weights [c_out, c_in, kd, kh, kw]; zero padding. Direct form:
// one thread per output element (fprop), per input element (dgrad, a gather, so no atomics)
// or per weight (wgrad); accumulation in float32. Outputs are overwritten.
// The direct kernels are the correctness baseline; the implicit-GEMM kernels at the end
// (shared-memory tiles) are timed against them by `bench kernels`.
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

// Implicit GEMM: each primitive is C[M, N] = A[M, K] * B[K, N] with A and B read through an
// operand struct (never materialised): fprop Y[c_out, n*out_sp] = W * im2col(X), dgrad
// dX[c_in, n*in_sp] = W^T * gather(dY), wgrad dW[c_out, c_in*kvol] = dY * im2col(X)^T.
// A 256-thread block computes a 64 x 64 tile of C, each thread a 4 x 4 register sub-tile,
// stepping K by 16 through shared memory. Each thread gathers B for one fixed column, so the
// column's decomposition is done once (`Ops::column`). Launch: grid (ceil(N / 64),
// ceil(M / 64)), 256 threads (src/device/cuda.rs). Sums run in K order per thread.
#define TILE_M 64
#define TILE_N 64
#define TILE_K 16

template <class Ops>
__device__ __forceinline__ void tiled_gemm(const Ops& ops, int M, long long N, long long K) {
    __shared__ float a_tile[TILE_K][TILE_M];
    __shared__ float b_tile[TILE_K][TILE_N];
    const int m0 = blockIdx.y * TILE_M;
    const long long n0 = (long long)blockIdx.x * TILE_N;
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int col = tid % TILE_N;
    const typename Ops::Column column = ops.column(n0 + col, n0 + col < N);

    float acc[4][4] = {};
    for (long long k0 = 0; k0 < K; k0 += TILE_K) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int kk = tid % TILE_K, mm = tid / TILE_K + 16 * j;
            int m = m0 + mm;
            long long k = k0 + kk;
            a_tile[kk][mm] = (m < M && k < K) ? ops.a(m, k) : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int kk = tid / TILE_N + 4 * j;
            long long k = k0 + kk;
            b_tile[kk][col] = (column.valid && k < K) ? ops.b(column, k) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                a[i] = a_tile[kk][ty * 4 + i];
                b[i] = b_tile[kk][tx * 4 + i];
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
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            long long n = n0 + tx * 4 + j;
            if (n < N) ops.store(m, n, acc[i][j]);
        }
    }
}

// A spatial position (d, h, w) of a volume of size (sd, sh, sw) from its flat index.
struct Position {
    int d, h, w;
};
__device__ __forceinline__ Position position(long long flat, int sh, int sw) {
    return {(int)(flat / ((long long)sw * sh)), (int)((flat / sw) % sh), (int)(flat % sw)};
}

// Kernel tap (kd, kh, kw) of a flat index into k_d * k_h * k_w.
__device__ __forceinline__ Position tap(int r, const ConvParams& g) {
    return {r / (g.k_w * g.k_h), (r / g.k_w) % g.k_h, r % g.k_w};
}

// The B column a thread gathers: an image or channel index and a position or kernel tap.
struct GemmColumn {
    bool valid;
    long long index;
    Position pos;
};

// Offset of channel m of column n = (image, position) in an N, C, spatial tensor.
__device__ __forceinline__ long long column_offset(long long n, long long spatial, int channels, int m) {
    return (n / spatial * channels + m) * spatial + n % spatial;
}

// What every tiled primitive needs of the geometry.
struct ConvShape {
    ConvParams g;
    long long in_sp, out_sp;
    int kvol;
    __device__ explicit ConvShape(const ConvParams& p)
        : g(p),
          in_sp((long long)p.in_d * p.in_h * p.in_w),
          out_sp((long long)p.out_d * p.out_h * p.out_w),
          kvol(p.k_d * p.k_h * p.k_w) {}
    // The input value that output position o reads with tap t (0 in the zero padding).
    __device__ float input_at(const float* plane, Position o, Position t) const {
        int id = o.d * g.s_d + t.d - g.p_d, ih = o.h * g.s_h + t.h - g.p_h, iw = o.w * g.s_w + t.w - g.p_w;
        bool inside = id >= 0 && id < g.in_d && ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
        return inside ? plane[((long long)id * g.in_h + ih) * g.in_w + iw] : 0.0f;
    }
};

// fprop: A = W [c_out, c_in*kvol], B = im2col(X), one column per (image, output position).
struct FpropOps : ConvShape {
    const float* x;
    const float* w;
    float* y;
    __device__ FpropOps(const ConvParams& p, const float* x_, const float* w_, float* y_)
        : ConvShape(p), x(x_), w(w_), y(y_) {}
    using Column = GemmColumn;
    __device__ Column column(long long n, bool valid) const {
        if (!valid) return {false, 0, {0, 0, 0}};
        return {true, n / out_sp, position(n % out_sp, g.out_h, g.out_w)};
    }
    __device__ float a(int m, long long k) const { return w[(long long)m * g.c_in * kvol + k]; }
    __device__ float b(const Column& c, long long k) const {
        const float* plane = x + (c.index * g.c_in + k / kvol) * in_sp;
        return input_at(plane, c.pos, tap(k % kvol, g));
    }
    __device__ void store(int m, long long n, float v) const {
        y[column_offset(n, out_sp, g.c_out, m)] = v;
    }
};

// dgrad: A = W^T [c_in, c_out*kvol], B = the dY values each input position receives.
struct DgradOps : ConvShape {
    const float* dy;
    const float* w;
    float* dx;
    __device__ DgradOps(const ConvParams& p, const float* dy_, const float* w_, float* dx_)
        : ConvShape(p), dy(dy_), w(w_), dx(dx_) {}
    using Column = GemmColumn;
    __device__ Column column(long long n, bool valid) const {
        if (!valid) return {false, 0, {0, 0, 0}};
        return {true, n / in_sp, position(n % in_sp, g.in_h, g.in_w)};
    }
    // A[ci, (co, tap)] = w[co, ci, tap].
    __device__ float a(int m, long long k) const {
        return w[(k / kvol * g.c_in + m) * kvol + k % kvol];
    }
    __device__ float b(const Column& c, long long k) const {
        Position t = tap(k % kvol, g);
        int od = out_index(c.pos.d, t.d, g.s_d, g.p_d, g.out_d);
        int oh = out_index(c.pos.h, t.h, g.s_h, g.p_h, g.out_h);
        int ow = out_index(c.pos.w, t.w, g.s_w, g.p_w, g.out_w);
        if (od < 0 || oh < 0 || ow < 0) return 0.0f;
        return dy[(c.index * g.c_out + k / kvol) * out_sp + ((long long)od * g.out_h + oh) * g.out_w + ow];
    }
    __device__ void store(int m, long long n, float v) const {
        dx[column_offset(n, in_sp, g.c_in, m)] = v;
    }
};

// wgrad: A = dY [c_out, n*out_sp], B = im2col(X)^T, one column per (c_in, tap).
struct WgradOps : ConvShape {
    const float* x;
    const float* dy;
    float* dw;
    __device__ WgradOps(const ConvParams& p, const float* x_, const float* dy_, float* dw_)
        : ConvShape(p), x(x_), dy(dy_), dw(dw_) {}
    using Column = GemmColumn;
    __device__ Column column(long long n, bool valid) const {
        if (!valid) return {false, 0, {0, 0, 0}};
        return {true, n / kvol, tap(n % kvol, g)};
    }
    // A[co, (img, sp)] = dy[img, co, sp].
    __device__ float a(int m, long long k) const {
        return dy[column_offset(k, out_sp, g.c_out, m)];
    }
    __device__ float b(const Column& c, long long k) const {
        const float* plane = x + (k / out_sp * g.c_in + c.index) * in_sp;
        return input_at(plane, position(k % out_sp, g.out_h, g.out_w), c.pos);
    }
    __device__ void store(int m, long long n, float v) const { dw[(long long)m * g.c_in * kvol + n] = v; }
};

extern "C" __global__ void __launch_bounds__(256)
conv_fprop_tiled_f32(ConvParams g, const float* x, const float* w, float* y) {
    FpropOps ops(g, x, w, y);
    tiled_gemm(ops, g.c_out, g.n * ops.out_sp, (long long)g.c_in * ops.kvol);
}

extern "C" __global__ void __launch_bounds__(256)
conv_dgrad_tiled_f32(ConvParams g, const float* dy, const float* w, float* dx) {
    DgradOps ops(g, dy, w, dx);
    tiled_gemm(ops, g.c_in, g.n * ops.in_sp, (long long)g.c_out * ops.kvol);
}

extern "C" __global__ void __launch_bounds__(256)
conv_wgrad_tiled_f32(ConvParams g, const float* x, const float* dy, float* dw) {
    WgradOps ops(g, x, dy, dw);
    tiled_gemm(ops, g.c_out, (long long)g.c_in * ops.kvol, g.n * ops.out_sp);
}
