// Convolution primitives for 2D and 3D (2D is 3D with depth 1): fprop, dgrad, wgrad.
// Layout: NCDHW float32, weights [c_out, c_in, kd, kh, kw]; zero padding; accumulation in
// float32; outputs are overwritten. Each primitive is one implicit GEMM (operand structs
// below) run two ways: direct (one thread per result, the correctness baseline) and tiled
// (shared-memory tiles), timed against each other by `bench kernels`.
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

// Output index o on an axis that input index i reads with tap k, or -1.
__device__ __forceinline__ int out_index(int i, int k, int s, int p, int out) {
    int t = i + p - k;
    if (t < 0 || t % s != 0) return -1;
    t /= s;
    return t < out ? t : -1;
}

// Implicit GEMM: each primitive is C[M, N] = A[M, K] * B[K, N] with A and B read through
// an operand struct (never materialised; M, N, K are its rows, columns and depth):
// fprop Y[c_out, n*out_sp] = W * im2col(X), dgrad dX[c_in, n*in_sp] = W^T * gather(dY),
// wgrad dW[c_out, c_in*kvol] = dY * im2col(X)^T.
// Tiled: a 256-thread block computes a 64 x 64 tile of C, each thread a 4 x 4 register
// sub-tile, stepping K by 16 through shared memory. Each thread gathers B for one fixed
// column, so the column's decomposition is done once (`Ops::column`). Launch: grid
// (ceil(N / 64), ceil(M / 64)), 256 threads (src/device/cuda.rs). Sums run in K order.
#define TILE_M 64
#define TILE_N 64
#define TILE_K 16

template <class Ops>
__device__ __forceinline__ void tiled_gemm(const Ops& ops) {
    const int M = ops.rows();
    const long long N = ops.columns(), K = ops.depth();
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

// What every primitive needs of the geometry.
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
    __device__ int rows() const { return g.c_out; }
    __device__ long long columns() const { return g.n * out_sp; }
    __device__ long long depth() const { return (long long)g.c_in * kvol; }
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
    __device__ int rows() const { return g.c_in; }
    __device__ long long columns() const { return g.n * in_sp; }
    __device__ long long depth() const { return (long long)g.c_out * kvol; }
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
    __device__ int rows() const { return g.c_out; }
    __device__ long long columns() const { return (long long)g.c_in * kvol; }
    __device__ long long depth() const { return g.n * out_sp; }
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

// Direct: one thread per result (grid-stride, any 1D launch), summing over K in order.
template <class Ops>
__device__ __forceinline__ void direct_gemm(const Ops& ops) {
    const int M = ops.rows();
    const long long N = ops.columns(), K = ops.depth();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < M * N; i += (long long)gridDim.x * blockDim.x) {
        const long long n = i % N;
        const int m = i / N;
        const typename Ops::Column column = ops.column(n, true);
        float acc = 0.0f;
        for (long long k = 0; k < K; ++k) acc += ops.a(m, k) * ops.b(column, k);
        ops.store(m, n, acc);
    }
}

extern "C" __global__ void conv_fprop_f32(ConvParams g, const float* x, const float* w, float* y) {
    direct_gemm(FpropOps(g, x, w, y));
}

extern "C" __global__ void conv_dgrad_f32(ConvParams g, const float* dy, const float* w, float* dx) {
    direct_gemm(DgradOps(g, dy, w, dx));
}

extern "C" __global__ void conv_wgrad_f32(ConvParams g, const float* x, const float* dy, float* dw) {
    direct_gemm(WgradOps(g, x, dy, dw));
}

extern "C" __global__ void __launch_bounds__(256)
conv_fprop_tiled_f32(ConvParams g, const float* x, const float* w, float* y) {
    tiled_gemm(FpropOps(g, x, w, y));
}

extern "C" __global__ void __launch_bounds__(256)
conv_dgrad_tiled_f32(ConvParams g, const float* dy, const float* w, float* dx) {
    tiled_gemm(DgradOps(g, dy, w, dx));
}

extern "C" __global__ void __launch_bounds__(256)
conv_wgrad_tiled_f32(ConvParams g, const float* x, const float* dy, float* dw) {
    tiled_gemm(WgradOps(g, x, dy, dw));
}
