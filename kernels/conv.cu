// Convolution primitives for 2D and 3D (2D is 3D with depth 1): fprop, dgrad, wgrad.
// Layout: NCDHW float32, weights [c_out, c_in, kd, kh, kw]; padding with zeros, or with the
// input reflected or replicated (`pad_mode`, see "Padding" below); accumulation in float32;
// outputs are overwritten. Each primitive is one implicit GEMM (operand structs below) run
// two ways: direct (one thread per result, the correctness baseline) and tiled
// (shared-memory tiles, K split across blocks where outputs are few), timed against each
// other by `bench kernels`.
// Launched by src/device/cuda/conv.rs; the CPU references are src/ops/conv/cpu.rs.

#include <type_traits>

#include "pad.cuh"

// Division of n in 0 .. 2^31 by d, fixed for the launch, as a multiply-high, an add and a
// shift (the host works out magic and shift: src/device/conv_params.rs). A division by a
// run-time value costs some twenty instructions; this costs three, with magic and shift
// read from the kernel's parameter bank.
struct Divisor {
    int d;
    unsigned magic, shift;
    __device__ int div(int n) const { return (int)((__umulhi((unsigned)n, magic) + (unsigned)n) >> shift); }
    __device__ int mod(int n) const { return n - div(n) * d; }
};

struct ConvParams {
    int n, c_in, c_out;
    int in_d, in_h, in_w;
    int k_d, k_h, k_w;
    int s_d, s_h, s_w;
    int p_d, p_h, p_w;
    int out_d, out_h, out_w;
    int pad_mode;  // PAD_*
    // Divisors of the index arithmetic: channels, the kernel's taps (all, per plane, per
    // row) and rows, the output's positions (all, per plane, per row) and rows.
    Divisor by_c_in, by_c_out;
    Divisor by_kvol, by_k_hw, by_k_w, by_k_h;
    Divisor by_out_sp, by_out_hw, by_out_w, by_out_h;
};
static_assert(sizeof(ConvParams) == 196, "ConvParams must match the Rust struct");

// Padding. A conv that pads with reflection or replication (the ResNet generators) reads its
// unpadded input: fprop and wgrad gather each padded position from the input element it
// copies (`pad_source`). dgrad's result, the input's gradient, sums on each input element
// the gradients of every padded position that copies it: near a border up to two per axis
// with reflection (the position and its mirror image), a run with replication (the edge and
// its copies). A gather cannot add, so dgrad reads dY "folded" (`conv_fold_dy_f32`, run
// first): per axis, dY's positions, then one extra position per (border input, tap) pair
// that receives from several, holding their sum. dgrad then gathers one folded element per
// input position and tap, and computes the unpadded input's gradient directly, on its
// columns rather than the padded input's. The folding assumes stride 1, a kernel of 2p + 1
// taps and inputs longer than 2p + 1 on every padded axis (the ResNet blocks, stems and
// heads); the backend pads explicitly for the rest (src/device/cuda/conv.rs).
//
// Extra folded positions on an axis padded by p: reflection 2 p^2 (p^2 per side, (input
// 1 + row, tap) for rows and taps below p), replication 2 p (p taps at each edge).
__device__ __forceinline__ int fold_extra(int p, int mode) {
    if (p == 0) return 0;
    return mode == PAD_REFLECT ? 2 * p * p : mode == PAD_REPLICATE ? 2 * p : 0;
}

// The folded dY index input index i receives from with tap k on an axis of n inputs and
// `out` = n outputs, padded by p (stride 1, 2p + 1 taps), or -1.
__device__ __forceinline__ int fold_index(int i, int k, int p, int n, int out, int mode) {
    if (p > 0 && mode == PAD_REFLECT) {
        // Low side: input i in [1, p] is also padded position p - i; with tap k <= p - i that
        // mirror reaches output p - i - k >= 0. High side likewise, j = n - 1 - i.
        if (i >= 1 && i <= p && k <= p - i) return out + (i - 1) * p + k;
        const int j = n - 1 - i;
        if (j >= 1 && j <= p && k >= p + j) return out + p * p + (j - 1) * p + (2 * p - k);
    } else if (p > 0 && mode == PAD_REPLICATE) {
        // Input 0 is padded positions 0..p, reaching outputs 0..p - k; input n - 1 likewise.
        if (i == 0 && k < p) return out + k;
        if (i == n - 1 && k > p) return out + p + (2 * p - k);
    }
    const int o = i + p - k;
    return o >= 0 && o < out ? o : -1;
}

// dY indices lo, lo + step, ..., hi: what folded index a sums on one axis (`fold_index`'s
// inverse).
struct Run {
    int lo, hi, step;
};
__device__ __forceinline__ Run fold_sources(int a, int p, int n, int out, int mode) {
    if (a < out) return {a, a, 1};
    int c = a - out;
    if (mode == PAD_REFLECT) {
        const bool high = c >= p * p;
        c %= p * p;
        const int i = c / p + 1, k = c % p;  // low: input i, tap k; high: input n - 1 - i, tap 2p - k
        // The output through the input's own padded position, and through its mirror image;
        // pairs no (input, tap) reads (mirror outside) hold the first alone.
        if (!high) {
            const int own = i + p - k, mirror = p - k - i;
            return mirror >= 0 ? Run{mirror, own, own - mirror} : Run{own, own, 1};
        }
        const int own = n - 1 - i - p + k, mirror = n - 1 + i - p + k;
        return mirror < out ? Run{own, mirror, mirror - own} : Run{own, own, 1};
    }
    const int k = c % p;  // replication: tap k at input 0, tap 2p - k at input n - 1
    return c < p ? Run{0, p - k, 1} : Run{n - 1 - p + k, n - 1, 1};
}

// Folded dY (see "Padding"): folded[img, co, a_d, a_h, a_w] = the sum over the product of
// each axis's run of dy[img, co, d, h, w]; extents out + fold_extra per axis. Planes (img, co)
// along the grid's y, a plane's positions along x (any grid: both loop), so that the index
// arithmetic within a plane is 32-bit.
extern "C" __global__ void conv_fold_dy_f32(ConvParams g, const float* dy, float* folded) {
    const int fd = g.out_d + fold_extra(g.p_d, g.pad_mode), fh = g.out_h + fold_extra(g.p_h, g.pad_mode),
              fw = g.out_w + fold_extra(g.p_w, g.pad_mode);
    const int out_sp = g.out_d * g.out_h * g.out_w, folded_sp = fd * fh * fw;
    for (int p = blockIdx.y; p < g.n * g.c_out; p += gridDim.y) {
        const float* plane = dy + (long long)p * out_sp;
        float* out = folded + (long long)p * folded_sp;
        for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < folded_sp; f += gridDim.x * blockDim.x) {
            const Run rd = fold_sources(f / (fw * fh), g.p_d, g.in_d, g.out_d, g.pad_mode),
                      rh = fold_sources(f / fw % fh, g.p_h, g.in_h, g.out_h, g.pad_mode),
                      rw = fold_sources(f % fw, g.p_w, g.in_w, g.out_w, g.pad_mode);
            float sum = 0.0f;
            for (int d = rd.lo; d <= rd.hi; d += rd.step)
                for (int h = rh.lo; h <= rh.hi; h += rh.step)
                    for (int w = rw.lo; w <= rw.hi; w += rw.step) sum += plane[(d * g.out_h + h) * g.out_w + w];
            out[f] = sum;
        }
    }
}

// Output index o on an axis that input index i reads with tap k, or -1. A division costs
// some twenty instructions, so stride 1 (every residual block) skips it and stride 2 (every
// downsampling and upsampling layer of the reference networks) shifts.
__device__ __forceinline__ int out_index(int i, int k, int s, int p, int out) {
    int t = i + p - k;
    if (t < 0) return -1;
    if (s == 2) {
        if (t & 1) return -1;
        t >>= 1;
    } else if (s != 1) {
        if (t % s != 0) return -1;
        t /= s;
    }
    return t < out ? t : -1;
}

// Implicit GEMM: each primitive is C[M, N] = A[M, K] * B[K, N] with A and B read through
// an operand struct (B never materialised; fprop's and dgrad's A is the weights rewritten
// K-major, `conv_weight_panel_f32`; M, N, K are its rows, columns and depth):
// fprop Y[c_out, n*out_sp] = W * im2col(X), dgrad dX[c_in, n*in_sp] = W^T * gather(dY),
// wgrad dW[c_out, c_in*kvol] = dY * im2col(X)^T. Indices and element offsets are 32-bit
// (the backend refuses tensors of 2^31 elements or more): 64-bit arithmetic costs two
// instructions for one.
//
// K order: fprop and dgrad run K tap-major, k = tap * C + channel (C = c_in, resp. c_out);
// wgrad runs it image-major, k = image * out_sp + output position. A `Slice` is what a run of
// TILE_K consecutive k from k0 share: one tap and consecutive channels when C is a multiple
// of TILE_K; the rest of one output row and perhaps the start of the next when out_w is at
// least TILE_K (`uniform`). Then each thread decomposes its first k once and counts on from
// tile to tile (`next`, no division); otherwise (and in the direct kernels) every k gets its
// own slice.
//
// Operand addressing, the same for every primitive: A is affine in its row and its place in
// a slice, A(m, k0 + kk) = a_origin()[m * a_row_stride() + kk * a_k_stride() + a_offset(slice, k0, kk)]
// (the panels' offset is k0 * M, needing no slice; wgrad's comes from the slice and jumps
// where the slice's second row starts another image). A thread's A loads in a K tile share
// their kk, except where A is contiguous along its rows (the panels), whose offset does not
// depend on kk. B's column fixes a base pointer (`b_origin`), and a slice the run of that
// column's elements (`b_gather`: a `Gather`, or wgrad's `RowPairGather`). So a thread works
// out its pointers once, and a K tile costs it one offset for A, one gather for B and an add
// per element. A is contiguous along its rows (the panels) or along K (wgrad's dY, the dense
// GEMM): `a_rows_contiguous`.
#define TILE_K 16
#define THREADS 256

// A run of a B column's elements: origin[offset + kk * stride] where 0 <= first + kk * step
// < limit, zero elsewhere (padding, invalid taps, columns past the GEMM's end). The range
// test needs no division, unlike bounds on kk would at strides above 1.
struct Gather {
    int offset, stride, first, step, limit;
    __device__ bool has(int kk) const { return (unsigned)(first + kk * step) < (unsigned)limit; }
    __device__ const float* at(const float* origin, int kk) const { return origin + (offset + kk * stride); }
};

// Copies one float from global to shared memory without passing through registers
// (cp.async, sm_80 on), or zero-fills it where !valid; `copies_wait` waits for this thread's
// copies. The host emulation of the kernels copies at once.
__device__ __forceinline__ void copy_async(float* shared, const float* global, bool valid) {
#ifdef __CUDA_ARCH__
    unsigned to = static_cast<unsigned>(__cvta_generic_to_shared(shared));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(to), "l"(global), "r"(valid ? 4 : 0) : "memory");
#else
    *shared = valid ? *global : 0.0f;
#endif
}
__device__ __forceinline__ void copies_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}
__device__ __forceinline__ Gather gather(int offset, int stride, bool valid) {
    return {offset, stride, 0, 0, valid ? 1 : 0};
}

// wgrad's run over a K tile that may cross a row's end: elements kk < split from the first
// row's gather, the rest from the next row's, whose offset and range start are moved back by
// split elements so that both take the tile's kk.
struct RowPairGather {
    Gather row, next_row;
    int split;
    __device__ bool has(int kk) const { return kk < split ? row.has(kk) : next_row.has(kk); }
    __device__ const float* at(const float* origin, int kk) const {
        return kk < split ? row.at(origin, kk) : next_row.at(origin, kk);
    }
};

// Tiled: a 256-thread block computes a TM x TN tile of C, each thread an RM x RN register
// sub-tile, stepping K by TILE_K through shared memory. Three shapes are instantiated (entry
// points at the end): square 64 x 64 tiles (4 x 4 per thread), large 128 x 128 ones (8 x 8)
// and narrow 4 x 256 ones (4 x 1) for GEMMs of at most four rows (one-channel images in and
// out), which would leave most of a square tile idle.
// Loads: a thread loads the A elements (m0 + a_row + i * A_ROW_STEP, k0 + a_kk + i * A_KK_STEP)
// (one of the steps is 0, see `a_rows_contiguous`) and the B elements
// (k0 + b_kk + j * B_ROUND, n0 + col), the same places in every K tile.
// Pipeline: two shared buffers. A K tile's elements are copied straight into one
// (`copy_async`) while the block multiplies the previous tile out of the other, so the load
// latency hides behind the FFMAs and no register holds a loaded element. One barrier per tile
// suffices: a warp starts filling a buffer only after every warp has passed the barrier
// behind which that buffer was last read.
// Skipped taps: dgrad ORs its columns' valid taps into a block mask (`Ops::tap_mask`) and
// skips the K tiles of taps no column of the block receives from: with its phase-major
// columns, 3 of 4 taps of a 4 x 4 kernel at stride 2 (at stride 1 it skips the masks).
// Split K: block z sums k in [z * k_chunk, (z + 1) * k_chunk) (k_chunk a multiple of
// TILE_K). With one split it writes the result; with several, its partial sums go to
// `partial + z * M * N` in the result's layout and `conv_split_sum_f32` adds them in z order,
// so results do not depend on scheduling.
// Shared-memory banks: where A is contiguous along K (wgrad), the stores write it with
// consecutive threads on consecutive k of one row m. With rows of TM floats (a multiple of
// 32) those all fall in one bank: 16-way conflicts. Rows of TM + 4 floats (`ARow`) move each
// k four banks on, down to 2-way (the panels' stores, along m, have none), and keep
// every 16-byte chunk aligned for the vector reads, whose offsets stay compile-time constants.
// A thread's RN columns are groups of four adjacent ones, the groups TN / (RN / 4) apart
// (`b_slot`), so that a warp's vector reads of B are consecutive 16-byte chunks rather than
// chunks 32 bytes apart (2-way conflicts with 8 x 8 sub-tiles).
// Launch: grid (ceil(N / TN), ceil(M / TM), splits), 256 threads (src/device/tiled_conv.rs).
template <int TM>
struct ARow {
    static constexpr int floats = TM >= 32 ? TM + 4 : TM;
};
template <int TN, int RN>
__device__ __forceinline__ int b_slot(int tx, int j) {
    constexpr int TX = TN / RN;
    if (RN % 4 != 0) return tx * RN + j;
    return j / 4 * (TX * 4) + tx * 4 + j % 4;
}

// The results of a thread's sub-tile (`value(i, j)`: row ty * RM + i, column slot j) into
// ops.out, a column at a time: its place in the output worked out once (dgrad's takes
// several divisions), then its rows a stride apart.
template <int TM, int TN, int RM, int RN, class Ops, class Value>
__device__ __forceinline__ void store_tile(const Ops& ops, int m0, int n0, Value value) {
    constexpr int TX = TN / RN;
    const int M = ops.rows(), N = ops.columns();
    const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
    const int out_stride = ops.out_row_stride();
#pragma unroll
    for (int j = 0; j < RN; ++j) {
        const int n = n0 + b_slot<TN, RN>(tx, j);
        if (n >= N) continue;
        const int at = ops.out_column(n);
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            const int m = m0 + ty * RM + i;
            if (m < M) ops.out[at + m * out_stride] = value(i, j);
        }
    }
}

// A tile's double-buffered A and B K tiles in shared memory: one object per tile shape, so
// that a kernel whose launches pick between Ops (wgrad's row variants) holds them once.
template <int TM, int TN>
struct TileMemory {
    float a[2][TILE_K][ARow<TM>::floats];
    float b[2][TILE_K][TN];
};
template <int TM, int TN>
__device__ __forceinline__ TileMemory<TM, TN>& tile_memory() {
    __shared__ TileMemory<TM, TN> memory;
    return memory;
}

// One TM x TN tile of C at (m0, n0), summed over k in [k_begin, k_end), into ops.out.
template <int TM, int TN, int RM, int RN, class Ops>
__device__ __forceinline__ void tile_product(Ops ops, int m0, int n0, int k_begin, int k_end) {
    static_assert((TM / RM) * (TN / RN) == THREADS && THREADS % TN == 0, "tile shape");
    constexpr int TX = TN / RN;
    // Loads per thread and K tile, in fixed trip counts so that they unroll with no
    // remainder loop (the narrow tiles' 64 A elements take a quarter of one round). A's
    // loads run along its contiguous axis (`Ops::a_rows_contiguous`): consecutive threads
    // take consecutive rows of one k, or consecutive k of one row; load i is the element
    // (a_row + i * A_ROW_STEP, a_kk + i * A_KK_STEP).
    constexpr bool A_ROWS = Ops::a_rows_contiguous;
    constexpr int A_ROW_STEP = A_ROWS ? 0 : THREADS / TILE_K, A_KK_STEP = A_ROWS ? THREADS / TM : 0;
    // Whether every thread's loads fall in the tile (all but the narrow tiles' row-wise
    // loads, whose threads past the tile's 16 k load nothing).
    constexpr bool A_FITS = A_ROWS ? TILE_K % A_KK_STEP == 0 : TM % A_ROW_STEP == 0;
    constexpr int B_ROUND = THREADS / TN;
    constexpr int A_LOADS = (TILE_K * TM + THREADS - 1) / THREADS, B_LOADS = TILE_K * TN / THREADS;
    const int M = ops.rows(), N = ops.columns();
    auto& a_tile = tile_memory<TM, TN>().a;
    auto& b_tile = tile_memory<TM, TN>().b;
    __shared__ unsigned long long column_taps[TN];
    const int tid = threadIdx.x;
    const int tx = tid % TX, ty = tid / TX;
    const int col = tid % TN, b_kk = tid / TN;
    const int a_kk = A_ROWS ? tid / TM : tid % TILE_K, a_row = A_ROWS ? tid % TM : tid / TILE_K;
    const typename Ops::Column column = ops.column(n0 + col, n0 + col < N);
    unsigned long long block_taps = ~0ull;
    if constexpr (Ops::skips_taps) {
        if (ops.may_skip_taps()) {  // the same for every thread of the launch
            if (tid < TN) column_taps[tid] = column.valid ? ops.tap_mask(column) : 0ull;
            __syncthreads();
            block_taps = 0;
            for (int i = 0; i < TN; ++i) block_taps |= column_taps[i];
        }
    }

    // Worked out once: this thread's A loads (bit i: load i falls in the tile, resp. its row
    // in the GEMM; rows past it are zero-filled), their offsets, and its B column's base.
    const float* a_origin = ops.a_origin();
    const int a_stride = ops.a_row_stride(), a_k_stride = ops.a_k_stride();
    // A(m0 + a_row, k0 + a_kk) of a uniform slice is a_origin[a_first + a_offset(slice, k0, a_kk)].
    const int a_first = (m0 + a_row) * a_stride + a_kk * a_k_stride;
    const int a_step = A_ROW_STEP * a_stride + A_KK_STEP * a_k_stride;
    unsigned a_in_tile = 0, a_in_gemm = 0;
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
        int r = a_row + i * A_ROW_STEP, kk = a_kk + i * A_KK_STEP;
        if (A_FITS || (r < TM && kk < TILE_K)) a_in_tile |= 1u << i;
        if (m0 + r < M) a_in_gemm |= 1u << i;
    }
    const float* b_origin = ops.b_origin(column);

    // The K loop, compiled once for uniform slices and once for the rest (`UNIFORM`, the same
    // for every slice of a launch), so that the general path's register needs do not spill
    // the uniform one's state.
    float acc[RM][RN] = {};
    auto k_loop = [&](auto uniform) {
        constexpr bool UNIFORM = decltype(uniform)::value;
        // Starts the copies of one K tile's elements into `buffer` (zeros past k_end and
        // where the operands hold none). A uniform slice gives each element's place by an
        // add; other slices decompose each k.
        auto fill = [&](int buffer, int k0, const typename Ops::Slice& slice) {
            const int limit = k_end - k0;
            if constexpr (UNIFORM) {
                const auto b = ops.b_gather(column, slice);
#pragma unroll
                for (int j = 0; j < B_LOADS; ++j) {
                    int kk = b_kk + j * B_ROUND;
                    copy_async(&b_tile[buffer][kk][col], b.at(b_origin, kk), kk < limit && b.has(kk));
                }
                const int a_at = a_first + ops.a_offset(slice, k0, a_kk);
#pragma unroll
                for (int i = 0; i < A_LOADS; ++i)
                    if (A_FITS || (a_in_tile >> i & 1))
                        copy_async(&a_tile[buffer][a_kk + i * A_KK_STEP][a_row + i * A_ROW_STEP],
                                   a_origin + (a_at + i * a_step),
                                   (a_in_gemm >> i & 1) && a_kk + i * A_KK_STEP < limit);
            } else {
#pragma unroll
                for (int i = 0; i < A_LOADS; ++i) {
                    const int kk = a_kk + i * A_KK_STEP;
                    const bool in = (a_in_gemm >> i & 1) && kk < limit;
                    const int at = in ? a_first + i * A_ROW_STEP * a_stride - a_kk * a_k_stride +
                                            ops.a_offset(ops.slice(k0 + kk), k0 + kk, 0)
                                      : 0;
                    if (A_FITS || (a_in_tile >> i & 1))
                        copy_async(&a_tile[buffer][kk][a_row + i * A_ROW_STEP], a_origin + at, in);
                }
#pragma unroll
                for (int j = 0; j < B_LOADS; ++j) {
                    int kk = b_kk + j * B_ROUND;
                    const auto b = ops.b_gather(column, ops.slice(k0 + kk));
                    copy_async(&b_tile[buffer][kk][col], b.at(b_origin, 0), kk < limit && b.has(0));
                }
            }
        };
        // The K tiles in order; a uniform slice counts on from tile to tile (skipped tiles
        // too). `seek` moves on to the next tile the block needs (the same for every thread)
        // and says whether there is one.
        int k0 = k_begin;
        typename Ops::Slice slice = ops.slice(k0);
        auto seek = [&](bool step) {
            for (;; step = true) {
                if (step) {
                    k0 += TILE_K;
                    if constexpr (UNIFORM) ops.next(slice);
                }
                if (k0 >= k_end) return false;
                if (!UNIFORM || ops.needed(slice, block_taps)) return true;
            }
        };
        bool more = seek(false);
        if (more) fill(0, k0, slice);
        for (int buffer = 0; more; buffer ^= 1) {
            copies_wait();
            __syncthreads();
            more = seek(true);
            if (more) fill(buffer ^ 1, k0, slice);  // lands while the FFMAs below run
#pragma unroll
            for (int kk = 0; kk < TILE_K; ++kk) {
                float a[RM], b[RN];
#pragma unroll
                for (int i = 0; i < RM; ++i) a[i] = a_tile[buffer][kk][ty * RM + i];
#pragma unroll
                for (int j = 0; j < RN; ++j) b[j] = b_tile[buffer][kk][b_slot<TN, RN>(tx, j)];
#pragma unroll
                for (int i = 0; i < RM; ++i)
#pragma unroll
                    for (int j = 0; j < RN; ++j) acc[i][j] += a[i] * b[j];
            }
        }
    };
    if (ops.slice(k_begin).uniform)
        k_loop(std::true_type());
    else
        k_loop(std::false_type());
    store_tile<TM, TN, RM, RN>(ops, m0, n0, [&](int i, int j) { return acc[i][j]; });
}

// Split K: the tile of block (x, y) over k in [z * k_chunk, (z + 1) * k_chunk), into the
// result, or with several splits into slot z of `partial` (conv_split_sum_f32 adds them).
template <int TM, int TN, int RM, int RN, class Ops>
__device__ __forceinline__ void tiled_gemm(Ops ops, float* partial, int k_chunk) {
    if (gridDim.z > 1) ops.out = partial + (long long)blockIdx.z * ops.rows() * ops.columns();
    const int k_begin = blockIdx.z * k_chunk;
    tile_product<TM, TN, RM, RN>(ops, blockIdx.y * TM, blockIdx.x * TN, k_begin,
                                 min(ops.depth(), k_begin + k_chunk));
}

// Stream K: the GEMM's work, T tiles of KT K tiles each (W = T * KT units, tile-major),
// in equal shares: block b of B (gridDim.x) takes units [b * W / B, (b + 1) * W / B), which
// may end one tile and start the next, so that every block has the same work however the
// tiles divide among the multiprocessors (split K's equal splits leave a last wave part
// empty). Each piece of a tile goes to a slot of `partial`, the block's place among the
// tile's contributors, and the tile's last contributor zero-fills its slots past those, so
// that conv_split_sum_f32 adds `slots` slots in order (deterministic) as after split K.
// The tiles are numbered row of tiles by row, as split K's grid (x: columns). The host
// launches no more blocks than units (B <= W), so every share is a piece and a tile's
// contributors are consecutive blocks.
template <int TM, int TN, int RM, int RN, class Ops>
__device__ __forceinline__ void stream_k_gemm(Ops ops, float* partial, int slots) {
    const int M = ops.rows(), N = ops.columns();
    const int tiles_x = (N + TN - 1) / TN;
    const long long KT = (ops.depth() + TILE_K - 1) / TILE_K;
    const long long W = (long long)tiles_x * ((M + TM - 1) / TM) * KT, B = gridDim.x;
    // The block whose share holds unit w.
    auto block_of = [&](long long w) { return ((w + 1) * B - 1) / W; };
    const long long b = blockIdx.x, begin = b * W / B, end = (b + 1) * W / B;
    float* const out = ops.out;
    for (long long w = begin; w < end;) {
        const long long t = w / KT, piece_end = min(end, (t + 1) * KT);
        const long long first = block_of(t * KT), last = block_of((t + 1) * KT - 1);
        const int m0 = (int)(t / tiles_x) * TM, n0 = (int)(t % tiles_x) * TN;
        if (w > begin) __syncthreads();  // the previous piece's shared tiles are read
        ops.out = slots > 1 ? partial + (b - first) * M * (long long)N : out;
        tile_product<TM, TN, RM, RN>(ops, m0, n0, (int)(w - t * KT) * TILE_K,
                                     min(ops.depth(), (int)(piece_end - t * KT) * TILE_K));
        if (b == last)
            for (long long slot = last - first + 1; slot < slots; ++slot) {
                ops.out = partial + slot * M * (long long)N;
                store_tile<TM, TN, RM, RN>(ops, m0, n0, [](int, int) { return 0.0f; });
            }
        w = piece_end;
    }
}

// A spatial position (d, h, w) of a volume of size (sd, sh, sw) from its flat index.
struct Position {
    int d, h, w;
};
__device__ __forceinline__ Position position(int flat, int sh, int sw) {
    return {flat / (sw * sh), (flat / sw) % sh, flat % sw};
}

// Kernel tap (kd, kh, kw) of a flat index into k_d * k_h * k_w.
__device__ __forceinline__ Position tap(int r, const ConvParams& g) {
    const int row = g.by_k_w.div(r);
    return {g.by_k_hw.div(r), g.by_k_h.mod(row), r - row * g.k_w};
}

// Output position (d, h, w) of a flat index into the output's positions.
__device__ __forceinline__ Position out_position(int flat, const ConvParams& g) {
    const int row = g.by_out_w.div(flat);
    return {g.by_out_hw.div(flat), g.by_out_h.mod(row), flat - row * g.out_w};
}

// The B column a thread gathers: an image or channel index and a position or kernel tap.
struct GemmColumn {
    bool valid;
    int index;
    Position pos;
};

// fprop's and dgrad's K slice: one tap, channels from c0.
struct TapSlice {
    bool uniform;
    int tap;
    Position t;
    int c0;
    // Where the thread's column reads channel 0 of this tap (`tap_gather`): worked out when
    // the tap changes rather than every K tile (a uniform slice is each thread's own, counted
    // on from tile to tile, and a tap spans C / TILE_K tiles), as the padding makes it
    // several comparisons per axis.
    mutable int memo_tap = -1, memo_offset = 0;
    mutable bool memo_valid = false;
};

// The gather of slice s's channels from a column whose channel-0 element of tap s.tap lies
// at `offset(column position, tap)` (negative: none), channels `stride` apart.
template <class Offset>
__device__ __forceinline__ Gather tap_gather(const TapSlice& s, int stride, bool column_valid, Offset offset) {
    if (s.memo_tap != s.tap) {
        s.memo_offset = offset();
        s.memo_valid = column_valid && s.memo_offset >= 0;
        s.memo_tap = s.tap;
    }
    return gather(s.c0 * stride + s.memo_offset, stride, s.memo_valid);
}

// What every primitive needs of the geometry, and where the result goes: result (m, n) is
// out[out_column(n) + m * out_row_stride()] (32-bit: the backend refuses tensors of 2^31
// elements or more).
struct ConvShape {
    ConvParams g;
    int in_sp, out_sp, kvol;
    float* out;
    __device__ ConvShape(const ConvParams& p, float* out_)
        : g(p),
          in_sp(p.in_d * p.in_h * p.in_w),
          out_sp(p.out_d * p.out_h * p.out_w),
          kvol(p.k_d * p.k_h * p.k_w),
          out(out_) {}
    __device__ TapSlice tap_slice(int k0, const Divisor& channels) const {
        int t = channels.div(k0);
        return {channels.d % TILE_K == 0, t, tap(t, g), k0 - t * channels.d};
    }
    // A uniform slice moved TILE_K on by counting instead of dividing: the channels, then
    // the tap (w, then h, then d), as tap_slice(k0 + TILE_K, channels) gives.
    __device__ void next_tap_slice(TapSlice& s, int channels) const {
        s.c0 += TILE_K;
        if (s.c0 < channels) return;
        s.c0 = 0;
        ++s.tap;
        if (++s.t.w < g.k_w) return;
        s.t.w = 0;
        if (++s.t.h < g.k_h) return;
        s.t.h = 0;
        ++s.t.d;
    }
    // Every K tile is needed unless the Ops skips taps (dgrad).
    template <class Slice>
    __device__ bool needed(const Slice&, unsigned long long) const { return true; }
    __device__ unsigned long long tap_mask(const GemmColumn&) const { return ~0ull; }
    // Flat offset of the input position that output position o reads with tap t (the one
    // its padded position copies), or -1 in the zero padding.
    __device__ int input_offset(Position o, Position t) const {
        const int id = pad_source(o.d * g.s_d + t.d, g.in_d, g.p_d, g.pad_mode),
                  ih = pad_source(o.h * g.s_h + t.h, g.in_h, g.p_h, g.pad_mode),
                  iw = pad_source(o.w * g.s_w + t.w, g.in_w, g.p_w, g.pad_mode);
        return id >= 0 && ih >= 0 && iw >= 0 ? (id * g.in_h + ih) * g.in_w + iw : -1;
    }
};

// fprop's and dgrad's A: the weights rewritten K-major (`conv_weight_panel_f32`) with `m`
// rows, A(row, k) = panel[k * m + row], contiguous along the rows.
struct PanelA {
    static constexpr bool a_rows_contiguous = true;
    const float* panel;
    int m;
    __device__ const float* a_origin() const { return panel; }
    __device__ int a_row_stride() const { return 1; }
    __device__ int a_k_stride() const { return m; }
    __device__ int a_offset(const TapSlice&, int k0, int) const { return k0 * m; }
};

// fprop: A = W [c_out, (tap, c_in)], panel[(tap * c_in + ci) * c_out + co] = w[co, ci, tap];
// B = im2col(X), one column per (image, output position).
struct FpropOps : ConvShape, PanelA {
    static constexpr bool skips_taps = false;
    const float* x;
    __device__ FpropOps(const ConvParams& p, const float* x_, const float* panel_, float* y)
        : ConvShape(p, y), PanelA{panel_, p.c_out}, x(x_) {}
    __device__ int rows() const { return g.c_out; }
    __device__ int columns() const { return g.n * out_sp; }
    __device__ int depth() const { return g.c_in * kvol; }
    using Column = GemmColumn;
    using Slice = TapSlice;
    __device__ Column column(int n, bool valid) const {
        if (!valid) return {false, 0, {0, 0, 0}};
        const int image = g.by_out_sp.div(n);
        return {true, image, out_position(n - image * out_sp, g)};
    }
    __device__ Slice slice(int k0) const { return tap_slice(k0, g.by_c_in); }
    __device__ void next(Slice& s) const { next_tap_slice(s, g.c_in); }
    // B[(tap, ci), (img, o)] = x[img, ci, o * stride + tap - pad].
    __device__ const float* b_origin(const Column& c) const { return x + (long long)c.index * g.c_in * in_sp; }
    __device__ Gather b_gather(const Column& c, const Slice& s) const {
        return tap_gather(s, in_sp, c.valid, [&] { return input_offset(c.pos, s.t); });
    }
    // Channel 0 of column n = (image, position) in y (N, c_out, positions).
    __device__ int out_column(int n) const {
        const int image = g.by_out_sp.div(n);
        return image * g.c_out * out_sp + (n - image * out_sp);
    }
    __device__ int out_row_stride() const { return out_sp; }
};

// dgrad: A = W^T [c_in, (tap, c_out)], panel[(tap * c_out + co) * c_in + ci] = w[co, ci, tap];
// B = the dY values each input position receives; with a reflection or replication padding,
// dY folded (`conv_fold_dy_f32`, extents `dy_size`).
// Columns are phase-major where the strides divide the input: column n is (phase, image,
// position q on the phase's sub-grid), input position = phase + stride * q, so that a tile's
// columns share a phase and so the taps they receive from (`tap_mask`, `needed`).
struct DgradOps : ConvShape, PanelA {
    static constexpr bool skips_taps = true;
    const float* dy;
    Position step, sub;  // phase grid step per axis (stride, or 1) and sub-grid size
    int sub_sp;
    Position dy_size;  // dY's extents as read: the output's, plus folded positions
    int dy_sp;
    __device__ static int step_of(int in, int s) { return in % s == 0 ? s : 1; }
    __device__ DgradOps(const ConvParams& p, const float* dy_, const float* panel_, float* dx)
        : ConvShape(p, dx),
          PanelA{panel_, p.c_in},
          dy(dy_),
          step{step_of(p.in_d, p.s_d), step_of(p.in_h, p.s_h), step_of(p.in_w, p.s_w)},
          sub{p.in_d / step.d, p.in_h / step.h, p.in_w / step.w},
          sub_sp(sub.d * sub.h * sub.w),
          dy_size{p.out_d + fold_extra(p.p_d, p.pad_mode), p.out_h + fold_extra(p.p_h, p.pad_mode),
                  p.out_w + fold_extra(p.p_w, p.pad_mode)},
          dy_sp(dy_size.d * dy_size.h * dy_size.w) {}
    __device__ int rows() const { return g.c_in; }
    __device__ int columns() const { return g.n * in_sp; }
    __device__ int depth() const { return g.c_out * kvol; }
    using Column = GemmColumn;
    using Slice = TapSlice;
    __device__ Column column(int n, bool valid) const {
        if (!valid) return {false, 0, {0, 0, 0}};
        int per_phase = g.n * sub_sp;
        Position phase = position(n / per_phase, step.h, step.w);
        Position q = position(n % per_phase % sub_sp, sub.h, sub.w);
        return {true, n % per_phase / sub_sp,
                {phase.d + step.d * q.d, phase.h + step.h * q.h, phase.w + step.w * q.w}};
    }
    __device__ Slice slice(int k0) const { return tap_slice(k0, g.by_c_out); }
    __device__ void next(Slice& s) const { next_tap_slice(s, g.c_out); }
    // The (folded) dY position input position i receives from with tap t, or a negative axis.
    __device__ Position source(Position i, Position t) const {
        if (g.pad_mode != PAD_ZERO)
            return {fold_index(i.d, t.d, g.p_d, g.in_d, g.out_d, g.pad_mode),
                    fold_index(i.h, t.h, g.p_h, g.in_h, g.out_h, g.pad_mode),
                    fold_index(i.w, t.w, g.p_w, g.in_w, g.out_w, g.pad_mode)};
        return {out_index(i.d, t.d, g.s_d, g.p_d, g.out_d), out_index(i.h, t.h, g.s_h, g.p_h, g.out_h),
                out_index(i.w, t.w, g.s_w, g.p_w, g.out_w)};
    }
    // Whether a block can have taps none of its columns receive from: with a stride above
    // 1 (phase-major columns), in kernels of at most 64 taps. At stride 1 every tap reaches
    // all but the border columns, so the masks (a source per tap and column, then an OR over
    // the tile's columns: for a 7 x 7 kernel more than the 4 K tiles of a one-channel dy)
    // would cost and skip nothing.
    __device__ bool may_skip_taps() const { return kvol <= 64 && (g.s_d > 1 || g.s_h > 1 || g.s_w > 1); }
    // Bit t: tap t reaches this column (kernels of more than 64 taps: all bits).
    __device__ unsigned long long tap_mask(const Column& c) const {
        if (kvol > 64) return ~0ull;
        unsigned long long mask = 0;
        for (int t = 0; t < kvol; ++t) {
            Position o = source(c.pos, tap(t, g));
            if (o.d >= 0 && o.h >= 0 && o.w >= 0) mask |= 1ull << t;
        }
        return mask;
    }
    __device__ bool needed(const Slice& s, unsigned long long block_taps) const {
        return s.tap >= 64 || (block_taps >> s.tap & 1);
    }
    // B[(tap, co), (img, i)] = dy[img, co, source(i, tap)].
    __device__ const float* b_origin(const Column& c) const { return dy + (long long)c.index * g.c_out * dy_sp; }
    __device__ Gather b_gather(const Column& c, const Slice& s) const {
        return tap_gather(s, dy_sp, c.valid, [&] {
            const Position o = source(c.pos, s.t);
            return o.d >= 0 && o.h >= 0 && o.w >= 0 ? (o.d * dy_size.h + o.h) * dy_size.w + o.w : -1;
        });
    }
    __device__ int out_column(int n) const {
        Column c = column(n, true);
        return c.index * g.c_in * in_sp + (c.pos.d * g.in_h + c.pos.h) * g.in_w + c.pos.w;
    }
    __device__ int out_row_stride() const { return in_sp; }
};

// wgrad's K slice: output positions of one image from o along a row. With row pairs
// (`WgradOps`), a uniform slice's K tile takes the row's last out_w - o.w positions, then
// the next row's first (which may be the next image's).
struct RowSlice {
    bool uniform;
    int image;
    Position o;
};

// wgrad: A = dY [c_out, (image, out position)], B = im2col(X)^T, one column per (c_in, tap).
// Two variants, chosen per launch (`Operands<AnyWgradOps>`): where rows hold whole K tiles
// (out_w a multiple of TILE_K: the reference networks at 256 x 256), a K tile is a run along
// one row, and rows shorter than a tile take the general path; with ROW_PAIRS, where rows
// hold more than a tile but not whole tiles (31, 60 or 120 positions: the PatchGAN's fourth
// layer, BraTS's 240 x 240 slices), a K tile may end one row and start the next. The pairs
// cost each B load a choice of row, so the first variant keeps the common case's loop as it
// was.
template <bool ROW_PAIRS>
struct WgradOps : ConvShape {
    static constexpr bool skips_taps = false, a_rows_contiguous = false;
    const float* x;
    const float* dy;
    __device__ WgradOps(const ConvParams& p, const float* x_, const float* dy_, float* dw)
        : ConvShape(p, dw), x(x_), dy(dy_) {}
    __device__ int rows() const { return g.c_out; }
    __device__ int columns() const { return g.c_in * kvol; }
    __device__ int depth() const { return g.n * out_sp; }
    using Column = GemmColumn;
    using Slice = RowSlice;
    __device__ Column column(int n, bool valid) const {
        if (!valid) return {false, 0, {0, 0, 0}};
        const int ci = g.by_kvol.div(n);
        return {true, ci, tap(n - ci * kvol, g)};
    }
    // A TILE_K run of k crosses at most one row's end where rows hold TILE_K or more
    // positions. A padded input's rows are no runs of x (their ends reflect or repeat): with a
    // reflection or replication padding every k is a slice of its own (the backend pads such
    // inputs explicitly instead, src/device/cuda/conv.rs).
    __device__ Slice slice(int k0) const {
        const bool rows_fit = ROW_PAIRS || g.out_w % TILE_K == 0;
        const int image = g.by_out_sp.div(k0);
        return {rows_fit && g.pad_mode == PAD_ZERO, image, out_position(k0 - image * out_sp, g)};
    }
    // The row after o's (the rows, then the planes and the images), keeping o.w.
    __device__ void next_row(int& image, Position& o) const {
        if (++o.h < g.out_h) return;
        o.h = 0;
        if (++o.d < g.out_d) return;
        o.d = 0;
        ++image;
    }
    // A uniform slice moved TILE_K on by counting (a row holds at least a tile), as
    // slice(k0 + TILE_K) gives.
    __device__ void next(Slice& s) const {
        s.o.w += TILE_K;
        if (s.o.w >= g.out_w) {
            s.o.w -= g.out_w;
            next_row(s.image, s.o);
        }
    }
    // A[co, (img, o)] = dy[img, co, o]: contiguous along an image's positions, then c_out
    // planes on to the next image's first.
    __device__ const float* a_origin() const { return dy; }
    __device__ int a_row_stride() const { return out_sp; }
    __device__ int a_k_stride() const { return 1; }
    __device__ int a_offset(const Slice& s, int, int kk) const {
        const int o = (s.o.d * g.out_h + s.o.h) * g.out_w + s.o.w;
        const int at = s.image * g.c_out * out_sp + o;
        if constexpr (ROW_PAIRS) {
            const int split = g.out_w - s.o.w;  // the tile's first k in the next row
            if (kk >= split && o + split == out_sp) return at + (g.c_out - 1) * out_sp;
        }
        return at;
    }
    // B[(img, o), (ci, tap)] = x[img, ci, o * stride + tap - pad]: along a row, the output
    // columns whose input column lands inside.
    __device__ const float* b_origin(const Column& c) const { return x + (long long)c.index * in_sp; }
    __device__ Gather row_gather(const Column& c, int image, Position o) const {
        int id = o.d * g.s_d + c.pos.d - g.p_d, ih = o.h * g.s_h + c.pos.h - g.p_h;
        int iw0 = o.w * g.s_w + c.pos.w - g.p_w;
        bool row_inside = c.valid && id >= 0 && id < g.in_d && ih >= 0 && ih < g.in_h;
        int offset = image * g.c_in * in_sp + (id * g.in_h + ih) * g.in_w + iw0;
        return {offset, g.s_w, iw0, g.s_w, row_inside ? g.in_w : 0};
    }
    __device__ auto b_gather(const Column& c, const Slice& s) const {
        Gather row;
        if (g.pad_mode != PAD_ZERO) {  // one k (above)
            const int offset = input_offset(s.o, c.pos);
            row = gather(s.image * g.c_in * in_sp + offset, 0, c.valid && offset >= 0);
        } else {
            row = row_gather(c, s.image, s.o);
        }
        if constexpr (!ROW_PAIRS) {
            return row;
        } else {
            const int split = g.out_w - s.o.w;  // the tile's first k in the next row
            if (split >= TILE_K) return RowPairGather{row, row, TILE_K};
            int image = s.image;
            Position o = {s.o.d, s.o.h, 0};
            next_row(image, o);
            Gather next = row_gather(c, image, o);
            next.offset -= split * next.stride;
            next.first -= split * next.step;
            return RowPairGather{row, next, split};
        }
    }
    __device__ int out_column(int n) const { return n; }
    __device__ int out_row_stride() const { return g.c_in * kvol; }
};

// Direct: one thread per result (grid-stride, any 1D launch), summing over K in order.
template <class Ops>
__device__ __forceinline__ void direct_gemm(const Ops& ops) {
    const int M = ops.rows(), N = ops.columns(), K = ops.depth();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (long long)M * N; i += (long long)gridDim.x * blockDim.x) {
        const int n = i % N;
        const int m = i / N;
        const typename Ops::Column column = ops.column(n, true);
        const float* a_row = ops.a_origin() + m * ops.a_row_stride();
        const float* b_origin = ops.b_origin(column);
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) {
            const typename Ops::Slice s = ops.slice(k);
            const auto b = ops.b_gather(column, s);
            acc += a_row[ops.a_offset(s, k, 0)] * (b.has(0) ? *b.at(b_origin, 0) : 0.0f);
        }
        ops.out[ops.out_column(n) + m * ops.out_row_stride()] = acc;
    }
}

extern "C" __global__ void conv_fprop_f32(ConvParams g, const float* x, const float* panel, float* y) {
    direct_gemm(FpropOps(g, x, panel, y));
}

extern "C" __global__ void conv_dgrad_f32(ConvParams g, const float* dy, const float* panel, float* dx) {
    direct_gemm(DgradOps(g, dy, panel, dx));
}

extern "C" __global__ void conv_wgrad_f32(ConvParams g, const float* x, const float* dy, float* dw) {
    direct_gemm(WgradOps<false>(g, x, dy, dw));
}

// `run` with a tiled launch's operands: Ops's, or wgrad's variant for its rows (`WgradOps`).
template <class Ops>
struct Operands {
    template <class Run>
    __device__ static void with(const ConvParams& g, const float* a, const float* b, float* out, Run run) {
        run(Ops(g, a, b, out));
    }
};
struct AnyWgradOps;  // a tag: wgrad's entries pick WgradOps<ROW_PAIRS> per launch
template <>
struct Operands<AnyWgradOps> {
    template <class Run>
    __device__ static void with(const ConvParams& g, const float* a, const float* b, float* out, Run run) {
        if (g.out_w < TILE_K || g.out_w % TILE_K == 0)
            run(WgradOps<false>(g, a, b, out));
        else
            run(WgradOps<true>(g, a, b, out));
    }
};

// The tiled entry points per primitive: square (64 x 64), large (128 x 128, 8 x 8 per thread:
// twice the multiply-adds per shared-memory read, for GEMMs with tiles enough to fill the
// GPU) and narrow (4 x 256) tiles. The second launch bound keeps the large tile's 64
// accumulators in registers at two blocks per multiprocessor.
#define TILED_KERNEL(name, TM, TN, RM, RN, min_blocks, Ops)                                             \
    extern "C" __global__ void __launch_bounds__(THREADS, min_blocks)                                  \
        name(ConvParams g, const float* a, const float* b, float* out, float* partial, int k_chunk) { \
        Operands<Ops>::with(g, a, b, out, [&](auto ops) { tiled_gemm<TM, TN, RM, RN>(ops, partial, k_chunk); }); \
    }
// Stream K in large tiles (`stream_k_gemm`; the last argument is the slots of `partial`).
#define STREAM_K_KERNEL(name, Ops)                                                            \
    extern "C" __global__ void __launch_bounds__(THREADS, 2)                                  \
        name(ConvParams g, const float* a, const float* b, float* out, float* partial, int slots) { \
        Operands<Ops>::with(g, a, b, out, [&](auto ops) { stream_k_gemm<128, 128, 8, 8>(ops, partial, slots); }); \
    }
#define TILED_KERNELS(pass, Ops)                                           \
    TILED_KERNEL(conv_##pass##_tiled_f32, 64, 64, 4, 4, 4, Ops)            \
    TILED_KERNEL(conv_##pass##_large_f32, 128, 128, 8, 8, 2, Ops)          \
    TILED_KERNEL(conv_##pass##_narrow_f32, 4, 256, 4, 1, 4, Ops)           \
    STREAM_K_KERNEL(conv_##pass##_large_streamk_f32, Ops)
// Operands as the direct kernels: fprop (x, fprop panel), dgrad (dy, dgrad panel), wgrad (x, dy).
TILED_KERNELS(fprop, FpropOps)
TILED_KERNELS(dgrad, DgradOps)
TILED_KERNELS(wgrad, AnyWgradOps)

// The weights w[c_out, c_in, tap] as fprop's (dgrad = 0) or dgrad's (dgrad = 1) A operand,
// stored K-major: panel[k * M + m] = A(m, k), k = tap * C + channel, so that a K tile's rows
// are contiguous and a warp's loads coalesce. In w itself, consecutive k lie kvol floats
// apart (fprop) or c_in * kvol (dgrad): each float a load of its own 32-byte sector. The
// backend writes the panel before every fprop and dgrad launch (any grid-stride 1D launch).
extern "C" __global__ void conv_weight_panel_f32(ConvParams g, const float* w, float* panel, int dgrad) {
    const int kvol = g.k_d * g.k_h * g.k_w;
    const int M = dgrad ? g.c_in : g.c_out, C = dgrad ? g.c_out : g.c_in;
    const int len = g.c_out * g.c_in * kvol;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < len; i += gridDim.x * blockDim.x) {
        const int m = i % M, k = i / M, tap = k / C, c = k % C;
        const int co = dgrad ? c : m, ci = dgrad ? m : c;
        panel[i] = w[(co * g.c_in + ci) * kvol + tap];
    }
}

// out[r * kvol + t] = w[r * kvol + kvol - 1 - t]: each row's taps reversed, `rows` rows (a
// thin wgrad's result from its dual conv's, src/device/thin_conv.rs). Any grid-stride 1D launch.
extern "C" __global__ void conv_reverse_taps_f32(const float* w, float* out, int rows, int kvol) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < rows * kvol; i += gridDim.x * blockDim.x)
        out[i] = w[i - i % kvol + kvol - 1 - i % kvol];
}

// out[i] = sum over z of partial[z * len + i], z in order (split-K's second step).
extern "C" __global__ void conv_split_sum_f32(const float* partial, float* out, int len, int splits) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < len; i += gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int z = 0; z < splits; ++z) sum += partial[(long long)z * len + i];
        out[i] = sum;
    }
}

// A dense GEMM through the same large tiles, strided and batched, K split or not: matrix b of
// a batch is C_b[M, N] = A_b[M, K] * B_b[K, N] with A_b row-major, A_b = A + b * batch_a,
// B_b = B + b * batch_b, C_b = C + b * batch_c, B_b's and C_b's rows ldb and ldc floats apart
// (the thin convs below multiply every image's channels by one A at once, and a range of an
// image's positions; Winograd wgrad's 16 products have an A each). `mrgan bench kernels`
// times it unstrided as the compute peak the convs are measured against: what the tiles
// reach without the im2col gather and the tap decomposition. Every K slice is uniform (no
// decomposition), and nothing is skipped.
struct GemmOps {
    static constexpr bool skips_taps = false, a_rows_contiguous = false;
    int M, N, K, ldb, ldc;
    const float* A;
    const float* B;
    float* out;
    struct Column {
        bool valid;
        int n;
    };
    struct Slice {
        bool uniform;
        int k0;
    };
    __device__ int rows() const { return M; }
    __device__ int columns() const { return N; }
    __device__ int depth() const { return K; }
    __device__ Column column(int n, bool valid) const { return {valid, n}; }
    __device__ Slice slice(int k0) const { return {true, k0}; }
    __device__ void next(Slice& s) const { s.k0 += TILE_K; }
    __device__ bool needed(const Slice&, unsigned long long) const { return true; }
    __device__ unsigned long long tap_mask(const Column&) const { return ~0ull; }
    __device__ const float* a_origin() const { return A; }
    __device__ int a_row_stride() const { return K; }
    __device__ int a_k_stride() const { return 1; }
    __device__ int a_offset(const Slice&, int k0, int) const { return k0; }
    __device__ const float* b_origin(const Column& c) const { return B + c.n; }
    __device__ Gather b_gather(const Column& c, const Slice& s) const { return gather(s.k0 * ldb, ldb, c.valid); }
    __device__ int out_column(int n) const { return n; }
    __device__ int out_row_stride() const { return ldc; }
};

// Grid (ceil(N / T), ceil(M / T), batches * splits) for T x T tiles: 128 (`gemm_f32`), or
// 64 (`gemm_square_f32`, for at most 64 rows: the thin convs' 49 taps of a 7 x 7 kernel
// would leave 62% of a large tile's rows idle). Block z computes matrix z % batches over k
// in [s * k_chunk, (s + 1) * k_chunk), s = z / batches, into C + (s * batches + z % batches)
// * batch_c: with one split (k_chunk >= K) the results, else each split's partial sums.
#define GEMM_KERNEL(name, T, R, min_blocks)                                                                   \
    extern "C" __global__ void __launch_bounds__(THREADS, min_blocks)                                        \
        name(int M, int N, int K, const float* A, const float* B, float* C, int ldb, int ldc, long long batch_a, \
             long long batch_b, long long batch_c, int batches, int k_chunk) {                                \
        const int b = blockIdx.z % batches, split = blockIdx.z / batches;                                    \
        const GemmOps ops{M, N, K, ldb, ldc, A + b * batch_a, B + b * batch_b,                               \
                          C + (split * (long long)batches + b) * batch_c};                                  \
        const int k_begin = split * k_chunk;                                                                 \
        tile_product<T, T, R, R>(ops, blockIdx.y * T, blockIdx.x * T, k_begin, min(K, k_begin + k_chunk));   \
    }
GEMM_KERNEL(gemm_f32, 128, 8, 2)
GEMM_KERNEL(gemm_square_f32, 64, 4, 4)

// Thin convs: fprop with one output channel and dgrad with one input channel (a network's
// one-channel image at either end), whose implicit GEMM has a single useful row and runs
// at a few percent of peak: every element it gathers serves one multiply-add, where a
// 7 x 7 kernel reads each input 49 times. Instead the host (src/device/thin_conv.rs) runs,
// per slab of result planes and depth tap td, the dense GEMM Z[img] = A_td * wide[img]
// (A_td[in-plane tap, channel]: rows of the weights' panel, `conv_weight_panel_f32`, which
// for one channel on the thin side is that matrix; `wide`: x for fprop, dy for dgrad, a row
// per channel, over the planes the slab reaches with td), then this kernel, which adds each
// result's in-plane taps out of Z: fprop y[img, o] += sum over taps t = (td, th, tw) of
// Z[img][th, tw][o * stride + t - pad], dgrad dx[img, i] += sum over t of Z[img][th, tw][the dy
// position i receives from with t], zero where a tap falls outside. Z[img] has a row of
// `len` floats per in-plane tap (wide planes from `first`), images k_h * k_w * len apart, for
// the `images` images from `img_first`. Writes (td 0) or adds to (`accumulate`) result
// planes [out_first, out_end) of those images; one thread per result (grid-stride, any 1D
// launch). Taps add in order, depth tap by depth tap, so results are deterministic. Thin
// convs pad with zeros: the backend pads explicitly around them.
extern "C" __global__ void conv_thin_gather_f32(ConvParams g, const float* z, float* out, int dgrad, int td,
                                                int first, int len, int out_first, int out_end, int accumulate,
                                                int img_first, int images) {
    const FpropOps fprop(g, nullptr, nullptr, out);
    const DgradOps dgrad_ops(g, nullptr, nullptr, out);
    const int res_h = dgrad ? g.in_h : g.out_h, res_w = dgrad ? g.in_w : g.out_w;
    const int wide_plane = dgrad ? g.out_h * g.out_w : g.in_h * g.in_w;
    const int res_plane = res_h * res_w, res_sp = dgrad ? fprop.in_sp : fprop.out_sp;
    const int per_image = (out_end - out_first) * res_plane, plane_taps = g.k_h * g.k_w;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < images * per_image; e += gridDim.x * blockDim.x) {
        const int img = img_first + e / per_image, r = out_first * res_plane + e % per_image;
        const Position p = position(r, res_h, res_w);
        const float* zi = z + (long long)(e / per_image) * plane_taps * len;
        float sum = 0.0f;
        for (int th = 0, t = 0; th < g.k_h; ++th)
            for (int tw = 0; tw < g.k_w; ++tw, ++t) {
                const Position k{td, th, tw};
                int at;
                if (dgrad) {
                    const Position o = dgrad_ops.source(p, k);
                    at = o.d < 0 || o.h < 0 || o.w < 0 ? -1 : ((o.d - first) * g.out_h + o.h) * g.out_w + o.w;
                } else {
                    const int flat = fprop.input_offset(p, k);
                    at = flat < 0 ? -1 : flat - first * wide_plane;
                }
                if (at >= 0 && at < len) sum += zi[t * len + at];
            }
        float* const result = out + (long long)img * res_sp + r;
        *result = accumulate ? *result + sum : sum;
    }
}

// Winograd's F(2 x 2, 3 x 3) for 2D 3 x 3 convs at stride 1 (the ResNets' residual blocks):
// 16 multiplications per 2 x 2 tile of outputs where the implicit GEMM spends 36. Output
// tile t covers rows 2ty, 2ty + 1 and columns 2tx, 2tx + 1 of one image (t = (img * tiles_h
// + ty) * tiles_w + tx; positions past the output's end are zero or dropped) and reads the
// 4 x 4 input patch d from (2ty - p_h, 2tx - p_w) (zero outside the input). With
//   A^T = [1 1 1 0; 0 1 -1 -1],  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]:
// - fprop: the tile's outputs are A^T [sum over ci of (G w G^T) .* (B^T d B)] A, so for each
//   of the 16 transformed positions x one GEMM over c_in, M_x[co, t] = sum over ci of
//   W_x[co, ci] V_x[ci, t] (`winograd_weights_f32`, `winograd_input_f32`, then
//   `winograd_output_f32`). dgrad is the fprop of dY with the weights turned (w'[ci, co] =
//   w[co, ci] flipped) and padding 2 - p (the host's dual geometry).
// - wgrad (the transpose): each tile adds G^T [(A g A^T) .* (B^T d B)] G to each channel
//   pair's 3 x 3 gradient, g the tile's 2 x 2 dY, so for each x one GEMM over the tiles,
//   C_x[co, ci] = sum over t of U_x[co, t] V_x[t, ci] (`winograd_wgrad_dy_f32`,
//   `winograd_wgrad_x_f32`), with K split; `winograd_wgrad_out_f32` adds the splits and
//   applies G^T . G.
// The GEMMs are the batched dense GEMM above. The host side: src/device/winograd.rs.

// One axis of each transform: A v and A^T v (two values to four, four to two), B^T v (four
// to four), G v and G^T v (three to four, four to three).
__device__ __forceinline__ void winograd_a(float v0, float v1, float* o) {
    o[0] = v0, o[1] = v0 + v1, o[2] = v0 - v1, o[3] = -v1;
}
__device__ __forceinline__ void winograd_at(const float* v, float* o) {
    o[0] = v[0] + v[1] + v[2], o[1] = v[1] - v[2] - v[3];
}
__device__ __forceinline__ void winograd_bt(const float* v, float* o) {
    o[0] = v[0] - v[2], o[1] = v[1] + v[2], o[2] = v[2] - v[1], o[3] = v[1] - v[3];
}
__device__ __forceinline__ void winograd_g(const float* v, float* o) {
    const float half_sum = 0.5f * (v[0] + v[2]);
    o[0] = v[0], o[1] = half_sum + 0.5f * v[1], o[2] = half_sum - 0.5f * v[1], o[3] = v[2];
}
__device__ __forceinline__ void winograd_gt(const float* v, float* o) {
    const float half_sum = 0.5f * (v[1] + v[2]);
    o[0] = v[0] + half_sum, o[1] = 0.5f * (v[1] - v[2]), o[2] = half_sum + v[3];
}

// A one-axis transform as a callable that inlines (a function pointer might not).
#define WINOGRAD_AXIS(f) [](const float* v, float* o) { f(v, o); }

// T v T^T for a one-axis transform T of N values to R (`Axis`), on an N x N array given
// column by column: T on each column, then on each row of the result; `out(x, value)` takes
// the R x R result at x = row * R + column.
template <int N, int R, class Axis, class Out>
__device__ __forceinline__ void winograd_2d(const float (&columns)[N][N], Axis axis, Out out) {
    float half[N][R];  // half[column][row]: T applied to each column
    for (int j = 0; j < N; ++j) axis(columns[j], half[j]);
    for (int i = 0; i < R; ++i) {
        float row[N], result[R];
        for (int j = 0; j < N; ++j) row[j] = half[j][i];
        axis(row, result);
        for (int j = 0; j < R; ++j) out(i * R + j, result[j]);
    }
}

// Tile t's image and first output row and column.
struct WinogradTile {
    int image, h, w;
};
__device__ __forceinline__ WinogradTile winograd_tile(long long t, int tiles_h, int tiles_w) {
    const int plane_tiles = tiles_h * tiles_w;
    const int image = (int)(t / plane_tiles), r = (int)(t - (long long)image * plane_tiles);
    const int ty = r / tiles_w;
    return {image, 2 * ty, 2 * (r - ty * tiles_w)};
}

// body(e, total, tile, plane) for each (channel, tile) of `channels` channels: e = channel *
// tiles + t of `total`, plane = image * channels + channel, the (image, channel) plane's
// index. Grid-stride, consecutive threads on consecutive tiles, so that the planes' reads and
// the writes of [x][channel][t] arrays (x `total` apart) coalesce.
template <class Body>
__device__ __forceinline__ void winograd_channel_tiles(const ConvParams& g, int channels, int tiles_h, int tiles_w,
                                                       Body body) {
    const long long tiles = (long long)g.n * tiles_h * tiles_w, total = tiles * channels;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(e / tiles);
        const WinogradTile tile = winograd_tile(e - c * tiles, tiles_h, tiles_w);
        body(e, total, tile, (long long)tile.image * channels + c);
    }
}

// B^T d B of the input patch of `tile` in channel plane `plane` of an input of g's, into
// out(x, value).
template <class Out>
__device__ __forceinline__ void winograd_input_tile(const ConvParams& g, const float* plane, WinogradTile tile,
                                                    Out out) {
    float d[4][4];  // d[column][row]
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            const int h = tile.h + i - g.p_h, w = tile.w + j - g.p_w;
            d[j][i] = h >= 0 && h < g.in_h && w >= 0 && w < g.in_w ? plane[h * g.in_w + w] : 0.0f;
        }
    winograd_2d<4, 4>(d, WINOGRAD_AXIS(winograd_bt), out);
}

// fprop's weights: W[x][co][ci] = (G w[co, ci] G^T)[x]; with `turned` (dgrad), the weights
// of the dual conv, W[x][ci][co] = (G w[co, ci] flipped G^T)[x]. One thread per (co, ci),
// grid-stride.
extern "C" __global__ void winograd_weights_f32(const float* w, float* out, int c_out, int c_in, int turned) {
    const long long pairs = (long long)c_out * c_in;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < pairs;
         e += (long long)gridDim.x * blockDim.x) {
        const int co = (int)(e / c_in), ci = (int)(e - (long long)co * c_in);
        float f[3][3];  // f[column][row]
        for (int r = 0; r < 3; ++r)
            for (int s = 0; s < 3; ++s) f[s][r] = turned ? w[e * 9 + (2 - r) * 3 + (2 - s)] : w[e * 9 + r * 3 + s];
        const long long at = turned ? (long long)ci * c_out + co : e;
        winograd_2d<3, 4>(f, WINOGRAD_AXIS(winograd_g), [&](int k, float value) { out[k * pairs + at] = value; });
    }
}

// fprop's input: V[x][ci][t] (tiles = g.n * tiles_h * tiles_w per row), a thread per (ci, t).
extern "C" __global__ void winograd_input_f32(ConvParams g, const float* x, float* v, int tiles_h, int tiles_w) {
    winograd_channel_tiles(g, g.c_in, tiles_h, tiles_w, [&](long long e, long long total, WinogradTile tile, long long plane) {
        winograd_input_tile(g, x + plane * g.in_h * g.in_w, tile, [&](int k, float value) { v[k * total + e] = value; });
    });
}

// fprop's output: y[img, co] over tile t = A^T M[.][co][t] A, the positions inside the
// output; a thread per (co, t).
extern "C" __global__ void winograd_output_f32(ConvParams g, const float* m, float* y, int tiles_h, int tiles_w) {
    winograd_channel_tiles(g, g.c_out, tiles_h, tiles_w, [&](long long e, long long total, WinogradTile tile, long long plane) {
        float columns[4][4];  // columns[column][row]
        for (int k = 0; k < 16; ++k) columns[k % 4][k / 4] = m[k * total + e];
        float* const out = y + plane * g.out_h * g.out_w;
        winograd_2d<4, 2>(columns, WINOGRAD_AXIS(winograd_at), [&](int k, float value) {
            const int h = tile.h + k / 2, w = tile.w + k % 2;
            if (h < g.out_h && w < g.out_w) out[h * g.out_w + w] = value;
        });
    });
}

// wgrad's dY: U[x][co][t], a thread per (co, t).
extern "C" __global__ void winograd_wgrad_dy_f32(ConvParams g, const float* dy, float* u, int tiles_h, int tiles_w) {
    winograd_channel_tiles(g, g.c_out, tiles_h, tiles_w, [&](long long e, long long total, WinogradTile tile, long long plane) {
        const float* const in = dy + plane * g.out_h * g.out_w;
        float q[2][2];  // q[column][row]
        for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b) {
                const int h = tile.h + a, w = tile.w + b;
                q[b][a] = h < g.out_h && w < g.out_w ? in[h * g.out_w + w] : 0.0f;
            }
        winograd_2d<2, 4>(q, [](const float* v, float* o) { winograd_a(v[0], v[1], o); },
                          [&](int k, float value) { u[k * total + e] = value; });
    });
}

// wgrad's x: V[x][t][ci]. A block of 256 threads transforms 32 consecutive tiles of 8
// channels, a warp per channel and a lane per tile (coalesced reads of x), and writes them
// through shared memory as 32 runs of 8 channels (V's rows run along channels). Rows of 36
// floats keep both the lanes' stores and the runs' reads free of bank conflicts. Grid
// (ceil(tiles / 32), ceil(c_in / 8)).
// The block shape is src/device/winograd.rs's X_BLOCK_TILES x X_BLOCK_CHANNELS.
#define WINOGRAD_TILES 32
#define WINOGRAD_CHANNELS 8
extern "C" __global__ void __launch_bounds__(THREADS)
    winograd_wgrad_x_f32(ConvParams g, const float* x, float* v, int tiles_h, int tiles_w) {
    static_assert(WINOGRAD_TILES * WINOGRAD_CHANNELS == THREADS, "a thread per tile and channel");
    __shared__ float staged[16][WINOGRAD_CHANNELS][WINOGRAD_TILES + 4];
    const long long tiles = (long long)g.n * tiles_h * tiles_w, t0 = (long long)blockIdx.x * WINOGRAD_TILES;
    const int c0 = blockIdx.y * WINOGRAD_CHANNELS;
    const int lane = threadIdx.x % WINOGRAD_TILES, channel = threadIdx.x / WINOGRAD_TILES;
    if (t0 + lane < tiles && c0 + channel < g.c_in) {
        const WinogradTile tile = winograd_tile(t0 + lane, tiles_h, tiles_w);
        const float* plane = x + ((long long)tile.image * g.c_in + c0 + channel) * g.in_h * g.in_w;
        winograd_input_tile(g, plane, tile, [&](int k, float value) { staged[k][channel][lane] = value; });
    }
    __syncthreads();
    const int tile = threadIdx.x / WINOGRAD_CHANNELS, c = threadIdx.x % WINOGRAD_CHANNELS;
    if (t0 + tile < tiles && c0 + c < g.c_in)
        for (int k = 0; k < 16; ++k) v[(k * tiles + t0 + tile) * g.c_in + c0 + c] = staged[k][c][tile];
}

// dw[co, ci, 3, 3] = G^T (the sum over K splits of C[split][x][co, ci], in split order) G:
// one thread per channel pair, grid-stride.
extern "C" __global__ void winograd_wgrad_out_f32(const float* partial, float* dw, int c_out, int c_in, int splits) {
    const long long pairs = (long long)c_out * c_in;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < pairs;
         e += (long long)gridDim.x * blockDim.x) {
        float columns[4][4];  // columns[column][row]
        for (int k = 0; k < 16; ++k) {
            float sum = 0.0f;
            for (int s = 0; s < splits; ++s) sum += partial[((long long)s * 16 + k) * pairs + e];
            columns[k % 4][k / 4] = sum;
        }
        winograd_2d<4, 3>(columns, WINOGRAD_AXIS(winograd_gt), [&](int k, float value) { dw[e * 9 + k] = value; });
    }
}
